// The online verify state machine (src/sync/verify.ts): batches, the lock's life,
// refusals, replies compared, repair, the reply timeout, a link that drops.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Verifier, VERIFY_REPLY_MS, type VerifyAction, type VerifyEvent } from '../../src/sync/verify.js';

const RS = 64 << 10; // 64 regions per 4 MiB batch
const h = (n: number): Buffer => Buffer.alloc(32, n);
const hashes = (first: number, count: number): Buffer[] => Array.from({ length: count }, (_, i) => h(first + i));
const make = (inFlight = 1): Verifier => new Verifier({ volume: 'db', maxRegions: 256, maxRegionSize: 4 << 20, inFlight });
const start = (over: Partial<Extract<VerifyEvent, { type: 'start' }>> = {}): Extract<VerifyEvent, { type: 'start' }> => ({
  type: 'start', repair: false, regions: 100, regionSize: RS, now: 0, linkUp: true, paused: false, heldByPeer: false, syncing: false, ready: true, ...over,
});
const types = (a: VerifyAction[]): string[] => a.map((x) => x.type);

test('compares batch by batch: read under the lock, ask pinned at the flush point, unlock on the reply', () => {
  const v = make();
  const a = v.handle(start());
  assert.deepEqual(a, [
    { type: 'log', level: 'info', message: 'volume db: online verify started (100 regions)' },
    { type: 'read', first: 0, count: 64 },
  ]);
  assert.deepEqual(v.handle({ type: 'tick', now: 1, ready: true }), [], 'one batch at a time');
  assert.deepEqual(v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 64), afterSeq: 17, stale: false, now: 10 }), [
    { type: 'send', first: 0, count: 64, regionSize: RS, afterSeq: 17 },
  ]);
  assert.equal(v.expects(0, RS, 64), true);
  assert.equal(v.expects(0, RS, 63), false, 'a reply of another length is not this batch\'s');
  assert.equal(v.expects(0, RS * 2, 64), false, 'nor one of another region size');
  assert.equal(v.expects(64, RS, 64), false);
  assert.deepEqual(v.handle({ type: 'reply', first: 0, hashes: hashes(0, 64), now: 20, ready: true }), [
    { type: 'unlock', first: 0 },
    { type: 'read', first: 64, count: 36 },
  ]);
  assert.equal(v.run!.checkedRegions, 64);
  v.handle({ type: 'hashed', first: 64, hashes: hashes(64, 36), afterSeq: 18, stale: false, now: 30 });
  const other = hashes(64, 36);
  other[3] = h(200);
  assert.deepEqual(types(v.handle({ type: 'reply', first: 64, hashes: other, now: 2500, ready: true })), ['unlock', 'log']);
  assert.equal(v.run!.state, 'done');
  assert.deepEqual(v.run!.differing, [67]);
  assert.equal(v.run!.message, '1 regions (64 KiB) differ: 67; run verify --repair to resync them');
  assert.equal(v.expects(64, RS, 36), false, 'nothing out once done');
});

test('no differences: done with a count and the time taken; nothing marked', () => {
  const v = make();
  v.handle(start({ regions: 10, repair: true }));
  v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 10), afterSeq: 1, stale: false, now: 0 });
  const a = v.handle({ type: 'reply', first: 0, hashes: hashes(0, 10), now: 3000, ready: true });
  assert.deepEqual(a, [{ type: 'unlock', first: 0 }, { type: 'log', level: 'info', message: 'volume db: verify found no differences in 10 regions (3 s)' }]);
  assert.equal(v.run!.state, 'done');
});

test('repair marks the regions that differ for resync', () => {
  const v = make();
  v.handle(start({ regions: 3, repair: true }));
  v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 3), afterSeq: 1, stale: false, now: 0 });
  const a = v.handle({ type: 'reply', first: 0, hashes: [h(9), h(1), h(9)], now: 0, ready: true });
  assert.deepEqual(a.slice(1), [
    { type: 'log', level: 'warn', message: 'volume db: verify found 2 regions (128 KiB) differ: 0, 2; resyncing them' },
    { type: 'mark', regions: [0, 2], reason: 'verify found 2 regions that differ on the peer' },
  ]);
});

test('refusals say why, and a refused start leaves the last run', () => {
  const v = make();
  const why = (a: VerifyAction[]): string => (a[0]?.type === 'refuse' ? a[0].reason : '');
  assert.match(why(v.handle(start({ linkUp: false }))), /link of db is down/);
  assert.match(why(v.handle(start({ paused: true }))), /shipping of db is paused; verify needs/);
  assert.match(why(v.handle(start({ heldByPeer: true }))), /paused by the peer \(a checkpoint is held there\)/);
  assert.match(why(v.handle(start({ regionSize: 8 << 20 }))), /regions of 8.0 MiB are larger than a hash request may name \(4.0 MiB\)/);
  assert.match(why(v.handle(start({ syncing: true }))), /a sync or resync of db is under way/);
  assert.equal(v.run, null);
  v.handle(start());
  assert.match(why(v.handle(start())), /a verify of db is already running \(0 of 100 regions\)/);
});

test('not ready (a round open, a long backlog, paused): no batch until a tick finds it ready', () => {
  const v = make();
  assert.deepEqual(types(v.handle(start({ ready: false }))), ['log']);
  assert.deepEqual(v.handle({ type: 'tick', now: 1, ready: false }), []);
  assert.deepEqual(v.handle({ type: 'tick', now: 2, ready: true }), [{ type: 'read', first: 0, count: 64 }]);
  // A reply while not ready unlocks and waits.
  v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 64), afterSeq: 1, stale: false, now: 3 });
  assert.deepEqual(v.handle({ type: 'reply', first: 0, hashes: hashes(0, 64), now: 4, ready: false }), [{ type: 'unlock', first: 0 }]);
  assert.deepEqual(v.handle({ type: 'tick', now: 5, ready: true }), [{ type: 'read', first: 64, count: 36 }]);
});

test('a link that drops lets the batch go, and the next link asks it again', () => {
  const v = make();
  v.handle(start());
  v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 64), afterSeq: 5, stale: false, now: 0 });
  assert.deepEqual(v.handle({ type: 'down' }), [{ type: 'unlock', first: 0 }]);
  assert.deepEqual(v.handle({ type: 'down' }), [], 'nothing held');
  assert.equal(v.expects(0, RS, 64), false, 'a late reply of the old link is not taken');
  assert.deepEqual(v.handle({ type: 'tick', now: 1, ready: true }), [{ type: 'read', first: 0, count: 64 }]);
  // A read that ends after its link is gone is let go at once, and read again.
  assert.deepEqual(v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 64), afterSeq: 6, stale: true, now: 2 }), [{ type: 'unlock', first: 0 }]);
  assert.deepEqual(v.handle({ type: 'tick', now: 3, ready: true }), [{ type: 'read', first: 0, count: 64 }]);
  assert.equal(v.run!.state, 'running');
});

test('no reply within the timeout: the verify stops, the lock goes, the link is closed', () => {
  const v = make();
  v.handle(start());
  v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 64), afterSeq: 5, stale: false, now: 1000 });
  assert.deepEqual(v.handle({ type: 'tick', now: 1000 + VERIFY_REPLY_MS, ready: true }), [], 'not yet');
  const a = v.handle({ type: 'tick', now: 1001 + VERIFY_REPLY_MS, ready: true });
  assert.deepEqual(types(a), ['unlock', 'log', 'close']);
  assert.equal(v.run!.state, 'failed');
  assert.match(v.run!.message, /did not answer within 30 s/);
  assert.deepEqual(a[2], { type: 'close', reason: 'volume db: the peer did not answer a verify request in 30 s' });
  assert.equal(v.expects(0, RS, 64), false);
  assert.deepEqual(v.handle({ type: 'tick', now: 2_000_000, ready: true }), [], 'a failed run sends nothing more');
  assert.deepEqual(types(v.handle(start({ now: 3_000_000 }))), ['log', 'read'], 'a new verify may start');
});

test('a read that fails ends the verify, saying which regions', () => {
  const v = make();
  v.handle(start());
  assert.deepEqual(v.handle({ type: 'read-failed', first: 0, message: 'EIO', now: 5 }), [
    { type: 'log', level: 'error', message: 'volume db: verify reading regions 0..63 failed: EIO' },
  ]);
  assert.equal(v.run!.state, 'failed');
  assert.deepEqual(v.handle({ type: 'tick', now: 1, ready: true }), []);
});

test('batches follow the region size and the request\'s limit', () => {
  const small = new Verifier({ volume: 'db', maxRegions: 256, maxRegionSize: 4 << 20 });
  assert.deepEqual(small.handle(start({ regionSize: 4096, regions: 5000 }))[1], { type: 'read', first: 0, count: 256 });
  const big = new Verifier({ volume: 'db', maxRegions: 256, maxRegionSize: 4 << 20 });
  assert.deepEqual(big.handle(start({ regionSize: 4 << 20, regions: 5 }))[1], { type: 'read', first: 0, count: 1 });
});

test('several batches out: up to the bound, answered in any order, all asked again after a drop, differences sorted', () => {
  const v = make(4);
  const reads = v.handle(start({ regions: 300 })).filter((a) => a.type === 'read');
  assert.deepEqual(reads, [0, 64, 128, 192].map((first) => ({ type: 'read', first, count: 64 })));
  assert.deepEqual(v.handle({ type: 'tick', now: 1, ready: true }), [], 'four out: no fifth');
  assert.deepEqual(types(v.handle({ type: 'hashed', first: 128, hashes: hashes(128, 64), afterSeq: 3, stale: false, now: 2 })), ['send']);
  assert.deepEqual(types(v.handle({ type: 'hashed', first: 0, hashes: hashes(0, 64), afterSeq: 3, stale: false, now: 2 })), ['send']);
  assert.equal(v.expects(128, RS, 64) && v.expects(0, RS, 64) && !v.expects(64, RS, 64), true, 'only batches asked are expected');
  const diff = hashes(128, 64);
  diff[1] = h(250);
  assert.deepEqual(v.handle({ type: 'reply', first: 128, hashes: diff, now: 3, ready: true }), [
    { type: 'unlock', first: 128 }, { type: 'read', first: 256, count: 44 },
  ]);
  // The link drops: the batch asked goes at once, reads under way when they end; all four are asked again, 128 is not.
  assert.deepEqual(v.handle({ type: 'down' }), [{ type: 'unlock', first: 0 }]);
  assert.deepEqual(v.handle({ type: 'hashed', first: 64, hashes: hashes(64, 64), afterSeq: 4, stale: true, now: 4 }), [{ type: 'unlock', first: 64 }]);
  assert.equal(v.expects(0, RS, 64), false, 'a late reply of the old link is not taken');
  const again = v.handle({ type: 'tick', now: 5, ready: true }).map((a) => (a.type === 'read' ? [a.first, a.count] : []));
  assert.deepEqual(again, [[0, 64], [64, 64], [192, 64], [256, 44]]);
  for (const [first, count] of [[0, 64], [64, 64], [192, 64], [256, 44]] as const) {
    v.handle({ type: 'hashed', first, hashes: hashes(first, count), afterSeq: 5, stale: false, now: 6 });
  }
  const late = hashes(0, 64);
  late[9] = h(251);
  v.handle({ type: 'reply', first: 192, hashes: hashes(192, 64), now: 7, ready: true });
  v.handle({ type: 'reply', first: 0, hashes: late, now: 7, ready: true });
  v.handle({ type: 'reply', first: 64, hashes: hashes(64, 64), now: 7, ready: true });
  assert.equal(v.run!.state, 'running', 'region 256 is out still');
  const end = v.handle({ type: 'reply', first: 256, hashes: hashes(256, 44), now: 9, ready: true });
  assert.deepEqual(types(end), ['unlock', 'log']);
  assert.deepEqual([v.run!.state, v.run!.checkedRegions, v.run!.differing], ['done', 300, [9, 129]], 'each region compared once, the differences in order');
});

test('a batch that lay in a hole here: the next span the most regions a request may name; one with data brings them back to 4 MiB', () => {
  const v = make();
  v.handle(start({ regions: 1000 }));
  const hashed = (first: number, count: number, readBytes: number): VerifyAction[] =>
    v.handle({ type: 'hashed', first, hashes: hashes(first, count), afterSeq: 1, stale: false, now: 1, readBytes });
  const reply = (first: number, count: number): VerifyAction[] => v.handle({ type: 'reply', first, hashes: hashes(first, count), now: 2, ready: true });
  hashed(0, 64, 0);
  assert.deepEqual(reply(0, 64).at(-1), { type: 'read', first: 64, count: 256 }, 'after a hole: 256 regions (16 MiB)');
  hashed(64, 256, 0);
  assert.deepEqual(reply(64, 256).at(-1), { type: 'read', first: 320, count: 256 }, 'still in holes');
  hashed(320, 256, 64 << 10);
  assert.deepEqual(reply(320, 256).at(-1), { type: 'read', first: 576, count: 64 }, 'data found: 4 MiB again');
  hashed(576, 64, 1 << 20);
  assert.deepEqual(reply(576, 64).at(-1), { type: 'read', first: 640, count: 64 });
  assert.equal(v.run!.checkedRegions, 640);
});
