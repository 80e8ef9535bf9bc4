// Where each peer of a volume stands in its journal (docs/PEERS.md): the highest seq
// each secondary acked as durable. The journal lets go of a record only when every
// peer holds it, so its release point is the lowest cursor (invariant 2, per peer).
// Pure: JournaledVolume (write-path.ts) owns one and releases what it allows.
//
// The cursors live in memory only. At a start every peer's cursor is the journal's
// durable release point, which was the lowest of them when it was written; each peer
// then says in Hello where it stands (at or past it), and its shipper resumes there.
// A fold (the journal emptied into the dirty bitmap, tracking.ts) moves every cursor
// up to the fold: what a peer lacked before it is in the bitmap, which a resync
// round sends (docs/RESYNC.md).
import { assert } from '../invariants/assert.js';

/** The peer of a volume replicated to one peer whose name the caller does not need (tests, the simulations). */
export const THE_PEER = '';

export class PeerCursors {
  private readonly acked = new Map<string, number>();

  /** `peers`: the volume's peers, in its configuration's order; `released`: the journal's release point now. */
  constructor(peers: readonly string[], released: number) {
    assert(peers.length > 0, () => 'peer cursors: a volume with no peer has nothing to release');
    assert(new Set(peers).size === peers.length, () => `peer cursors: a peer named twice in ${peers.join(', ')}`);
    for (const p of peers) this.acked.set(p, released);
  }

  get peers(): string[] {
    return [...this.acked.keys()];
  }

  /** Highest seq `peer` acked as durable (or the fold or start that stands for it). */
  of(peer: string): number {
    const seq = this.acked.get(peer);
    assert(seq !== undefined, () => `peer cursors: ${JSON.stringify(peer)} is no peer of this volume (${this.peers.join(', ')})`);
    return seq;
  }

  /** The seq the journal may release up to: every peer holds it. */
  get lowest(): number {
    let low = Infinity;
    for (const seq of this.acked.values()) low = Math.min(low, seq);
    return low;
  }

  /** The peer whose cursor is the lowest (the first in the configuration's order on a tie). */
  get slowest(): string {
    const low = this.lowest;
    for (const [p, seq] of this.acked) if (seq === low) return p;
    throw new Error('unreachable: a cursor holds the lowest seq');
  }

  /**
   * `peer` holds records up to `seq` durably. A cursor never goes back: a peer that
   * says less than it acked before (a link resumed from its receive log's durable
   * point, which is never below what it acked) changes nothing. Returns the release point now allowed.
   */
  ack(peer: string, seq: number): number {
    assert(Number.isSafeInteger(seq) && seq >= 0, () => `peer cursors: ack of ${seq} from ${JSON.stringify(peer)}`);
    this.acked.set(peer, Math.max(this.of(peer), seq));
    return this.lowest;
  }

  /** Every peer holds records up to `seq` (a volume with one peer; tests). */
  ackAll(seq: number): number {
    for (const p of this.acked.keys()) this.ack(p, seq);
    return this.lowest;
  }

  /** The journal was emptied into the dirty bitmap up to `seq`: no peer waits for a record at or before it. */
  folded(seq: number): void {
    for (const p of this.acked.keys()) this.acked.set(p, Math.max(this.acked.get(p)!, seq));
  }
}
