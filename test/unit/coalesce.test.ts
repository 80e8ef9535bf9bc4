// Coalescing (src/coalesce, docs/LINK.md): which records of a batch go as Skip
// records, that the coalesced stream ends at the same image, and that the receiver
// never brings the replica to a barrier inside a coalesced unit, even when only part
// of the unit is durable or after a restart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyPlan, coalesce, planUnit } from '../../src/coalesce/coalesce.js';
import { FLAG_RESYNC, RECORD_HEADER_SIZE, RecordKind, recordSize, type JournalRecord } from '../../src/journal/record.js';
import { Receiver } from '../../src/secondary/receiver.js';

let seq = 0;
const W = (offset: number, length: number, fill = seq + 1): JournalRecord =>
  ({ kind: RecordKind.Write, flags: 0, seq: ++seq, epoch: 1, offset, length, time: 0, payload: Buffer.alloc(length, fill & 0xff) });
const Z = (offset: number, length: number): JournalRecord => ({ kind: RecordKind.Zeroes, flags: 0, seq: ++seq, epoch: 1, offset, length, time: 0,
  payload: Buffer.alloc(0) });
const B = (): JournalRecord => ({ kind: RecordKind.Barrier, flags: 0, seq: ++seq, epoch: 1, offset: 0, length: 0, time: 0, payload: Buffer.alloc(0) });
const kinds = (rs: JournalRecord[]): string => rs.map((r) => ({ 1: 'W', 2: 'Z', 3: 'T', 4: 'B', 5: 'S' })[r.kind]).join('');

test('records a later record covers, up to the last barrier, go as Skip records naming that barrier', () => {
  seq = 0;
  const rs = [W(0, 4096), B(), W(0, 4096), W(8192, 4096), B(), W(8192, 4096)];
  const c = coalesce(rs);
  assert.equal(kinds(c.records), 'SBWWBW');
  assert.equal(c.records[0]!.offset, 5, 'the Skip names the barrier the unit ends at');
  assert.equal(c.records[0]!.seq, 1);
  assert.equal(c.skipped, 1);
  assert.equal(c.skippedBytes, 4096);
  // The write after the last barrier (an epoch not closed in this batch) covers nothing.
  assert.equal(c.records[3]!.kind, RecordKind.Write);
  // Covered by two later records together, and by a Zeroes record.
  seq = 0;
  assert.equal(kinds(coalesce([W(0, 8192), B(), W(0, 4096), W(4096, 4096), B()]).records), 'SBWWB');
  seq = 0;
  assert.equal(kinds(coalesce([W(0, 8192), B(), Z(0, 65536), B()]).records), 'SBZB');
  // Partly covered: kept.
  seq = 0;
  assert.equal(kinds(coalesce([W(0, 8192), B(), W(0, 4096), B()]).records), 'WBWB');
  // One epoch only, or resync records: unchanged.
  seq = 0;
  assert.equal(kinds(coalesce([W(0, 4096), W(0, 4096), B()]).records), 'WWB');
  seq = 0;
  const round = [W(0, 4096), B(), { ...W(0, 4096), flags: FLAG_RESYNC }, B()];
  assert.equal(coalesce(round).records, round);
});

/** `n` records at random: a barrier, a zeroing or a write (of a random fill, or its seq's), `grain`-aligned in `slots` places. */
function randomRecords(rand: () => number, n: number,
  o: { slots: number; grain: number; sizes: number; barriers: number; zeroes: number; fill: boolean }): JournalRecord[] {
  const rs: JournalRecord[] = [];
  for (let i = 0; i < n; i++) {
    const x = rand();
    const offset = Math.floor(rand() * o.slots) * o.grain;
    const length = (1 + Math.floor(rand() * o.sizes)) * o.grain;
    rs.push(x < o.barriers ? B() : x < o.zeroes ? Z(offset, length) : W(offset, length, o.fill ? Math.floor(rand() * 255) + 1 : undefined));
  }
  return rs;
}

/** A tiny PRNG (xorshift32), so a failure names its seed. */
function rng(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function apply(img: Buffer, rs: JournalRecord[], upTo: number): void {
  for (const r of rs) {
    if (r.seq > upTo) break;
    if (r.kind === RecordKind.Write) r.payload.copy(img, r.offset);
    else if (r.kind === RecordKind.Zeroes || r.kind === RecordKind.Trim) img.fill(0, r.offset, r.offset + r.length);
  }
}

test('a coalesced batch ends at the same image as the batch it came from (2000 seeded batches)', () => {
  for (let s = 1; s <= 2000; s++) {
    const rand = rng(s);
    seq = 0;
    const rs = randomRecords(rand, 2 + Math.floor(rand() * 40), { slots: 16, grain: 512, sizes: 4, barriers: 0.25, zeroes: 0.35, fill: true });
    const c = coalesce(rs);
    const last = [...rs].reverse().find((r) => r.kind === RecordKind.Barrier);
    if (!last) continue;
    const want = Buffer.alloc(16 * 512 + 4 * 512);
    const got = Buffer.alloc(want.length);
    apply(want, rs, last.seq);
    apply(got, c.records, last.seq);
    assert.ok(want.equals(got), `seed ${s}: the coalesced batch ends at another image`);
    for (const r of c.records) if (r.kind === RecordKind.Skip) assert.equal(r.offset, last.seq, `seed ${s}`);
    assert.deepEqual(c.records.map((r) => r.seq), rs.map((r) => r.seq), `seed ${s}: seqs stay contiguous`);
  }
});

const rec = (seq: number, opts: { barrier?: boolean; skipUntil?: number } = {}): { seq: number; barrier: boolean; skipUntil?: number; size: number } =>
  ({ seq, barrier: opts.barrier ?? false, ...(opts.skipUntil !== undefined ? { skipUntil: opts.skipUntil } : {}), size: 56 });

test('the receiver waits for a coalesced unit\'s end: part of a unit durable applies nothing inside it', () => {
  const rc = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 });
  rc.handle({ type: 'up' });
  // 1 W, 2 Skip (until 5), 3 Barrier, 4 W, 5 Barrier; 6 W, 7 Barrier (a later unit)
  rc.handle({ type: 'records', records: [rec(1), rec(2, { skipUntil: 5 }), rec(3, { barrier: true }), rec(4), rec(5, { barrier: true })] });
  // Only up to 3 made it to disk (the log filled part-way): barrier 3 is inside the unit.
  const out = rc.handle({ type: 'synced', upTo: 3, asked: 5 });
  assert.ok(!out.some((a) => a.type === 'apply'), JSON.stringify(out));
  const more = rc.handle({ type: 'synced', upTo: 5 });
  assert.deepEqual(more.filter((a) => a.type === 'apply'), [{ type: 'apply', fromSeq: 1, toSeq: 5 }]);
  rc.handle({ type: 'applied', upTo: 5 });
  rc.handle({ type: 'records', records: [rec(6), rec(7, { barrier: true })] });
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 7, asked: 7 }).filter((a) => a.type === 'apply'), [{ type: 'apply', fromSeq: 6, toSeq: 7 }]);
});

test('after a restart the receiver applies up to the last barrier no Skip reaches past, not beyond', () => {
  // Durable: 1 W, 2 B, 3 Skip (until 9), 4 B, 5 W, 6 B — the unit ending at 9 is not all here.
  const rc = new Receiver({ logged: 6, logDurable: 6, applied: 0, lastBarrier: 6, barriers: [2, 4, 6], skips: [{ seq: 3, until: 9 }] });
  assert.deepEqual(rc.handle({ type: 'up' }).filter((a) => a.type === 'apply'), [{ type: 'apply', fromSeq: 1, toSeq: 2 }]);
  rc.handle({ type: 'applied', upTo: 2 });
  rc.handle({ type: 'records', records: [rec(7), rec(8), rec(9, { barrier: true })] });
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 9, asked: 9 }).filter((a) => a.type === 'apply'), [{ type: 'apply', fromSeq: 3, toSeq: 9 }]);
});

test('a unit planned over the backlog ahead: a range rewritten batches later travels once', () => {
  seq = 0;
  // Three "batches" of the backlog: each rewrites the same 4 ranges, then flushes.
  const all: JournalRecord[] = [];
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < 4; k++) all.push(W(k * 8192, 8192, round * 10 + k + 1));
    all.push(B());
  }
  const plan = planUnit(all)!;
  assert.equal(plan.from, 1);
  assert.equal(plan.until, 15);
  assert.deepEqual([...plan.skip].sort((a, b) => a - b), [1, 2, 3, 4, 6, 7, 8, 9]);
  // The first batch alone (records 1..5) holds one barrier: on its own nothing would be
  // skipped; with the plan its writes go as Skips naming barrier 15.
  const first = applyPlan(all.slice(0, 5), plan);
  assert.equal(kinds(first.records), 'SSSSB');
  assert.ok(first.records.slice(0, 4).every((r) => r.offset === 15));
  assert.equal(first.skippedBytes, 4 * 8192);
  assert.equal(kinds(coalesce(all.slice(0, 5)).records), 'WWWWB');
  // The image at the unit's end is the same.
  const want = Buffer.alloc(4 * 8192);
  const got = Buffer.alloc(want.length);
  apply(want, all, 15);
  apply(got, applyPlan(all, plan).records, 15);
  assert.ok(want.equals(got));
  // A resync record cuts the plan short: the unit ends at the last barrier before it.
  seq = 0;
  const cut = [W(0, 512), B(), W(0, 512), B(), { ...W(0, 512), flags: FLAG_RESYNC }, B()];
  assert.equal(planUnit(cut)!.until, 4);
});

/** The rule itself, byte by byte: a record is skipped when every byte of it is written again later in the unit. */
function oracle(rs: JournalRecord[], last: number): { skip: Set<number>; bytes: number } {
  const skip = new Set<number>();
  let bytes = RECORD_HEADER_SIZE;
  for (let i = 0; i < last; i++) {
    const r = rs[i]!;
    if (r.kind === RecordKind.Barrier || r.length === 0) {
      bytes += recordSize(r.kind, r.length);
      continue;
    }
    let covered = true;
    for (let b = r.offset; b < r.offset + r.length && covered; b++) {
      covered = rs.slice(i + 1, last).some((l) => l.kind !== RecordKind.Barrier && l.offset <= b && b < l.offset + l.length);
    }
    if (covered) skip.add(r.seq);
    bytes += covered ? RECORD_HEADER_SIZE : recordSize(r.kind, r.length);
  }
  return { skip, bytes };
}

test('planUnit skips exactly what the byte-by-byte rule skips, and its unit sends at most the bound (random units; a failure names its seed)', () => {
  for (let s = 1; s <= 300; s++) {
    const rand = rng(s);
    seq = 0;
    const rs = randomRecords(rand, 5 + Math.floor(rand() * 40), { slots: 24, grain: 8, sizes: 6, barriers: 0.2, zeroes: 0.3, fill: false });
    rs.push(B());
    const bound = rand() < 0.5 ? Infinity : 200 + Math.floor(rand() * 800);
    const plan = planUnit(rs, bound);
    const barriers = rs.map((r, i) => (r.kind === RecordKind.Barrier ? i : -1)).filter((i) => i >= 0);
    if (!plan) {
      // None fits: not even the unit of the first two epochs (or there are no two).
      if (barriers.length >= 2) assert.ok(oracle(rs, barriers[1]!).bytes > bound, `seed ${s}: a unit of two epochs fits, yet none was planned`);
      continue;
    }
    const last = rs.findIndex((r) => r.seq === plan.until);
    assert.equal(rs[last]!.kind, RecordKind.Barrier, `seed ${s}`);
    assert.ok(barriers.indexOf(last) >= 1, `seed ${s}: at least two epochs`);
    const want = oracle(rs, last);
    assert.deepEqual([...plan.skip].sort((a, b) => a - b), [...want.skip].sort((a, b) => a - b), `seed ${s}: the skipped records`);
    assert.ok(want.bytes <= bound, `seed ${s}: the unit sends ${want.bytes} bytes, over the bound ${bound}`);
    if (bound === Infinity) assert.equal(last, barriers[barriers.length - 1], `seed ${s}: unbounded, the unit ends at the last barrier`);
  }
});

test('far behind, a unit ends before a stretch of rewrites rather than in its middle', () => {
  seq = 0;
  const KiB = 1024;
  // Two epochs of data written once (a copy), then 24 epochs that rewrite 16 pages of a small file (a database's fsyncs).
  const all: JournalRecord[] = [];
  for (let e = 0; e < 2; e++) {
    for (let k = 0; k < 4; k++) all.push(W((e * 4 + k) * 64 * KiB, 64 * KiB));
    all.push(B());
  }
  const copyEnd = all.length - 1;
  for (let e = 0; e < 24; e++) {
    for (let k = 0; k < 4; k++) all.push(W(1024 * KiB + ((e * 5 + k * 3) % 16) * 8 * KiB, 8 * KiB));
    all.push(B());
  }
  // The bound lets the unit reach a few epochs into the rewrites (its records' headers counted too).
  const bound = 8 * 64 * KiB + 10 * 8 * KiB + 40 * RECORD_HEADER_SIZE;
  const largest = planUnit(all, bound)!;
  assert.ok(largest.until > all[copyEnd]!.seq, 'without a cut cost: the largest unit that fits, ending among the rewrites');
  const chosen = planUnit(all, bound, 16 * KiB)!;
  assert.equal(chosen.until, all[copyEnd]!.seq, 'the copy alone: the rewrites then go in the next unit, each page once');
  assert.equal(chosen.skip.size, 0);
  // With nothing after them rewritten, the largest that fits still wins.
  const tail = all.slice(copyEnd + 1);
  assert.equal(planUnit(tail, Infinity, 16 * KiB)!.until, tail[tail.length - 1]!.seq);
});

/**
 * An end at c's cost: bytes a write put in [0, c) (a zeroing sends none) that any record
 * after c writes again, a zeroing too, over the bytes writes put before c.
 */
function rewriteCost(rs: JournalRecord[], c: number, cutCost: number): number {
  const before = new Set<number>();
  const after = new Set<number>();
  rs.forEach((r, i) => {
    if (r.kind === RecordKind.Barrier || i === c || (i < c && r.kind !== RecordKind.Write)) return;
    for (let b = r.offset; b < r.offset + r.length; b++) (i < c ? before : after).add(b);
  });
  let waste = 0;
  for (const b of before) if (after.has(b)) waste++;
  return (waste + cutCost) / (before.size + RECORD_HEADER_SIZE * (c + 1));
}

test('with a cut cost, planUnit still skips what the rule skips and fits the bound, and ends where the rewrites cost least ' +
  '(random units; a failure names its seed)', () => {
  for (let s = 1; s <= 300; s++) {
    const rand = rng(s);
    seq = 0;
    const rs = randomRecords(rand, 10 + Math.floor(rand() * 60), { slots: 24, grain: 8, sizes: 6, barriers: 0.25, zeroes: 0.3, fill: false });
    rs.push(B());
    const bound = rand() < 0.3 ? Infinity : 300 + Math.floor(rand() * 1500);
    const cutCost = Math.floor(rand() * 200);
    const largest = planUnit(rs, bound);
    const plan = planUnit(rs, bound, cutCost);
    assert.equal(plan === null, largest === null, `seed ${s}: a unit either way`);
    if (!plan || !largest) continue;
    const last = rs.findIndex((r) => r.seq === plan.until);
    const largestLast = rs.findIndex((r) => r.seq === largest.until);
    const barriers = rs.map((r, i) => (r.kind === RecordKind.Barrier ? i : -1)).filter((i) => i >= 0);
    assert.equal(rs[last]!.kind, RecordKind.Barrier, `seed ${s}`);
    assert.ok(barriers.indexOf(last) >= 1 && last <= largestLast, `seed ${s}: two epochs or more, and no later than the largest that fits`);
    const want = oracle(rs, last);
    assert.deepEqual([...plan.skip].sort((a, b) => a - b), [...want.skip].sort((a, b) => a - b), `seed ${s}: the skipped records`);
    assert.ok(want.bytes <= bound, `seed ${s}: the unit sends ${want.bytes} bytes, over the bound ${bound}`);
    // No end the largest unit allows costs less than the one chosen (to rounding).
    const best = Math.min(...barriers.filter((i) => i > barriers[0]! && i <= largestLast).map((i) => rewriteCost(rs, i, cutCost)));
    assert.ok(rewriteCost(rs, last, cutCost) <= best + 1e-9, `seed ${s}: an end at ${last} costs ${rewriteCost(rs, last, cutCost)}, the least is ${best}`);
  }
});

test('a zeroing weighs as the header it sends when a unit\'s end is chosen, whatever its range', () => {
  const KiB = 1024;
  // Ends A, B and C: A wastes 8 KiB of 72 (a page written again later), B 72 KiB of 1096
  // (the page and part of a large write), so B wastes less for what it sends; C does not fit.
  const records = (discard: boolean): JournalRecord[] => {
    seq = 0;
    return [
      ...(discard ? [Z(16 * 1024 * 1024 * KiB, 1024 * 1024 * KiB)] : []), W(0, 64 * KiB), B(),
      W(64 * KiB, 8 * KiB), B(),
      W(1024 * KiB, 1024 * KiB), B(),
      W(64 * KiB, 8 * KiB), W(1024 * KiB, 64 * KiB), W(4096 * KiB, 512 * KiB), B(),
    ];
  };
  const bound = 1100 * KiB;
  for (const discard of [false, true]) {
    const rs = records(discard);
    const barriers = rs.filter((r) => r.kind === RecordKind.Barrier).map((r) => r.seq);
    assert.equal(planUnit(rs, bound)!.until, barriers[2], 'the largest that fits: B');
    // (A discard of a GiB in the first epoch, counted at its range, would make B's and A's costs 73 and 9 KiB over a GiB: A.)
    assert.equal(planUnit(rs, bound, KiB)!.until, barriers[2], `B, not A${discard ? ', with the discard' : ''}`);
  }
});

test('bytes a unit sends that a zeroing after its end clears count as sent for nothing', () => {
  const KiB = 1024;
  seq = 0;
  // Ends A and B fit, C does not: B's unit would send 512 KiB that the next epoch zeroes.
  const rs = [
    W(0, 64 * KiB), B(),
    W(64 * KiB, 8 * KiB), B(),
    W(1024 * KiB, 512 * KiB), B(),
    Z(1024 * KiB, 512 * KiB), W(4096 * KiB, 600 * KiB), B(),
  ];
  const barriers = rs.filter((r) => r.kind === RecordKind.Barrier).map((r) => r.seq);
  assert.equal(planUnit(rs, 600 * KiB)!.until, barriers[2], 'the largest that fits: B');
  assert.equal(planUnit(rs, 600 * KiB, KiB)!.until, barriers[1], 'A: what B adds is zeroed right after it');
});
