// The thin adapter around one volume's Shipper state machine: it reads the journal,
// hands Records frames to the link session, and releases journal data on acks. No
// sockets or timers of its own: the node's shippers (src/node/shippers.ts; or the simulation) call tick()
// and passes the session in, so the seeded simulation runs this very code. It hands
// the link's events to a resync round's pump and a first sync's hash requests
// (resync-driver.ts; their state and decisions: src/sync/round.ts, seeding.ts) and to
// the online verify (verify-driver.ts); its batches' leases on the node's memory
// budget are kept in src/memory/send-leases.ts; coalescing plans come from
// src/coalesce/planner.ts. With several peers, a first sync of one peer's own compares
// with that peer's replica alone: only its shipper waits for the comparison, the others
// stream on (docs/PEERS.md).
import type { Logger } from '../log/log.js';
import { assert } from '../invariants/assert.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { FLAG_RESYNC, RECORD_HEADER_SIZE, type JournalRecord } from '../journal/record.js';
import { THE_PEER } from '../journal/peer-cursors.js';
import { FrameRoom, encodeRecordsFrame } from './records-frame.js';
import type { FrameHold } from '../rate/pacer.js';
import { UnitPlanner } from '../coalesce/planner.js';
import { Shipper, type ShipperAction, type ShipperEvent } from './shipper.js';
import type { FrameClass } from '../rate/scheduler.js';
import { ExposureTracker } from '../rpo/exposure.js';
import { MAX_WINDOW_BYTES, MIN_SHIPPERS_SHARING_SEND_MEMORY } from '../limits/limits.js';
import { FlightSizes } from './window.js';
import type { VerifyRun } from '../sync/verify.js';
import type { Span } from '../sync/region-hashes.js';
import { VerifyDriver } from './verify-driver.js';
import { ResyncDriver } from './resync-driver.js';
import type { Lease, MemoryBudget } from '../memory/budget.js';
import { SendLeases } from '../memory/send-leases.js';

/** The link as the shipper sees it. */
export interface ShipperSession {
  /**
   * `cls`: the frame's class on a shared link (scheduler.ts; default: Records frames live, others resync).
   * `hold`: what the frame's bytes belong to: the session releases it once nothing reads them
   * (written to the socket, dropped unsent, or copied), or never (the collector frees them).
   */
  send(parts: Buffer[], cls?: FrameClass, hold?: FrameHold): void;
  close(reason: string): void;
  /** The link this session rides on (the node's shippers match it when the link closes). */
  link?: unknown;
  /** Forgets this volume's frames still waiting to go (shipping paused: they are read again on resume). */
  drop?(): void;
  /** Packs a batch of records into its frame (zero writes, compression: src/compress); absent: a plain Records frame. */
  encode?(records: JournalRecord[], room?: FrameRoom): Promise<Buffer[]> | Buffer[];
  /**
   * The protocol version the link agreed (absent: 1); version 2 maps the peer's holes in a first sync, version 4
   * hashes regions with BLAKE3 (src/sync/region-hashes.ts).
   */
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
  /** The peer this shipper sends to, one of the volume's (JournaledVolume.cursors; absent: THE_PEER, a volume with one). */
  peer?: string;
  now: () => number;
}

export const DEFAULT_SHIPPING: Omit<VolumeShipperOptions, 'now'> = { windowBytes: MAX_WINDOW_BYTES, batchBytes: 4 << 20, selfSyncMs: 1000 };

export class VolumeShipper {
  private readonly shipper: Shipper;
  session: ShipperSession | null = null;
  private notified = 0;
  private undurableSince = 0;
  private durableSeen = 0;

  constructor(
    /** The volume shipped. */
    readonly volume: string,
    private readonly jv: JournaledVolume,
    private readonly log: Logger,
    private readonly opts: VolumeShipperOptions,
  ) {
    this.shipper = new Shipper({ windowBytes: opts.windowBytes, batchBytes: opts.batchBytes });
    this.verifier = new VerifyDriver(volume, jv, log, {
      session: () => this.session, paused: () => this.paused, heldByPeer: () => this.heldByPeer, rate: () => this.rate?.() ?? null, now: () => opts.now(),
      beginning: () => this.beginning || this.resync.waiting !== null,
    });
    this.resync = new ResyncDriver(volume, jv, log, opts.windowBytes, {
      session: () => this.session, detach: () => (this.session = null), rate: () => this.rate?.() ?? null, durable: () => this.notifyDurable(),
    }, opts.peer ?? THE_PEER);
    this.leases = new SendLeases(opts.memory);
    this.planner = new UnitPlanner({ coalesce: opts.coalesce, scopeBytes: opts.coalesceScopeBytes, readBytes: opts.batchBytes });
    this.sizes = new FlightSizes(volume, opts, () => this.share?.() ?? 1, this.shipper, () => {
      const m = opts.memory;
      return m ? Math.floor(m.classLimit / Math.max(MIN_SHIPPERS_SHARING_SEND_MEMORY, this.shippersLinked?.() ?? 1)) : Infinity;
    });
  }

  // --- the window and the batch (window.ts's FlightSizes) --------------------------

  private readonly sizes: FlightSizes;

  /** At most half the peer's receive log is in flight (it must hold what it acks). */
  fitWindow(peerLogBytes: number): void {
    this.sizes.fitWindow(peerLogBytes);
  }

  /** Once a second, what the link did: its rate, heartbeat round trip and capacity (FlightSizes.linkMeasured). */
  linkMeasured(rateBytesPerSecond: number | null, rttMs: number | null, capacity: number | null = null): void {
    this.sizes.linkMeasured(rateBytesPerSecond, rttMs, capacity);
  }

  /** Bytes the shipper keeps in flight now (sent, not yet acked at most). */
  get windowBytes(): number {
    return this.sizes.windowBytes;
  }

  /** Bytes a batch of records may hold now: about BATCH_SECONDS of the link (rate/capacity.ts). */
  get batchBytes(): number {
    return this.sizes.batchBytes;
  }

  /** The durable-ack round trip now (ms; null: no batch acked yet). */
  get ackRttMs(): number | null {
    return this.sizes.ackRtt.ms;
  }

  /**
   * This volume's share of the link now (0..1; null: alone on it): its weight over
   * those of the link's volumes with a backlog (src/node/shippers.ts's, scheduler.ts's
   * shareOf). Several volumes with a backlog make the batch about a second of the
   * volume's share, so each gets a turn within about a second.
   */
  share: (() => number) | null = null;
  /** How many shippers of the node are linked now (they share its send memory, limits.ts MIN_SHIPPERS_SHARING_SEND_MEMORY). */
  shippersLinked: (() => number) | null = null;

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
    return this.sizes.ackRtt.oldestAgeMs(now);
  }

  /** What the peer could present if promoted now, from what was sent and acked (src/rpo/exposure.ts). */
  private readonly exposure = new ExposureTracker();

  /**
   * How old the oldest write is that a promote at the peer would lose now (ms): the
   * oldest one not yet acked, or, if older, the first acked one past the newest flush
   * point the peer could present (inside a coalesced unit it holds but cannot apply).
   */
  lagMs(now = this.opts.now()): number {
    // (With several peers, from this peer's ack: the journal's oldest record may be held back by another, docs/PEERS.md.)
    const j = this.jv.journal;
    return Math.max(this.jv.cursors.count > 1 ? j.lagMsAfter(this.shipper.acked, now) : j.lagMs(now), this.exposure.lostAgeMs(now));
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
    // A new link's capacity is not measured yet: its cap, if it has one, sizes the first batches.
    this.sizes.linkUp(this.rate?.() ?? null);
    this.beginOn(s, peerDurable, peerRound, peerFirstMeeting);
  }

  private beginOn(s: ShipperSession, peerDurable: number, peerRound: number, peerFirstMeeting: boolean): void {
    // A beginning may open a round: the replica becomes a moving target, so no verify
    // batch may be out (the last link's were let go; none go while a link begins).
    assert(this.verifier.out === 0, () => `volume ${this.volume}: a link begins with ${this.verifier.out} verify batches out`);
    this.beginning = true;
    void this.begin(s, peerDurable, peerRound, peerFirstMeeting).catch((e: Error) => {
      if (this.session === s) s.close(`volume ${this.volume}: ${e.message}`);
    }).finally(() => {
      if (this.session === s || this.session === null) this.beginning = false;
    });
  }

  /** A link's beginning (first sync, round start) is under way: the bitmap mode it sets is not an overflow. */
  private beginning = false;

  /** The link's beginning (resync-driver.ts: a first sync, a round to open or announce, a gap), then shipping resumes. */
  private begin(s: ShipperSession, peerDurable: number, peerRound: number, peerFirstMeeting: boolean): Promise<void> {
    return this.resync.begin(s, peerDurable, peerRound, peerFirstMeeting, (resume) => {
      this.undurableSince = 0;
      this.notified = 0;
      this.exposure.reset(resume);
      // (Paused by the operator: the machine releases what the peer holds and sends nothing.)
      this.run(this.handle({ type: 'up', peerDurableSeq: resume }));
    });
  }

  down(): void {
    this.session = null;
    this.sizes.ackRtt.stopped();
    this.verifier.down();
    this.resync.down();
    this.undurableSince = 0;
    this.planner.dropKept();
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
      this.sizes.ackRtt.stopped();
      this.session.drop?.();
      this.log.info({ volume: this.volume }, `volume ${this.volume}: shipping paused by the operator; the journal keeps the backlog`);
      return;
    }
    this.log.info({ volume: this.volume }, `volume ${this.volume}: shipping resumed after record ${this.shipper.acked}`);
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
      this.sizes.ackRtt.stopped();
      this.session.drop?.();
      this.log.debug({ volume: this.volume }, `volume ${this.volume}: the peer's receive log is full; shipping paused, the journal holds the backlog`);
      return;
    }
    if (!this.heldByPeer) return;
    this.notified = 0;
    const actions = this.handle({ type: 'hold', held: false, after });
    if (this.paused) return;
    this.log.debug({ volume: this.volume }, `volume ${this.volume}: the peer has room again; shipping resumes after record ${after}`);
    this.run(actions);
  }

  /** Ships what is durable; makes the journal durable itself when the host has not flushed for a while. */
  tick(): void {
    if (!this.session) return;
    // An ack's release that waited for the volume's sync too long (the host went quiet without a flush) has it now.
    this.jv.releaseIfDue();
    if (this.jv.mode === 'bitmap' && this.jv.canResync && !this.jv.folding && !this.beginning) {
      // The journal was folded into the bitmap while the link was up (it overflowed, or a
      // returning peer's round begins, docs/PEERS.md): the next link begins a new round.
      this.session.close(`volume ${this.volume}: the journal was folded into the dirty bitmap; reconnecting to begin a resync round`);
      return;
    }
    if (this.resync.waiting === this.session) {
      // A new secondary's first sync waits for another peer's round (resync-driver.ts): once
      // that ended, it begins, on this link (the peer still holds nothing).
      if (!this.beginning && this.resync.mayBeginAgain()) {
        this.resync.waiting = null;
        this.resync.waitingFor = null;
        this.beginOn(this.session, 0, 0, true);
      }
      return;
    }
    const j = this.jv.journal;
    const now = this.opts.now();
    if (j.durableSeq > this.durableSeen) {
      // The host's flushes make progress: the clock for a primary-chosen boundary restarts.
      this.durableSeen = j.durableSeq;
      this.undurableSince = 0;
    }
    // (An open epoch with writes counts even when they are durable: a sync that is no host
    // FLUSH, the release's, can make them so, and the epoch then never closed while the
    // host was idle: its records waited at the secondary, lag growing, until the next FLUSH.)
    if ((j.lastSeq > j.durableSeq || j.openEpochHasWrites) && this.jv.mode === 'journal') {
      if (this.undurableSince === 0) this.undurableSince = now;
      else if (now - this.undurableSince > this.opts.selfSyncMs) {
        this.undurableSince = 0;
        // A primary-chosen boundary: closes the epoch so the replica can advance without a host FLUSH.
        void this.jv.closeEpochNow().catch(() => undefined);
      }
    } else {
      this.undurableSince = 0;
    }
    this.notifyDurable();
    this.resync.pump();
    // (The reply timeout first: a batch out too long stops the verify and closes the link.)
    this.verifier.tick(now);
  }

  /** The machine hears of records made durable since it last heard. */
  private notifyDurable(): void {
    const j = this.jv.journal;
    // (While a first sync compares regions by hash with this peer's replica, records wait:
    // see compareRegions. Another peer's first sync of its own holds none back, docs/PEERS.md.)
    if (j.durableSeq > this.notified && !this.jv.seedingFor(this.opts.peer ?? THE_PEER)) {
      this.notified = j.durableSeq;
      this.run(this.handle({ type: 'journal', lastSeq: j.durableSeq }));
    }
  }

  /** A resync round's pump and a first sync's hash requests (resync-driver.ts). */
  private readonly resync: ResyncDriver;

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

  /** This peer's first sync waits for another peer's resync round to end: whose (resync-driver.ts), or null. */
  get firstSyncWaitsFor(): string | null {
    return this.resync.waiting ? this.resync.waitingFor : null;
  }

  /** The peer's hashes arrived: the verify's, or a first sync's (resync-driver.ts: equal regions leave the round, then the pump goes on). */
  hashReply(first: number, regionSize: number, hashes: Buffer[]): void {
    if (this.verifier.expects(first, regionSize, hashes.length)) {
      this.verifier.reply(first, hashes);
      return;
    }
    this.resync.hashReply(first, regionSize, hashes);
  }

  /** The peer's holes arrived (a first sync on a version 2 link; resync-driver.ts). */
  mapReply(offset: number, covered: number, holes: Span[]): void {
    this.resync.mapReply(offset, covered, holes);
  }

  /** (The machine's run: a read or a packed batch from an earlier run is never sent, so the peer never sees a record twice.) */
  private handle(e: ShipperEvent): ShipperAction[] {
    if (this.share) this.sizes.refreshBatch();
    const run = this.shipper.run;
    const out = this.shipper.handle(e);
    // Sending stopped or began again (link, pause, hold): what was in flight is read
    // again on resume, so its leases go back now, and a read waiting for one is withdrawn.
    if (this.shipper.run !== run) this.leases.drop();
    return out;
  }

  /**
   * This volume's batches' leases on the node's memory budget (src/memory/send-leases.ts),
   * from before each read until the peer acks it: `bytes` held now, `waiting` for a read's lease.
   */
  readonly leases: SendLeases;

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

  /**
   * Frames and sends `records`, read into `room`: the room goes with the frame (whether
   * the frame lies in it or not, its records' views may) and the session releases it.
   */
  private sendRecords(s: ShipperSession, records: JournalRecord[], run: number, room: FrameRoom): void {
    // A batch holding records of a resync round goes in the resync class: the live
    // records of other volumes pass it on a short link (docs/LINK.md).
    const cls: FrameClass = records.some((r) => (r.flags & FLAG_RESYNC) !== 0) ? 'resync' : 'live';
    if (!s.encode) {
      s.send(encodeRecordsFrame(this.volume, records, room), cls, room);
      return;
    }
    let framed: Promise<Buffer[]> | Buffer[];
    try {
      framed = s.encode(records, room);
    } catch (e) {
      framed = Promise.reject(e as Error);
    }
    if (Array.isArray(framed)) {
      const f = framed;
      this.packing = this.packing.then(() => this.sendIfCurrent(s, f, run, cls, room));
      return;
    }
    const prev = this.packing;
    this.packing = Promise.all([prev, framed]).then(([, f]) => this.sendIfCurrent(s, f, run, cls, room), (e: Error) => {
      room.release();
      if (s === this.session) s.close(`volume ${this.volume}: packing records failed: ${e.message}`);
    });
  }

  private sendIfCurrent(s: ShipperSession, frame: Buffer[], run: number, cls: FrameClass, room: FrameRoom): void {
    if (s === this.session && run === this.shipper.run && this.shipper.sending) s.send(frame, cls, room);
    else room.release();
  }

  /**
   * It has something to send and may send it: the link is up, not paused or held, and
   * the journal holds records the peer has not acked (or a round is open).
   */
  get wantsLink(): boolean {
    return this.session !== null && this.shipper.sending && (this.jv.journal.backlogBytes > 0 || this.jv.roundStartFor(this.opts.peer ?? THE_PEER) !== 0);
  }

  private run(actions: ShipperAction[]): void {
    for (const a of actions) {
      if (a.type === 'read') {
        const s = this.session;
        const run = this.shipper.run;
        // The batch's bytes come from the node's budget before they are read: a burst on
        // many volumes waits here, in order, rather than reading every backlog at once.
        void this.leases.leaseFor(a.maxBytes, () => run === this.shipper.run).then(({ lease, current }) => {
          if (!current) return;
          if (s !== this.session || !s || run !== this.shipper.run) {
            lease?.release();
            return;
          }
          this.readBatch(s, run, a.fromSeq, a.maxBytes, a.limitSeq, lease);
        });
      } else if (a.type === 'release') {
        this.leases.releaseAcked(a.seq);
        this.sizes.ackRtt.acked(a.seq, this.opts.now(), this.rate?.() ?? null);
        void this.jv.releaseFor(this.opts.peer ?? THE_PEER, a.seq)
          .catch((e: Error) => this.log.error({ volume: this.volume }, `volume ${this.volume}: release failed: ${e.message}`));
      } else if (a.type === 'close') {
        this.session?.close(a.reason);
      }
    }
  }

  /**
   * The journal let go of record `fromSeq`, which this peer has not acked: it was folded
   * into the dirty bitmap, or the peer is detached and its changes are marked in its own
   * (docs/PEERS.md). The link closes; the next one begins a round that sends them.
   */
  private letGo(s: ShipperSession, fromSeq: number, lease: Lease | null): boolean {
    if (fromSeq > this.jv.journal.released) return false;
    lease?.release();
    s.close(`volume ${this.volume}: the journal let go of record ${fromSeq} before ${this.opts.peer || 'the peer'} acked it ` +
      '(its changes are in a dirty bitmap); reconnecting to resync');
    return true;
  }

  /** Reads a batch (its lease held) and hands it to the machine, which says whether it goes. */
  private readBatch(s: ShipperSession, run: number, fromSeq: number, maxBytes: number, limitSeq: number, lease: Lease | null): void {
    if (this.letGo(s, fromSeq, lease)) return;
    const bounds = { roundOpen: this.jv.roundStart !== 0, maxEpochBytes: this.jv.maxEpochBytes };
    // The planner reads only the headers of the backlog ahead (src/journal/segment.ts), so
    // it holds no payloads: the batch's lease covers the batch read below.
    const planned = this.planner.unitFor(this.jv.journal, fromSeq, limitSeq, this.batchBytes, bounds).catch(() => null);
    // The read goes into a buffer with room for a frame header before it: a raw frame is
    // then built around the records where they lie (records-frame.ts), no payload copied.
    const room = new FrameRoom();
    Promise.all([planned, this.jv.journal.read(fromSeq, maxBytes, limitSeq, room.scratch)]).then(([plan, records]) => {
      if (s !== this.session || !s || run !== this.shipper.run) {
        lease?.release();
        room.release();
        return;
      }
      // (Released while being read: the batch has a gap where the journal let go.)
      if (this.letGo(s, fromSeq, lease)) {
        room.release();
        return;
      }
      // The machine says whether these records go (a read of an earlier run does not).
      const sizes = records.map((r) => ({ seq: r.seq, size: r.payload.length + RECORD_HEADER_SIZE }));
      const next = this.handle({ type: 'read', run, records: sizes });
      if (lease && next.some((x) => x.type === 'send')) {
        // Held until the peer acks the batch's last record (or sending stops).
        this.leases.hold(lease, records[records.length - 1]!.seq, sizes.reduce((n, r) => n + r.size, 0));
      } else {
        lease?.release();
      }
      let sent: JournalRecord[] | null = null;
      if (next.some((x) => x.type === 'send')) {
        this.sizes.ackRtt.sentBatch(records[records.length - 1]!.seq, this.opts.now(), this.shipper.sentUnacked);
        sent = this.planner.coalesced(records, plan, { roundOpen: this.jv.roundStart !== 0, maxEpochBytes: this.jv.maxEpochBytes });
        // A round of another peer's own goes to this one as padding (docs/PEERS.md).
        // (Also with one peer left: a reload may have taken away the one a round was for.)
        sent = this.jv.padFor(this.opts.peer ?? THE_PEER, sent);
        this.exposure.sent(sent);
      }
      // Read-ahead: the next batch is asked of the disk (the thread pool) before this
      // one is packed on the event loop, so the two overlap. (Frames still leave in
      // the order read: packing is chained in sendRecords.)
      this.run(next);
      if (sent) this.sendRecords(s, sent, run, room);
      else room.release();
    }, (e: Error) => {
      // (The read's last disk read is over, whatever failed after it: nothing writes into the room.)
      lease?.release();
      room.release();
      s?.close(`reading the journal of ${this.volume}: ${e.message}`);
    });
  }
}
