// The shipper state machine: window, resume, acks, releases, protocol faults.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Shipper, type ShipperAction } from '../../src/link/shipper.js';

const recs = (from: number, to: number, size = 100): Array<{ seq: number; size: number }> =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, size }));

test('ships from the peer\'s durable point, within the window, and releases on acks', () => {
  const s = new Shipper({ windowBytes: 1000, batchBytes: 500 });
  assert.deepEqual(s.handle({ type: 'journal', lastSeq: 20 }), [], 'nothing while the link is down');
  assert.deepEqual(s.handle({ type: 'up', peerDurableSeq: 4 }), [
    { type: 'release', seq: 4 },
    { type: 'read', fromSeq: 5, maxBytes: 500, limitSeq: 20 },
  ]);
  assert.deepEqual(s.handle({ type: 'read', records: recs(5, 9) }), [
    { type: 'send', fromSeq: 5, toSeq: 9, bytes: 500 },
    { type: 'read', fromSeq: 10, maxBytes: 500, limitSeq: 20 },
  ]);
  assert.deepEqual(s.handle({ type: 'read', records: recs(10, 14) }), [{ type: 'send', fromSeq: 10, toSeq: 14, bytes: 500 }], 'window full: no more reads');
  assert.equal(s.sentUnacked, 1000);
  assert.deepEqual(s.handle({ type: 'ack', seq: 7 }), [{ type: 'release', seq: 7 }, { type: 'read', fromSeq: 15, maxBytes: 300, limitSeq: 20 }]);
  assert.equal(s.sentUnacked, 700);
  assert.deepEqual(s.handle({ type: 'ack', seq: 7 }), [], 'a repeated ack is harmless');
});

test('a reconnect resumes after what the peer holds: no gap and nothing sent twice', () => {
  const s = new Shipper({ windowBytes: 10_000, batchBytes: 10_000 });
  s.handle({ type: 'journal', lastSeq: 10 });
  s.handle({ type: 'up', peerDurableSeq: 0 });
  s.handle({ type: 'read', records: recs(1, 10) });
  s.handle({ type: 'ack', seq: 3 });
  assert.deepEqual(s.handle({ type: 'down' }), []);
  // The peer had made 6 durable before the link died; its ack was lost.
  assert.deepEqual(s.handle({ type: 'up', peerDurableSeq: 6 }), [
    { type: 'release', seq: 6 },
    { type: 'read', fromSeq: 7, maxBytes: 10_000, limitSeq: 10 },
  ]);
  // A read issued on the old link that completes now is ignored.
  const stale = new Shipper({ windowBytes: 100, batchBytes: 100 });
  stale.handle({ type: 'journal', lastSeq: 5 });
  stale.handle({ type: 'up', peerDurableSeq: 0 });
  stale.handle({ type: 'down' });
  assert.deepEqual(stale.handle({ type: 'read', records: recs(1, 1) }), []);
});

test('protocol faults close the link with a reason', () => {
  const s = new Shipper({ windowBytes: 1000, batchBytes: 1000 });
  s.handle({ type: 'journal', lastSeq: 5 });
  s.handle({ type: 'up', peerDurableSeq: 0 });
  s.handle({ type: 'read', records: recs(1, 5) });
  const close = (a: ShipperAction[]): string => (a[0]?.type === 'close' ? a[0].reason : '');
  assert.match(close(s.handle({ type: 'ack', seq: 9 })), /acked 9 but only 5 was sent/);
  s.handle({ type: 'ack', seq: 4 });
  assert.match(close(s.handle({ type: 'ack', seq: 2 })), /acks went backwards/);
  const gap = new Shipper({ windowBytes: 1000, batchBytes: 1000 });
  gap.handle({ type: 'journal', lastSeq: 5 });
  gap.handle({ type: 'up', peerDurableSeq: 0 });
  assert.match(close(gap.handle({ type: 'read', records: recs(2, 3) })), /returned record 2, expected 1/);
});

test('pause and hold live in the machine: nothing is read or sent meanwhile, acks still count, a resume starts after the newest', () => {
  const s = new Shipper({ windowBytes: 10_000, batchBytes: 10_000 });
  s.handle({ type: 'journal', lastSeq: 10 });
  s.handle({ type: 'up', peerDurableSeq: 0 });
  const run = s.run;
  s.handle({ type: 'read', records: recs(1, 6), run });
  assert.deepEqual(s.handle({ type: 'pause', paused: true }), []);
  assert.equal(s.sending, false);
  assert.deepEqual(s.handle({ type: 'read', records: recs(7, 10), run }), [], 'a read of the run before the pause is stale');
  assert.deepEqual(s.handle({ type: 'ack', seq: 4 }), [{ type: 'release', seq: 4 }], 'an ack while paused releases, reads nothing');
  assert.deepEqual(s.handle({ type: 'pause', paused: false }), [{ type: 'read', fromSeq: 5, maxBytes: 10_000, limitSeq: 10 }], 'resumes after the newest ack');
  // The peer's log fills: a Hold stops sending; its go resumes right after what it holds.
  assert.deepEqual(s.handle({ type: 'hold', held: true, after: 4 }), []);
  assert.deepEqual(s.handle({ type: 'journal', lastSeq: 12 }), [], 'held: nothing read');
  assert.deepEqual(s.handle({ type: 'hold', held: false, after: 6 }), [{ type: 'release', seq: 6 }, { type: 'read', fromSeq: 7,
    maxBytes: 10_000, limitSeq: 12 }]);
  // Paused and held at once: the go of the hold does not resume a paused volume.
  s.handle({ type: 'pause', paused: true });
  s.handle({ type: 'hold', held: true, after: 6 });
  assert.deepEqual(s.handle({ type: 'hold', held: false, after: 6 }), []);
  assert.deepEqual(s.handle({ type: 'pause', paused: false }), [{ type: 'read', fromSeq: 7, maxBytes: 10_000, limitSeq: 12 }]);
});

test('a paused volume whose link comes up releases what the peer holds and sends nothing', () => {
  const s = new Shipper({ windowBytes: 1000, batchBytes: 1000 });
  s.handle({ type: 'pause', paused: true });
  s.handle({ type: 'journal', lastSeq: 5 });
  assert.deepEqual(s.handle({ type: 'up', peerDurableSeq: 3 }), [{ type: 'release', seq: 3 }]);
  assert.deepEqual(s.handle({ type: 'pause', paused: false }), [{ type: 'read', fromSeq: 4, maxBytes: 1000, limitSeq: 5 }]);
});

test('an ack past this link\'s resume point, for records an earlier link sent, moves on instead of cutting the link', () => {
  const s = new Shipper({ windowBytes: 10_000, batchBytes: 10_000 });
  s.handle({ type: 'journal', lastSeq: 20 });
  s.handle({ type: 'up', peerDurableSeq: 0 });
  s.handle({ type: 'read', records: recs(1, 10) });
  s.handle({ type: 'down' });
  // The peer had logged 1..10 but synced only 1..4 when the new link began.
  s.handle({ type: 'up', peerDurableSeq: 4 });
  s.handle({ type: 'read', records: recs(5, 6) });
  assert.deepEqual(s.handle({ type: 'ack', seq: 10 }), [{ type: 'release', seq: 10 }, { type: 'read', fromSeq: 11, maxBytes: 10_000, limitSeq: 20 }]);
  // Beyond anything ever sent: refused.
  const close = s.handle({ type: 'ack', seq: 15 });
  assert.equal(close[0]!.type, 'close');
});
