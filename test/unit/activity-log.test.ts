// The activity log: extents enter durably before a write, a new boot id makes every
// logged extent suspect, a clean reset leaves nothing suspect, eviction waits for syncs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ActivityLog, decodeActivity, encodeActivity } from '../../src/journal/activity-log.js';
import { DirStore } from '../../src/journal/store.js';
import { tempDir } from '../helpers/run.js';

const MiB = 1 << 20;

test('slot format: fixed bytes round-trip; a damaged slot reads as absent', () => {
  const b = encodeActivity(4 * MiB, { gen: 3, bootId: 'boot-1', extents: [0, 7] });
  assert.equal(b.subarray(0, 24).toString('hex'), '4f46465341435431' + '01000000' + '00100000' + '0300000000000000');
  assert.equal(b.toString('latin1', 24, 30), 'boot-1');
  assert.equal(b.readUInt32LE(60), 2);
  assert.deepEqual(decodeActivity(b), { extentSize: 4 * MiB, gen: 3, bootId: 'boot-1', extents: [0, 7] });
  const bad = Buffer.from(b);
  bad[65] = bad[65]! ^ 0x10;
  assert.equal(decodeActivity(bad), null);
});

test('a restart of the machine makes the logged extents suspect; a clean reset does not', async () => {
  const dir = tempDir('al');
  const store = new DirStore(dir);
  let boot = 'boot-1';
  const open = () => ActivityLog.open({ store, extentSize: 4 * MiB, slots: 4, bootId: () => boot });
  const { log, suspect } = await open();
  assert.deepEqual(suspect, []);
  await log.reset();
  const p = log.enter(5 * MiB, 8 * MiB); // extents 1, 2, 3
  assert.ok(p instanceof Promise, 'new extents: the write waits for the log');
  await p;
  assert.equal(log.enter(6 * MiB, 4096), undefined, 'a logged extent: no wait');
  // Same boot (a kill -9): nothing suspect, the intent ring covers it.
  assert.deepEqual((await open()).suspect, []);
  // A new boot (a power loss): extents 1..3 are suspect.
  boot = 'boot-2';
  const after = await open();
  assert.deepEqual(after.suspect.map((r) => r.offset / MiB), [4, 8, 12]);
  await after.log.reset();
  boot = 'boot-3';
  assert.deepEqual((await open()).suspect, [], 'after a clean reset nothing is owed');
});

test('extents leave the log only after syncs made their writes durable', async () => {
  const dir = tempDir('al');
  const store = new DirStore(dir);
  const { log } = await ActivityLog.open({ store, extentSize: MiB, slots: 2, bootId: () => 'b' });
  await log.reset();
  await log.enter(0, 1);
  await log.enter(MiB, 1);
  await log.enter(2 * MiB, 1); // no sync yet: nothing may leave, the log grows past its slots
  assert.equal(log.size, 3);
  log.synced();
  log.synced();
  // Still in flight: nothing leaves before its write ended and two syncs followed.
  await log.enter(4 * MiB, 1);
  assert.equal(log.size, 4);
  for (const e of [0, 1, 2, 4]) log.leave(e * MiB, 1);
  log.synced();
  log.synced();
  await log.enter(3 * MiB, 1); // now the oldest durable ones make room
  assert.ok(log.size <= 2, `log holds ${log.size}`);
  const { suspect } = await ActivityLog.open({ store, extentSize: MiB, slots: 2, bootId: () => 'other' });
  assert.ok(suspect.some((r) => r.offset === 3 * MiB), 'the newest extent is on disk');
});

test('a log of more than 131072 extents (over 1 MiB) is read whole after a power loss, and says it is over its slots', async () => {
  const dir = tempDir('al');
  const store = new DirStore(dir);
  let boot = 'boot-1';
  const open = () => ActivityLog.open({ store, extentSize: 4096, slots: 1024, bootId: () => boot });
  const { log } = await open();
  await log.reset();
  const n = 140_000;
  await log.enter(0, n * 4096);
  assert.equal(log.size, n);
  assert.equal(log.overfull, true, 'no sync let any extent leave: over its 1024 slots');
  assert.ok(fs.statSync(path.join(dir, 'activity.0')).size > MiB || fs.statSync(path.join(dir, 'activity.1')).size > MiB);
  boot = 'boot-2';
  const after = await open();
  assert.equal(after.suspect.length, n, 'every logged extent is suspect (a slot read short failed its CRC: none were)');
});
