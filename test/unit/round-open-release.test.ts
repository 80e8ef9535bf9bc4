// A Resync that arrives while a checkpoint is held opens its round after the release,
// once what the receive log gathered meanwhile is applied (docs/INVARIANTS.md,
// invariant 3). The release hands that catch-up to the receiver only after it removed
// the checkpoint's file, so a round that woke at the release itself found records
// before it unapplied and failed ("could not apply records 3..4 before the round"): the
// link closed and came again. The round's opening also waits for a link that attaches
// meanwhile and for a receive log reopened meanwhile (the replication simulation's
// failovers found that one, seed 490: the round jumped the new log while its recovery
// ran). Run for every point of a reattach at which the release can come.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onViolation } from '../../src/invariants/assert.js';
import { Journal } from '../../src/journal/journal.js';
import { KEEP_PREFIX } from '../../src/journal/recovery.js';
import { RecordKind, type JournalRecord } from '../../src/journal/record.js';
import { silentLogger } from '../../src/log/log.js';
import { SYNCED_FILE } from '../../src/secondary/replica-round.js';
import { Replica } from '../../src/secondary/replica.js';
import { MemDisk, MemStore, Rng, Scheduler, settleOn } from '../sim/disk-model.js';

const BLOCK = 4096;
const SIZE = 4 * BLOCK;

function write(seq: number, epoch: number, block: number, fill: number): JournalRecord {
  return { kind: RecordKind.Write, flags: 0, seq, epoch, offset: block * BLOCK, length: BLOCK, time: 0, payload: Buffer.alloc(BLOCK, fill) };
}
function barrier(seq: number, epoch: number): JournalRecord {
  return { kind: RecordKind.Barrier, flags: 0, seq, epoch, offset: 0, length: 0, time: 0, payload: Buffer.alloc(0) };
}

/**
 * A replica of a synced pair at record 2 holding checkpoint "cp", records 3..4 gathered
 * in its receive log meanwhile; `what` names the run in failures.
 */
async function heldReplica(seed: number, what: string) {
  const sched = new Scheduler(new Rng(seed));
  const disk = new MemDisk(SIZE, sched);
  const logStore = new MemStore(sched);
  const roundStore = new MemStore(sched);
  const fail = (msg: string): never => assert.fail(`seed ${seed}${what}: ${msg}`);
  const step = (): boolean => sched.step();
  /** Runs I/O until nothing is pending. */
  const idle = async (): Promise<void> => {
    for (let i = 0; i < 10000; i++) {
      await settleOn(Promise.resolve(), step, fail);
      if (!step()) {
        await settleOn(Promise.resolve(), () => false, fail);
        if (sched.size === 0) return;
      }
    }
  };
  await settleOn(roundStore.replace(SYNCED_FILE, Buffer.from('synced\n')), step, fail);
  const replica = await settleOn(Replica.open(disk,
    () => new Journal({ store: logStore, capacity: 1 << 20, segmentSize: 64 * 1024, onDamage: KEEP_PREFIX }), silentLogger,
    { roundStore, regionSize: BLOCK }), step, fail);
  const link = { ack: () => undefined, hold: () => undefined, close: () => undefined };
  await settleOn(replica.attach(link), step, fail);
  void replica.receive([write(1, 1, 0, 0xa1), barrier(2, 1)]).catch(() => undefined);
  await idle();
  assert.equal(replica.receiver.applied, 2);
  await settleOn(replica.createCheckpoint('cp', null, 0, false), step, fail);
  void replica.receive([write(3, 2, 1, 0xa2), barrier(4, 2)]).catch(() => undefined);
  await idle();
  return { replica, link, step, fail, idle };
}

async function run(seed: number, stepsBeforeRelease: number): Promise<void> {
  const { replica, link, step, fail, idle } = await heldReplica(seed, `, release after ${stepsBeforeRelease} steps`);
  // The Resync: its opening waits for the checkpoint.
  const opened = replica.openRound(6).then(() => 'opened', (e: Error) => e.message);
  await idle();
  // The link attaches again meanwhile (a reconnect), and the release comes at any point of it.
  replica.detach();
  const attached = replica.attach(link).catch(() => undefined);
  for (let k = 0; k < stepsBeforeRelease && step(); k++) await settleOn(Promise.resolve(), () => false, fail);
  const released = replica.releaseCheckpoint().catch(() => undefined);
  await idle();
  await settleOn(Promise.all([attached, released]), step, fail);
  assert.equal(await settleOn(opened, step, fail), 'opened', 'the round opened (not "could not apply records 3..4 before the round")');
  assert.ok(replica.round && !replica.round.initial, 'a round that keeps the image before it');
  assert.equal(replica.receiver.applied, 5, 'what the log held before the round was applied, and the log jumped to the round\'s start');
}

test('a round waiting for a checkpoint opens after the release\'s catch-up, at every point of a reattach', async () => {
  const broken: string[] = [];
  const prev = onViolation((e) => broken.push(e.message));
  try {
    for (let seed = 1; seed <= 4; seed++) {
      for (let k = 0; k <= 12; k++) {
        await run(seed, k);
        assert.deepEqual(broken, [], `seed ${seed}, release after ${k} steps of the reattach`);
      }
    }
  } finally {
    onViolation(prev);
  }
});

test('Resyncs that wait out a held checkpoint open their rounds in the order they came: the last one\'s is the round', async () => {
  for (let seed = 1; seed <= 8; seed++) {
    const { replica, link, step, fail } = await heldReplica(seed, '');
    // Each link the primary began meanwhile sent its Resync (the round moved on each time); a reattach between them.
    const opens = [6, 9, 12].map((start) => replica.openRound(start).catch((e: Error) => e.message));
    replica.detach();
    const attached = replica.attach(link);
    await settleOn(Promise.all([replica.releaseCheckpoint(), attached]), step, fail);
    await settleOn(Promise.all(opens), step, fail);
    assert.equal(replica.round?.startSeq, 12, `seed ${seed}: the round is the last Resync's`);
    assert.equal(replica.receiver.applied, 11, `seed ${seed}: the log jumped to the last round's start`);
  }
});
