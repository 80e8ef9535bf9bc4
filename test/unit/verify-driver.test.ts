// The online verify's adapter (src/link/verify-driver.ts) over test doubles of the
// write path, the shipper's link and the log: what it reads under the lock, the
// HashRequest it sends, the lock let go, regions marked for repair, refusals, what a
// link that drops or changes does, the reply timeout, a failed read, and when a
// batch may go (the backlog against the link's cap).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RegionHash } from '../../src/sync/region-hashes.js';
import { VerifyDriver, type VerifyLink } from '../../src/link/verify-driver.js';
import { decodeHashRequest, type HashRequest } from '../../src/link/frame.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import type { Logger } from '../../src/log/log.js';
import { VERIFY_REPLY_MS } from '../../src/sync/verify.js';
import { VERIFY_BATCHES_IN_FLIGHT } from '../../src/limits/limits.js';

const RS = 64 << 10; // 64 regions per 4 MiB batch
const h = (n: number): Buffer => Buffer.alloc(32, n);
const hashes = (first: number, count: number): Buffer[] => Array.from({ length: count }, (_, i) => h(first + i));
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Session { sent: HashRequest[]; closed: string[]; send(parts: Buffer[]): void; close(reason: string): void; version?: number }
const session = (): Session => {
  const s: Session = {
    sent: [], closed: [],
    send(parts) { s.sent.push(decodeHashRequest(parts[1]!)); },
    close(reason) { s.closed.push(reason); },
  };
  return s;
};

/** A write path with `regions` regions, the link up, nothing paused, and a log of what the driver did. */
function rig(regions = 100, inFlight = 1, bitmapRegions = regions) {
  const reads: Array<{ first: number; count: number }> = [];
  const algorithms: RegionHash[] = [];
  const unlocked: number[] = [];
  const marked: Array<{ regions: number[]; reason: string }> = [];
  const lines: Array<{ level: string; message: string }> = [];
  let afterSeq = 10;
  let failRead: string | null = null;
  const jv = {
    bitmap: { regions: bitmapRegions, regionSize: RS }, size: regions * RS,
    mode: 'journal', roundStart: 0, seeding: false,
    journal: { backlogBytes: 0 },
    verifyHashes(first: number, count: number, algorithm: RegionHash) {
      reads.push({ first, count });
      algorithms.push(algorithm);
      if (failRead) return Promise.reject(new Error(failRead));
      return Promise.resolve({ hashes: hashes(first, count), afterSeq: afterSeq++, unlock: () => unlocked.push(first) });
    },
    markForResync(r: number[], reason: string) { marked.push({ regions: [...r], reason }); },
  };
  const logged = (level: string) => (_o: unknown, message: string) => lines.push({ level, message });
  const log = { info: logged('info'), warn: logged('warn'), error: logged('error'), debug: logged('debug') } as unknown as Logger;
  const state = { link: session() as Session | null, paused: false, held: false, rate: null as number | null, now: 0, beginning: false };
  const link: VerifyLink = {
    session: () => state.link, paused: () => state.paused, heldByPeer: () => state.held, rate: () => state.rate, now: () => state.now,
    beginning: () => state.beginning,
  };
  const driver = new VerifyDriver('db', jv as unknown as JournaledVolume, log, link, inFlight);
  return { driver, jv, state, reads, algorithms, unlocked, marked, lines, failRead: (m: string | null) => (failRead = m) };
}

test('batch by batch: read under the lock, HashRequest pinned at the flush point, lock let go on the reply, done', async () => {
  const r = rig();
  const s = r.state.link!;
  const run = r.driver.start(false);
  assert.equal(run.state, 'running');
  assert.deepEqual(r.reads, [{ first: 0, count: 64 }]);
  assert.deepEqual(s.sent, [], 'nothing is asked before the batch is hashed');
  await turn();
  assert.deepEqual(s.sent, [{ volume: 'db', regionSize: RS, first: 0, count: 64, afterSeq: 10 }]);
  assert.equal(r.driver.expects(0, RS, 64), true);
  assert.equal(r.driver.expects(64, RS, 64), false);
  assert.deepEqual(r.unlocked, [], 'the lock is held until the peer answers');
  r.state.now = 20;
  r.driver.reply(0, hashes(0, 64));
  assert.deepEqual(r.unlocked, [0]);
  assert.deepEqual(r.reads, [{ first: 0, count: 64 }, { first: 64, count: 36 }]);
  await turn();
  assert.deepEqual(s.sent[1], { volume: 'db', regionSize: RS, first: 64, count: 36, afterSeq: 11 });
  r.state.now = 3000;
  r.driver.reply(64, hashes(64, 36));
  assert.deepEqual(r.unlocked, [0, 64]);
  assert.equal(r.driver.run!.state, 'done');
  assert.equal(r.driver.run!.checkedRegions, 100);
  assert.deepEqual(r.marked, []);
  assert.deepEqual(r.lines.map((l) => l.level), ['info', 'info']);
  assert.match(r.lines[1]!.message, /^volume db: verify found no differences in 100 regions/);
});

test('each batch is hashed with the link\'s hash: BLAKE3 at protocol version 4, SHA-256 on an older link (the peer hashes so)', async () => {
  const r = rig(200);
  r.state.link!.version = 4;
  r.driver.start(false);
  await turn();
  r.driver.reply(0, hashes(0, 64));
  await turn();
  r.driver.down();
  const older = session();
  older.version = 3;
  r.state.link = older;
  r.driver.tick(0);
  await turn();
  assert.deepEqual(r.reads.map((x) => x.first), [0, 64, 64]);
  assert.deepEqual(r.algorithms, ['blake3', 'blake3', 'sha256']);
});

test('repair: the regions that differ are marked for resync with the reason', async () => {
  const r = rig(64);
  r.driver.start(true);
  await turn();
  const peer = hashes(0, 64);
  peer[3] = h(200);
  peer[40] = h(201);
  r.driver.reply(0, peer);
  assert.deepEqual(r.marked, [{ regions: [3, 40], reason: 'verify found 2 regions that differ on the peer' }]);
  assert.equal(r.driver.run!.state, 'done');
  assert.match(r.lines.at(-1)!.message, /2 regions \(128 KiB\) differ: 3, 40; resyncing them/);
  assert.equal(r.lines.at(-1)!.level, 'warn');
});

test('without repair, differences are reported and nothing is marked', async () => {
  const r = rig(64);
  r.driver.start(false);
  await turn();
  const peer = hashes(0, 64);
  peer[0] = h(200);
  r.driver.reply(0, peer);
  assert.deepEqual(r.marked, []);
  assert.match(r.lines.at(-1)!.message, /run verify --repair to resync them/);
});

test('refusals: link down, paused, held by the peer, a round or the bitmap or a first sync, one already running', () => {
  const cases: Array<[string, (x: ReturnType<typeof rig>) => void, RegExp]> = [
    ['down', (x) => (x.state.link = null), /the link of db is down/],
    ['paused', (x) => (x.state.paused = true), /shipping of db is paused;/],
    ['held', (x) => (x.state.held = true), /paused by the peer \(a checkpoint is held there\)/],
    ['bitmap', (x) => (x.jv.mode = 'bitmap'), /a sync or resync of db is under way/],
    ['round', (x) => (x.jv.roundStart = 5), /a sync or resync of db is under way/],
    ['seeding', (x) => (x.jv.seeding = true), /a sync or resync of db is under way/],
    // (A link's beginning may open a round: a first sync of a returning old primary, found by the simulation, seed 482.)
    ['beginning', (x) => (x.state.beginning = true), /a sync or resync of db is under way/],
  ];
  for (const [what, set, msg] of cases) {
    const r = rig();
    set(r);
    assert.throws(() => r.driver.start(false), msg, what);
    assert.deepEqual(r.reads, [], `${what}: nothing read`);
    assert.equal(r.driver.run, null, what);
  }
  const r = rig();
  r.driver.start(false);
  assert.throws(() => r.driver.start(false), /a verify of db is already running \(0 of 100 regions\)/);
});

test('a batch read while the link changed is let go unsent, and asked again on the next link', async () => {
  const r = rig();
  r.driver.start(false);
  const old = r.state.link!;
  const now = session();
  r.state.link = now; // the link dropped and came back while the batch was read
  await turn();
  assert.equal(old.sent.length + now.sent.length, 0, 'nothing sent');
  assert.deepEqual(r.unlocked, [0], 'the stale batch\'s lock is let go');
  r.driver.tick(1);
  assert.deepEqual(r.reads.at(-1), { first: 0, count: 64 });
  await turn();
  assert.deepEqual(now.sent.map((q) => q.first), [0]);
});

test('a link that goes down lets the batch out go; the next link asks it again', async () => {
  const r = rig();
  r.driver.start(false);
  await turn();
  r.driver.down();
  assert.deepEqual(r.unlocked, [0]);
  assert.equal(r.driver.expects(0, RS, 64), false, 'a late reply of the old link is not taken');
  r.state.link = session();
  r.driver.tick(5);
  await turn();
  assert.deepEqual(r.state.link.sent.map((q) => [q.first, q.count]), [[0, 64]]);
});

test('no reply within the timeout: the lock goes, the verify fails, the link closes', async () => {
  const r = rig();
  const s = r.state.link!;
  r.driver.start(false);
  await turn();
  r.driver.tick(VERIFY_REPLY_MS);
  assert.deepEqual(s.closed, [], 'not yet');
  r.driver.tick(VERIFY_REPLY_MS + 1);
  assert.deepEqual(r.unlocked, [0]);
  assert.equal(r.driver.run!.state, 'failed');
  assert.deepEqual(s.closed, [`volume db: the peer did not answer a verify request in ${VERIFY_REPLY_MS / 1000} s`]);
  assert.equal(r.lines.at(-1)!.level, 'warn');
});

test('a failed read fails the verify and says so', async () => {
  const r = rig();
  r.failRead('EIO');
  r.driver.start(false);
  await turn();
  assert.equal(r.driver.run!.state, 'failed');
  assert.equal(r.driver.run!.message, 'reading regions 0..63 failed: EIO');
  assert.deepEqual(r.lines.at(-1), { level: 'error', message: 'volume db: verify reading regions 0..63 failed: EIO' });
  assert.deepEqual(r.state.link!.sent, []);
});

test('a batch waits while the backlog is over 5 s of the link\'s cap, while shipping is paused or held, or while a round is open', async () => {
  const r = rig();
  r.state.rate = 1 << 20;
  r.jv.journal.backlogBytes = 5 * (1 << 20) + 1;
  r.driver.start(false);
  assert.deepEqual(r.reads, [], 'started, but no batch while the backlog is long');
  assert.equal(r.driver.run!.state, 'running');
  r.jv.journal.backlogBytes = 5 * (1 << 20);
  r.state.paused = true;
  r.driver.tick(1);
  assert.deepEqual(r.reads, [], 'nor while paused');
  r.state.paused = false;
  r.state.held = true;
  r.driver.tick(1.5);
  assert.deepEqual(r.reads, [], 'nor while the peer holds shipping');
  r.state.held = false;
  r.jv.roundStart = 7;
  r.driver.tick(2);
  assert.deepEqual(r.reads, [], 'nor while a round is open');
  r.jv.roundStart = 0;
  r.state.beginning = true;
  r.driver.tick(2.5);
  assert.deepEqual(r.reads, [], 'nor while a link begins (it may open one)');
  r.state.beginning = false;
  r.driver.tick(3);
  assert.deepEqual(r.reads, [{ first: 0, count: 64 }]);
  await turn();
  assert.equal(r.state.link!.sent.length, 1);
});

test('several batches out at once (the default): each held under its own lock until its own reply', async () => {
  assert.equal(VERIFY_BATCHES_IN_FLIGHT, 4);
  const r = rig(300, VERIFY_BATCHES_IN_FLIGHT);
  const s = r.state.link!;
  r.driver.start(false);
  assert.deepEqual(r.reads, [{ first: 0, count: 64 }, { first: 64, count: 64 }, { first: 128, count: 64 }, { first: 192, count: 64 }]);
  await turn();
  assert.deepEqual(s.sent.map((q) => q.first), [0, 64, 128, 192]);
  r.driver.reply(64, hashes(64, 64));
  assert.deepEqual(r.unlocked, [64], 'only the answered batch lets go');
  assert.deepEqual(r.reads.at(-1), { first: 256, count: 44 });
  const other = hashes(0, 64);
  other[5] = h(250);
  r.driver.reply(0, other);
  await turn();
  for (const f of [128, 192, 256]) r.driver.reply(f, hashes(f, f === 256 ? 44 : 64));
  assert.deepEqual(r.unlocked, [64, 0, 128, 192, 256]);
  assert.equal(r.driver.run!.state, 'done');
  assert.deepEqual([r.driver.run!.checkedRegions, r.driver.run!.differing], [300, [5]]);
});

test('a verify started while the volume grows covers the regions its hosts see, not those its grown bitmaps already count (simulation seed 3090)', () => {
  const r = rig(100, 1, 150);
  const run = r.driver.start(false);
  assert.equal(run.end, 100);
});
