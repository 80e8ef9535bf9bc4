// A host write's volume write follows its journal record in the job that writes the
// record (src/journal/append-queue.ts `follow`, docs/JOURNAL.md "Order"): the native
// call writes the record whole before it tries a volume write, and tries none if the
// record's write failed; the queue attaches a follower only to a record not yet being
// written, settles it after the record counts as written, and tells the caller when it
// must write the volume itself. And the write path on real files: a queue of host writes
// goes mostly as followers (few intents), and the volume and the journal hold them all.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AppendQueue, DETACHED, NOT_TRIED, WRITE_ALONE } from '../../src/journal/append-queue.js';
import type { FollowingWrite } from '../../src/journal/disk.js';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import { DirStore } from '../../src/journal/store.js';
import type { Segment } from '../../src/journal/segment.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import type { RangeLocks } from '../../src/sync/range-lock.js';
import type { FollowingWrites, Store, StoreFile } from '../../src/store/store.js';
import { nativeFs } from '../../src/volume/native.js';
import { Volume } from '../../src/volume/volume.js';
import { silentLogger } from '../../src/log/log.js';
import { FOLLOW_AFTER_RELEASE_MS, FOLLOW_MAX_BYTES, RELEASE_AT_ONCE_ABOVE, VOLUME_SYNC_INTERVAL_MS } from '../../src/limits/limits.js';
import { tempDir } from '../helpers/run.js';

const KiB = 1024;

/** A journaled volume on real files, counting the intents its write path writes to the ring. */
async function onFiles(name: string, size: number, now?: () => number, capacity = 64 * 1024 * KiB) {
  const dir = tempDir(name);
  const disk = Volume.open({ name: 'v', path: path.join(dir, 'v.img'), size, readOnly: false });
  const jstore = new DirStore(path.join(dir, 'j'));
  const journal = new Journal({ store: jstore, capacity, segmentSize: Math.min(8 * 1024 * KiB, capacity / 4), ...(now ? { now } : {}) });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  const counter = { intents: 0 };
  const counted = (f: StoreFile): StoreFile => Object.assign(Object.create(f) as StoreFile, {
    writeSync: (p: number, d: Buffer) => {
      counter.intents += d.length / 32;
      f.writeSync(p, d);
    },
  });
  const istore = Object.assign(Object.create(jstore) as Store, {
    open: (n: string) => counted(jstore.open(n)),
    create: (n: string) => counted(jstore.create(n)),
  });
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', log: silentLogger, intentStore: istore });
  await jv.start(report);
  counter.intents = 0;
  return { dir, disk, journal, jv, counter };
}

test('pwritevThen writes the parts whole (past IOV_MAX), then each following write; after a failed first write it tries none', async () => {
  const dir = tempDir('following-native');
  const head = fs.openSync(path.join(dir, 'head'), 'w+');
  const vol = fs.openSync(path.join(dir, 'vol'), 'w+');
  // 2100 parts of odd sizes: more than one pwritev (IOV_MAX is 1024 on Linux).
  const parts = Array.from({ length: 2100 }, (_, i) => Buffer.alloc(1 + (i % 7), i % 251));
  const bufs = [Buffer.alloc(4096, 1), Buffer.alloc(512, 2)];
  const errs = await nativeFs.pwritevThen!(head, 100, parts, vol, bufs, [8192, 0]);
  assert.deepEqual(errs, [0, 0, 0]);
  const want = Buffer.concat(parts);
  assert.ok(fs.readFileSync(path.join(dir, 'head')).subarray(100).equals(want));
  const v = fs.readFileSync(path.join(dir, 'vol'));
  assert.ok(v.subarray(8192, 8192 + 4096).equals(bufs[0]!) && v.subarray(0, 512).equals(bufs[1]!));
  // The first write fails (a descriptor open read-only): no following write is tried.
  const ro = fs.openSync(path.join(dir, 'head'), 'r');
  const failed = await nativeFs.pwritevThen!(ro, 0, [Buffer.alloc(8)], vol, [Buffer.alloc(16, 9)], [65536]);
  assert.deepEqual(failed, [os.constants.errno.EBADF, -1]);
  assert.equal(fs.statSync(path.join(dir, 'vol')).size, 8192 + 4096, 'the volume was not written');
  // A following write fails on its own: its errno, the first write done.
  const fine = await nativeFs.pwritevThen!(head, 0, [Buffer.from('ok')], ro, [Buffer.alloc(4)], [0]);
  assert.deepEqual(fine, [0, os.constants.errno.EBADF]);
  assert.equal(fs.readFileSync(path.join(dir, 'head')).subarray(0, 2).toString(), 'ok');
  for (const fd of [head, vol, ro]) fs.closeSync(fd);
});

/** A segment on a file whose writes wait until the test ends them. */
function heldSegment() {
  const jobs: Array<{ position: number; parts: Buffer[]; after: FollowingWrites | null; finish: (errs: number[] | Error) => void }> = [];
  const job = <T>(position: number, parts: Buffer[], after: FollowingWrites | null, ok: (errs: number[]) => T): Promise<T> =>
    new Promise((resolve, reject) => jobs.push({ position, parts, after, finish: (r) => (r instanceof Error ? reject(r) : resolve(ok(r))) }));
  const file = {
    name: 'held', size: () => 0, close: () => undefined,
    writev: (position: number, parts: Buffer[]) => job(position, parts, null, () => undefined),
    writevThen: (position: number, parts: Buffer[], after: FollowingWrites) => job(position, parts, after, (errs) => errs),
  } as unknown as StoreFile;
  const seg: Segment = { name: 'held', baseSeq: 1, lastSeq: 0, file, unsynced: false, reserved: 0, readers: 0, removed: false } as Segment;
  return { seg, jobs };
}

function following(position: number, ended: string[]): FollowingWrite {
  return { fd: 42, data: Buffer.alloc(8, position), position, failure: (errno) => new Error(`errno ${errno}`), ended: () => ended.push(`${position}`) };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a follower attaches to a queued record only, goes in its job after it, and is settled once the record counts as written', async () => {
  const { seg, jobs } = heldSegment();
  const q = new AppendQueue();
  const ended: string[] = [];
  q.enqueue(seg, 1, [Buffer.alloc(10)], { offset: 0, length: 8 });
  assert.equal(jobs.length, 0, 'the job starts once this turn\'s other appends are queued');
  await Promise.resolve();
  assert.equal(jobs.length, 1, 'record 1 is being written');
  q.enqueue(seg, 2, [Buffer.alloc(10)], { offset: 0, length: 8 });
  q.enqueue(seg, 3, [Buffer.alloc(10)], { offset: 0, length: 8 });
  assert.equal(q.follow(1, following(0, ended)), null, 'record 1 is in flight: too late to follow it');
  const two = q.follow(2, following(4096, ended));
  const three = q.follow(3, following(8192, ended));
  assert.ok(two !== null && three !== null, 'records 2 and 3 wait: they take followers');
  assert.equal(q.follow(3, following(0, ended)), null, 'one follower per record');
  assert.equal(q.follow(9, following(0, ended)), null, 'no such record queued');
  // A new segment's header goes in with the seq before its first record: it is not that record.
  const header = new AppendQueue();
  const hseg = heldSegment().seg;
  header.enqueue(hseg, 5, [Buffer.alloc(10)], { offset: 0, length: 8 });
  await Promise.resolve();
  header.enqueue(hseg, 5, [Buffer.alloc(10)]);
  assert.equal(header.follow(5, following(0, ended)), null, 'record 5 is being written; the header queued after it with seq 5 takes no follower');
  let settled: number | null = null;
  void two.then((e) => { settled = e; assert.ok(q.writtenSeq >= 2, 'settled after the record counts as written'); });
  jobs[0]!.finish([]);
  await turn();
  assert.equal(jobs.length, 2);
  assert.deepEqual(jobs[1]!.after?.positions, [4096, 8192], 'both followers ride the job of records 2 and 3, in order');
  assert.equal(jobs[1]!.parts.length, 2);
  jobs[1]!.finish([0, 28]);
  assert.equal(await two, 0);
  assert.equal(await three, 28, 'each follower gets its own errno');
  assert.equal(settled, 0);
});

test('a failed record write leaves its followers and the queued ones NOT_TRIED; a dropped segment\'s, WRITE_ALONE', async () => {
  const { seg, jobs } = heldSegment();
  const q = new AppendQueue();
  const ended: string[] = [];
  q.enqueue(seg, 1, [Buffer.alloc(10)], { offset: 0, length: 8 });
  await Promise.resolve(); // record 1's job begins; the next records queue behind it
  q.enqueue(seg, 2, [Buffer.alloc(10)], { offset: 0, length: 8 });
  const two = q.follow(2, following(0, ended))!;
  jobs[0]!.finish([]);
  await turn();
  q.enqueue(seg, 3, [Buffer.alloc(10)], { offset: 8, length: 8 });
  const three = q.follow(3, following(8, ended))!;
  jobs[1]!.finish(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
  assert.equal(await two, NOT_TRIED);
  assert.equal(await three, NOT_TRIED);
  assert.ok(q.broken);
  assert.deepEqual(q.unwritten, [{ offset: 0, length: 8 }, { offset: 8, length: 8 }]);
  assert.equal(q.follow(3, following(8, ended)), null, 'nothing follows a broken journal');
  // A segment let go with a record still queued: its follower writes the volume itself.
  const other = heldSegment();
  const r = new AppendQueue();
  r.enqueue(other.seg, 1, [Buffer.alloc(10)], { offset: 0, length: 8 });
  await Promise.resolve();
  r.enqueue(other.seg, 2, [Buffer.alloc(10)], { offset: 0, length: 8 });
  const alone = r.follow(2, following(0, ended))!;
  other.seg.removed = true;
  other.jobs[0]!.finish([]);
  assert.equal(await alone, WRITE_ALONE);
});

test('a volume sync takes the followers off the records still queued: DETACHED, and the records go in a job of their own', async () => {
  const { seg, jobs } = heldSegment();
  const q = new AppendQueue();
  const ended: string[] = [];
  q.enqueue(seg, 1, [Buffer.alloc(10)], { offset: 0, length: 8 });
  await Promise.resolve(); // record 1's job begins; the next records queue behind it
  q.enqueue(seg, 2, [Buffer.alloc(10)], { offset: 0, length: 8 });
  q.enqueue(seg, 3, [Buffer.alloc(10)], { offset: 8, length: 8 });
  const two = q.follow(2, following(0, ended))!;
  const three = q.follow(3, following(8, ended))!;
  assert.equal(q.detachFollowers(), 2);
  assert.equal(await two, DETACHED);
  assert.equal(await three, DETACHED);
  jobs[0]!.finish([]);
  await turn();
  assert.equal(jobs.length, 2);
  assert.equal(jobs[1]!.after, null, 'records 2 and 3 go without followers');
  jobs[1]!.finish([]);
  await q.drained();
  assert.equal(q.writtenSeq, 3);
});

test('host writes queued on a real volume go as followers of their records: few intents, the volume and the journal hold every write', async () => {
  const { dir, disk, journal, jv, counter } = await onFiles('following-volume', 4096 * KiB);
  const data = (i: number): Buffer => Buffer.alloc(4 * KiB, (i * 7) % 256);
  // Eight turns of 64 writes each (a host keeping its queue full): the job starts once
  // the turn's records are all queued, so each takes its volume write behind it.
  for (let t = 0; t < 8; t++) {
    await Promise.all(Array.from({ length: 64 }, (_, k) => jv.write(((t * 64 + k) % 1024) * 4 * KiB, data(t * 64 + k), false)));
  }
  assert.equal(counter.intents, 0, `every write of a turn followed its record, the first too (${counter.intents} intents for 512 writes)`);
  await jv.flush();
  const img = fs.readFileSync(path.join(dir, 'v.img'));
  for (let i = 0; i < 512; i++) {
    const at = (i % 1024) * 4 * KiB;
    assert.ok(img.subarray(at, at + 4 * KiB).equals(data(i)), `write ${i} is on the volume`);
  }
  const records = (await journal.read(1, 64 * 1024 * KiB)).filter((r) => r.payload.length > 0);
  assert.equal(records.length, 512);
  for (const [i, r] of records.entries()) assert.ok(r.payload.equals(data(i)), `record ${i} holds write ${i}`);
  assert.equal(jv.durableAppliedSeq, journal.lastSeq, 'every volume write counted applied');
  // Writes larger than FOLLOW_MAX_BYTES keep jobs of their own (each an intent).
  const big = Buffer.alloc(FOLLOW_MAX_BYTES * 2, 5);
  counter.intents = 0;
  await Promise.all(Array.from({ length: 8 }, (_, k) => jv.write(k * big.length, big, false)));
  assert.equal(counter.intents, 8, 'no large write followed its record');
  // While the volume syncs, no write follows (its wait for the writeback would hold up the journal).
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const flush = disk.flush.bind(disk);
  disk.flush = () => gate.then(flush);
  const flushing = jv.flush();
  await turn();
  counter.intents = 0;
  const during = Promise.all(Array.from({ length: 64 }, (_, k) => jv.write(k * 4 * KiB, data(k), false)));
  await turn();
  assert.equal(counter.intents, 64, 'every write during the volume\'s sync took the intent ring');
  open();
  await Promise.all([flushing, during]);
  // Followers queued when a sync begins are taken off their records and written after them.
  disk.flush = flush;
  counter.intents = 0;
  let detached = 0;
  const detach = journal.detachFollowers.bind(journal);
  journal.detachFollowers = () => {
    const n = detach();
    detached += n;
    return n;
  };
  // (A job in flight first: the writes after it queue behind it with their followers.)
  const inFlight = Array.from({ length: 8 }, (_, k) => jv.write((100 + k) * 4 * KiB, data(2000 + k), false));
  await Promise.resolve();
  const queued = Array.from({ length: 64 }, (_, k) => jv.write(k * 4 * KiB, data(1000 + k), false));
  const synced = jv.flush();
  await Promise.all([...inFlight, ...queued, synced]);
  const after = fs.readFileSync(path.join(dir, 'v.img'));
  for (let k = 0; k < 64; k++) assert.ok(after.subarray(k * 4 * KiB, (k + 1) * 4 * KiB).equals(data(1000 + k)), `write ${k} landed`);
  assert.ok(detached > 0, 'the sync took queued followers off their records');
  await jv.close();
  await disk.close();
});

test('for FOLLOW_AFTER_RELEASE_MS after an ack released the journal with a sync of the volume, writes do not follow (not after a due sync)', async () => {
  let clock = 1_000_000;
  // A journal of 4 MiB: nine turns of 64 writes of 4 KiB fill it past RELEASE_AT_ONCE_ABOVE, and the ack syncs the volume.
  const { disk, journal, jv, counter } = await onFiles('following-release', 1024 * KiB, () => clock, 4096 * KiB);
  jv.maxEpochBytes = 64 * 1024 * KiB;
  const turn64 = (): Promise<unknown> => Promise.all(Array.from({ length: 64 }, (_, k) => jv.write(k * 4 * KiB, Buffer.alloc(4 * KiB, k), false)));
  for (let i = 0; i < 9; i++) await turn64();
  assert.ok(journal.usedBytes > journal.capacity * RELEASE_AT_ONCE_ABOVE);
  await jv.release(journal.lastSeq);
  assert.equal(journal.released, journal.lastSeq, 'released at once');
  counter.intents = 0;
  await turn64();
  assert.equal(counter.intents, 64, 'just after a release every write took the intent ring');
  clock += FOLLOW_AFTER_RELEASE_MS;
  counter.intents = 0;
  await turn64();
  assert.ok(counter.intents <= 2, `${counter.intents} intents: once the releases stopped, writes follow their records again`);
  // An ack under RELEASE_AT_ONCE_ABOVE waits for the volume's next sync to release: writes go on following.
  assert.ok(journal.usedBytes <= journal.capacity * RELEASE_AT_ONCE_ABOVE);
  const acked = journal.lastSeq;
  await jv.release(acked);
  assert.ok(journal.released < acked, 'the release waits for the volume\'s sync');
  counter.intents = 0;
  await turn64();
  assert.ok(counter.intents <= 2, `${counter.intents} intents: a release that waits for the volume's sync leaves writes following`);
  // The shipper's tick once the sync interval passed: the volume's due sync releases what waits. It is the
  // periodic sync an epoch close would make, not a release that could not wait: writes go on following.
  clock += VOLUME_SYNC_INTERVAL_MS;
  assert.ok(journal.released < acked, 'the ack still waits for the volume\'s sync');
  jv.releaseIfDue();
  for (let i = 0; i < 200 && journal.released < acked; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(journal.released, acked, 'the due sync released what waited');
  counter.intents = 0;
  await turn64();
  assert.ok(counter.intents <= 2, `${counter.intents} intents: after the due sync's release, writes still follow their records`);
  await jv.close();
  await disk.close();
});

test('a follower whose volume write fails: the host write fails, its range goes to the dirty bitmap, and the range is free again', async () => {
  const { disk, jv } = await onFiles('following-fails', 4096 * KiB);
  // Every following write goes to a descriptor opened read-only: the job's pwrite fails (EBADF).
  const roFile = path.join(tempDir('following-fails-ro'), 'ro');
  fs.writeFileSync(roFile, '');
  const ro = fs.openSync(roFile, 'r');
  const following = disk.following!.bind(disk);
  let followers = 0;
  let ends = 0;
  disk.following = (offset: number, data: Buffer) => {
    const w = following(offset, data);
    if (!w) return w;
    followers++;
    return { ...w, fd: ro, failure: w.failure, ended: () => { ends++; w.ended(); } };
  };
  // (The first write of a turn starts its record's job at once; the next ones follow theirs.)
  const at = (k: number): number => k * 64 * KiB;
  const outcomes = await Promise.allSettled(Array.from({ length: 4 }, (_, k) => jv.write(at(k), Buffer.alloc(4 * KiB, k + 1), false)));
  assert.ok(followers >= 1, 'a write followed its record');
  const failed = outcomes.flatMap((o, k) => (o.status === 'rejected' ? [k] : []));
  assert.ok(failed.length >= 1, 'the followed write failed to the host');
  for (const o of outcomes) if (o.status === 'rejected') assert.equal((o.reason as NodeJS.ErrnoException).code, 'EBADF', 'with the volume write\'s own error');
  assert.equal(ends, followers, 'each follower ended once');
  assert.equal(jv.mode, 'bitmap', 'the volume is tracked by the bitmap: the peer must not get ahead of this disk');
  await jv.quiesce();
  for (const k of failed) assert.ok(jv.bitmap.isSet(at(k) / jv.bitmap.regionSize), `failed write ${k}'s range is marked for a resync`);
  // The range was let go: a resync's lock over it is granted (it waits for host writes in flight there).
  const ranges = (jv as unknown as { ranges: RangeLocks }).ranges;
  const k = failed[0]!;
  const unlock = await Promise.race([ranges.lock(at(k), 4 * KiB), new Promise<null>((r) => setTimeout(() => r(null), 2000))]);
  assert.ok(unlock, 'a lock over the failed write\'s range is granted: the write let its range go');
  unlock();
  // A write there again goes through (now to the bitmap and the volume).
  disk.following = following;
  await jv.write(at(k), Buffer.alloc(4 * KiB, 9), false);
  const back = Buffer.alloc(4 * KiB);
  await disk.read(at(k), back, 0, back.length);
  assert.ok(back.equals(Buffer.alloc(4 * KiB, 9)), 'the write after it landed');
  fs.closeSync(ro);
  await jv.close();
  await disk.close();
});

test('bookkeeping that fails after a record is journaled does not stop its volume write (the record ships either way)', async () => {
  const { disk, jv, journal } = await onFiles('journaled-then-throws', 4096 * KiB);
  let asked = 0;
  jv.groupAsk = () => {
    asked++;
    throw new Error('the group is gone');
  };
  jv.bytesSinceGroupPoint = jv.maxEpochBytes + 1;
  const data = Buffer.alloc(4 * KiB, 0x5a);
  await jv.write(8 * KiB, data, false);
  assert.equal(asked, 1, 'the group was asked, and threw');
  const back = Buffer.alloc(4 * KiB);
  await disk.read(8 * KiB, back, 0, back.length);
  assert.ok(back.equals(data), 'the write is on the volume, as its record is in the journal');
  const records = (await journal.read(1, 64 * 1024 * KiB)).filter((r) => r.payload.length > 0);
  assert.equal(records.length, 1);
  assert.ok(records[0]!.payload.equals(data));
  jv.groupAsk = null;
  await jv.close();
  await disk.close();
});

test('appends of one turn go in one job, each record\'s follower in it; records whose segment is dropped before their job settle their waiters', async () => {
  const { seg, jobs } = heldSegment();
  const q = new AppendQueue();
  const ended: string[] = [];
  const followers = [1, 2, 3].map((seq) => {
    q.enqueue(seg, seq, [Buffer.alloc(10)], { offset: seq * 8, length: 8 });
    return q.follow(seq, following(seq * 4096, ended));
  });
  assert.ok(followers.every((f) => f !== null), 'the first record of the turn takes its follower too');
  await Promise.resolve();
  assert.equal(jobs.length, 1, 'one job for the turn');
  assert.deepEqual(jobs[0]!.after?.positions, [4096, 8192, 12288]);
  jobs[0]!.finish([0, 0, 0]);
  assert.deepEqual(await Promise.all(followers), [0, 0, 0]);
  // Queued, then their segment let go before the job began: moot, and said so.
  const gone = heldSegment();
  const r = new AppendQueue();
  r.enqueue(gone.seg, 1, [Buffer.alloc(10)], { offset: 0, length: 8 });
  r.enqueue(gone.seg, 2, [Buffer.alloc(10)], { offset: 8, length: 8 });
  const alone = r.follow(2, following(0, ended))!;
  const drained = r.drained();
  const written = r.whenWritten(2);
  gone.seg.removed = true;
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('a waiter never settled')), 2000));
  await Promise.race([Promise.all([drained, written]), timeout]);
  assert.equal(await alone, WRITE_ALONE);
  assert.equal(gone.jobs.length, 0, 'nothing written for a dropped segment');
});
