// A journal's segment files and the space they take (docs/JOURNAL.md): which segments
// exist, when a record starts a new one, the whole segments a release frees (only
// behind the durable release point), syncing them and their folder, emptying them in
// place after a fold. Journal (journal.ts) owns one; the numbering, epochs, counters
// and the release point stay there.
import type { Store } from './store.js';
import type { StoreFile } from '../store/store.js';
import { assert } from '../invariants/assert.js';
import { SEGMENT_HEADER_SIZE } from './record.js';
import type { AppendQueue } from './append-queue.js';
import { SEGMENT_SPARES } from '../limits/limits.js';
import { segmentName, spareName, type Segment } from './segment.js';

/** A released segment's file, kept to be written again (its bytes stay on disk). */
interface Spare {
  name: string;
  file: StoreFile;
  bytes: number;
}

export interface SegmentSetOptions {
  store: Store;
  /** Bytes the journal may use on disk. */
  capacity: number;
  /** Target segment size; segments are freed whole. */
  segmentSize: number;
  /** The journal's ordered writer: a new segment's header goes through it. */
  appends: AppendQueue;
  /** The header of a new segment starting at `baseSeq` (the journal's epoch, clock and volume). */
  header(baseSeq: number): Buffer;
}

/** What a sync takes from the set (takeUnsynced). */
export interface Unsynced {
  dirty: Segment[];
  /** The folder needs a sync too (a segment came or went). */
  dir: boolean;
}

export class SegmentSet {
  /** The segment files, oldest first; appends go to the last. */
  list: Segment[] = [];
  /** Bytes the segments hold once queued writes land (what capacity counts). */
  used = 0;
  /** A segment was created or removed since the folder was last synced. */
  dirChanged = false;
  /** The next record starts a new segment (the numbering jumped). */
  private forceNew = false;
  /**
   * Released segments' files kept to be written again, newest last, at most
   * SEGMENT_SPARES: a record then goes into pages the page cache already holds and
   * blocks the file system already gave, not new ones (PostgreSQL recycles its WAL
   * files so). Their bytes count against the capacity (`spareBytes`, not `used`: the
   * journal's fill stays what its records take) and they are the first to go when a
   * record needs the room. A reused file keeps its old records past what the new use
   * wrote (`Segment.floor`); the tail's are on disk too (`tailSlack`).
   */
  private spares: Spare[] = [];
  spareBytes = 0;
  private spareCount = 0;

  constructor(private readonly o: SegmentSetOptions) {}

  /** Bytes on disk past the journal's fill: the spares, and the tail's old bytes not yet written over. */
  get slack(): number {
    const tail = this.list[this.list.length - 1];
    return this.spareBytes + (tail ? Math.max(0, tail.floor - tail.reserved) : 0);
  }

  /** True when a record of `size` bytes fits now, in a new segment if need be. */
  fits(size: number): boolean {
    return this.used + size + SEGMENT_HEADER_SIZE <= this.o.capacity && this.room(size, this.needsSegment(size)) >= 0;
  }

  /**
   * The segment record `seq` of `size` bytes goes to: the tail, or a new segment when
   * there is none, the numbering jumped, or the tail is over its target size (and holds
   * a record). 'full' when the journal has no room for it.
   */
  segmentFor(seq: number, size: number): Segment | 'full' {
    const seg = this.list[this.list.length - 1];
    const needSegment = this.needsSegment(size);
    if (this.used + size + (needSegment ? SEGMENT_HEADER_SIZE : 0) > this.o.capacity || this.room(size, needSegment) < 0) return 'full';
    // (Spares go first when the disk bytes need their room.)
    while (this.spares.length > 0 && this.used + this.slack + this.growth(size, needSegment) > this.o.capacity) this.dropSpare();
    if (!needSegment) return seg!;
    const opened = this.open(seq);
    this.forceNew = false;
    return opened;
  }

  private needsSegment(size: number): boolean {
    const seg = this.list[this.list.length - 1];
    return !seg || this.forceNew || (seg.reserved + size > this.o.segmentSize && seg.lastSeq >= seg.baseSeq);
  }

  /**
   * Disk bytes a record of `size` adds: within the tail's old bytes, none of those; in
   * a new segment, its header and the record, less the old tail's bytes past its fill
   * (cut when it is sealed).
   */
  private growth(size: number, needSegment: boolean): number {
    const tail = this.list[this.list.length - 1];
    if (!tail) return size + SEGMENT_HEADER_SIZE;
    const tailSlack = Math.max(0, tail.floor - tail.reserved);
    return needSegment ? size + SEGMENT_HEADER_SIZE - tailSlack : Math.max(0, size - tailSlack);
  }

  /** What is left of the capacity after such a record, the spares let go: negative when it does not fit on disk. */
  private room(size: number, needSegment: boolean): number {
    return this.o.capacity - (this.used + this.slack - this.spareBytes + this.growth(size, needSegment));
  }

  /** Record `seq` of `size` bytes was queued at the end of `seg`. */
  appended(seg: Segment, seq: number, size: number): void {
    seg.lastSeq = seq;
    this.used += size;
    assert(this.used + this.slack <= this.o.capacity,
      () => `journal: ${this.used} bytes used and ${this.slack} kept of a capacity of ${this.o.capacity}`);
  }

  /**
   * A segment starting at `baseSeq`, in a spare's file if one is kept (else a new
   * file); its header is queued like a record. A spare's old header and records stay
   * until written over: recovery knows the file by the seq in its name, which its old
   * header does not have, and stops at the first record out of order (recovery.ts).
   */
  open(baseSeq: number): Segment {
    const name = segmentName(baseSeq);
    const tail = this.list[this.list.length - 1];
    // The tail is sealed: what of its old bytes it did not write over is cut, so only the tail holds any.
    if (tail && tail.floor > tail.reserved) this.cutOldBytes(tail);
    const spare = this.spares.pop();
    let file: StoreFile;
    let floor = 0;
    if (spare) {
      this.spareBytes -= spare.bytes;
      try {
        this.o.store.rename(spare.name, name);
        spare.file.close();
        file = this.o.store.open(name);
        floor = spare.bytes;
      } catch {
        // (Gone or unreadable: a new file instead.)
        spare.file.close();
        file = this.o.store.create(name);
      }
    } else {
      file = this.o.store.create(name);
    }
    const seg: Segment = { name, baseSeq, lastSeq: baseSeq - 1, file, unsynced: true, readers: 0, removed: false, reserved: 0, landed: 0, floor };
    this.o.appends.enqueue(seg, baseSeq - 1, [this.o.header(baseSeq)]);
    this.list.push(seg);
    this.used += SEGMENT_HEADER_SIZE;
    this.dirChanged = true;
    return seg;
  }

  /** A sealed reused segment's old bytes past its own records go (its length becomes what it holds). */
  private cutOldBytes(seg: Segment): void {
    try {
      // (Past every byte of its own, queued writes included: they land before the cut, or after it within the length.)
      seg.file.truncateSync(seg.reserved);
      seg.unsynced = true;
    } catch {
      // (The old bytes stay: recovery stops at them as at any record out of order.)
    }
    seg.floor = 0;
  }

  /** Unlinks a segment, or keeps its file as a spare; its file closes once no read is using it. */
  private drop(s: Segment, reuse = false): void {
    s.removed = true;
    this.dirChanged = true;
    const bytes = Math.max(s.reserved, s.floor);
    // (A file a read still uses is not written again; one far past the target size is not kept.)
    if (reuse && s.readers === 0 && this.spares.length < SEGMENT_SPARES && bytes <= 2 * this.o.segmentSize) {
      const name = spareName(++this.spareCount);
      try {
        this.o.store.rename(s.name, name);
        this.spares.push({ name, file: s.file, bytes });
        this.spareBytes += bytes;
        return;
      } catch {
        // (Removed instead.)
      }
    }
    this.o.store.remove(s.name);
    if (s.readers === 0) s.file.close();
  }

  private dropSpare(): void {
    const spare = this.spares.shift()!;
    this.spareBytes -= spare.bytes;
    spare.file.close();
    this.o.store.remove(spare.name);
    this.dirChanged = true;
  }

  /** Every spare goes (a fold, a restart of the numbering, a clean stop). */
  dropSpares(): void {
    while (this.spares.length > 0) this.dropSpare();
  }

  /** An empty (all released) log continues at another seq: every segment goes, and the next record starts a new one. */
  restart(): void {
    for (const old of this.list.splice(0)) {
      this.used -= old.reserved;
      this.drop(old);
    }
    this.dropSpares();
    this.forceNew = true;
  }

  /**
   * Everything up to `upTo` is released: a tail that is fully released and over its
   * target size gets an empty segment after it (at `nextSeq`), so that it can go too.
   */
  rollTail(upTo: number, nextSeq: number): void {
    const tail = this.list[this.list.length - 1];
    if (tail && tail.lastSeq <= upTo && tail.lastSeq >= tail.baseSeq && tail.reserved >= this.o.segmentSize) {
      try {
        this.open(nextSeq); // an empty tail keeps the numbering; the full one can go
      } catch {
        // Disk full: keep the old tail for now.
      }
    }
  }

  /** The oldest segment is released up to `upTo` and is not the tail: free() would drop it. */
  freeable(upTo: number): boolean {
    return this.list.length >= 2 && this.list[0]!.lastSeq <= upTo;
  }

  /** Drops the closed segments whose every record is behind the durable release point (`released`: the journal's, for the check). */
  free(durable: number, released: number): void {
    while (this.list.length > 1) {
      const s = this.list[0]!;
      if (s.lastSeq > durable) break;
      assert(s.lastSeq <= released, () => `journal: dropping segment ${s.name} (to record ${s.lastSeq}) past the release point ${released}`);
      this.list.shift();
      this.used -= s.reserved;
      this.drop(s, true);
    }
    assert(this.used >= 0, () => `journal: ${this.used} bytes used`);
  }

  /**
   * For a sync: the segments written since their last sync, and whether the folder
   * changed; they count as synced now (unsyncedAgain() if that sync fails).
   */
  takeUnsynced(): Unsynced {
    const dirty = this.list.filter((s) => s.unsynced);
    for (const s of dirty) s.unsynced = false;
    const dir = this.dirChanged;
    this.dirChanged = false;
    return { dirty, dir };
  }

  unsyncedAgain(t: Unsynced): void {
    for (const s of t.dirty) s.unsynced = true;
    if (t.dir) this.dirChanged = true;
  }

  /**
   * Empties the set (after its records were folded into the dirty bitmap). The last
   * segment is kept and rewritten in place as an empty segment starting at `nextSeq`,
   * which carries the numbering and the epoch across restarts: this needs no new disk
   * space, so it works on a full disk too.
   */
  empty(nextSeq: number): void {
    const keep = this.list.pop();
    for (const s of this.list) this.drop(s);
    this.dropSpares();
    this.list = [];
    this.used = 0;
    this.dirChanged = true;
    if (!keep) {
      try {
        this.open(nextSeq);
      } catch {
        // Disk full: the first append will try again.
      }
      return;
    }
    try {
      // (A version 1 segment kept here becomes a version 2 one naming this volume.)
      keep.file.writeSync(0, this.o.header(nextSeq));
      keep.file.truncateSync(SEGMENT_HEADER_SIZE);
    } catch {
      this.drop(keep); // disk full and no header to rewrite: the next append starts a segment
      return;
    }
    keep.reserved = SEGMENT_HEADER_SIZE;
    keep.landed = SEGMENT_HEADER_SIZE;
    keep.floor = 0;
    keep.baseSeq = nextSeq;
    keep.lastSeq = nextSeq - 1;
    keep.unsynced = true;
    this.list.push(keep);
    this.used = SEGMENT_HEADER_SIZE;
  }

  /** Takes over what recovery kept (recovery.ts's scan). */
  recovered(segments: Segment[], used: number, dirChanged: boolean): void {
    this.list = segments;
    this.used = used;
    if (dirChanged) this.dirChanged = true;
  }

  /** After recovery: a set without a segment gets one at `nextSeq`. Returns why it cannot (a full disk), or null. */
  openIfNone(nextSeq: number): string | null {
    if (this.list.length > 0) return null;
    try {
      this.open(nextSeq);
      return null;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    }
  }

  close(): void {
    // (A clean stop leaves no spare: a release before them would not know the files.)
    try {
      this.dropSpares();
    } catch {
      // (Left: the next start removes them.)
    }
    for (const s of this.list) s.file.close();
    this.list = [];
  }
}
