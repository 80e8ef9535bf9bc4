// Records frames: u16 volume-name length, name, then journal records exactly as
// stored (header + payload, each with its CRC32C). A record that fails its checksum
// on arrival is never applied: the link closes and the primary resends.
import { RECORD_HEADER_SIZE, decodeRecordHeader, payloadMatches, recordOf, writeRecordHeader, type JournalRecord } from '../journal/record.js';
import { FRAME_HEADER_SIZE, FrameError, FrameType, decodeVolumePayload, encodeFrame, encodeVolumePayload } from './frame.js';
import { assert } from '../invariants/assert.js';
import { frameBuffers, type Owned, type OwnedBuffers } from '../memory/owned-buffers.js';

export function encodeRecordsFrame(volume: string, records: JournalRecord[], room?: FrameRoom): Buffer[] {
  return (room && recordsFrameInPlace(room, volume, records)) ?? encodeFrame(FrameType.Records, recordsPayload(volume, records, room));
}

/** Bytes a frame room keeps before the records read into it: a frame header and the longest volume name. */
export const FRAME_ROOM_BYTES = FRAME_HEADER_SIZE + 2 + 255;

/**
 * A buffer a shipper takes for one journal read (src/journal/segment.ts `Scratch`), with
 * FRAME_ROOM_BYTES before where the read went, and used for nothing else: a Records
 * frame of what was read can be built around the records where they lie. The buffer is
 * the node's (src/memory/owned-buffers.ts): the room is released once nothing reads it
 * any more, the frame made from it written to the socket or dropped unsent, or the
 * batch not sent at all, and the next batch is read into it.
 */
export class FrameRoom {
  /** The owned buffer, once the read asked for it. */
  private owned: Owned | null = null;
  /** A second one, for a frame built anew (`spare`). */
  private extra: Owned | null = null;
  private released = false;
  /** A frame was built in it: a second one would rewrite the first, maybe still queued for the socket. */
  framed = false;

  constructor(private readonly pool: OwnedBuffers = frameBuffers) {}

  /**
   * The journal read's buffer (the `Scratch` it calls; again when the batch's first
   * record did not fit what the first read brought: nothing was taken from that, so the
   * same memory is read into again where it holds the record, else it goes back and a
   * larger one is taken).
   */
  readonly scratch = (length: number): Buffer => {
    assert(!this.released && !this.framed, 'a frame room serves one journal read');
    if (this.owned !== null && this.owned.bytes.length >= FRAME_ROOM_BYTES + length) {
      return this.owned.bytes.subarray(FRAME_ROOM_BYTES, FRAME_ROOM_BYTES + length);
    }
    // (Let go before the take, so a take that throws leaves no handle given back twice at the release.)
    const old = this.owned;
    this.owned = null;
    old?.give();
    this.owned = this.pool.take(FRAME_ROOM_BYTES + length);
    return this.owned.bytes.subarray(FRAME_ROOM_BYTES);
  };

  /** The room's bytes (null: no read went into it), while it is not released. */
  get bytes(): Buffer | null {
    assert(this.live, 'a frame room read after its release');
    return this.owned?.bytes ?? null;
  }

  /** Not released: its bytes, and every view of them, are still what was read and framed. */
  get live(): boolean {
    return !this.released;
  }

  /** Nothing reads the room any more (its frame written or dropped, or none sent): the buffer goes back. Once only. */
  release(): void {
    assert(!this.released, 'a frame room released twice');
    this.released = true;
    this.owned?.give();
    this.extra?.give();
  }

  /**
   * A buffer of `length` bytes from the same pool, for a frame built anew when the records
   * do not lie in the room as read (recordsPayload), given back with the room: a fresh
   * buffer of megabytes per frame cost an mmap and a page fault per 4 KiB (a first
   * sync's batches crossing a segment: docs/RESYNC.md, "The first sync's own CPU").
   * Undefined when one was lent already (its frame may still be queued): a buffer of the
   * frame's own, then.
   */
  spare(length: number): Buffer | undefined {
    assert(!this.released, 'a frame room asked for a spare buffer after its release');
    if (this.extra !== null) return undefined;
    this.extra = this.pool.take(length);
    return this.extra.bytes;
  }
}

/**
 * The Records frame of `records` built in their room, with no payload copied: each record
 * with a payload must still be the view the read cut, and each header (written again
 * here, from the record) lies just before it, so the records follow one another in the
 * room as the journal stored them. null when they do not (the batch crossed a segment,
 * a write went as Zeroes, coalescing left some out), when a frame was built in this room
 * already, or when the frame would be under half the room (the batch ended well before
 * what was read: the frame would keep the rest alive, which no memory lease counts):
 * the caller builds the frame anew.
 */
export function recordsFrameInPlace(room: FrameRoom, volume: string, records: JournalRecord[]): Buffer[] | null {
  const b = room.bytes;
  if (!b || records.length === 0 || room.framed) return null;
  const name = Buffer.from(volume, 'utf8');
  const start = FRAME_ROOM_BYTES - 2 - name.length;
  if (start < FRAME_HEADER_SIZE) return null;
  let at = FRAME_ROOM_BYTES;
  for (const r of records) {
    if (r.payload.length > 0 && (r.payload.buffer !== b.buffer || r.payload.byteOffset !== b.byteOffset + at + RECORD_HEADER_SIZE)) return null;
    at += RECORD_HEADER_SIZE + r.payload.length;
    if (at > b.length) return null;
  }
  if (2 * (at - start + FRAME_HEADER_SIZE) < b.length) return null;
  room.framed = true;
  // Every payload is where its record is written: the headers go in, from the records.
  at = FRAME_ROOM_BYTES;
  for (const r of records) {
    writeRecordHeader(b, at, r, r.payload.length > 0 ? r.payload : null, r.payloadCrc);
    at += RECORD_HEADER_SIZE + r.payload.length;
  }
  b.writeUInt16LE(name.length, start);
  name.copy(b, start + 2);
  const h = encodeFrame(FrameType.Records, b.subarray(start, at))[0]!;
  h.copy(b, start - FRAME_HEADER_SIZE);
  return [b.subarray(start - FRAME_HEADER_SIZE, at)];
}

/**
 * A Records frame's payload: the volume name, then the records, built in one buffer
 * (each payload copied once, each header written in place, the payload CRC taken from
 * the record when its reader checked it).
 */
export function recordsPayload(volume: string, records: JournalRecord[], room?: FrameRoom): Buffer {
  const head = encodeVolumePayload(volume, EMPTY_BODY);
  return recordsInto(records, head, room?.spare(head.length + recordsBodyLength(records)));
}

/** Records as a Records frame carries them after the volume name: header + payload each (in `into`, exactly their length, or a new buffer). */
export function recordsBody(records: JournalRecord[], into?: Buffer): Buffer {
  return recordsInto(records, EMPTY_BODY, into);
}

/** The bytes recordsBody makes of `records`. */
export function recordsBodyLength(records: JournalRecord[]): number {
  let n = 0;
  for (const r of records) n += RECORD_HEADER_SIZE + r.payload.length;
  return n;
}

const EMPTY_BODY = Buffer.alloc(0);

function recordsInto(records: JournalRecord[], head: Buffer, into?: Buffer): Buffer {
  const n = head.length + recordsBodyLength(records);
  assert(!into || into.length === n, () => `records of ${n} bytes built in ${into!.length}`);
  const b = into ?? Buffer.allocUnsafe(n);
  head.copy(b, 0);
  let at = head.length;
  for (const r of records) {
    const payload = r.payload.length > 0 ? r.payload : null;
    writeRecordHeader(b, at, r, payload, r.payloadCrc);
    at += RECORD_HEADER_SIZE;
    if (payload) at += payload.copy(b, at);
  }
  return b;
}

export function decodeRecordsFrame(payload: Buffer): { volume: string; records: JournalRecord[] } {
  const { volume, rest } = decodeVolumePayload(payload);
  return { volume, records: decodeRecordsBody(volume, rest) };
}

/** The records of a Records frame after its volume name (also what a PackedRecords frame decompresses to): their payloads are views of `rest`. */
export function decodeRecordsBody(volume: string, rest: Buffer): JournalRecord[] {
  const records: JournalRecord[] = [];
  let at = 0;
  while (at < rest.length) {
    const h = decodeRecordHeader(rest, at);
    if (!h.ok) throw new FrameError(`record ${records.length + 1} of a Records frame for ${volume}: ${h.reason}`);
    const p = rest.subarray(at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + h.payloadLength);
    if (p.length !== h.payloadLength) throw new FrameError(`record ${h.header.seq} for ${volume} runs past its frame`);
    if (!payloadMatches(p, h.payloadCrc)) throw new FrameError(`record ${h.header.seq} for ${volume} failed its payload checksum`);
    // (Views of the frame, not copies: the frame's memory lease covers them until the
    // receive log has written them, src/memory/intake.ts, and nothing writes into a frame.)
    records.push(recordOf(h.header, p.length > 0 ? p : EMPTY_BODY, h.payloadCrc));
    at += RECORD_HEADER_SIZE + h.payloadLength;
  }
  return records;
}
