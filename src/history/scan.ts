// Reading a history segment's entry heads in order, without their saved bytes: at a
// start (the points and the tail of the last unit) and when a past point is opened.
// Chunks of HISTORY_SCAN_BYTES while entries are small; past a large entry's bytes
// with a seek. A head that is torn or damaged, or whose bytes run past the end, ends
// what is readable.
import type { StoreFile } from '../store/store.js';
import { HISTORY_SCAN_BYTES } from '../limits/limits.js';
import { decodeEntryHead, entryBytes, HISTORY_ENTRY_HEAD_SIZE, HISTORY_HEADER_SIZE, type EntryHead } from './format.js';

/** Calls `onEntry` for every readable entry from `from` up to `end`; says where the readable part ends, and why. */
export async function scanSegment(
  file: StoreFile,
  onEntry: (head: EntryHead, position: number) => void,
  from = HISTORY_HEADER_SIZE,
  end = file.size(),
): Promise<{ end: number; reason: string }> {
  let chunk: Buffer = Buffer.alloc(0);
  let chunkAt = from;
  let at = from;
  while (at < end) {
    if (at + HISTORY_ENTRY_HEAD_SIZE > end) return { end: at, reason: 'a torn entry head' };
    if (at < chunkAt || at + HISTORY_ENTRY_HEAD_SIZE > chunkAt + chunk.length) {
      chunkAt = at;
      chunk = await file.read(at, Math.min(HISTORY_SCAN_BYTES, end - at));
    }
    const d = decodeEntryHead(chunk, at - chunkAt);
    if (!d.ok) return { end: at, reason: `a damaged entry head (${d.reason})` };
    const next = at + entryBytes(d.head);
    if (next > end) return { end: at, reason: 'a torn entry' };
    onEntry(d.head, at);
    at = next;
  }
  return { end: at, reason: 'the end' };
}
