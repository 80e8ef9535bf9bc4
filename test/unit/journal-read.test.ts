// Reading a journal as the shipper does (issue 22): a batch in one read, its payloads
// views of one buffer and checked against their CRC, the next batch starting where the
// last one ended, and headers alone for coalescing plans, across segments.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind, RECORD_HEADER_SIZE } from '../../src/journal/record.js';
import { DirStore, type StoreFile } from '../../src/journal/store.js';
import { crc32c } from '@node-rs/crc32';
import { tempDir } from '../helpers/run.js';
import { FrameRoom, encodeRecordsFrame, recordsFrameInPlace } from '../../src/link/records-frame.js';
import { frameBuffers } from '../../src/memory/owned-buffers.js';

async function filled(dir: string, writes: number[], segmentSize = 256 * 1024): Promise<Journal> {
  // Small segments: reads cross them.
  const j = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize, now: () => 1000 });
  await j.recover();
  writes.forEach((len, i) => {
    j.append(RecordKind.Write, i * 65536, len, Buffer.alloc(len, (i % 250) + 1));
    if (i % 7 === 6) j.barrier();
  });
  await j.sync();
  return j;
}

const sizes = Array.from({ length: 300 }, (_, i) => [512, 4096, 60_000, 200_000][i % 4]!);

test('batches read one after another return every record once, in order, with its payload and checked CRC', async () => {
  const j = await filled(tempDir('jread'), sizes);
  const seen: number[] = [];
  for (let from = 1; from <= j.lastSeq;) {
    const batch = await j.read(from, 300_000);
    assert.ok(batch.length > 0);
    for (const r of batch) {
      seen.push(r.seq);
      if (r.kind === RecordKind.Write) {
        assert.equal(r.payload.length, r.length);
        assert.equal(r.payload[0], r.payload[r.payload.length - 1]);
        assert.equal(r.payloadCrc, crc32c(r.payload), `record ${r.seq}: the CRC carried is the payload's`);
      } else assert.equal(r.payloadCrc, undefined);
    }
    from = batch[batch.length - 1]!.seq + 1;
  }
  assert.deepEqual(seen, Array.from({ length: j.lastSeq }, (_, i) => i + 1));
  // Headers alone: the same records and sizes, no payloads read.
  const heads = await j.readHeaders(1, 1 << 30);
  const all = await j.read(1, 1 << 30);
  assert.deepEqual(heads.map((h) => [h.seq, h.kind, h.offset, h.length, h.size]),
    all.map((r) => [r.seq, r.kind, r.offset, r.length, RECORD_HEADER_SIZE + r.payload.length]));
  // A read from the middle (not where the last read ended) finds its record too, and stops at limitSeq.
  const mid = await j.read(123, 1, 123);
  assert.deepEqual(mid.map((r) => r.seq), [123]);
  j.close();
});

test('a damaged payload is refused where it is read, with the record named', async () => {
  const dir = tempDir('jread-bad');
  const j = await filled(dir, [4096, 4096, 4096]);
  const first = await j.read(1, 1);
  assert.equal(first.length, 1);
  j.close();
  // Flip a byte in the second record's payload (the cursor points at it).
  const seg = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.seg'))!);
  const fd = fs.openSync(seg, 'r+');
  fs.writeSync(fd, Buffer.from([0xee]), 0, 1, 64 + (RECORD_HEADER_SIZE + 4096) + RECORD_HEADER_SIZE + 10);
  fs.closeSync(fd);
  const j2 = new Journal({ store: new DirStore(dir), capacity: 64 << 20, now: () => 1000 });
  await j2.recover(); // (recovery reports the damage; reading must refuse it too)
  await assert.rejects(j2.read(2, 1 << 20), /record 2 payload checksum mismatch/);
  j2.close();
});

test('a batch that ends early (at its limit) holds no more memory than its records: the rest of the read is let go', async () => {
  // The read asks the disk for the whole batch at once; when the batch ends at limitSeq
  // after one record, that record's payload must not keep the whole read alive (the
  // memory budget counts only the record; 24 volumes kept 300 MiB of RSS that way).
  const j = await filled(tempDir('jread-early'), [65536, 65536, 65536]); // (one segment of 256 KiB)
  const [first] = await j.read(1, 8 << 20, 1);
  assert.equal(first!.seq, 1);
  assert.equal(first!.payload.length, 65536);
  assert.ok(first!.payload.buffer.byteLength <= 2 * 65536, `the payload keeps ${first!.payload.buffer.byteLength} bytes alive for 65536`);
  // A batch that takes what was read keeps its payloads as views of that one read (no copy).
  const all = await j.read(1, 8 << 20);
  assert.equal(all.filter((r) => r.kind === RecordKind.Write).length, 3);
  assert.equal(new Set(all.filter((r) => r.payload.length > 0).map((r) => r.payload.buffer)).size, 1, 'one buffer for the whole batch');
  j.close();
});

/** A folder whose reads of the first segment from byte `at` on wait until openGate(). */
class GatedStore extends DirStore {
  private gate: Promise<void> | null = null;
  readonly waiting: Promise<void>;
  private reached!: () => void;
  private opened!: () => void;

  constructor(dir: string, readonly at: number) {
    super(dir);
    this.waiting = new Promise((r) => (this.reached = r));
    this.gate = new Promise((r) => (this.opened = r));
  }

  override create(name: string): StoreFile {
    const f = super.create(name);
    if (!name.endsWith('.seg') || this.gated) return f;
    this.gated = true;
    const read = f.read.bind(f);
    f.read = async (position, length, into) => {
      if (position >= this.at && this.gate) {
        this.reached();
        await this.gate;
      }
      return read(position, length, into);
    };
    return f;
  }

  private gated = false;

  openGate(): void {
    this.opened();
    this.gate = null;
  }
}

test('a read the release overtakes returns consecutive records from where it began: no gap where a segment went', async () => {
  // A detached peer's shipper (docs/PEERS.md) reads records the journal may release
  // meanwhile, the other peers having acked them. Records of a segment dropped under the
  // read must not be skipped over to the next segment's: a batch with a gap is no
  // prefix of the record stream (the shipper's invariant; seen as an internal error of
  // site-a in test/integration/three-sites with site-c on a slow link).
  const dir = tempDir('jread-release');
  // Records of 60,000 bytes: four to a 256 KiB segment. The read waits past the first two.
  const store = new GatedStore(dir, 64 + 2 * (RECORD_HEADER_SIZE + 60_000));
  const j = new Journal({ store, capacity: 64 << 20, segmentSize: 256 * 1024, now: () => 1000 });
  await j.recover();
  for (let i = 0; i < 16; i++) j.append(RecordKind.Write, i * 65536, 60_000, Buffer.alloc(60_000, i + 1));
  await j.sync();
  // A batch of two and a half records: the walk reads the first two at once, then the third from its start.
  const reading = j.read(1, 150_000);
  await store.waiting;
  // Every record of the first segment and some of the second are released: the first goes.
  const firstSegmentEnd = 5;
  await j.release(firstSegmentEnd + 1);
  assert.ok(!fs.readdirSync(dir).includes('00000000000000000001.seg'), 'the first segment is gone');
  store.openGate();
  const seqs = (await reading).map((r) => r.seq);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), `records read: ${seqs.join(' ')}`);
  j.close();
});

test('a batch read into a frame room goes out as a Records frame built around it, byte for byte the frame built anew', async () => {
  // Segments of 2 MiB: most batches of 300 kB lie in one; some cross.
  const j = await filled(tempDir('jread-room'), sizes, 2 << 20);
  let inPlace = 0;
  let anew = 0;
  for (let from = 1; from <= j.lastSeq;) {
    const room = new FrameRoom();
    const batch = await j.read(from, 300_000, j.lastSeq, room.scratch);
    const expected = Buffer.concat(encodeRecordsFrame('db', batch));
    const built = recordsFrameInPlace(room, 'db', batch);
    if (built) {
      inPlace++;
      assert.equal(built.length, 1, 'one buffer, for one write to the socket');
      assert.equal(built[0]!.buffer, room.bytes!.buffer, 'the payloads are not copied');
      assert.deepEqual(built[0], expected, `batch from ${from}`);
    } else {
      // (Only a batch that crossed a segment: its second read has a buffer of its own.)
      anew++;
      assert.ok(batch.some((r) => r.payload.length > 0 && r.payload.buffer !== room.bytes!.buffer), `batch from ${from} could go in place`);
      // Built anew in a second buffer of the node's pool, lent by the room and given back with it
      // (not a fresh one per frame: docs/RESYNC.md, "The first sync's own CPU").
      const out = frameBuffers.out;
      const anewFrame = encodeRecordsFrame('db', batch, room);
      assert.deepEqual(Buffer.concat(anewFrame), expected, `batch from ${from}, built anew in the room's spare buffer`);
      assert.equal(frameBuffers.out, out + 1, 'the frame built anew is in a buffer of the pool');
      room.release();
      assert.equal(frameBuffers.out, out - 1, 'both of the room\'s buffers went back with it');
    }
    from = batch[batch.length - 1]!.seq + 1;
  }
  assert.ok(inPlace > anew && anew > 0, `${inPlace} built in place, ${anew} anew`);
  // Records no longer as read are built anew: a write gone as Zeroes, one left out (coalesced), another volume's name.
  const room = new FrameRoom();
  const batch = await j.read(1, 300_000, 6, room.scratch);
  assert.equal(batch.length, 6);
  assert.equal(recordsFrameInPlace(room, 'db', batch.map((r, i) => (i === 2 ? { ...r, kind: RecordKind.Zeroes, payload: Buffer.alloc(0) } : r))), null);
  assert.equal(recordsFrameInPlace(room, 'db', batch.filter((_, i) => i !== 1)), null);
  assert.equal(recordsFrameInPlace(room, 'db', batch.map((r, i) => (i === 3 ? { ...r, payload: Buffer.from(r.payload) } : r))), null);
  assert.equal(recordsFrameInPlace(new FrameRoom(), 'db', batch), null, 'a room no read went into');
  // Built once: a second frame in the same room would rewrite the first (maybe queued for the socket).
  const once = new FrameRoom();
  const again = await j.read(1, 300_000, 6, once.scratch);
  assert.ok(recordsFrameInPlace(once, 'db', again));
  assert.equal(recordsFrameInPlace(once, 'db', again), null, 'a room serves one frame');
  // A batch that ended well before what was read (limitSeq): not built in place, so the frame does not keep the rest alive.
  const wide = new FrameRoom();
  const head = await j.read(1, 300_000, j.lastSeq, wide.scratch);
  assert.ok(wide.bytes!.length > 2 * (RECORD_HEADER_SIZE + head[0]!.payload.length));
  assert.equal(recordsFrameInPlace(wide, 'db', head.slice(0, 1)), null, 'a frame under half its room');
  // The last write as Zeroes leaves the others where they lie: its header goes where its payload began.
  const zeroed = batch.map((r, i) => (i === 5 ? { ...r, kind: RecordKind.Zeroes, payload: Buffer.alloc(0) } : r));
  assert.deepEqual(Buffer.concat(recordsFrameInPlace(room, 'x'.repeat(255), zeroed)!), Buffer.concat(encodeRecordsFrame('x'.repeat(255), zeroed)));
  j.close();
});

test('a batch whose first record is larger than the read asked for lies in a second room the caller makes, its first let go', async () => {
  // Records of 1 MiB; the shipper's window has room for 100 KiB only.
  const dir = tempDir('jread-large');
  const j = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize: 16 << 20, now: () => 1000 });
  await j.recover();
  for (let i = 0; i < 6; i++) j.append(RecordKind.Write, i * (1 << 20), 1 << 20, Buffer.alloc(1 << 20, i + 1));
  await j.sync();
  const asked: number[] = [];
  const buffers: Buffer[] = [];
  const scratch = (length: number): Buffer => {
    asked.push(length);
    const b = Buffer.alloc(length);
    buffers.push(b);
    return b;
  };
  // The first batch walks the segment from its start: the record's header is known before its read.
  const first = await j.read(1, 100 * 1024, j.lastSeq, scratch);
  assert.deepEqual(first.map((r) => r.seq), [1]);
  assert.equal(asked.length, 1, 'found by walking headers: read once, at its size');
  assert.ok(asked[0]! >= RECORD_HEADER_SIZE + (1 << 20));
  assert.equal(first[0]!.payload.buffer, buffers[0]!.buffer, 'the payload lies in the caller\'s buffer');
  // The next starts at the segment's cursor, header unknown: the last record's size is the hint.
  asked.length = 0;
  buffers.length = 0;
  const second = await j.read(2, 100 * 1024, j.lastSeq, scratch);
  assert.deepEqual(second.map((r) => r.seq), [2]);
  assert.equal(asked.length, 1, 'a backlog of large records is read once per batch, not a short read and then the record');
  assert.equal(second[0]!.payload.buffer, buffers[0]!.buffer);
  assert.equal(second[0]!.payload[0], 2);
  j.close();
});

test('a cursor whose hint is small: the first room is let go and a second, large enough, holds the record', async () => {
  const dir = tempDir('jread-regrow');
  const j = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize: 16 << 20, now: () => 1000 });
  await j.recover();
  j.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 1));
  j.append(RecordKind.Write, 1 << 20, 1 << 20, Buffer.alloc(1 << 20, 2));
  await j.sync();
  await j.read(1, 4096, 1); // (the cursor now at record 2, its hint the 4 KiB record's size)
  const rooms: FrameRoom[] = [new FrameRoom()];
  const room = rooms[0]!;
  const batch = await j.read(2, 100 * 1024, j.lastSeq, room.scratch);
  assert.deepEqual(batch.map((r) => r.seq), [2]);
  assert.equal(batch[0]!.payload.buffer, room.bytes!.buffer, 'the record lies in the room\'s (second) buffer');
  assert.ok(room.bytes!.length >= RECORD_HEADER_SIZE + (1 << 20));
  // And the frame is built where it lies.
  assert.notEqual(recordsFrameInPlace(room, 'db', batch), null);
  room.release();
  j.close();
});

test('a first read the hint made larger still ends the batch about at what was asked: a record past it at most', async () => {
  const dir = tempDir('jread-hint');
  const j = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize: 16 << 20, now: () => 1000 });
  await j.recover();
  j.append(RecordKind.Write, 0, 4 << 20, Buffer.alloc(4 << 20, 1));
  j.append(RecordKind.Write, 8 << 20, 4096, Buffer.alloc(4096, 2));
  j.append(RecordKind.Write, 16 << 20, 2 << 20, Buffer.alloc(2 << 20, 3));
  await j.sync();
  assert.deepEqual((await j.read(1, 4 << 20, j.lastSeq, new FrameRoom().scratch)).map((r) => r.seq), [1]);
  // The cursor's hint is 4 MiB; the window has room for 256 KiB: the 2 MiB record waits for the next batch.
  const room = new FrameRoom();
  const batch = await j.read(2, 256 * 1024, j.lastSeq, room.scratch);
  assert.deepEqual(batch.map((r) => r.seq), [2]);
  room.release();
  j.close();
});

/** A store counting the reads of its segment files and their bytes. */
class CountingStore extends DirStore {
  reads = 0;
  bytes = 0;
  private counted(f: StoreFile): StoreFile {
    const read = f.read.bind(f);
    f.read = (position, length, into) => {
      this.reads++;
      this.bytes += length;
      return read(position, length, into);
    };
    return f;
  }
  override create(name: string): StoreFile {
    return this.counted(super.create(name));
  }
  override open(name: string): StoreFile {
    return this.counted(super.open(name));
  }
}

test('a read deep in a segment starts at the last mark before its record, not at the segment\'s start; a wrong mark is walked past', async () => {
  // 3000 records of 4 KiB in one 16 MiB segment (a coalescing plan far behind reads headers from deep in it).
  const dir = tempDir('jread-marks');
  const fill = new Journal({ store: new CountingStore(dir), capacity: 64 << 20, segmentSize: 16 << 20, now: () => 1000 });
  await fill.recover();
  for (let i = 0; i < 3000; i++) fill.append(RecordKind.Write, (i % 256) * 4096, 4096, Buffer.alloc(4096, (i % 250) + 1));
  await fill.sync();
  fill.close();
  const store = new CountingStore(dir);
  const j = new Journal({ store: store as DirStore, capacity: 64 << 20, segmentSize: 16 << 20, now: () => 1000 });
  // Recovery scans the segment: then count only the reads after it.
  await j.recover();
  // A host write first, as after a start: the tail's only mark is then at its end, and the reads below mark what lies before it.
  j.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 9));
  await j.sync();
  const deep = async (seq: number): Promise<{ reads: number; bytes: number }> => {
    store.reads = 0;
    store.bytes = 0;
    const heads = await j.readHeaders(seq, 64 * 1024);
    assert.equal(heads[0]!.seq, seq, `headers from record ${seq}`);
    return { reads: store.reads, bytes: store.bytes };
  };
  // The first read walks from the segment's start (no mark yet after a restart), and marks it on the way.
  const first = await deep(2900);
  assert.ok(first.bytes > 10 << 20, `the first read walked the segment: ${first.bytes} bytes`);
  // Later ones, anywhere before that, start at a mark: a few header chunks, not megabytes.
  for (const seq of [2950, 1200, 2901, 17]) {
    const { reads, bytes } = await deep(seq);
    assert.ok(bytes <= 6 * 64 * 1024 && reads <= 6, `record ${seq}: ${reads} reads, ${bytes} bytes`);
  }
  // Records and payloads read from a mark are the right ones.
  const batch = await j.read(1500, 8192);
  assert.deepEqual(batch.map((r) => r.seq), [1500, 1501]);
  assert.equal(batch[0]!.payload[0], (1499 % 250) + 1);
  // A mark that no longer holds (here made wrong on purpose: each names the next one's record, whose header reads
  // well) is found out and walked past from the segment's start; and one inside a payload too.
  const seg = (j as unknown as { files: { list: Array<{ marks?: { seqs: number[]; positions: number[] } }> } }).files.list[0]!;
  for (const wrong of [(m: { positions: number[] }) => m.positions.slice(1).concat([0]), (m: { positions: number[] }) => m.positions.map((p) => p + 4096)]) {
    const m = seg.marks!;
    assert.ok(m.seqs.length > 10, `${m.seqs.length} marks`);
    m.positions = wrong(m);
    const again = await j.read(2000, 4096);
    assert.deepEqual(again.map((r) => r.seq), [2000]);
    assert.equal(again[0]!.payload[0], (1999 % 250) + 1);
    await deep(2900); // (marks again, walking)
  }
  // Appends mark their records as they are queued: a read of a record just written needs no walk.
  for (let i = 0; i < 100; i++) j.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 7));
  await j.sync();
  const appended = await deep(3090);
  assert.ok(appended.reads <= 6, `${appended.reads} reads for a record appended since the start`);
  j.close();
});
