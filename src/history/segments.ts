// The history's segment files (docs/HISTORY.md, "The format"): the open segments in
// order, the newest being appended to; each sealed one's heads file written in the
// background (heads.ts); reading entry heads from a heads file or by scanning
// (scan.ts); whole old segments removed; a compacted segment put in place. What the
// entries mean (points, saves, the tail a start reads) is history.ts's.
import type { Store, StoreFile } from '../store/store.js';
import { encodeHeader, headsFileName, historyFileName, HEADS_HEADER_SIZE, HISTORY_HEADER_SIZE, type EntryHead } from './format.js';
import { forEachHead, readHeads, writeHeads } from './heads.js';
import { scanSegment } from './scan.js';

/** What `scanFrom` says of a segment retention dropped (or a restart) before it was read. */
export const GONE = 'the segment is gone';

/**
 * An open segment. `heads`: the bytes of its heads file, one for it as it is now
 * (sealed segments only), or 0. They count in the history's size, as its segments do.
 */
export interface Segment { index: number; file: StoreFile; bytes: number; heads: number }

/** A listed restore point (history.ts's RestorePoint) and where its marker is. */
export interface MarkedPoint { seq: number; time: number; groupPoint?: number; segment: number; position: number }

/** Where a scan of entry heads stopped: the end, or the first head that is torn or damaged. */
export interface ScanEnd { end: number; reason: string }

export class SegmentFiles {
  /** Oldest first; the last is appended to. */
  all: Segment[] = [];
  /** Heads files being written, one after another (begin). */
  private indexing: Promise<void> = Promise.resolve();
  private closed = false;
  /** The highest index forgotten (a history dropped after a failure): the next segment's is past it, never one a reader held. */
  private forgotten = 0;

  /** `volumeSize`: the volume's size, written in each new segment's header (more after History.grow). */
  constructor(private readonly store: Store, public volumeSize: number) {}

  get current(): Segment {
    return this.all[this.all.length - 1]!;
  }

  get bytes(): number {
    return this.all.reduce((n, s) => n + s.bytes + s.heads, 0);
  }

  has(seg: Segment): boolean {
    return this.all.includes(seg);
  }

  /** Begins the next segment (the first: index 1), durably; the one before is sealed and its heads written in the background. */
  async begin(): Promise<void> {
    const last = this.all[this.all.length - 1];
    if (last) await last.file.sync();
    const index = last ? last.index + 1 : this.forgotten + 1;
    const file = this.store.create(historyFileName(index));
    file.appendSync([encodeHeader(this.volumeSize)]);
    await file.sync();
    await this.store.syncDir();
    this.all.push({ index, file, bytes: HISTORY_HEADER_SIZE, heads: 0 });
    // The sealed one's heads, in the background: the apply does not wait for them.
    if (last) this.index(last);
  }

  /** Writes `seg`'s heads file after those being written. */
  index(seg: Segment): void {
    this.indexing = this.indexing.then(() => this.writeHeadsOf(seg));
  }

  private async writeHeadsOf(seg: Segment): Promise<void> {
    // (Closed: the folder may be another History's by now, one that reads what it finds there.)
    if (this.closed || !this.has(seg)) return;
    const written = await writeHeads(this.store, seg.index, seg.file, seg.bytes).catch(() => 0);
    // (Dropped meanwhile, by retention or a restart: its heads go with it. Should that removal
    // fail, or the process be ending, a heads file with no segment is removed at the next start.)
    if (this.closed) return;
    if (!this.has(seg)) {
      try {
        if (written > 0) this.store.remove(headsFileName(seg.index));
      } catch {
        // (as above)
      }
      return;
    }
    seg.heads = written;
  }

  /** Heads files written so far are on disk. */
  headsWritten(): Promise<void> {
    return this.indexing;
  }

  /**
   * Calls `onEntry` for each entry of `seg` from `from` on: from its heads file when it has
   * a usable one (heads.ts), else by scanning the segment. Where the readable part ends.
   */
  async scan(seg: Segment, hasHeads: boolean, onEntry: (head: EntryHead, position: number) => void, from: number, end = seg.bytes): Promise<ScanEnd> {
    const heads = hasHeads && end === seg.bytes ? await readHeads(this.store, seg.index, end) : null;
    if (heads && forEachHead(heads, end, onEntry, from)) {
      seg.heads = HEADS_HEADER_SIZE + heads.length;
      return { end, reason: 'the end' };
    }
    if (hasHeads) {
      this.store.remove(headsFileName(seg.index));
      seg.heads = 0;
    }
    return scanSegment(seg.file, onEntry, from, end);
  }

  /** The entries of segment `index` from byte `from` to `end`, as `scan` reads them (GONE: it was dropped). */
  scanFrom(index: number, from: number, end: number, onEntry: (head: EntryHead, position: number) => void): Promise<ScanEnd> {
    const seg = this.all.find((s) => s.index === index);
    if (!seg) return Promise.resolve({ end: from, reason: GONE });
    return this.scan(seg, seg.heads > 0, onEntry, from, end);
  }

  /** The segments from index `from` on and how far each reaches now. */
  from(from: number): Array<{ index: number; file: StoreFile; end: number }> {
    return this.all.filter((s) => s.index >= from).map((s) => ({ index: s.index, file: s.file, end: s.bytes }));
  }

  /** Reads `length` bytes at `position` of segment `index`, or null when it is gone. */
  async read(index: number, position: number, length: number): Promise<Buffer | null> {
    const seg = this.all.find((s) => s.index === index);
    if (!seg) return null;
    return seg.file.read(position, length);
  }

  /** Removes the oldest `count` segments and their heads files, durably; the index of the last gone (null: none). */
  async dropOldest(count: number): Promise<number | null> {
    const gone = this.all.slice(0, count);
    if (gone.length === 0) return null;
    this.all = this.all.slice(count);
    for (const s of gone) {
      // (Removed while open: the kernel frees the segment at its close, off the event loop.)
      this.store.remove(historyFileName(s.index));
      this.store.remove(headsFileName(s.index));
      s.file.close();
    }
    await this.store.syncDir();
    return gone[gone.length - 1]!.index;
  }

  /** Removes every segment after `seg` (a start found a crash's cut inside `seg`). */
  dropAfter(seg: Segment): void {
    for (const later of this.all.filter((s) => s.index > seg.index)) {
      later.file.close();
      this.store.remove(historyFileName(later.index));
      this.store.remove(headsFileName(later.index));
    }
    this.all = this.all.filter((s) => s.index <= seg.index);
  }

  /**
   * Puts the synced file `rewritten` in place of `seg` (compaction.ts), by a rename, its
   * old heads file removed first: after a crash the segment is whole as it was or as
   * rewritten. In one turn; the heads are written again in the background. The new length.
   */
  replace(seg: Segment, rewritten: string): number {
    const name = historyFileName(seg.index);
    this.store.remove(headsFileName(seg.index));
    this.store.rename(rewritten, name);
    seg.file.close();
    seg.file = this.store.open(name);
    seg.bytes = seg.file.size();
    seg.heads = 0;
    return seg.bytes;
  }

  /** Closes every file (their folder is another History's from now: nothing in the background touches it). */
  close(): void {
    this.closed = true;
    this.forget();
  }

  /** Closes every file and forgets them (the files are removed by the caller, or stay for the next start). */
  forget(): void {
    for (const s of this.all) {
      s.file.close();
      this.forgotten = Math.max(this.forgotten, s.index);
    }
    this.all = [];
  }

  syncDir(): Promise<void> {
    return this.store.syncDir();
  }
}
