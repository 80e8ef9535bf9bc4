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
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 4, asked: 4 }), [
    { type: 'ack', seq: 4 },
    { type: 'sync', upTo: 6 },
    { type: 'apply', fromSeq: 1, toSeq: 3 },
  ]);
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 6, asked: 6 }), [{ type: 'ack', seq: 6 }], 'one apply at a time');
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
  const synced = rc.handle({ type: 'synced', upTo: 7, asked: 7 });
  assert.deepEqual(synced, [{ type: 'ack', seq: 7 }], 'held: acked but not applied');
  assert.deepEqual(rc.handle({ type: 'hold', held: false }), [{ type: 'apply', fromSeq: 1, toSeq: 6 }]);
});

test('reconnect: the logged tail is kept, resent records are skipped, gaps close the link', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'records', records: [r(1), r(2, true), r(3)] });
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 2, asked: 3 }), [{ type: 'ack', seq: 2 }, { type: 'sync', upTo: 3 },
    { type: 'apply', fromSeq: 1, toSeq: 2 }]);
  rc.handle({ type: 'down' });
  assert.equal(rc.resumeAfter, 2, 'the primary resumes after what is durable here');
  // The sync of record 3 is still running from the old link: nothing to do yet.
  assert.deepEqual(rc.handle({ type: 'up' }), []);
  // Records 2 and 3 are in the log already (2 durable, 3 logged) and skipped.
  assert.deepEqual(rc.handle({ type: 'records', records: [r(2, true), r(3), r(4, true)] }), [
    { type: 'append', fromSeq: 4, toSeq: 4 },
  ], 'one sync at a time');
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 3, asked: 3 }), [{ type: 'ack', seq: 3 }, { type: 'sync', upTo: 4 }]);
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 4, asked: 4 }), [{ type: 'ack', seq: 4 }], 'the unit 1..2 is still being applied');
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 2 }), [{ type: 'releaseLog', seq: 2 }, { type: 'apply', fromSeq: 3, toSeq: 4 }]);
  // A resend of what is durable here is acked again (the first ack may have died with a link).
  assert.deepEqual(rc.handle({ type: 'records', records: [r(4, true)] }), [{ type: 'ack', seq: 4 }]);
  const close = rc.handle({ type: 'records', records: [r(9)] });
  assert.equal(close[0]?.type, 'close');
  assert.match((close[0] as { reason: string }).reason, /jump from 4 to 9/);
});

test('reconnect with no sync running: the logged tail is synced and acked', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'records', records: [r(1), r(2, true)] });
  rc.handle({ type: 'down' });
  rc.handle({ type: 'syncFailed' }); // the sync failed with the link
  assert.deepEqual(rc.handle({ type: 'up' }), [{ type: 'sync', upTo: 2 }]);
});

test('after a restart, a durable but unapplied barrier is applied', () => {
  const rc = new Receiver({ logged: 10, logDurable: 10, applied: 4, lastBarrier: 9 });
  assert.deepEqual(rc.handle({ type: 'up' }), [{ type: 'apply', fromSeq: 5, toSeq: 9 }]);
});

test('a sync result older than the newest sync never rolls the log back', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'records', records: [r(1), r(2, true)] }); // sync asked 2
  // The adapter's own sync (a round opening) reports first; then a newer record arrives.
  rc.handle({ type: 'synced', upTo: 2 });
  rc.handle({ type: 'records', records: [r(3)] });
  // The receiver's sync asked for 2 reports 1: stale (2 is durable already), not a failed write.
  rc.handle({ type: 'synced', upTo: 1, asked: 2 });
  assert.equal(rc.logged, 3, 'record 3 stays logged');
  assert.deepEqual(rc.handle({ type: 'records', records: [r(4, true)] }).map((a) => a.type), ['append'], 'no gap: 4 follows 3');
  assert.equal(rc.logged, 4);
});

test('a checkpoint with a full log pauses shipping; its release applies, then resumes after the durable point', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'hold', held: true });
  rc.handle({ type: 'records', records: [r(1), r(2, true), r(3)] });
  rc.handle({ type: 'synced', upTo: 3, asked: 3 });
  // The log took record 4 only in part: full.
  rc.handle({ type: 'records', records: [r(4), r(5, true)] });
  assert.deepEqual(rc.handle({ type: 'appendStopped', upTo: 4, full: true }), [
    { type: 'holdShipping', held: true, after: 3 },
  ]);
  // What still arrives before the primary hears it is dropped, not a gap.
  assert.deepEqual(rc.handle({ type: 'records', records: [r(6)] }), []);
  rc.handle({ type: 'synced', upTo: 4, asked: 5 }); // the sync asked for 5 covers what the log took
  // Release: the held unit is applied; once it is (and its log space freed), shipping resumes.
  assert.deepEqual(rc.handle({ type: 'hold', held: false }), [{ type: 'apply', fromSeq: 1, toSeq: 2 }]);
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 2 }), [{ type: 'releaseLog', seq: 2 }]);
  assert.deepEqual(rc.handle({ type: 'released' }), [{ type: 'holdShipping', held: false, after: 4 }]);
  // A stale frame sent before the pause was heard is dropped; the resend is taken.
  assert.deepEqual(rc.handle({ type: 'records', records: [r(7)] }), []);
  assert.deepEqual(rc.handle({ type: 'records', records: [r(5, true), r(6)] }).map((a) => a.type), ['append', 'sync']);
});

test('an apply unit ends at the first exposable barrier a unit\'s bytes ahead, so a checkpoint waits for one bounded unit (APPLY_UNIT_BYTES)', () => {
  const rc = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 }, { unitBytes: 25 });
  rc.handle({ type: 'up' });
  rc.handle({ type: 'hold', held: true });
  // 10 bytes a record: barriers at 20, 40, 60, 80 bytes.
  rc.handle({ type: 'records', records: [r(1), r(2, true), r(3), r(4, true), r(5), r(6, true), r(7), r(8, true)] });
  rc.handle({ type: 'synced', upTo: 8, asked: 8 });
  assert.deepEqual(rc.handle({ type: 'hold', held: false }), [{ type: 'apply', fromSeq: 1, toSeq: 4 }], 'stops at the first barrier 25 bytes ahead');
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 4 }), [{ type: 'releaseLog', seq: 4 }, { type: 'apply', fromSeq: 5, toSeq: 8 }]);
  assert.equal(rc.newestExposable, 8);
});

test('a unit never ends inside a coalesced unit, however large (Skip records hold the barriers inside it)', () => {
  const rc = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 }, { unitBytes: 15 });
  rc.handle({ type: 'up' });
  rc.handle({ type: 'hold', held: true });
  rc.handle({ type: 'records', records: [{ seq: 1, barrier: false, size: 10, skipUntil: 6 }, r(2, true), r(3), r(4, true), r(5),
    r(6, true), r(7), r(8, true)] });
  rc.handle({ type: 'synced', upTo: 8, asked: 8 });
  assert.equal(rc.newestExposable, 8);
  assert.deepEqual(rc.handle({ type: 'hold', held: false }), [{ type: 'apply', fromSeq: 1, toSeq: 6 }],
    'the coalesced unit goes whole, then the bound applies');
});

test('an apply reported that was never asked for breaks an invariant', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  assert.throws(() => rc.handle({ type: 'applied', upTo: 1 }), /invariant broken: an apply up to 1 finished but none was asked for/);
});

test('the apply after a round\'s last part ends at a barrier, not as another round part (found by the unit-ends-at-a-barrier assertion)', () => {
  const rc = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0, round: true });
  rc.handle({ type: 'up' });
  rc.handle({ type: 'records', records: [r(1), r(2), { seq: 3, barrier: true, roundEnd: true, size: 10 }] });
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 3, asked: 3 }), [{ type: 'ack', seq: 3 }, { type: 'apply', fromSeq: 1, toSeq: 3,
    round: true, endsRound: true }]);
  // A write after the round (its epoch still open) arrives while the round's end is applied.
  rc.handle({ type: 'records', records: [r(4)] });
  rc.handle({ type: 'synced', upTo: 4, asked: 4 });
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 3 }), [{ type: 'releaseLog', seq: 3 }], 'record 4 waits for its barrier');
  rc.handle({ type: 'released' });
  assert.deepEqual(rc.handle({ type: 'roundClosed' }), [], 'the adapter\'s own round-closed changes nothing');
  rc.handle({ type: 'records', records: [r(5, true)] });
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 5, asked: 5 }), [{ type: 'ack', seq: 5 }, { type: 'apply', fromSeq: 4, toSeq: 5 }]);
});

test('a sync asked before a full log cut the link does not take the records resent after it for lost', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  // 1..3 logged and synced; 4..6 handed to the log, which fills at 3.
  rc.handle({ type: 'records', records: [r(1), r(2), r(3, true)] });
  rc.handle({ type: 'synced', upTo: 3, asked: 3 });
  assert.deepEqual(rc.handle({ type: 'records', records: [r(4), r(5), r(6, true)] }), [{ type: 'append', fromSeq: 4, toSeq: 6 }, { type: 'sync', upTo: 6 }]);
  rc.handle({ type: 'appendStopped', upTo: 3, full: true });
  rc.handle({ type: 'down' });
  // The link is back; the same records come again and go into the log, while the old sync is still out.
  rc.handle({ type: 'up' });
  assert.deepEqual(rc.handle({ type: 'records', records: [r(4), r(5), r(6, true)] }), [{ type: 'append', fromSeq: 4, toSeq: 6 }]);
  // The old sync reports what the log held then: the new append is not taken for failed,
  // and a new sync covers it (before the fix: nothing more was synced or acked, ever).
  const after = rc.handle({ type: 'synced', upTo: 3, asked: 6 });
  assert.deepEqual(after.filter((a) => a.type === 'sync'), [{ type: 'sync', upTo: 6 }]);
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 6, asked: 6 }).filter((a) => a.type === 'ack'), [{ type: 'ack', seq: 6 }]);
});

test('a unit that failed waits (no busy retry) until retryApply (a promote) or the next link; applyFailed says so meanwhile', () => {
  const rc = fresh();
  rc.handle({ type: 'up' });
  rc.handle({ type: 'records', records: [r(1), r(2, true)] });
  assert.deepEqual(rc.handle({ type: 'synced', upTo: 2, asked: 2 }), [{ type: 'ack', seq: 2 }, { type: 'apply', fromSeq: 1, toSeq: 2 }]);
  assert.equal(rc.applyFailed, false);
  assert.deepEqual(rc.handle({ type: 'applyFailed' }), []);
  assert.equal(rc.applyFailed, true, 'the replica may hold part of the unit');
  assert.deepEqual(rc.handle({ type: 'hold', held: false }), [], 'no retry against a full disk on its own');
  assert.deepEqual(rc.handle({ type: 'retryApply' }), [{ type: 'apply', fromSeq: 1, toSeq: 2 }]);
  assert.equal(rc.applyFailed, false);
  assert.deepEqual(rc.handle({ type: 'applied', upTo: 2 }), [{ type: 'releaseLog', seq: 2 }]);
});
