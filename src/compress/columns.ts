// The headers of a PackedRecords codec 2 frame as columns (docs/PEER-PROTOCOL.md): what
// zstd is given in place of the records' 56-byte headers one after another.
//
// Each header becomes a 52-byte row: its header CRC (bytes 52..55) is left out (the
// receiver computes it again; the zstd frame's own checksum covers the rows), and every
// field is taken relative to the same field of the record before it (the first against
// zeros): the u64 fields seq, epoch, offset and time and the u32 lengths as the
// difference (mod 2^64, 2^32), magic, version, kind and flags as XOR. The payload CRC
// (bytes 48..51) goes as it is. Then the rows are transposed: byte 0 of every row, then
// byte 1 of every row, and so on, so zstd sees a run of equal bytes where the records
// agree. A batch of 4 KiB random writes: about 8 bytes a header instead of 15
// compressed whole (56 raw).
import { crc32c } from '../checksum/crc32c.js';
import { RECORD_HEADER_SIZE } from '../journal/record.js';

export const ROW = 52;
const U64_FIELDS = [8, 16, 24, 40];
const U32_FIELDS = [32, 36];

function row(h: Buffer, prev: Buffer, out: Buffer): void {
  out.writeUInt32LE((h.readUInt32LE(0) ^ prev.readUInt32LE(0)) >>> 0, 0);
  out[4] = h[4]! ^ prev[4]!;
  out[5] = h[5]! ^ prev[5]!;
  out.writeUInt16LE(h.readUInt16LE(6) ^ prev.readUInt16LE(6), 6);
  for (const o of U64_FIELDS) out.writeBigUInt64LE(BigInt.asUintN(64, h.readBigUInt64LE(o) - prev.readBigUInt64LE(o)), o);
  for (const o of U32_FIELDS) out.writeUInt32LE((h.readUInt32LE(o) - prev.readUInt32LE(o)) >>> 0, o);
  out.writeUInt32LE(h.readUInt32LE(48), 48);
}

function unrow(r: Buffer, prev: Buffer, out: Buffer): void {
  out.writeUInt32LE((r.readUInt32LE(0) ^ prev.readUInt32LE(0)) >>> 0, 0);
  out[4] = r[4]! ^ prev[4]!;
  out[5] = r[5]! ^ prev[5]!;
  out.writeUInt16LE(r.readUInt16LE(6) ^ prev.readUInt16LE(6), 6);
  for (const o of U64_FIELDS) out.writeBigUInt64LE(BigInt.asUintN(64, r.readBigUInt64LE(o) + prev.readBigUInt64LE(o)), o);
  for (const o of U32_FIELDS) out.writeUInt32LE((r.readUInt32LE(o) + prev.readUInt32LE(o)) >>> 0, o);
  out.writeUInt32LE(r.readUInt32LE(48), 48);
  out.writeUInt32LE(crc32c(out.subarray(0, 52)), 52);
}

/** n headers of 56 bytes, in order, as n × 52 bytes of columns. */
export function headersToColumns(headers: Buffer): Buffer {
  if (headers.length % RECORD_HEADER_SIZE !== 0) throw new Error(`${headers.length} bytes is not a whole number of record headers`);
  const n = headers.length / RECORD_HEADER_SIZE;
  const rows = Buffer.alloc(n * ROW);
  const zero = Buffer.alloc(RECORD_HEADER_SIZE);
  for (let i = 0; i < n; i++) {
    const h = headers.subarray(i * RECORD_HEADER_SIZE, (i + 1) * RECORD_HEADER_SIZE);
    const prev = i === 0 ? zero : headers.subarray((i - 1) * RECORD_HEADER_SIZE, i * RECORD_HEADER_SIZE);
    row(h, prev, rows.subarray(i * ROW, (i + 1) * ROW));
  }
  const out = Buffer.allocUnsafe(n * ROW);
  for (let i = 0; i < n; i++) for (let c = 0; c < ROW; c++) out[c * n + i] = rows[i * ROW + c]!;
  return out;
}

/**
 * The 56-byte headers back from their columns, each with its header CRC computed
 * again. The caller still checks each header (magic, version, kind, lengths).
 */
export function columnsToHeaders(columns: Buffer): Buffer {
  if (columns.length % ROW !== 0) throw new Error(`${columns.length} bytes of header columns is not a whole number of ${ROW}-byte rows`);
  const n = columns.length / ROW;
  const rows = Buffer.allocUnsafe(n * ROW);
  for (let i = 0; i < n; i++) for (let c = 0; c < ROW; c++) rows[i * ROW + c] = columns[c * n + i]!;
  const out = Buffer.alloc(n * RECORD_HEADER_SIZE);
  const zero = Buffer.alloc(RECORD_HEADER_SIZE);
  for (let i = 0; i < n; i++) {
    const prev = i === 0 ? zero : out.subarray((i - 1) * RECORD_HEADER_SIZE, i * RECORD_HEADER_SIZE);
    unrow(rows.subarray(i * ROW, (i + 1) * ROW), prev, out.subarray(i * RECORD_HEADER_SIZE, (i + 1) * RECORD_HEADER_SIZE));
  }
  return out;
}
