// The primary's questions about a secondary's replica: the hashes of regions (a first
// sync by checksum, an online verify) and where the replica holds holes (a first sync
// at protocol version 2). Up to HASH_REQUESTS_AT_ONCE hash requests are worked on at
// once (one reads while another hashes), answered in the order asked; a map request
// waits for those before it. A peer cannot pile up work here: the rest wait in turn,
// and a request whose link is gone stops. Each waits for an attach or a round opening
// in progress (what it applies is part of what is compared).
import type { Disk } from '../journal/disk.js';
import { assert } from '../invariants/assert.js';
import { HASH_REQUESTS_AT_ONCE } from '../limits/limits.js';
import { hashRegions, holesOf, type HashBuffers, type RegionHash, type Span } from '../sync/region-hashes.js';
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
   * The hashes (`algorithm`, the link's) of `count` regions of the replica from region `first` (for a first sync
   * by checksum: regions the primary finds equal need not travel). Reads what the
   * replica holds now; records still to come bring it forward in order either way.
   */
  hashRegions(
    algorithm: RegionHash, regionSize: number, first: number, count: number, wanted: () => boolean = () => true, afterSeq = 0,
  ): Promise<Buffer[] | null> {
    const work = this.turn().then(async (done) => {
      try {
        // (After a round opening in progress: what it applies is part of what is compared.)
        while (this.host.busy()) await this.host.busy()!.catch(() => undefined);
        // An online verify: the primary holds these regions still from afterSeq on (no
        // record after it touches them), so they are compared once it is applied here.
        while (this.host.applied() < afterSeq || this.host.units.gate) {
          if (!wanted()) return null;
          if (this.host.units.gate) await this.host.units.gate;
          else await this.host.units.nextEnd();
        }
        if (!wanted()) return null;
        return await hashRegions(algorithm, this.host.volume, regionSize, first, count, wanted, this.host.hashBuffers);
      } finally {
        done();
      }
    });
    // (A failure of `work` is its asker's, once the answers before it are out; until then it must not go unhandled.)
    work.catch(() => undefined);
    return this.inOrder(() => work);
  }

  /**
   * Where the replica holds holes from `offset` (a first sync on a link at protocol
   * version 2: regions that are holes on both sides need no hash), at most `maxHoles`,
   * with how far the map reaches. In turn with the hash requests, after an attach or
   * round opening; null once `wanted()` says the asker is gone.
   */
  mapHoles(offset: number, length: number, maxHoles: number, wanted: () => boolean = () => true): Promise<{ covered: number; holes: Span[] } | null> {
    return this.inOrder(async () => {
      while (this.host.busy()) await this.host.busy()!.catch(() => undefined);
      if (!wanted()) return null;
      const n = Math.max(0, Math.min(length, this.host.volume.size - offset));
      if (n === 0) return { covered: 0, holes: [] };
      return holesOf(await this.host.volume.extents(offset, n, 2 * maxHoles + 1), offset, maxHoles);
    });
  }

  /** Hash requests being worked on, and those waiting for a turn. */
  private working = 0;
  private readonly waiting: Array<() => void> = [];
  /** The last answer in the order asked (settled, never rejected). */
  private last: Promise<unknown> = Promise.resolve();

  /** A turn to work on a hash request (at most HASH_REQUESTS_AT_ONCE at once); call the function it gives when done. */
  private turn(): Promise<() => void> {
    const done = (): void => {
      assert(this.working > 0, 'a hash request ends once');
      const next = this.waiting.shift();
      if (next) next();
      else this.working--;
    };
    if (this.working < HASH_REQUESTS_AT_ONCE) {
      this.working++;
      return Promise.resolve(done);
    }
    return new Promise((resolve) => this.waiting.push(() => resolve(done)));
  }

  /**
   * `answer()` once every earlier answer is out: a hash request's work already under
   * way, or a map request, which starts only then (it sees what the requests before it saw).
   */
  private inOrder<T>(answer: () => Promise<T>): Promise<T> {
    const p = this.last.then(answer);
    this.last = p.catch(() => null);
    return p;
  }
}
