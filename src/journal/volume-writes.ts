// A host change's two writes, the journal append and the volume write, in their order
// for crash safety (write-path.ts, "Order", 1): the volume write starts once the record
// is in the journal file, or at once when the intent ring covers the gap; it enters the
// activity log first. And the records whose volume write is still in flight, so that a
// sync knows up to where the volume holds everything (the `applied` counter). A write
// that fails sends its range to the dirty bitmap. JournaledVolume owns one.
import type { ActivityLog } from './activity-log.js';
import type { DirtyBitmap } from './bitmap.js';
import type { IntentRing } from './intent.js';
import type { Journal } from './journal.js';
import type { FollowingWrite } from './disk.js';
import { DETACHED, NOT_TRIED, WRITE_ALONE } from './append-queue.js';
import { FOLLOW_MAX_BYTES } from '../limits/limits.js';

/** What the writes use of the write path. */
export interface Writing {
  journal: Journal;
  bitmap: DirtyBitmap;
  /** Switches to dirty-bitmap tracking and folds the journal (Tracking.toBitmap). */
  toBitmap(reason: string): void;
  /**
   * Whether a volume write may follow its record now: not while the volume syncs, nor
   * for a while after a peer's ack released the journal with a sync of it that could not
   * wait (release.ts: not the due sync of the interval), since a follower that waits for
   * a sync's writeback holds up every record queued behind it.
   */
  mayFollow(): boolean;
}

export class VolumeWrites {
  /** The activity log, once start-up opened it (without it a power loss is not covered). */
  activity: ActivityLog | null = null;
  /** The intent ring, while host changes are journaled (if the write path keeps one). */
  intents: IntentRing | null = null;
  /** Intents waiting for this turn's write of the ring. */
  private intentBatch: Array<{ seq: number; offset: number; length: number; done: (written: boolean) => void }> = [];
  /** Seqs whose volume write has not completed yet. */
  private readonly inFlight = new Set<number>();

  constructor(private readonly v: Writing) {}

  /** Record `seq` was appended: its volume write is to come. */
  journaled(seq: number): void {
    this.inFlight.add(seq);
  }

  /** The journal was emptied: no record's volume write counts as in flight any more. */
  folded(): void {
    this.inFlight.clear();
  }

  /**
   * The journal append and the volume write. Where the record still waits in the
   * journal's queue, the volume write goes behind it in the job that writes it (`follow`:
   * in order, no intent, no job of its own). Else, with the intent ring they run at once
   * (the intent, written first, covers a crash in between); without it the volume write
   * waits for the append.
   */
  both(seq: number, offset: number, length: number, write: () => Promise<void>, following?: () => FollowingWrite | null): Promise<void> {
    // The activity log holds the extent (durably) before the volume may change there.
    const al = this.activity;
    const entered = al?.enter(offset, length);
    // (Its failure is the volume write's, below; until that waits for it, it must not go unhandled.)
    entered?.catch(() => undefined);
    const gated = entered ? (): Promise<void> => entered.then(write) : write;
    const volumeWrite = al ? (): Promise<void> => gated().finally(() => al.leave(offset, length)) : gated;
    // (Only with the extent already in the activity log: a follower cannot wait for it.)
    // (Not while the volume syncs or is being released: Writing.mayFollow.)
    if (seq > 0 && entered === undefined && following && length <= FOLLOW_MAX_BYTES && this.v.mayFollow()) {
      const w = followingWrite(following);
      const followed = w ? this.v.journal.follow(seq, w) : null;
      if (w && !followed) w.ended();
      if (w && followed) {
        // The common case settles in the follower's own promise: written behind its record, 0.
        // (ended() only once nothing more is written through this follower's disk, the
        // fallback write included: the disk closes its descriptor after it.)
        return followed.then((outcome) => {
          if (outcome !== 0) return this.notFollowed(outcome, w, al, seq, offset, length, volumeWrite).finally(() => w.ended());
          al?.leave(offset, length);
          this.inFlight.delete(seq);
          w.ended();
          return undefined;
        }, (e: unknown) => {
          w.ended();
          throw e;
        });
      }
    }
    return this.ordered(seq, offset, length, volumeWrite);
  }

  /** A follower that did not write: its record's write failed or was dropped, a sync took it off, or the volume write failed. */
  private async notFollowed(outcome: number, w: FollowingWrite, al: ActivityLog | null, seq: number, offset: number, length: number,
    volumeWrite: () => Promise<void>): Promise<void> {
    if (outcome === DETACHED) {
      // Taken off its record as the volume began to sync: the ordered path, the record first.
      await this.landed(seq, offset, length);
      await this.apply(seq, volumeWrite(), offset, length);
      return;
    }
    if (outcome === WRITE_ALONE || outcome === NOT_TRIED) {
      // Not written: the record was dropped with its segment, or its write failed (as in `landed`).
      if (outcome === NOT_TRIED) this.journalFailed(offset, length, this.v.journal.broken);
      await this.apply(seq, volumeWrite(), offset, length);
      return;
    }
    al?.leave(offset, length);
    await this.apply(seq, Promise.reject(w.failure(outcome)), offset, length);
  }

  /** The volume write after its record landed, or at once behind its intent. */
  private async ordered(seq: number, offset: number, length: number, volumeWrite: () => Promise<void>): Promise<void> {
    if (seq > 0 && this.intents && await this.intentWritten(seq, offset, length)) {
      await Promise.all([this.landed(seq, offset, length), this.apply(seq, volumeWrite(), offset, length)]);
      return;
    }
    await this.landed(seq, offset, length);
    await this.apply(seq, volumeWrite(), offset, length);
  }

  /**
   * Resolves true once the intent of record `seq` is in the ring's file, false if it
   * could not be written (the volume write then waits for its record instead). The
   * intents of one turn of the event loop go in one write: the first queues the write
   * behind the turn's other continuations (microtasks run in order), so those reach
   * here first.
   */
  private intentWritten(seq: number, offset: number, length: number): Promise<boolean> {
    return new Promise((done) => {
      if (this.intentBatch.length === 0) queueMicrotask(() => this.writeIntents());
      this.intentBatch.push({ seq, offset, length, done });
    });
  }

  private writeIntents(): void {
    const batch = this.intentBatch;
    this.intentBatch = [];
    let ok = false;
    try {
      if (this.intents) {
        this.intents.recordAll(batch);
        ok = true;
      }
    } catch {
      // (An unwritable ring, or one closed as tracking left the journal: ordered writes are safe without it.)
    }
    for (const b of batch) b.done(ok);
  }

  /**
   * Waits until the record is in the journal file before the volume write starts,
   * so after kill -9 the volume never holds a write the journal lacks. If the
   * journal's disk failed, the range goes to the bitmap and the host is still served.
   */
  private async landed(seq: number, offset: number, length: number): Promise<void> {
    if (seq === 0) return;
    try {
      await this.v.journal.whenWritten(seq);
    } catch (e) {
      this.journalFailed(offset, length, e as Error);
    }
  }

  /** The record's journal write failed: its range goes to the bitmap, the volume to bitmap tracking. */
  private journalFailed(offset: number, length: number, e: Error | null): void {
    this.v.bitmap.mark(offset, length);
    this.v.toBitmap(`cannot write to the journal (${(e as NodeJS.ErrnoException | null)?.code ?? e?.message ?? 'write failed'})`);
  }

  private async apply(seq: number, p: Promise<void>, offset: number, length: number): Promise<void> {
    try {
      await p;
    } catch (e) {
      // The volume did not take a write the journal has: the peer must not get
      // ahead of this disk, so the range goes to the bitmap for a resync.
      this.v.bitmap.mark(offset, length);
      this.v.toBitmap(`volume write failed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      throw e;
    } finally {
      if (seq > 0) this.inFlight.delete(seq);
    }
  }

  /** Every record up to this seq has its volume write completed. */
  appliedSeq(): number {
    let min = Infinity;
    for (const s of this.inFlight) if (s < min) min = s;
    return min === Infinity ? this.v.journal.lastSeq : min - 1;
  }
}

/** The disk's following write, or null where it has none or refuses writes (the ordinary path reports that). */
function followingWrite(following: () => FollowingWrite | null): FollowingWrite | null {
  try {
    return following();
  } catch {
    return null;
  }
}
