// Reading a history segment's entry heads in order, without their saved bytes: at a
// start (the points and the tail of the last unit) and when a past point is opened.
// Chunks of HISTORY_SCAN_BYTES while entries are small; past a large entry's bytes
// with a seek, and a read of HISTORY_SCAN_HEAD_BYTES for the head after it. A head that is torn or damaged, or whose bytes run past the end, ends
// what is readable.
import type { StoreFile } from '../store/store.js';
import { HISTORY_SCAN_BYTES, HISTORY_SCAN_HEAD_BYTES } from '../limits/limits.js';
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
  let lastEntry = 0;
  while (at < end) {
    if (at + HISTORY_ENTRY_HEAD_SIZE > end) return { end: at, reason: 'a torn entry head' };
    if (at < chunkAt || at + HISTORY_ENTRY_HEAD_SIZE > chunkAt + chunk.length) {
      chunkAt = at;
      // After a large entry the next head is read alone (with a little after it): a chunk
      // would be mostly saved bytes, and a scan of large entries would read them all.
      const want = lastEntry >= HISTORY_SCAN_HEAD_BYTES ? HISTORY_SCAN_HEAD_BYTES : HISTORY_SCAN_BYTES;
      chunk = await file.read(at, Math.min(want, end - at));
    }
    const d = decodeEntryHead(chunk, at - chunkAt);
    if (!d.ok) return { end: at, reason: `a damaged entry head (${d.reason})` };
    const next = at + entryBytes(d.head);
    if (next > end) return { end: at, reason: 'a torn entry' };
    onEntry(d.head, at);
    lastEntry = next - at;
    at = next;
  }
  return { end: at, reason: 'the end' };
}
