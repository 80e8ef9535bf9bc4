// The online verify's adapter (docs/RESYNC.md, "Online verify"): it drives the
// machine of src/sync/verify.ts for one volume's shipper: a batch read and hashed
// under the write path's range lock, the HashRequest on the link, the lock's release,
// the regions marked for repair, the log lines. VolumeShipper owns one and hands it
// the link's events; what the link is doing (up, paused, held, its rate cap) it reads
// through VerifyLink.
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { MAX_HASH_REGIONS, MAX_HASH_REGION_SIZE, encodeHashRequest } from './frame.js';
import { Verifier, type VerifyAction, type VerifyRun } from '../sync/verify.js';
import { regionHashOf } from '../sync/region-hashes.js';

/** The shipper's link, as the verify sees it. */
export interface VerifyLink {
  /** The link now (null: down). */
  session(): { send(parts: Buffer[]): void; close(reason: string): void; version?: number } | null;
  /** Shipping paused by the operator, or held by the peer (its log is full under a checkpoint). */
  paused(): boolean;
  heldByPeer(): boolean;
  /** The link's rate cap (bytes per second; null: none). */
  rate(): number | null;
  now(): number;
  /** The link's beginning is under way (it may open a round: a first sync, a resync), or a first sync waits for its turn. */
  beginning(): boolean;
}

export class VerifyDriver {
  private readonly verifier: Verifier;
  /** The locks on the regions of the verify batches out, by first region (held from the read until the machine lets it go). */
  private readonly locks = new Map<number, () => void>();

  constructor(
    private readonly name: string,
    private readonly jv: JournaledVolume,
    private readonly log: Logger,
    private readonly link: VerifyLink,
    /** Batches out at once (default VERIFY_BATCHES_IN_FLIGHT). */
    inFlight?: number,
  ) {
    this.verifier = new Verifier({ volume: name, maxRegions: MAX_HASH_REGIONS, maxRegionSize: MAX_HASH_REGION_SIZE, inFlight });
  }

  /** The verify running now, or the last one. */
  get run(): VerifyRun | null {
    return this.verifier.run;
  }

  /** Starts comparing every region with the peer by hash; throws why it cannot. */
  start(repair: boolean): VerifyRun {
    const { jv, link } = this;
    // (The volume's regions as its hosts see it: during a grow the bitmaps already count the new ones;
    // replication simulation seed 3090.)
    const regions = Math.ceil(jv.size / jv.bitmap.regionSize);
    const actions = this.verifier.handle({
      type: 'start', repair, regions, regionSize: jv.bitmap.regionSize, now: link.now(),
      linkUp: link.session() !== null, paused: link.paused(), heldByPeer: link.heldByPeer(), syncing: this.syncing(), ready: this.ready(),
    });
    const refused = actions.find((a) => a.type === 'refuse');
    if (refused) throw new Error(refused.reason);
    this.act(actions);
    return this.verifier.run!;
  }

  /** Is this hash reply the verify's (else it is a first sync's, or from an older link)? */
  expects(first: number, regionSize: number, count: number): boolean {
    return this.verifier.expects(first, regionSize, count);
  }

  reply(first: number, hashes: Buffer[]): void {
    this.act(this.verifier.handle({ type: 'reply', first, hashes, now: this.link.now(), ready: this.ready() }));
  }

  /** The link went down: the batch out is let go, and asked again on the next link. */
  down(): void {
    this.act(this.verifier.handle({ type: 'down' }));
  }

  /** The shipper's tick (the link is up): the reply timeout first, then the next batch. */
  tick(now: number): void {
    this.act(this.verifier.handle({ type: 'tick', now, ready: this.ready() }));
  }

  /** Batches out (asked, or being read and hashed). */
  get out(): number {
    return this.verifier.out;
  }

  /**
   * A round (an overflow meanwhile, a first sync) makes the replica a moving target: a
   * verify waits for its end, and for a link's beginning, which may open one.
   */
  private syncing(): boolean {
    return this.jv.mode !== 'journal' || this.jv.roundStart !== 0 || this.jv.seeding || this.link.beginning();
  }

  /**
   * A batch may go now: the link is up, no round is open, and the peer keeps applying
   * what is ahead of it (a batch holds host writes to its regions until then): not
   * while nothing ships, nor while the backlog would take the link long to carry.
   */
  private ready(): boolean {
    const link = this.link;
    if (!link.session() || this.syncing() || link.paused() || link.heldByPeer()) return false;
    const rate = link.rate();
    return !(rate !== null && this.jv.journal.backlogBytes > rate * 5);
  }

  private act(actions: VerifyAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'read': {
          const s = this.link.session();
          const first = a.first;
          this.jv.verifyHashes(first, a.count, regionHashOf(s?.version)).then(({ hashes, afterSeq, unlock, readBytes }) => {
            this.locks.set(first, unlock);
            this.act(this.verifier.handle({ type: 'hashed', first, hashes, afterSeq, stale: this.link.session() !== s, now: this.link.now(), readBytes }));
          }, (e: Error) => this.act(this.verifier.handle({ type: 'read-failed', first, message: e.message, now: this.link.now() })));
          break;
        }
        case 'send':
          this.link.session()?.send(encodeHashRequest({ volume: this.name, regionSize: a.regionSize, first: a.first, count: a.count, afterSeq: a.afterSeq }));
          break;
        case 'unlock': {
          const unlock = this.locks.get(a.first);
          this.locks.delete(a.first);
          unlock?.();
          break;
        }
        case 'mark':
          this.jv.markForResync(a.regions, a.reason);
          break;
        case 'log':
          this.log[a.level]({ volume: this.name }, a.message);
          break;
        case 'close':
          this.link.session()?.close(a.reason);
          break;
        case 'refuse':
          break;
      }
    }
  }
}
