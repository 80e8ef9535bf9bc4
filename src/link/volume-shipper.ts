// The thin adapter around one volume's Shipper state machine: it reads the journal,
// hands Records frames to the link session, and releases journal data on acks. No
// sockets or timers of its own: the link manager (or the simulation) calls tick()
// and passes the session in, so the seeded simulation runs this very code. It also
// drives a resync round's pump and a first sync's hash requests (their state and
// decisions: src/sync/round.ts, seeding.ts), and hands the link's events to the online
// verify (verify-driver.ts); coalescing plans come from src/coalesce/planner.ts.
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { FLAG_RESYNC, RECORD_HEADER_SIZE, type JournalRecord } from '../journal/record.js';
import { formatBytes } from '../units/units.js';
import { encodeRecordsFrame } from './records-frame.js';
import { UnitPlanner } from '../coalesce/planner.js';
import { MAX_HASH_REGIONS, encodeHashRequest, encodeMapRequest, encodeResync } from './frame.js';
import { Shipper, type ShipperAction, type ShipperEvent } from './shipper.js';
import { batchFor } from '../rate/capacity.js';
import type { FrameClass } from '../rate/scheduler.js';
import { ExposureTracker } from '../rpo/exposure.js';
import { assert } from '../invariants/assert.js';
import { MAX_WINDOW_BYTES, windowCapFor } from '../limits/limits.js';
import { AckRoundTrip, windowFor } from './window.js';
import { pumpStep } from '../sync/round.js';
import type { SeedAsk, Span } from '../sync/seeding.js';
import type { VerifyRun } from '../sync/verify.js';
import { VerifyDriver } from './verify-driver.js';
import type { Lease, MemoryBudget } from '../memory/budget.js';

/** The link as the shipper sees it. */
export interface ShipperSession {
  /** `cls`: the frame's class on a shared link (scheduler.ts; default: Records frames live, others resync). */
  send(parts: Buffer[], cls?: FrameClass): void;
  close(reason: string): void;
  /** The link this session rides on (the link manager matches it when the link closes). */
  link?: unknown;
  /** Forgets this volume's frames still waiting to go (shipping paused: they are read again on resume). */
  drop?(): void;
  /** Packs a batch of records into its frame (zero writes, compression: src/compress); absent: a plain Records frame. */
  encode?(records: JournalRecord[]): Promise<Buffer[]> | Buffer[];
  /** The protocol version the link agreed (absent: 1); version 2 maps the peer's holes in a first sync. */
  version?: number;
}

export interface VolumeShipperOptions {
  /** Most bytes sent and not yet acked. */
  windowBytes: number;
  /** Most bytes read from the journal for one Records frame. */
  batchBytes: number;
  /** A primary-chosen barrier closes an epoch the host has left open this long. */
  selfSyncMs: number;
  /** Coalesce batches that span several epochs (src/coalesce); read at every batch. */
  coalesce?: () => boolean;
  /** Most journal bytes one coalesced unit plans over when far behind (default COALESCE_SCOPE, src/coalesce/planner.ts). */
  coalesceScopeBytes?: number;
  /**
   * The node's memory budget (src/memory/budget.ts): every batch is a `send` lease from
   * before its journal read until the peer acks it; absent: not counted.
   */
  memory?: MemoryBudget;
  now: () => number;
}

export const DEFAULT_SHIPPING: Omit<VolumeShipperOptions, 'now'> = { windowBytes: MAX_WINDOW_BYTES, batchBytes: 4 << 20, selfSyncMs: 1000 };

export class VolumeShipper {
  private readonly shipper: Shipper;
  session: ShipperSession | null = null;
  private notified = 0;
  private undurableSince = 0;
  private durableSeen = 0;
  private gapReported = false;
  private resyncing = false;
  /** A HashRequest or MapRequest is out (first sync by checksum): what it asked. */
  private asked: SeedAsk | null = null;

  constructor(
    private readonly name: string,
    private readonly jv: JournaledVolume,
    private readonly log: Logger,
    private readonly opts: VolumeShipperOptions,
  ) {
    this.shipper = new Shipper({ windowBytes: opts.windowBytes, batchBytes: opts.batchBytes });
    this.verifier = new VerifyDriver(name, jv, log, {
      session: () => this.session, paused: () => this.paused, heldByPeer: () => this.heldByPeer, rate: () => this.rate?.() ?? null, now: () => opts.now(),
    });
    this.planner = new UnitPlanner({ coalesce: opts.coalesce, scopeBytes: opts.coalesceScopeBytes, readBytes: opts.batchBytes });
    this.windowBytes = opts.windowBytes;
    this.batchBytes = opts.batchBytes;
  }

  /** At most half the peer's receive log is in flight (it must hold what it acks). */
  fitWindow(peerLogBytes: number): void {
    this.peerLogCap = windowCapFor(peerLogBytes);
    this.applyWindow();
  }

  private peerLogCap = Infinity;
  /** The last link measurement (linkMeasured): the window is sized from it and the durable-ack round trip. */
  private measured: { rate: number | null; rttMs: number | null; alone: number } | null = null;
  /** Bytes the shipper keeps in flight now (sent, not yet acked at most). */
  windowBytes = 0;

  /** Bytes a batch of records may hold now: about BATCH_SECONDS of the link (rate/capacity.ts). */
  batchBytes = 0;

  /** Send to durable ack, batch by batch (src/link/window.ts): what a byte in flight waits for. */
  private readonly ackRtt = new AckRoundTrip();

  /** The durable-ack round trip now (ms; null: no batch acked yet). */
  get ackRttMs(): number | null {
    return this.ackRtt.ms;
  }

  /**
   * Once a second, what the link did: its rate (the cap, or the measured send rate
   * when it has none), its heartbeat round trip, and its capacity (the rate it carried
   * while it was the bottleneck, bounded by the cap; null: not known yet). The batch
   * follows the capacity: a frame takes about four seconds of the link at most. The
   * window follows the durable-ack round trip (window.ts): two round trips of the rate
   * plus two batches, the heartbeat's round trip until a batch has been acked.
   */
  linkMeasured(rateBytesPerSecond: number | null, rttMs: number | null, capacity: number | null = null): void {
    this.capacity = capacity;
    // (The window counts two batches of the volume alone on the link, whatever its share:
    // a volume sharing the link sends smaller frames, not fewer bytes in flight.)
    const alone = batchFor(capacity, this.opts.batchBytes);
    this.refreshBatch();
    this.measured = { rate: rateBytesPerSecond, rttMs, alone };
    this.applyWindow();
  }

  /** The link's capacity last measured (null: not known: the cap, or the largest batch). */
  private capacity: number | null = null;

  /**
   * This volume's share of the link now (0..1; null: alone on it): its weight over
   * those of the link's volumes with a backlog (the link manager's, scheduler.ts's
   * shareOf). Several volumes with a backlog make the batch about a second of the
   * volume's share, so each gets a turn within about a second.
   */
  share: (() => number) | null = null;

  /** The batch from the capacity and the share now; read before every read of the journal. */
  private refreshBatch(): void {
    const b = batchFor(this.capacity, this.opts.batchBytes, this.share?.() ?? 1);
    if (b === this.batchBytes) return;
    this.batchBytes = b;
    this.shipper.setBatch(b);
  }

  private applyWindow(): void {
    const m = this.measured;
    this.windowBytes = windowFor({
      rateBytesPerSecond: m?.rate ?? null, heartbeatRttMs: m?.rttMs ?? null, ackRttMs: m ? this.ackRtt.ms : null,
      batchBytes: m?.alone ?? this.opts.batchBytes, configuredBytes: this.opts.windowBytes, peerLogCapBytes: this.peerLogCap,
    });
    // The peer must be able to hold what it acks: never more than half its receive log in flight.
    assert(this.windowBytes > 0 && this.windowBytes <= this.peerLogCap, () => `volume ${this.name}: a window of ${this.windowBytes} bytes against a peer log cap of ${this.peerLogCap}`);
    this.shipper.setWindow(this.windowBytes);
  }

  /**
   * No room for another batch in the window: what is in flight waits in the link's
   * buffers (node's, the kernel's) or on the wire. The link, or the peer, is the
   * bottleneck.
   */
  get windowFull(): boolean {
    return this.shipper.sentUnacked + this.batchBytes > this.windowBytes;
  }

  /**
   * How long the oldest batch not yet acked has been on its way (ms; 0: none). Past a
   * second, data queues somewhere on the path: in the pacer, node's or the kernel's
   * socket buffer, or the line.
   */
  unackedAgeMs(now = this.opts.now()): number {
    return this.ackRtt.oldestAgeMs(now);
  }

  /** What the peer could present if promoted now, from what was sent and acked (src/rpo/exposure.ts). */
  private readonly exposure = new ExposureTracker();

  /**
   * How old the oldest write is that a promote at the peer would lose now (ms): the
   * oldest one not yet acked, or, if older, the first acked one past the newest flush
   * point the peer could present (inside a coalesced unit it holds but cannot apply).
   */
  lagMs(now = this.opts.now()): number {
    return Math.max(this.jv.journal.lagMs(now), this.exposure.lostAgeMs(now));
  }

  /** Highest seq the peer acked durable on this link. */
  get acked(): number {
    return this.shipper.acked;
  }

  /**
   * The link is up; the peer holds records up to `peerDurable` and has the resync
   * round starting at `peerRound` open (0: none). A volume in bitmap mode begins a
   * resync round; a round the peer has not opened is announced with a Resync frame.
   */
  up(s: ShipperSession, peerDurable: number, peerRound = 0, peerFirstMeeting = false): void {
    this.session = s;
    // A new link's capacity is not measured yet: its cap, if it has one, sizes the
    // first batches (a 4 MiB frame is 34 s of a 1 Mbit/s line).
    this.capacity = this.rate?.() ?? null;
    this.batchBytes = batchFor(this.capacity, this.opts.batchBytes, this.share?.() ?? 1);
    this.shipper.setBatch(this.batchBytes);
    this.beginning = true;
    void this.begin(s, peerDurable, peerRound, peerFirstMeeting).catch((e: Error) => {
      if (this.session === s) s.close(`volume ${this.name}: ${e.message}`);
    }).finally(() => {
      if (this.session === s || this.session === null) this.beginning = false;
    });
  }

  /** A link's beginning (first sync, round start) is under way: the bitmap mode it sets is not an overflow. */
  private beginning = false;

  private async begin(s: ShipperSession, peerDurable: number, peerRound: number, peerFirstMeeting: boolean): Promise<void> {
    const j = this.jv.journal;
    // (Not when a round is already open here: a link that dropped before its Resync
    // reached the peer announces that round again below.)
    if (peerFirstMeeting && this.jv.canResync && peerDurable === 0 && peerRound === 0 && this.jv.roundStart === 0 && this.jv.mode === 'journal') {
      // A new pair (the secondary has never held this volume): the first sync sends all of it.
      await this.jv.beginInitialSync();
    }
    if (this.jv.mode === 'bitmap' && this.jv.canResync) await this.jv.startResync();
    if (this.session !== s) return;
    let resume = peerDurable;
    const round = this.jv.roundStart;
    // The peer must open the round (or finish its jump into it), unless it already holds the round's end.
    const peerPassedRound = this.jv.roundEnd > 0 && peerDurable >= this.jv.roundEnd;
    if (round && !peerPassedRound && (peerRound !== round || peerDurable < round - 1)) {
      // Everything before the round that the peer lacks is in the round's regions.
      s.send(encodeResync(this.name, round));
      // A peer short of the round's start jumps to it; one past it (it already holds
      // records of the round) continues where it is, inside the round.
      resume = Math.max(peerDurable, round - 1);
    }
    if (resume < j.released && this.jv.canResync && this.jv.mode === 'journal') {
      // The peer lacks records this journal let go of without its ack (folded into the
      // bitmap on a full disk): a new round covers them.
      const round2 = await this.jv.restartRound(`the peer holds up to record ${resume} but the journal starts at ${j.released + 1}`);
      if (this.session !== s) return;
      s.send(encodeResync(this.name, round2));
      resume = Math.max(peerDurable, round2 - 1);
    }
    // Records the peer lacks must still be in the journal (or covered by a round).
    const gap = this.jv.mode === 'bitmap' || resume < j.released;
    if (gap) {
      if (!this.gapReported) {
        this.gapReported = true;
        this.log.warn({ volume: this.name },
          `volume ${this.name}: ${this.jv.mode === 'bitmap' ? `${this.jv.bitmap.count} regions are tracked in the dirty bitmap` : `the peer holds up to record ${peerDurable} but the journal starts at ${j.released + 1}`}; ` +
          'shipping waits for a resync of those regions');
      }
      this.session = null;
      return;
    }
    if (resume > j.lastSeq) {
      // The peer holds records this journal never wrote durably: a split or a lost journal.
      s.close(`volume ${this.name}: the peer holds up to record ${resume} but this journal ends at ${j.lastSeq}`);
      this.session = null;
      return;
    }
    if (this.jv.seeding && resume >= this.jv.roundStart) {
      // The peer already holds records of this round: its replica is no longer what
      // the round began with, so regions are sent whole rather than compared.
      this.jv.seed.stop();
      this.log.info({ volume: this.name }, `volume ${this.name}: the first sync resumes after records reached the peer; the remaining regions are sent whole`);
    }
    this.gapReported = false;
    this.undurableSince = 0;
    this.notified = 0;
    this.exposure.reset(resume);
    // (Paused by the operator: the machine releases what the peer holds and sends nothing.)
    this.run(this.handle({ type: 'up', peerDurableSeq: resume }));
  }

  down(): void {
    this.session = null;
    this.ackRtt.stopped();
    this.verifier.down();
    this.asked = null;
    this.undurableSince = 0;
    this.handle({ type: 'down' });
  }

  ack(seq: number): void {
    // (Counted even while paused or held: a resume starts after what the peer holds.)
    this.exposure.acked(seq);
    this.run(this.handle({ type: 'ack', seq }));
  }

  /**
   * The link's rate cap now (bytes per second; null: none). The resync and the verify
   * pace on it alone, never on the measured capacity: what they send is what measures
   * it, so a figure taken while the link stalled would hold them back for good.
   */
  rate: (() => number | null) | null = null;

  /** The operator paused shipping (offsite pause): the link stays, nothing is sent. */
  get paused(): boolean {
    return this.shipper.paused;
  }

  pause(paused: boolean): void {
    if (paused === this.paused) return;
    const actions = this.handle({ type: 'pause', paused });
    if (!this.session) return;
    if (paused) {
      this.ackRtt.stopped();
      this.session.drop?.();
      this.log.info({ volume: this.name }, `volume ${this.name}: shipping paused by the operator; the journal keeps the backlog`);
      return;
    }
    this.log.info({ volume: this.name }, `volume ${this.name}: shipping resumed after record ${this.shipper.acked}`);
    this.notified = 0;
    this.run(actions);
  }

  /** The peer paused shipping (its log is full under a checkpoint). */
  get heldByPeer(): boolean {
    return this.shipper.held;
  }

  /**
   * A Hold frame: the peer's receive log is full (a checkpoint holds its replica,
   * or applying lags behind the link). Shipping stops (the journal keeps everything) until the peer says go,
   * then resumes right after `after`, which the peer holds durably.
   */
  peerHold(held: boolean, after: number): void {
    if (!this.session) return;
    if (held) {
      if (this.heldByPeer) return;
      this.handle({ type: 'hold', held: true, after });
      this.ackRtt.stopped();
      this.session.drop?.();
      this.log.debug({ volume: this.name }, `volume ${this.name}: the peer's receive log is full; shipping paused, the journal holds the backlog`);
      return;
    }
    if (!this.heldByPeer) return;
    this.notified = 0;
    const actions = this.handle({ type: 'hold', held: false, after });
    if (this.paused) return;
    this.log.debug({ volume: this.name }, `volume ${this.name}: the peer has room again; shipping resumes after record ${after}`);
    this.run(actions);
  }

  /** Ships what is durable; makes the journal durable itself when the host has not flushed for a while. */
  tick(): void {
    if (!this.session) return;
    if (this.jv.mode === 'bitmap' && this.jv.canResync && !this.jv.folding && !this.beginning) {
      // The journal overflowed while the link was up: the next link begins a new round.
      this.session.close(`volume ${this.name}: the journal overflowed; reconnecting to begin a resync round`);
      return;
    }
    const j = this.jv.journal;
    const now = this.opts.now();
    if (j.durableSeq > this.durableSeen) {
      // The host's flushes make progress: the clock for a primary-chosen boundary restarts.
      this.durableSeen = j.durableSeq;
      this.undurableSince = 0;
    }
    if (j.lastSeq > j.durableSeq && this.jv.mode === 'journal') {
      if (this.undurableSince === 0) this.undurableSince = now;
      else if (now - this.undurableSince > this.opts.selfSyncMs) {
        this.undurableSince = 0;
        // A primary-chosen boundary: closes the epoch so the replica can advance without a host FLUSH.
        void this.jv.flush().catch(() => undefined);
      }
    } else {
      this.undurableSince = 0;
    }
    // (While a first sync compares regions by hash, records wait: see compareRegions.)
    if (j.durableSeq > this.notified && !this.jv.seeding) {
      this.notified = j.durableSeq;
      this.run(this.handle({ type: 'journal', lastSeq: j.durableSeq }));
    }
    this.pumpResync();
    // (The reply timeout first: a batch out too long stops the verify and closes the link.)
    this.verifier.tick(now);
  }

  /**
   * Asks the peer for what the comparison needs next (a first sync by checksum, one
   * request at a time): where its replica holds holes (a link at protocol version 2),
   * or the hashes of the next regions still marked.
   */
  private askHashes(): void {
    if (!this.session || this.asked) return;
    const bitmap = this.jv.bitmap;
    const rs = bitmap.regionSize;
    const nextMarked = (from: number): number => {
      for (const r of bitmap.dirtyRegions(from)) return r;
      return bitmap.regions;
    };
    const ask = this.jv.seed.nextAsk(rs, this.jv.size, MAX_HASH_REGIONS, (this.session.version ?? 1) >= 2, nextMarked);
    if (!ask) return;
    this.asked = ask;
    if (ask.type === 'map') this.session.send(encodeMapRequest({ volume: this.name, offset: ask.offset, length: ask.length }));
    else this.session.send(encodeHashRequest({ volume: this.name, regionSize: rs, first: ask.first, count: ask.count }));
  }

  /** The peer's holes arrived: regions that are holes on both sides leave the round, then the comparison goes on. */
  mapReply(offset: number, covered: number, holes: Span[]): void {
    const a = this.asked;
    if (!a || a.type !== 'map' || a.offset !== offset) return; // a reply from an older link
    if (covered > a.length) {
      this.session?.close(`volume ${this.name}: the peer's map covers ${covered} bytes from ${offset}, more than the ${a.length} asked`);
      return;
    }
    this.jv.seed.heard(0, 20 + holes.length * 16);
    this.settleAsk(this.jv.clearHoles(offset, covered, holes), 'comparing holes with the peer');
  }

  private settleAsk(done: Promise<number>, what: string): void {
    void done.then(() => {
      this.asked = null;
      this.askHashes();
      this.pumpResync();
    }, (e: Error) => {
      this.asked = null;
      this.session?.close(`volume ${this.name}: ${what} failed: ${e.message}`);
    });
  }

  // --- online verify (verify-driver.ts) -----------------------------------------

  private readonly verifier: VerifyDriver;

  /** The verify running now, or the last one. */
  get verify(): VerifyRun | null {
    return this.verifier.run;
  }

  /** Starts comparing every region with the peer by hash (docs/RESYNC.md, "Online verify"); throws why it cannot. */
  startVerify(repair: boolean): VerifyRun {
    return this.verifier.start(repair);
  }

  /** The peer's hashes arrived: equal regions leave the round, then the pump goes on. */
  hashReply(first: number, regionSize: number, hashes: Buffer[]): void {
    if (this.verifier.expects(first, regionSize, hashes.length)) {
      this.verifier.reply(first, hashes);
      return;
    }
    const a = this.asked;
    if (!a || a.type !== 'hash' || a.first !== first) return; // a reply from an older link
    this.jv.seed.heard(hashes.length);
    this.settleAsk(this.jv.compareRegions(first, regionSize, hashes), 'comparing regions by hash');
  }

  /**
   * Hands dirty regions to the journal while a round is open and the link is up, as
   * fast as src/sync/round.ts's pumpStep allows: what waits to be acked stays under a
   * quarter of the journal (so live writes keep their room) and within the link's
   * window, and on a rate-capped link at most about two seconds of the link's time is
   * ahead of live writes (a resync yields to them, and the RPO of new writes holds).
   */
  private pumpResync(): void {
    this.askHashes();
    if (this.resyncing || !this.session || !this.jv.roundStart) return;
    const j = this.jv.journal;
    const step = pumpStep({
      journalCapacity: j.capacity, backlogBytes: j.backlogBytes, windowBytes: this.opts.windowBytes, rate: this.rate?.() ?? null,
      regionSize: this.jv.bitmap.regionSize, maxEpochBytes: this.jv.maxEpochBytes,
    });
    if (step === null) {
      this.makeDurable();
      return;
    }
    this.resyncing = true;
    this.jv.resyncStep(step).then((more) => {
      this.resyncing = false;
      if (!more) {
        // Make what was handed over durable, so its regions leave the bitmap.
        if (this.jv.roundStart) this.makeDurable();
        return;
      }
      this.makeDurable();
      this.pumpResync();
    }, (e: Error) => {
      this.resyncing = false;
      this.log.error({ volume: this.name }, `volume ${this.name}: resync read failed: ${e.message}`);
    });
  }

  /**
   * Resync records ship only once durable here: one group-committed flush at a time
   * keeps them moving (rather than waiting for the primary-chosen boundary's timer),
   * and the shipper hears of them at once.
   */
  private makeDurable(): void {
    if (this.flushing) return;
    const j = this.jv.journal;
    if (j.lastSeq <= j.durableSeq && !this.jv.resyncUnsettled) return;
    this.flushing = true;
    let failed = false;
    this.jv.flush().catch(() => (failed = true)).finally(() => {
      this.flushing = false;
      if (failed) return; // (the write path has said why; the next tick tries again)
      if (this.session && j.durableSeq > this.notified && !this.jv.seeding) {
        this.notified = j.durableSeq;
        this.run(this.handle({ type: 'journal', lastSeq: j.durableSeq }));
      }
      if (this.session && (j.lastSeq > j.durableSeq || this.jv.resyncUnsettled)) this.makeDurable();
      else this.pumpResync();
    }).catch((e: Error) => this.log.error({ volume: this.name }, `volume ${this.name}: after a resync flush: ${e.message}`));
  }

  private flushing = false;
  /** (The machine's run: a read or a packed batch from an earlier run is never sent, so the peer never sees a record twice.) */
  private handle(e: ShipperEvent): ShipperAction[] {
    if (this.share) this.refreshBatch();
    const run = this.shipper.run;
    const out = this.shipper.handle(e);
    // Sending stopped or began again (link, pause, hold): what was in flight is read
    // again on resume, so its leases go back now, and a read waiting for one is withdrawn.
    if (this.shipper.run !== run) this.dropLeases();
    return out;
  }

  // --- the memory budget ------------------------------------------------------------

  /** Batches read and not yet acked, each with its lease, in seq order (their last seq). */
  private readonly leases: Array<{ seq: number; lease: Lease }> = [];
  /** A read waiting for its lease (at most one: the machine reads one batch at a time). */
  private claim: { cancel(): void } | null = null;

  /** Bytes of the node's budget this volume holds now (batches read, packed, queued or in flight). */
  get leasedBytes(): number {
    return this.leases.reduce((n, l) => n + l.lease.bytes, 0);
  }

  /** Waits for a read's lease (a burst of many volumes queues here, in order). */
  get waitingForMemory(): boolean {
    return this.claim !== null;
  }

  private dropLeases(): void {
    this.claim?.cancel();
    this.claim = null;
    for (const l of this.leases.splice(0)) l.lease.release();
  }

  /** The peer acked up to `seq`: the batches it covers leave memory (their leases go back). */
  private releaseAcked(seq: number): void {
    while (this.leases.length > 0 && this.leases[0]!.seq <= seq) this.leases.shift()!.lease.release();
  }

  /** A lease for a read of up to `bytes`, or null when no budget is kept; stale (null lease, false) if sending stopped meanwhile. */
  private leaseFor(bytes: number, run: number): Promise<{ lease: Lease | null; current: boolean }> {
    const m = this.opts.memory;
    if (!m) return Promise.resolve({ lease: null, current: true });
    const now = m.tryAcquire(bytes, 'send');
    if (now) return Promise.resolve({ lease: now, current: true });
    const c = m.acquire(bytes, 'send');
    this.claim = c;
    return c.granted.then((lease) => {
      if (this.claim === c) this.claim = null;
      if (run !== this.shipper.run) {
        // (Withdrawn by dropLeases after the grant was queued: give it back.)
        c.cancel();
        return { lease: null, current: false };
      }
      return { lease, current: true };
    });
  }

  /** Batches being packed (compressed in a worker): sent in the order they were read. */
  private packing: Promise<void> = Promise.resolve();

  /** Coalescing (src/coalesce/planner.ts): Skip records sent, and their payload bytes, since the daemon started. */
  private readonly planner: UnitPlanner;
  get coalescedRecords(): number {
    return this.planner.records;
  }

  get coalescedBytes(): number {
    return this.planner.bytes;
  }

  private sendRecords(s: ShipperSession, records: JournalRecord[], run: number): void {
    // A batch holding records of a resync round goes in the resync class: the live
    // records of other volumes pass it on a short link (docs/LINK.md).
    const cls: FrameClass = records.some((r) => (r.flags & FLAG_RESYNC) !== 0) ? 'resync' : 'live';
    if (!s.encode) {
      s.send(encodeRecordsFrame(this.name, records), cls);
      return;
    }
    const framed = s.encode(records);
    if (Array.isArray(framed)) {
      this.packing = this.packing.then(() => this.sendIfCurrent(s, framed, run, cls));
      return;
    }
    const prev = this.packing;
    this.packing = Promise.all([prev, framed]).then(([, f]) => this.sendIfCurrent(s, f, run, cls), (e: Error) => {
      if (s === this.session) s.close(`volume ${this.name}: packing records failed: ${e.message}`);
    });
  }

  private sendIfCurrent(s: ShipperSession, frame: Buffer[], run: number, cls: FrameClass): void {
    if (s === this.session && run === this.shipper.run && this.shipper.sending) s.send(frame, cls);
  }

  /**
   * It has something to send and may send it: the link is up, not paused or held, and
   * the journal holds records the peer has not acked (or a round is open).
   */
  get wantsLink(): boolean {
    return this.session !== null && this.shipper.sending && (this.jv.journal.backlogBytes > 0 || this.jv.roundStart !== 0);
  }

  private run(actions: ShipperAction[]): void {
    for (const a of actions) {
      if (a.type === 'read') {
        const s = this.session;
        const run = this.shipper.run;
        // The batch's bytes come from the node's budget before they are read: a burst on
        // many volumes waits here, in order, rather than reading every backlog at once.
        void this.leaseFor(a.maxBytes, run).then(({ lease, current }) => {
          if (!current) return;
          if (s !== this.session || !s || run !== this.shipper.run) {
            lease?.release();
            return;
          }
          this.readBatch(s, run, a.fromSeq, a.maxBytes, a.limitSeq, lease);
        });
      } else if (a.type === 'release') {
        this.releaseAcked(a.seq);
        this.ackRtt.acked(a.seq, this.opts.now(), this.rate?.() ?? null);
        void this.jv.release(a.seq).catch((e: Error) => this.log.error({ volume: this.name }, `volume ${this.name}: release failed: ${e.message}`));
      } else if (a.type === 'close') {
        this.session?.close(a.reason);
      }
    }
  }

  /** Reads a batch (its lease held) and hands it to the machine, which says whether it goes. */
  private readBatch(s: ShipperSession, run: number, fromSeq: number, maxBytes: number, limitSeq: number, lease: Lease | null): void {
    const bounds = { roundOpen: this.jv.roundStart !== 0, maxEpochBytes: this.jv.maxEpochBytes };
    // The planner reads only the headers of the backlog ahead (src/journal/segment.ts), so
    // it holds no payloads: the batch's lease covers the batch read below.
    const planned = this.planner.unitFor(this.jv.journal, fromSeq, limitSeq, this.batchBytes, bounds).catch(() => null);
    Promise.all([planned, this.jv.journal.read(fromSeq, maxBytes, limitSeq)]).then(([plan, records]) => {
      if (s !== this.session || !s || run !== this.shipper.run) {
        lease?.release();
        return;
      }
      // The machine says whether these records go (a read of an earlier run does not).
      const sizes = records.map((r) => ({ seq: r.seq, size: r.payload.length + RECORD_HEADER_SIZE }));
      const next = this.handle({ type: 'read', run, records: sizes });
      if (lease && next.some((x) => x.type === 'send')) {
        // Held until the peer acks the batch's last record (or sending stops).
        const bytes = sizes.reduce((n, r) => n + r.size, 0);
        if (bytes > lease.bytes) lease.grow(bytes - lease.bytes);
        else lease.shrink(bytes);
        this.leases.push({ seq: records[records.length - 1]!.seq, lease });
      } else {
        lease?.release();
      }
      let sent: JournalRecord[] | null = null;
      if (next.some((x) => x.type === 'send')) {
        this.ackRtt.sentBatch(records[records.length - 1]!.seq, this.opts.now(), this.shipper.sentUnacked);
        sent = this.planner.coalesced(records, plan, { roundOpen: this.jv.roundStart !== 0, maxEpochBytes: this.jv.maxEpochBytes });
        this.exposure.sent(sent);
      }
      // Read-ahead: the next batch is asked of the disk (the thread pool) before this
      // one is packed on the event loop, so the two overlap. (Frames still leave in
      // the order read: packing is chained in sendRecords.)
      this.run(next);
      if (sent) this.sendRecords(s, sent, run);
    }, (e: Error) => {
      lease?.release();
      s?.close(`reading the journal of ${this.name}: ${e.message}`);
    });
  }
}
