// The primary's questions about a secondary's replica, answered one at a time (a peer
// cannot pile up work here): the hashes of regions (a first sync by checksum, an
// online verify) and where the replica holds holes (a first sync at protocol version
// 2). Each waits for an attach or a round opening in progress (what it applies is part
// of what is compared) and stops once its asker is gone.
import type { Disk } from '../journal/disk.js';
import { hashRegions, holesOf, type HashBuffers, type Span } from '../sync/region-hashes.js';
import type { UnitApplier } from './apply-unit.js';

export interface RequestHost {
  volume: Disk;
  units: UnitApplier;
  hashBuffers: HashBuffers | null;
  /** The last record applied to the replica. */
  applied(): number;
  /** An attach or a round opening in progress, if any. */
  busy(): Promise<void> | null;
}

export class PeerRequests {
  constructor(private readonly host: RequestHost) {}

  /**
   * SHA-256 of `count` regions of the replica from region `first` (for a first sync
   * by checksum: regions the primary finds equal need not travel). Reads what the
   * replica holds now; records still to come bring it forward in order either way.
   */
  hashRegions(regionSize: number, first: number, count: number, wanted: () => boolean = () => true, afterSeq = 0): Promise<Buffer[] | null> {
    // One at a time, and a request whose link is gone stops: a peer cannot pile up work here.
    // (After a round opening in progress: what it applies is part of what is compared.)
    const p = this.hashing.then(async () => {
      while (this.host.busy()) await this.host.busy()!.catch(() => undefined);
      // An online verify: the primary holds these regions still from afterSeq on; compare once it is applied here.
      while (this.host.applied() < afterSeq || this.host.units.gate) {
        if (!wanted()) return null;
        if (this.host.units.gate) await this.host.units.gate;
        else await this.host.units.nextEnd();
      }
      return hashRegions(this.host.volume, regionSize, first, count, wanted, this.host.hashBuffers);
    });
    this.hashing = p.catch(() => null);
    return p;
  }

  /**
   * Where the replica holds holes from `offset` (a first sync on a link at protocol
   * version 2: regions that are holes on both sides need no hash), at most `maxHoles`,
   * with how far the map reaches. In turn with the hash requests, after an attach or
   * round opening; null once `wanted()` says the asker is gone.
   */
  mapHoles(offset: number, length: number, maxHoles: number, wanted: () => boolean = () => true): Promise<{ covered: number; holes: Span[] } | null> {
    const p = this.hashing.then(async () => {
      while (this.host.busy()) await this.host.busy()!.catch(() => undefined);
      if (!wanted()) return null;
      const n = Math.max(0, Math.min(length, this.host.volume.size - offset));
      if (n === 0) return { covered: 0, holes: [] };
      return holesOf(await this.host.volume.extents(offset, n, 2 * maxHoles + 1), offset, maxHoles);
    });
    this.hashing = p.catch(() => null);
    return p;
  }

  private hashing: Promise<unknown> = Promise.resolve();
}
