// A peer that holds no record and has no round open may hold anything: an old primary
// just demoted (its writes the new primary never got), a replaced disk. Whatever the
// primary tracks, its journal or (after an overflow) its dirty bitmap, says nothing of
// what that replica lacks, so its first round compares every region (docs/ROLES.md).
// Found by the seeded simulation's failover (test/sim/replication-sim.ts): the new
// primary's journal overflowed while the old one was down, and the old one, back and
// demoted, was sent the bitmap's regions alone and called consistent.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import { THE_PEER } from '../../src/journal/peer-cursors.js';
import { DirStore } from '../../src/journal/store.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';
import { FakePeer, drive } from '../helpers/fake-peer.js';
import { memDisk } from '../helpers/mem-disk.js';
import { tempDir } from '../helpers/run.js';

const KiB = 1024;
const RS = 64 * KiB;
const SIZE = 1024 * KiB;

/** A volume with one peer whose journal overflows after 256 KiB; every region written and acked, then regions 2 and 4 rewritten until it does. */
async function overflowed(dir: string): Promise<{ jv: JournaledVolume; data: Buffer; before: Buffer }> {
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 256 * KiB, segmentSize: 32 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), SIZE, RS);
  const disk = memDisk(SIZE);
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', log: silentLogger, roundStore: new DirStore(dir) });
  await jv.start(report);
  for (let r = 0; r < SIZE / RS; r++) {
    await jv.write(r * RS, Buffer.alloc(4 * KiB, 0x10 + r), false);
    await jv.flush();
    await jv.releaseFor(THE_PEER, jv.journal.lastSeq);
  }
  const before = Buffer.from(disk.data);
  for (let k = 0; jv.mode === 'journal'; k++) {
    assert.ok(k < 100, 'the journal overflows');
    await jv.write((k % 2 === 0 ? 2 : 4) * RS, Buffer.alloc(32 * KiB, 0x80 + k), false);
    await jv.flush();
  }
  await jv.quiesce(); // (the fold of the journal into the bitmap ends)
  assert.deepEqual([...jv.bitmap.dirtyRegions()].sort((a, b) => a - b), [2, 4], 'the bitmap marks what was written since');
  return { jv, data: disk.data, before };
}

/** The old primary's disk: the image both held before the overflow, and region 9 written there alone (never shipped). */
function oldPrimary(before: Buffer): Buffer {
  const replica = Buffer.from(before);
  replica.fill(0xee, 9 * RS + 100, 9 * RS + 200);
  return replica;
}

test('first sync after a reset: a peer holding nothing meets a volume tracking by its dirty bitmap; every region is compared', async () => {
  const { jv, data, before } = await overflowed(tempDir('first-sync-reset'));
  const peer = new FakePeer(jv, 'site-a', oldPrimary(before), RS, silentLogger, true);
  peer.up(0, 0, true);
  await drive('the round ends and the peer holds all of it', [peer],
    () => jv.roundStart === 0 && jv.mode === 'journal' && peer.sh.acked === jv.journal.lastSeq && peer.resyncs.length > 0, true);
  assert.deepEqual(peer.resyncRegions(), [2, 4, 9], 'the bitmap\'s regions and the one the old primary wrote alone; the rest equal by hash');
  assert.ok(peer.replica.equals(data), 'the replica is the primary\'s');
  await jv.close();
});

test('first sync after a reset: a round of some regions is open when a peer holding nothing links; it becomes a round of all', async () => {
  const { jv, data, before } = await overflowed(tempDir('first-sync-reset'));
  // A link began a round of the bitmap's regions (its Resync reached a peer that was then
  // reset, or never did).
  const start = await jv.startResync();
  assert.ok(start > 0 && !jv.roundCoversAllFor(THE_PEER), 'a round of regions 2 and 4');
  const peer = new FakePeer(jv, 'site-a', oldPrimary(before), RS, silentLogger, true);
  peer.up(0, 0, true);
  await drive('the round ends and the peer holds all of it', [peer],
    () => jv.roundStart === 0 && jv.mode === 'journal' && peer.sh.acked === jv.journal.lastSeq && peer.resyncs.length > 0, true);
  assert.ok(peer.resyncs[0]! > start, 'a new round, of every region');
  assert.deepEqual(peer.resyncRegions(), [2, 4, 9]);
  assert.ok(peer.replica.equals(data), 'the replica is the primary\'s');
  await jv.close();
});
