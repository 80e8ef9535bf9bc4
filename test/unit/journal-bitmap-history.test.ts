// The dirty bitmap's pages and damage handling, the on_full: block policy, and the
// per-minute history file.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { BITMAP_FILE, BITS_PER_PAGE, DirtyBitmap, PAGE_SIZE } from '../../src/journal/bitmap.js';
import { HISTORY_HEADER, HISTORY_MINUTES, History, HistoryRing, readHistory } from '../../src/journal/history.js';
import { Journal } from '../../src/journal/journal.js';
import { FLAG_ROUND_END, RecordKind } from '../../src/journal/record.js';
import { RoundMarker } from '../../src/sync/round-marker.js';
import { DirStore } from '../../src/journal/store.js';
import { JournaledVolume, type Disk } from '../../src/journal/write-path.js';
import { IntentRing } from '../../src/journal/intent.js';
import { zeroHash } from '../../src/sync/region-hashes.js';
import type { Store, StoreFile } from '../../src/store/store.js';
import { silentLogger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';
import { memDisk } from '../helpers/mem-disk.js';

const KiB = 1024;

test('bitmap: marks round up to regions, persist, and cost a fixed amount of memory', async () => {
  const dir = tempDir('bm');
  const size = 1024 * 1024 * 1024;
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  assert.equal(bitmap.regions, 16384);
  assert.equal(bitmap.mark(65536 - 1, 2), 2, 'a 2-byte write across a boundary marks two regions');
  assert.equal(bitmap.mark(0, 10), 0, 'marking a marked region adds nothing');
  assert.equal(bitmap.mark(3 * 65536, 65536), 1, 'an aligned region is one bit');
  bitmap.mark(size - 1, 1);
  await bitmap.sync();
  bitmap.close();
  const { bitmap: again, notes } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  assert.deepEqual(notes, []);
  assert.deepEqual([...again.dirtyRegions()], [0, 1, 3, 16383]);
  again.clearAll([1]);
  assert.deepEqual([...again.dirtyRegions()], [0, 3, 16383]);
  again.close();
  // The file is a header and one page per 32,736 regions: 1 TiB at 64 KiB = 2 MiB.
  assert.equal(fs.statSync(path.join(dir, BITMAP_FILE)).size, 4096 + PAGE_SIZE);
  assert.equal(Math.ceil((2 ** 40 / (64 * KiB)) / BITS_PER_PAGE) * PAGE_SIZE <= 2.01 * 1024 * 1024, true);
});

test('bitmap: clearRun clears the regions allowed in a run, each page written once, and what it cleared persists', async () => {
  const dir = tempDir('bm-run');
  const size = 8 * 1024 * 1024 * 1024; // 131072 regions: five pages
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  bitmap.markAll();
  await bitmap.sync();
  const writes: number[] = [];
  const file = (bitmap as unknown as { file: { writeSync(at: number, b: Buffer): void } }).file;
  const real = file.writeSync.bind(file);
  file.writeSync = (at, b) => { writes.push(at); real(at, b); };
  // Regions 10..100000 but not 500 (say, touched by a record of the round).
  assert.equal(bitmap.clearRun(10, 100_000, (r) => r !== 500), 100_000 - 10 - 1);
  assert.equal(bitmap.count, 131072 - (100_000 - 10 - 1));
  assert.equal(new Set(writes).size, writes.length, 'each page once');
  assert.equal(writes.length, Math.floor((99_999 >> 3) / (BITS_PER_PAGE / 8)) + 1);
  assert.equal(bitmap.clearRun(10, 100_000, () => true), 1, 'only the one left');
  assert.throws(() => bitmap.clearRun(0, 131073, () => true), /inside the bitmap/);
  await bitmap.sync();
  bitmap.close();
  const { bitmap: again } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  assert.equal(again.count, 131072 - 99_990);
  assert.deepEqual([...again.dirtyRegions()].slice(0, 11), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100_000]);
  again.close();
});

test('bitmap: a damaged page counts as all dirty, never as clean', async () => {
  const dir = tempDir('bm2');
  const size = 8 * 1024 * 1024 * 1024;
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  bitmap.mark(0, 1);
  await bitmap.sync();
  bitmap.close();
  const file = path.join(dir, BITMAP_FILE);
  const buf = fs.readFileSync(file);
  buf.writeUInt8(buf.readUInt8(4096 + PAGE_SIZE + 7) ^ 0x10, 4096 + PAGE_SIZE + 7); // page 1
  fs.writeFileSync(file, buf);
  const { bitmap: b2, notes } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  assert.match(notes[0]!, /page 1 was damaged/);
  assert.equal(b2.count, 1 + BITS_PER_PAGE);
  assert.ok(b2.isSet(0) && b2.isSet(BITS_PER_PAGE) && !b2.isSet(1));
  b2.close();
  // A header for another region size: its marks carry over (test/unit/bitmap-region.test.ts), here region 0 and page 1's, halved.
  const { bitmap: b3, notes: n3 } = await DirtyBitmap.open(new DirStore(dir), size, 128 * KiB);
  assert.match(n3[0]!, /region size was 65536 bytes and bitmap_region is now 131072/);
  assert.equal(b3.count, 1 + BITS_PER_PAGE / 2);
  b3.close();
  // A damaged header: every region marked.
  const hb = fs.readFileSync(file);
  hb.writeUInt8(hb.readUInt8(12) ^ 0x01, 12);
  fs.writeFileSync(file, hb);
  const { bitmap: b4, notes: n4 } = await DirtyBitmap.open(new DirStore(dir), size, 128 * KiB);
  assert.match(n4[0]!, /dirty bitmap unusable \(header checksum mismatch\): every region will be resynced/);
  assert.equal(b4.count, b4.regions);
  b4.close();
});

/** A 1 MiB journal under on_full: block, filled by four writes of 250 KiB: the next write waits for space. */
async function fullUnderBlock(name: string) {
  const dir = tempDir(name);
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 1024 * KiB, segmentSize: 256 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), 4 * 1024 * KiB, 64 * KiB);
  const jv = new JournaledVolume({ disk: memDisk(4 * 1024 * KiB), journal, bitmap, onFull: 'block', log: silentLogger });
  await jv.start(report);
  const chunk = Buffer.alloc(250 * KiB, 1);
  for (let i = 0; i < 4; i++) await jv.write(i * chunk.length, chunk, false);
  return { journal, bitmap, jv, chunk };
}

test('on_full: block holds host writes until the peer acks free space', async () => {
  const { journal, bitmap, jv, chunk } = await fullUnderBlock('block');
  let done = false;
  const blocked = jv.write(4 * chunk.length, chunk, false).then(() => { done = true; });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(done, false, 'the fifth write waits for space');
  assert.equal(jv.mode, 'journal', 'block never switches to the bitmap');
  await jv.release(journal.lastSeq);
  await blocked;
  assert.equal(done, true);
  assert.equal(bitmap.count, 0);
  await jv.close();
});

test('on_full changed by a reload from block to bitmap: the writes waiting for space go on, tracked by the bitmap', async () => {
  const { journal, bitmap, jv, chunk } = await fullUnderBlock('block-to-bitmap');
  let done = 0;
  const blocked = [4, 5].map((i) => jv.write(i * chunk.length, chunk, false).then(() => done++));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(done, 0, 'both wait for space');
  jv.setOnFull('bitmap');
  assert.equal(jv.onFull, 'bitmap');
  await Promise.all(blocked);
  assert.equal(done, 2);
  assert.equal(jv.mode, 'bitmap', 'the journal full, they overflowed to the bitmap');
  assert.ok(bitmap.isSet(Math.floor((4 * chunk.length) / (64 * KiB))) && bitmap.isSet(Math.floor((5 * chunk.length) / (64 * KiB))));
  await jv.close();
});

test('journal: a reload grows it: the writes waiting for space (on_full: block) go on, in the journal; shrunk only down to what it holds', async () => {
  const { journal, bitmap, jv, chunk } = await fullUnderBlock('resize');
  let done = 0;
  const blocked = [4, 5].map((i) => jv.write(i * chunk.length, chunk, false).then(() => done++));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(done, 0, 'both wait for space');
  const held = journal.usedBytes;
  assert.throws(() => jv.resizeJournal(held - 1), /below the \d+ it holds/);
  assert.equal(journal.capacity, 1024 * KiB, 'a refused resize changes nothing');
  const before = jv.redoBound;
  jv.resizeJournal(2048 * KiB);
  await Promise.all(blocked);
  assert.deepEqual([done, jv.mode, bitmap.count, journal.capacity], [2, 'journal', 0, 2048 * KiB], 'journaled, in order, nothing in the bitmap');
  assert.ok(jv.redoBound > before, 'the redo bound follows the size');
  // Down to what it holds: taken; the next write that does not fit waits again.
  jv.resizeJournal(journal.usedBytes + 64); // (and a segment header: room for the next segment's)
  let more = false;
  const waiting = jv.write(6 * chunk.length, chunk, false).then(() => { more = true; });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(more, false);
  await jv.release(journal.lastSeq);
  await waiting;
  await jv.close();
});

test('the epoch bound holds for writes a range lock lets go at once; a barrier the journal refuses after a large record ' +
  'sends the volume to the bitmap', async () => {
  const dir = tempDir('epoch-bound');
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 4096 * KiB, segmentSize: 1024 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), 4 * 1024 * KiB, 64 * KiB);
  const disk = memDisk(4 * 1024 * KiB);
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', log: silentLogger });
  await jv.start(report);
  jv.maxEpochBytes = 16 * KiB; // (what a peer with a 64 KiB receive log sets)
  // Eight 4 KiB writes wait on a verify batch's lock over their range, then go in one turn.
  const epochs: number[] = [];
  let open = 0;
  const append = journal.append.bind(journal);
  journal.append = (...a: Parameters<Journal['append']>) => {
    const r = append(...a);
    epochs.push(journal.openEpochBytes);
    open = Math.max(open, journal.openEpochBytes);
    return r;
  };
  const unlock = await (jv as unknown as { ranges: { lock(o: number, l: number): Promise<() => void> } }).ranges.lock(0, 64 * KiB);
  const writes = Array.from({ length: 8 }, (_, i) => jv.write(i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1), false));
  await new Promise((r) => setImmediate(r));
  assert.equal(epochs.length, 0, 'the writes wait for the lock');
  unlock();
  await Promise.all(writes);
  assert.ok(open <= 16 * KiB, `an epoch of ${open} bytes opened, over the bound of 16 KiB`);
  // A record alone over the bound: its barrier, refused by the journal's disk, leaves the record in and the volume on the bitmap.
  const barrier = journal.barrier.bind(journal);
  journal.barrier = () => {
    throw Object.assign(new Error('EIO: the journal disk failed'), { code: 'EIO' });
  };
  await jv.write(1024 * KiB, Buffer.alloc(32 * KiB, 0x77), false);
  journal.barrier = barrier;
  assert.equal(jv.mode, 'bitmap', 'the refused barrier sent the volume to the bitmap');
  assert.ok(disk.data.subarray(1024 * KiB, 1056 * KiB).every((b) => b === 0x77), 'and the write reached the volume');
  await jv.quiesce();
  assert.ok(bitmap.isSet(1024 / 64), 'its region is marked for the resync');
  await jv.close();
});

test('history: one line per minute with the host bytes of that minute', () => {
  const file = path.join(tempDir('hist'), 'history.csv');
  const h = new History(file);
  const src = { hostBytes: 0, records: 0, used: 64, capacity: 1000, backlog: 0, mode: 'journal' };
  h.record(Date.UTC(2026, 0, 1, 0, 0, 30), src);
  h.record(Date.UTC(2026, 0, 1, 0, 1, 30), { ...src, hostBytes: 5000, records: 3, used: 5300, backlog: 5236 });
  h.record(Date.UTC(2026, 0, 1, 0, 2, 30), { ...src, hostBytes: 5100, records: 4, used: 5400, backlog: 0, mode: 'bitmap' });
  const rows = readHistory(file);
  assert.deepEqual(rows.map((r) => [r.minute, r.hostBytes, r.records, r.journalUsed, r.backlogBytes, r.mode]), [
    ['2026-01-01T00:01:00.000Z', 5000, 3, 5300, 5236, 'journal'],
    ['2026-01-01T00:02:00.000Z', 100, 1, 5400, 0, 'bitmap'],
  ]);
});

test('history: rows in memory follow what is recorded, whatever becomes of the file; the ring keeps the last HISTORY_MINUTES', () => {
  const file = path.join(tempDir('hist'), 'history.csv');
  fs.writeFileSync(file, `${HISTORY_HEADER}\n2026-01-01T00:00:00.000Z,7,1,64,1000,0,journal\n2026-01-01T00:01:00.000Z,8,`); // a line cut short by a power loss
  const h = new History(file);
  assert.deepEqual(h.rows.last(10).map((r) => [r.minute, r.hostBytes]), [['2026-01-01T00:00:00.000Z', 7]]);
  const src = { hostBytes: 100, records: 0, used: 64, capacity: 1000, backlog: 0, mode: 'journal' };
  h.record(Date.UTC(2026, 0, 1, 0, 2, 30), src); // the baseline
  fs.rmSync(file); // gone (or replaced): memory is what the API answers
  h.record(Date.UTC(2026, 0, 1, 0, 3, 30), { ...src, hostBytes: 150, mode: 'bitmap' });
  assert.deepEqual(h.rows.last(10).map((r) => [r.minute, r.hostBytes, r.mode]), [
    ['2026-01-01T00:00:00.000Z', 7, 'journal'], ['2026-01-01T00:03:00.000Z', 50, 'bitmap'],
  ]);
  assert.equal(h.rows.appended, 2);
  // A new primary role starts a new baseline (its journal counts from scratch).
  h.restart();
  h.record(Date.UTC(2026, 0, 1, 0, 4, 30), { ...src, hostBytes: 3 });
  assert.equal(h.rows.length, 2);

  const ring = new HistoryRing(HISTORY_MINUTES);
  // A new volume's history costs what it holds (issue 18: 100 volumes held 200 MiB of empty rings).
  assert.ok(ring.allocated <= 1440, `a new ring holds room for ${ring.allocated} rows`);
  const t0 = Date.UTC(2026, 0, 1);
  for (let i = 0; i < HISTORY_MINUTES + 5; i++) {
    if (i === 3000) assert.ok(ring.allocated < HISTORY_MINUTES / 4 && ring.allocated >= 3000, `${ring.allocated} rows allocated for 3000`);
    ring.push({ minute: new Date(t0 + i * 60_000).toISOString(), hostBytes: i, records: 0, journalUsed: 0, journalCapacity: 0,
      backlogBytes: 0, mode: 'journal' });
  }
  assert.equal(ring.length, HISTORY_MINUTES);
  const all = ring.last(1e9);
  assert.equal(all[0]!.hostBytes, 5);
  assert.equal(all[all.length - 1]!.hostBytes, HISTORY_MINUTES + 4);
  assert.deepEqual(ring.last(2).map((r) => r.hostBytes), [HISTORY_MINUTES + 3, HISTORY_MINUTES + 4]);
});

test('recovery does not replay journal records over regions marked for resync (a flushed write made after an overflow stays)', async () => {
  // The state a kill -9 leaves when the journal overflowed into the bitmap and its fold
  // had not finished: a round under way, record 1 (old data at region 0) unreleased and
  // past the applied counter, region 0 marked, and the volume holding a newer write
  // there that the host flushed in bitmap mode (no journal record of its own).
  const dir = tempDir('redo-marked');
  const size = 4 * 64 * KiB;
  const jstore = new DirStore(path.join(dir, 'j'));
  const j1 = new Journal({ store: jstore, capacity: 1024 * KiB, segmentSize: 256 * KiB });
  await j1.recover();
  j1.append(RecordKind.Write, 0, 4 * KiB, Buffer.alloc(4 * KiB, 0x11));
  j1.append(RecordKind.Write, 64 * KiB, 4 * KiB, Buffer.alloc(4 * KiB, 0x22));
  await j1.sync();
  j1.close();
  const { bitmap: b1 } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  b1.mark(0, 4 * KiB);
  await b1.sync();
  b1.close();
  await new RoundMarker(new DirStore(dir)).write({ startSeq: 1, initial: false });
  const disk = memDisk(size);
  disk.data.fill(0x99, 0, 4 * KiB); // the newer, flushed write
  // Record 2's region (1) is not marked: its write may be missing from the volume and is replayed.
  const journal = new Journal({ store: jstore, capacity: 1024 * KiB, segmentSize: 256 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', log: silentLogger, roundStore: new DirStore(dir) });
  await jv.start(report);
  assert.ok(disk.data.subarray(0, 4 * KiB).every((b) => b === 0x99), 'the flushed write in a marked region was put back to older data');
  assert.ok(disk.data.subarray(64 * KiB, 68 * KiB).every((b) => b === 0x22), 'an unmarked record is replayed');
  await jv.close();
});

/** A folder whose disk fills up: once `full`, appends, growing writes and new files fail with ENOSPC. */
function fillable(dir: string): Store & { full: boolean } {
  const inner = new DirStore(dir);
  const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
  const wrap = (f: StoreFile): StoreFile => ({
    name: f.name,
    size: () => f.size(),
    appendSync: (parts) => { if (s.full) throw enospc(); f.appendSync(parts); },
    writev: (at, parts) => (s.full ? Promise.reject(enospc()) : f.writev(at, parts)),
    writeSync: (at, data) => { if (s.full && at + data.length > f.size()) throw enospc(); f.writeSync(at, data); },
    read: (at, length) => f.read(at, length),
    sync: () => f.sync(),
    truncateSync: (length) => f.truncateSync(length),
    close: () => f.close(),
  });
  const s = {
    full: false,
    list: () => inner.list(),
    open: (name: string) => wrap(inner.open(name)),
    create: (name: string) => { if (s.full) throw enospc(); return wrap(inner.create(name)); },
    remove: (name: string) => inner.remove(name),
    rename: (from: string, to: string) => inner.rename(from, to),
    syncDir: () => inner.syncDir(),
    replace: (name: string, data: Buffer) => (s.full ? Promise.reject(enospc()) : inner.replace(name, data)),
  };
  return s;
}

test('writes in flight at a crash, journaled again on a full journal disk, are marked for resync (the fold sees records that never reached ' +
  'the file)', async () => {
  // The state a kill -9 leaves with two host writes in flight: record 1 in the journal,
  // the intents of records 2 and 3 in the ring, their data on the volume, not in the
  // journal. At the restart the journal's disk is full: the re-journaled records are
  // appended but never written, and the write path falls back to the bitmap.
  const dir = tempDir('rejournal-full');
  const size = 4 * 64 * KiB;
  const jdir = path.join(dir, 'j');
  const j1 = new Journal({ store: new DirStore(jdir), capacity: 1024 * KiB, segmentSize: 256 * KiB });
  await j1.recover();
  j1.append(RecordKind.Write, 0, 4 * KiB, Buffer.alloc(4 * KiB, 0x11));
  await j1.sync();
  j1.close();
  const ring = IntentRing.open(new DirStore(jdir), 64)!;
  ring.recordAll([{ seq: 2, offset: 64 * KiB, length: 4 * KiB }, { seq: 3, offset: 128 * KiB, length: 4 * KiB }]);
  await ring.sync();
  ring.close();
  const disk = memDisk(size);
  disk.data.fill(0x11, 0, 4 * KiB);
  disk.data.fill(0x22, 64 * KiB, 68 * KiB);
  disk.data.fill(0x33, 128 * KiB, 132 * KiB);
  const jstore = fillable(jdir);
  const journal = new Journal({ store: jstore, capacity: 1024 * KiB, segmentSize: 256 * KiB });
  const report = await journal.recover();
  jstore.full = true;
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', intentStore: jstore, intentSlots: 64, log: silentLogger });
  await jv.start(report);
  await jv.quiesce();
  assert.equal(jv.mode, 'bitmap');
  await jv.close();
  // The writes on the volume the peer never got must be resynced: marked, durably.
  const { bitmap: after } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  assert.deepEqual([...after.dirtyRegions()], [0, 1, 2], 'regions 1 and 2 hold writes in no journal record and no bitmap mark');
  after.close();
});

test('a round resumed after a stop finds the end it had journaled: no second end, the peer past it is not sent the round again', async () => {
  // A primary stopped after journaling its round's end (record 3), before the peer
  // acked it. Resumed without knowing that end, it appended a second one and, on the
  // next link, told a peer that had already closed the round to open it again: that
  // peer waited for an end it had passed and never left the round.
  const dir = tempDir('round-end-resume');
  const size = 4 * 64 * KiB;
  const jstore = new DirStore(path.join(dir, 'j'));
  const j1 = new Journal({ store: jstore, capacity: 1024 * KiB, segmentSize: 256 * KiB });
  await j1.recover();
  j1.append(RecordKind.Write, 0, 64 * KiB, Buffer.alloc(64 * KiB, 0x11));
  j1.append(RecordKind.Write, 64 * KiB, 4 * KiB, Buffer.alloc(4 * KiB, 0x22));
  j1.barrier(FLAG_ROUND_END, true);
  await j1.sync();
  j1.markApplied(3);
  await j1.sync();
  j1.close();
  await (await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB)).bitmap.sync();
  await new RoundMarker(new DirStore(dir)).write({ startSeq: 1, initial: true });
  const open = async (): Promise<JournaledVolume> => {
    const journal = new Journal({ store: jstore, capacity: 1024 * KiB, segmentSize: 256 * KiB });
    const report = await journal.recover();
    const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
    const jv = new JournaledVolume({ disk: memDisk(size), journal, bitmap, onFull: 'bitmap', log: silentLogger, roundStore: new DirStore(dir) });
    await jv.start(report);
    return jv;
  };
  const jv = await open();
  assert.equal(jv.roundStart, 1, 'the round resumes');
  assert.equal(jv.roundEnd, 3, 'with the end it had journaled');
  assert.equal(await jv.resyncStep(1 << 20), false, 'no second end is appended');
  assert.equal(jv.journal.lastSeq, 3);
  // The peer acks the end: the round completes.
  await jv.release(3);
  await jv.flush();
  assert.equal(jv.roundStart, 0, 'the round is complete once the peer holds its end');
  await jv.close();

  // With regions marked since the end was journaled (a power loss kept writes from the
  // journal), a second end would close the peer's round twice: a new round is due instead.
  const j2 = new Journal({ store: jstore, capacity: 1024 * KiB, segmentSize: 256 * KiB });
  await j2.recover();
  j2.append(RecordKind.Write, 0, 4 * KiB, Buffer.alloc(4 * KiB, 0x33));
  j2.barrier(FLAG_ROUND_END, true);
  await j2.sync();
  j2.close();
  await new RoundMarker(new DirStore(dir)).write({ startSeq: 4, initial: false });
  const { bitmap: b } = await DirtyBitmap.open(new DirStore(dir), size, 64 * KiB);
  b.mark(128 * KiB, 4 * KiB);
  await b.sync();
  b.close();
  const again = await open();
  await again.quiesce();
  assert.equal(again.mode, 'bitmap', 'the regions go to a new round');
  const next = await again.startResync();
  assert.ok(next > 5, `the new round starts after the journaled end (at ${next})`);
  await again.close();
});

test('a first sync\'s reply still being read when an overflow folds its round away clears nothing of the next round', async () => {
  // Replication seeds 131, 911, 912: the first sync's map of the peer's holes came in
  // and took the range lock, and while this side's allocation map was read the journal
  // overflowed, the round was folded away and the next link began a new round (which
  // does not compare). The old reply then cleared the new round's regions where both
  // sides were holes, among them one a record of the old round had touched (the peer
  // jumps over that record, the volume lost it at a crash): the round never sent it.
  const dir = tempDir('seed-stale-reply');
  const RS = 64 * KiB;
  const size = 8 * RS;
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 1024 * KiB, segmentSize: 256 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), size, RS);
  const disk = memDisk(size);
  // This side's map and reads wait while `gate` is shut; every region is a hole.
  let open: () => void = () => undefined;
  let gate: Promise<void> | null = null;
  const shut = (): void => { gate = new Promise((r) => { open = r; }); };
  disk.extents = async (_o, l) => { if (gate) await gate; return [{ length: l, hole: true }]; };
  const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', log: silentLogger, roundStore: new DirStore(dir) });
  await jv.start(report);
  await jv.beginInitialSync();
  await jv.startResync();
  assert.equal(jv.seeding, true, 'the first round compares');
  const wait = (): Promise<void> => new Promise((r) => setImmediate(r));

  // The peer's map: holes everywhere. Accepted, it waits for this side's map.
  shut();
  const map = jv.clearHoles(0, size, [{ offset: 0, length: size }]);
  await wait();
  // An overflow folds the round away; the next link begins a new round.
  await jv.restartRound('test: the journal overflowed');
  assert.equal(jv.seeding, false, 'the new round sends every region whole');
  assert.equal(bitmap.count, 8);
  open();
  gate = null;
  assert.equal(await map, 0, 'the old round\'s map clears nothing');
  assert.equal(bitmap.count, 8, 'every region is still to send');

  // The same for hashes, and with a next round that compares too (it waits for
  // region 0's hashes as well, but from the peer's replica as it holds it now).
  await jv.beginInitialSync();
  await jv.startResync();
  assert.equal(jv.seeding, true);
  const every = (r: number): number => r;
  assert.deepEqual(jv.seed.nextAsk(RS, size, 256, false, every), { type: 'hash', first: 0, count: 8 });
  shut();
  const hashes = jv.compareRegions(0, RS, Array.from({ length: 8 }, () => zeroHash('sha256', RS)), 'sha256');
  await wait();
  await jv.beginInitialSync();
  await jv.startResync();
  assert.equal(jv.seeding, true);
  open();
  gate = null;
  assert.equal(await hashes, 0, 'the old round\'s hashes clear nothing');
  assert.equal(bitmap.count, 8);
  assert.deepEqual(jv.seed.nextAsk(RS, size, 256, false, every), { type: 'hash', first: 0, count: 8 });
  assert.equal(await jv.compareRegions(0, RS, Array.from({ length: 8 }, () => zeroHash('sha256', RS)), 'sha256'), 8, 'the new round\'s own reply does');
  await jv.close();
});
