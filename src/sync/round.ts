// The primary's resync round (docs/RESYNC.md): its durable marker, its first seq and
// its end, the runs of dirty regions handed to the journal, and the decisions a round
// takes: which run goes next, which regions leave the bitmap after a sync, when the
// round is complete, how much the pump may hand over now. No journal and no volume
// here: the write path (src/journal/write-path.ts) does what touches the host's writes
// (the range lock, the read, the journal append, the bitmap's bits) and asks this
// object what to do; the shipper's resync driver (src/link/resync-driver.ts) paces the pump with it.
import type { RoundMark, RoundMarker } from './round-marker.js';
import { RESYNC_JOURNAL_FRACTION, RESYNC_STEP_BYTES } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

/** A run of dirty regions journaled as one resync record, not yet durable. */
export interface HandedRun {
  seq: number;
  first: number;
  count: number;
}

export type NextRun =
  /** Hand regions first..first+count-1 to the journal. */
  | { type: 'run'; first: number; count: number }
  /** No region is left and every run handed over is durable: append the round-end barrier. */
  | { type: 'end' }
  /** Nothing now: the comparison by hash comes first, or the last runs are not durable yet. */
  | { type: 'wait' };

/** What paces the pump: the journal's figures and the link's. */
export interface PumpFigures {
  journalCapacity: number;
  backlogBytes: number;
  /** The configured link window. */
  windowBytes: number;
  /** The link's rate cap (bytes per second; null: none). */
  rate: number | null;
  regionSize: number;
  /** The largest epoch: a run must fit the peer's receive log whole. */
  maxEpochBytes: number;
}

/**
 * How much the pump may hand to the journal in one step now (null: wait, the backlog
 * is at its limit). Unacked bytes stay under a quarter of the journal (live writes keep
 * their room) and twice the link window; on a rate-capped link the backlog ahead of
 * live writes stays under about two seconds of the link's time.
 */
export function pumpStep(f: PumpFigures): number | null {
  const limit = Math.min(f.journalCapacity * RESYNC_JOURNAL_FRACTION, f.windowBytes * 2, f.rate !== null ? Math.max(f.regionSize, f.rate * 2) : Infinity);
  if (f.backlogBytes > limit) return null;
  // A run never exceeds an epoch's bound: the peer's receive log must take it whole.
  return Math.min(RESYNC_STEP_BYTES, f.maxEpochBytes, Math.max(f.regionSize, limit / 4));
}

export class ResyncRound {
  /** The open round's first seq, or 0: dirty regions are being handed to the journal. */
  start = 0;
  /** The round-end barrier's seq, once appended (0 before). */
  endSeq = 0;
  /** Bytes of the round still in the bitmap when it began, and when it began (for progress). */
  totalBytes = 0;
  startedAt = 0;
  /**
   * The peer the open round resyncs alone (docs/PEERS.md, "Rounds for one peer"), or null:
   * a round of every peer. Its records go to the other peers as padding.
   */
  owner: string | null = null;
  /**
   * Every region was marked when the open round began (a first sync): a peer that holds
   * every record of the round in the journal, whatever its replica holds, gets all of
   * the volume from it (docs/PEERS.md, "The first sync with several peers").
   */
  whole = false;
  /** Rounds for one peer that ended, while their records may still be shipped: [start, end] and whose. */
  private ended: Array<{ owner: string; start: number; end: number }> = [];
  /** Resync records journaled but not yet durable: their regions leave the bitmap once they are. */
  private handed: HandedRun[] = [];
  private readonly handedRegions = new Set<number>();

  /** `marker`: where the round's durable mark lives (the volume's state folder); null: no resync. */
  constructor(private readonly marker: RoundMarker | null) {}

  /** A round store is configured, so a bitmap can be resynced. */
  get canResync(): boolean {
    return this.marker !== null;
  }

  // (The marker's calls return its own promises: no extra turn of the event loop
  // between a marker's I/O and what the caller does next.)

  /** The mark of a round under way at the last stop (null: none). Only with a round store. */
  readMark(): Promise<RoundMark | null> {
    return this.store().read();
  }

  /** Makes the mark of a round about to begin durable (before the write path journals again). */
  writeMark(m: RoundMark): Promise<void> {
    return this.store().write(m);
  }

  /** Removes the mark durably (then drop() or close() the round). Only with a round store. */
  removeMark(): Promise<void> {
    return this.store().remove();
  }

  private store(): RoundMarker {
    if (!this.marker) throw new Error('resync needs a round store');
    return this.marker;
  }

  /**
   * The round from `start` begins (or resumes after a restart): `totalBytes` are marked in
   * the bitmap; `owner`: a round for one peer; `whole`: every region was marked at its start.
   */
  open(start: number, totalBytes: number, now: number, owner: string | null = null, whole = false): void {
    assert(this.start === 0, () => `a resync round from record ${start} opened while the one from ${this.start} is open`);
    this.start = start;
    this.owner = owner;
    this.whole = whole;
    this.endSeq = 0;
    this.handed = [];
    this.handedRegions.clear();
    this.totalBytes = totalBytes;
    this.startedAt = now;
  }

  /**
   * The journal was folded into the bitmap (an overflow): the round's records went
   * with it, and the next link begins a new round. (The marker is removed first: a
   * marker must never outlive the records it points at.)
   */
  drop(): void {
    this.start = 0;
    this.owner = null;
    this.whole = false;
    // (The fold let go of every record in the journal, those of rounds for one peer too.)
    this.ended = [];
    this.forgetRuns();
  }

  /** Overflowed again: the fold marked everything unreleased, so the runs handed over start over. */
  forgetRuns(): void {
    this.handed = [];
    this.handedRegions.clear();
    this.endSeq = 0;
  }

  /** Was region `r` handed to the journal (its record not yet durable)? */
  isHanded(r: number): boolean {
    return this.handedRegions.has(r);
  }

  /** Resync records are journaled (up to `lastSeq`) whose regions still wait for a sync to leave the bitmap. */
  unsettled(lastSeq: number): boolean {
    return this.handed.length > 0 && this.handed[0]!.seq <= lastSeq;
  }

  /** Bytes of dirty regions (`dirtyCount` of them) not yet handed to the journal. */
  leftBytes(dirtyCount: number, regionSize: number): number {
    return this.start ? Math.max(0, dirtyCount - this.handedRegions.size) * regionSize : 0;
  }

  /**
   * The next run of dirty regions to hand over: contiguous, none handed already, at
   * most `maxBytes` (at least one region). While `comparing` (a first sync by checksum
   * not done comparing), no run goes while any region is left.
   */
  nextRun(dirty: Iterable<number>, regionSize: number, maxBytes: number, comparing: boolean): NextRun {
    let first = -1;
    let count = 0;
    for (const r of dirty) {
      if (comparing) return { type: 'wait' }; // the comparison with the peer comes first, then the data
      if (this.handedRegions.has(r)) {
        if (first >= 0) break;
        continue;
      }
      if (first < 0) first = r;
      else if (r !== first + count) break;
      count++;
      if ((count + 1) * regionSize > maxBytes) break;
    }
    if (first >= 0) return { type: 'run', first, count };
    // Wait for the last runs to become durable.
    return this.handed.length > 0 ? { type: 'wait' } : { type: 'end' };
  }

  /** The run was journaled as record `seq`. */
  handedOver(seq: number, first: number, count: number): void {
    this.handed.push({ seq, first, count });
    for (let r = first; r < first + count; r++) this.handedRegions.add(r);
  }

  /** After a sync covering `durable`: the regions of the runs now durable, which leave the bitmap. */
  settle(durable: number): number[] {
    const out: number[] = [];
    while (this.handed.length > 0 && this.handed[0]!.seq <= durable) {
      const h = this.handed.shift()!;
      for (let r = h.first; r < h.first + h.count; r++) {
        out.push(r);
        this.handedRegions.delete(r);
      }
    }
    return out;
  }

  /**
   * The round is complete once the peer holds its end (the end is durable here and
   * released, which only the peer's ack does) and no region is left: until then a peer
   * that has not opened the round must still be sent Resync.
   */
  complete(durable: number, released: number, regionsLeft: number): boolean {
    return this.endSeq !== 0 && this.endSeq <= durable && this.endSeq <= released && regionsLeft === 0;
  }

  /** The round is complete (its marker removed, the bitmap synced before that). */
  close(): void {
    if (this.owner !== null) this.ended.push({ owner: this.owner, start: this.start, end: this.endSeq });
    this.start = 0;
    this.endSeq = 0;
    this.owner = null;
    this.whole = false;
  }

  /**
   * The open round is `owner`'s own, and a reload took that peer away: it ends
   * without its end. The records it journaled up to `lastSeq` stay its own, so the
   * other peers are still sent them as padding (ownerOf).
   */
  abandon(owner: string, lastSeq: number): void {
    assert(this.start !== 0 && this.owner === owner && lastSeq >= this.start - 1,
      () => `a resync round of ${owner} abandoned at record ${lastSeq}, but the round open is ${this.owner ?? 'every peer'}'s from ${this.start}`);
    this.ended.push({ owner, start: this.start, end: this.endSeq || lastSeq });
    this.start = 0;
    this.endSeq = 0;
    this.owner = null;
    this.whole = false;
    this.forgetRuns();
  }

  /** A round for one peer is open, or one ended whose records may still be shipped: the others are sent them as padding. */
  get ownRounds(): boolean {
    return this.owner !== null || this.ended.length > 0;
  }

  /**
   * The peer whose round for one peer record `seq` belongs to (null: no such round's),
   * among the open round and those ended whose records the journal still holds (it let
   * go of everything up to `released`).
   */
  ownerOf(seq: number, released: number): string | null {
    if (this.ended.length > 0 && this.ended[0]!.end <= released) this.ended = this.ended.filter((s) => s.end > released);
    if (this.owner !== null && seq >= this.start && (this.endSeq === 0 || seq <= this.endSeq)) return this.owner;
    for (const s of this.ended) if (seq >= s.start && seq <= s.end) return s.owner;
    return null;
  }
}
