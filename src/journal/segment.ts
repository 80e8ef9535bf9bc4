// A segment file of a journal (or receive log), as the journal holds it open: named by
// its first record's seq, freed whole once every record in it is released; and reading
// records from segments, streamed from disk (the backlog is never held in memory).
import type { StoreFile } from '../store/store.js';
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, decodeRecordHeader, payloadMatches, type JournalRecord } from './record.js';

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
}

/**
 * Records from `fromSeq` in order, up to about `maxBytes` (at least one record) and
 * not past `limitSeq`, from these segments (`released`: for the message when the
 * first is gone).
 */
export async function readRecords(all: Segment[], fromSeq: number, maxBytes: number, limitSeq: number, released: number): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  if (fromSeq > limitSeq) return out;
  const segIndex = all.findIndex((s) => s.baseSeq <= fromSeq && fromSeq <= s.lastSeq);
  if (segIndex < 0) throw new Error(`journal no longer holds record ${fromSeq} (released up to ${released})`);
  let bytes = 0;
  // A snapshot: releases may drop segments while this read awaits the disk.
  const segments = all.slice(segIndex);
  for (const seg of segments) {
    if (bytes >= maxBytes) break;
    let pos = SEGMENT_HEADER_SIZE;
    const end = Math.min(seg.file.size(), seg.reserved);
    while (pos < end && bytes < maxBytes && !seg.removed) {
      const head = await readSegment(seg, pos, RECORD_HEADER_SIZE);
      if (seg.removed) break; // released meanwhile: nobody needs it any more
      const h = decodeRecordHeader(head);
      if (!h.ok) throw new Error(`journal segment ${seg.name} at byte ${pos}: ${h.reason}`);
      const size = RECORD_HEADER_SIZE + h.payloadLength;
      if (h.header.seq > limitSeq) return out;
      if (h.header.seq >= fromSeq) {
        const payload = h.payloadLength > 0 ? await readSegment(seg, pos + RECORD_HEADER_SIZE, h.payloadLength) : EMPTY;
        if (seg.removed) break; // released meanwhile: nobody needs it any more
        if (!payloadMatches(payload, h.payloadCrc)) {
          throw new Error(`journal segment ${seg.name} at byte ${pos}: record ${h.header.seq} payload checksum mismatch`);
        }
        out.push({ ...h.header, payload });
        bytes += size;
      }
      pos += size;
    }
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
async function readSegment(seg: Segment, pos: number, length: number): Promise<Buffer> {
  if (seg.removed) return EMPTY;
  seg.readers++;
  try {
    return await seg.file.read(pos, length);
  } finally {
    if (--seg.readers === 0 && seg.removed) seg.file.close();
  }
}
