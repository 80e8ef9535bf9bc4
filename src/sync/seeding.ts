// A first sync by checksum (docs/RESYNC.md, "First sync by checksum (seeding)"), the
// primary's side: a new pair's first round marks every region, then compares before
// it sends. With several peers, a new secondary's first sync is a round of its own
// (docs/PEERS.md), whose bitmap is its alone: it compares too, the others stream on.
// The primary asks the peer for the hashes of the regions from `hashedUpTo` on, a few
// requests out at once (SEED_ASKS_IN_FLIGHT: the peer hashes the next while
// this side compares the last), and every region whose bytes hash the same here leaves
// the bitmap without travelling. This object holds how far the comparison got and
// which regions it may clear; the write path reads and hashes under its range lock
// (JournaledVolume.compareRegions), the shipper asks and hands the replies over.
//
// Safe while the host writes because nothing of the round is shipped before the
// comparison ends (the peer's replica is what the round began with) and a region that
// journal records of the round touch is never cleared by hash: the peer will still
// apply those records, and after a crash they may predate a change made in bitmap
// mode that makes the region look equal now.
//
// On a link at protocol version 2 the primary first asks where the peer's replica
// holds holes (MapRequest, up to SEED_MAP_BYTES at a time): a region that is a hole
// on both sides reads as zeros on both, and leaves the bitmap unread and unhashed
// (a new pair of empty sparse volumes compares in a few round trips). Only the
// regions mapped so far are then compared by hash, skipping those already cleared.
//
// A reply belongs to the comparison that asked for it: the argument above holds of
// that round's replica and records (`touched`) only. A reply is accepted before its
// step takes the range lock and reads, hashes or maps this side, and those awaits can
// outlast the round: an overflow folds it away, and the next link begins another (all
// regions marked again, nothing touched yet, most often no comparison at all) while
// the old round's reply is still being read. Cleared then, a region touched by a
// record of the old round (a record the new round supersedes, that the volume may not
// hold after a crash) never goes, and the replica ends without it. So the step is
// checked again once its reads are done, in the turn of its clears: the comparison
// that accepted it must still be open and where the reply is (`comparison`).

import { assert } from '../invariants/assert.js';

/** Regions touched by journal records of the round (the journal's RegionSet). */
export interface TouchedRegions {
  mark(offset: number, length: number): void;
  has(region: number): boolean;
  /** The volume grew (docs/CONFIG.md, "Growing a volume"): the set covers it all, its new regions unmarked. */
  grow?(volumeSize: number): void;
}

/** Bytes of regions one HashRequest asks about (at most the request's region count). */
export const SEED_ASK_BYTES = 16 << 20;
/**
 * Hash requests out at once: the peer hashes the next ones while this side reads and
 * compares the last reply (replies come, and are compared, in order). A MapRequest
 * goes alone.
 */
export const SEED_ASKS_IN_FLIGHT = 3;
/** Bytes of the volume one MapRequest asks about: the primary maps its own side of them under one range lock. */
export const SEED_MAP_BYTES = 64 * 2 ** 30;

/** What to ask the peer next: where its replica holds holes, or the hashes of some regions. */
export type SeedAsk = { type: 'map'; offset: number; length: number } | { type: 'hash'; first: number; count: number };

export class Seeding {
  /**
   * `alone`: the volume has one peer. In a round of all, a region found equal on one
   * peer's replica would leave the bitmap for every peer, so a round of all of a volume
   * with several compares nothing (begin() opens no comparison); a first sync of one
   * peer's own, whose bitmap is that peer's alone, does (begin's `own`, docs/PEERS.md).
   */
  constructor(public alone = true) {}

  /** The next round is a new pair's first sync: it compares by hash first. */
  pending = false;
  /** The open round compares regions by hash with the peer first, and sends only those that differ. */
  active = false;
  /** How far the comparison got: regions below it may be sent. */
  hashedUpTo = 0;
  /** How far the peer's holes are known (protocol version 2): regions below it were cleared where both sides are holes. */
  mappedUpTo = 0;
  private touched: TouchedRegions | null = null;
  /** Regions the peer's map showed as holes where this side holds data: they differ (or read as zeros here), and go unhashed. */
  private differ: TouchedRegions | null = null;
  /** Bytes a first sync found equal by hash (and so did not send), since the daemon started. */
  seededBytes = 0;
  /** Bytes of hash replies received from the peer for that (about 32 per region). */
  hashBytes = 0;
  /** Which comparison is open: begin() and stop() end the one before (see the top of this file). */
  comparison = 0;
  /** Hash requests out, in the order asked (their replies come in this order): the first is the one compared next. */
  private asks: Array<{ first: number; count: number }> = [];

  /** How far the hash requests out reach (hashedUpTo when none is out). */
  get askedUpTo(): number {
    const last = this.asks[this.asks.length - 1];
    return last ? last.first + last.count : this.hashedUpTo;
  }

  /** Hash requests out (asked, not yet compared). */
  get asksOut(): number {
    return this.asks.length;
  }

  /** The regions of the request compared next (0: none out). */
  get nextCount(): number {
    return this.asks[0]?.count ?? 0;
  }

  /** Is a hash reply from region `first` one the comparison waits for (a request out)? */
  asked(first: number): boolean {
    return this.asks.some((a) => a.first === first);
  }

  /** The link went: its requests get no reply, and are asked again on the next. */
  linkDown(): void {
    this.asks = [];
  }

  /**
   * A round begins (`compare`: it is a first sync by checksum) with the regions its
   * journal records touch so far (none for a new round; after a restart, the
   * recovered records'). `own`: the round is one peer's own (its bitmap that peer's
   * alone), so it may compare with several peers.
   */
  begin(compare: boolean, touched: TouchedRegions, differ: TouchedRegions | null = null, own = false): void {
    this.comparison++;
    this.asks = [];
    this.active = compare && (this.alone || own);
    this.hashedUpTo = 0;
    this.mappedUpTo = 0;
    this.touched = touched;
    this.differ = differ;
  }

  /** The volume grew: the sets of the open comparison cover its new regions (none is marked; none is in the round). */
  grow(volumeSize: number): void {
    this.touched?.grow?.(volumeSize);
    this.differ?.grow?.(volumeSize);
  }

  /** The peer holds a hole over this range and this side data: no hash can find it equal worth asking for; it is sent. */
  differs(offset: number, length: number): void {
    this.differ?.mark(offset, length);
  }

  /** Is region `r` known to differ (a hole there, data here), so the comparison need not ask its hash? */
  knownToDiffer(r: number): boolean {
    return this.differ?.has(r) ?? false;
  }

  /** A journal record of the open round covers this range. */
  touch(offset: number, length: number): void {
    this.touched?.mark(offset, length);
  }

  /** Records of the round already reached the peer: its replica is no longer what the round began with, so regions go whole. */
  stop(): void {
    this.comparison++;
    this.active = false;
    this.asks = [];
  }

  /**
   * What to ask next (null: nothing now, or the comparison is over). `canMap`: the link
   * speaks MapRequest; `nextMarked(r)`: the first region from r still marked and not
   * known to differ (the region count if none); `maxOut`: hash requests that may be out
   * at once. Regions not marked need no comparing: the comparison moves past them. A
   * map is asked only with no hash request out (its reply moves what may be hashed).
   */
  nextAsk(regionSize: number, size: number, maxRegions: number, canMap: boolean, nextMarked: (from: number) => number, maxOut = 1): SeedAsk | null {
    if (!this.active || this.asks.length >= maxOut) return null;
    const regions = Math.ceil(size / regionSize);
    const limit = canMap ? Math.min(this.mappedUpTo, regions) : regions;
    const from = this.askedUpTo;
    const first = Math.min(nextMarked(from), limit);
    assert(first >= from, 'the comparison never goes back');
    if (this.asks.length === 0) this.hashedUpTo = first;
    if (first < limit) {
      const count = Math.min(Math.max(1, Math.floor(SEED_ASK_BYTES / regionSize)), maxRegions, limit - first);
      this.asks.push({ first, count });
      return { type: 'hash', first, count };
    }
    if (this.asks.length > 0) return null; // (the replies out come first)
    if (first >= regions) {
      this.active = false;
      return null;
    }
    const offset = this.mappedUpTo * regionSize;
    return { type: 'map', offset, length: Math.min(SEED_MAP_BYTES, size - offset) };
  }

  /**
   * Is a map reply from `offset` the one the comparison waits for? `comparison`: the
   * one that accepted it, when asked again after its step's awaits (default: the open one).
   */
  acceptsMap(offset: number, regionSize: number, bitmapRegionSize: number, comparison = this.comparison): boolean {
    return this.active && comparison === this.comparison && regionSize === bitmapRegionSize && offset === this.mappedUpTo * regionSize &&
      this.hashedUpTo === this.mappedUpTo && this.asks.length === 0;
  }

  /** The peer's holes are known up to region `upTo` (at least one region further), and `equal` regions left the bitmap. */
  mapped(upTo: number, equal: number, regionSize: number): void {
    assert(this.active, 'a map reply is taken only by the open comparison');
    this.mappedUpTo = Math.max(this.mappedUpTo + 1, upTo);
    this.seededBytes += equal * regionSize;
  }

  /** A reply came: `count` hashes (32 bytes each and the frame's head), or a map of `bytes`. */
  heard(count: number, bytes = count * 32 + 40): void {
    this.hashBytes += bytes;
  }

  /** Is a reply for regions from `first` of `regionSize` the one the comparison is at, the first out? (`comparison`: as acceptsMap.) */
  accepts(first: number, regionSize: number, bitmapRegionSize: number, comparison = this.comparison): boolean {
    return this.active && comparison === this.comparison && regionSize === bitmapRegionSize && this.asks[0]?.first === first;
  }

  /** May region `r` leave the bitmap on an equal hash: still marked, not handed to the journal, not touched by the round's records. */
  comparable(r: number, marked: boolean, handed: boolean): boolean {
    return marked && !handed && !(this.touched?.has(r) ?? false);
  }

  /** Regions first..first+count-1 were compared, and `equal` of them left the bitmap. */
  compared(first: number, count: number, equal: number, regionSize: number, regions: number): void {
    const head = this.asks[0];
    assert(this.active && head !== undefined && first === head.first && count === head.count && first >= this.hashedUpTo,
      'hashes are taken only by the open comparison, for the first request out, whole');
    this.asks.shift();
    this.hashedUpTo = first + count;
    if (this.hashedUpTo >= regions) {
      assert(this.asks.length === 0, 'no request reaches past the last region');
      this.active = false;
    }
    this.seededBytes += equal * regionSize;
  }
}
