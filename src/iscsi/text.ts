// Text keys (RFC 7143 section 6): `key=value` pairs, each ended by a NUL, in the data
// segment of Login and Text PDUs, possibly continued over several PDUs (C bit).
// Bounded: a key name at most 63 characters, a value at most 255 (8192 for the few
// keys the RFC lets be longer), the whole exchange at most ISCSI_MAX_TEXT_BYTES.
import { ISCSI_MAX_TEXT_BYTES } from '../limits/limits.js';

/** RFC 7143 6.1: "key-name ... a maximum length of 63 bytes". */
export const MAX_KEY_NAME = 63;
/** RFC 7143 6.1: a value is at most 255 bytes unless the key says otherwise. */
export const MAX_VALUE = 255;
/** The keys whose values may reach 8192 bytes (CHAP challenges and responses in hex or base64, X- keys). */
export const MAX_LONG_VALUE = 8192;
const LONG_KEYS = new Set(['CHAP_C', 'CHAP_R', 'TargetAlias', 'InitiatorAlias']);

export type TextPair = readonly [key: string, value: string];

export class TextError extends Error {}

/** Parses `key=value\0...`; throws TextError for a malformed or oversized pair. */
export function parseText(data: Buffer): TextPair[] {
  const out: TextPair[] = [];
  let start = 0;
  // Some initiators pad the segment with NULs beyond the last pair: empty entries are skipped.
  while (start < data.length) {
    let end = data.indexOf(0, start);
    if (end < 0) end = data.length; // the last pair without its NUL: accepted (RFC 7143 6.1 "SHOULD")
    if (end > start) out.push(parsePair(data.toString('utf8', start, end)));
    start = end + 1;
  }
  return out;
}

function parsePair(s: string): TextPair {
  const eq = s.indexOf('=');
  if (eq <= 0) throw new TextError(`a text key without '=' (${clip(s)})`);
  const key = s.slice(0, eq);
  const value = s.slice(eq + 1);
  if (key.length > MAX_KEY_NAME) throw new TextError(`key name longer than ${MAX_KEY_NAME} bytes (${clip(key)})`);
  if (!/^[A-Za-z0-9.\-+@_#]+$/.test(key)) throw new TextError(`key name with characters outside a-z, A-Z, 0-9, . - + @ _ # (${clip(key)})`);
  const max = LONG_KEYS.has(key) || key.startsWith('X-') || key.startsWith('X#') ? MAX_LONG_VALUE : MAX_VALUE;
  if (Buffer.byteLength(value) > max) throw new TextError(`value of ${key} longer than ${max} bytes`);
  return [key, value];
}

export function encodeText(pairs: readonly TextPair[]): Buffer {
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/**
 * Accumulates the data segments of one exchange across C-bit continuations, under a
 * byte bound. A pair may be split between two PDUs: only the whole is parsed.
 */
export class TextAccumulator {
  private parts: Buffer[] = [];
  private length = 0;

  constructor(private readonly limit = ISCSI_MAX_TEXT_BYTES) {}

  /** Adds one PDU's data; false when the exchange would pass the bound. */
  add(data: Buffer): boolean {
    if (this.length + data.length > this.limit) return false;
    if (data.length > 0) this.parts.push(Buffer.from(data));
    this.length += data.length;
    return true;
  }

  /** The pairs of everything added, and starts over. */
  finish(): TextPair[] {
    const all = Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    return parseText(all);
  }

  /** Drops what was added (an exchange abandoned or refused). */
  reset(): void {
    this.parts = [];
    this.length = 0;
  }

  get bytes(): number {
    return this.length;
  }
}

/**
 * Our answer text cut into segments of at most `max` bytes (the peer's
 * MaxRecvDataSegmentLength); all but the last go with the C bit.
 */
export function splitText(text: Buffer, max: number): Buffer[] {
  if (text.length <= max) return [text];
  const out: Buffer[] = [];
  for (let off = 0; off < text.length; off += max) out.push(text.subarray(off, Math.min(text.length, off + max)));
  return out;
}
