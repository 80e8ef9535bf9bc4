// A first sync by checksum (docs/RESYNC.md, "First sync by checksum (seeding)"), the
// primary's side: a new pair's first round marks every region, then compares before
// it sends. The primary asks the peer for the hashes of the regions from `hashedUpTo`
// on, one request at a time, and every region whose bytes hash the same here leaves
// the bitmap without travelling. This object holds how far the comparison got and
// which regions it may clear; the write path reads and hashes under its range lock
// (JournaledVolume.compareRegions), the shipper asks and hands the replies over.
//
// Safe while the host writes because nothing of the round is shipped before the
// comparison ends (the peer's replica is what the round began with) and a region that
// journal records of the round touch is never cleared by hash: the peer will still
// apply those records, and after a crash they may predate a change made in bitmap
// mode that makes the region look equal now.

/** Regions touched by journal records of the round (the journal's RegionSet). */
export interface TouchedRegions {
  mark(offset: number, length: number): void;
  has(region: number): boolean;
}

/** Bytes of regions one HashRequest asks about (at most the request's region count). */
export const SEED_ASK_BYTES = 16 << 20;

export class Seeding {
  /** The next round is a new pair's first sync: it compares by hash first. */
  pending = false;
  /** The open round compares regions by hash with the peer first, and sends only those that differ. */
  active = false;
  /** How far the comparison got: regions below it may be sent. */
  hashedUpTo = 0;
  private touched: TouchedRegions | null = null;
  /** Bytes a first sync found equal by hash (and so did not send), since the daemon started. */
  seededBytes = 0;
  /** Bytes of hash replies received from the peer for that (about 32 per region). */
  hashBytes = 0;

  /**
   * A round begins (`compare`: it is a first sync by checksum) with the regions its
   * journal records touch so far (none for a new round; after a restart, the
   * recovered records').
   */
  begin(compare: boolean, touched: TouchedRegions): void {
    this.active = compare;
    this.hashedUpTo = 0;
    this.touched = touched;
  }

  /** A journal record of the open round covers this range. */
  touch(offset: number, length: number): void {
    this.touched?.mark(offset, length);
  }

  /** Records of the round already reached the peer: its replica is no longer what the round began with, so regions go whole. */
  stop(): void {
    this.active = false;
  }

  /** The next HashRequest: `count` regions from `first` (null: none to ask). */
  nextAsk(regionSize: number, regions: number, maxRegions: number): { first: number; count: number } | null {
    if (!this.active) return null;
    const first = this.hashedUpTo;
    const count = Math.min(Math.max(1, Math.floor(SEED_ASK_BYTES / regionSize)), maxRegions, regions - first);
    return count > 0 ? { first, count } : null;
  }

  /** A reply of `count` hashes came (for the figures: 32 bytes a hash and the frame's head). */
  heard(count: number): void {
    this.hashBytes += count * 32 + 40;
  }

  /** Is a reply for regions from `first` of `regionSize` the one the comparison is at? */
  accepts(first: number, regionSize: number, bitmapRegionSize: number): boolean {
    return this.active && regionSize === bitmapRegionSize && first === this.hashedUpTo;
  }

  /** May region `r` leave the bitmap on an equal hash: still marked, not handed to the journal, not touched by the round's records. */
  comparable(r: number, marked: boolean, handed: boolean): boolean {
    return marked && !handed && !(this.touched?.has(r) ?? false);
  }

  /** Regions first..first+count-1 were compared, and `equal` of them left the bitmap. */
  compared(first: number, count: number, equal: number, regionSize: number, regions: number): void {
    this.hashedUpTo = first + count;
    if (this.hashedUpTo >= regions) this.active = false;
    this.seededBytes += equal * regionSize;
  }
}
