// Codec 2's header columns (src/compress/columns.ts, docs/PEER-PROTOCOL.md): fixed
// bytes for two records, and round trips of every record kind and of fields whose
// differences wrap.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ROW, columnsToHeaders, headersToColumns } from '../../src/compress/columns.js';
import { RECORD_HEADER_SIZE, RecordKind, decodeRecordHeader, encodeRecordHeader, type RecordHeader } from '../../src/journal/record.js';

const head = (h: Partial<RecordHeader>, payload: Buffer | null = null): Buffer =>
  encodeRecordHeader({ kind: RecordKind.Write, flags: 0, seq: 0, epoch: 0, offset: 0, length: payload?.length ?? 0, time: 0, ...h }, payload);

test('header columns: two writes, byte by byte', () => {
  const a = head({ seq: 9, epoch: 2, offset: 4096, time: 1000 }, Buffer.from('abcd'));
  const b = head({ seq: 10, epoch: 2, offset: 8192, time: 1003 }, Buffer.from('wxyz'));
  const cols = headersToColumns(Buffer.concat([a, b]));
  assert.equal(cols.length, 2 * ROW);
  const col = (c: number): number[] => [cols[2 * c]!, cols[2 * c + 1]!];
  assert.deepEqual(col(0), [0x4f, 0]); // magic, then XOR the same magic
  assert.deepEqual(col(5), [RecordKind.Write, 0]); // kind
  assert.deepEqual(col(8), [9, 1]); // seq's low byte: 9, then +1
  assert.deepEqual(col(16), [2, 0]); // epoch: 2, then the same
  assert.deepEqual(col(25), [0x10, 0x10]); // offset's second byte: 4096, then +4096
  assert.deepEqual(col(32), [4, 0]); // length
  assert.deepEqual(col(40), [0xe8, 3]); // time: 1000, then +3
  assert.deepEqual(col(48), [a[48]!, b[48]!]); // the payload CRCs as they are
  // The header CRC does not travel: computed again on the way back.
  assert.deepEqual(columnsToHeaders(cols), Buffer.concat([a, b]));
});

test('header columns: round trips of every kind, values near 2^53, and fields that go down (their differences wrap mod 2^64)', () => {
  const hs: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const kind = [RecordKind.Write, RecordKind.Zeroes, RecordKind.Trim, RecordKind.Barrier, RecordKind.Skip][i % 5]!;
    const payload = kind === RecordKind.Write ? randomBytes(1 + (i % 7)) : null;
    hs.push(head({
      kind, flags: i % 3, seq: 2 ** 53 - 400 + i, epoch: Math.floor(i / 10),
      offset: i % 2 === 0 ? 2 ** 52 + i : 12 * (300 - i), length: payload?.length ?? (kind === RecordKind.Barrier ? 0 : 512 * i),
      time: 1_800_000_000_000 - (i % 4),
    }, payload));
  }
  const headers = Buffer.concat(hs);
  const back = columnsToHeaders(headersToColumns(headers));
  assert.deepEqual(back, headers);
  for (let at = 0; at < back.length; at += RECORD_HEADER_SIZE) assert.equal(decodeRecordHeader(back, at).ok, true);
  assert.throws(() => headersToColumns(Buffer.alloc(55)), /whole number/);
  assert.throws(() => columnsToHeaders(Buffer.alloc(53)), /whole number/);
  assert.equal(columnsToHeaders(Buffer.alloc(0)).length, 0);
});
