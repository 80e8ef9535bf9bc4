// The secondary's history files, byte by byte (docs/HISTORY.md). Little-endian. Pure
// functions: test/unit/history-format.test.ts decodes the same bytes.
//
// A history segment (state/volumes/NAME/history.NNNNNNNN) is a 32-byte header, then
// entries. Each entry is a 40-byte head, followed for a Saved entry by the bytes it saved.
// A sealed segment's heads file (history.NNNNNNNN.heads) is a 32-byte header, then the
// segment's entry heads, back to back, as they are in the segment.
import { crc32c } from '../checksum/crc32c.js';
import { magicAndU32 } from '../versioning/format.js';

/**
 * 2: a point's seq is its record's plus its stream's base (streams.ts), so a release
 * that knows no streams must not read it. 1 (the previous release's) has only base 0:
 * its entries read the same.
 */
export const HISTORY_VERSION = 2;
/** For the version checks (docs/VERSIONING.md): a newer history is refused, not dropped as damaged. */
export const HISTORY_FORMAT = magicAndU32('history segment', 'OFFSHIST', HISTORY_VERSION, [1, HISTORY_VERSION]);
const MAGIC = Buffer.from('OFFSHIST', 'latin1');
export const HISTORY_HEADER_SIZE = 32;
export const HISTORY_ENTRY_HEAD_SIZE = 40;
export const HISTORY_FILE_PREFIX = 'history.';

export enum EntryKind {
  /** A restore point: `point` is its barrier's seq, `seq` the primary's time of it (ms). */
  Point = 1,
  /** Bytes of the replica as they were at restore point `point`, saved before record `seq` overwrote them; the bytes follow. */
  Saved = 2,
  /** The same, for bytes that were all zero: nothing follows. */
  SavedZero = 3,
}

export interface EntryHead {
  kind: EntryKind;
  /** Point: the barrier's seq. Saved: the restore point whose image held the bytes (the last one before the overwrite). */
  point: number;
  /** Point: the primary's time of the barrier (ms since the Unix epoch). Saved: the record that overwrote the bytes. */
  seq: number;
  /** Saved: the byte offset on the volume. Point: the group point's number when the barrier is one (docs/GROUPS.md), else 0. */
  offset: number;
  /** Saved: bytes of the volume (0 for a Point). */
  length: number;
  /** Saved: CRC32C of the bytes that follow (0 otherwise). */
  dataCrc: number;
}

export const HEADS_VERSION = 1;
/** For the version checks (docs/VERSIONING.md). */
export const HEADS_FORMAT = magicAndU32('history heads file', 'OFFSHHDS', HEADS_VERSION, [HEADS_VERSION]);
const HEADS_MAGIC = Buffer.from('OFFSHHDS', 'latin1');
export const HEADS_HEADER_SIZE = 32;

export function historyFileName(index: number): string {
  return `${HISTORY_FILE_PREFIX}${String(index).padStart(8, '0')}`;
}

/** The segment index a file name holds, or null when it is no history segment. */
export function historyFileIndex(name: string): number | null {
  const m = /^history\.(\d{8})$/.exec(name);
  return m ? Number(m[1]) : null;
}

export function headsFileName(index: number): string {
  return `${historyFileName(index)}.heads`;
}

/** The segment index a heads file's name holds, or null when it is none. */
export function headsFileIndex(name: string): number | null {
  const m = /^history\.(\d{8})\.heads$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** What a heads file's header says: its heads, and the segment's length they cover (the whole sealed segment). */
export interface HeadsHeader { count: number; segmentBytes: number; headsCrc: number }

/**
 * Heads header: magic "OFFSHHDS", u32 version, u32 count of heads, u64 bytes of the
 * segment they cover, u32 CRC32C of the heads, u32 CRC32C of bytes 0..28.
 */
export function encodeHeadsHeader(h: HeadsHeader): Buffer {
  const b = Buffer.alloc(HEADS_HEADER_SIZE);
  HEADS_MAGIC.copy(b, 0);
  b.writeUInt32LE(HEADS_VERSION, 8);
  b.writeUInt32LE(h.count, 12);
  b.writeBigUInt64LE(BigInt(h.segmentBytes), 16);
  b.writeUInt32LE(h.headsCrc >>> 0, 24);
  b.writeUInt32LE(crc32c(b.subarray(0, 28)), 28);
  return b;
}

export function decodeHeadsHeader(b: Buffer): { ok: true; header: HeadsHeader } | { ok: false; reason: string } {
  if (b.length < HEADS_HEADER_SIZE) return { ok: false, reason: 'short header' };
  if (!b.subarray(0, 8).equals(HEADS_MAGIC)) return { ok: false, reason: 'bad magic' };
  if (b.readUInt32LE(28) !== crc32c(b.subarray(0, 28))) return { ok: false, reason: 'header checksum' };
  if (b.readUInt32LE(8) !== HEADS_VERSION) return { ok: false, reason: `version ${b.readUInt32LE(8)}` };
  const segmentBytes = Number(b.readBigUInt64LE(16));
  if (!Number.isSafeInteger(segmentBytes)) return { ok: false, reason: 'value beyond 2^53' };
  return { ok: true, header: { count: b.readUInt32LE(12), segmentBytes, headsCrc: b.readUInt32LE(24) } };
}

/** Header: magic "OFFSHIST", u32 version, u32 reserved (0), u64 volume size, u32 reserved (0), u32 CRC32C of bytes 0..28. */
export function encodeHeader(volumeSize: number): Buffer {
  const b = Buffer.alloc(HISTORY_HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(HISTORY_VERSION, 8);
  b.writeBigUInt64LE(BigInt(volumeSize), 16);
  b.writeUInt32LE(crc32c(b.subarray(0, 28)), 28);
  return b;
}

/** The volume size a header names, or why it is no header this build reads. */
export function decodeHeader(b: Buffer): { ok: true; volumeSize: number } | { ok: false; reason: string } {
  if (b.length < HISTORY_HEADER_SIZE) return { ok: false, reason: 'short header' };
  if (!b.subarray(0, 8).equals(MAGIC)) return { ok: false, reason: 'bad magic' };
  if (b.readUInt32LE(28) !== crc32c(b.subarray(0, 28))) return { ok: false, reason: 'header checksum' };
  if (!HISTORY_FORMAT.reads.includes(b.readUInt32LE(8))) return { ok: false, reason: `version ${b.readUInt32LE(8)}` };
  return { ok: true, volumeSize: Number(b.readBigUInt64LE(16)) };
}

/**
 * Entry head: u8 kind, 3 bytes reserved (0), u32 length, u64 point, u64 seq, u64
 * offset, u32 CRC32C of the data, u32 CRC32C of bytes 0..36.
 */
export function encodeEntryHead(h: EntryHead): Buffer {
  const b = Buffer.alloc(HISTORY_ENTRY_HEAD_SIZE);
  b.writeUInt8(h.kind, 0);
  b.writeUInt32LE(h.length, 4);
  b.writeBigUInt64LE(BigInt(h.point), 8);
  b.writeBigUInt64LE(BigInt(h.seq), 16);
  b.writeBigUInt64LE(BigInt(h.offset), 24);
  b.writeUInt32LE(h.dataCrc >>> 0, 32);
  b.writeUInt32LE(crc32c(b.subarray(0, 36)), 36);
  return b;
}

/** An entry head from its 40 bytes, or why not (a torn or damaged entry ends what is readable). */
export function decodeEntryHead(b: Buffer, at = 0): { ok: true; head: EntryHead } | { ok: false; reason: string } {
  if (b.length - at < HISTORY_ENTRY_HEAD_SIZE) return { ok: false, reason: 'short head' };
  if (b.readUInt32LE(at + 36) !== crc32c(b.subarray(at, at + 36))) return { ok: false, reason: 'head checksum' };
  const kind = b.readUInt8(at) as EntryKind;
  if (kind !== EntryKind.Point && kind !== EntryKind.Saved && kind !== EntryKind.SavedZero) return { ok: false, reason: `kind ${kind}` };
  const u64 = (o: number): number => Number(b.readBigUInt64LE(at + o));
  const head = { kind, length: b.readUInt32LE(at + 4), point: u64(8), seq: u64(16), offset: u64(24), dataCrc: b.readUInt32LE(at + 32) };
  if ([head.point, head.seq, head.offset].some((v) => !Number.isSafeInteger(v))) return { ok: false, reason: 'value beyond 2^53' };
  if (kind === EntryKind.Point && head.length !== 0) return { ok: false, reason: 'a point with a length' };
  return { ok: true, head };
}

/** Bytes an entry takes in its segment, head included. */
export function entryBytes(h: Pick<EntryHead, 'kind' | 'length'>): number {
  return HISTORY_ENTRY_HEAD_SIZE + (h.kind === EntryKind.Saved ? h.length : 0);
}
