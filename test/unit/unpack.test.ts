// Unpacking a peer's PackedRecords frame (issue 15, item 3): exactly one zstd frame,
// nothing after it, of exactly the declared size, decompressed into a buffer of that
// size and no more: a multi-frame bomb, a frame whose size disagrees with the head,
// trailing bytes, skippable and size-less frames are refused before a byte is
// decompressed, with a reason for the log; and the worker pool does the same.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { compress } from 'zstd-napi';
import { RecordKind, type JournalRecord } from '../../src/journal/record.js';
import { FrameDecoder, FrameError, type Frame } from '../../src/link/frame.js';
import { CODEC_ZSTD, CODEC_ZSTD_HEADERS, decodePackedRecordsFrame, decodePackedRecordsFrameOff, packSync, parsePackedRecordsFrame, recordsBody, splitRecords,
  unzstdExact } from '../../src/compress/codec.js';
import { CompressionPool } from '../../src/compress/pool.js';
import { packedPayload, zstdBomb } from '../helpers/hostile-peer.js';
import { OwnedBuffers } from '../../src/memory/owned-buffers.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

let seq = 0;
function write(offset: number, payload: Buffer): JournalRecord {
  seq++;
  return { kind: RecordKind.Write, flags: 0, seq, epoch: 1, offset, length: payload.length, time: 1_700_000_000_000 + seq, payload };
}

const refused = (p: Buffer, re: RegExp): void =>
  assert.throws(() => decodePackedRecordsFrame(p), (e: Error) => e instanceof FrameError && re.test(e.message), `refused with ${re}`);

/** Codec 1's body for one 2 KiB write, and its zstd frame (with content size and checksum). */
function goodFrame(): { body: Buffer; z: Buffer } {
  const body = recordsBody([write(0, Buffer.alloc(2048 - 56, 7))]);
  return { body, z: compress(body, { checksumFlag: true }) };
}

test('a multi-frame zstd bomb is refused before it is decompressed: memory flat, at once', () => {
  const { body, z } = goodFrame();
  assert.equal(body.length, 2048);
  // The case: a first frame declaring 2 KiB, then 16 KiB of RLE blocks in a
  // frame with no content size (512 MiB once decompressed).
  const bomb = Buffer.concat([z, zstdBomb()]);
  assert.ok(bomb.length < 17 * 1024);
  const rss0 = process.memoryUsage.rss();
  const t0 = performance.now();
  refused(packedPayload('v', CODEC_ZSTD, body.length, bomb),
    /^PackedRecords frame for v holds 16390 bytes after its zstd frame \(one frame, nothing after it\)$/);
  const ms = performance.now() - t0;
  const grew = process.memoryUsage.rss() - rss0;
  assert.ok(grew < 32 << 20, `refusing the bomb grew the process by ${grew} bytes`);
  assert.ok(ms < 500, `refusing the bomb took ${ms} ms`);
  // Two honest frames back to back are two frames all the same.
  refused(packedPayload('v', CODEC_ZSTD, body.length, Buffer.concat([z, z])), /bytes after its zstd frame/);
  // And the bomb on its own declares no size.
  refused(packedPayload('v', CODEC_ZSTD, body.length, zstdBomb()), /does not declare its content size/);
});

test('a declared size that disagrees is refused: the head against the frame, the frame against its blocks', () => {
  const { body, z } = goodFrame();
  refused(packedPayload('v', CODEC_ZSTD, body.length + 1, z), /its zstd frame holds 2048 bytes, the frame declares 2049/);
  refused(packedPayload('v', CODEC_ZSTD, body.length - 1, z), /its zstd frame holds 2048 bytes, the frame declares 2047/);
  // A frame whose header says 200 bytes (single segment, 1-byte content size) and whose
  // one raw block holds 100, and the other way round with an RLE block of 300: zstd
  // stops at the end of the 200-byte buffer, or finds the frame short.
  const lying = (declared: number, block: Buffer): Buffer => Buffer.concat([hex('28b52ffd 20'), Buffer.from([declared]), block]);
  const blockHeader = (h: number): Buffer => Buffer.from([h & 0xff, (h >> 8) & 0xff, h >> 16]);
  const raw100 = Buffer.concat([blockHeader((100 << 3) | 1), Buffer.alloc(100, 9)]);
  const rle300 = Buffer.concat([blockHeader((300 << 3) | (1 << 1) | 1), Buffer.from([9])]);
  assert.throws(() => unzstdExact(lying(200, raw100), 200), /does not decompress/);
  assert.throws(() => unzstdExact(lying(200, rle300), 200), /does not decompress/);
  assert.throws(() => unzstdExact(lying(200, raw100), 100), /does not decompress|decompressed to/);
  assert.throws(() => unzstdExact(lying(200, raw100), 64 << 20), /over the 41943040-byte limit/);
  // Codec 2: the header columns' frame must hold exactly the rows the declared length
  // leaves room for next to the payloads.
  const recs = [write(0, randomBytes(4096)), write(4096, randomBytes(4096))];
  const split = splitRecords(recs);
  const cols = compress(split.columns, { checksumFlag: true });
  const codec2 = (raw: number, z: Buffer, payloads: Buffer): Buffer => {
    const l = Buffer.alloc(4);
    l.writeUInt32LE(z.length);
    return packedPayload('v', CODEC_ZSTD_HEADERS, raw, Buffer.concat([l, z, payloads]));
  };
  const payloads = Buffer.concat(split.payloads);
  assert.equal(decodePackedRecordsFrame(codec2(split.rawLength, cols, payloads)).records.length, 2);
  refused(codec2(split.rawLength + 56, cols, payloads), /holds 8304 bytes of records, the frame declares 8360/);
  refused(codec2(split.rawLength, compress(split.columns.subarray(0, 100), { checksumFlag: true }), payloads),
    /100 bytes of header columns is not a whole number of records/);
  // ... and be one frame too.
  refused(codec2(split.rawLength, Buffer.concat([cols, zstdBomb(16)]), payloads), /its header columns|bytes after its zstd frame/);
});

test('trailing bytes, skippable frames and cut frames are refused', () => {
  const { body, z } = goodFrame();
  refused(packedPayload('v', CODEC_ZSTD, body.length, Buffer.concat([z, Buffer.from('xyz')])), /holds 3 bytes after its zstd frame/);
  refused(packedPayload('v', CODEC_ZSTD, body.length, Buffer.concat([z, Buffer.alloc(1)])), /holds 1 bytes after its zstd frame/);
  // A skippable frame "declares" 0 bytes to zstd's own size query: it is not a zstd frame here.
  refused(packedPayload('v', CODEC_ZSTD, 0, hex('502a4d18 04000000 01020304')), /it does not hold a zstd frame/);
  refused(packedPayload('v', CODEC_ZSTD, body.length, z.subarray(0, z.length - 3)), /does not decompress: its zstd frame is cut short/);
  refused(packedPayload('v', CODEC_ZSTD, body.length, Buffer.from('28b52f')), /does not hold a zstd frame/);
  // The frame itself, decoded whole, still round-trips.
  assert.equal(decodePackedRecordsFrame(packedPayload('v', CODEC_ZSTD, body.length, z)).records.length, 1);
});

test('the worker pool unpacks exactly as the event loop would, and refuses the same frames with the same reasons', async () => {
  const pool = new CompressionPool(1);
  const buffers = new OwnedBuffers(8 << 20);
  try {
    const recs: JournalRecord[] = [];
    for (let i = 0; i < 64; i++) recs.push(write(i * 4096, i % 2 ? randomBytes(4096) : Buffer.alloc(4096, i)));
    const one = (parts: Buffer[]): Frame => {
      const d = new FrameDecoder();
      d.push(Buffer.concat(parts));
      return d.next()!;
    };
    for (const batch of [recs, recs.filter((_, i) => i % 2 === 1)]) {
      const f = one(packSync('db', batch, (b) => compress(b, { checksumFlag: true }), 3));
      const here = decodePackedRecordsFrame(f.payload);
      const there = await decodePackedRecordsFrameOff(parsePackedRecordsFrame(f.payload), pool, buffers);
      assert.equal(there.records.length, batch.length);
      assert.deepEqual(there.records, here.records);
      // The records are views of the node's buffer, which came back from the worker and is the caller's to give.
      const inOwned = there.records.every((r) => r.payload.length === 0 || r.payload.buffer === there.owned!.whole.buffer);
      assert.ok(inOwned, 'the records lie in the buffer handed back');
      assert.equal(buffers.out, 1, 'only the records\' buffer is out: the frame\'s copy (and the headers\' buffer) went back');
      there.owned!.give();
    }
    const { body, z } = goodFrame();
    const bomb = parsePackedRecordsFrame(packedPayload('v', CODEC_ZSTD, body.length, Buffer.concat([z, zstdBomb()])));
    const rss0 = process.memoryUsage.rss();
    await assert.rejects(decodePackedRecordsFrameOff(bomb, pool, buffers), (e: Error) => e instanceof FrameError &&
      /^PackedRecords frame for v holds 16390 bytes after its zstd frame/.test(e.message));
    assert.ok(process.memoryUsage.rss() - rss0 < 32 << 20, 'the worker refused the bomb without decompressing it');
    const short = parsePackedRecordsFrame(packedPayload('v', CODEC_ZSTD, body.length, Buffer.concat([z.subarray(0, z.length - 4), Buffer.alloc(4)])));
    await assert.rejects(decodePackedRecordsFrameOff(short, pool, buffers), (e: Error) => e instanceof FrameError && /does not decompress/.test(e.message));
    // The received frame is only read: its bytes stay where they were.
    assert.equal(bomb.zstd.length, z.length + zstdBomb().length);
    assert.equal(buffers.out, 0, 'a refused frame gave back every buffer its unpack took');
    assert.ok(buffers.reused > 0, 'later unpacks reused the buffers of earlier ones');
  } finally {
    await pool.close();
  }
});

test('an unpack whose worker dies gives back both buffers it took, and the next unpack gets a new worker', async () => {
  const pool = new CompressionPool(1);
  const buffers = new OwnedBuffers(64 << 20);
  try {
    // 32 MiB of records that compress well: tens of milliseconds to unpack, so the worker is stopped mid-job.
    const recs: JournalRecord[] = [];
    for (let i = 0; i < 32; i++) recs.push(write(i << 20, Buffer.alloc(1 << 20, `block ${i} `)));
    const d = new FrameDecoder();
    d.push(Buffer.concat(packSync('db', recs, (b) => compress(b, { checksumFlag: true }), 3)));
    const packed = parsePackedRecordsFrame(d.next()!.payload);
    assert.equal(packed.codec, CODEC_ZSTD);
    const doomed = decodePackedRecordsFrameOff(packed, pool, buffers);
    assert.equal(buffers.out, 2, 'the frame\'s copy and what it unpacks into are away on the worker');
    await pool.killWorker(0);
    await assert.rejects(doomed, /worker stopped/);
    assert.deepEqual({ out: buffers.out, kept: buffers.kept }, { out: 0, kept: 0 }, 'both given back, neither kept: their memory went with the worker');
    const again = await decodePackedRecordsFrameOff(packed, pool, buffers);
    assert.equal(again.records.length, recs.length);
    again.owned!.give();
    assert.equal(buffers.out, 0);
  } finally {
    await pool.close();
  }
});
