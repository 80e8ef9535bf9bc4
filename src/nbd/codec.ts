// Encoders and decoders for every NBD message Offsite speaks. Pure functions on
// Buffers, no I/O: the byte layouts are docs/NBD.md and test/unit/nbd-codec.test.ts.
import * as P from './protocol.js';

export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(P.NBDMAGIC, 0);
  b.writeBigUInt64BE(P.IHAVEOPT, 8);
  b.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
  return b;
}

export interface OptionHeader {
  magic: bigint;
  option: number;
  length: number;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

export function encodeOptionReply(option: number, type: number, data: Buffer = EMPTY): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeBigUInt64BE(P.OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply carries a human-readable message, as nbdkit does. */
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, Buffer.from(message.slice(0, 4096), 'utf8'));
}

export function encodeExportNameReply(size: bigint, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 10 + 124);
  b.writeBigUInt64BE(size, 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

export class DecodeError extends Error {}

/** Reads a u32-length-prefixed UTF-8 string at `at`; returns it and the next position. */
function readString(b: Buffer, at: number, what: string): [string, number] {
  if (at + 4 > b.length) throw new DecodeError(`${what}: missing length`);
  const n = b.readUInt32BE(at);
  if (n > 4096) throw new DecodeError(`${what}: ${n} bytes, longer than 4096`);
  if (at + 4 + n > b.length) throw new DecodeError(`${what}: length ${n} overruns the option`);
  const s = b.toString('utf8', at + 4, at + 4 + n);
  if (s.includes('\0')) throw new DecodeError(`${what}: contains NUL`);
  return [s, at + 4 + n];
}

export interface InfoRequest {
  name: string;
  infos: number[];
}

/** NBD_OPT_INFO and NBD_OPT_GO payload: u32 len, name, u16 count, count x u16. */
export function decodeInfoRequest(b: Buffer): InfoRequest {
  const [name, at] = readString(b, 0, 'export name');
  if (at + 2 > b.length) throw new DecodeError('missing information request count');
  const count = b.readUInt16BE(at);
  if (at + 2 + count * 2 !== b.length) {
    throw new DecodeError(`information request count ${count} does not match option length ${b.length}`);
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(b.readUInt16BE(at + 2 + i * 2));
  return { name, infos };
}

export function encodeInfoExport(size: bigint, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(size, 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function encodeInfoString(type: number, s: string): Buffer {
  const text = Buffer.from(s, 'utf8');
  const b = Buffer.alloc(2 + text.length);
  b.writeUInt16BE(type, 0);
  text.copy(b, 2);
  return b;
}

export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

/** NBD_REP_SERVER payload: u32 name length, name, description. */
export function encodeServerEntry(name: string, description: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description, 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/** LIST/SET_META_CONTEXT payload: u32 len, export name, u32 count, count x (u32 len, query). */
export function decodeMetaContextRequest(b: Buffer): MetaContextRequest {
  const [exportName, at0] = readString(b, 0, 'export name');
  if (at0 + 4 > b.length) throw new DecodeError('missing query count');
  const count = b.readUInt32BE(at0);
  let at = at0 + 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const [q, next] = readString(b, at, `query ${i}`);
    queries.push(q);
    at = next;
  }
  if (at !== b.length) throw new DecodeError(`${b.length - at} stray bytes after the queries`);
  return { exportName, queries };
}

export function encodeMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

export interface Request {
  magic: number;
  flags: number;
  type: number;
  handle: bigint;
  offset: bigint;
  length: number;
}

export function decodeRequest(b: Buffer, at = 0): Request {
  return {
    magic: b.readUInt32BE(at),
    flags: b.readUInt16BE(at + 4),
    type: b.readUInt16BE(at + 6),
    handle: b.readBigUInt64BE(at + 8),
    offset: b.readBigUInt64BE(at + 16),
    length: b.readUInt32BE(at + 24),
  };
}

export function encodeRequest(r: Omit<Request, 'magic'>): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(P.REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(r.offset, 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

/** Simple reply header (16 bytes) written into `b` at `at`. */
export function writeSimpleReply(b: Buffer, at: number, error: number, handle: bigint): void {
  b.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, at);
  b.writeUInt32BE(error, at + 4);
  b.writeBigUInt64BE(handle, at + 8);
}

export function encodeSimpleReply(error: number, handle: bigint): Buffer {
  const b = Buffer.allocUnsafe(16);
  writeSimpleReply(b, 0, error, handle);
  return b;
}

/** Structured reply chunk header (20 bytes) written into `b` at `at`. */
export function writeChunkHeader(
  b: Buffer, at: number, flags: number, type: number, handle: bigint, length: number,
): void {
  b.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, at);
  b.writeUInt16BE(flags, at + 4);
  b.writeUInt16BE(type, at + 6);
  b.writeBigUInt64BE(handle, at + 8);
  b.writeUInt32BE(length, at + 16);
}

export function encodeChunk(flags: number, type: number, handle: bigint, payload: Buffer = EMPTY): Buffer {
  const b = Buffer.allocUnsafe(20 + payload.length);
  writeChunkHeader(b, 0, flags, type, handle, payload.length);
  payload.copy(b, 20);
  return b;
}

export function encodeOffsetHole(flags: number, handle: bigint, offset: bigint, length: number): Buffer {
  const p = Buffer.allocUnsafe(12);
  p.writeBigUInt64BE(offset, 0);
  p.writeUInt32BE(length, 8);
  return encodeChunk(flags, P.NBD_REPLY_TYPE_OFFSET_HOLE, handle, p);
}

export interface ExtentDescriptor {
  length: number;
  flags: number;
}

export function encodeBlockStatus(
  flags: number, handle: bigint, contextId: number, extents: ExtentDescriptor[],
): Buffer {
  const p = Buffer.allocUnsafe(4 + 8 * extents.length);
  p.writeUInt32BE(contextId, 0);
  extents.forEach((e, i) => {
    p.writeUInt32BE(e.length, 4 + i * 8);
    p.writeUInt32BE(e.flags, 8 + i * 8);
  });
  return encodeChunk(flags, P.NBD_REPLY_TYPE_BLOCK_STATUS, handle, p);
}

export function encodeErrorChunk(handle: bigint, error: number, message: string): Buffer {
  const m = Buffer.from(message.slice(0, 4096), 'utf8');
  const p = Buffer.allocUnsafe(6 + m.length);
  p.writeUInt32BE(error, 0);
  p.writeUInt16BE(m.length, 4);
  m.copy(p, 6);
  return encodeChunk(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_ERROR, handle, p);
}

const EMPTY = Buffer.alloc(0);
