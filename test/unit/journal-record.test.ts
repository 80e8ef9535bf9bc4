// Journal records and segment headers against fixed byte strings (docs/JOURNAL.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32c as crc32cOf } from '@node-rs/crc32';
import * as R from '../../src/journal/record.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// A 4-byte write of "abcd" at volume offset 0x10000, seq 7, epoch 3, FUA, at time 0x0123456789.
const WRITE = hex(`
  4f464a52 01 01 0100
  0700000000000000
  0300000000000000
  0000010000000000
  04000000 04000000
  8967452301000000
  ${'' /* payload crc32c("abcd") LE */}
`);

test('record header layout, byte by byte', () => {
  const payload = Buffer.from('abcd');
  const h = R.encodeRecordHeader({ kind: R.RecordKind.Write, flags: R.FLAG_FUA, seq: 7, epoch: 3, offset: 0x10000, length: 4, time: 0x0123456789 }, payload);
  assert.equal(h.length, R.RECORD_HEADER_SIZE);
  assert.deepEqual(h.subarray(0, 48), WRITE);
  // CRC32C("abcd") = 0x92c80a31, little-endian; then the header CRC over bytes 0..52.
  assert.deepEqual(h.subarray(48, 52), hex('310ac892'));
  const d = R.decodeRecordHeader(h);
  assert.ok(d.ok);
  assert.deepEqual(d.header, { kind: R.RecordKind.Write, flags: R.FLAG_FUA, seq: 7, epoch: 3, offset: 0x10000, length: 4, time: 0x0123456789 });
  assert.equal(d.payloadLength, 4);
  assert.ok(R.payloadMatches(payload, d.payloadCrc));
  assert.ok(!R.payloadMatches(Buffer.from('abce'), d.payloadCrc));
});

test('a fixed barrier record decodes', () => {
  // Barrier, seq 8, epoch 3, no range, no payload.
  const b = R.encodeRecordHeader({ kind: R.RecordKind.Barrier, flags: 0, seq: 8, epoch: 3, offset: 0, length: 0, time: 1 }, null);
  const fixed = Buffer.concat(
    [hex('4f464a52 01 04 0000 0800000000000000 0300000000000000 0000000000000000 00000000 00000000 0100000000000000 00000000'), b.subarray(52)]);
  assert.deepEqual(b, fixed);
  const d = R.decodeRecordHeader(fixed);
  assert.ok(d.ok && d.header.kind === R.RecordKind.Barrier && d.header.offset === 0 && d.payloadLength === 0);
});

test('every single-bit flip in a header is caught', () => {
  const h = R.encodeRecordHeader({ kind: R.RecordKind.Zeroes, flags: 0, seq: 1, epoch: 1, offset: 4096, length: 65536, time: 5 }, null);
  for (let bit = 0; bit < h.length * 8; bit++) {
    const c = Buffer.from(h);
    c[bit >> 3] = c[bit >> 3]! ^ (1 << (bit & 7));
    assert.equal(R.decodeRecordHeader(c).ok, false, `bit ${bit}`);
  }
});

test('bad headers are reasons, never exceptions', () => {
  assert.deepEqual(R.decodeRecordHeader(Buffer.alloc(10)), { ok: false, reason: 'truncated header' });
  assert.deepEqual(R.decodeRecordHeader(Buffer.alloc(56)), { ok: false, reason: 'no record magic' });
  assert.throws(() => R.encodeRecordHeader({ kind: R.RecordKind.Write, flags: 0, seq: 1, epoch: 1, offset: 0, length: 8, time: 0 }, Buffer.alloc(4)));
});

test('segment header layout (version 2: it names its volume)', () => {
  const uuid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
  const volume = R.volumeId(uuid)!;
  assert.deepEqual(volume, hex('0f1e2d3c 4b5a 6978 8796 a5b4c3d2e1f0'));
  const s = R.encodeSegmentHeader({ baseSeq: 0x100, baseEpoch: 9, created: 0x10, volume });
  assert.deepEqual(s.subarray(0, 60), hex(`4f4646534a534547 02000000 40000000 0001000000000000 1000000000000000 0900000000000000
    0f1e2d3c4b5a69788796a5b4c3d2e1f0 00000000`));
  assert.deepEqual(R.decodeSegmentHeader(s), { version: 2, baseSeq: 0x100, baseEpoch: 9, created: 0x10, volume });
  assert.equal(R.formatVolumeId(volume), uuid);
  const bad = Buffer.from(s);
  bad[20] = 1;
  assert.equal(R.decodeSegmentHeader(bad), 'segment header checksum mismatch');
  assert.equal(R.decodeSegmentHeader(Buffer.alloc(64)), 'not a journal segment (bad magic)');
  // A volume with no identity yet (a receive log before its first link): zeros, read as none.
  const none = R.encodeSegmentHeader({ baseSeq: 1, baseEpoch: 1, created: 0, volume: null });
  assert.deepEqual(none.subarray(40, 60), Buffer.alloc(20));
  assert.equal((R.decodeSegmentHeader(none) as R.DecodedSegmentHeader).volume, null);
  assert.equal(R.volumeId(''), null);
  // A uuid not in the canonical form still names one volume (its SHA-256, cut to 16 bytes).
  assert.equal(R.volumeId('not-a-uuid')!.length, 16);
  assert.notDeepEqual(R.volumeId('not-a-uuid'), R.volumeId('not-a-uuid2'));
});

test('a version 1 segment header, as the previous release wrote it, still decodes', () => {
  // Base seq 1, created 0x18f0000000, base epoch 1, 20 reserved bytes, CRC32C.
  const v1 = hex(`4f4646534a534547 01000000 40000000 0100000000000000 000000f018000000 0100000000000000
    0000000000000000000000000000000000000000 088221b7`);
  assert.deepEqual(R.decodeSegmentHeader(v1), { version: 1, baseSeq: 1, baseEpoch: 1, created: 0x18f0000000, volume: null });
  const v3 = Buffer.from(v1);
  v3.writeUInt32LE(3, 8);
  v3.writeUInt32LE(crc32cOf(v3.subarray(0, 60)), 60);
  assert.equal(R.decodeSegmentHeader(v3), 'segment format version 3, this build reads 1 and 2');
});

test('u64 fields at the edge of 2^53: the largest round-trips byte for byte; past it a header is refused; encoding refuses a non-whole number', () => {
  const top = Number.MAX_SAFE_INTEGER; // 0x001fffff_ffffffff
  const h = R.encodeRecordHeader({ kind: R.RecordKind.Barrier, flags: 0, seq: top, epoch: 2 ** 32, offset: 0, length: 0, time: 2 ** 32 - 1 }, null);
  assert.deepEqual(h.subarray(8, 24), hex('ffffffffffff1f00 0000000001000000'));
  assert.deepEqual(h.subarray(40, 48), hex('ffffffff00000000'));
  const d = R.decodeRecordHeader(h);
  assert.ok(d.ok);
  assert.equal(d.header.seq, top);
  assert.equal(d.header.epoch, 2 ** 32);
  assert.equal(d.header.time, 2 ** 32 - 1);
  // seq = 2^53: high half 0x00200000; a valid header CRC, yet refused.
  const past = Buffer.from(h);
  past.writeUInt32LE(0, 8);
  past.writeUInt32LE(0x0020_0000, 12);
  past.writeUInt32LE(crc32cOf(past.subarray(0, 52)), 52);
  assert.deepEqual(R.decodeRecordHeader(past), { ok: false, reason: 'value beyond 2^53' });
  for (const seq of [-1, 1.5, 2 ** 53, Number.NaN]) {
    const barrier = { kind: R.RecordKind.Barrier, flags: 0, seq, epoch: 0, offset: 0, length: 0, time: 0 };
    assert.throws(() => R.encodeRecordHeader(barrier, null), RangeError);
  }
});
