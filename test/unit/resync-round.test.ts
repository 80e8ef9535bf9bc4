// The primary's resync round and first-sync comparison as pure state (src/sync/round.ts,
// src/sync/seeding.ts): which run goes next, what leaves the bitmap after a sync, when
// a round is complete, how fast the pump may go, which regions a hash may clear.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResyncRound, pumpStep, type PumpFigures } from '../../src/sync/round.js';
import { Seeding, SEED_ASK_BYTES } from '../../src/sync/seeding.js';
import { sharedHoleRegions } from '../../src/sync/region-hashes.js';

const RS = 4096;

test('runs: contiguous dirty regions not handed yet, within the byte bound, then the end once all are durable', () => {
  const r = new ResyncRound(null);
  assert.equal(r.canResync, false);
  r.open(10, 6 * RS, 1000);
  assert.deepEqual([r.start, r.endSeq, r.totalBytes, r.startedAt], [10, 0, 6 * RS, 1000]);
  const dirty = [2, 3, 4, 5, 9, 10];
  // A run stops where one more region would pass maxBytes.
  assert.deepEqual(r.nextRun(dirty, RS, 3 * RS, false), { type: 'run', first: 2, count: 3 });
  assert.deepEqual(r.nextRun(dirty, RS, 3 * RS - 1, false), { type: 'run', first: 2, count: 2 });
  assert.deepEqual(r.nextRun(dirty, RS, 100 * RS, false), { type: 'run', first: 2, count: 4 }, 'a gap ends a run');
  assert.deepEqual(r.nextRun(dirty, RS, RS, false), { type: 'run', first: 2, count: 1 }, 'at least one region');
  r.handedOver(11, 2, 4);
  assert.equal(r.isHanded(3), true);
  assert.deepEqual(r.nextRun(dirty, RS, 100 * RS, false), { type: 'run', first: 9, count: 2 }, 'handed regions are skipped');
  r.handedOver(12, 9, 2);
  assert.deepEqual(r.nextRun(dirty, RS, 100 * RS, false), { type: 'wait' }, 'all handed: wait for them to be durable');
  assert.equal(r.leftBytes(dirty.length, RS), 0);
  assert.equal(r.unsettled(10), false, 'nothing handed is journaled up to 10');
  assert.equal(r.unsettled(11), true);
  // A sync covers record 11: its regions leave the bitmap.
  assert.deepEqual(r.settle(11), [2, 3, 4, 5]);
  assert.deepEqual(r.settle(11), []);
  assert.deepEqual(r.nextRun([9, 10], RS, 100 * RS, false), { type: 'wait' });
  assert.deepEqual(r.settle(12), [9, 10]);
  assert.deepEqual(r.nextRun([], RS, 100 * RS, false), { type: 'end' });
});

test('a round is complete once its end is durable, released (the peer holds it) and no region is left', () => {
  const r = new ResyncRound(null);
  r.open(5, RS, 0);
  assert.equal(r.complete(100, 100, 0), false, 'no end appended yet');
  r.endSeq = 20;
  assert.equal(r.complete(19, 19, 0), false);
  assert.equal(r.complete(20, 19, 0), false, 'durable here, not yet acked by the peer');
  assert.equal(r.complete(20, 20, 1), false, 'a region is marked again');
  assert.equal(r.complete(20, 20, 0), true);
  r.close();
  assert.deepEqual([r.start, r.endSeq], [0, 0]);
});

test('an overflow forgets the runs handed over; a fold drops the round', () => {
  const r = new ResyncRound(null);
  r.open(5, 4 * RS, 0);
  r.handedOver(6, 0, 2);
  r.endSeq = 9;
  r.forgetRuns();
  assert.deepEqual([r.start, r.endSeq, r.isHanded(0), r.unsettled(100)], [5, 0, false, false]);
  assert.deepEqual(r.nextRun([0, 1], RS, 100 * RS, false), { type: 'run', first: 0, count: 2 }, 'handed again from the start');
  assert.equal(r.leftBytes(2, RS), 2 * RS);
  r.drop();
  assert.equal(r.start, 0);
  assert.equal(r.leftBytes(2, RS), 0, 'no round: nothing left to send');
  assert.throws(() => r.writeMark({ startSeq: 1, initial: false }), /resync needs a round store/);
});

test('while the first sync compares by hash, no run goes (but an empty bitmap still ends the round)', () => {
  const r = new ResyncRound(null);
  r.open(1, 2 * RS, 0);
  assert.deepEqual(r.nextRun([0, 1], RS, 100 * RS, true), { type: 'wait' });
  assert.deepEqual(r.nextRun([], RS, 100 * RS, true), { type: 'end' });
});

test('the pump: a quarter of the journal, twice the window, two seconds of a capped link; runs within an epoch', () => {
  const f: PumpFigures = { journalCapacity: 64 << 20, backlogBytes: 0, windowBytes: 32 << 20, rate: null, regionSize: 64 << 10, maxEpochBytes: 16 << 20 };
  assert.equal(pumpStep(f), 1 << 20, 'RESYNC_STEP_BYTES');
  assert.equal(pumpStep({ ...f, backlogBytes: (16 << 20) + 1 }), null, 'past a quarter of the journal: wait');
  assert.equal(pumpStep({ ...f, backlogBytes: 16 << 20 }), 1 << 20);
  assert.equal(pumpStep({ ...f, windowBytes: 1 << 20, backlogBytes: (2 << 20) + 1 }), null, 'past twice the window');
  // 1 MB/s: the limit is 2 MB ahead of live writes, a step a quarter of it.
  assert.equal(pumpStep({ ...f, rate: 1_000_000 }), 500_000);
  assert.equal(pumpStep({ ...f, rate: 1_000_000, backlogBytes: 2_000_001 }), null);
  // A very slow link: at least one region.
  assert.equal(pumpStep({ ...f, rate: 1000 }), 64 << 10);
  assert.equal(pumpStep({ ...f, maxEpochBytes: 256 << 10 }), 256 << 10, 'a run fits the peer\'s receive log whole');
});

/** Every region still marked. */
const all = (r: number): number => r;

test('seeding: asks from where the comparison is, clears only regions no record of the round touches', () => {
  const touched = new Set<number>();
  const set = { mark: (o: number, l: number) => { for (let r = Math.floor(o / RS); r * RS < o + l; r++) touched.add(r); }, has: (r: number) => touched.has(r) };
  const s = new Seeding();
  assert.equal(s.nextAsk(RS, 10 * RS, 256, false, all), null, 'not comparing');
  s.pending = true;
  s.begin(s.pending, set);
  s.pending = false;
  assert.equal(s.active, true);
  assert.deepEqual(s.nextAsk(RS, 10 * RS, 256, false, all), { type: 'hash', first: 0, count: 10 });
  assert.equal(s.nextAsk(RS, 10 * RS, 256, false, all), null, 'one request out at most by default');
  s.linkDown(); // (its reply will not come: asked again)
  assert.deepEqual(s.nextAsk(RS, 5000 * RS, 256, false, all), { type: 'hash', first: 0, count: 256 }, 'the request\'s limit');
  s.linkDown();
  assert.deepEqual(s.nextAsk(1 << 20, 5000 * (1 << 20), 256, false, all), { type: 'hash', first: 0, count: SEED_ASK_BYTES / (1 << 20) });
  s.linkDown();
  assert.equal(s.accepts(0, RS, RS), false, 'nothing asked');
  assert.deepEqual(s.nextAsk(RS, 10 * RS, 6, false, all), { type: 'hash', first: 0, count: 6 });
  s.touch(2 * RS, 10);
  assert.equal(s.comparable(1, true, false), true);
  assert.equal(s.comparable(1, false, false), false, 'not marked: nothing to clear');
  assert.equal(s.comparable(1, true, true), false, 'handed to the journal');
  assert.equal(s.comparable(2, true, false), false, 'touched by a record of the round');
  assert.equal(s.accepts(0, RS, RS), true);
  assert.equal(s.accepts(4, RS, RS), false, 'not where the comparison is');
  assert.equal(s.accepts(0, 2 * RS, RS), false, 'another region size');
  s.compared(0, 6, 3, RS, 10);
  assert.deepEqual([s.hashedUpTo, s.seededBytes, s.active], [6, 3 * RS, true]);
  assert.deepEqual(s.nextAsk(RS, 10 * RS, 256, false, all), { type: 'hash', first: 6, count: 4 });
  s.heard(4);
  assert.equal(s.hashBytes, 4 * 32 + 40);
  s.compared(6, 4, 0, RS, 10);
  assert.equal(s.active, false, 'every region compared');
  assert.equal(s.accepts(10, RS, RS), false);
});

test('seeding with several requests out: asked ahead, compared in order, a map only once none is out, all let go with the link', () => {
  const s = new Seeding();
  const size = 1000 * RS;
  s.begin(true, { mark: () => undefined, has: () => false });
  const marked = new Set([3, 4, 5, 200, 201, 900]);
  const next = (from: number): number => [...marked].sort((a, b) => a - b).find((r) => r >= from) ?? 1000;
  assert.deepEqual(s.nextAsk(RS, size, 100, true, next, 3), { type: 'map', offset: 0, length: size });
  s.mapped(1000, 0, RS);
  assert.deepEqual(s.nextAsk(RS, size, 100, true, next, 3), { type: 'hash', first: 3, count: 100 });
  assert.deepEqual(s.nextAsk(RS, size, 100, true, next, 3), { type: 'hash', first: 200, count: 100 }, 'from where the last one reaches');
  assert.deepEqual(s.nextAsk(RS, size, 100, true, next, 3), { type: 'hash', first: 900, count: 100 });
  assert.equal(s.nextAsk(RS, size, 100, true, next, 3), null, 'three out');
  assert.deepEqual([s.asksOut, s.nextCount, s.askedUpTo, s.hashedUpTo], [3, 100, 1000, 3]);
  assert.equal(s.accepts(200, RS, RS), false, 'the first out is compared first');
  assert.equal(s.asked(200), true);
  s.compared(3, 100, 3, RS, 1000);
  assert.equal(s.hashedUpTo, 103, 'regions below it may be sent');
  assert.equal(s.accepts(200, RS, RS), true);
  assert.throws(() => s.compared(900, 100, 0, RS, 1000), /invariant broken/, 'out of order');
  s.linkDown();
  assert.deepEqual([s.asksOut, s.askedUpTo], [0, 103]);
  assert.deepEqual(s.nextAsk(RS, size, 100, true, next, 3), { type: 'hash', first: 200, count: 100 }, 'asked again on the next link');
  s.compared(200, 100, 2, RS, 1000);
  assert.deepEqual(s.nextAsk(RS, size, 100, true, next, 3), { type: 'hash', first: 900, count: 100 });
  s.compared(900, 100, 1, RS, 1000);
  assert.deepEqual([s.active, s.seededBytes], [false, 6 * RS]);
});

test('seeding stops when records of the round already reached the peer', () => {
  const s = new Seeding();
  s.begin(true, { mark: () => undefined, has: () => false });
  s.stop();
  assert.equal(s.active, false);
  assert.equal(s.nextAsk(RS, 10 * RS, 256, true, all), null);
});

test('seeding: a reply accepted by one comparison is not taken by the next, even where the next one is', () => {
  // A step accepts its reply, then awaits the range lock and its reads; meanwhile the
  // round was folded away and another begun. Asked again with the comparison that
  // accepted it, the reply is refused, though the new comparison waits at region 0 too.
  const s = new Seeding();
  s.begin(true, { mark: () => undefined, has: () => false });
  assert.equal(s.acceptsMap(0, RS, RS), true);
  s.nextAsk(RS, 10 * RS, 256, false, all);
  assert.equal(s.accepts(0, RS, RS), true);
  assert.equal(s.acceptsMap(0, RS, RS), false, 'not while hashes are asked');
  const asked = s.comparison;
  s.begin(false, { mark: () => undefined, has: () => false });
  assert.equal(s.accepts(0, RS, RS, asked), false, 'the next round does not compare');
  s.begin(true, { mark: () => undefined, has: () => false });
  assert.equal(s.accepts(0, RS, RS), false, 'the new comparison has asked nothing yet');
  s.nextAsk(RS, 10 * RS, 256, false, all);
  assert.equal(s.accepts(0, RS, RS), true, 'a reply to the new comparison');
  assert.equal(s.accepts(0, RS, RS, asked), false, 'the old comparison\'s reply');
  assert.equal(s.acceptsMap(0, RS, RS, asked), false);
  const now = s.comparison;
  s.stop();
  assert.equal(s.accepts(0, RS, RS, now), false, 'stopped: records of the round reached the peer');
});

test('seeding on a version 2 link: the peer\'s holes first, then hashes of the mapped regions still marked', () => {
  const s = new Seeding();
  const size = 1000 * RS + 100; // the last region ends short
  s.begin(true, { mark: () => undefined, has: (r) => r === 7 });
  assert.deepEqual(s.nextAsk(RS, size, 256, true, all), { type: 'map', offset: 0, length: size });
  assert.equal(s.acceptsMap(0, RS, RS), true);
  assert.equal(s.acceptsMap(RS, RS, RS), false, 'not where the map is');
  // The map reached region 600: regions 0..599 may be hashed, from the first still marked.
  s.mapped(600, 590, RS);
  assert.equal(s.seededBytes, 590 * RS);
  const marked = new Set([5, 7, 9, 300, 599, 800]);
  const next = (from: number): number => [...marked].sort((a, b) => a - b).find((r) => r >= from) ?? 1001;
  assert.deepEqual(s.nextAsk(RS, size, 256, true, next), { type: 'hash', first: 5, count: 256 });
  s.compared(5, 256, 0, RS, 1001);
  assert.deepEqual(s.nextAsk(RS, size, 256, true, next), { type: 'hash', first: 300, count: 256 }, 'unmarked regions are skipped');
  s.compared(300, 256, 0, RS, 1001);
  assert.deepEqual(s.nextAsk(RS, size, 256, true, next), { type: 'hash', first: 599, count: 1 }, 'no further than the map');
  s.compared(599, 1, 1, RS, 1001);
  assert.deepEqual(s.nextAsk(RS, size, 256, true, next), { type: 'map', offset: 600 * RS, length: size - 600 * RS });
  // A map that made no progress still moves on by a region.
  s.mapped(0, 0, RS);
  assert.equal(s.mappedUpTo, 601);
  s.mapped(1001, 0, RS);
  assert.deepEqual(s.nextAsk(RS, size, 256, true, next), { type: 'hash', first: 800, count: 201 });
  s.compared(800, 201, 0, RS, 1001);
  assert.equal(s.active, false, 'every region compared');
  // Regions the peer's map shows as holes where this side has data are known to differ.
  const d = new Seeding();
  const differ = new Set<number>();
  const mark = (o: number, l: number): void => {
    for (let r = o / RS; r < (o + l) / RS; r++) differ.add(r);
  };
  d.begin(true, { mark: () => undefined, has: () => false }, { mark, has: (r) => differ.has(r) });
  d.differs(4 * RS, 2 * RS);
  assert.deepEqual([d.knownToDiffer(3), d.knownToDiffer(4), d.knownToDiffer(5), d.knownToDiffer(6)], [false, true, true, false]);
  assert.equal(new Seeding().knownToDiffer(4), false, 'no set: nothing known');
  // A link back at version 1 hashes everything from where the comparison is.
  const t = new Seeding();
  t.begin(true, { mark: () => undefined, has: () => false });
  t.mapped(10, 0, RS);
  assert.deepEqual(t.nextAsk(RS, size, 256, false, all), { type: 'hash', first: 0, count: 256 });
});

test('sharedHoleRegions: regions wholly inside a hole of both maps', () => {
  const a = [{ offset: 0, length: 10 * RS }, { offset: 20 * RS, length: 5 * RS + 100 }];
  const b = [{ offset: RS / 2, length: 4 * RS }, { offset: 6 * RS, length: 30 * RS }];
  // [RS/2, 4.5 RS) holds regions 1..3; [6 RS, 10 RS) 6..9; [20 RS, 25 RS + 100) 20..24 (the volume goes on).
  assert.deepEqual(sharedHoleRegions(a, b, RS, 100 * RS), [{ first: 1, end: 4 }, { first: 6, end: 10 }, { first: 20, end: 25 }]);
  // The volume ends at 25 RS + 100: region 25 ends short inside both holes.
  assert.deepEqual(sharedHoleRegions(a, b, RS, 25 * RS + 100).pop(), { first: 20, end: 26 });
  assert.deepEqual(sharedHoleRegions(a, [], RS, 100 * RS), []);
});
