// A segment file of a journal (or receive log), as the journal holds it open: named by
// its first record's seq, freed whole once every record in it is released; and reading
// records from segments, streamed from disk (the backlog is never held in memory).
import type { StoreFile } from '../store/store.js';
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, decodeRecordHeader, payloadMatches, recordOf, type JournalRecord, type RecordHeader } from './record.js';
import { JOURNAL_HEADER_CHUNK_BYTES, SEGMENT_MARK_BYTES } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

export const SEGMENT_NAME = /^(\d{20})\.seg$/;
export const segmentName = (baseSeq: number): string => `${String(baseSeq).padStart(20, '0')}.seg`;
export const EMPTY = Buffer.alloc(0);

export interface Segment {
  name: string;
  baseSeq: number;
  /** Last record's seq; baseSeq - 1 while empty. */
  lastSeq: number;
  file: StoreFile;
  /** Bytes appended since this segment's last sync. */
  unsynced: boolean;
  /** Bytes the segment holds once queued writes land (what capacity counts). */
  reserved: number;
  /** Reads in progress: a removed segment's file is closed only when none are. */
  readers: number;
  removed: boolean;
  /** Where the last batch read from this segment ended: the next record's seq and byte (a hint, checked before use). */
  cursor?: { seq: number; pos: number; lastSize: number } | undefined;
  /** Where records lie, one every SEGMENT_MARK_BYTES or so (markRecord): hints, checked before use. */
  marks?: SegmentMarks | undefined;
}

/**
 * A sparse index of a segment: the seq and byte of a record about every
 * SEGMENT_MARK_BYTES, in order, taken as records are queued (append-queue.ts) and as
 * reads walk over them. A read of a record the cursor does not point at starts from the
 * last mark before it rather than walking the segment's headers from its start: before
 * these, a coalescing plan far behind (headers read a batch at a time from ever further
 * into a segment) walked each segment from its start for every batch, and a backlog of
 * 4 KiB writes drained at about 7 MB/s on loopback, the event loop busy reading headers.
 * At most segmentSize / SEGMENT_MARK_BYTES marks a segment (256 for 64 MiB).
 */
export interface SegmentMarks {
  seqs: number[];
  positions: number[];
}

/**
 * Record `seq` lies at byte `pos` of `seg`: kept as a mark if it lies SEGMENT_MARK_BYTES
 * or more from the marks on either side of it (an append's at the end; a read's may fall
 * between marks, as when a start's first append marked the tail before a read walked it).
 */
export function markRecord(seg: Segment, seq: number, pos: number): void {
  const m = seg.marks;
  if (m === undefined) {
    seg.marks = { seqs: [seq], positions: [pos] };
    return;
  }
  const n = m.seqs.length;
  if (seq > m.seqs[n - 1]!) {
    if (pos >= m.positions[n - 1]! + SEGMENT_MARK_BYTES) {
      m.seqs.push(seq);
      m.positions.push(pos);
    }
    return;
  }
  // (The first mark after it: k.)
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (m.seqs[mid]! < seq) lo = mid + 1;
    else hi = mid;
  }
  const k = lo;
  if (m.seqs[k] === seq || pos + SEGMENT_MARK_BYTES > m.positions[k]!) return;
  if (k > 0 && pos < m.positions[k - 1]! + SEGMENT_MARK_BYTES) return;
  m.seqs.splice(k, 0, seq);
  m.positions.splice(k, 0, pos);
}

/** The last mark at or before record `seq` (null: none, walk from the segment's start). */
export function markBefore(seg: Segment, seq: number): { seq: number; pos: number } | null {
  const m = seg.marks;
  if (m === undefined || m.seqs.length === 0 || m.seqs[0]! > seq) return null;
  let lo = 0;
  let hi = m.seqs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (m.seqs[mid]! <= seq) lo = mid;
    else hi = mid - 1;
  }
  return { seq: m.seqs[lo]!, pos: m.positions[lo]! };
}

/**
 * Where the walk's first read goes: a buffer the caller reuses (read into where it fits),
 * or one the caller makes for it, given the read's length (a shipper's frame buffer:
 * src/link/records-frame.ts). Either way the payloads taken from that read are views of it.
 * A made one may be asked for a second time, larger, when the batch's first record does
 * not fit the first: nothing was taken from the first, which the caller may reuse.
 */
export type Scratch = Buffer | ((length: number) => Buffer);

/** A record header as read without its payload: the bytes it takes in the journal (header and payload). */
export type RecordHeaderRead = RecordHeader & { size: number };

/**
 * Records from `fromSeq` in order, up to about `maxBytes` (at least one record) and
 * not past `limitSeq`, from these segments (`released`: for the message when the
 * first is gone). The batch is read in as few reads as it takes (one, unless it
 * crosses a segment or a record is larger than what is left of the batch), into one
 * buffer: the payloads are views of it, checked against their CRC as they are cut
 * out. A read starts where the last read of the segment ended when it asks for the
 * record after it (the shipper's), not by walking the segment's headers from its start.
 * Always consecutive records from `fromSeq`: a release that drops a segment under the
 * read ends the batch there (fewer records, or none).
 */
export function readRecords(
  all: Segment[], fromSeq: number, maxBytes: number, limitSeq: number, released: number, scratch?: Scratch,
): Promise<JournalRecord[]> {
  return walkRecords(all, fromSeq, maxBytes, limitSeq, released, true,
    (h, payload, _size, crc) => recordOf(h, payload, crc), scratch);
}

/**
 * The headers of the records `readRecords` would return, and their sizes, without
 * reading their payloads (coalescing plans a unit over the backlog ahead from them;
 * the payloads are read, and checked, when their batch is).
 */
export function readRecordHeaders(all: Segment[], fromSeq: number, maxBytes: number, limitSeq: number, released: number): Promise<RecordHeaderRead[]> {
  return walkRecords(all, fromSeq, maxBytes, limitSeq, released, false,
    (h, _p, size) => ({ kind: h.kind, flags: h.flags, seq: h.seq, epoch: h.epoch, offset: h.offset, length: h.length, time: h.time, size }));
}

async function walkRecords<T>(all: Segment[], fromSeq: number, maxBytes: number, limitSeq: number, released: number, payloads: boolean,
  take: (h: RecordHeader, payload: Buffer, size: number, payloadCrc: number) => T, scratch?: Scratch): Promise<T[]> {
  const out: T[] = [];
  // The caller's buffer, for one read of the walk at most (the payloads taken are views of
  // it: a second read into it would overwrite them); the others get their own.
  let spare = scratch;
  /**
   * Read beyond the batch's bytes into a made buffer: the record that takes a batch past
   * `maxBytes` still lies in it when it is small, or ends a batch of large records a
   * few headers over (4 records of 1 MiB are 4 MiB and 4 headers), rather than be left out.
   */
  const slack = typeof scratch === 'function' ? JOURNAL_HEADER_CHUNK_BYTES : 0;
  /** The memory of the caller's buffer once a read went into it. */
  let mine = typeof scratch === 'function' ? null : scratch?.buffer ?? null;
  /** `batch`: a read of the batch's records (not of headers walked over): the caller's made buffer goes to such a read only. */
  const readChunk = (seg: Segment, pos: number, length: number, batch = true): Promise<Buffer> => {
    if (typeof spare === 'function' && batch) {
      const into = spare(length);
      assert(into.length >= length, () => `a read of ${length} bytes was given a buffer of ${into.length}`);
      spare = undefined;
      mine = into.buffer;
      return readSegment(seg, pos, length, into);
    }
    if (spare && typeof spare !== 'function' && length <= spare.length) {
      const into = spare;
      spare = undefined;
      return readSegment(seg, pos, length, into);
    }
    return readSegment(seg, pos, length);
  };
  if (fromSeq > limitSeq) return out;
  const segIndex = all.findIndex((s) => s.baseSeq <= fromSeq && fromSeq <= s.lastSeq);
  if (segIndex < 0) throw new Error(`journal no longer holds record ${fromSeq} (released up to ${released})`);
  let bytes = 0;
  // A snapshot: releases may drop segments while this read awaits the disk.
  const segments = all.slice(segIndex);
  for (const seg of segments) {
    if (bytes >= maxBytes) break;
    const end = Math.min(seg.file.size(), seg.reserved);
    // Where the last read of this segment ended, if that is the record asked for (checked below).
    const cursor = seg.cursor !== undefined && seg.cursor.seq === fromSeq && bytes === 0 && seg.cursor.pos < end ? seg.cursor : null;
    // Else the last mark before it (checked below too), in the segment that holds it.
    const mark = cursor === null && bytes === 0 ? markBefore(seg, fromSeq) : null;
    const start = cursor ?? (mark !== null && mark.pos < end ? mark : null);
    let pos = start ? start.pos : SEGMENT_HEADER_SIZE;
    /** The seq the record at `pos` must have (a cursor's or a mark's), until checked. */
    let expect = start ? start.seq : -1;
    // (At the cursor, the first read is the batch's, its size hinted; from a mark, headers
    // are read first, as from the segment's start: the first record's size is known before
    // the batch's read.)
    let trusting = cursor !== null;
    let chunk: Buffer = EMPTY;
    let chunkAt = 0;
    let nextSeq = -1;
    let past = false;
    let lastSize = 0;
    // Records taken from the chunk in hand: their payloads are views of it. A chunk read
    // for a whole batch that ended early (at limitSeq, or a record too large) would stay
    // alive, all of it, as long as any of them does, while the memory budget counts
    // only what was taken: those few payloads are copied out instead.
    let pending: Array<{ h: RecordHeader; payload: Buffer; size: number; crc: number }> = [];
    let pendingBytes = 0;
    const settle = (): void => {
      // (Not from the caller's buffer: it is kept whatever is taken from it.)
      const copy = chunk.length > JOURNAL_HEADER_CHUNK_BYTES && pendingBytes < chunk.length / 2 && chunk.buffer !== mine;
      for (const x of pending) out.push(take(x.h, copy && x.payload.length > 0 ? Buffer.from(x.payload) : x.payload, x.size, x.crc));
      pending = [];
      pendingBytes = 0;
    };
    while (pos < end && bytes < maxBytes && !seg.removed) {
      if (pos < chunkAt || pos + RECORD_HEADER_SIZE > chunkAt + chunk.length) {
        settle();
        // With payloads, from the first record taken (or the cursor): what is left of the batch, at once.
        // Headers alone (or records before fromSeq, walked over): a chunk of them while
        // records are small; after a record larger than that, the next header alone (no
        // megabytes read, and let go, for 56 bytes).
        const batch = payloads && (nextSeq > 0 || trusting);
        // (The batch's first read holds at least a record as large as the last one read:
        // a backlog of large writes is read once, not a short read and then the record.)
        const hint = cursor && bytes === 0 ? cursor.lastSize : 0;
        const want = batch ? Math.max(JOURNAL_HEADER_CHUNK_BYTES, maxBytes - bytes + RECORD_HEADER_SIZE + slack, hint)
          : lastSize > JOURNAL_HEADER_CHUNK_BYTES / 4 ? RECORD_HEADER_SIZE : JOURNAL_HEADER_CHUNK_BYTES;
        chunk = await readChunk(seg, pos, Math.min(want, end - pos), batch);
        chunkAt = pos;
        if (seg.removed) break; // released meanwhile: nobody needs it any more
      }
      const h = decodeRecordHeader(chunk, pos - chunkAt);
      if (expect >= 0) {
        const seq = expect;
        expect = -1;
        trusting = false;
        if (!h.ok || h.header.seq !== seq) {
          // (The segment changed under the cursor or mark: walk it from its start.)
          seg.cursor = undefined;
          seg.marks = undefined;
          pos = SEGMENT_HEADER_SIZE;
          continue;
        }
      }
      if (!h.ok) throw new Error(`journal segment ${seg.name} at byte ${pos}: ${h.reason}`);
      markRecord(seg, h.header.seq, pos);
      const size = RECORD_HEADER_SIZE + h.payloadLength;
      if (h.header.seq > limitSeq) {
        past = true;
        break;
      }
      if (h.header.seq >= fromSeq) {
        // (A first read the hint made larger holds more than the batch: it still ends about
        // at maxBytes, a record past it at most, as when the read was the batch's size.)
        if (payloads && nextSeq > 0 && typeof scratch === 'function' && bytes + size > maxBytes + RECORD_HEADER_SIZE + slack) {
          past = true;
          break;
        }
        let payload: Buffer = EMPTY;
        if (payloads && nextSeq < 0 && typeof spare === 'function') {
          // The first record of the batch, found by walking headers: the batch is read from
          // here into the caller's buffer, so its records lie there one after another.
          settle();
          chunk = await readChunk(seg, pos, Math.min(Math.max(JOURNAL_HEADER_CHUNK_BYTES, maxBytes + RECORD_HEADER_SIZE + slack, size), end - pos));
          chunkAt = pos;
          if (seg.removed) break;
        }
        if (payloads && h.payloadLength > 0) {
          if (pos + size > chunkAt + chunk.length) {
            if (nextSeq > 0 && typeof scratch === 'function' && chunk.buffer === mine) {
              // The caller's made buffer holds the batch so far: the batch ends before this
              // record rather than leave it in a buffer of its own (the next batch begins with it).
              past = true;
              break;
            }
            // A record larger than what is left of the chunk: read from its start. When it
            // is the batch's first and the chunk was the caller's made buffer, nothing was
            // taken from that: the caller makes one that holds the record (its first is let
            // go), so the batch still lies in a buffer of the caller's (a shipper's frame,
            // built in place, from its pool) rather than in one made here for the collector.
            if (nextSeq < 0 && typeof scratch === 'function' && chunk.buffer === mine && pending.length === 0) spare = scratch;
            settle();
            chunk = await readChunk(seg, pos, Math.min(Math.max(size, maxBytes - bytes), end - pos));
            chunkAt = pos;
            if (seg.removed) break; // released meanwhile: nobody needs it any more
          }
          payload = chunk.subarray(pos - chunkAt + RECORD_HEADER_SIZE, pos - chunkAt + size);
          if (!payloadMatches(payload, h.payloadCrc)) {
            throw new Error(`journal segment ${seg.name} at byte ${pos}: record ${h.header.seq} payload checksum mismatch`);
          }
        }
        pending.push({ h: h.header, payload, size, crc: h.payloadCrc });
        pendingBytes += size;
        bytes += size;
        nextSeq = h.header.seq + 1;
      }
      pos += size;
      lastSize = size;
    }
    settle();
    if (nextSeq > 0 && payloads) seg.cursor = { seq: nextSeq, pos, lastSize };
    // A segment released under the walk ends it: the next segment's records would follow
    // a gap (a detached peer's shipper reads records the others' acks release, docs/PEERS.md).
    // The batch is a prefix from fromSeq, maybe empty; the caller finds the rest released.
    if (past || seg.removed) break;
  }
  return out;
}

/** Syncs a segment's file; a segment dropped meanwhile is skipped, and its file stays open until this ends. */
export async function syncSegment(seg: Segment): Promise<void> {
  if (seg.removed) return;
  seg.readers++;
  try {
    await seg.file.sync();
  } finally {
    if (--seg.readers === 0 && seg.removed) seg.file.close();
  }
}

/** Reads from a segment's file (nothing once it was dropped); the file stays open until this ends. */
async function readSegment(seg: Segment, pos: number, length: number, into?: Buffer): Promise<Buffer> {
  if (seg.removed) return EMPTY;
  seg.readers++;
  try {
    return await seg.file.read(pos, length, into);
  } finally {
    if (--seg.readers === 0 && seg.removed) seg.file.close();
  }
}
