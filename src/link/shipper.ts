// The shipper of one volume on the primary, as a state machine: events in, actions
// out, no I/O. Its adapter, VolumeShipper (src/link/volume-shipper.ts), reads the
// journal, sends frames through the peer session and releases what the peer acked;
// the seeded simulation runs that same adapter.
//
// It keeps a bounded window of unacked bytes in flight, resumes exactly where the
// peer's durable state ends (no gap, no duplicate), and releases journal data only
// on the peer's durable ack (docs/INVARIANTS.md, invariant 2).
import { assert } from '../invariants/assert.js';

export interface ShipperConfig {
  /** Most bytes sent and not yet acked. */
  windowBytes: number;
  /** Most bytes asked of the journal in one read. */
  batchBytes: number;
}

export type ShipperEvent =
  /** The link is up and the peer holds everything up to `peerDurableSeq`. */
  | { type: 'up'; peerDurableSeq: number }
  | { type: 'down' }
  /** The operator paused shipping (the link stays; acks still count) or resumed it. */
  | { type: 'pause'; paused: boolean }
  /**
   * The peer's receive log is full (a Hold frame): stop sending; or it has room again
   * and holds everything up to `after` durably: resume right after it.
   */
  | { type: 'hold'; held: boolean; after: number }
  /** The journal has records up to `lastSeq` (durable locally, so they may be shipped). */
  | { type: 'journal'; lastSeq: number }
  /**
   * A read asked for by a `read` action returned these records (seq, size in bytes).
   * `run`: the `run` the read was asked in (a read from an earlier run is stale: the
   * link dropped, or shipping paused, since; it is ignored).
   */
  | { type: 'read'; records: Array<{ seq: number; size: number }>; run?: number }
  | { type: 'ack'; seq: number };

export type ShipperAction =
  | { type: 'read'; fromSeq: number; maxBytes: number; limitSeq: number }
  /** Send the records just read, as one Records frame. */
  | { type: 'send'; fromSeq: number; toSeq: number; bytes: number }
  | { type: 'release'; seq: number }
  /** The peer broke the protocol: close the link with this reason. */
  | { type: 'close'; reason: string };

export class Shipper {
  /** The link is up (acks count). */
  private up = false;
  /** The operator paused shipping. */
  paused = false;
  /** The peer asked to hold (its receive log is full). */
  held = false;
  /**
   * Bumped whenever sending stops or starts again (link, pause, hold): reads and
   * frames of an earlier run are stale. The adapter tags what it reads with it.
   */
  run = 0;
  /** Records go out now: the link is up, not paused, not held. */
  get sending(): boolean {
    return this.up && !this.paused && !this.held;
  }
  private reading = false;
  /** Next seq to read and send. */
  private next = 1;
  /** Highest seq the journal may ship. */
  private shippable = 0;
  /** Highest seq the peer acked durable. */
  acked = 0;
  /** Highest seq sent to the peer on any link of this run (an ack may not pass it). */
  private sentHigh = 0;
  /** Sent, not yet acked: [seq, size] in order. Bounded by windowBytes (plus one batch). */
  private readonly inFlight: Array<{ seq: number; size: number }> = [];
  private inFlightBytes = 0;

  constructor(private readonly cfg: ShipperConfig) {}

  /** Narrows (or widens) the window: a peer with a small receive log should not be sent more than half of it unacked. */
  setWindow(bytes: number): void {
    this.cfg.windowBytes = bytes;
  }

  /** Sizes the next reads (a slow link: smaller batches, so control frames wait less). */
  setBatch(bytes: number): void {
    this.cfg.batchBytes = bytes;
  }

  get sentUnacked(): number {
    return this.inFlightBytes;
  }

  handle(e: ShipperEvent): ShipperAction[] {
    switch (e.type) {
      case 'up':
        this.up = true;
        this.held = false;
        return this.resumeAfter(e.peerDurableSeq);
      case 'down':
        this.up = false;
        this.held = false;
        this.stop();
        return [];
      case 'pause':
        if (e.paused === this.paused) return [];
        this.paused = e.paused;
        if (e.paused) {
          this.stop();
          return [];
        }
        // Acks heard while paused count: resume after the newest.
        return this.sending ? this.resumeAfter(this.acked) : [];
      case 'hold':
        if (!this.up || e.held === this.held) return [];
        this.held = e.held;
        if (e.held) {
          this.stop();
          return [];
        }
        return this.paused ? [] : this.resumeAfter(Math.max(e.after, this.acked));
      case 'journal':
        this.shippable = Math.max(this.shippable, e.lastSeq);
        return this.pump();
      case 'read': {
        // A read that outlived its run (link, pause or hold since), or came unasked.
        if (!this.sending || !this.reading || (e.run !== undefined && e.run !== this.run)) return [];
        this.reading = false;
        if (e.records.length === 0) return this.pump();
        const first = e.records[0]!.seq;
        if (first !== this.next) return [{ type: 'close', reason: `journal read returned record ${first}, expected ${this.next}` }];
        let bytes = 0;
        for (const r of e.records) {
          this.inFlight.push(r);
          bytes += r.size;
        }
        this.inFlightBytes += bytes;
        const last = e.records[e.records.length - 1]!.seq;
        // Only what the journal holds durably ships (a record the primary could lose in a
        // crash must never reach the replica), and the read stays within the window it asked.
        assert(last <= this.shippable, () => `the shipper read up to record ${last} but only ${this.shippable} is durable in the journal`);
        assert(last - first + 1 === e.records.length, () => `a journal read returned ${e.records.length} records for seqs ${first}..${last}`);
        this.next = last + 1;
        this.sentHigh = Math.max(this.sentHigh, last);
        this.checkCounters();
        return [{ type: 'send', fromSeq: first, toSeq: last, bytes }, ...this.pump()];
      }
      case 'ack': {
        if (!this.up) return [];
        if (e.seq < this.acked) return [{ type: 'close', reason: `peer acked ${e.seq} after ${this.acked}: acks went backwards` }];
        if (e.seq >= this.next) {
          // The peer logged records an earlier link sent and had not synced them when it
          // said where it stood: its sync done, it acks them. Taken only for records this
          // daemon did send it; anything beyond is a peer releasing what it never got.
          if (e.seq > this.sentHigh) {
            return [{ type: 'close', reason: `peer acked ${e.seq} but only ${this.next - 1} was sent (${this.sentHigh} on any link)` }];
          }
          this.stop();
          this.acked = e.seq;
          this.next = e.seq + 1;
          this.checkCounters();
          return [{ type: 'release', seq: e.seq }, ...this.pump()];
        }
        if (e.seq === this.acked) return [];
        this.acked = e.seq;
        while (this.inFlight.length > 0 && this.inFlight[0]!.seq <= e.seq) this.inFlightBytes -= this.inFlight.shift()!.size;
        this.checkCounters();
        // Invariant 2: a release names only what the peer acked durable, and was sent.
        return [{ type: 'release', seq: e.seq }, ...this.pump()];
      }
    }
  }

  /** Sending stops (link down, paused, held): what is in flight is sent again on resume. */
  private stop(): void {
    this.run++;
    this.reading = false;
    this.inFlight.length = 0;
    this.inFlightBytes = 0;
  }

  /** Sending (re)starts right after what the peer holds durably: nothing skipped, nothing twice. */
  private resumeAfter(peerDurableSeq: number): ShipperAction[] {
    this.stop();
    const out: ShipperAction[] = [];
    if (peerDurableSeq > this.acked) {
      // The peer had acked more than we heard (an ack lost with the last link).
      this.acked = peerDurableSeq;
      out.push({ type: 'release', seq: this.acked });
    }
    this.next = peerDurableSeq + 1;
    return [...out, ...this.pump()];
  }

  /** acked < next, in-flight bytes are those of records after acked, and never negative. */
  private checkCounters(): void {
    assert(this.acked < this.next, () => `shipper: acked ${this.acked} but the next record to send is ${this.next}`);
    assert(this.inFlightBytes >= 0, () => `shipper: ${this.inFlightBytes} bytes in flight`);
    assert(this.inFlight.length === 0 || (this.inFlight[0]!.seq > this.acked && this.inFlight[this.inFlight.length - 1]!.seq === this.next - 1),
      () => `shipper: records in flight ${this.inFlight[0]?.seq}..${this.inFlight[this.inFlight.length - 1]?.seq} ` +
        `do not run from after the ack ${this.acked} to the last sent ${this.next - 1}`);
    assert(this.inFlight.length > 0 || this.inFlightBytes === 0, () => `shipper: nothing in flight but ${this.inFlightBytes} bytes counted`);
  }

  /** Asks for more records if the link is up, the window has room and there is something to send. */
  private pump(): ShipperAction[] {
    if (!this.sending || this.reading || this.next > this.shippable) return [];
    const room = this.cfg.windowBytes - this.inFlightBytes;
    if (room <= 0) return [];
    this.reading = true;
    return [{ type: 'read', fromSeq: this.next, maxBytes: Math.min(room, this.cfg.batchBytes), limitSeq: this.shippable }];
  }
}
