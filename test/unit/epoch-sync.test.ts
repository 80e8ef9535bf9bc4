// An epoch the primary closes makes the journal durable (its records may ship) without
// syncing the volume; the volume is synced on a host FLUSH, once the redo bound is
// journaled since its last sync, and after VOLUME_SYNC_INTERVAL_MS with writes since
// (docs/JOURNAL.md, "Epochs and syncs").
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import { DirStore } from '../../src/journal/store.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import { recordSize, RecordKind } from '../../src/journal/record.js';
import { redoBytesFor, VOLUME_SYNC_INTERVAL_MS } from '../../src/limits/limits.js';
import { GroupSync } from '../../src/volume/group-sync.js';
import { silentLogger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';
import { memDisk } from '../helpers/mem-disk.js';

const KiB = 1024;

async function volume(name: string, segmentSize = 1024 * KiB) {
  let clock = 1_000_000;
  const dir = tempDir(name);
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 4096 * KiB, segmentSize, now: () => clock });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), 4 * 1024 * KiB, 64 * KiB);
  const disk = memDisk(4 * 1024 * KiB);
  let volumeSyncs = 0;
  disk.flush = async () => { volumeSyncs++; };
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', log: silentLogger });
  await jv.start(report);
  volumeSyncs = 0;
  return { jv, journal, syncs: () => volumeSyncs, tick: (ms: number) => { clock += ms; } };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

test('an epoch closed at its bound makes the journal durable, not the volume, until the redo bound is journaled', async () => {
  const { jv, journal, syncs } = await volume('epoch-light');
  jv.maxEpochBytes = 16 * KiB;
  assert.equal(jv.redoBound, redoBytesFor(4096 * KiB));
  const chunk = Buffer.alloc(8 * KiB, 7);
  const perWrite = recordSize(RecordKind.Write, chunk.length);
  // Writes up to just below the redo bound: every epoch close is a light sync.
  const light = Math.floor((jv.redoBound - 1) / perWrite);
  for (let i = 0; i < light; i++) await jv.write((i % 64) * chunk.length, chunk, false);
  await settle();
  assert.ok(journal.durableSeq > 0, 'epoch closes made the journal durable');
  assert.equal(syncs(), 0, 'no epoch close synced the volume below the redo bound');
  assert.ok(jv.durableAppliedSeq === 0, 'the redo point did not move');
  // Past the redo bound: the next epoch close syncs the volume too.
  for (let i = 0; i < 8; i++) await jv.write((i % 64) * chunk.length, chunk, false);
  await settle();
  assert.ok(syncs() >= 1, 'the epoch close past the redo bound synced the volume');
  assert.ok(jv.durableAppliedSeq > 0);
  // A host FLUSH always syncs the volume.
  const before = syncs();
  await jv.write(0, chunk, false);
  await jv.flush();
  assert.equal(syncs(), before + 1);
  assert.equal(jv.durableAppliedSeq, journal.lastSeq);
  await jv.close();
});

test('a primary-chosen close after VOLUME_SYNC_INTERVAL_MS with writes since syncs the volume; before it, only the journal', async () => {
  const { jv, journal, syncs, tick } = await volume('epoch-interval');
  await jv.write(0, Buffer.alloc(4 * KiB, 1), false);
  await jv.closeEpochNow();
  assert.equal(syncs(), 0);
  assert.equal(journal.durableSeq, journal.lastSeq, 'the barrier and the write are durable in the journal');
  tick(VOLUME_SYNC_INTERVAL_MS);
  await jv.write(4 * KiB, Buffer.alloc(4 * KiB, 2), false);
  await jv.closeEpochNow();
  assert.equal(syncs(), 1, 'the interval passed with writes since: the volume is synced');
  // Nothing journaled since: no volume sync however long it has been.
  tick(10 * VOLUME_SYNC_INTERVAL_MS);
  await jv.closeEpochNow();
  assert.equal(syncs(), 1);
  await jv.close();
});

test('a release past what the volume holds durably waits for its next sync, unless the journal needs the room', async () => {
  const { jv, journal, syncs, tick } = await volume('epoch-release');
  await jv.write(0, Buffer.alloc(4 * KiB, 1), false);
  await jv.closeEpochNow();
  assert.equal(syncs(), 0);
  await jv.release(journal.lastSeq);
  assert.equal(syncs(), 0, 'the journal has room: no sync forced');
  assert.equal(journal.released, 0, 'invariant 2: nothing is released before it is durable here');
  // The link's tick while the host writes: nothing yet; once it is idle: a sync, then the release.
  jv.settle();
  await jv.write(4 * KiB, Buffer.alloc(4 * KiB, 2), false);
  jv.settle();
  await settle();
  assert.equal(syncs(), 0, 'the host wrote since the last tick');
  jv.settle();
  await settle();
  assert.equal(syncs(), 1, 'idle: the volume is synced');
  assert.equal(journal.released, journal.lastSeq - 1, 'what was acked is let go (not the write after it)');
  // What the volume already holds durably (a host FLUSH synced it) goes at once, with no sync of its own.
  await jv.flush();
  const before = syncs();
  tick(1);
  await jv.release(journal.lastSeq);
  assert.equal(syncs(), before);
  assert.equal(journal.released, journal.lastSeq);
  await jv.close();
});

test('records peers acked wait at most the redo bound of host writes: the full sync it brings lets them go', async () => {
  const { jv, journal, syncs } = await volume('epoch-owed', 128 * KiB);
  const chunk = Buffer.alloc(64 * KiB, 4);
  for (let i = 0; i < 4; i++) await jv.write(i * chunk.length, chunk, false);
  await jv.closeEpochNow();
  const acked = journal.lastSeq;
  await jv.release(acked);
  assert.equal(journal.released, 0);
  assert.equal(syncs(), 0);
  // The link is down (no ticks, no acks); the host writes on past the redo bound.
  for (let i = 0; i < 12; i++) await jv.write(i * chunk.length, chunk, false);
  await settle();
  assert.ok(syncs() >= 1, 'the redo bound brought a full sync');
  assert.equal(journal.released, acked, 'and it let go what was acked');
  assert.equal(jv.mode, 'journal');
  await jv.close();
});

test('group sync: a queued sync is full if any caller asked for one; light ones are counted apart', async () => {
  const strengths: string[] = [];
  const finish: Array<() => void> = [];
  const g = new GroupSync((s) => new Promise<void>((resolve) => {
    strengths.push(s);
    finish.push(resolve);
  }));
  const a = g.sync('light');
  const b = g.sync('light');
  const c = g.sync('full');
  finish[0]!();
  await a;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(strengths, ['light', 'full'], 'b and c share the next sync, full for c');
  finish[1]!();
  await Promise.all([b, c]);
  assert.equal(g.syncs, 1);
  assert.equal(g.lightSyncs, 1);
});
