// Peer protocol frames (docs/PEER-PROTOCOL.md), version 1. Every frame carries
// a CRC32C of its header and of its payload, inside TLS: a damaged frame is
// rejected (and re-fetched by resuming), never applied.
//
//   0  4  magic "OFPL"
//   4  1  protocol version (the one Hello agreed; a Hello: the lowest its sender speaks)
//   5  1  type
//   6  2  flags (0; a Hello: the highest version its sender speaks, 0 if only byte 4's)
//   8  4  payload length (at most MAX_FRAME_PAYLOAD)
//  12  4  CRC32C of the payload
//  16  4  CRC32C of bytes 0..16
//  20  …  payload
import type { Span } from '../sync/region-hashes.js';
import { crc32c } from '../checksum/crc32c.js';
import type { Owned, OwnedBuffers } from '../memory/owned-buffers.js';
import { MALLOC_MMAP_THRESHOLD_BYTES } from '../limits/limits.js';

export const FRAME_MAGIC = Buffer.from('OFPL', 'latin1');
export const PROTOCOL_VERSION = 1;

/** The protocol versions a node speaks, lowest and highest (docs/VERSIONING.md). */
export interface ProtocolRange {
  min: number;
  max: number;
}

/**
 * What this build speaks. Hello settles on the highest version both sides speak and
 * the frames after it carry that version, so peers a release apart interoperate (the
 * older side is never asked to upgrade at the same moment). Every frame layout is the
 * same in every version spoken so far; a version that changes one decodes it by
 * `Frame.version`.
 */
export const PROTOCOL_RANGE: ProtocolRange = { min: 1, max: 4 };

/** "1", or "1..2". */
export function formatRange(r: ProtocolRange): string {
  return r.min === r.max ? `${r.min}` : `${r.min}..${r.max}`;
}

export const FRAME_HEADER_SIZE = 20;
/** Large enough for a batch of records (32 MiB writes plus headers); the bound of every receive buffer. */
export const MAX_FRAME_PAYLOAD = 40 * 1024 * 1024;

export enum FrameType {
  /** JSON: who I am and which volumes I hold (both sides, first frame). */
  Hello = 1,
  /** JSON: the handshake is refused, with a reason for the operator; then close. */
  Refuse = 2,
  /** A batch of journal records for one volume: u16 name length, name, then records as stored. */
  Records = 3,
  /** u16 name length, name, u64 seq durable in the receive log. */
  Ack = 4,
  /**
   * u64 sender's clock, ms; optionally u64 the peer's clock from the last heartbeat
   * heard from it and u32 ms held since (so the peer measures the round trip).
   */
  Heartbeat = 5,
  /** u16 name length, name, u64 first seq of a resync round: records before it are superseded (docs/RESYNC.md). */
  Resync = 6,
  /**
   * u16 name length, name, u32 region size, u64 first region, u32 count[, u64 after-seq]: hash these regions of your replica
   * (once it has applied through after-seq).
   */
  HashRequest = 7,
  /**
   * u16 name length, name, u32 region size, u64 first region, then count × the 32-byte hash of each region:
   * SHA-256, or BLAKE3 on a link at version 4 or later (src/sync/region-hashes.ts).
   */
  HashReply = 8,
  /**
   * u16 name length, name, u64 resume-after seq, u8 held (1: stop, 0: go on): the
   * receiver's log is full while a checkpoint holds its replica. On held=1 the sender
   * stops shipping the volume; on held=0 it resumes right after the given seq.
   */
  Hold = 9,
  /**
   * A batch of journal records compressed (docs/PEER-PROTOCOL.md): u16 name length, name,
   * u8 codec (1: zstd, 2: zstd headers), u8 level, u16 0, u32 decompressed length, then
   * one zstd frame holding the records exactly as a Records frame carries them (codec 2:
   * their headers as columns, then the payloads raw).
   */
  PackedRecords = 10,
  /**
   * Version 2. u16 name length, name, u64 offset, u64 length: where your replica holds
   * holes in this byte range (a first sync skips regions that are holes on both sides).
   */
  MapRequest = 11,
  /**
   * Version 2. u16 name length, name, u64 offset, u64 covered, u32 count, then count ×
   * (u64 offset, u64 length) holes in order, inside [offset, offset + covered): the
   * map is exact up to offset + covered (at most the length asked).
   */
  MapReply = 12,
  /**
   * Version 3. JSON: one volume's Hello again, on a link that is up (docs/PEER-PROTOCOL.md,
   * "A volume's Hello again"): {"volume", "reply", "described"?, "unavailable"?}. Its
   * sender has let go its pairing of the volume on this link; what it sent of the volume
   * before it belongs to that pairing.
   */
  VolumeHello = 13,
}

/** The protocol version that brought a frame type (absent: 1); a frame is refused on a link that agreed on an older one. */
const FRAME_SINCE: ReadonlyMap<FrameType, number> = new Map([[FrameType.MapRequest, 2], [FrameType.MapReply, 2], [FrameType.VolumeHello, 3]]);

/**
 * The frame types that begin with a volume name (u16 length, name). Each names a
 * volume of one pair: the receiver takes it only from the peer that volume is paired
 * with (checked in src/link/peer-session.ts, the pairing from the config).
 */
const VOLUME_FRAMES: ReadonlySet<FrameType> = new Set([
  FrameType.Records, FrameType.Ack, FrameType.Resync, FrameType.HashRequest, FrameType.HashReply, FrameType.Hold, FrameType.PackedRecords,
  FrameType.MapRequest, FrameType.MapReply,
]);

/** The volume a frame names (null: a frame of the link, not of a volume). Reads the name only. */
export function frameVolume(f: Frame): string | null {
  return VOLUME_FRAMES.has(f.type) ? decodeVolumePayload(f.payload).volume : null;
}

export interface Frame {
  type: FrameType;
  flags: number;
  payload: Buffer;
  /** The protocol version in its header (set by FrameDecoder; absent: PROTOCOL_VERSION). */
  version?: number;
  /**
   * The node's buffer the frame was gathered into (a large Records or PackedRecords frame
   * from a decoder given the pool; absent: a view of what the socket gave, or a copy of
   * its own): whoever consumes the frame gives it back once nothing reads its bytes.
   */
  owned?: Owned;
}

/**
 * Hello and Refuse keep one layout in every protocol version, and a decoder takes
 * them at any version: two nodes with no version in common can still say so.
 */
const HANDSHAKE_FRAMES: ReadonlySet<number> = new Set([FrameType.Hello, FrameType.Refuse]);

export function encodeFrame(type: FrameType, payload: Buffer, flags = 0, version = PROTOCOL_VERSION): Buffer[] {
  return [frameHeader(type, payload.length, payload.length > 0 ? crc32c(payload) : 0, flags, version), payload];
}

/** A frame's header for a payload of `length` bytes whose CRC32C is `crc`. */
function frameHeader(type: FrameType, length: number, crc: number, flags: number, version: number): Buffer {
  if (length > MAX_FRAME_PAYLOAD) throw new Error(`frame payload of ${length} bytes is over the ${MAX_FRAME_PAYLOAD}-byte limit`);
  const h = Buffer.alloc(FRAME_HEADER_SIZE);
  FRAME_MAGIC.copy(h, 0);
  h.writeUInt8(version, 4);
  h.writeUInt8(type, 5);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(length, 8);
  h.writeUInt32LE(crc, 12);
  h.writeUInt32LE(crc32c(h.subarray(0, 16)), 16);
  return h;
}

/**
 * A frame whose payload is `parts` back to back, without joining them (the CRC runs
 * across them): a packed batch's head and the bytes zstd returned go to the socket as
 * they are, not copied into a fresh buffer of their sum (docs/LINK.md, "Memory").
 * On the wire, byte for byte what encodeFrame makes of their concatenation.
 */
export function encodeFrameParts(type: FrameType, parts: Buffer[], flags = 0): Buffer[] {
  let length = 0;
  let crc = 0;
  for (const p of parts) {
    length += p.length;
    if (p.length > 0) crc = crc32c(p, crc);
  }
  return [frameHeader(type, length, crc, flags, PROTOCOL_VERSION), ...parts];
}

/**
 * A frame as encodeFrame made it, sent on a link that agreed on `version`: the
 * header's version byte (and its CRC) rewritten in place when it differs. Hello and
 * Refuse are left as made. At version 1 nothing changes, byte for byte.
 */
export function atVersion(parts: Buffer[], version: number): Buffer[] {
  const h = parts[0]!;
  if (h.readUInt8(4) === version || HANDSHAKE_FRAMES.has(h.readUInt8(5))) return parts;
  h.writeUInt8(version, 4);
  h.writeUInt32LE(crc32c(h.subarray(0, 16)), 16);
  return parts;
}

export class FrameError extends Error {}

/**
 * Incremental decoder: feed bytes as they arrive, take whole frames out. Holds at
 * most one frame's bytes; anything malformed is a FrameError that names the fault
 * (the caller closes the link and says why).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  private agreed: number | null = null;

  /**
   * `speaks`: the versions taken until Hello settles one (settle()); Hello and Refuse at any.
   * `buffers`: the node's pool, from which record frames of `ownedFrom` bytes or more that
   * came in several chunks are gathered (Frame.owned), rather than into a new buffer each
   * (smaller ones come from malloc's arenas, which reuse memory anyway).
   */
  constructor(private readonly speaks: ProtocolRange = PROTOCOL_RANGE, private readonly buffers?: OwnedBuffers,
    private readonly ownedFrom = MALLOC_MMAP_THRESHOLD_BYTES) {}

  /** Hello agreed on `version`: every later frame must carry it. */
  settle(version: number): void {
    this.agreed = version;
  }

  push(b: Buffer): void {
    this.chunks.push(b);
    this.buffered += b.length;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The next whole frame, or null if more bytes are needed. */
  next(): Frame | null {
    if (this.buffered < FRAME_HEADER_SIZE) return null;
    const head = this.peek(FRAME_HEADER_SIZE);
    if (!head.subarray(0, 4).equals(FRAME_MAGIC)) throw new FrameError('peer sent bytes that are not an Offsite frame (bad magic)');
    if (crc32c(head.subarray(0, 16)) !== head.readUInt32LE(16)) throw new FrameError('frame header checksum mismatch');
    const version = head.readUInt8(4);
    const type = head.readUInt8(5);
    if (!HANDSHAKE_FRAMES.has(type)) {
      if (this.agreed !== null && version !== this.agreed) {
        throw new FrameError(`peer sent a frame of protocol version ${version} on a link that agreed on version ${this.agreed}`);
      }
      if (version < this.speaks.min || version > this.speaks.max) {
        throw new FrameError(`peer speaks protocol version ${version}, this node speaks ${formatRange(this.speaks)}`);
      }
    }
    if (!(type in FrameType)) throw new FrameError(`unknown frame type ${type}`);
    const since = FRAME_SINCE.get(type) ?? 1;
    if (version < since) throw new FrameError(`peer sent a ${FrameType[type]} frame, which needs protocol version ${since}, on a link at version ${version}`);
    const length = head.readUInt32LE(8);
    if (length > MAX_FRAME_PAYLOAD) throw new FrameError(`frame of ${length} bytes is over the ${MAX_FRAME_PAYLOAD}-byte limit`);
    if (this.buffered < FRAME_HEADER_SIZE + length) return null;
    const n = FRAME_HEADER_SIZE + length;
    const owned = this.buffers && (type === FrameType.Records || type === FrameType.PackedRecords) && n >= this.ownedFrom &&
      this.chunks[0]!.length < n ? this.buffers.take(n) : undefined;
    const all = owned ? this.gather(owned) : this.take(n);
    const payload = all.subarray(FRAME_HEADER_SIZE);
    if ((length > 0 ? crc32c(payload) : 0) !== head.readUInt32LE(12)) {
      owned?.give();
      throw new FrameError('frame payload checksum mismatch');
    }
    return { type, flags: head.readUInt16LE(6), payload, version, ...(owned ? { owned } : {}) };
  }

  /** The first `owned.bytes.length` bytes buffered, copied into `owned` (the chunks after them stay as they came). */
  private gather(owned: Owned): Buffer {
    const into = owned.bytes;
    let at = 0;
    let k = 0;
    while (at < into.length) {
      const c = this.chunks[k]!;
      const m = Math.min(c.length, into.length - at);
      c.copy(into, at, 0, m);
      at += m;
      if (m < c.length) {
        this.chunks[k] = c.subarray(m);
        break;
      }
      k++;
    }
    this.chunks = this.chunks.slice(k);
    this.buffered -= into.length;
    return into;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    // (The header across chunks: the chunks that hold it are joined, not all that is buffered.)
    let k = 0;
    let held = 0;
    while (held < n) held += this.chunks[k++]!.length;
    const joined = Buffer.concat(this.chunks.slice(0, k), held);
    this.chunks = [joined, ...this.chunks.slice(k)];
    return joined.subarray(0, n);
  }

  /**
   * The first `n` bytes buffered. Only the chunks that hold them are joined (one copy, or
   * none when one chunk holds them all); the chunks after them stay as they came: joining
   * everything buffered at each frame copied the frames behind it again and again, a
   * quadratic cost while frames queue for memory (src/memory/intake.ts).
   */
  private take(n: number): Buffer {
    let k = 0;
    let held = 0;
    while (held < n) held += this.chunks[k++]!.length;
    const joined = k === 1 ? this.chunks[0]! : Buffer.concat(this.chunks.slice(0, k), held);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest, ...this.chunks.slice(k)] : this.chunks.slice(k);
    this.buffered -= n;
    return out;
  }
}

/** u16 length-prefixed volume name, then the rest. */
export function encodeVolumePayload(volume: string, rest: Buffer): Buffer {
  const name = Buffer.from(volume, 'utf8');
  if (name.length > 255) throw new Error('volume name too long');
  const b = Buffer.allocUnsafe(2 + name.length + rest.length);
  b.writeUInt16LE(name.length, 0);
  name.copy(b, 2);
  rest.copy(b, 2 + name.length);
  return b;
}

export function decodeVolumePayload(b: Buffer): { volume: string; rest: Buffer } {
  if (b.length < 2) throw new FrameError('payload too short for a volume name');
  const n = b.readUInt16LE(0);
  if (2 + n > b.length) throw new FrameError('volume name runs past the payload');
  return { volume: b.toString('utf8', 2, 2 + n), rest: b.subarray(2 + n) };
}

export interface Heartbeat {
  clock: number;
  /** The peer's clock from its last heartbeat, and how long ago (ms) it arrived. */
  echo?: { clock: number; heldMs: number };
}

export function encodeHeartbeat(h: Heartbeat): Buffer[] {
  const b = Buffer.alloc(h.echo ? 20 : 8);
  b.writeBigUInt64LE(BigInt(h.clock), 0);
  if (h.echo) {
    b.writeBigUInt64LE(BigInt(h.echo.clock), 8);
    b.writeUInt32LE(Math.min(0xffffffff, Math.max(0, Math.round(h.echo.heldMs))), 16);
  }
  return encodeFrame(FrameType.Heartbeat, b);
}

export function decodeHeartbeat(p: Buffer): Heartbeat {
  if (p.length !== 8 && p.length !== 20) throw new FrameError('heartbeat payload is not 8 or 20 bytes');
  const clock = Number(p.readBigUInt64LE(0));
  return p.length === 20 ? { clock, echo: { clock: Number(p.readBigUInt64LE(8)), heldMs: p.readUInt32LE(16) } } : { clock };
}

export function encodeAck(volume: string, seq: number): Buffer[] {
  const v = Buffer.alloc(8);
  v.writeBigUInt64LE(BigInt(seq), 0);
  return encodeFrame(FrameType.Ack, encodeVolumePayload(volume, v));
}

export function decodeAck(payload: Buffer): { volume: string; seq: number } {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length !== 8) throw new FrameError('ack payload is not 8 bytes');
  return { volume, seq: Number(rest.readBigUInt64LE(0)) };
}

export function encodeResync(volume: string, startSeq: number): Buffer[] {
  const v = Buffer.alloc(8);
  v.writeBigUInt64LE(BigInt(startSeq), 0);
  return encodeFrame(FrameType.Resync, encodeVolumePayload(volume, v));
}

export function decodeResync(payload: Buffer): { volume: string; startSeq: number } {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length !== 8) throw new FrameError('resync payload is not 8 bytes');
  const startSeq = Number(rest.readBigUInt64LE(0));
  if (startSeq < 1) throw new FrameError('resync round must start at record 1 or later');
  return { volume, startSeq };
}

export function encodeHold(volume: string, resumeAfter: number, held: boolean): Buffer[] {
  const v = Buffer.alloc(9);
  v.writeBigUInt64LE(BigInt(resumeAfter), 0);
  v.writeUInt8(held ? 1 : 0, 8);
  return encodeFrame(FrameType.Hold, encodeVolumePayload(volume, v));
}

export function decodeHold(payload: Buffer): { volume: string; resumeAfter: number; held: boolean } {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length !== 9) throw new FrameError('hold payload is not 9 bytes');
  const flag = rest.readUInt8(8);
  if (flag > 1) throw new FrameError(`hold flag ${flag} (0 or 1)`);
  return { volume, resumeAfter: Number(rest.readBigUInt64LE(0)), held: flag === 1 };
}

/** The most regions one HashRequest may ask for, and the largest region it may name. */
export const MAX_HASH_REGIONS = 256;
export const MAX_HASH_REGION_SIZE = 4 * 1024 * 1024;

export interface HashRange {
  volume: string;
  regionSize: number;
  first: number;
  count: number;
}

/** An online verify pins the comparison: hash once the replica has applied through `afterSeq`. */
export interface HashRequest extends HashRange {
  afterSeq?: number;
}

export function encodeHashRequest(r: HashRequest): Buffer[] {
  const pinned = (r.afterSeq ?? 0) > 0;
  const v = Buffer.alloc(pinned ? 24 : 16);
  v.writeUInt32LE(r.regionSize, 0);
  v.writeBigUInt64LE(BigInt(r.first), 4);
  v.writeUInt32LE(r.count, 12);
  if (pinned) v.writeBigUInt64LE(BigInt(r.afterSeq!), 16);
  return encodeFrame(FrameType.HashRequest, encodeVolumePayload(r.volume, v));
}

export function decodeHashRequest(payload: Buffer): HashRequest {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length !== 16 && rest.length !== 24) throw new FrameError('hash request payload is not 16 or 24 bytes');
  const r: HashRequest = { volume, regionSize: rest.readUInt32LE(0), first: Number(rest.readBigUInt64LE(4)), count: rest.readUInt32LE(12) };
  if (rest.length === 24) r.afterSeq = Number(rest.readBigUInt64LE(16));
  if (r.count < 1 || r.count > MAX_HASH_REGIONS) throw new FrameError(`hash request for ${r.count} regions (1..${MAX_HASH_REGIONS})`);
  if (r.regionSize < 4096 || r.regionSize > MAX_HASH_REGION_SIZE || (r.regionSize & (r.regionSize - 1)) !== 0) {
    throw new FrameError(`hash request region size ${r.regionSize}`);
  }
  return r;
}

export function encodeHashReply(r: Omit<HashRange, 'count'>, hashes: Buffer[]): Buffer[] {
  const v = Buffer.alloc(12);
  v.writeUInt32LE(r.regionSize, 0);
  v.writeBigUInt64LE(BigInt(r.first), 4);
  return encodeFrame(FrameType.HashReply, encodeVolumePayload(r.volume, Buffer.concat([v, ...hashes])));
}

export function decodeHashReply(payload: Buffer): HashRange & { hashes: Buffer[] } {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length < 12 || (rest.length - 12) % 32 !== 0) throw new FrameError('hash reply payload is not a whole number of hashes');
  const count = (rest.length - 12) / 32;
  if (count < 1 || count > MAX_HASH_REGIONS) throw new FrameError(`hash reply with ${count} hashes`);
  const hashes: Buffer[] = [];
  for (let i = 0; i < count; i++) hashes.push(Buffer.from(rest.subarray(12 + i * 32, 12 + (i + 1) * 32)));
  return { volume, regionSize: rest.readUInt32LE(0), first: Number(rest.readBigUInt64LE(4)), count, hashes };
}

/** The most holes one MapReply lists (16 bytes each); the map stops there and says how far it got. */
export const MAX_MAP_HOLES = 4096;

export interface MapRequest {
  volume: string;
  offset: number;
  length: number;
}

export function encodeMapRequest(r: MapRequest): Buffer[] {
  const v = Buffer.alloc(16);
  v.writeBigUInt64LE(BigInt(r.offset), 0);
  v.writeBigUInt64LE(BigInt(r.length), 8);
  return encodeFrame(FrameType.MapRequest, encodeVolumePayload(r.volume, v));
}

export function decodeMapRequest(payload: Buffer): MapRequest {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length !== 16) throw new FrameError('map request payload is not 16 bytes');
  const offset = rest.readBigUInt64LE(0);
  const length = rest.readBigUInt64LE(8);
  if (length === 0n || offset + length > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`map request for ${length} bytes at ${offset}`);
  return { volume, offset: Number(offset), length: Number(length) };
}

export interface MapReply {
  volume: string;
  offset: number;
  /** The map is exact from offset to offset + covered. */
  covered: number;
  /** Holes in order, apart, inside the covered range. */
  holes: Span[];
}

export function encodeMapReply(r: MapReply): Buffer[] {
  const v = Buffer.alloc(20 + r.holes.length * 16);
  v.writeBigUInt64LE(BigInt(r.offset), 0);
  v.writeBigUInt64LE(BigInt(r.covered), 8);
  v.writeUInt32LE(r.holes.length, 16);
  r.holes.forEach((h, i) => {
    v.writeBigUInt64LE(BigInt(h.offset), 20 + i * 16);
    v.writeBigUInt64LE(BigInt(h.length), 28 + i * 16);
  });
  return encodeFrame(FrameType.MapReply, encodeVolumePayload(r.volume, v));
}

export function decodeMapReply(payload: Buffer): MapReply {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length < 20) throw new FrameError('map reply payload is shorter than its head');
  const offset = rest.readBigUInt64LE(0);
  const covered = rest.readBigUInt64LE(8);
  const count = rest.readUInt32LE(16);
  if (count > MAX_MAP_HOLES) throw new FrameError(`map reply with ${count} holes (at most ${MAX_MAP_HOLES})`);
  if (rest.length !== 20 + count * 16) throw new FrameError(`map reply of ${count} holes is ${rest.length} bytes, not ${20 + count * 16}`);
  const end = offset + covered;
  if (end > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`map reply covering ${covered} bytes at ${offset}`);
  const holes: Span[] = [];
  let at = offset;
  for (let i = 0; i < count; i++) {
    const o = rest.readBigUInt64LE(20 + i * 16);
    const n = rest.readBigUInt64LE(28 + i * 16);
    if (o < at || n === 0n || o + n > end) throw new FrameError(`map reply hole ${i} (${n} bytes at ${o}) is out of order, empty or outside the map`);
    holes.push({ offset: Number(o), length: Number(n) });
    at = o + n;
  }
  return { volume, offset: Number(offset), covered: Number(covered), holes };
}
