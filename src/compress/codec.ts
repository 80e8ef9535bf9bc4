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
import zstdBinding from 'zstd-napi/binding.js';

const { getFrameContentSize, findFrameCompressedSize } = zstdBinding;
import { RECORD_HEADER_SIZE, RecordKind, decodeRecordHeader, encodeRecordHeader, type JournalRecord } from '../journal/record.js';
import { FrameError, FrameType, MAX_FRAME_PAYLOAD, decodeVolumePayload, encodeFrame, encodeFrameParts, encodeVolumePayload } from '../link/frame.js';
import { decodeRecordsBody, recordsBody, recordsFrameInPlace, recordsPayload, type FrameRoom } from '../link/records-frame.js';
import { ROW, columnsToHeaders, headersToColumns } from './columns.js';
import type { Owned, OwnedBuffers } from '../memory/owned-buffers.js';
import { assert } from '../invariants/assert.js';

export { recordsBody };

export const CODEC_ZSTD = 1;
/** The headers compressed, the payloads raw: random or encrypted data in small writes. */
export const CODEC_ZSTD_HEADERS = 2;
const PACKED_HEAD = 8;
const ZERO = Buffer.alloc(1 << 20);
/** A Zeroes record's payload (none; never written into). */
const NO_PAYLOAD = Buffer.alloc(0);

export function isAllZero(b: Buffer): boolean {
  // (compare with ranges: no views made, for every record of every batch.)
  for (let at = 0; at < b.length; at += ZERO.length) {
    const end = Math.min(b.length, at + ZERO.length);
    if (ZERO.compare(b, at, end, 0, end - at) !== 0) return false;
  }
  return true;
}

/** A Write of zeros as a Zeroes record of the same range (same seq, epoch, flags, time). */
export function zeroWritesAsZeroes(records: JournalRecord[]): { records: JournalRecord[]; zeroBytes: number } {
  let zeroBytes = 0;
  const out = records.map((r) => {
    if (r.kind !== RecordKind.Write || r.payload.length === 0 || !isAllZero(r.payload)) return r;
    zeroBytes += r.payload.length;
    const zeroes: JournalRecord = { kind: RecordKind.Zeroes, flags: r.flags, seq: r.seq, epoch: r.epoch, offset: r.offset, length: r.length, time: r.time,
      payload: NO_PAYLOAD };
    return zeroes;
  });
  return { records: out, zeroBytes };
}

export function encodeRawRecordsFrame(volume: string, body: Buffer): Buffer[] {
  return encodeFrame(FrameType.Records, encodeVolumePayload(volume, body));
}

/**
 * A Records frame of these records, built in one buffer (no body copied into a second
 * one): in their journal read's room when they still lie there as read, no payload copied.
 */
export function encodeRawRecordsFrameOf(volume: string, records: JournalRecord[], room?: FrameRoom): Buffer[] {
  return (room && recordsFrameInPlace(room, volume, records)) ?? encodeFrame(FrameType.Records, recordsPayload(volume, records, room));
}

export function encodePackedRecordsFrame(volume: string, rawLength: number, level: number, compressed: Buffer): Buffer[] {
  const h = Buffer.alloc(PACKED_HEAD);
  h.writeUInt8(CODEC_ZSTD, 0);
  h.writeUInt8(level, 1);
  h.writeUInt32LE(rawLength, 4);
  return encodeFrameParts(FrameType.PackedRecords, [encodeVolumePayload(volume, h), compressed]);
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
    headers.push(encodeRecordHeader(r, payload, r.payloadCrc));
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

// A peer's zstd frame is never trusted for its size. zstd-napi's decompress() adds
// up the content sizes of every frame in the buffer and streams without bound past
// a frame that declares none: 16 KB of RLE blocks after a first frame of 2 KB are
// half a gigabyte. So a PackedRecords frame must hold exactly one zstd frame, with
// nothing after it, whose header declares the size the PackedRecords head declares;
// it is decompressed in one pass into a buffer of exactly that size (zstd stops with
// an error rather than write past it, and checks the frame ends where its header said),
// and that runs in a worker (CompressionPool.unzstd), not on the event loop.
const ZSTD_MAGIC = 0xfd2fb528;

/** Thrown for a zstd frame that is not the single, exactly-sized frame a PackedRecords frame must hold. */
export class UnzstdError extends Error {}

/**
 * The content size a zstd frame's header declares: O(1), reads the header only.
 * Refuses anything but a standard zstd frame (skippable and legacy frames included)
 * and, when `checksummed`, a frame without zstd's content checksum.
 */
export function zstdDeclaredSize(z: Buffer, checksummed: boolean): number {
  if (z.length < 5 || z.readUInt32LE(0) !== ZSTD_MAGIC) throw new UnzstdError('does not hold a zstd frame');
  // Byte 4 of a zstd frame is its Frame_Header_Descriptor; bit 2, Content_Checksum_flag.
  if (checksummed && (z[4]! & 4) === 0) throw new UnzstdError('has no content checksum');
  let size: number | null;
  try {
    size = getFrameContentSize(z);
  } catch {
    throw new UnzstdError('does not hold a zstd frame (its header is damaged)');
  }
  if (size === null) throw new UnzstdError('does not declare its content size');
  return size;
}

let dctx: InstanceType<typeof zstdBinding.DCtx> | null = null;

/**
 * Decompresses a zstd frame that must be exactly `z` and hold exactly `size` bytes
 * (its declared size, already checked against the PackedRecords head). Never
 * allocates more than `size`: the output buffer is made first and zstd's one-pass
 * decoder refuses to write past it. Runs in the pool's workers; the synchronous
 * decodePackedRecordsFrame (the simulation, tests) calls it in place.
 */
export function unzstdExact(z: Uint8Array, size: number, into?: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_FRAME_PAYLOAD) throw new UnzstdError(
    `declares ${size} bytes, over the ${MAX_FRAME_PAYLOAD}-byte limit`);
  // One frame, nothing after it: a second frame (a bomb) or trailing bytes are refused
  // here, by walking the block headers, before a byte is decompressed.
  let frameBytes: number;
  try {
    frameBytes = findFrameCompressedSize(z);
  } catch (e) {
    throw new UnzstdError(`does not decompress: its zstd frame is cut short or damaged (${(e as Error).message})`);
  }
  if (frameBytes !== z.length) throw new UnzstdError(`holds ${z.length - frameBytes} bytes after its zstd frame (one frame, nothing after it)`);
  // (A buffer of its own, never a slice of Node's pool: the worker hands it back by transfer.
  // Or the node's own buffer of exactly that size, which goes back the same way.)
  if (into && into.length !== size) throw new UnzstdError(`cannot unpack ${size} bytes into ${into.length}`);
  const out = into ?? new Uint8Array(size);
  let n: number;
  try {
    dctx ??= new zstdBinding.DCtx();
    n = dctx.decompress(out, z);
  } catch (e) {
    throw new UnzstdError(`does not decompress: ${(e as Error).message}`);
  }
  if (n !== size) throw new UnzstdError(`decompressed to ${n} bytes, not the ${size} declared`);
  return out;
}

/**
 * What a PackedRecords frame holds, checked as far as it can be without
 * decompressing (O(1) in its size, no allocation): the zstd frame to unpack and the
 * exact size it must unpack to. `packedRecords` finishes the decode.
 */
export interface PackedFrame {
  volume: string;
  codec: number;
  rawLength: number;
  /** The one zstd frame: the records (codec 1) or their header columns (codec 2). */
  zstd: Buffer;
  /** What it must decompress to, exactly. */
  unpackedSize: number;
  /** Codec 2: the payloads, raw. */
  payloads: Buffer;
}

export function parsePackedRecordsFrame(payload: Buffer): PackedFrame {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length < PACKED_HEAD) throw new FrameError(`PackedRecords frame for ${volume} is shorter than its ${PACKED_HEAD}-byte head`);
  const codec = rest.readUInt8(0);
  if (codec !== CODEC_ZSTD && codec !== CODEC_ZSTD_HEADERS) throw new FrameError(
    `PackedRecords frame for ${volume} uses codec ${codec}; this node knows 1 (zstd) and 2 (zstd headers)`);
  const rawLength = rest.readUInt32LE(4);
  if (rawLength > MAX_FRAME_PAYLOAD) throw new FrameError(
    `PackedRecords frame for ${volume} declares ${rawLength} bytes of records, over the ${MAX_FRAME_PAYLOAD}-byte limit`);
  const declared = (z: Buffer, checksummed: boolean): number => {
    try {
      return zstdDeclaredSize(z, checksummed);
    } catch (e) {
      throw new FrameError(`PackedRecords frame for ${volume}: ${codec === CODEC_ZSTD ? 'it' : 'its header columns'} ${(e as Error).message}`);
    }
  };
  if (codec === CODEC_ZSTD) {
    const zstd = rest.subarray(PACKED_HEAD);
    const size = declared(zstd, false);
    if (size !== rawLength) throw new FrameError(`PackedRecords frame for ${volume}: its zstd frame holds ${size} bytes, the frame declares ${rawLength}`);
    return { volume, codec, rawLength, zstd, unpackedSize: size, payloads: rest.subarray(rest.length) };
  }
  if (rest.length < PACKED_HEAD + 4) throw new FrameError(`PackedRecords frame for ${volume} is shorter than its ${PACKED_HEAD + 4}-byte head`);
  const hLength = rest.readUInt32LE(PACKED_HEAD);
  if (PACKED_HEAD + 4 + hLength > rest.length) throw new FrameError(`PackedRecords frame for ${volume}: its headers run past the frame`);
  const zstd = rest.subarray(PACKED_HEAD + 4, PACKED_HEAD + 4 + hLength);
  const payloads = rest.subarray(PACKED_HEAD + 4 + hLength);
  const size = declared(zstd, true);
  // n headers are n × 52 bytes of columns, and with the payloads they make the
  // declared length exactly: known before a byte is decompressed.
  if (size % ROW !== 0) throw new FrameError(`PackedRecords frame for ${volume}: ${size} bytes of header columns is not a whole number of records`);
  const headerBytes = (size / ROW) * RECORD_HEADER_SIZE;
  if (headerBytes + payloads.length !== rawLength) throw new FrameError(
    `PackedRecords frame for ${volume} holds ${headerBytes + payloads.length} bytes of records, the frame declares ${rawLength}`);
  return { volume, codec, rawLength, zstd, unpackedSize: size, payloads };
}

/**
 * The records of a parsed PackedRecords frame, given its zstd frame unpacked (by
 * unzstdExact). Where only the headers were packed, the records are put back together
 * in `into` (rawLength bytes), or in a new buffer.
 */
export function packedRecords(p: PackedFrame, unpacked: Uint8Array, into?: Buffer): { volume: string; records: JournalRecord[]; rawBytes: number } {
  const { volume, rawLength } = p;
  if (unpacked.length !== p.unpackedSize) throw new FrameError(
    `PackedRecords frame for ${volume} decompressed to ${unpacked.length} bytes, not the ${p.unpackedSize} declared`);
  const inner = Buffer.from(unpacked.buffer, unpacked.byteOffset, unpacked.byteLength);
  if (p.codec === CODEC_ZSTD) return { volume, records: decodeRecordsBody(volume, inner), rawBytes: rawLength };
  const headers = columnsToHeaders(inner);
  const payloads = p.payloads;
  // Header and payload back together, then checked as a Records frame's records are.
  assert(!into || into.length === rawLength, () => `records of ${rawLength} bytes put together in ${into!.length}`);
  const body = into ?? Buffer.allocUnsafe(rawLength);
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

function unpackError(volume: string, e: unknown): FrameError {
  return new FrameError(`PackedRecords frame for ${volume} ${(e as Error).message}`);
}

/**
 * A PackedRecords frame's records, decompressed on the calling thread (the
 * simulation and tests; the daemon uses decodePackedRecordsFrameOff). The declared
 * length is checked against the zstd frame's own before any memory is given to it: a
 * peer cannot make this side allocate more than MAX_FRAME_PAYLOAD.
 */
export function decodePackedRecordsFrame(payload: Buffer): { volume: string; records: JournalRecord[]; rawBytes: number } {
  return unpackPacked(parsePackedRecordsFrame(payload));
}

/** A parsed PackedRecords frame's records, decompressed on the calling thread (the simulation). */
export function unpackPacked(p: PackedFrame): { volume: string; records: JournalRecord[]; rawBytes: number } {
  let unpacked: Uint8Array;
  try {
    unpacked = unzstdExact(p.zstd, p.unpackedSize);
  } catch (e) {
    throw unpackError(p.volume, e);
  }
  return packedRecords(p, unpacked);
}

/**
 * The same, with the decompression in a worker of `pool` (CompressionPool.unzstdOwned)
 * and the records in the node's buffers: the event loop only reads headers and checks
 * CRCs. The records are views of `owned` (null: a frame of no records), which the caller
 * gives back once nothing reads them (the receive log wrote them). A frame refused is a
 * FrameError; a failure of the pool itself is passed on as it is.
 */
export async function decodePackedRecordsFrameOff(p: PackedFrame, pool: Unpacker, buffers: OwnedBuffers): Promise<OwnedRecords> {
  // (A frame of nothing, which this node never sends, is answered as the event loop would, with no buffer.)
  if (p.unpackedSize === 0) return { ...unpackPacked(p), owned: null };
  let unpacked: Owned;
  try {
    unpacked = await pool.unzstdOwned(p.zstd, p.unpackedSize, buffers);
  } catch (e) {
    // (Anything else is this node's: a worker that died, a pool closed.)
    throw e instanceof UnzstdError ? unpackError(p.volume, e) : e;
  }
  return recordsOfOwned(p, unpacked, buffers);
}

/**
 * decodePackedRecordsFrameOff on the calling thread (the simulation): the frame is
 * unpacked into the node's buffer here, and the records are the same views of it.
 */
export function unpackPackedOwned(p: PackedFrame, buffers: OwnedBuffers): OwnedRecords {
  if (p.unpackedSize === 0) return { ...unpackPacked(p), owned: null };
  const unpacked = buffers.take(p.unpackedSize);
  try {
    unzstdExact(p.zstd, p.unpackedSize, unpacked.bytes);
  } catch (e) {
    unpacked.give();
    throw unpackError(p.volume, e);
  }
  return recordsOfOwned(p, unpacked, buffers);
}

/** A packed frame's records, as views of the node's buffer `owned`. */
export type OwnedRecords = { volume: string; records: JournalRecord[]; rawBytes: number; owned: Owned | null };

/** The records of a frame unpacked into `unpacked`: there, or (only the headers were packed) in a buffer of their own, the headers' given back. */
function recordsOfOwned(p: PackedFrame, unpacked: Owned, buffers: OwnedBuffers): OwnedRecords {
  const owned = p.codec === CODEC_ZSTD ? unpacked : buffers.take(p.rawLength);
  try {
    const r = packedRecords(p, unpacked.bytes, owned === unpacked ? undefined : owned.bytes);
    if (owned !== unpacked) unpacked.give();
    return { ...r, owned };
  } catch (e) {
    if (owned !== unpacked) unpacked.give();
    owned.give();
    throw e;
  }
}

/** What decodePackedRecordsFrameOff needs of the pool. */
export interface Unpacker {
  unzstdOwned(z: Buffer, size: number, buffers: OwnedBuffers): Promise<Owned>;
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
