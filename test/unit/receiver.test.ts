// The receiver state machine: durable before ack, apply only to barriers, resume.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Receiver } from '../../src/secondary/receiver.js';

const r = (seq: number, barrier = false): { seq: number; barrier: boolean; size: number } => ({ seq, barrier, size: 10 });
const fresh = (): Receiver => new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 });

test('acks only what is durable, applies only whole epochs', () => {
  const rc = fresh();
  assert.deepEqual(rc.handle({ type: 'up' }), []);
  assert.deepEqual(rc.handle({ type: 'records', records: [r(1), r(2), r(3, true), r(4)] }), [
    { type: 'append', fromSeq: 1, toSeq: 4 },
    { type: 'sync', upTo: 4 },
  ]);
  assert.deepEqual(rc.handle({ type: 'records', records: [r(5), r(6, true)] }), [{ type: 'append', fromSeq: 5, toSeq: 6 }], 'one sync at a time');
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 4 }), [
    { type: 'ack', seq: 4 },
    { type: 'sync', upTo: 6 },
    { type: 'apply', fromSeq: 1, toSeq: 3 },
  ]);
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 6 }), [{ type: 'ack', seq: 6 }], 'one apply at a time');
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 3 }), [
    { type: 'releaseLog', seq: 3 },
    { type: 'apply', fromSeq: 4, toSeq: 6 },
  ]);
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 6 }), [{ type: 'releaseLog', seq: 6 }]);
});

test('behind by several epochs: they are applied as one unit, ending at the newest barrier', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'hold', held: true }); // a checkpoint holds the replica
  rc.handle({ type: 'records', records: [r(1), r(2, true), r(3), r(4, true), r(5), r(6, true), r(7)] });
  const synced = rc.handle({ type: 'synced', upTo: 7 });
  assert.deepEqual(synced, [{ type: 'ack', seq: 7 }], 'held: acked but not applied');
  assert.deepEqual(rc.handle({ type: 'hold', held: false }), [{ type: 'apply', fromSeq: 1, toSeq: 6 }]);
});

test('reconnect: the undurable tail is dropped, resent records are skipped, gaps close the link', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'records', records: [r(1), r(2, true), r(3)] });
  rc.handle({ type: 'synced', upTo: 2 });
  rc.handle({ type: 'down' });
  assert.equal(rc.resumeAfter, 2);
  assert.deepEqual(rc.handle({ type: 'up' }), [{ type: 'truncate', afterSeq: 2 }]);
  // Record 2 is durable here and skipped; 3 was logged again after the truncate.
  assert.deepEqual(rc.handle({ type: 'records', records: [r(2, true), r(3), r(4, true)] }), [
    { type: 'append', fromSeq: 3, toSeq: 4 },
  ], 'the sync of the old link is still running: one sync at a time');
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 3 }), [{ type: 'ack', seq: 3 }, { type: 'sync', upTo: 4 }]);
  const close = rc.handle({ type: 'records', records: [r(9)] });
  assert.equal(close[0]?.type, 'close');
  assert.match((close[0] as { reason: string }).reason, /jump from 4 to 9/);
});

test('after a restart, a durable but unapplied barrier is applied', () => {
  const rc = new Receiver({ logged: 10, logDurable: 10, applied: 4, lastBarrier: 9 });
  assert.deepEqual(rc.handle({ type: 'up' }), [{ type: 'apply', fromSeq: 5, toSeq: 9 }]);
});
