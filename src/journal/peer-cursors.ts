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
//
// A peer far behind the others is *detached* (docs/PEERS.md): its cursor no longer
// holds the journal. What it lacks is then in its own bitmap up to `markedUpTo` and in
// the journal after it; the write path marks the records it releases in that bitmap
// first, so the release point never passes a detached peer's `markedUpTo`.
//
// A new secondary among several gets a first sync of its own (followFrom): its cursor
// moves to the journal's end, and a bitmap of its own with every region marked stands
// for what it lacks before.
//
// A reload may add a peer to a volume served here, or take one away (docs/PEERS.md,
// "Adding and removing a secondary"): one added joins detached (addDetached), as a new
// secondary waiting for its first sync; one removed (remove) holds the journal back no more.
import { assert } from '../invariants/assert.js';

/** The peer of a volume replicated to one peer whose name the caller does not need (tests, the simulations). */
export const THE_PEER = '';

export class PeerCursors {
  private readonly acked = new Map<string, number>();
  /** Detached peers: the seq up to which the records they lack are marked in their own bitmap. */
  private readonly marked = new Map<string, number>();

  /** `peers`: the volume's peers, in its configuration's order; `released`: the journal's release point now. */
  constructor(peers: readonly string[], released: number) {
    assert(peers.length > 0, () => 'peer cursors: a volume with no peer has nothing to release');
    assert(new Set(peers).size === peers.length, () => `peer cursors: a peer named twice in ${peers.join(', ')}`);
    for (const p of peers) this.acked.set(p, released);
  }

  get peers(): string[] {
    return [...this.acked.keys()];
  }

  /** Is `peer` a peer of this volume (a reload may have taken it away while its ack was on its way)? */
  has(peer: string): boolean {
    return this.acked.has(peer);
  }

  /**
   * A reload added `peer`: it joins detached, marked up to `released` (the journal's
   * release point), its bitmap every region marked (DetachedPeers.addNew): it holds
   * the journal back from nothing until its first sync of its own begins.
   */
  addDetached(peer: string, released: number): void {
    assert(!this.acked.has(peer) && Number.isSafeInteger(released) && released >= 0,
      () => `peer cursors: ${JSON.stringify(peer)} cannot be added at ${released} to ${this.peers.join(', ')}`);
    this.acked.set(peer, released);
    this.marked.set(peer, released);
  }

  /**
   * A reload took `peer` away: its cursor goes, and the journal releases up to the
   * lowest of the others. At least one peer stays (a volume without peers has no journal to release).
   */
  remove(peer: string): void {
    assert(this.acked.has(peer) && this.acked.size >= 2, () => `peer cursors: ${JSON.stringify(peer)} cannot be removed from ${this.peers.join(', ')}`);
    this.acked.delete(peer);
    this.marked.delete(peer);
  }

  /** How many peers the volume has (no array made: asked on every host write). */
  get count(): number {
    return this.acked.size;
  }

  /** Highest seq `peer` acked as durable (or the fold or start that stands for it). */
  of(peer: string): number {
    const seq = this.acked.get(peer);
    assert(seq !== undefined, () => `peer cursors: ${JSON.stringify(peer)} is no peer of this volume (${this.peers.join(', ')})`);
    return seq;
  }

  /** Peers the journal keeps every record for (not detached). */
  get attached(): string[] {
    return this.peers.filter((p) => !this.marked.has(p));
  }

  /** Detached peers, each with the seq up to which what it lacks is marked in its bitmap. */
  get detached(): Array<{ peer: string; markedUpTo: number }> {
    return [...this.marked].map(([peer, markedUpTo]) => ({ peer, markedUpTo }));
  }

  isDetached(peer: string): boolean {
    return this.marked.has(this.peerOf(peer));
  }

  /**
   * The seq the journal may release up to: every attached peer holds it (Infinity when
   * none is attached: the write path then releases what it has marked).
   */
  get lowest(): number {
    let low = Infinity;
    for (const [p, seq] of this.acked) if (!this.marked.has(p)) low = Math.min(low, seq);
    return low;
  }

  /** The attached peer whose cursor is the lowest (the first in the configuration's order on a tie). */
  get slowest(): string {
    const low = this.lowest;
    for (const [p, seq] of this.acked) if (seq === low && !this.marked.has(p)) return p;
    throw new Error('peer cursors: no peer is attached');
  }

  /** The attached peer to detach to make room (the slowest, when another attached peer is ahead of it), or null. */
  get laggard(): string | null {
    const attached = this.attached;
    if (attached.length < 2) return null;
    const ahead = Math.max(...attached.map((p) => this.acked.get(p)!));
    return this.lowest < ahead ? this.slowest : null;
  }

  /** `peer` leaves the journal for its own bitmap: what it lacks after its cursor is marked there as the journal releases it. */
  detach(peer: string): void {
    assert(!this.isDetached(peer) && this.attached.length >= 2, () => `peer cursors: ${JSON.stringify(peer)} cannot be detached`);
    this.marked.set(peer, this.of(peer));
  }

  /**
   * Detached `peer` follows the journal again: it holds every record its bitmap marks
   * (it acked past them, or a fold moved its cursor past them and the volume's bitmap
   * holds what it lacks), so its cursor holds the journal from here on.
   */
  attach(peer: string): void {
    const at = this.marked.get(peer);
    assert(at !== undefined, () => `peer cursors: ${JSON.stringify(peer)} is not detached`);
    assert(this.of(peer) >= at, () => `peer cursors: ${JSON.stringify(peer)} holds up to ${this.of(peer)} but its bitmap is marked up to ${at}`);
    this.marked.delete(peer);
  }

  /**
   * Detached `peer` follows the journal again from `seq`: what it lacks up to it is
   * marked in its bitmap, which a round of its own sends (docs/PEERS.md).
   */
  rejoinAt(peer: string, seq: number): void {
    const at = this.marked.get(peer);
    assert(at !== undefined && seq >= at, () => `peer cursors: ${JSON.stringify(peer)} rejoins at ${seq} but is marked up to ${at}`);
    this.marked.delete(peer);
    this.acked.set(peer, Math.max(this.of(peer), seq));
  }

  /**
   * `peer`'s replica is sent whole by a first sync of its own (docs/PEERS.md): what it
   * lacks up to `seq` is in that round's bitmap, every region marked, so it follows the
   * journal from `seq` (an attached peer's cursor moves forward, never back).
   */
  followFrom(peer: string, seq: number): void {
    assert(!this.isDetached(peer) && Number.isSafeInteger(seq) && seq >= 0,
      () => `peer cursors: ${JSON.stringify(peer)} cannot follow the journal from ${seq}`);
    this.acked.set(peer, Math.max(this.of(peer), seq));
  }

  /** `peer` was found detached at a start: its bitmap holds what it lacks up to `markedUpTo` (the journal's release point). */
  detachedAt(peer: string, markedUpTo: number): void {
    this.marked.set(this.peerOf(peer), markedUpTo);
  }

  /** Records up to `seq` are marked in detached `peer`'s bitmap. */
  markedTo(peer: string, seq: number): void {
    const at = this.marked.get(peer);
    assert(at !== undefined, () => `peer cursors: ${JSON.stringify(peer)} is not detached`);
    // (A fold meanwhile may have moved it further: the volume's bitmap holds the rest.)
    this.marked.set(peer, Math.max(at, seq));
  }

  private peerOf(peer: string): string {
    this.of(peer);
    return peer;
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
    // (A detached peer's records are in the volume's bitmap now, which it lacks too.)
    for (const [p, at] of this.marked) this.marked.set(p, Math.max(at, seq));
  }
}
