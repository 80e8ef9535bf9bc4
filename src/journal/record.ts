// Journal records and segment headers, byte by byte (docs/JOURNAL.md). Little-endian.
// Pure functions: the same bytes are decoded in test/unit/journal-record.test.ts.
import { createHash } from 'node:crypto';
import { crc32c } from '../checksum/crc32c.js';
import { magicAndU32 } from '../versioning/format.js';

/** Record headers (in segments and on the link). */
export const FORMAT_VERSION = 1;
/**
 * Segment headers. Version 2 names the volume the segment belongs to (bytes 40..56);
 * version 1 segments, written before, are still read (they name no volume).
 */
export const SEGMENT_FORMAT_VERSION = 2;
/** The segment header versions this build reads. */
const SEGMENT_VERSIONS_READ = [1, 2];
/** For the version checks (docs/VERSIONING.md): a newer segment is refused, not dropped as damaged. */
export const SEGMENT_FILE_FORMAT = magicAndU32('journal segment', 'OFFSJSEG', SEGMENT_FORMAT_VERSION, SEGMENT_VERSIONS_READ);
export const VOLUME_ID_SIZE = 16;
export const RECORD_MAGIC = 0x524a464f; // "OFJR" read as little-endian u32
export const RECORD_HEADER_SIZE = 56;
export const SEGMENT_MAGIC = Buffer.from('OFFSJSEG', 'latin1');
export const SEGMENT_HEADER_SIZE = 64;

export enum RecordKind {
  Write = 1,
  Zeroes = 2,
  Trim = 3,
  Barrier = 4,
  /**
   * On the link and in a receive log only: a record of a coalesced unit whose bytes a
   * later record of the unit covers. No payload; applying it does nothing. `offset`
   * holds the seq of the barrier the unit ends at: the replica is not brought to any
   * barrier before it (docs/PEER-PROTOCOL.md).
   */
  Skip = 5,
}

export const FLAG_FUA = 1;
/** A resync record: the content of dirty regions read from the volume, not a host write. */
export const FLAG_RESYNC = 2;
/** On a barrier: the resync round is complete; the secondary may expose the image here. */
export const FLAG_ROUND_END = 4;
/**
 * On a barrier: a group point (docs/GROUPS.md), made on every member of a consistency
 * group in one turn of the primary's event loop. The barrier's offset field (0 on a
 * plain barrier) holds the group point's number, the same on every member. A receiver
 * that does not know the flag sees a plain barrier.
 */
export const FLAG_GROUP_POINT = 8;

/** The group point a record is (its number), or null when it is none. */
export function groupPointOf(h: Pick<RecordHeader, 'kind' | 'flags' | 'offset'>): number | null {
  return h.kind === RecordKind.Barrier && (h.flags & FLAG_GROUP_POINT) !== 0 ? h.offset : null;
}

export interface RecordHeader {
  kind: RecordKind;
  flags: number;
  /** Position in the journal, one more per record, never reused. u64 on disk. */
  seq: number;
  /** The host flush epoch this record belongs to; a Barrier closes its epoch. */
  epoch: number;
  /** Byte offset on the volume (0 for a barrier). */
  offset: number;
  /** Bytes of the volume affected (0 for a barrier). */
  length: number;
  /** Milliseconds since the Unix epoch when the host's request arrived. */
  time: number;
}

export interface JournalRecord extends RecordHeader {
  /** The written bytes for Write; empty otherwise. */
  payload: Buffer;
  /**
   * The payload's CRC32C, when the payload was just checked against it (read from a
   * journal, or decoded from a frame): whoever encodes the record again (a frame, a
   * receive log) takes it rather than reading the payload once more. Absent: computed.
   */
  payloadCrc?: number;
}

/**
 * A record from a decoded header and its payload (`payloadCrc`: as checked; kept only
 * with a payload, as JournalRecord.payloadCrc says), built as
 * one literal. A spread of the header (`{ ...h, payload }`) took V8's slow path: 3.4 µs
 * and about 1 KiB of garbage a record, on every frame received and every journal read
 * (2026-12-07).
 */
export function recordOf(h: RecordHeader, payload: Buffer, payloadCrc?: number): JournalRecord {
  return payload.length > 0 && payloadCrc !== undefined
    ? { kind: h.kind, flags: h.flags, seq: h.seq, epoch: h.epoch, offset: h.offset, length: h.length, time: h.time, payload, payloadCrc }
    : { kind: h.kind, flags: h.flags, seq: h.seq, epoch: h.epoch, offset: h.offset, length: h.length, time: h.time, payload };
}

export function recordSize(kind: RecordKind, length: number): number {
  return RECORD_HEADER_SIZE + (kind === RecordKind.Write ? length : 0);
}

/**
 * The 56-byte header of a record; the payload goes right after it. `payloadCrc`: the
 * payload's CRC32C when the caller has just checked it (JournalRecord.payloadCrc).
 */
export function encodeRecordHeader(h: RecordHeader, payload: Buffer | null, payloadCrc?: number): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
  writeRecordHeader(b, 0, h, payload, payloadCrc);
  return b;
}

/** encodeRecordHeader into `b` at `at` (a frame being built: no buffer of its own). */
export function writeRecordHeader(b: Buffer, at: number, h: RecordHeader, payload: Buffer | null, payloadCrc?: number): void {
  const payloadLength = h.kind === RecordKind.Write ? h.length : 0;
  if (payloadLength !== (payload?.length ?? 0)) throw new Error('payload length does not match the record');
  b.writeUInt32LE(RECORD_MAGIC, at);
  b.writeUInt8(FORMAT_VERSION, at + 4);
  b.writeUInt8(h.kind, at + 5);
  b.writeUInt16LE(h.flags, at + 6);
  writeU64(b, at + 8, h.seq);
  writeU64(b, at + 16, h.epoch);
  writeU64(b, at + 24, h.offset);
  b.writeUInt32LE(h.length, at + 32);
  b.writeUInt32LE(payloadLength, at + 36);
  writeU64(b, at + 40, h.time);
  b.writeUInt32LE(payload && payload.length > 0 ? payloadCrc ?? crc32c(payload) : 0, at + 48);
  b.writeUInt32LE(crc32c(b.subarray(at, at + 52)), at + 52);
}

const TWO_32 = 0x1_0000_0000;

/**
 * A u64 field (little-endian) from a number: two u32 halves, no BigInt (every record
 * header has four; a BigInt each was a measurable part of the write path). Values
 * are whole and below 2^53 (seq, epoch, offset, time).
 */
function writeU64(b: Buffer, at: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`record field ${v} is not a whole number from 0 to 2^53`);
  b.writeUInt32LE(v % TWO_32, at);
  b.writeUInt32LE(Math.floor(v / TWO_32), at + 4);
}

/** A u64 field as a number; NaN past 2^53 - 1 (the caller refuses it). */
function readU64(b: Buffer, at: number): number {
  const high = b.readUInt32LE(at + 4);
  return high > 0x1f_ffff ? Number.NaN : high * TWO_32 + b.readUInt32LE(at);
}

export type HeaderCheck =
  | { ok: true; header: RecordHeader; payloadLength: number; payloadCrc: number }
  | { ok: false; reason: string };

/** Checks and decodes a record header. Never throws on bad bytes. */
export function decodeRecordHeader(b: Buffer, at = 0): HeaderCheck {
  if (b.length - at < RECORD_HEADER_SIZE) return { ok: false, reason: 'truncated header' };
  if (b.readUInt32LE(at) !== RECORD_MAGIC) return { ok: false, reason: 'no record magic' };
  if (crc32c(b.subarray(at, at + 52)) !== b.readUInt32LE(at + 52)) return { ok: false, reason: 'header checksum mismatch' };
  const version = b.readUInt8(at + 4);
  if (version !== FORMAT_VERSION) return { ok: false, reason: `record format version ${version}, this build reads ${FORMAT_VERSION}` };
  const kind = b.readUInt8(at + 5);
  if (kind < RecordKind.Write || kind > RecordKind.Skip) return { ok: false, reason: `unknown record kind ${kind}` };
  const length = b.readUInt32LE(at + 32);
  const payloadLength = b.readUInt32LE(at + 36);
  if (payloadLength !== (kind === RecordKind.Write ? length : 0)) return { ok: false, reason: 'payload length does not match the kind' };
  const seq = readU64(b, at + 8);
  const epoch = readU64(b, at + 16);
  const offset = readU64(b, at + 24);
  const time = readU64(b, at + 40);
  if (Number.isNaN(seq) || Number.isNaN(epoch) || Number.isNaN(offset) || Number.isNaN(time)) return { ok: false, reason: 'value beyond 2^53' };
  const header: RecordHeader = { kind, flags: b.readUInt16LE(at + 6), seq, epoch, offset, length, time };
  return { ok: true, header, payloadLength, payloadCrc: b.readUInt32LE(at + 48) };
}

export function payloadMatches(payload: Buffer, crc: number): boolean {
  return payload.length === 0 ? crc === 0 : crc32c(payload) === crc;
}

export interface SegmentHeader {
  /** Seq of the first record this segment holds (or will hold). */
  baseSeq: number;
  /** The epoch open when the segment was started: numbering survives an empty journal. */
  baseEpoch: number;
  created: number;
  /**
   * The volume the segment belongs to (`volumeId(uuid)`, 16 bytes). Null when the
   * segment names none: a version 1 segment, or one written while the volume had no
   * identity yet (a secondary's receive log before its first link), stored as zeros.
   */
  volume: Buffer | null;
}

/** As decoded: also the header's format version. */
export interface DecodedSegmentHeader extends SegmentHeader {
  version: number;
}

const ZERO_ID = Buffer.alloc(VOLUME_ID_SIZE);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A volume's identity as a segment header holds it: its UUID (identity.json) as its
 * 16 bytes; null for none (''). A uuid that is not in the canonical form (only a
 * peer that is not this software could send one) is held as the first 16 bytes of
 * its SHA-256, so that every uuid still names one volume.
 */
export function volumeId(uuid: string): Buffer | null {
  if (uuid === '') return null;
  if (UUID.test(uuid)) return Buffer.from(uuid.replace(/-/g, ''), 'hex');
  return createHash('sha256').update(uuid, 'utf8').digest().subarray(0, VOLUME_ID_SIZE);
}

/** A volume id as an operator reads it: the UUID form. */
export function formatVolumeId(id: Buffer): string {
  const h = id.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Always writes the current version (2). */
export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_SIZE);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeUInt32LE(SEGMENT_FORMAT_VERSION, 8);
  b.writeUInt32LE(SEGMENT_HEADER_SIZE, 12);
  b.writeBigUInt64LE(BigInt(h.baseSeq), 16);
  b.writeBigUInt64LE(BigInt(h.created), 24);
  b.writeBigUInt64LE(BigInt(h.baseEpoch), 32);
  if (h.volume) {
    if (h.volume.length !== VOLUME_ID_SIZE) throw new Error(`a volume id is ${VOLUME_ID_SIZE} bytes`);
    h.volume.copy(b, 40);
  }
  b.writeUInt32LE(crc32c(b.subarray(0, 60)), 60);
  return b;
}

/** Reads versions 1 and 2 (a new release reads what the previous one wrote). */
export function decodeSegmentHeader(b: Buffer): DecodedSegmentHeader | string {
  if (b.length < SEGMENT_HEADER_SIZE) return 'segment shorter than its header';
  if (!b.subarray(0, 8).equals(SEGMENT_MAGIC)) return 'not a journal segment (bad magic)';
  if (crc32c(b.subarray(0, 60)) !== b.readUInt32LE(60)) return 'segment header checksum mismatch';
  const version = b.readUInt32LE(8);
  if (!SEGMENT_VERSIONS_READ.includes(version)) return `segment format version ${version}, this build reads ${SEGMENT_VERSIONS_READ.join(' and ')}`;
  const id = b.subarray(40, 40 + VOLUME_ID_SIZE);
  return {
    version,
    baseSeq: Number(b.readBigUInt64LE(16)),
    created: Number(b.readBigUInt64LE(24)),
    baseEpoch: Number(b.readBigUInt64LE(32)),
    // Version 1 kept these bytes reserved (zero): it names no volume.
    volume: version >= 2 && !id.equals(ZERO_ID) ? Buffer.from(id) : null,
  };
}
