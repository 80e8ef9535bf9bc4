// The shipper's window as policy, with no I/O and no clock of its own: how many bytes
// a volume keeps sent and not yet acked. What a byte in flight waits for is the
// durable ack: the link there, the peer's append and its sync (a group commit of
// whatever arrived meanwhile), the ack back. The heartbeat round trip sees only the
// first and the last; on a fast link the sync is most of it, and a window sized by the
// heartbeat alone idles the link and both disks while the peer syncs (issue 22). So
// the window is sized by the durable-ack round trip measured batch by batch (send to
// ack), falling back to the heartbeat's until a batch has been acked, and bounded by
// the most a shipper may keep in flight and by half the peer's receive log.
// FlightSizes keeps one volume's window, and its batch, from what its link measured.
import { MAX_WINDOW_BYTES, MIN_WINDOW_BYTES, windowCapFor } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';
import { batchFor } from '../rate/capacity.js';

/** Durable-ack samples kept: the window follows the median of the newest. */
export const ACK_RTT_SAMPLES = 16;

export interface WindowInputs {
  /** Bytes per second the link carries (the cap, or the measured send rate; null: unknown). */
  rateBytesPerSecond: number | null;
  /** The heartbeat round trip (ms; null: not measured yet). */
  heartbeatRttMs: number | null;
  /** The durable-ack round trip (ms; null: no batch acked yet on this link). */
  ackRttMs: number | null;
  /** The batch of a volume alone on the link. */
  batchBytes: number;
  /** The configured window (at most MAX_WINDOW_BYTES). */
  configuredBytes: number;
  /** Half the peer's receive log (Infinity: not known yet). */
  peerLogCapBytes: number;
}

/**
 * Two round trips of the rate plus two batches: while one batch is synced at the peer
 * the next is on its way and a third is being read and packed here. A window-limited
 * link measures window / RTT, so the next window doubles it until the link or the
 * disks, not the window, are the limit. Without a rate or a round trip: the configured
 * window. Never above the configured window, MAX_WINDOW_BYTES or half the peer's log.
 */
export function windowFor(w: WindowInputs): number {
  // (A durable ack cannot come back faster than a heartbeat: the floor, once a sample
  // has had the queue at a cap taken out.)
  const rtt = w.ackRttMs === null ? w.heartbeatRttMs : Math.max(w.ackRttMs, w.heartbeatRttMs ?? 0);
  const bdp = w.rateBytesPerSecond === null || rtt === null ? Infinity
    : Math.max(2 * w.batchBytes, Math.ceil((2 * w.rateBytesPerSecond * rtt) / 1000) + 2 * w.batchBytes);
  const window = Math.min(w.configuredBytes, MAX_WINDOW_BYTES, w.peerLogCapBytes, bdp);
  // The peer must be able to hold what it acks: never more than half its receive log in flight.
  assert(window > 0 && window <= w.peerLogCapBytes && window <= MAX_WINDOW_BYTES,
    () => `a window of ${window} bytes against a peer log cap of ${w.peerLogCapBytes} (at most ${MAX_WINDOW_BYTES})`);
  return window;
}

/**
 * The durable-ack round trip of one link: each batch's send time, and on every ack
 * the time since the oldest batch it covers was sent (that batch waited longest: the
 * group commit it rode, and any batch ahead of it). The figure is the median of the
 * newest ACK_RTT_SAMPLES samples, so one slow sync does not swing the window.
 *
 * On a rate-capped link a batch also waits for the bytes ahead of it to pass the cap:
 * that is the window itself queued, not a round trip. Counted in, it feeds back (a
 * larger window queues longer, which measures a longer round trip, which makes a
 * larger window: on a 2 Mbit/s line the window grew to 28 MB, two minutes of the line,
 * and units stopped being presented one by one). So with a cap the time the bytes
 * ahead take at the cap is taken out of each sample.
 */
export class AckRoundTrip {
  /** Batches sent and not yet acked: their last seq, when they were handed to the link, and the bytes in flight then (theirs included), oldest first. */
  private readonly sent: Array<{ seq: number; at: number; ahead: number }> = [];
  private readonly samples: number[] = [];

  /** A batch ending at `seq` was handed to the link at `at`, with `ahead` bytes in flight (this batch's included). */
  sentBatch(seq: number, at: number, ahead = 0): void {
    this.sent.push({ seq, at, ahead });
  }

  /** The peer acked everything up to `seq` durable at `at`; `capBytesPerSecond`: the link's rate cap now (null: none). */
  acked(seq: number, at: number, capBytesPerSecond: number | null = null): void {
    let oldest: { at: number; ahead: number } | null = null;
    while (this.sent.length > 0 && this.sent[0]!.seq <= seq) {
      const b = this.sent.shift()!;
      oldest ??= b;
    }
    if (oldest === null) return;
    const queued = capBytesPerSecond !== null && capBytesPerSecond > 0 ? (oldest.ahead * 1000) / capBytesPerSecond : 0;
    this.samples.push(Math.max(0, at - oldest.at - queued));
    if (this.samples.length > ACK_RTT_SAMPLES) this.samples.shift();
  }

  /** The link went down (or sending stopped): what was in flight is sent again; samples stay (the same peer, the same disks). */
  stopped(): void {
    this.sent.length = 0;
  }

  /** How long the oldest batch not yet acked has been on its way (ms; 0: none). */
  oldestAgeMs(now: number): number {
    return this.sent.length === 0 ? 0 : now - this.sent[0]!.at;
  }

  /** The median of the newest samples (ms; null: none yet). */
  get ms(): number | null {
    if (this.samples.length === 0) return null;
    const s = [...this.samples].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)]!;
  }
}

/**
 * One volume's window and batch now, from what its link measured: the batch follows
 * the link's capacity and the volume's share of it (rate/capacity.ts's batchFor), the
 * window follows the durable-ack round trip (windowFor). The shipper's machine
 * (shipper.ts) hears of each new size.
 */
export class FlightSizes {
  /** Bytes the shipper keeps in flight now (sent, not yet acked at most). */
  windowBytes: number;
  /** Bytes a batch of records may hold now: about BATCH_SECONDS of the link (rate/capacity.ts). */
  batchBytes: number;
  /** Send to durable ack, batch by batch: what a byte in flight waits for. */
  readonly ackRtt = new AckRoundTrip();
  private peerLogCap = Infinity;
  /** The last link measurement (linkMeasured): the window is sized from it and the durable-ack round trip. */
  private measured: { rate: number | null; rttMs: number | null; alone: number } | null = null;
  /** The link's capacity last measured (null: not known: the cap, or the largest batch). */
  private capacity: number | null = null;

  constructor(
    private readonly volume: string,
    /** The configured window and the largest batch. */
    private readonly configured: { windowBytes: number; batchBytes: number },
    /** The volume's share of its link now (0..1; 1: alone on it, or no one asks). */
    private readonly share: () => number,
    private readonly machine: { setWindow(bytes: number): void; setBatch(bytes: number): void },
    /** The most of the node's memory this shipper's window may hold now (Infinity: no budget kept). */
    private readonly memoryCap: () => number = () => Infinity,
  ) {
    this.windowBytes = configured.windowBytes;
    this.batchBytes = configured.batchBytes;
  }

  /** At most half the peer's receive log is in flight (it must hold what it acks). */
  fitWindow(peerLogBytes: number): void {
    this.peerLogCap = windowCapFor(peerLogBytes);
    this.applyWindow();
  }

  /**
   * Once a second, what the link did: its rate (the cap, or the measured send rate
   * when it has none), its heartbeat round trip, and its capacity (the rate it carried
   * while it was the bottleneck, bounded by the cap; null: not known yet). The batch
   * follows the capacity: a frame takes about four seconds of the link at most. The
   * window follows the durable-ack round trip: two round trips of the rate plus two
   * batches, the heartbeat's round trip until a batch has been acked.
   */
  linkMeasured(rateBytesPerSecond: number | null, rttMs: number | null, capacity: number | null): void {
    this.capacity = capacity;
    // (The window counts two batches of the volume alone on the link, whatever its share:
    // a volume sharing the link sends smaller frames, not fewer bytes in flight.)
    const alone = batchFor(capacity, this.configured.batchBytes);
    this.refreshBatch();
    this.measured = { rate: rateBytesPerSecond, rttMs, alone };
    this.applyWindow();
  }

  /**
   * A new link: its capacity is not measured yet, so its rate cap (null: none), if it
   * has one, sizes the first batches (a 4 MiB frame is 34 s of a 1 Mbit/s line).
   */
  linkUp(cap: number | null): void {
    this.capacity = cap;
    this.batchBytes = batchFor(this.capacity, this.configured.batchBytes, this.share());
    this.machine.setBatch(this.batchBytes);
  }

  /** The batch from the capacity and the share now; read before every read of the journal. */
  refreshBatch(): void {
    const b = batchFor(this.capacity, this.configured.batchBytes, this.share());
    if (b === this.batchBytes) return;
    this.batchBytes = b;
    this.machine.setBatch(b);
  }

  private applyWindow(): void {
    const m = this.measured;
    this.windowBytes = windowFor({
      rateBytesPerSecond: m?.rate ?? null, heartbeatRttMs: m?.rttMs ?? null, ackRttMs: m ? this.ackRtt.ms : null,
      batchBytes: m?.alone ?? this.configured.batchBytes, peerLogCapBytes: this.peerLogCap,
      configuredBytes: Math.min(this.configured.windowBytes, Math.max(MIN_WINDOW_BYTES, this.memoryCap())),
    });
    // The peer must be able to hold what it acks: never more than half its receive log in flight.
    assert(this.windowBytes > 0 && this.windowBytes <= this.peerLogCap,
      () => `volume ${this.volume}: a window of ${this.windowBytes} bytes against a peer log cap of ${this.peerLogCap}`);
    this.machine.setWindow(this.windowBytes);
  }
}
