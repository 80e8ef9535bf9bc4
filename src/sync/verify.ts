// Online verify (docs/RESYNC.md, "Online verify") as a state machine: events in,
// actions out, no I/O. Its adapter, VolumeShipper (src/link/volume-shipper.ts), reads
// and hashes a batch under its range lock (JournaledVolume.verifyHashes), sends the
// HashRequest, lets the lock go and marks regions for resync when told to.
//
// One batch at a time: it is read and hashed (host writes to it wait), the peer is
// asked for its hashes pinned after the batch's flush point, and the lock is held
// until the reply is in, the link drops (the batch is asked again on the next link)
// or the peer takes longer than the reply timeout (the verify stops: a late answer
// must not be taken for a later verify's, so the link is closed).
import { formatBytes } from '../units/units.js';

/** A verify batch holds host writes to its regions: the peer has this long to answer. */
export const VERIFY_REPLY_MS = 30_000;
/** Bytes of regions one batch compares (one HashRequest). */
export const VERIFY_BATCH_BYTES = 4 << 20;

/** An online verify: regions compared so far, and what differed (status shows it). */
export interface VerifyRun {
  repair: boolean;
  /** Next region to compare, and the number of regions. */
  next: number;
  end: number;
  regionSize: number;
  differing: number[];
  startedAt: number;
  checkedRegions: number;
  state: 'running' | 'done' | 'failed';
  message: string;
}

export interface VerifyConfig {
  /** The volume's name, for messages. */
  volume: string;
  /** Most regions one HashRequest may name, and the largest region it may name (src/link/frame.ts). */
  maxRegions: number;
  maxRegionSize: number;
  /** Defaults: VERIFY_REPLY_MS, VERIFY_BATCH_BYTES. */
  replyMs?: number;
  batchBytes?: number;
}

export type VerifyEvent =
  /**
   * The operator asks for a verify of `regions` regions of `regionSize` bytes. What the
   * volume is doing decides whether it may start: the link must be up, shipping not
   * paused (nor held by the peer), no sync or resync round open.
   */
  | {
    type: 'start'; repair: boolean; regions: number; regionSize: number; now: number;
    linkUp: boolean; paused: boolean; heldByPeer: boolean; syncing: boolean; ready: boolean;
  }
  /**
   * The batch asked for by a `read` action was read and hashed, and its regions are
   * locked until an `unlock` action. `stale`: the link it was read for is gone.
   */
  | { type: 'hashed'; hashes: Buffer[]; afterSeq: number; stale: boolean; now: number }
  /** Reading the batch failed (its lock is already let go). */
  | { type: 'read-failed'; message: string }
  /** The peer's hashes of the batch out (see expects()). */
  | { type: 'reply'; first: number; hashes: Buffer[]; now: number; ready: boolean }
  /** The link is gone: the batch out is asked again on the next link. */
  | { type: 'down' }
  /**
   * The clock (the shipper's tick, with the link up): the reply timeout, then the next
   * batch if `ready` (the replica is not a moving target and the backlog is short).
   */
  | { type: 'tick'; now: number; ready: boolean };

export type VerifyAction =
  /** The start is refused, and why (the verify that ran before, if any, stays). */
  | { type: 'refuse'; reason: string }
  /** Lock, flush, read and hash regions first..first+count-1, then report 'hashed' (or 'read-failed'). */
  | { type: 'read'; first: number; count: number }
  /** Ask the peer for its hashes of the batch, once it has applied through `afterSeq`. */
  | { type: 'send'; first: number; count: number; regionSize: number; afterSeq: number }
  /** Let go of the batch's lock: host writes there go on. */
  | { type: 'unlock' }
  /** Repair: these regions go to the dirty bitmap, and the next link resyncs them. */
  | { type: 'mark'; regions: number[]; reason: string }
  /** A log line (the verify started, ended or stopped). */
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  /** Close the link, with this reason. */
  | { type: 'close'; reason: string };

export class Verifier {
  private current: VerifyRun | null = null;
  /** The batch out: its first region, our hashes, when it was asked. */
  private asked: { first: number; hashes: Buffer[]; at: number } | null = null;
  /** A batch being read and hashed. */
  private reading: { first: number; count: number } | null = null;
  private readonly replyMs: number;
  private readonly batchBytes: number;

  constructor(private readonly cfg: VerifyConfig) {
    this.replyMs = cfg.replyMs ?? VERIFY_REPLY_MS;
    this.batchBytes = cfg.batchBytes ?? VERIFY_BATCH_BYTES;
  }

  /** The verify running now, or the last one (null: none since the daemon started). */
  get run(): VerifyRun | null {
    return this.current;
  }

  /** Is this reply the answer to the batch out? (Else it is a first sync's, or from an older link.) */
  expects(first: number, regionSize: number, count: number): boolean {
    return this.current !== null && regionSize === this.current.regionSize && this.asked !== null && this.asked.first === first &&
      count === this.asked.hashes.length;
  }

  handle(e: VerifyEvent): VerifyAction[] {
    switch (e.type) {
      case 'start': return this.start(e);
      case 'hashed': return this.hashed(e);
      case 'read-failed': return this.readFailed(e.message);
      case 'reply': return this.reply(e.first, e.hashes, e.now, e.ready);
      case 'down': return this.down();
      case 'tick': return this.tick(e.now, e.ready);
    }
  }

  private start(e: Extract<VerifyEvent, { type: 'start' }>): VerifyAction[] {
    const name = this.cfg.volume;
    const v = this.current;
    const refuse = (reason: string): VerifyAction[] => [{ type: 'refuse', reason }];
    if (v?.state === 'running') return refuse(`a verify of ${name} is already running (${v.checkedRegions} of ${v.end} regions)`);
    if (!e.linkUp) return refuse(`the link of ${name} is down; verify compares with the peer, so it waits for the link`);
    if (e.paused || e.heldByPeer) return refuse(
      `shipping of ${name} is paused${e.heldByPeer ? ' by the peer (a checkpoint is held there)' : ''}; verify needs the peer to keep applying`);
    if (e.regionSize > this.cfg.maxRegionSize) return refuse(
      `regions of ${formatBytes(e.regionSize)} are larger than a hash request may name (${formatBytes(this.cfg.maxRegionSize)}); verify needs ` +
      `bitmap_region of at most that`);
    if (e.syncing) return refuse(`a sync or resync of ${name} is under way; verify after it ends`);
    this.current = {
      repair: e.repair, next: 0, end: e.regions, regionSize: e.regionSize, differing: [], startedAt: e.now,
      checkedRegions: 0, state: 'running', message: 'running',
    };
    this.asked = null;
    return [
      { type: 'log', level: 'info', message: `volume ${name}: online verify started (${e.regions} regions${e.repair ? ', repairing what differs' : ''})` },
      ...this.pump(e.now, e.ready),
    ];
  }

  /** The next batch, if one may go now. */
  private pump(now: number, ready: boolean): VerifyAction[] {
    const v = this.current;
    if (!v || v.state !== 'running' || this.asked || this.reading) return [];
    // (Not ready: a round makes the replica a moving target, or a batch would hold host
    // writes until the peer has applied what is ahead of it: not while nothing ships,
    // nor while the backlog would take the link long to carry.)
    if (!ready) return [];
    if (v.next >= v.end) return this.finish(v, now);
    const count = Math.min(this.cfg.maxRegions, Math.max(1, Math.floor(this.batchBytes / v.regionSize)), v.end - v.next);
    this.reading = { first: v.next, count };
    return [{ type: 'read', first: v.next, count }];
  }

  private hashed(e: Extract<VerifyEvent, { type: 'hashed' }>): VerifyAction[] {
    const r = this.reading;
    this.reading = null;
    const v = this.current;
    if (!r || !v || e.stale || v.state !== 'running') return [{ type: 'unlock' }];
    this.asked = { first: r.first, hashes: e.hashes, at: e.now };
    return [{ type: 'send', first: r.first, count: r.count, regionSize: v.regionSize, afterSeq: e.afterSeq }];
  }

  private readFailed(message: string): VerifyAction[] {
    const r = this.reading;
    this.reading = null;
    const v = this.current;
    if (!v) return [];
    v.state = 'failed';
    v.message = `reading regions ${r?.first}..${(r?.first ?? 0) + (r?.count ?? 0) - 1} failed: ${message}`;
    return [{ type: 'log', level: 'error', message: `volume ${this.cfg.volume}: verify ${v.message}` }];
  }

  private reply(first: number, hashes: Buffer[], now: number, ready: boolean): VerifyAction[] {
    const v = this.current;
    const a = this.asked;
    if (!v || !a || a.first !== first || hashes.length !== a.hashes.length) return [];
    const mine = a.hashes;
    for (let i = 0; i < mine.length; i++) if (!hashes[i]?.equals(mine[i]!)) v.differing.push(first + i);
    this.asked = null;
    v.checkedRegions += mine.length;
    v.next = first + mine.length;
    return [{ type: 'unlock' }, ...this.pump(now, ready)];
  }

  private down(): VerifyAction[] {
    if (!this.asked) return [];
    // The batch is asked again on the next link.
    this.asked = null;
    return [{ type: 'unlock' }];
  }

  private tick(now: number, ready: boolean): VerifyAction[] {
    const v = this.current;
    if (v && this.asked && now - this.asked.at > this.replyMs) {
      this.asked = null;
      v.state = 'failed';
      const secs = this.replyMs / 1000;
      v.message = `the peer did not answer within ${secs} s (a checkpoint held there stops it from applying); run verify again`;
      return [
        { type: 'unlock' },
        { type: 'log', level: 'warn', message: `volume ${this.cfg.volume}: verify stopped: ${v.message}` },
        // Its late answer must not be taken for a later verify's: a new link forgets the question.
        { type: 'close', reason: `volume ${this.cfg.volume}: the peer did not answer a verify request in ${secs} s` },
      ];
    }
    return this.pump(now, ready);
  }

  private finish(v: VerifyRun, now: number): VerifyAction[] {
    const name = this.cfg.volume;
    v.state = 'done';
    const n = v.differing.length;
    const bytes = formatBytes(n * v.regionSize);
    const secs = Math.max(1, Math.round((now - v.startedAt) / 1000));
    if (n === 0) {
      v.message = `no differences in ${v.checkedRegions} regions (${secs} s)`;
      return [{ type: 'log', level: 'info', message: `volume ${name}: verify found ${v.message}` }];
    }
    const list = v.differing.slice(0, 8).join(', ') + (n > 8 ? ', …' : '');
    v.message = `${n} regions (${bytes}) differ: ${list}${v.repair ? '; resyncing them' : '; run verify --repair to resync them'}`;
    const out: VerifyAction[] = [{ type: 'log', level: 'warn', message: `volume ${name}: verify found ${v.message}` }];
    if (v.repair) out.push({ type: 'mark', regions: v.differing, reason: `verify found ${n} regions that differ on the peer` });
    return out;
  }
}
