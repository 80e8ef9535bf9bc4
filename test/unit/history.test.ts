// The secondary's history (src/history/, docs/HISTORY.md): its format from fixed bytes,
// the first-wins extent map, retention's decisions, and invariant 8 on a real folder:
// every listed point opens to exactly the image the replica held there, across
// overwrites within one batch, zeroes, coalesced units, a crash between saving and
// writing, a torn tail, and retention by size; the apply's reads written only once their
// saved bytes are durable while the next read is saved, and a sync failing meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirStore } from '../../src/journal/store.js';
import { RecordKind, FLAG_ROUND_END, type JournalRecord } from '../../src/journal/record.js';
import type { Disk } from '../../src/journal/disk.js';
import type { StoreFile } from '../../src/store/store.js';
import type { Extent } from '../../src/export/backend.js';
import { silentLogger } from '../../src/log/log.js';
import { ExtentMap } from '../../src/history/extent-map.js';
import {
  decodeEntryHead, decodeHeader, decodeHeadsHeader, encodeEntryHead, encodeHeader, encodeHeadsHeader, entryBytes, EntryKind, HEADS_FORMAT, headsFileIndex,
  headsFileName, HEADS_HEADER_SIZE, HISTORY_FORMAT, historyFileIndex, historyFileName,
} from '../../src/history/format.js';
import { segmentsToDrop, thinPoints } from '../../src/history/retention.js';
import { History, isHistoryFile, type CaptureContext } from '../../src/history/history.js';
import { HistoryStreams, STREAMS_FILE, STREAMS_FORMAT } from '../../src/history/streams.js';
import { PointView } from '../../src/history/view.js';
import { readHeads } from '../../src/history/heads.js';
import { Journal } from '../../src/journal/journal.js';
import { ReplicaRound } from '../../src/secondary/replica-round.js';
import { UnitApplier } from '../../src/secondary/apply-unit.js';
import { refuseNewer } from '../../src/versioning/format.js';
import { parseMoment } from '../../src/units/units.js';
import { tempDir } from '../helpers/run.js';

test('a history segment header, byte by byte', () => {
  const b = encodeHeader(0x1_0000_0000);
  assert.equal(b.toString('hex'),
    '4f46465348495354' + '02000000' + '00000000' + '0000000001000000' + '00000000' + b.subarray(28).toString('hex'));
  assert.equal(b.readUInt32LE(28), 0xff6baf03, 'the CRC32C of bytes 0..28');
  assert.deepEqual(decodeHeader(b), { ok: true, volumeSize: 0x1_0000_0000 });
  // Version 1, as the previous release wrote it (its points' seqs are their records': base 0), still reads.
  const fixed = Buffer.from('4f46465348495354010000000000000000000000010000000000000000000000', 'hex');
  fixed.writeUInt32LE(0xa6afb7c4, 28);
  assert.deepEqual(decodeHeader(fixed), { ok: true, volumeSize: 0x1_0000_0000 });
  refuseNewer(HISTORY_FORMAT, fixed, 'history.00000001');
  const bad = Buffer.from(fixed);
  bad[20] = bad[20]! ^ 1;
  assert.deepEqual(decodeHeader(bad), { ok: false, reason: 'header checksum' });
  // A newer release's segment is refused by version, not dropped as damaged.
  const newer = Buffer.from(fixed);
  newer.writeUInt32LE(3, 8);
  assert.throws(() => refuseNewer(HISTORY_FORMAT, newer, 'history.00000001'), /newer/);
  assert.equal(historyFileName(7), 'history.00000007');
  assert.equal(historyFileIndex('history.00000007'), 7);
  assert.equal(historyFileIndex('history.csv'), null);
});

test('an entry head, byte by byte: a saved range and a point', () => {
  const saved = { kind: EntryKind.Saved, point: 41, seq: 42, offset: 8192, length: 4096, dataCrc: 0xdeadbeef };
  const b = encodeEntryHead(saved);
  assert.equal(b.subarray(0, 36).toString('hex'),
    '02000000' + '00100000' + '2900000000000000' + '2a00000000000000' + '0020000000000000' + 'efbeadde');
  assert.deepEqual(decodeEntryHead(b), { ok: true, head: saved });
  const point = encodeEntryHead({ kind: EntryKind.Point, point: 7, seq: 1_764_700_000_000, offset: 0, length: 0, dataCrc: 0 });
  const d = decodeEntryHead(point);
  assert.ok(d.ok && d.head.kind === EntryKind.Point && d.head.seq === 1_764_700_000_000);
  // A group point: its number in bytes 24..32.
  const gp = encodeEntryHead({ kind: EntryKind.Point, point: 9, seq: 1_764_700_000_000, offset: 1_764_700_000_001, length: 0, dataCrc: 0 });
  assert.equal(gp.subarray(0, 32).toString('hex'), '01000000' + '00000000' + '0900000000000000' + '000f51e09a010000' + '010f51e09a010000');
  const dg = decodeEntryHead(gp);
  assert.ok(dg.ok && dg.head.offset === 1_764_700_000_001);
  const torn = Buffer.from(b);
  torn[30] = torn[30]! ^ 0x40;
  assert.deepEqual(decodeEntryHead(torn), { ok: false, reason: 'head checksum' });
  assert.deepEqual(decodeEntryHead(b.subarray(0, 39)), { ok: false, reason: 'short head' });
});

test('a heads file header, byte by byte', () => {
  const b = encodeHeadsHeader({ count: 3, segmentBytes: 0x1_0000_0020, headsCrc: 0xcafef00d });
  assert.equal(b.subarray(0, 28).toString('hex'),
    '4f46465348484453' + '01000000' + '03000000' + '2000000001000000' + '0df0feca');
  const fixed = Buffer.from('4f464653484844530100000003000000200000000100000' + '00df0feca00000000', 'hex');
  fixed.writeUInt32LE(b.readUInt32LE(28), 28);
  assert.deepEqual(decodeHeadsHeader(fixed), { ok: true, header: { count: 3, segmentBytes: 0x1_0000_0020, headsCrc: 0xcafef00d } });
  const bad = Buffer.from(fixed);
  bad[13] = bad[13]! ^ 1;
  assert.deepEqual(decodeHeadsHeader(bad), { ok: false, reason: 'header checksum' });
  const newer = Buffer.from(fixed);
  newer.writeUInt32LE(2, 8);
  assert.throws(() => refuseNewer(HEADS_FORMAT, newer, 'history.00000001.heads'), /newer/);
  assert.equal(headsFileName(7), 'history.00000007.heads');
  assert.equal(headsFileIndex('history.00000007.heads'), 7);
  assert.equal(historyFileIndex('history.00000007.heads'), null);
  assert.equal(headsFileIndex('history.00000007'), null);
});

test('the extent map keeps the first range put anywhere, and reads back in parts', () => {
  const m = new ExtentMap<string>();
  assert.deepEqual(m.fill(10, 20, () => 'a'), [{ start: 10, end: 20 }]);
  assert.deepEqual(m.fill(0, 30, () => 'b'), [{ start: 0, end: 10 }, { start: 20, end: 30 }]);
  assert.deepEqual(m.fill(5, 25, () => 'c'), []);
  assert.deepEqual([...m.parts(-5, 35)].map((p) => [p.start, p.end, p.extent?.value ?? null]),
    [[-5, 0, null], [0, 10, 'b'], [10, 20, 'a'], [20, 30, 'b'], [30, 35, null]]);
  assert.equal(m.size, 3);
});

test('the extent map matches a byte-by-byte model, joining neighbours of one value and keeping others apart (seeded)', () => {
  let x = 12345;
  const rand = (n: number): number => { x = (x * 1103515245 + 12345) % 2 ** 31; return x % n; };
  for (let round = 0; round < 206; round++) {
    // (The last rounds fill thousands of extents: blocks of the map split.)
    const big = round >= 200;
    const space = big ? 20_000 : 200;
    const m = new ExtentMap<string>();
    const model: Array<string | null> = new Array(space).fill(null);
    const values = ['a', 'b', 'c', 'd', 'e'];
    for (let k = 0; k < (big ? 4000 : 30); k++) {
      const start = rand(space - 10);
      const end = start + 1 + rand(10);
      const v = values[rand(values.length)]!;
      const added = m.fill(start, end, () => v);
      let n = 0;
      for (let b = start; b < end; b++) if (model[b] === null) { model[b] = v; n++; }
      assert.equal(added.reduce((t, p) => t + p.end - p.start, 0), n, `round ${round}: what fill says it added`);
    }
    const seen: Array<string | null> = new Array(space).fill(null);
    let last: { end: number; value: string } | null = null;
    for (const p of m.parts(0, space)) {
      for (let b = p.start; b < p.end; b++) seen[b] = p.extent?.value ?? null;
      if (p.extent && last && last.end === p.start) assert.notEqual(last.value, p.extent.value, `round ${round}: neighbours of one value not joined`);
      last = p.extent ? { end: p.end, value: p.extent.value } : null;
    }
    assert.deepEqual(seen, model, `round ${round}`);
    if (big) assert.ok(m.size > 512, `round ${round}: ${m.size} extents, more than a block`);
  }
});

test('thinning keeps every young point, the newest per bucket of older ones, pins, and the ends', () => {
  const now = 100 * 24 * 3600_000;
  const pts = [];
  // One point a minute for two days.
  for (let t = 0; t < 2 * 24 * 60; t++) pts.push({ seq: t + 1, time: now - (2 * 24 * 60 - t) * 60_000 });
  const kept = thinPoints(pts, now, new Set([5]));
  const young = kept.filter((p) => now - p.time < 3600_000);
  assert.equal(young.length, 59, 'the last hour: every point');
  assert.ok(kept.some((p) => p.seq === 5), 'a pinned point stays');
  assert.equal(kept[0]!.seq, 1, 'the oldest stays');
  assert.equal(kept[kept.length - 1]!.seq, pts.length, 'the newest stays');
  // Between an hour and a day: one per 10 minutes (23 h of them, give or take a bucket at each end).
  const tenMin = kept.filter((p) => now - p.time >= 3600_000 && now - p.time < 24 * 3600_000);
  assert.ok(tenMin.length >= 137 && tenMin.length <= 140, `${tenMin.length}`);
  assert.ok(thinPoints(pts, now, new Set(), 100).length <= 100, 'at most max');
});

test('retention drops whole old segments: by size whatever they hold, by age only unpinned and all older', () => {
  const seg = (bytes: number, newestPointTime: number | null, pinned = false) => ({ bytes, newestPointTime, pinned });
  const now = 1_000_000;
  assert.deepEqual(segmentsToDrop([seg(10, 1, true), seg(10, 2), seg(10, 3)], { maxBytes: 15, keepMs: null, now }), { count: 2, forSize: 2 });
  assert.deepEqual(segmentsToDrop([seg(10, 1), seg(10, now - 10), seg(10, now)], { maxBytes: null, keepMs: 100, now }), { count: 1, forSize: 0 });
  assert.deepEqual(segmentsToDrop([seg(10, 1, true), seg(10, 2), seg(10, now)], { maxBytes: null, keepMs: 100, now }), { count: 0, forSize: 0 });
  assert.deepEqual(segmentsToDrop([seg(10, null), seg(10, 1)], { maxBytes: null, keepMs: 100, now }), { count: 1, forSize: 0 }, 'never the newest');
});

test('parseMoment reads ISO 8601, "15m ago", now and milliseconds', () => {
  const now = Date.parse('2026-12-03T12:00:00Z');
  assert.equal(parseMoment('2026-12-03T10:14:00Z', now), Date.parse('2026-12-03T10:14:00Z'));
  assert.equal(parseMoment('15m ago', now), now - 15 * 60_000);
  assert.equal(parseMoment('now', now), now);
  assert.equal(parseMoment(12345, now), 12345);
  assert.throws(() => parseMoment('yesterday-ish', now), /not a time/);
  assert.throws(() => parseMoment('12/03/2026', now), /not a time/);
});

// --- invariant 8 on a real folder ---------------------------------------------------

const BLOCK = 4096;
const SIZE = 16 * BLOCK;

/** A replica volume in memory, reporting all-zero blocks as holes. */
function memDisk(bytes: Buffer): Disk {
  const d = {
    name: 'v', size: bytes.length, description: 'test', readOnly: false,
    read: async (o: number, into: Buffer, at: number, n: number) => { bytes.copy(into, at, o, o + n); },
    write: async (o: number, data: Buffer) => { data.copy(bytes, o); },
    writeZeroes: async (o: number, n: number) => { bytes.fill(0, o, o + n); },
    punch: async (o: number, n: number) => { bytes.fill(0, o, o + n); return true; },
    trim: async () => undefined, flush: async () => undefined, cache: async () => undefined,
    extents: async (o: number, n: number): Promise<Extent[]> => {
      const out: Extent[] = [];
      for (let at = o; at < o + n;) {
        const end = Math.min(o + n, (Math.floor(at / BLOCK) + 1) * BLOCK);
        const hole = bytes.subarray(at, end).every((x) => x === 0);
        const last = out[out.length - 1];
        if (last && last.hole === hole) last.length += end - at;
        else out.push({ length: end - at, hole });
        at = end;
      }
      return out;
    },
  };
  return d as unknown as Disk;
}

let seqNext = 1;
const write = (block: number, blocks: number, tag: number): JournalRecord => {
  const payload = Buffer.alloc(blocks * BLOCK, tag);
  return { kind: RecordKind.Write, flags: 0, seq: seqNext++, epoch: 0, offset: block * BLOCK, length: payload.length, time: 0, payload };
};
const zeroes = (block: number, blocks: number): JournalRecord =>
  ({ kind: RecordKind.Zeroes, flags: 0, seq: seqNext++, epoch: 0, offset: block * BLOCK, length: blocks * BLOCK, time: 0, payload: Buffer.alloc(0) });
/** (Times a few minutes back: younger than an hour, every point stays listed.) */
const T0 = Date.now() - 600_000;
const barrier = (time: number, flags = 0): JournalRecord =>
  ({ kind: RecordKind.Barrier, flags, seq: seqNext++, epoch: 0, offset: 0, length: 0, time: T0 + time, payload: Buffer.alloc(0) });
const skip = (until: number): JournalRecord =>
  ({ kind: RecordKind.Skip, flags: 0, seq: seqNext++, epoch: 0, offset: until, length: 0, time: 0, payload: Buffer.alloc(0) });

/** Runs `fn` in a new folder, removed after. */
async function inFolder(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir('history');
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes one record to the replica, as the apply does. */
async function writeOne(disk: Disk, r: JournalRecord): Promise<void> {
  if (r.kind === RecordKind.Write) await disk.write(r.offset, r.payload, false);
  else if (r.kind === RecordKind.Zeroes) await disk.punch(r.offset, r.length);
}

/** Applies a batch as UnitApplier does: capture first, then the writes. */
async function apply(h: History, disk: Disk, batch: JournalRecord[], ctx: CaptureContext): Promise<void> {
  await h.capture(disk, batch, ctx);
  for (const r of batch) await writeOne(disk, r);
}

async function opens(h: History, disk: Disk, images: Map<number, Buffer>, upTo: number): Promise<number> {
  let n = 0;
  for (const p of h.list(upTo)) {
    const want = images.get(p.seq);
    assert.ok(want, `point ${p.seq} is no point the test made`);
    const v = await PointView.open(h, h.find(p.seq)!, disk, async () => () => undefined);
    const got = Buffer.alloc(SIZE);
    await v.read(0, got, 0, SIZE);
    v.close();
    assert.ok(got.equals(want), `point ${p.seq} opens to another image`);
    n++;
  }
  return n;
}

test('every listed point opens to the image the replica held there (invariant 8), across a restart', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const ctx = (unitStart: number): CaptureContext => ({ capturing: true, inRound: false, group: false, unitStart });
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
    const unit = async (batch: JournalRecord[], unitStart: number): Promise<number> => {
      h.beginUnit(unitStart);
      // The test's model: the image at each barrier the unit reaches, applied record by record.
      const model = Buffer.from(images.get(unitStart) ?? bytes);
      for (const r of batch) {
        if (r.kind === RecordKind.Write) r.payload.copy(model, r.offset);
        else if (r.kind === RecordKind.Zeroes) model.fill(0, r.offset, r.offset + r.length);
        else if (r.kind === RecordKind.Barrier) images.set(r.seq, Buffer.from(model));
      }
      await apply(h, disk, batch, ctx(unitStart));
      await h.sync();
      await h.unitApplied();
      return batch[batch.length - 1]!.seq;
    };
    let applied = 0;
    // Two epochs in one batch, the second overwriting the first's block: its saved bytes are the first's.
    applied = await unit([write(1, 2, 0x11), barrier(1000), write(2, 1, 0x22), write(1, 1, 0x23), barrier(2000)], applied);
    applied = await unit([zeroes(1, 1), write(5, 3, 0x33), barrier(3000)], applied);
    // A coalesced unit: the barrier a Skip reaches past is no point.
    const s = skip(seqNext + 3);
    applied = await unit([s, barrier(4000), write(5, 1, 0x44), barrier(5000)], applied);
    assert.deepEqual(h.list(applied).map((p) => p.seq), [0, 2, 5, 8, 12], 'the barrier a Skip reaches past (10) is no point');
    assert.equal(await opens(h, disk, images, applied), 5);
    h.close();
    // A restart: the points are read back from the segments.
    const again = await History.open(store, SIZE, applied, 'v', silentLogger, { keepMs: null, maxBytes: null });
    assert.equal(await opens(again, disk, images, applied), 5);
    // (Point 0 carries this site's clock when the history began: the others, the primary's.)
    assert.deepEqual(again.list(applied).slice(1).map((p) => p.time - T0), [1000, 2000, 3000, 5000]);
    again.close();
  });
});

test('a volume grown under its history (docs/CONFIG.md, "Growing a volume"): its points stay, and one from before opens with zeros where it grew', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    // The replica's buffer has room for the grown volume; the disk says the old size until it grows.
    const bytes = Buffer.alloc(2 * SIZE);
    let size = SIZE;
    const disk = memDisk(bytes);
    Object.defineProperty(disk, 'size', { get: () => size });
    const store = new DirStore(dir);
    const ctx = (unitStart: number): CaptureContext => ({ capturing: true, inRound: false, group: false, unitStart });
    const settings = { keepMs: null, maxBytes: null, segmentBytes: 4 * BLOCK };
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
    const unit = async (batch: JournalRecord[], unitStart: number): Promise<number> => {
      h.beginUnit(unitStart);
      await apply(h, disk, batch, ctx(unitStart));
      await h.sync();
      await h.unitApplied();
      const last = batch[batch.length - 1]!;
      images.set(last.seq, Buffer.from(bytes));
      return last.seq;
    };
    let applied = await unit([write(1, 2, 0x11), barrier(1000)], 0);
    applied = await unit([write(3, 4, 0x12), barrier(2000)], applied);
    size = 2 * SIZE;
    h.grow(size);
    applied = await unit([write(SIZE / BLOCK + 1, 2, 0x21), write(2, 1, 0x22), barrier(3000)], applied);
    applied = await unit([write(SIZE / BLOCK + 2, 3, 0x23), barrier(4000)], applied);
    const check = async (x: History): Promise<void> => {
      const listed = x.list(applied);
      assert.deepEqual(listed.map((p) => p.seq), [0, 2, 4, 7, 9]);
      for (const p of listed) {
        const v = await PointView.open(x, x.find(p.seq)!, disk, async () => () => undefined);
        const got = Buffer.alloc(2 * SIZE);
        await v.read(0, got, 0, 2 * SIZE);
        v.close();
        assert.ok(got.equals(images.get(p.seq)!), `point ${p.seq} opens to the image the replica held there`);
      }
    };
    await check(h);
    h.close();
    // A restart at the new size reads every segment back, those written before the grow too (their headers say the old size).
    const headers = readdirSync(dir).filter((n) => historyFileIndex(n) !== null).sort()
      .map((n) => decodeHeader(readFileSync(join(dir, n)).subarray(0, 64)));
    assert.ok(headers.some((x) => x.ok && x.volumeSize === SIZE) && headers.some((x) => x.ok && x.volumeSize === 2 * SIZE),
      `segments of both sizes: ${JSON.stringify(headers)}`);
    const again = await History.open(store, 2 * SIZE, applied, 'v', silentLogger, settings);
    await check(again);
    again.close();
    // A history for a larger volume than this one is still refused (a shrunk volume, or another volume's files).
    const smaller = await History.open(store, SIZE / 2, applied, 'v', silentLogger, settings);
    assert.deepEqual(smaller.list(applied).map((p) => p.seq), []);
    smaller.close();
  });
});

test('a crash after saving and before the replica write is redone right; a torn tail is cut', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE, 0x01);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const ctx = (unitStart: number): CaptureContext => ({ capturing: true, inRound: false, group: false, unitStart });
    const settings = { keepMs: null, maxBytes: null };
    let h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    const before = Buffer.from(bytes);
    // Unit 1..3: its first batch is saved and written, then a crash before its second is written.
    const b1 = [write(0, 2, 0x10)];
    const b2 = [write(1, 2, 0x20), barrier(1000)];
    h.beginUnit(0);
    await apply(h, disk, b1, ctx(0));
    await h.capture(disk, b2, ctx(0));
    h.close();
    // The start: applied is still 0; the unit is redone from its first record.
    h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    h.beginUnit(0);
    await apply(h, disk, b1, ctx(0)); // (block 0..1 hold the unit's bytes now: must not be saved as old)
    await apply(h, disk, b2, ctx(0));
    await h.sync();
    await h.unitApplied();
    const images = new Map([[0, before], [3, Buffer.from(bytes)]]);
    assert.equal(await opens(h, disk, images, 3), 2);
    h.close();
    // A torn entry at the end (a crash mid-append) is cut at the next start.
    const file = join(dir, historyFileName(1));
    const size = statSync(file).size;
    truncateSync(file, size - 100);
    h = await History.open(store, SIZE, 3, 'v', silentLogger, settings);
    assert.ok(statSync(file).size < size - 100, 'the torn entry is gone');
    h.close();
  });
});

test('past its max the oldest points go; a view of one says so, a newer one still opens', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const settings = { keepMs: null, maxBytes: 256 * 1024 };
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    let applied = 0;
    let first: PointView | null = null;
    for (let i = 0; i < 40; i++) {
      h.beginUnit(applied);
      const batch = [write(0, 16, 0x40 + i), barrier(1000 + i)];
      await apply(h, disk, batch, { capturing: true, inRound: false, group: false, unitStart: applied });
      await h.sync();
      await h.unitApplied();
      await h.keep();
      applied = batch[1]!.seq;
      if (i === 0) first = await PointView.open(h, h.find(0)!, disk, async () => () => undefined);
    }
    assert.ok(h.bytes <= 256 * 1024 + 128 * 1024, `${h.bytes} bytes kept`);
    assert.ok(h.droppedForSize > 0);
    await assert.rejects(first!.read(0, Buffer.alloc(BLOCK), 0, BLOCK), /left the history/);
    const points = h.list(applied);
    const newest = points[points.length - 2]!;
    const v = await PointView.open(h, h.find(newest.seq)!, disk, async () => () => undefined);
    const got = Buffer.alloc(BLOCK);
    await v.read(0, got, 0, BLOCK);
    assert.equal(got[0], 0x40 + 38);
    v.close();
    first!.close();
    // (Retention let a compaction begin and heads files be written in the background: they
    // end before the folder goes, or a file they write meanwhile keeps it from being removed.)
    await h.compacted();
    await h.headsWritten();
    h.close();
  });
});

test('a sealed segment gets a heads file; a point opens from it; one that does not fit its segment is not used', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    // (A max of 1 MiB: segments of 128 KiB, each sealed after about two units of 64 KiB.)
    const settings = { keepMs: null, maxBytes: 1024 * 1024 };
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
    let applied = 0;
    for (let i = 0; i < 6; i++) {
      h.beginUnit(applied);
      const batch = [write(0, 16, 0x40 + i), barrier(1000 + i)];
      await apply(h, disk, batch, { capturing: true, inRound: false, group: false, unitStart: applied });
      await h.sync();
      await h.unitApplied();
      applied = batch[1]!.seq;
      images.set(applied, Buffer.from(bytes));
    }
    await h.headsWritten();
    const segments = readdirSync(dir).filter((n) => historyFileIndex(n) !== null).sort();
    const heads = readdirSync(dir).filter((n) => headsFileIndex(n) !== null).sort();
    assert.ok(segments.length >= 3, `${segments.length} segments`);
    assert.deepEqual(heads, segments.slice(0, -1).map((n) => `${n}.heads`), 'every sealed segment, and only those, has its heads');
    assert.equal(await opens(h, disk, images, applied), 7);
    h.close();
    // A heads file gone between the folder's listing and its open (a History closed as another
    // opened the folder, three-sites test): no heads, the segment is scanned.
    assert.equal(await readHeads(store, 99, 1000), null);
    // A head in the first segment damaged: its heads file is what a start and an open read.
    const first = join(dir, segments[0]!);
    const damaged = readFileSync(first);
    damaged[32 + 40 + 5] = damaged[32 + 40 + 5]! ^ 0xff; // (the head after the first point's)
    writeFileSync(first, damaged);
    const again = await History.open(store, SIZE, applied, 'v', silentLogger, settings);
    assert.equal(await opens(again, disk, images, applied), 7, 'every point still opens from the heads files');
    again.close();
    // A heads file that does not fit its segment (damaged here) is removed, and the segment
    // scanned: its damaged head is found, and the points before it go.
    const h0 = join(dir, heads[0]!);
    const hb = readFileSync(h0);
    hb[HEADS_HEADER_SIZE + 3] = hb[HEADS_HEADER_SIZE + 3]! ^ 1;
    writeFileSync(h0, hb);
    writeFileSync(join(dir, 'history.00000099.heads'), 'left by a segment that is gone');
    writeFileSync(join(dir, 'history.00000002.heads.tmp'), 'left by a crash');
    const third = await History.open(store, SIZE, applied, 'v', silentLogger, settings);
    const left = readdirSync(dir).filter((n) => n.endsWith('.heads') || n.endsWith('.tmp'));
    assert.deepEqual(left, heads.slice(1), 'the damaged, the orphaned and the cut heads files are gone');
    assert.ok(third.list(applied).length < 7, 'the damaged segment was scanned: the points before its damage are dropped');
    third.close();
  });
});

test('compaction: segments whose points thinning hid are rewritten with what the listed points need; every listed point still opens, ' +
  'across a restart; not while a view reads them', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    let now = Date.now();
    // Segments of about three saved blocks: the history's 40 units make some dozens of them.
    const settings = { keepMs: null, maxBytes: null, now: () => now, segmentBytes: 3 * (BLOCK + 40) };
    let h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
    let applied = 0;
    let state = 7;
    const rnd = (n: number): number => (state = (state * 1103515245 + 12345) % 2 ** 31) % n;
    for (let i = 0; i < 40; i++) {
      h.beginUnit(applied);
      // Overwrites of a few hot blocks (0..5), now and then a fresh one further on.
      const batch = [write(rnd(6), 1 + rnd(2), 0x10 + i), ...(i % 7 === 0 ? [write(8 + rnd(8), 1, 0x80 + i)] : []), barrier(1000 * i)];
      await apply(h, disk, batch, { capturing: true, inRound: false, group: false, unitStart: applied });
      await h.sync();
      await h.unitApplied();
      applied = batch[batch.length - 1]!.seq;
      images.set(applied, Buffer.from(bytes));
    }
    assert.equal(await opens(h, disk, images, applied), 41);
    const before = h.bytes;
    const segments = readdirSync(dir).filter((n) => historyFileIndex(n) !== null).length;
    assert.ok(segments > 10, `${segments} segments`);
    // A view of the oldest point reads every segment: none is rewritten under it.
    const oldest = h.list(applied)[0]!;
    const view = await PointView.open(h, h.find(oldest.seq)!, disk, async () => () => undefined);
    now += 2 * 86_400_000; // (two days on: one point per hour is kept, and all these fell in one hour)
    for (let i = 0; i < 3 * segments; i++) {
      await h.keep(now);
      await h.compacted();
    }
    assert.equal(h.compactions.segments, 0, 'nothing compacted while a view reads from the oldest point on');
    const got = Buffer.alloc(SIZE);
    await view.read(0, got, 0, SIZE);
    assert.ok(got.equals(images.get(oldest.seq)!), 'the view still reads its point');
    view.close();
    const listed = h.list(applied).map((p) => p.seq);
    assert.ok(listed.length < 10, `thinning hid most points: ${listed.length} listed`);
    for (let i = 0; i < 3 * segments; i++) {
      await h.keep(now);
      await h.compacted();
    }
    assert.ok(h.compactions.segments > 3, `${h.compactions.segments} segments compacted`);
    assert.ok(h.bytes < before * 0.75, `${before} bytes of history before, ${h.bytes} after`);
    assert.ok(h.compactions.freedBytes >= (before - h.bytes) / 2, `${h.compactions.freedBytes} bytes freed by compaction`);
    assert.equal(await opens(h, disk, images, applied), listed.length, 'every listed point opens to its image');
    await h.headsWritten();
    h.close();
    assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.compact')), []);
    // A restart reads the rewritten segments (and their new heads files): the same points open.
    h = await History.open(store, SIZE, applied, 'v', silentLogger, settings);
    assert.deepEqual(h.list(applied).map((p) => p.seq), listed);
    assert.equal(await opens(h, disk, images, applied), listed.length);
    h.close();
  });
});

test('compaction keeps what a hidden point whose marker stays on disk needs: listed again after a restart, it still opens right', async () => {
  // (A review's case: a segment rewritten with the run carried in from the listed point before
  // it dropped a save a hidden point in a segment left as it was needed; retention then dropped
  // the listed point, and at the restart thinning listed the hidden one again as the oldest.)
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE, 0xee);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const now = Date.now();
    const bucket = Math.floor((now - 5 * 3_600_000) / 600_000) * 600_000; // (a 10-minute bucket 5 h back)
    const settings = { keepMs: null as number | null, maxBytes: null as number | null, now: () => now, segmentBytes: BLOCK + 4 };
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
    let applied = 0;
    const at = (time: number): JournalRecord =>
      ({ kind: RecordKind.Barrier, flags: 0, seq: seqNext++, epoch: 0, offset: 0, length: 0, time, payload: Buffer.alloc(0) });
    // Points L (an older bucket), H and N (hidden: not the newest of their bucket), Q (listed), then two recent ones.
    for (const [block, tag, time] of [[0, 1, bucket - 3_600_000], [0, 2, bucket + 1000], [1, 3, bucket + 2000], [0, 4, bucket + 3000],
      [2, 5, now - 1000], [2, 6, now - 500]] as const) {
      h.beginUnit(applied);
      const batch = [write(block, 1, tag), at(time)];
      await apply(h, disk, batch, { capturing: true, inRound: false, group: false, unitStart: applied });
      await h.sync();
      await h.unitApplied(now);
      applied = batch[1]!.seq;
      images.set(applied, Buffer.from(bytes));
    }
    for (let i = 0; i < 20; i++) {
      await h.keep(now);
      await h.compacted();
    }
    // Retention by size drops the oldest segments, L's among them.
    const L = h.list(applied)[1]!.seq;
    while (h.list(applied).some((p) => p.seq <= L)) {
      h.settings.maxBytes = h.bytes - 1;
      await h.keep(now);
      await h.compacted();
    }
    h.settings.maxBytes = null;
    assert.equal(await opens(h, disk, images, applied), h.list(applied).length);
    await h.headsWritten();
    h.close();
    const again = await History.open(store, SIZE, applied, 'v', silentLogger, settings);
    assert.equal(await opens(again, disk, images, applied), again.list(applied).length, 'every point listed after the restart opens right');
    again.close();
  });
});

test('the streams file, byte by byte: bases rising from 0, each with its primary; anything else is damage', () => {
  const fixed = Buffer.from('{"version":1,"streams":[{"base":0,"primary":"site-a"},{"base":5001,"primary":"site-b"}]}\n');
  const s = HistoryStreams.decode(fixed)!;
  assert.equal(s.base, 5001);
  assert.deepEqual(s.of(5000), { base: 0, primary: 'site-a' });
  assert.deepEqual(s.of(5001), { base: 5001, primary: 'site-b' });
  assert.ok(s.encode().equals(fixed), 'written back byte for byte');
  refuseNewer(STREAMS_FORMAT, fixed, STREAMS_FILE);
  assert.throws(() => refuseNewer(STREAMS_FORMAT, Buffer.from('{"version":2,"streams":[]}'), STREAMS_FILE), /newer/);
  for (const bad of ['', '{"version":1,"streams":[]}', '{"version":1,"streams":[{"base":-1,"primary":"a"}]}',
    '{"version":1,"streams":[{"base":0,"primary":null},{"base":0,"primary":"b"}]}', '{"version":1,"streams":[{"base":0,"primary":7}]}',
    '{"version":1,"streams":[{"base":0,"primary":"a","until":9}]}', '{"version":1,"streams":[{"base":0,"primary":"a","until":9},{"base":9,"primary":"b"}]}']) {
    assert.equal(HistoryStreams.decode(Buffer.from(bad)), null, bad);
  }
  // A follow: the next base is one past the newest point; the stream before gets its primary if it had none.
  const first = HistoryStreams.first().follow(12, 12, 'site-a', 'site-b');
  assert.equal(first.encode().toString(), '{"version":1,"streams":[{"base":0,"primary":"site-a"},{"base":13,"primary":"site-b"}]}\n');
  // No point since the last follow: the new stream takes the place of the empty one.
  assert.equal(first.follow(12, 12, 'site-b', 'site-c').encode().toString(),
    '{"version":1,"streams":[{"base":0,"primary":"site-a"},{"base":13,"primary":"site-c"}]}\n');
  // Points a failed unit marked past where the replica stood (10, 12 past 9) are never listed again.
  const cut = HistoryStreams.first().follow(12, 9, 'site-a', 'site-b');
  assert.equal(cut.encode().toString(), '{"version":1,"streams":[{"base":0,"primary":"site-a","until":9},{"base":13,"primary":"site-b"}]}\n');
  assert.deepEqual([9, 10, 12, 13, 20].map((q) => cut.unreached(q)), [false, true, true, false, false]);
  assert.ok(HistoryStreams.decode(cut.encode())!.unreached(10));
  // A history dropped after a failed write numbers on past every seq it used.
  assert.equal(cut.restartPast(40).encode().toString(), '{"version":1,"streams":[{"base":41,"primary":"site-b"}]}\n');
  assert.equal(cut.restartPast(40).base, 41);
  assert.ok(isHistoryFile(STREAMS_FILE) && isHistoryFile('history.00000003') && isHistoryFile('history.00000003.heads'));
  assert.ok(!isHistoryFile('history.csv') && !isHistoryFile('stream'));
});

test('a follow keeps every point; the new primary\'s records, numbered from 1 again, are points past them; all open, across a restart', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const settings = { keepMs: null, maxBytes: null };
    const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
    let h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    /** Applies a unit from record `unitStart` of the stream received now; `base`: that stream's. */
    const unit = async (batch: JournalRecord[], unitStart: number, base: number, inRound = false): Promise<number> => {
      h.beginUnit(unitStart);
      const model = Buffer.from(bytes);
      for (const r of batch) {
        if (r.kind === RecordKind.Write) r.payload.copy(model, r.offset);
        else if (r.kind === RecordKind.Barrier && (!inRound || (r.flags & FLAG_ROUND_END) !== 0)) images.set(base + r.seq, Buffer.from(model));
      }
      await apply(h, disk, batch, { capturing: true, inRound, group: false, unitStart });
      await h.sync();
      await h.unitApplied();
      return batch[batch.length - 1]!.seq;
    };
    // site-a's journal: points 0 (where the history began), 2 and 4.
    let applied = await unit([write(0, 2, 0xa1), barrier(1000)], 0, 0);
    applied = await unit([write(1, 2, 0xa2), barrier(2000)], applied, 0);
    assert.equal(applied, 4);
    await h.follow('site-a', 'site-b', applied);
    h.close();
    // site-b's journal numbers from 1 again; the receive log is new, so the replica stands at record 0 of it.
    h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    assert.deepEqual(h.list(0).map((p) => [p.seq, p.record, p.primary]), [[0, 0, 'site-a'], [2, 2, 'site-a'], [4, 4, 'site-a']]);
    seqNext = 1;
    // Its first round overwrites what differs (saved under point 4, the image the replica stood at); only its end is a point.
    applied = await unit([write(1, 1, 0xb1), barrier(3000), write(3, 1, 0xb2), barrier(4000, FLAG_ROUND_END)], 0, 5, true);
    applied = await unit([write(0, 3, 0xb3), barrier(5000)], applied, 5);
    assert.deepEqual(h.list(applied).map((p) => [p.seq, p.record, p.primary]),
      [[0, 0, 'site-a'], [2, 2, 'site-a'], [4, 4, 'site-a'], [9, 4, 'site-b'], [11, 6, 'site-b']]);
    assert.equal(h.recordOf(11), 6);
    assert.equal(h.recordOf(4), null, 'a point of the stream before the follow');
    assert.equal(await opens(h, disk, images, applied), 5);
    h.close();
    h = await History.open(store, SIZE, applied, 'v', silentLogger, settings);
    assert.equal(await opens(h, disk, images, applied), 5, 'after a restart');
    // A second follow numbers on past point 11.
    await h.follow('site-b', 'site-c', applied);
    assert.ok(readFileSync(join(dir, STREAMS_FILE), 'utf8').includes('{"base":12,"primary":"site-c"}'));
    h.close();
    // Dropped with the history (a promote, history turned off): nothing of its numbering is left.
    await History.drop(store);
    assert.deepEqual(readdirSync(dir).filter(isHistoryFile), []);
  });
});

test('in a round only its end is a point; a first sync saves nothing and marks its end', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const h = await History.open(new DirStore(dir), SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    h.beginUnit(0);
    await apply(h, disk, [write(0, 4, 0x51), barrier(10), write(2, 1, 0x52), barrier(20, FLAG_ROUND_END)],
      { capturing: false, inRound: true, group: false, unitStart: 0 });
    await h.sync();
    assert.deepEqual(h.list(4).map((p) => p.seq), [4]);
    assert.equal(h.bytes, 32 + 40, 'one point, nothing saved');
    h.close();
  });
});

test('restoring a point puts its image back on the volume, again the same after a crash part-way (promote --at)', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const h = await History.open(new DirStore(dir), SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    const ctx = (unitStart: number): CaptureContext => ({ capturing: true, inRound: false, group: false, unitStart });
    h.beginUnit(0);
    const b1 = [write(0, 4, 0x61), write(8, 2, 0x62), barrier(1000)];
    await apply(h, disk, b1, ctx(0));
    await h.sync();
    await h.unitApplied();
    const point = b1[2]!.seq;
    const image = Buffer.from(bytes);
    h.beginUnit(point);
    await apply(h, disk, [write(2, 4, 0x71), zeroes(8, 1), write(12, 2, 0x72), barrier(2000)], ctx(point));
    await h.sync();
    assert.ok(!bytes.equals(image));
    // A crash part-way through the roll-back: some ranges back, others not.
    bytes.fill(0x61, 2 * BLOCK, 3 * BLOCK);
    const v = await PointView.open(h, h.find(point)!, disk, async () => () => undefined);
    const restored = await v.restore(disk);
    assert.ok(bytes.equals(image), 'the volume is the image at the point');
    assert.equal(restored, 4 * BLOCK + BLOCK + 2 * BLOCK, 'the ranges changed since, and no other');
    assert.equal(await v.restore(disk), restored, 'again: the same');
    assert.ok(bytes.equals(image));
    v.close();
    h.close();
  });
});

test('a unit tried again after a failed attempt saves under the points it had reached, not past them', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE, 0x01);
    const disk = memDisk(bytes);
    const h = await History.open(new DirStore(dir), SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    const ctx: CaptureContext = { capturing: true, inRound: false, group: false, unitStart: 0 };
    const batch = [write(0, 2, 0x10), barrier(1000), write(4, 2, 0x20), barrier(2000)];
    // The first attempt saves the whole batch and marks both points, then its first write fails (a full disk).
    h.beginUnit(0);
    await h.capture(disk, batch, ctx);
    // Tried again from the unit's start: block 0..1 were saved under point 0 already; nothing
    // of them may be saved again under the later point (its marker is already written).
    h.beginUnit(0);
    await apply(h, disk, batch, ctx);
    await h.sync();
    await h.unitApplied();
    const at1 = Buffer.alloc(SIZE, 0x01);
    at1.fill(0x10, 0, 2 * BLOCK);
    const at2 = Buffer.from(at1);
    at2.fill(0x20, 4 * BLOCK, 6 * BLOCK);
    const images = new Map<number, Buffer>([[0, Buffer.alloc(SIZE, 0x01)], [2, at1], [4, at2]]);
    assert.deepEqual(h.list(4).map((p) => p.seq), [0, 2, 4]);
    assert.equal(await opens(h, disk, images, 4), 3);
    h.close();
  });
});

test('a read saved while the read before it is written: the bytes of the write under way come from its records, not the replica', async () => {
  // The apply saves read k+1 while read k is written to the replica (apply-unit.ts
  // applySaving): a read of the replica then finds read k's bytes not yet there, or half.
  for (const landed of [0, 1, 2]) {
    await inFolder(async (dir) => {
      seqNext = 1;
      const bytes = Buffer.alloc(SIZE, 0x01);
      const disk = memDisk(bytes);
      const h = await History.open(new DirStore(dir), SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
      const ctx: CaptureContext = { capturing: true, inRound: false, group: false, unitStart: 0 };
      const first = [write(0, 2, 0x10), zeroes(3, 1), barrier(1000)];
      const second = [write(0, 4, 0x20), barrier(2000)];
      h.beginUnit(0);
      await h.capture(disk, first, ctx);
      // Of the first read's writes, `landed` are on the replica when the second is saved.
      for (const r of first.slice(0, landed)) await writeOne(disk, r);
      await h.capture(disk, second, ctx, first);
      for (const r of first.slice(landed)) await writeOne(disk, r);
      for (const r of second) await writeOne(disk, r);
      await h.sync();
      await h.unitApplied();
      const at1 = Buffer.alloc(SIZE, 0x01);
      at1.fill(0x10, 0, 2 * BLOCK);
      at1.fill(0, 3 * BLOCK, 4 * BLOCK);
      const at2 = Buffer.from(at1);
      at2.fill(0x20, 0, 4 * BLOCK);
      const images = new Map<number, Buffer>([[0, Buffer.alloc(SIZE, 0x01)], [3, at1], [5, at2]]);
      assert.deepEqual(h.list(5).map((p) => p.seq), [0, 3, 5]);
      assert.equal(await opens(h, disk, images, 5), 3, `with ${landed} of the first read's writes landed`);
      h.close();
    });
  }
});

test('the apply saves each read while the one before it is written, and every point still opens (replica writes slower than reads)', async () => {
  // (Reads of one to three records: a point falls inside one, or between two, and a
  // block written just before a point is written again just after it.)
  for (const readBlocks of [1, 2, 3]) {
    await inFolder(async (dir) => {
      const bytes = Buffer.alloc(SIZE, 0x01);
      const disk = memDisk(bytes);
      // A replica whose writes land some turns of the event loop after they are issued: the
      // history's reads for the next read of the log overtake them.
      const later = (): Promise<void> => new Promise((r) => setImmediate(() => setImmediate(r)));
      const land = disk.write.bind(disk);
      disk.write = async (o: number, data: Buffer, fua: boolean): Promise<void> => { await later(); await land(o, data, fua); };
      const log = new Journal({ store: new DirStore(join(dir, 'log')), capacity: 4 * SIZE, segmentSize: SIZE });
      const images = new Map<number, Buffer>([[0, Buffer.from(bytes)]]);
      const model = Buffer.from(bytes);
      // Blocks 0..3 written four times, forwards then backwards, a point after each pass.
      for (let pass = 0; pass < 4; pass++) {
        for (let k = 0; k < 4; k++) {
          const b = pass % 2 === 0 ? k : 3 - k;
          log.append(RecordKind.Write, b * BLOCK, BLOCK, Buffer.alloc(BLOCK, 0x10 * (pass + 1) + b));
          model.fill(0x10 * (pass + 1) + b, b * BLOCK, (b + 1) * BLOCK);
        }
        const end = log.barrier(0, true);
        assert.equal(typeof end, 'number');
        images.set(end as number, Buffer.from(model));
      }
      await log.sync();
      const round = new ReplicaRound(new DirStore(dir), BLOCK, disk);
      round.synced = true;
      const applier = new UnitApplier(disk, round, silentLogger, undefined, readBlocks * BLOCK);
      applier.history = await History.open(new DirStore(join(dir, 'h')), SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
      await applier.apply(log, 0, 1, log.lastSeq);
      assert.ok(bytes.equals(model), 'the replica holds the last image');
      assert.deepEqual(applier.history.list(log.lastSeq).map((p) => p.seq), [0, 5, 10, 15, 20]);
      assert.equal(await opens(applier.history, disk, images, log.lastSeq), 5);
      applier.history.close();
      log.close();
    });
  }
});

test('a crash in the unit that marked the history\'s first points: the redo knows what it saved (no point at or before the applied record)', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const ctx: CaptureContext = { capturing: true, inRound: false, group: false, unitStart: 0 };
    // The unit begins at a barrier (the history's first point), writes block 2 twice and reaches two more points.
    const batch = [barrier(1000), write(2, 1, 0x21), write(2, 1, 0x22), write(3, 1, 0x31), barrier(2000), barrier(3000)];
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    h.beginUnit(0);
    await h.capture(disk, batch, ctx);
    await h.sync();
    h.close();
    // The crash: of the unit's writes only the first landed, and the applied record is still 0. Redone.
    await disk.write(2 * BLOCK, batch[1]!.payload, false);
    const again = await History.open(store, SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    again.beginUnit(0);
    await apply(again, disk, batch, ctx);
    await again.sync();
    await again.unitApplied();
    const at5 = Buffer.alloc(SIZE);
    at5.fill(0x22, 2 * BLOCK, 3 * BLOCK);
    at5.fill(0x31, 3 * BLOCK, 4 * BLOCK);
    const images = new Map<number, Buffer>([[1, Buffer.alloc(SIZE)], [5, at5], [6, at5]]);
    assert.deepEqual(again.list(6).map((p) => p.seq), [1, 5, 6]);
    assert.equal(await opens(again, disk, images, 6), 3, 'point 5 opens to the unit\'s last bytes, not those the first attempt had written when it stopped');
    again.close();
  });
});

test('a history dropped after a failed write that cannot write its numbering either keeps none until the next start, which opens clean', async () => {
  // (A review's case: the streams file's write failing after the drop, segments numbered past a
  // base no file held made the next start refuse to begin, every start.)
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE, 0x01);
    const disk = memDisk(bytes);
    const real = new DirStore(dir);
    let failing = false;
    const enospc = (): Error => Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
    const wrapFile = (f: object): object => new Proxy(f, {
      get(ft, fp) {
        if (fp === 'sync' && failing) return () => Promise.reject(enospc());
        const v = Reflect.get(ft, fp, ft) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(ft) : v;
      },
    });
    const store = new Proxy(real, {
      get(t, p) {
        if (p === 'replace' && failing) return () => Promise.reject(enospc());
        if (p === 'create' || p === 'open') {
          return (name: string) => wrapFile((t as unknown as Record<string, (n: string) => object>)[p as string]!.call(t, name));
        }
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const settings = { keepMs: null, maxBytes: null };
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    const unit = async (batch: JournalRecord[], unitStart: number): Promise<number> => {
      h.beginUnit(unitStart);
      await apply(h, disk, batch, { capturing: true, inRound: false, group: false, unitStart });
      await h.sync();
      await h.unitApplied();
      return batch[batch.length - 1]!.seq;
    };
    let applied = await unit([write(0, 2, 0x10), barrier(1000)], 0);
    applied = await unit([write(1, 2, 0x20), barrier(2000)], applied);
    failing = true;
    applied = await unit([write(2, 2, 0x30), barrier(3000)], applied);
    failing = false;
    // The disk has room again: the history still saves nothing (no numbering written down for it).
    applied = await unit([write(3, 2, 0x40), barrier(4000)], applied);
    assert.deepEqual(h.list(applied), [], 'none kept until the next start');
    assert.deepEqual(readdirSync(dir).filter((n) => historyFileIndex(n) !== null), [], 'no segment written without its numbering');
    h.close();
    // The next start begins a history again, and its points open.
    const again = await History.open(store, SIZE, applied, 'v', silentLogger, settings);
    again.beginUnit(applied);
    const images = new Map<number, Buffer>([[applied, Buffer.from(bytes)]]);
    const batch = [write(4, 2, 0x50), barrier(5000)];
    await apply(again, disk, batch, { capturing: true, inRound: false, group: false, unitStart: applied });
    await again.sync();
    await again.unitApplied();
    images.set(batch[1]!.seq, Buffer.from(bytes));
    const listed = again.list(batch[1]!.seq);
    assert.deepEqual(listed.map((p) => p.record), [applied, batch[1]!.seq]);
    assert.equal(await opens(again, disk, new Map(listed.map((p) => [p.seq, images.get(p.record)!])), batch[1]!.seq), 2);
    again.close();
  });
});

test('a failed write of the history drops it, the apply goes on, and it begins again at the next unit', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE, 0x01);
    const disk = memDisk(bytes);
    const real = new DirStore(dir);
    let failSync = false;
    // A store whose next sync fails (a full or failing disk under the history).
    const store = new Proxy(real, {
      get(t, p) {
        if (p === 'create' || p === 'open') {
          return (name: string) => {
            const f = (t as unknown as Record<string, (n: string) => object>)[p as string]!.call(t, name);
            return new Proxy(f, {
              get(ft, fp) {
                if (fp === 'sync' && failSync) {
                  return () => { failSync = false; return Promise.reject(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' })); };
                }
                const v = Reflect.get(ft, fp, ft) as unknown;
                return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(ft) : v;
              },
            });
          };
        }
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const h = await History.open(store, SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
    const ctx = (unitStart: number): CaptureContext => ({ capturing: true, inRound: false, group: false, unitStart });
    const unit = async (batch: JournalRecord[], unitStart: number): Promise<number> => {
      h.beginUnit(unitStart);
      await apply(h, disk, batch, ctx(unitStart));
      await h.sync();
      await h.unitApplied();
      return batch[batch.length - 1]!.seq;
    };
    let applied = await unit([write(0, 2, 0x10), barrier(1000)], 0);
    assert.deepEqual(h.list(applied).map((p) => p.seq), [0, 2]);
    failSync = true;
    applied = await unit([write(1, 2, 0x20), barrier(2000)], applied);
    assert.deepEqual(h.list(applied), [], 'dropped: no point it could open wrong');
    const images = new Map<number, Buffer>([[applied, Buffer.from(bytes)]]);
    const after = await unit([write(2, 2, 0x30), barrier(3000)], applied);
    images.set(after, Buffer.from(bytes));
    const listed = h.list(after);
    assert.deepEqual(listed.map((p) => p.record), [applied, after], 'begun again where the replica stood');
    assert.ok(listed[0]!.seq > 2, 'numbered past the points dropped: a seq never names two points');
    assert.equal(await opens(h, disk, new Map(listed.map((p) => [p.seq, images.get(p.record)!])), after), 2);
    h.close();
  });
});

test('the apply writes no read to the replica before the history\'s sync of what it overwrites has ended, while saving the next (slow syncs)', async () => {
  // (Invariant 8: the apply saves read k+1 while read k's sync runs; read k is written only after it.)
  for (const readBlocks of [1, 2]) {
    await inFolder(async (dir) => {
      const bytes = Buffer.alloc(SIZE, 0x01);
      const disk = memDisk(bytes);
      const historyDir = join(dir, 'h');
      // Each history file's length its last ended sync began at: what a power loss keeps.
      const durable = new Map<string, number>();
      const real = new DirStore(historyDir);
      const slow = (): Promise<void> => new Promise((r) => setImmediate(() => setImmediate(() => setImmediate(r))));
      const store = new Proxy(real, {
        get(t, p) {
          if (p === 'create' || p === 'open') {
            return (name: string) => {
              const f = (t as unknown as Record<string, (n: string) => StoreFile>)[p as string]!.call(t, name);
              const sync = async (): Promise<void> => {
                const upTo = f.size();
                await slow();
                await f.sync();
                durable.set(name, Math.max(durable.get(name) ?? 0, upTo));
              };
              return new Proxy(f, { get: (ft, fp) => (fp === 'sync' ? sync : (Reflect.get(ft, fp, ft) as (...a: unknown[]) => unknown).bind(ft)) });
            };
          }
          const v = Reflect.get(t, p, t) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
        },
      });
      const log = new Journal({ store: new DirStore(join(dir, 'log')), capacity: 4 * SIZE, segmentSize: SIZE });
      const seqOfTag = new Map<number, number>();
      for (let pass = 0; pass < 4; pass++) {
        for (let b = 0; b < 4; b++) {
          const seq = log.append(RecordKind.Write, b * BLOCK, BLOCK, Buffer.alloc(BLOCK, 0x10 * (pass + 1) + b));
          seqOfTag.set(0x10 * (pass + 1) + b, seq as number);
        }
        log.barrier(0, true);
      }
      await log.sync();
      let checked = 0;
      const land = disk.write.bind(disk);
      disk.write = async (o: number, data: Buffer, fua: boolean): Promise<void> => {
        // Every entry saved for the record being written is in the durable part of its segment.
        const seq = seqOfTag.get(data[0]!);
        for (const name of readdirSync(historyDir).filter((n) => historyFileIndex(n) !== null)) {
          const file = readFileSync(join(historyDir, name));
          for (let at = 32; at + 40 <= file.length;) {
            const d = decodeEntryHead(file, at);
            if (!d.ok) break;
            const end = at + entryBytes(d.head);
            if (d.head.kind !== EntryKind.Point && d.head.seq === seq) {
              assert.ok(end <= (durable.get(name) ?? 0), `record ${seq} written with its saved bytes (${name} byte ${at}) not yet durable`);
              checked++;
            }
            at = end;
          }
        }
        await land(o, data, fua);
      };
      const round = new ReplicaRound(new DirStore(dir), BLOCK, disk);
      round.synced = true;
      const applier = new UnitApplier(disk, round, silentLogger, undefined, readBlocks * BLOCK);
      applier.history = await History.open(store, SIZE, 0, 'v', silentLogger, { keepMs: null, maxBytes: null });
      await applier.apply(log, 0, 1, log.lastSeq);
      assert.equal(checked, 16, 'every write overwrote bytes a point holds');
      applier.history.close();
      log.close();
    });
  }
});

test('a history sync that fails while the apply saves the next read: the history is dropped once, the unit applied, and it begins again after', async () => {
  for (const failing of [1, 2, 3]) {
    await inFolder(async (dir) => {
      const bytes = Buffer.alloc(SIZE, 0x01);
      const disk = memDisk(bytes);
      const historyDir = join(dir, 'h');
      const real = new DirStore(historyDir);
      let syncs = 0;
      // The `failing`-th sync of a history file fails, some turns of the event loop after it began.
      const store = new Proxy(real, {
        get(t, p) {
          if (p === 'create' || p === 'open') {
            return (name: string) => {
              const f = (t as unknown as Record<string, (n: string) => StoreFile>)[p as string]!.call(t, name);
              const sync = async (): Promise<void> => {
                const n = ++syncs;
                await new Promise((r) => setImmediate(() => setImmediate(r)));
                if (n === failing) throw Object.assign(new Error('EIO'), { code: 'EIO' });
                await f.sync();
              };
              return new Proxy(f, { get: (ft, fp) => (fp === 'sync' ? sync : (Reflect.get(ft, fp, ft) as (...a: unknown[]) => unknown).bind(ft)) });
            };
          }
          const v = Reflect.get(t, p, t) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
        },
      });
      const errors: string[] = [];
      const said = { error: (_o: object, m: string) => errors.push(m) };
      const logger = Object.assign(Object.create(silentLogger) as object, said) as unknown as typeof silentLogger;
      const log = new Journal({ store: new DirStore(join(dir, 'log')), capacity: 4 * SIZE, segmentSize: SIZE });
      const model = Buffer.from(bytes);
      const writePass = (pass: number): number => {
        for (let b = 0; b < 4; b++) {
          log.append(RecordKind.Write, b * BLOCK, BLOCK, Buffer.alloc(BLOCK, 0x10 * (pass + 1) + b));
          model.fill(0x10 * (pass + 1) + b, b * BLOCK, (b + 1) * BLOCK);
        }
        return log.barrier(0, true) as number;
      };
      for (let pass = 0; pass < 3; pass++) writePass(pass);
      await log.sync();
      const round = new ReplicaRound(new DirStore(dir), BLOCK, disk);
      round.synced = true;
      const applier = new UnitApplier(disk, round, logger, undefined, BLOCK);
      applier.history = await History.open(store, SIZE, 0, 'v', logger, { keepMs: null, maxBytes: null });
      const first = log.lastSeq;
      await applier.apply(log, 0, 1, first);
      assert.ok(bytes.equals(model), 'the unit is applied whatever the history did');
      assert.equal(errors.length, 1, `one drop, said once: ${errors.join('; ')}`);
      assert.deepEqual(applier.history.list(first), [], 'no point it could open wrong');
      // The next unit begins it again where the replica stood, and its points open.
      const images = new Map<number, Buffer>([[first, Buffer.from(model)]]);
      const end = writePass(3);
      images.set(end, Buffer.from(model));
      await log.sync();
      await applier.apply(log, first, first + 1, end);
      // (By record: after a drop the history may number its points past the seqs it used.)
      const listed = applier.history.list(end);
      assert.deepEqual(listed.map((p) => p.record), [first, end]);
      const bySeq = new Map(listed.map((p) => [p.seq, images.get(p.record)!]));
      assert.equal(await opens(applier.history, disk, bySeq, end), 2);
      const files = readdirSync(historyDir).filter((n) => n.startsWith('history.'));
      assert.equal(files.filter((n) => historyFileIndex(n) !== null).length, 1, `no segment left from before the drop: ${files.join(' ')}`);
      assert.ok(files.includes('history.streams'), 'the numbering written down');
      applier.history.close();
      log.close();
    });
  }
});

test('a segment damaged before the last drops the history up to it, and the load reads no entry of a dropped segment ' +
  '(replication simulation seed 421)', async () => {
  await inFolder(async (dir) => {
    seqNext = 1;
    const bytes = Buffer.alloc(SIZE, 0x01);
    const disk = memDisk(bytes);
    const store = new DirStore(dir);
    const settings = { keepMs: null, maxBytes: null, segmentBytes: 8192 };
    const ctx: CaptureContext = { capturing: true, inRound: false, group: false, unitStart: 0 };
    let h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    // Units the replica never counted as applied (applied stays 0): at a load, every entry
    // after the start is checked against its bytes, those of every segment.
    for (let i = 0; i < 6; i++) {
      h.beginUnit(0);
      await apply(h, disk, [write(i * 2, 2, 0x30 + i), barrier(2000 + i)], ctx);
      await h.sync();
    }
    h.close();
    const files = readdirSync(dir).filter((n) => /^history\.\d+$/.test(n)).sort();
    assert.ok(files.length >= 3, `${files.length} segments`);
    const mid = join(dir, files[1]!);
    truncateSync(mid, statSync(mid).size - 100);
    h = await History.open(store, SIZE, 0, 'v', silentLogger, settings);
    assert.ok(!readdirSync(dir).includes(files[0]!), 'the segments up to the damaged one are dropped');
    assert.ok(readdirSync(dir).includes(files[files.length - 1]!), 'the later ones are kept');
    h.close();
  });
});
