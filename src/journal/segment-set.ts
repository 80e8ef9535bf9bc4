// A journal's segment files and the space they take (docs/JOURNAL.md): which segments
// exist, when a record starts a new one, the whole segments a release frees (only
// behind the durable release point), syncing them and their folder, emptying them in
// place after a fold. Journal (journal.ts) owns one; the numbering, epochs, counters
// and the release point stay there.
import type { Store } from './store.js';
import { assert } from '../invariants/assert.js';
import { SEGMENT_HEADER_SIZE } from './record.js';
import type { AppendQueue } from './append-queue.js';
import { segmentName, type Segment } from './segment.js';

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

  constructor(private readonly o: SegmentSetOptions) {}

  /** The journal may use `capacity` bytes from now on (never less than it holds, and a segment header: see room). */
  resize(capacity: number): void {
    assert(Number.isSafeInteger(capacity) && capacity >= this.used + SEGMENT_HEADER_SIZE,
      () => `journal: a capacity of ${capacity} bytes below the ${this.used} it holds and a segment header`);
    this.o.capacity = capacity;
  }

  /**
   * Bytes records may take: the capacity but one segment header, kept for rollTail's
   * empty segment, which lets a fully released tail go when the journal is full
   * (without it, the roll took the journal past its capacity until the old tail went:
   * replication simulation seed 2776).
   */
  private get room(): number {
    return this.o.capacity - SEGMENT_HEADER_SIZE;
  }

  /** True when a record of `size` bytes fits now, in a new segment if need be. */
  fits(size: number): boolean {
    return this.used + size + SEGMENT_HEADER_SIZE <= this.room;
  }

  /**
   * The segment record `seq` of `size` bytes goes to: the tail, or a new segment when
   * there is none, the numbering jumped, or the tail is over its target size (and holds
   * a record). 'full' when the journal has no room for it.
   */
  segmentFor(seq: number, size: number): Segment | 'full' {
    const seg = this.list[this.list.length - 1];
    const needSegment = !seg || this.forceNew || (seg.reserved + size > this.o.segmentSize && seg.lastSeq >= seg.baseSeq);
    if (this.used + size + (needSegment ? SEGMENT_HEADER_SIZE : 0) > this.room) return 'full';
    if (!needSegment) return seg;
    const opened = this.open(seq);
    this.forceNew = false;
    return opened;
  }

  /** Record `seq` of `size` bytes was queued at the end of `seg`. */
  appended(seg: Segment, seq: number, size: number): void {
    seg.lastSeq = seq;
    this.used += size;
    assert(this.used <= this.o.capacity, () => `journal: ${this.used} bytes used of a capacity of ${this.o.capacity}`);
  }

  /** Creates a segment starting at `baseSeq`; its header is queued like a record. */
  open(baseSeq: number): Segment {
    const name = segmentName(baseSeq);
    const file = this.o.store.create(name);
    const seg: Segment = { name, baseSeq, lastSeq: baseSeq - 1, file, unsynced: true, readers: 0, removed: false, reserved: 0 };
    this.o.appends.enqueue(seg, baseSeq - 1, [this.o.header(baseSeq)]);
    this.list.push(seg);
    this.used += SEGMENT_HEADER_SIZE;
    this.dirChanged = true;
    return seg;
  }

  /** Unlinks a segment; its file closes once no read is using it. */
  private drop(s: Segment): void {
    s.removed = true;
    this.o.store.remove(s.name);
    this.dirChanged = true;
    if (s.readers === 0) s.file.close();
  }

  /** An empty (all released) log continues at another seq: every segment goes, and the next record starts a new one. */
  restart(): void {
    for (const old of this.list.splice(0)) {
      this.used -= old.reserved;
      this.drop(old);
    }
    this.forceNew = true;
  }

  /**
   * Everything up to `upTo` is released: a tail that is fully released and over its
   * target size gets an empty segment after it (at `nextSeq`), so that it can go too.
   */
  rollTail(upTo: number, nextSeq: number): void {
    const tail = this.list[this.list.length - 1];
    if (tail && tail.lastSeq <= upTo && tail.lastSeq >= tail.baseSeq && tail.reserved >= this.o.segmentSize) {
      // (Within the capacity: records left a segment header of room. A journal filled by a
      // release before that room was kept may pass it by one header until the old tail goes:
      // not refused, or it would stay full.)
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
      this.drop(s);
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
    keep.cursor = undefined;
    keep.marks = undefined;
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
    for (const s of this.list) s.file.close();
    this.list = [];
  }
}
