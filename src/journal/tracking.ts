// Which tracker holds the host's changes: the journal, or, once it overflows (full
// under on_full: bitmap, its disk failed, a volume write failed), the dirty bitmap;
// and the fold that switches from one to the other: the range of every unreleased
// record is marked in the bitmap, the bitmap is made durable, then the journal is
// emptied (docs/JOURNAL.md, "Overflow"). Host writes never wait for a fold. A resync
// round (docs/RESYNC.md) switches back to the journal.
import type { Logger } from '../log/log.js';
import { formatBytes } from '../units/units.js';
import type { ResyncRound } from '../sync/round.js';
import type { DirtyBitmap } from './bitmap.js';
import type { Journal } from './journal.js';

export type TrackingMode = 'journal' | 'bitmap';

/** What a fold works on: the write path's journal, bitmap and round, and its sync lock. */
export interface Tracked {
  name: string;
  log: Logger;
  journal: Journal;
  bitmap: DirtyBitmap;
  round: ResyncRound;
  /** Runs `fn` alone among the write path's syncs (volume, journal and bitmap). */
  exclusive(fn: () => Promise<void>): Promise<void>;
  /** The journal was emptied: no record's volume write counts as in flight any more. */
  folded(): void;
  /** Called in the turn the journal is emptied (its release point moved to its end): no peer waits for a record before it. */
  emptied(): void;
}

export class Tracking {
  mode: TrackingMode = 'journal';
  /** Times the journal overflowed into the bitmap (since the daemon started), and the last time. */
  overflows = 0;
  overflowAt: number | null = null;
  /** The fold under way, if any. */
  folding: Promise<void> | null = null;
  /**
   * Folds take the journal's ranges from the bitmap (start-up put them there: the journal
   * cannot be read through), until a fold or a round's start has emptied the journal.
   * (Only the next fold, before: one that could not empty it on a full disk left the
   * unreadable records, and every fold after failed on them: replication simulation
   * seed 418 with the history toggle, a new primary's link cut at every try.)
   */
  skipRead = false;
  /** A fold marked the bitmap but could not empty the journal (disk full): emptyPending() does when a round begins. */
  clearPending = false;

  constructor(private readonly v: Tracked) {}

  /** Journal full under on_full: bitmap. The host keeps writing at full speed. */
  overflow(): void {
    const j = this.v.journal;
    this.toBitmap(`journal full: ${formatBytes(j.usedBytes)} of ${formatBytes(j.capacity)}`);
  }

  /** Switches to dirty-bitmap tracking and folds the journal into the bitmap. */
  toBitmap(reason: string): void {
    if (this.mode === 'bitmap') return;
    const { name, log, bitmap } = this.v;
    this.mode = 'bitmap';
    this.overflows++;
    this.overflowAt = Date.now();
    log.warn({ volume: name },
      `volume ${name}: ${reason}; switched to dirty-bitmap tracking (${formatBytes(bitmap.regionSize)} regions), the changed regions will be resynced`);
    this.folding = this.fold().catch((e: Error) => {
      log.error({ volume: name }, `volume ${name}: folding the journal into the bitmap failed: ${e.message}; marking every region for resync`);
      try {
        bitmap.markAll();
      } catch (e2) {
        // (Every region is marked in memory: the bitmap's next sync writes its pages first.)
        log.error({ volume: name }, `volume ${name}: writing the dirty bitmap failed too (${(e2 as Error).message}); every region is marked, ` +
          `and the bitmap is written at its next sync`);
      }
    }).finally(() => {
      this.folding = null;
    });
  }

  /**
   * Switches to dirty-bitmap tracking on purpose (a first sync: every region is marked
   * already) and folds, as `folding`: a round that begins meanwhile waits for the fold,
   * which would otherwise drop it under it. No overflow is counted.
   */
  async foldOnPurpose(): Promise<void> {
    await this.quiesce();
    this.mode = 'bitmap';
    const f = this.fold();
    this.folding = f.then(() => undefined, () => undefined).finally(() => {
      this.folding = null;
    });
    await f;
  }

  /** Resolves when no fold of the journal into the bitmap is running. */
  async quiesce(): Promise<void> {
    while (this.folding) await this.folding;
  }

  /** Marks the range of every unreleased record, makes the bitmap durable, then empties the journal. */
  async fold(): Promise<void> {
    const { name, log, journal, bitmap } = this.v;
    log.debug({ volume: name }, `folding journal records ${journal.released + 1}..${journal.lastSeq} into the bitmap`);
    // (Skipped too while the bitmap marks every region: nothing a record could add.)
    if (!this.skipRead && bitmap.count < bitmap.regions) await journal.forEachUnreleased((o, l) => bitmap.mark(o, l));
    await this.v.exclusive(async () => {
      await journal.drained();
      await bitmap.sync();
      const round = this.v.round;
      if (round.canResync) {
        // A round's records are folded away with the rest: the next link begins a new round.
        // (The marker goes first: a marker must never outlive the records it points at.)
        await round.removeMark();
        round.drop();
      }
      try {
        await journal.releaseAllDurably();
      } catch (e) {
        // Without the release point on disk an emptied journal could restart its
        // numbering after a crash: keep the records (the bitmap covers them) and
        // empty the journal when a round begins.
        this.clearPending = true;
        log.warn({ volume: name },
          `volume ${name}: cannot empty the journal yet (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the bitmap holds its changes`);
        return;
      }
      this.clearPending = false;
      // (The records start-up could not read are gone now: a later fold reads what it journals.)
      this.skipRead = false;
      journal.clear();
      this.v.emptied();
      // If this fails (disk full) the old segments may come back after a crash;
      // the bitmap is durable already, so recovery folds them again.
      await journal.sync().catch((e: Error) => log.warn({ volume: name }, `volume ${name}: emptying the journal: ${e.message}`));
    });
    this.v.folded();
  }

  /** A round begins: a journal the last fold could not empty (its disk was full, clearPending) is emptied now. */
  emptyPending(): Promise<void> {
    const journal = this.v.journal;
    return this.v.exclusive(async () => {
      await journal.releaseAllDurably();
      this.clearPending = false;
      this.skipRead = false;
      journal.clear();
      this.v.emptied();
      await journal.sync();
    });
  }
}
