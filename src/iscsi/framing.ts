// Cuts the byte stream of a connection into PDUs. Chunks are kept as they arrived
// (src/nbd/byte-queue.ts): a PDU whose segments lie within one chunk is handed out as
// views of it, not copied. A data segment longer than we declared we receive is not
// buffered: the reader says so and skips it, so what one PDU can make us hold is
// bounded by MaxRecvDataSegmentLength.
import { ByteQueue } from '../nbd/byte-queue.js';
import { crc32c } from '../checksum/crc32c.js';
import { BHS_LENGTH, ahsLengthOf, dataLengthOf, padOf, type RawPdu } from './pdu.js';

export type Frame =
  | { kind: 'pdu'; pdu: RawPdu }
  /** The header digest did not match: the PDU's lengths cannot be trusted, the connection must close. */
  | { kind: 'header-digest'; bhs: Buffer }
  /** The data digest did not match: the PDU was read whole and may be rejected. */
  | { kind: 'data-digest'; pdu: RawPdu }
  /** The data segment is longer than `limit`: it is skipped unread, the BHS is kept for a Reject. */
  | { kind: 'too-long'; bhs: Buffer; length: number };

export class PduReader {
  private readonly queue = new ByteQueue();
  private bhs: Buffer | null = null;
  private skipping = 0;
  headerDigest = false;
  dataDigest = false;

  /** `maxData`: the data segment length accepted (our MaxRecvDataSegmentLength; may change after login). */
  constructor(public maxData: number) {}

  /** Bytes held, unparsed. */
  get buffered(): number {
    return this.queue.length;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** The next whole frame, or null until more bytes come. */
  next(): Frame | null {
    if (this.skipping > 0) {
      this.skipping -= this.queue.skip(this.skipping);
      if (this.skipping > 0) return null;
    }
    if (this.bhs === null) {
      if (this.queue.length < BHS_LENGTH) return null;
      // Copied: the BHS outlives the chunk (kept for Rejects and task records) and is small.
      this.bhs = Buffer.from(this.queue.take(BHS_LENGTH));
    }
    const bhs = this.bhs;
    const ahsLen = ahsLengthOf(bhs);
    const dataLen = dataLengthOf(bhs);
    const hd = this.headerDigest ? 4 : 0;
    const dataWire = dataLen === 0 ? 0 : dataLen + padOf(dataLen) + (this.dataDigest ? 4 : 0);
    if (dataLen > this.maxData) {
      if (this.queue.length < ahsLen + hd) return null;
      this.queue.skip(ahsLen + hd);
      this.bhs = null;
      this.skipping = dataWire;
      this.skipping -= this.queue.skip(this.skipping);
      return { kind: 'too-long', bhs, length: dataLen };
    }
    if (this.queue.length < ahsLen + hd + dataWire) return null;
    this.bhs = null;
    const ahs = ahsLen > 0 ? Buffer.from(this.queue.take(ahsLen)) : null;
    if (hd > 0) {
      const got = this.queue.take(4);
      const want = ahs ? digestOf(bhs, ahs) : digestOf(bhs);
      if (!got.equals(want)) return { kind: 'header-digest', bhs };
    }
    let data: Buffer = EMPTY;
    let digestOk = true;
    if (dataLen > 0) {
      data = this.queue.take(dataLen);
      const pad = padOf(dataLen);
      const padding = pad > 0 ? this.queue.take(pad) : EMPTY;
      if (this.dataDigest) {
        const got = this.queue.take(4);
        digestOk = got.equals(pad > 0 ? digestOf(data, padding) : digestOf(data));
      }
    }
    const pdu: RawPdu = { bhs, ahs, data };
    return digestOk ? { kind: 'pdu', pdu } : { kind: 'data-digest', pdu };
  }

  clear(): void {
    this.queue.clear();
    this.bhs = null;
    this.skipping = 0;
  }
}

const EMPTY = Buffer.alloc(0);

// --- digests and outgoing frames --------------------------------------------------

/** CRC32C over the pieces, as the 4 little-endian bytes iSCSI puts on the wire (RFC 7143 13.1). */
export function digestOf(...pieces: Buffer[]): Buffer {
  let crc = 0;
  for (const p of pieces) crc = crc32c(p, crc);
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32LE(crc >>> 0, 0);
  return out;
}

const PADS = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)];

/** The padding buffer for a data segment of this length. */
export function paddingFor(length: number): Buffer {
  return PADS[padOf(length)]!;
}

/**
 * The buffers of one outgoing PDU: BHS, header digest, data, padding, data digest
 * (digests only when negotiated), ready for a corked writev.
 */
export function framePdu(bhs: Buffer, data: Buffer | null, headerDigest: boolean, dataDigest: boolean): Buffer[] {
  const out: Buffer[] = [bhs];
  if (headerDigest) out.push(digestOf(bhs));
  if (data && data.length > 0) {
    out.push(data);
    const pad = paddingFor(data.length);
    if (pad.length > 0) out.push(pad);
    if (dataDigest) out.push(pad.length > 0 ? digestOf(data, pad) : digestOf(data));
  }
  return out;
}
