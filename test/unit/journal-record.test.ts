// Journal records and segment headers against fixed byte strings (docs/JOURNAL.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
  const fixed = Buffer.concat([hex('4f464a52 01 04 0000 0800000000000000 0300000000000000 0000000000000000 00000000 00000000 0100000000000000 00000000'), b.subarray(52)]);
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

test('segment header layout', () => {
  const s = R.encodeSegmentHeader({ baseSeq: 0x100, baseEpoch: 9, created: 0x10 });
  assert.deepEqual(s.subarray(0, 40), hex('4f4646534a534547 01000000 40000000 0001000000000000 1000000000000000 0900000000000000'));
  assert.deepEqual(R.decodeSegmentHeader(s), { baseSeq: 0x100, baseEpoch: 9, created: 0x10 });
  const bad = Buffer.from(s);
  bad[20] = 1;
  assert.equal(R.decodeSegmentHeader(bad), 'segment header checksum mismatch');
  assert.equal(R.decodeSegmentHeader(Buffer.alloc(64)), 'not a journal segment (bad magic)');
});
