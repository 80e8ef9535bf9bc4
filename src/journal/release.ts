// The journal's release: what every peer holds durably, freed from the journal, never
// past what the volume's last sync covered (invariant 2, docs/INVARIANTS.md). An ack
// releases what that sync covered; the rest waits for the volume's next sync, unless
// the journal needs the room (docs/JOURNAL.md, "Releases wait for the volume's sync").
// The write path (write-path.ts) owns one and tells it of each ack, each sync of the
// volume, each append and its close; the shipper's tick (write-path.ts's releaseIfDue, ifDue here) covers a host
// gone quiet.
import type { Logger } from '../log/log.js';
import { assert } from '../invariants/assert.js';
import { RELEASE_AT_ONCE_ABOVE, VOLUME_SYNC_INTERVAL_MS } from '../limits/limits.js';
import type { Journal } from './journal.js';
import type { PeerCursors } from './peer-cursors.js';
import type { DetachedPeers } from './detach.js';
import type { ResyncRound } from '../sync/round.js';
import type { TrackingMode } from './tracking.js';

/** What a release reads of its write path, and asks of it. */
export interface ReleaseHost {
  name: string;
  log: Logger;
  journal: Journal;
  cursors: PeerCursors;
  detached: DetachedPeers | null;
  round: ResyncRound;
  mode(): TrackingMode;
  /** Highest seq with every volume write up to it completed and synced. */
  durableAppliedSeq(): number;
  /** When the volume's last sync began (the journal's clock). */
  volumeSyncedAt(): number;
  /** A sync of volume, journal and bitmap (not a FLUSH: no barrier, the epoch stays open). */
  sync(): Promise<void>;
  /** Space was freed: writes waiting for it (on_full: block) go on. */
  freed(): void;
}

export class Releases {
  /**
   * When a release last synced the volume because it could not wait (the journal needs
   * room, a round, the bitmap): such releases may come ack after ack, so a host write does
   * not follow its record for a while after. The due sync of `ifDue` is not one of them:
   * it is the volume's periodic sync, as an epoch close's, at most once an interval.
   */
  get syncedAt(): number {
    return this.lastSync;
  }
  private lastSync = -Infinity;
  /** An ack's release waits for the volume's next sync (upTo): afterSync releases it. */
  private waits = false;
  /** The background release of releaseInBackground is under way. */
  private inBackground = false;
  /** The write path is closing: a sync releases nothing more (the journal's files are about to close). */
  private closing = false;

  constructor(private readonly h: ReleaseHost) {}

  /** Every peer holds everything up to `seq` durably; free journal space behind it. */
  release(seq: number): Promise<void> {
    return this.upTo(this.h.cursors.ackAll(seq));
  }

  /** `peer` holds everything up to `seq` durably; free the journal space every peer holds (docs/PEERS.md). */
  async releaseFor(peer: string, seq: number): Promise<void> {
    const { cursors, detached } = this.h;
    // (An ack of a peer a reload took away, on its way meanwhile: nothing waits for it.)
    if (!cursors.has(peer)) return;
    const low = cursors.ack(peer, seq);
    // A detached peer that acked up to its bitmap's marked point follows the journal again.
    if (detached && cursors.isDetached(peer)) {
      await detached.caughtUp(peer, seq);
      return this.upTo(cursors.lowest);
    }
    return this.upTo(low);
  }

  /** Releases what every peer holds now (after a change of peers, a peer detached); a failure is said, not thrown. */
  releaseHeld(): Promise<void> {
    return this.upTo(this.h.cursors.lowest).catch(this.failed);
  }

  /**
   * Releases what every peer holds, up to `seq`, never past what the volume's last sync
   * covered (invariant 2). What lies past that waits for the volume's next sync, which
   * releases it (afterSync), unless the journal needs the room or the round or tracking
   * asks for it now (atOnceNow), or the caller does (`atOnce`, the background release:
   * for room, or due at the sync interval): then the volume is synced now.
   */
  private async upTo(seq: number, atOnce: 'room' | 'due' | false = false): Promise<void> {
    const { journal, cursors, detached, round } = this.h;
    journal.held(seq);
    if (seq > this.h.durableAppliedSeq()) {
      const urgent = this.atOnceNow();
      if (atOnce !== false || urgent) {
        if (atOnce === 'room' || urgent) this.lastSync = journal.now();
        await this.h.sync();
      } else {
        this.waits = true;
      }
    }
    let target = Math.min(seq, this.h.durableAppliedSeq());
    // What a detached peer lacks is marked in its bitmap before the journal lets it go.
    if (detached && target > journal.released) {
      await detached.markUpTo(target);
      // (A peer that followed the journal again meanwhile, detach.ts's caughtUp, holds it back from here on.)
      target = Math.min(target, cursors.lowest);
    }
    try {
      await journal.release(target);
    } finally {
      // (Checked also when the release failed part-way: the journal lets go in memory first.)
      detached?.checkReleased();
      // Invariant 2, per peer: nothing a peer has not acked is let go of, but by a fold (its regions are in the bitmap).
      assert(journal.released <= cursors.lowest,
        () => `release: the journal released up to ${journal.released} ` +
          `but ${JSON.stringify(cursors.slowest)} holds only up to ${cursors.lowest}`);
    }
    this.h.freed();
    const end = round.endSeq;
    const owner = round.owner;
    if (end && (journal.released >= end || (owner !== null && cursors.of(owner) >= end))) await this.h.sync();
  }

  /**
   * An ack's release syncs the volume at once (RELEASE_AT_ONCE_ABOVE): the journal is over
   * that fraction full, or a resync round is open (its end waits for the release of its
   * last record), or the volume is tracked by the bitmap. Else it waits for the volume's
   * next sync, at a FLUSH, the redo bound, or VOLUME_SYNC_INTERVAL_MS at the latest while linked (waiting took
   * about a tenth off a replicating primary's CPU per 4 KiB write: docs/BENCHMARKS.md).
   */
  private atOnceNow(): boolean {
    const round = this.h.round;
    return this.h.mode() !== 'journal' || round.start !== 0 || round.endSeq !== 0 || this.journalNeedsRoom;
  }

  /**
   * A record was appended: if it took the journal past RELEASE_AT_ONCE_ABOVE while acks
   * wait for the volume's sync, the volume is synced and they are released now, in the
   * background, so that the journal never fills for want of that sync (a link that went
   * down after its last ack, a host that never flushes). The append that found it so is
   * not held up: half the journal is still free.
   */
  appended(): void {
    if (this.waits && this.journalNeedsRoom) this.releaseInBackground('room');
  }

  /** The volume is synced and the waiting acks released, in the background: for room, or due (ifDue). */
  private releaseInBackground(why: 'room' | 'due'): void {
    if (!this.waits || this.inBackground || this.closing) return;
    this.inBackground = true;
    void this.upTo(this.h.cursors.lowest, why)
      .catch(this.failed)
      .finally(() => { this.inBackground = false; });
  }

  /** A release that failed (a full disk, say) is said; the next ack or sync tries it again. */
  private readonly failed = (e: Error): void => {
    this.h.log.warn({ volume: this.h.name }, `volume ${this.h.name}: release failed: ${e.message}`);
  };

  /** The journal is over RELEASE_AT_ONCE_ABOVE full: a release may not wait for the volume's sync. */
  private get journalNeedsRoom(): boolean {
    return this.h.journal.usedBytes > this.h.journal.capacity * RELEASE_AT_ONCE_ABOVE;
  }

  /**
   * The shipper's tick: a release that has waited VOLUME_SYNC_INTERVAL_MS since the
   * volume's last sync (a host gone quiet without a flush: no epoch close comes to sync
   * it) syncs the volume now, in the background.
   */
  ifDue(): void {
    if (this.waits && this.h.journal.now() - this.h.volumeSyncedAt() >= VOLUME_SYNC_INTERVAL_MS) this.releaseInBackground('due');
  }

  /**
   * The volume's sync ended: what acks left for it goes now (after it: a release may
   * sync again, not within this one).
   */
  afterSync(): void {
    if (!this.waits || this.closing) return;
    this.waits = false;
    if (this.h.cursors.lowest > this.h.journal.released) void this.releaseHeld();
  }

  /** The write path closes: no sync releases any more. */
  close(): void {
    this.closing = true;
  }

  /** After the close's last flush: what acks left for the volume's next sync goes now, the flush covered it. */
  async afterLastFlush(): Promise<void> {
    if (!this.waits || this.h.mode() !== 'journal') return;
    this.waits = false;
    await this.releaseHeld();
  }
}
