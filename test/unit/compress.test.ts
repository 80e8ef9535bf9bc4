// Compression of record batches (src/compress, docs/PEER-PROTOCOL.md): the
// PackedRecords frame against fixed bytes, round trips of real data, zeros and
// random data, refusals of malformed frames, the worker pool surviving a worker's
// death, and the auto level following the link and the CPU.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { test } from 'node:test';
import { compress } from 'zstd-napi';
import { crc32c } from '@node-rs/crc32';
import { RECORD_HEADER_SIZE, RecordKind, type JournalRecord } from '../../src/journal/record.js';
import { FrameDecoder, FrameError, FrameType, MAX_FRAME_PAYLOAD, type Frame } from '../../src/link/frame.js';
import { decodeRecordsFrame } from '../../src/link/records-frame.js';
import { decodePackedRecordsFrame, encodePackedRecordsFrame, isAllZero, packSync, recordsBody, zeroWritesAsZeroes } from '../../src/compress/codec.js';
import { OwnedBuffers } from '../../src/memory/owned-buffers.js';
import { CompressionPool } from '../../src/compress/pool.js';
import { Packer, emptyPackStats } from '../../src/compress/packer.js';
import { sampleOf, samplePositions } from '../../src/compress/sample.js';
import { AUTO_RAW_TRY_AFTER_SECONDS, AUTO_TRY_SECONDS, COMPRESS_SAMPLE_SLICE_BYTES } from '../../src/limits/limits.js';
import { LevelController } from '../../src/compress/level.js';
import { AUTO_MIN_LEVEL, AUTO_START_LEVEL, parseCompression, type Compression } from '../../src/compress/setting.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function frameOf(parts: Buffer[]): Frame {
  const d = new FrameDecoder();
  d.push(Buffer.concat(parts));
  return d.next()!;
}

function decode(parts: Buffer[]): JournalRecord[] {
  const f = frameOf(parts);
  return f.type === FrameType.Records ? decodeRecordsFrame(f.payload).records : decodePackedRecordsFrame(f.payload).records;
}

let seq = 0;
function write(offset: number, payload: Buffer): JournalRecord {
  seq++;
  return { kind: RecordKind.Write, flags: 0, seq, epoch: 1, offset, length: payload.length, time: 1_700_000_000_000 + seq, payload };
}
function barrier(): JournalRecord {
  seq++;
  return { kind: RecordKind.Barrier, flags: 0, seq, epoch: 1, offset: 0, length: 0, time: 1_700_000_000_000 + seq, payload: Buffer.alloc(0) };
}

/** Real data: this machine's own program text and sources, in 64 KiB writes. */
function realData(bytes: number): Buffer {
  const files = [process.execPath, ...fs.readdirSync('/usr/include').map((f) => `/usr/include/${f}`)].filter((f) => fs.statSync(f).isFile());
  const parts: Buffer[] = [];
  let n = 0;
  for (const f of files) {
    const b = fs.readFileSync(f).subarray(0, bytes - n);
    parts.push(b);
    n += b.length;
    if (n >= bytes) break;
  }
  return Buffer.concat(parts);
}

test('a PackedRecords frame decodes from fixed bytes (a zstd raw block holding one barrier record)', () => {
  // Payload: name "v"; codec 1 (zstd), level 3, reserved 0, 56 bytes of records; then a
  // zstd frame: magic 28b52ffd, descriptor 0x20 (single segment, no checksum), content
  // size 0x38 (56), block header 0x0001c1 (last block, raw, 56 bytes), the record.
  // (a Barrier: magic "OFJR", version 1, kind 4, flags 0, seq 7, epoch 3, offset 0, length 0,
  // payload length 0, time 1000 ms, payload CRC 0, then the CRC32C of bytes 0..52)
  const record = hex(`
    4f464a52 01 04 0000 0700000000000000 0300000000000000 0000000000000000 00000000
    00000000 e803000000000000 00000000 00000000`);
  record.writeUInt32LE(crc32c(record.subarray(0, 52)), 52);
  const payload = Buffer.concat([hex('0100 76 01 03 0000 38000000 28b52ffd 20 38 c10100'), record]);
  assert.equal(payload.length, 2 + 1 + 8 + 4 + 1 + 1 + 3 + 56);
  const out = decodePackedRecordsFrame(payload);
  assert.equal(out.volume, 'v');
  assert.equal(out.rawBytes, 56);
  assert.deepEqual(out.records.map((r) => [r.kind, r.seq, r.epoch, r.time]), [[RecordKind.Barrier, 7, 3, 1000]]);
  // And our encoder lays the head out the same way.
  const ours = Buffer.concat(encodePackedRecordsFrame('v', 56, 3, hex('28b52ffd 20 38 c10100'))).subarray(20, 20 + 15);
  assert.deepEqual(ours, hex('0100 76 01 03 0000 38000000 28b52ffd'));
});

test('real data, zeros and random data round-trip; zeros travel as Zeroes records, random data raw', () => {
  const real = realData(1 << 20);
  const rnd = randomBytes(256 * 1024);
  const records = [write(0, real), write(1 << 20, Buffer.alloc(128 * 1024)), barrier(), write(4 << 20, rnd), barrier()];
  const z = zeroWritesAsZeroes(records);
  assert.equal(z.zeroBytes, 128 * 1024);
  assert.equal(z.records[1]!.kind, RecordKind.Zeroes);
  assert.equal(z.records[1]!.length, 128 * 1024);
  const frame = packSync('db', records, (b) => compress(b, { compressionLevel: 3, checksumFlag: true }), 3);
  const wire = frame.reduce((n, p) => n + p.length, 0);
  const raw = recordsBody(records).length;
  assert.ok(wire < raw * 0.8, `packed ${wire} of ${raw}`);
  const back = decode(frame);
  assert.equal(back.length, 5);
  assert.deepEqual(back[0]!.payload, real);
  assert.equal(back[1]!.kind, RecordKind.Zeroes);
  assert.deepEqual(back[3]!.payload, rnd);
  assert.deepEqual(back.map((r) => r.seq), records.map((r) => r.seq));
  // Random data alone does not shrink: it goes as a plain Records frame.
  const only = packSync('db', [write(0, randomBytes(64 * 1024))], (b) => compress(b, { compressionLevel: 3, checksumFlag: true }));
  assert.equal(frameOf(only).type, FrameType.Records);
  assert.ok(isAllZero(Buffer.alloc(3 << 20)));
  const nearly = Buffer.alloc(3 << 20);
  nearly[(3 << 20) - 1] = 1;
  assert.equal(isAllZero(nearly), false);
  // A byte in the first or a middle part of a large payload, and in a small one.
  for (const at of [0, (1 << 20) - 1, (1 << 20) + 5]) {
    const b = Buffer.alloc(3 << 20);
    b[at] = 7;
    assert.equal(isAllZero(b), false, `a byte at ${at}`);
  }
  const small = Buffer.alloc(100);
  small[99] = 1;
  assert.equal(isAllZero(small), false);
  assert.ok(isAllZero(Buffer.alloc(100)) && isAllZero(Buffer.alloc(0)));
});

test('malformed PackedRecords frames are refused with the reason, before any large allocation', () => {
  const body = recordsBody([write(0, Buffer.alloc(4096, 7))]);
  const good = compress(body);
  const head = (codec: number, raw: number): Buffer => {
    const h = Buffer.alloc(11);
    h.writeUInt16LE(1, 0);
    h.write('v', 2);
    h.writeUInt8(codec, 3);
    h.writeUInt32LE(raw, 7);
    return h;
  };
  const bad = (p: Buffer, re: RegExp): void => assert.throws(() => decodePackedRecordsFrame(p), (e: Error) => e instanceof FrameError && re.test(e.message));
  bad(Buffer.concat([head(3, body.length), good]), /codec 3/);
  bad(Buffer.concat([head(1, MAX_FRAME_PAYLOAD + 1), good]), /over the/);
  bad(Buffer.concat([head(1, body.length + 1), good]), /declares/);
  bad(Buffer.concat([head(1, body.length), Buffer.from('not zstd at all')]), /zstd/);
  bad(Buffer.concat([head(1, body.length), good.subarray(0, good.length - 5)]), /decompress/);
  bad(head(1, 0).subarray(0, 6), /shorter/);
  // A zstd frame whose records are damaged inside: the record checksum catches it.
  const damaged = Buffer.from(body);
  damaged[100] = damaged[100]! ^ 1;
  bad(Buffer.concat([head(1, body.length), compress(damaged)]), /checksum/);
});

test('the worker pool starts workers as jobs come (up to its size) and stops those idle too long', async () => {
  const pool = new CompressionPool(2, 64, 60_000);
  try {
    assert.equal(pool.workers, 0, 'no worker before the first job (a node whose data goes raw holds none)');
    const data = realData(1 << 20);
    assert.ok((await pool.compress(Buffer.from(data), 1)).length < data.length);
    assert.equal(pool.workers, 1, 'one job: one worker');
    await Promise.all([1, 2, 3, 4].map(() => pool.compress(Buffer.from(data), 3)));
    assert.equal(pool.workers, 2, 'jobs waiting with every worker busy: one more, up to the size');
    assert.equal(pool.started, 2);
    pool.retireIdle(Date.now() + 1000);
    assert.equal(pool.workers, 2, 'idle for less than its bound: kept');
    pool.retireIdle(Date.now() + 61_000);
    assert.equal(pool.workers, 0, 'idle past it: stopped');
    assert.equal(pool.retired, 2);
    assert.equal(pool.restarts, 0, 'a worker stopped for idling is no death');
    assert.ok((await pool.compress(Buffer.from(data), 1)).length < data.length, 'the next job starts one again');
    assert.equal(pool.workers, 1);
  } finally {
    await pool.close();
  }
});

test('the worker pool compresses off the event loop and survives a worker that dies', async () => {
  const pool = new CompressionPool(1);
  try {
    const data = realData(2 << 20);
    const out = await pool.compress(Buffer.from(data), 3);
    assert.ok(out.length < data.length);
    // A worker killed mid-job fails only that job; the next one gets a new worker.
    const doomed = pool.compress(Buffer.from(data), 19);
    await pool.killWorker(0);
    await assert.rejects(doomed, /worker stopped/);
    const again = await pool.compress(Buffer.from(data), 1);
    assert.ok(again.length < data.length);
    assert.equal(pool.restarts, 1);
    // A Packer whose compression fails sends the batch raw and counts it.
    const stats = emptyPackStats();
    const packer = new Packer({ pool, setting: () => ({ mode: 'fixed', level: 3 }), peerZstd: true, stats: () => stats });
    const recs = [write(0, data.subarray(0, 1 << 20)), barrier()];
    const packed = await packer.encode('db', recs);
    assert.equal(frameOf(packed).type, FrameType.PackedRecords);
    // (At level 19 the job is still running when the worker is killed, even on a loaded machine.)
    const slow = new Packer({ pool, setting: () => ({ mode: 'fixed', level: 19 }), peerZstd: true, stats: () => stats });
    const p2 = slow.encode('db', [write(0, data), barrier()]);
    await pool.killWorker(0);
    const raw = await p2;
    assert.equal(frameOf(raw).type, FrameType.Records);
    assert.deepEqual(decode(raw)[0]!.payload, data);
    assert.equal(stats.fallbackBatches, 1);
    assert.ok(stats.compressedOut > 0 && stats.compressedOut < stats.compressedIn);
    // A peer that did not say it decodes zstd gets plain frames.
    const plain = new Packer({ pool, setting: () => ({ mode: 'auto' }), peerZstd: false, stats: () => stats });
    assert.equal(frameOf(await plain.encode('db', recs)).type, FrameType.Records);
  } finally {
    await pool.close();
  }
});

test('large bodies go to the worker in the node\'s buffers and come back to be reused; one a dying worker held is let go', async () => {
  const pool = new CompressionPool(1);
  const buffers = new OwnedBuffers(64 << 20);
  try {
    const data = realData(2 << 20);
    const stats = emptyPackStats();
    const packer = new Packer({ pool, setting: () => ({ mode: 'fixed', level: 3 }), peerZstd: true, stats: () => stats, buffers });
    for (let i = 0; i < 3; i++) {
      const packed = await packer.encode('db', [write(0, data), barrier()]);
      assert.equal(frameOf(packed).type, FrameType.PackedRecords);
      assert.deepEqual(decode(packed)[0]!.payload, data);
    }
    assert.deepEqual({ out: buffers.out, made: buffers.made, reused: buffers.reused }, { out: 0, made: 1, reused: 2 }, 'one buffer, back after each batch');
    assert.ok(buffers.kept >= (2 << 20));
    // A batch under the mmap threshold is built as before.
    await packer.encode('db', [write(0, data.subarray(0, 64 << 10)), barrier()]);
    assert.equal(buffers.made + buffers.reused, 3);
    // The worker dies with the body: the batch goes raw, and the buffer it took away is not kept.
    const slow = new Packer({ pool, setting: () => ({ mode: 'fixed', level: 19 }), peerZstd: true, stats: () => stats, buffers });
    const p = slow.encode('db', [write(0, data), barrier()]);
    await pool.killWorker(0);
    const raw = await p;
    assert.equal(frameOf(raw).type, FrameType.Records);
    assert.deepEqual(decode(raw)[0]!.payload, data);
    assert.deepEqual({ out: buffers.out, kept: buffers.kept }, { out: 0, kept: 0 });
  } finally {
    await pool.close();
  }
});

test('auto level: up while the link is the bottleneck, down when the CPU is, never below 1, back to 3 once calm', () => {
  const c = new LevelController();
  assert.equal(c.level, 3);
  for (let i = 0; i < 20; i++) c.observe({ linkBusy: 1, workersBusy: 0.1 });
  assert.equal(c.level, 12); // bounded: never 19
  for (let i = 0; i < 3; i++) c.observe({ linkBusy: 1, workersBusy: 1 });
  assert.ok(c.level < 12, String(c.level));
  for (let i = 0; i < 20; i++) c.observe({ linkBusy: 0, workersBusy: 1 });
  assert.equal(c.level, 1); // the fastest level (raw only where a try ships more: compress-level.test.ts)
  for (let i = 0; i < 20; i++) c.observe({ linkBusy: 0.1, workersBusy: 0 });
  assert.equal(c.level, 3); // calm again: back to the start level
  for (let i = 0; i < 3; i++) c.observe({ linkBusy: 1, workersBusy: 0 });
  assert.ok(c.level > 3);
});

test('auto through the Packer: what it encodes is what a try of raw compares, raw batches go as Records frames, and the change is said', async () => {
  const pool = new CompressionPool(1);
  try {
    const data = realData(256 * 1024);
    const stats = emptyPackStats();
    const said: { raw: boolean; rawRate: number; zstdRate: number }[] = [];
    let setting: Compression = { mode: 'auto' };
    const packer = new Packer({ pool, setting: () => setting, peerZstd: true, stats: () => stats,
      onAuto: (raw, rawRate, zstdRate) => said.push({ raw, rawRate, zstdRate }) });
    const batch = (): JournalRecord[] => [write(0, data), barrier()];
    const bytes = 2 * RECORD_HEADER_SIZE + data.length;
    // Compressing, one batch a second, the link idle, the node busy: down to level 1, then the try.
    for (let i = 0; i < AUTO_RAW_TRY_AFTER_SECONDS + AUTO_START_LEVEL - AUTO_MIN_LEVEL - 1; i++) {
      assert.equal(frameOf(await packer.encode('db', batch())).type, FrameType.PackedRecords);
      packer.observe(0, 1);
    }
    assert.equal(packer.level, 0, 'the link idle while shipping: raw is tried');
    assert.equal(said.length, 0);
    // The try ships two batches a second.
    for (let i = 0; i < AUTO_TRY_SECONDS; i++) {
      for (let k = 0; k < 2; k++) assert.equal(frameOf(await packer.encode('db', batch())).type, FrameType.Records);
      packer.observe(0, 1);
    }
    assert.equal(packer.level, 0);
    assert.deepEqual(said, [{ raw: true, rawRate: 2 * bytes, zstdRate: bytes }]);
    // A fixed level set now (a reload) is never raw, whatever auto found.
    setting = { mode: 'fixed', level: 1 };
    assert.equal(packer.level, 1);
    assert.equal(frameOf(await packer.encode('db', batch())).type, FrameType.PackedRecords);
    packer.observe(0, 1);
    assert.equal(packer.level, 1);
  } finally {
    await pool.close();
  }
});

test('compression settings parse, and bad ones say what is allowed', () => {
  assert.deepEqual(parseCompression('auto'), { mode: 'auto' });
  assert.deepEqual(parseCompression('off'), { mode: 'off' });
  assert.deepEqual(parseCompression('zstd:9'), { mode: 'fixed', level: 9 });
  assert.throws(() => parseCompression('zstd:22'), /1 to 19/);
  assert.throws(() => parseCompression('gzip'), /auto, off or zstd:N/);
});



test('codec 2: random payloads in small writes go raw, their headers compressed apart (fixed bytes, round trip, refusals)', async () => {
  // Fixed bytes: volume "v", codec 2, level 3, 60 bytes of records; H = 65, a zstd
  // frame with its content checksum (descriptor 0x24) holding one raw block: the header
  // columns of one Write (4 bytes at offset 0, seq 9, epoch 2, time 1000 ms; one row,
  // against zeros: the header's first 52 bytes), then the payload "abcd".
  const payload = Buffer.concat([
    hex('0100 76 02 03 0000 3c000000 41000000 28b52ffd 24 34 a10100'),
    hex(`4f464a52 01 01 0000 0900000000000000 0200000000000000 0000000000000000 04000000
      04000000 e803000000000000 310ac892`),
    hex('cc6412ca'), // XXH64's low 32 bits: zstd's content checksum
    Buffer.from('abcd'),
  ]);
  const out = decodePackedRecordsFrame(payload);
  assert.deepEqual(out.records.map((r) => [r.kind, r.seq, r.epoch, r.offset, r.payload.toString()]), [[RecordKind.Write, 9, 2, 0, 'abcd']]);
  // 256 random 4 KiB writes: the batch does not compress, its headers do.
  const recs: JournalRecord[] = [];
  for (let i = 0; i < 256; i++) recs.push(write(i * 4096, randomBytes(4096)));
  recs.push(barrier());
  const frame = packSync('db', recs, (b) => compress(b, { compressionLevel: 3, checksumFlag: true }), 3);
  const f = frameOf(frame);
  assert.equal(f.type, FrameType.PackedRecords);
  assert.equal(f.payload.readUInt8(4), 2, 'codec 2');
  const raw = recordsBody(recs).length;
  const wire = frame.reduce((n, p) => n + p.length, 0);
  assert.ok(wire < raw - 256 * 45, `headers as columns: ${wire} of ${raw}`);
  const back = decode(frame);
  assert.deepEqual(back.map((r) => r.seq), recs.map((r) => r.seq));
  assert.ok(back.every((r, i) => r.payload.equals(recs[i]!.payload)));
  // Refusals: payload bytes left over, headers that are not whole, a damaged payload.
  const bad = (p: Buffer, re: RegExp): void => assert.throws(() => decodePackedRecordsFrame(p), (e: Error) => e instanceof FrameError && re.test(e.message));
  const good = f.payload;
  const extra = Buffer.concat([good, Buffer.from('x')]);
  extra.writeUInt32LE(good.readUInt32LE(8) + 1, 8); // (name "db": the length is at 8)
  bad(extra, /belong to no record/);
  const damaged = Buffer.from(good);
  damaged[damaged.length - 5] = damaged[damaged.length - 5]! ^ 1;
  bad(damaged, /checksum/);
  bad(Buffer.concat([payload.subarray(0, 15), hex('ffff0000')]), /run past/);
  const noSum = Buffer.from(payload);
  noSum[19] = 0x20; // the checksum flag cleared
  bad(noSum, /no content checksum/);
  const flipped = Buffer.from(payload);
  flipped[32] = flipped[32]! ^ 1; // the seq column, under zstd's checksum
  bad(flipped, /does not decompress.*checksum/);
  // The Packer does the same through its pool.
  const pool = new CompressionPool(1);
  try {
    const stats = emptyPackStats();
    const packer = new Packer({ pool, setting: () => ({ mode: 'fixed', level: 3 }), peerZstd: true, stats: () => stats });
    const pf = frameOf(await packer.encode('db', recs));
    assert.equal(pf.payload.readUInt8(4), 2);
    assert.equal(stats.incompressibleBatches, 1);
    assert.ok(stats.compressedOut < stats.compressedIn);
  } finally {
    await pool.close();
  }
});

test('auto: a batch whose sample does not shrink goes raw with no worker started; ' +
  'random data behind a sample that shrinks is tried, then untried (1, 2, 4 ... up to 32)', async () => {
  const pool = new CompressionPool(1);
  try {
    const stats = emptyPackStats();
    let mode: 'auto' | 'fixed' = 'auto';
    const packer = new Packer({ pool, setting: () => (mode === 'auto' ? { mode } : { mode, level: 3 }), peerZstd: true, stats: () => stats });
    // Random data: its sample (sample.ts) does not shrink: raw, and no worker was started for it.
    for (let i = 0; i < 5; i++) {
      const recs = [write(0, randomBytes(256 * 1024)), barrier()];
      const parts = await packer.encode('db', recs);
      assert.equal(frameOf(parts).type, FrameType.Records);
      assert.deepEqual(decode(parts)[0]!.payload, recs[0]!.payload);
    }
    assert.equal(stats.untriedBatches, 5);
    assert.equal(stats.incompressibleBatches, 0);
    assert.equal(pool.started, 0, 'no worker for data whose sample does not shrink');
    // Random data with text where the sample is taken: the sample shrinks, the batch (2 MiB, 64 KiB of text) does not.
    const text = realData(COMPRESS_SAMPLE_SLICE_BYTES);
    const random = (): JournalRecord[] => {
      const p = randomBytes(2048 * 1024);
      for (const at of samplePositions(p.length)) text.copy(p, at);
      assert.ok(sampleOf([write(0, p)]).equals(Buffer.concat(samplePositions(p.length).map(() => text))), 'the sample is where the text is');
      return [write(0, p), barrier()];
    };
    const types: string[] = [];
    const untriedBefore = stats.untriedBatches;
    for (let i = 0; i < 12; i++) {
      const recs = random();
      const parts = await packer.encode('db', recs);
      types.push(frameOf(parts).type === FrameType.Records ? 'R' : 'P');
      assert.deepEqual(decode(parts)[0]!.payload, recs[0]!.payload, `batch ${i}`);
    }
    assert.deepEqual(types, Array(12).fill('R'));
    // Tried: the 1st, 3rd, 6th and 11th (after 1, 2 and 4 untried); the others untried.
    assert.equal(stats.incompressibleBatches, 4);
    assert.equal(stats.untriedBatches - untriedBefore, 8);
    // Another volume is tried on its own account.
    await packer.encode('logs', random());
    assert.equal(stats.incompressibleBatches, 5);
    // A sample is taken across records: one slice from each part of the batch.
    const four = [0, 1, 2, 3].map((i) => write(i, Buffer.alloc(100 * 1024, i + 1)));
    assert.deepEqual([...sampleOf(four)].filter((_, i) => i % COMPRESS_SAMPLE_SLICE_BYTES === 0), [1, 2, 3, 4]);
    assert.equal(sampleOf([write(0, Buffer.alloc(1000, 7))]).length, 1000, 'a small batch is its own sample');
    // Data that compresses again: found at the next batch tried, and tried every batch from then on.
    for (let i = 0; i < 7; i++) await packer.encode('db', [write(0, realData(256 * 1024)), barrier()]);
    const untried = stats.untriedBatches;
    const [a, b] = [await packer.encode('db', [write(0, realData(256 * 1024))]), await packer.encode('db', [write(0, realData(256 * 1024))])];
    assert.equal(frameOf(a).type, FrameType.PackedRecords);
    assert.equal(frameOf(b).type, FrameType.PackedRecords);
    assert.equal(stats.untriedBatches, untried);
    // A small batch left untried goes raw, not to a worker for its headers.
    await packer.encode('tiny', random());
    const inBefore = stats.compressedIn;
    assert.equal(frameOf(await packer.encode('tiny', [barrier()])).type, FrameType.Records);
    assert.equal(stats.compressedIn, inBefore);
    // A fixed level tries every batch (the operator chose it).
    mode = 'fixed';
    const before = stats.incompressibleBatches;
    for (let i = 0; i < 4; i++) await packer.encode('db', random());
    assert.equal(stats.incompressibleBatches, before + 4);
  } finally {
    await pool.close();
  }
});
