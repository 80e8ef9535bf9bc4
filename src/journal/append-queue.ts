// The journal's append queue. Records are written in order by one writer on the
// thread pool, batched: while one writev is in flight the next records gather, and go
// in the next one. One at a time and in order means a crash can tear only the tail,
// never leave a hole; off the event loop means the host's requests keep flowing
// meanwhile. A failed write breaks the journal: nothing more is appended, and what
// was queued behind it is dropped (its ranges kept for the fold into the bitmap).
import { crc32c } from '../checksum/crc32c.js';
import { markRecord, type Segment } from './segment.js';
import type { FollowingWrite } from './disk.js';
import { assert } from '../invariants/assert.js';

/** A following write's outcome when the record's own write failed: it was not tried. */
export const NOT_TRIED = -1;
/** Its outcome when the record was dropped unwritten (its segment let go): the caller writes it. */
export const WRITE_ALONE = -2;
/** Its outcome when it was taken off its record, still queued (`detachFollowers`): the caller waits for the record, then writes. */
export const DETACHED = -3;

/** A volume write queued behind its record, to go in the same thread-pool job after it. */
interface Follower {
  write: FollowingWrite;
  settle: (errno: number) => void;
}

/** The range a host record covers on the volume. */
export interface Range {
  offset: number;
  length: number;
}

export class AppendQueue {
  // (Every entry has every field from the start, one shape for V8: no spread, no field added later.)
  private readonly queue: Array<{ seg: Segment; at: number; parts: Buffer[]; bytes: number; seq: number; range: Range | null; crc: number | undefined;
    follower: Follower | undefined }> = [];
  /**
   * The ranges of records appended but dropped unwritten when the journal broke: they
   * are in no file, yet their host writes may be on the volume, so a fold must see them.
   */
  unwritten: Range[] = [];
  private writing = false;
  /** Every record up to this seq is in its file: the page cache, or the disk for a direct append (readable, syncable). */
  writtenSeq = 0;
  /** Set when a journal write failed: nothing more can be appended. */
  broken: Error | null = null;
  private readonly written: Array<{ seq: number; resolve: () => void; reject: (e: Error) => void }> = [];
  private readonly waiters = new Set<() => void>();

  /**
   * Queues `parts` at the segment's end (record `seq`; `range`: a host record's, for the
   * fold if it is dropped). `crc`: the payload's (parts[1]) CRC32C as checked where it came
   * from (a peer's frame): checked again once written, so a buffer given back or changed
   * while the write read it stops the daemon (invariant 12) rather than leave a record the
   * apply would refuse.
   */
  enqueue(seg: Segment, seq: number, parts: Buffer[], range: Range | null = null, crc?: number): void {
    const bytes = parts.reduce((n, p) => n + p.length, 0);
    this.queue.push({ seg, at: seg.reserved, parts, bytes, seq, range, crc: parts.length > 1 ? crc : undefined, follower: undefined });
    // (A record, not the segment's header: where it lies, for reads that want it later.)
    if (seq >= seg.baseSeq) markRecord(seg, seq, seg.reserved);
    seg.reserved += bytes;
    this.pumpSoon();
  }

  /** A pump queued behind this turn's other work (pumpSoon). */
  private pumpQueued = false;

  /**
   * Starts the next job in a microtask, not in the append's own
   * call: the host writes that arrived together (a host's requests read in one chunk)
   * are then all queued, each with its volume write behind it (`follow`), and go in one
   * job. Started at once, the job took the first record alone, and its volume write,
   * finding the record's write begun, went in a job of its own.
   */
  private pumpSoon(): void {
    if (this.writing || this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  /**
   * Puts `write` behind record `seq`, in the job that writes the record, after it: the
   * volume then never holds a write its journal lacks, with no intent and no job of its
   * own. Resolves with the write's 0 or errno once the job ended; NOT_TRIED if the
   * record's write failed, WRITE_ALONE if its segment was let go, DETACHED if a volume
   * sync took it off (detachFollowers). Null if the record's write has begun (or it has a follower, or
   * its file cannot): the caller writes the volume itself then.
   */
  follow(seq: number, write: FollowingWrite): Promise<number> | null {
    // Mostly the newest record: searched from the end.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      // (Host records only: a new segment's header, queued with the seq before its first, is not the record.)
      if (q.range === null) continue;
      if (q.seq < seq) return null;
      if (q.seq > seq) continue;
      if (q.follower || !q.seg.file.writevThen || q.seg.removed || this.broken) return null;
      return new Promise((settle) => (q.follower = { write, settle }));
    }
    return null;
  }

  /**
   * Takes every follower off the records still queued (settled DETACHED): a sync of the
   * volume begins, during which a volume write may wait for the writeback, and a
   * follower's wait would hold up the records queued behind it. Returns how many.
   */
  detachFollowers(): number {
    let n = 0;
    for (const q of this.queue) {
      if (!q.follower) continue;
      const f = q.follower;
      q.follower = undefined;
      f.settle(DETACHED);
      n++;
    }
    return n;
  }

  /** Resolves when record `seq` is in its file (writtenSeq); rejects if the journal write failed. */
  whenWritten(seq: number): Promise<void> {
    if (seq <= this.writtenSeq) return Promise.resolve();
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => this.written.push({ seq, resolve, reject }));
  }

  /** Resolves when every queued write has landed (or failed). */
  drained(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const w = (): void => {
        if (!this.writing && this.queue.length === 0) {
          this.waiters.delete(w);
          resolve();
        }
      };
      this.waiters.add(w);
    });
  }

  /** Resolves when a record past `seq` is written (or at once if there is one). */
  waitFor(seq: number): Promise<void> {
    if (this.writtenSeq > seq) return Promise.resolve();
    return new Promise((resolve) => {
      const w = (): void => {
        if (this.writtenSeq > seq || this.broken) {
          this.waiters.delete(w);
          resolve();
        }
      };
      this.waiters.add(w);
    });
  }

  /** The journal was emptied (its queue drained): whatever failed is folded into the bitmap. */
  reset(): void {
    this.broken = null;
    this.unwritten = [];
  }

  private pump(): void {
    // Writes for a segment dropped meanwhile (all released, or an empty tail) are moot.
    let dropped = false;
    while (this.queue.length > 0 && this.queue[0]!.seg.removed) {
      const q = this.queue.shift()!;
      if (q.seq > this.writtenSeq) this.writtenSeq = q.seq;
      q.follower?.settle(WRITE_ALONE);
      dropped = true;
    }
    if (dropped) {
      // (Whoever waits for them, or for the queue to drain, hears it now: no job may follow.)
      this.settleWritten();
      for (const w of this.waiters) w();
    }
    if (this.writing || this.queue.length === 0) return;
    const first = this.queue[0]!;
    let n = 1;
    let end = first.at + first.bytes;
    let bytes = first.bytes;
    // (A job's bytes count its followers' volume writes too.)
    bytes += first.follower?.write.data.length ?? 0;
    while (n < this.queue.length && n < 1024 && bytes < 16 << 20) {
      const q = this.queue[n]!;
      if (q.seg !== first.seg || q.at !== end) break;
      end += q.bytes;
      bytes += q.bytes + (q.follower?.write.data.length ?? 0);
      n++;
    }
    const batch = this.queue.splice(0, n);
    this.writing = true;
    const parts = batch.flatMap((q) => q.parts);
    const seg = first.seg;
    seg.readers++; // the file stays open while this write runs, even if the segment is dropped
    const followers = batch.flatMap((q) => (q.follower ? [q.follower] : []));
    const written = followers.length > 0 ? this.writeWithFollowers(seg, first.at, parts, followers) : seg.file.writev(first.at, parts).then(() => null);
    written.then((errs) => {
      for (const q of batch) {
        assert(q.crc === undefined || crc32c(q.parts[1]!) === q.crc,
          () => `record ${q.seq} changed while it was written (its buffer was given back or reused before the write ended)`);
      }
      first.seg.unsynced = true;
      const top = batch[batch.length - 1]!.seq;
      if (top > this.writtenSeq) this.writtenSeq = top;
      this.settleWritten();
      // (After writtenSeq: a host write acknowledged once its follower settled has its record counted written.)
      if (errs) followers.forEach((f, i) => f.settle(errs[i]!));
    }, (e: Error) => {
      this.broken = e;
      for (const q of [...batch, ...this.queue]) if (q.range) this.unwritten.push(q.range);
      for (const q of [...batch, ...this.queue]) q.follower?.settle(NOT_TRIED);
      this.queue.length = 0;
      this.settleWritten();
    }).finally(() => {
      if (--seg.readers === 0 && seg.removed) seg.file.close();
      this.writing = false;
      this.pump();
      for (const w of this.waiters) w();
    });
  }

  /**
   * The batch's writev and its followers' volume writes in one job (StoreFile.writevThen):
   * each follower's 0 or errno. Rejects as writev does if the batch's write failed.
   */
  private async writeWithFollowers(seg: Segment, at: number, parts: Buffer[], followers: Follower[]): Promise<number[]> {
    // (follow() only attaches where the file has it; a segment keeps its file.)
    assert(seg.file.writevThen !== undefined, () => `journal segment ${seg.file.name}: followers without writevThen`);
    const vfd = followers[0]!.write.fd;
    assert(followers.every((f) => f.write.fd === vfd), () => 'journal: followers of one batch on different volumes');
    const errs = await seg.file.writevThen(at, parts, { fd: vfd, bufs: followers.map((f) => f.write.data), positions: followers.map((f) => f.write.position) });
    assert(errs.length === followers.length && errs.every((x) => x >= 0),
      () => `journal: ${errs.length} outcomes (${errs.join(',')}) for ${followers.length} following writes after a written record`);
    return errs;
  }

  private settleWritten(): void {
    for (let i = this.written.length - 1; i >= 0; i--) {
      const w = this.written[i]!;
      if (w.seq <= this.writtenSeq) {
        this.written.splice(i, 1);
        w.resolve();
      } else if (this.broken) {
        this.written.splice(i, 1);
        w.reject(this.broken);
      }
    }
  }
}
