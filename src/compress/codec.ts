// Records on the wire (docs/PEER-PROTOCOL.md): a batch of journal records goes as a
// Records frame (as stored) or, compressed, as a PackedRecords frame. Before either,
// a Write whose payload is all zeros becomes a Zeroes record of the same range: the
// replica's bytes are the same and 56 bytes travel instead of the payload.
//
// PackedRecords payload, little-endian:
//   0  2  volume name length N
//   2  N  volume name (UTF-8)
//   +0 1  codec (1: zstd)
//   +1 1  level the sender used (informative)
//   +2 2  reserved, 0
//   +4 4  length of the records once decompressed (at most MAX_FRAME_PAYLOAD)
//   +8 …  codec 1: one zstd frame (with its content size) holding the records exactly
//         as a Records frame carries them: header + payload, each with its CRC32C
//         codec 2 (headers apart, for incompressible payloads): u32 length H, then H
//         bytes of one zstd frame, with its content checksum, holding the records'
//         headers as columns (columns.ts: 52 bytes a record, no header CRC), then
//         their payloads, raw, in the same order
import { decompress } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';

const { getFrameContentSize } = zstdBinding;
import { RECORD_HEADER_SIZE, RecordKind, decodeRecordHeader, encodeRecordHeader, type JournalRecord } from '../journal/record.js';
import { FrameError, FrameType, MAX_FRAME_PAYLOAD, decodeVolumePayload, encodeFrame, encodeVolumePayload } from '../link/frame.js';
import { decodeRecordsBody, recordsBody } from '../link/records-frame.js';
import { ROW, columnsToHeaders, headersToColumns } from './columns.js';

export { recordsBody };

export const CODEC_ZSTD = 1;
/** The headers compressed, the payloads raw: random or encrypted data in small writes. */
export const CODEC_ZSTD_HEADERS = 2;
const PACKED_HEAD = 8;
const ZERO = Buffer.alloc(1 << 20);

export function isAllZero(b: Buffer): boolean {
  for (let at = 0; at < b.length; at += ZERO.length) {
    const part = b.subarray(at, Math.min(b.length, at + ZERO.length));
    if (!part.equals(ZERO.subarray(0, part.length))) return false;
  }
  return true;
}

/** A Write of zeros as a Zeroes record of the same range (same seq, epoch, flags, time). */
export function zeroWritesAsZeroes(records: JournalRecord[]): { records: JournalRecord[]; zeroBytes: number } {
  let zeroBytes = 0;
  const out = records.map((r) => {
    if (r.kind !== RecordKind.Write || r.payload.length === 0 || !isAllZero(r.payload)) return r;
    zeroBytes += r.payload.length;
    return { ...r, kind: RecordKind.Zeroes, payload: Buffer.alloc(0) };
  });
  return { records: out, zeroBytes };
}

export function encodeRawRecordsFrame(volume: string, body: Buffer): Buffer[] {
  return encodeFrame(FrameType.Records, encodeVolumePayload(volume, body));
}

export function encodePackedRecordsFrame(volume: string, rawLength: number, level: number, compressed: Buffer): Buffer[] {
  const h = Buffer.alloc(PACKED_HEAD);
  h.writeUInt8(CODEC_ZSTD, 0);
  h.writeUInt8(level, 1);
  h.writeUInt32LE(rawLength, 4);
  return encodeFrame(FrameType.PackedRecords, Buffer.concat([encodeVolumePayload(volume, h), compressed]));
}

/**
 * The records' headers as columns (what codec 2 compresses), their size as headers,
 * and the payloads, in order.
 */
export function splitRecords(records: JournalRecord[]): { columns: Buffer; headerBytes: number; payloads: Buffer[]; rawLength: number } {
  const headers: Buffer[] = [];
  const payloads: Buffer[] = [];
  let rawLength = 0;
  for (const r of records) {
    const payload = r.payload.length > 0 ? r.payload : null;
    headers.push(encodeRecordHeader(r, payload));
    if (payload) payloads.push(payload);
    rawLength += RECORD_HEADER_SIZE + r.payload.length;
  }
  return { columns: headersToColumns(Buffer.concat(headers)), headerBytes: headers.length * RECORD_HEADER_SIZE, payloads, rawLength };
}

/** Codec 2: the header columns compressed with a content checksum (`compressedHeaders`), the payloads raw. */
export function encodeHeadersPackedFrame(volume: string, rawLength: number, level: number, compressedHeaders: Buffer, payloads: Buffer[]): Buffer[] {
  const h = Buffer.alloc(PACKED_HEAD + 4);
  h.writeUInt8(CODEC_ZSTD_HEADERS, 0);
  h.writeUInt8(level, 1);
  h.writeUInt32LE(rawLength, 4);
  h.writeUInt32LE(compressedHeaders.length, 8);
  return encodeFrame(FrameType.PackedRecords, Buffer.concat([encodeVolumePayload(volume, h), compressedHeaders, ...payloads]));
}

/** A zstd frame's content, refused unless it declares exactly `want` bytes (at most `max`). */
function unzstd(volume: string, z: Buffer, want: number | null, max: number, checksummed = false): Buffer {
  // Byte 4 of a zstd frame is its Frame_Header_Descriptor; bit 2, Content_Checksum_flag.
  if (checksummed && (z.length < 5 || (z[4]! & 4) === 0)) throw new FrameError(`PackedRecords frame for ${volume}: its header columns' zstd frame has no content checksum`);
  let size: number | null;
  try {
    size = getFrameContentSize(z);
  } catch {
    throw new FrameError(`PackedRecords frame for ${volume} does not hold a zstd frame`);
  }
  if (size === null || (want !== null && size !== want) || size > max) {
    throw new FrameError(`PackedRecords frame for ${volume}: its zstd frame holds ${size ?? 'an unknown number of'} bytes, the frame declares ${want ?? `at most ${max}`}`);
  }
  let out: Buffer;
  try {
    out = decompress(z);
  } catch (e) {
    throw new FrameError(`PackedRecords frame for ${volume} does not decompress: ${(e as Error).message}`);
  }
  if (out.length !== size) throw new FrameError(`PackedRecords frame for ${volume} decompressed to ${out.length} bytes, not the ${size} declared`);
  return out;
}

/**
 * A PackedRecords frame's records. The declared length is checked against the
 * zstd frame's own before any memory is given to it: a peer cannot make this side
 * allocate more than MAX_FRAME_PAYLOAD.
 */
export function decodePackedRecordsFrame(payload: Buffer): { volume: string; records: JournalRecord[]; rawBytes: number } {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length < PACKED_HEAD) throw new FrameError(`PackedRecords frame for ${volume} is shorter than its ${PACKED_HEAD}-byte head`);
  const codec = rest.readUInt8(0);
  if (codec !== CODEC_ZSTD && codec !== CODEC_ZSTD_HEADERS) throw new FrameError(`PackedRecords frame for ${volume} uses codec ${codec}; this node knows 1 (zstd) and 2 (zstd headers)`);
  const rawLength = rest.readUInt32LE(4);
  if (rawLength > MAX_FRAME_PAYLOAD) throw new FrameError(`PackedRecords frame for ${volume} declares ${rawLength} bytes of records, over the ${MAX_FRAME_PAYLOAD}-byte limit`);
  if (codec === CODEC_ZSTD) {
    const body = unzstd(volume, rest.subarray(PACKED_HEAD), rawLength, MAX_FRAME_PAYLOAD);
    return { volume, records: decodeRecordsBody(volume, body), rawBytes: rawLength };
  }
  if (rest.length < PACKED_HEAD + 4) throw new FrameError(`PackedRecords frame for ${volume} is shorter than its ${PACKED_HEAD + 4}-byte head`);
  const hLength = rest.readUInt32LE(PACKED_HEAD);
  if (PACKED_HEAD + 4 + hLength > rest.length) throw new FrameError(`PackedRecords frame for ${volume}: its headers run past the frame`);
  // (n headers are n × 52 bytes of columns: no more than the declared length allows.)
  const columns = unzstd(volume, rest.subarray(PACKED_HEAD + 4, PACKED_HEAD + 4 + hLength), null, Math.floor((rawLength / RECORD_HEADER_SIZE) * ROW), true);
  if (columns.length % ROW !== 0) throw new FrameError(`PackedRecords frame for ${volume}: ${columns.length} bytes of header columns is not a whole number of records`);
  const payloads = rest.subarray(PACKED_HEAD + 4 + hLength);
  const headerBytes = (columns.length / ROW) * RECORD_HEADER_SIZE;
  if (headerBytes + payloads.length !== rawLength) throw new FrameError(`PackedRecords frame for ${volume} holds ${headerBytes + payloads.length} bytes of records, the frame declares ${rawLength}`);
  const headers = columnsToHeaders(columns);
  // Header and payload back together, then checked as a Records frame's records are.
  const body = Buffer.allocUnsafe(rawLength);
  let at = 0;
  let from = 0;
  for (let h = 0; h < headers.length; h += RECORD_HEADER_SIZE) {
    const head = headers.subarray(h, h + RECORD_HEADER_SIZE);
    const check = decodeRecordHeader(head, 0);
    if (!check.ok) throw new FrameError(`record ${h / RECORD_HEADER_SIZE + 1} of a PackedRecords frame for ${volume}: ${check.reason}`);
    if (from + check.payloadLength > payloads.length) throw new FrameError(`record ${check.header.seq} for ${volume} runs past its frame`);
    head.copy(body, at);
    at += RECORD_HEADER_SIZE;
    payloads.copy(body, at, from, from + check.payloadLength);
    at += check.payloadLength;
    from += check.payloadLength;
  }
  if (from !== payloads.length) throw new FrameError(`PackedRecords frame for ${volume}: ${payloads.length - from} payload bytes belong to no record`);
  return { volume, records: decodeRecordsBody(volume, body), rawBytes: rawLength };
}


/**
 * The packing the daemon's Packer does, synchronously (the simulation; level and
 * compressor given). `compress` must write zstd's content checksum, as the workers do.
 */
export function packSync(volume: string, records: JournalRecord[], compress: (body: Buffer) => Buffer, level = 1): Buffer[] {
  const recs = zeroWritesAsZeroes(records).records;
  const body = recordsBody(recs);
  if (body.length < 1024) return encodeRawRecordsFrame(volume, body);
  const packed = compress(body);
  if (packed.length < body.length - (body.length >> 5)) return encodePackedRecordsFrame(volume, body.length, level, packed);
  const split = splitRecords(recs);
  const h = compress(split.columns);
  if (headersWorthIt(split.headerBytes, h.length, body.length)) return encodeHeadersPackedFrame(volume, split.rawLength, level, h, split.payloads);
  return encodeRawRecordsFrame(volume, body);
}

/** Headers compressed apart pay when they save at least 1/256 of the batch. */
export function headersWorthIt(headerBytes: number, compressedHeaderBytes: number, rawLength: number): boolean {
  return headerBytes - compressedHeaderBytes - 4 >= rawLength >> 8;
}
