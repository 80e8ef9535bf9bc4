// The lag an operator reads is what a failover loses (issue 16). site-a ships over a
// 2 Mbit/s cap to site-b; a writer on site-a's export writes faster than that, so the
// backlog grows and batches go coalesced (a unit is applied whole or not at all: the
// records site-b acked inside a unit it has not received to its end are lost on a
// promote too, and lagSeconds counts them). Then site-a's daemon is killed -9 just
// after its lagSeconds was read, site-b is promoted, and the promoted image says which
// writes survived: the age, at the kill, of the oldest acknowledged write missing is
// within 2 s of the lag shown (and never above lag + 2 s), and the image is the
// primary's image after some write, every acknowledged write before it there and
// nothing after it (each write was followed by a flush: a flush point).
//
// The writer: one qemu-io run per write (-t writeback, `write -s FILE`, then `flush`),
// one 64 KiB block at a time to block seq % BLOCKS of the volume, each block random
// (zstd cannot shrink it) behind a header with a magic, the sequence number, the wall
// clock when it was issued and the sha256 of the rest. The test keeps each block's
// digest and the time its qemu-io run (write and flush) completed: acknowledged.
//
// lagSeconds is read from GET /api/v1/status, what `offsite status --json` prints.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair, type Pair } from '../helpers/pair.js';
import { must, run, sleep } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';

const BLOCK = 64 * 1024;
/** The writer's blocks rotate over the first BLOCKS of the volume (a unit longer than that rewrites some: coalescing). */
const BLOCKS = 32;
const VOLUME = '16MiB';
const HEADER = 52;
const MAGIC = Buffer.from('OFFSLAG1');
/** At most one write every WRITE_MS (about 2.5 times what a 2 Mbit/s link carries). */
const WRITE_MS = 100;

interface Write { seq: number; issuedAt: number; ackAt: number; digest: string }

interface Vol {
  link: string; lagSeconds: number; backlogBytes: number; backlogRecords: number;
  shipping: { coalescedRecords: number; coalescedBytes: number; wireRateBytesPerSecond: number; hostRateBytesPerSecond: number } | null;
}
const vol = async (d: TestDaemon): Promise<Vol> => (await statusOf(d)).volumes[0] as unknown as Vol;

/** Block `seq`: header (magic, seq, issue time, sha256 of the rest), then random bytes. */
function block(seq: number, issuedAt: number): Buffer {
  const b = crypto.randomBytes(BLOCK);
  MAGIC.copy(b, 0);
  b.writeUInt32BE(seq, 8);
  b.writeDoubleBE(issuedAt, 12);
  crypto.createHash('sha256').update(b.subarray(HEADER)).digest().copy(b, 20);
  return b;
}

/** The writer: qemu-io runs of one write and a flush, one after another, until stopped (or the export goes away). */
function startWriter(p: Pair, dir: string): { writes: Write[]; stop: () => Promise<void>; error: () => string } {
  const writes: Write[] = [];
  let stopped = false;
  let error = '';
  const file = path.join(dir, 'block.bin');
  const loop = (async () => {
    for (let seq = 0; !stopped; seq++) {
      const issuedAt = Date.now();
      const b = block(seq, issuedAt);
      fs.writeFileSync(file, b);
      const r = await run('qemu-io', [
        '-f', 'raw', '-t', 'writeback', '-c', `write -s ${file} ${(seq % BLOCKS) * BLOCK} ${BLOCK}`, '-c', 'flush', p.a.uri('db'),
      ], { timeoutMs: 30_000 });
      const ackAt = Date.now();
      if (r.code !== 0 || !/wrote 65536\/65536 bytes/.test(r.stdout) || /error|fail/i.test(r.stdout + r.stderr)) {
        // (After the kill this is expected: the export is gone.)
        error = `write ${seq}: qemu-io exited ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 300)}`;
        return;
      }
      writes.push({ seq, issuedAt, ackAt, digest: crypto.createHash('sha256').update(b).digest('hex') });
      await sleep(Math.max(0, WRITE_MS - (Date.now() - issuedAt)));
    }
  })();
  return { writes, stop: async () => { stopped = true; await loop; }, error: () => error };
}

/**
 * Which writes an image holds: the newest seq in it (-1: none), after checking that the
 * image is exactly the primary's after that write (every block the newest write to it
 * up to there, whole; the rest of the volume untouched).
 */
function decode(img: Buffer, writes: ReadonlyMap<number, Write>): number {
  const seqs: number[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const blk = img.subarray(b * BLOCK, (b + 1) * BLOCK);
    if (blk.every((x) => x === 0)) {
      seqs.push(-1);
      continue;
    }
    assert.ok(blk.subarray(0, 8).equals(MAGIC),
      `block ${b} of the promoted image holds no writer's block (starts ${blk.subarray(0, 16).toString('hex')}): torn or foreign data`);
    const seq = blk.readUInt32BE(8);
    assert.equal(seq % BLOCKS, b, `block ${b} holds write ${seq}, which went to block ${seq % BLOCKS}`);
    const digest = crypto.createHash('sha256').update(blk).digest('hex');
    const w = writes.get(seq);
    assert.ok(w, `block ${b} holds write ${seq}, which the writer never issued (or never saw complete: at most one can be in flight)`);
    assert.equal(digest, w.digest, `block ${b} holds write ${seq}, but not the bytes written (torn or mixed)`);
    seqs.push(seq);
  }
  const newest = Math.max(...seqs);
  for (let b = 0; b < BLOCKS; b++) {
    // The newest write to block b up to `newest`: newest - ((newest - b) mod BLOCKS), if that is a write at all.
    const expected = newest < 0 ? -1 : newest - ((((newest - b) % BLOCKS) + BLOCKS) % BLOCKS);
    assert.equal(seqs[b], expected < 0 ? -1 : expected, `the promoted image holds write ${newest} but block ${b} holds write ${seqs[b]}, ` +
      `not ${expected < 0 ? 'nothing' : `write ${expected}`}: no prefix of the writes (no flush point of the primary)`);
  }
  const rest = img.subarray(BLOCKS * BLOCK);
  assert.ok(rest.every((x) => x === 0), 'the promoted image has data past the writer\'s blocks');
  return newest;
}

test('a kill -9 under load on a capped, coalescing link loses what lagSeconds showed just before, within 2 s', { timeout: 240_000 }, async (t: TestContext) => {
  const t0 = Date.now();
  const note = (s: string): void => t.diagnostic(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);
  // (compression stays at auto: random blocks do not shrink; coalescing is on by default.)
  const p = await startPair({ size: VOLUME, peerKeysA: 'rate: 2mbit' });
  let writer: ReturnType<typeof startWriter> | null = null;
  try {
    await p.drained(120_000);
    note('pair up, first sync done; the writer starts');
    writer = startWriter(p, p.a.dir);
    const w = writer;

    // The backlog builds until it is planned as coalesced units (far behind: each unit
    // holds every block rewritten, and only the last write of each travels). site-b
    // presents a unit only at its end, so the lag climbs second for second while one
    // ships and drops by a unit's worth when it lands: a sawtooth.
    const trace: string[] = [];
    const drops: number[] = [];
    let v = await vol(p.a);
    let prev = v.lagSeconds;
    const look = async (): Promise<Vol> => {
      const at = Date.now();
      const x = await vol(p.a);
      trace.push(`${((at - t0) / 1000).toFixed(1)}:${x.lagSeconds}`);
      // (Between two looks the lag grows, or drops by about a unit's time when one is presented.)
      if (x.lagSeconds < prev - 2) drops.push(at);
      prev = x.lagSeconds;
      return x;
    };
    const deadline = Date.now() + 100_000;
    while (!((v.shipping?.coalescedRecords ?? 0) > 0 && drops.length >= 2 && v.lagSeconds >= 5)) {
      assert.equal(w.error(), '', 'the writer failed before the kill');
      assert.ok(Date.now() < deadline, `no coalesced backlog presented unit by unit after 100 s: ${JSON.stringify(v)}; lag trace ${trace.join(' ')}`);
      await sleep(250);
      v = await look();
    }
    note(`backlog built: ${w.writes.length} writes, lag ${v.lagSeconds} s, backlog ${v.backlogBytes} B (${v.backlogRecords} records), ` +
      `${v.shipping?.coalescedRecords} records coalesced; host ${v.shipping?.hostRateBytesPerSecond} B/s, wire ${v.shipping?.wireRateBytesPerSecond} B/s`);

    // When to kill: part way through a unit, well before its end. (What is on its way
    // at the kill, the last bytes of a unit in the socket, at most a quarter second of
    // the link, or site-b's ack of them, can still make that unit whole at site-b: the
    // promote then presents it although site-a never saw it acked, and the lag shown
    // was high by a whole unit. Nothing site-a measures can know that, so the test
    // kills where the unit's end is seconds away: 20 to 50% of the time the last unit
    // took, after the one before it was presented.)
    let kill = 0;
    for (;;) {
      const unitMs = drops[drops.length - 1]! - drops[drops.length - 2]!;
      const since = drops[drops.length - 1]!;
      kill = since + unitMs * (0.2 + 0.3 * Math.random());
      const seen = drops.length;
      while (Date.now() < kill - 1000 && drops.length === seen) {
        await sleep(250);
        v = await look();
      }
      if (drops.length === seen && unitMs >= 4000) break;
      // (A unit landed sooner than the last one took, or units are too short to aim
      // between: wait for the next drop and aim again.)
      while (drops.length === seen) {
        assert.ok(Date.now() < deadline + 30_000, `units did not settle: lag trace ${trace.join(' ')}`);
        await sleep(250);
        v = await look();
      }
    }

    // The lag, a few times over the last second (once through `offsite status
    // --json`, the others through the API it reads), then the kill right after the
    // last reading.
    const samples: string[] = [];
    const st = await cli(p.a, 'status', '--json');
    assert.equal(st.code, 0, `offsite status --json on site-a: ${st.stderr}`);
    samples.push(`${(JSON.parse(st.stdout) as { volumes: Vol[] }).volumes[0]!.lagSeconds} s (offsite status --json)`);
    let last = v;
    let asked = 0;
    const dropsBefore = drops.length;
    for (let i = 0; i < 4; i++) {
      await sleep(200);
      asked = Date.now();
      last = await look();
      samples.push(`${last.lagSeconds} s`);
    }
    const killAt = Date.now();
    await p.a.kill9();
    await w.stop();
    const coalesced = last.shipping?.coalescedRecords ?? 0;
    const lag = last.lagSeconds;
    assert.equal(last.link, 'connected', 'site-a\'s link was down just before the kill');
    assert.ok(coalesced > 0, 'nothing was coalesced before the kill: the test did not test coalescing');
    note(`lag trace (s since start:lagSeconds, every fourth reading): ${trace.filter((_, i) => i % 4 === 0).join(' ')}`);
    note(`units presented at ${drops.map((d) => ((d - t0) / 1000).toFixed(1)).join(', ')} s` +
      `${drops.length > dropsBefore ? ' (one during the last readings)' : ''}`);
    note(`site-a killed -9 ${killAt - asked} ms after its status said lagSeconds ${lag} (readings before: ${samples.join(', ')}; ` +
      `backlog ${last.backlogBytes} B in ${last.backlogRecords} records; ${coalesced} records coalesced); writer: ${w.error() || 'stopped'}`);

    // site-b sees the link go, and is promoted.
    for (let i = 0; i < 300 && (await vol(p.b)).link === 'connected'; i++) await sleep(100);
    const linkB = (await vol(p.b)).link;
    assert.notEqual(linkB, 'connected', 'site-b still saw the link 30 s after site-a was killed');
    const promoted = await cli(p.b, 'promote', 'db');
    assert.equal(promoted.code, 0, `promote on site-b refused: ${promoted.stderr.trim()} ${promoted.stdout.trim()}`);
    note(`promote: ${promoted.stdout.trim()}`);

    // What the promoted export holds.
    const copy = path.join(p.b.dir, 'promoted.img');
    await must('nbdcopy', [p.b.uri('db'), copy]);
    const img = fs.readFileSync(copy);
    fs.rmSync(copy);
    const bySeq = new Map(w.writes.map((x) => [x.seq, x]));
    const newest = decode(img, bySeq);
    const acked = w.writes.filter((x) => x.ackAt <= killAt);
    assert.ok(acked.length >= 100, `only ${acked.length} writes were acknowledged before the kill`);
    const newestAcked = acked[acked.length - 1]!;
    // (A write whose run completed after the kill may be there or not: it was in flight.)
    assert.ok(newest <= newestAcked.seq + 1, `the promoted image holds write ${newest}, past the last acknowledged (${newestAcked.seq}) and the one in flight`);
    const missing = acked.filter((x) => x.seq > newest);
    // The loss: the age at the kill of the oldest acknowledged write the promote lost (0: none lost).
    const lossMs = missing.length === 0 ? 0 : killAt - missing[0]!.issuedAt;
    const there = bySeq.get(newest);
    const span = there ? newestAcked.issuedAt - there.issuedAt : newestAcked.issuedAt - acked[0]!.issuedAt;
    // (Diagnostic: the records promote discarded were durable at site-b, inside the unit
    // it could not finish; a write and its flush are two records. Without them, the
    // lag of the oldest write site-b never received, which is all the lag counted
    // before it knew about units.)
    const discarded = Number(/(\d+) records after the last flush point discarded/.exec(promoted.stdout)?.[1] ?? 0);
    const firstNotThere = missing[Math.floor(discarded / 2)];
    const unsent = firstNotThere ? `${((killAt - firstNotThere.issuedAt) / 1000).toFixed(1)} s` : 'none';
    note(`FIGURES: lag shown ${lag} s; loss measured ${(lossMs / 1000).toFixed(2)} s ` +
      `(oldest acknowledged write missing: ${missing[0]?.seq ?? '-'}; ${missing.length} acknowledged writes lost of ${acked.length}; ` +
      `newest there ${newest}, issued ${(span / 1000).toFixed(2)} s before the newest acknowledged, ${newestAcked.seq}); ` +
      `${coalesced} records coalesced; site-b held ${discarded} records of the unfinished unit, the oldest write it did not hold was ${unsent} old`);

    // Never more than the lag shown (+ 2 s, + the time from the reading to the kill) ...
    assert.ok(lossMs <= lag * 1000 + 2000 + (killAt - asked), `the promote lost ${lossMs} ms of acknowledged writes, more than the lag shown (${lag} s) + 2 s`);
    // ... and not much less either: the lag is the loss, not a bound far above it.
    assert.ok(lossMs >= lag * 1000 - 2000,
      `the promote lost only ${lossMs} ms of acknowledged writes while site-a showed a lag of ${lag} s ${killAt - asked} ms before the kill`);
  } finally {
    await writer?.stop().catch(() => undefined);
    await p.stop();
  }
});
