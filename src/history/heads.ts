// A sealed history segment's entry heads, in a file of their own
// (history.NNNNNNNN.heads, docs/HISTORY.md "Files"): opening a point far back reads
// these, a few megabytes, rather than the segments' heads one by one among gigabytes
// of saved bytes. Derived data: written once its segment is sealed and synced; one that
// is missing, damaged or not for the segment as it is now is not used, and the segment
// is scanned instead (scan.ts), as a release before heads files did.
import { crc32c } from '../checksum/crc32c.js';
import type { Store, StoreFile } from '../store/store.js';
import { refuseNewer } from '../versioning/format.js';
import { HISTORY_HEADS_SHARE } from '../limits/limits.js';
import {
  decodeEntryHead, decodeHeadsHeader, encodeEntryHead, encodeHeadsHeader, entryBytes, HEADS_FORMAT, HEADS_HEADER_SIZE, headsFileName,
  HISTORY_ENTRY_HEAD_SIZE, HISTORY_HEADER_SIZE, type EntryHead,
} from './format.js';
import { scanSegment } from './scan.js';

/**
 * Writes the heads file of sealed segment `index` (its file, `end` bytes long), durably;
 * the bytes it takes. 0, and nothing written, when the segment is not readable to its end or its heads
 * would take more than HISTORY_HEADS_SHARE of it (a segment of small entries is its own
 * index: scanning it reads no saved bytes to skip).
 */
export async function writeHeads(store: Store, index: number, segment: StoreFile, end: number): Promise<number> {
  const heads: Buffer[] = [];
  let tooMany = false;
  const scan = await scanSegment(segment, (head) => {
    if (tooMany) return;
    heads.push(encodeEntryHead(head));
    if (heads.length * HISTORY_ENTRY_HEAD_SIZE > end * HISTORY_HEADS_SHARE) tooMany = true;
  }, HISTORY_HEADER_SIZE, end);
  if (tooMany || scan.end !== end) return 0;
  const body = Buffer.concat(heads);
  await store.replace(headsFileName(index), Buffer.concat([encodeHeadsHeader({ count: heads.length, segmentBytes: end, headsCrc: crc32c(body) }), body]));
  return HEADS_HEADER_SIZE + body.length;
}

/**
 * The heads of segment `index`, `segmentBytes` long now, from its heads file (which
 * exists: the caller listed it); null when that file cannot be used (then the segment is scanned). A heads file of a newer
 * release is refused, as its segment would be.
 */
export async function readHeads(store: Store, index: number, segmentBytes: number): Promise<Buffer | null> {
  let f: ReturnType<Store['open']>;
  try {
    f = store.open(headsFileName(index));
  } catch {
    return null; // (gone since the folder was listed: the segment is scanned)
  }
  try {
    const b = await f.read(0, f.size());
    refuseNewer(HEADS_FORMAT, b, headsFileName(index));
    const d = decodeHeadsHeader(b);
    if (!d.ok) return null;
    const body = b.subarray(HEADS_HEADER_SIZE);
    const h = d.header;
    if (h.segmentBytes !== segmentBytes || body.length !== h.count * HISTORY_ENTRY_HEAD_SIZE || crc32c(body) !== h.headsCrc) return null;
    return body;
  } catch (e) {
    if (/newer/.test((e as Error).message)) throw e;
    return null;
  } finally {
    f.close();
  }
}

/**
 * Calls `onEntry` for each head of `heads` (as readHeads gave them) whose entry begins
 * at or after `from`, with its position in the segment. False when a head does not
 * decode or the heads do not add up to the segment's length (then the segment is scanned).
 */
export function forEachHead(heads: Buffer, segmentBytes: number, onEntry: (head: EntryHead, position: number) => void, from = HISTORY_HEADER_SIZE): boolean {
  // (Checked whole first: a caller hears of no entry from heads that turn out unusable.)
  let position = HISTORY_HEADER_SIZE;
  for (let at = 0; at < heads.length; at += HISTORY_ENTRY_HEAD_SIZE) {
    const d = decodeEntryHead(heads, at);
    if (!d.ok) return false;
    position += entryBytes(d.head);
  }
  if (position !== segmentBytes) return false;
  position = HISTORY_HEADER_SIZE;
  for (let at = 0; at < heads.length; at += HISTORY_ENTRY_HEAD_SIZE) {
    const d = decodeEntryHead(heads, at);
    if (!d.ok) return false;
    if (position >= from) onEntry(d.head, position);
    position += entryBytes(d.head);
  }
  return true;
}
