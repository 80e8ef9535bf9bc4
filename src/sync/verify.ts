// Online verify (docs/RESYNC.md, "Online verify") as a state machine: events in,
// actions out, no I/O. Its adapter, VolumeShipper (src/link/volume-shipper.ts), reads
// and hashes a batch under its range lock (JournaledVolume.verifyHashes), sends the
// HashRequest, lets the lock go and marks regions for resync when told to.
//
// Batch by batch, a few out at once (VERIFY_BATCHES_IN_FLIGHT): each is read and
// hashed (host writes to it wait), the peer is asked for its hashes pinned after the
// batch's flush point, and its lock is held until its reply is in, the link drops
// (every batch out is asked again on the next link) or the peer takes longer than the
// reply timeout (the verify stops: a late answer must not be taken for a later
// verify's, so the link is closed).
import { formatBytes } from '../units/units.js';
import { VERIFY_BATCHES_IN_FLIGHT } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

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
  /** When it ended (done or failed); null while it runs. */
  endedAt: number | null;
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
  /** Defaults: VERIFY_REPLY_MS, VERIFY_BATCH_BYTES, VERIFY_BATCHES_IN_FLIGHT. */
  replyMs?: number;
  batchBytes?: number;
  inFlight?: number;
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
   * The batch from region `first` a `read` action asked for was read and hashed, and its
   * regions are locked until an `unlock` of it. `stale`: the link it was read for is gone.
   */
  | {
    type: 'hashed'; first: number; hashes: Buffer[]; afterSeq: number; stale: boolean; now: number;
    /** Bytes of the batch read from the disk (absent: some): none, the batch lay in a hole here. */
    readBytes?: number;
  }
  /** Reading the batch from region `first` failed (its lock is already let go). */
  | { type: 'read-failed'; first: number; message: string; now: number }
  /** The peer's hashes of the batch out (see expects()). */
  | { type: 'reply'; first: number; hashes: Buffer[]; now: number; ready: boolean }
  /** The link is gone: every batch out is asked again on the next link. */
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
  /** Let go of the lock of the batch from region `first`: host writes there go on. */
  | { type: 'unlock'; first: number }
  /** Repair: these regions go to the dirty bitmap, and the next link resyncs them. */
  | { type: 'mark'; regions: number[]; reason: string }
  /** A log line (the verify started, ended or stopped). */
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  /** Close the link, with this reason. */
  | { type: 'close'; reason: string };

export class Verifier {
  private current: VerifyRun | null = null;
  /** Batches out, by first region: our hashes, and when the peer was asked. */
  private readonly asked = new Map<number, { hashes: Buffer[]; at: number }>();
  /** Batches being read and hashed, by first region: their count. */
  private readonly reading = new Map<number, number>();
  /** Batches let go of before their answer (a link dropped): read and asked again first. */
  private retry: Array<{ first: number; count: number }> = [];
  private readonly replyMs: number;
  private readonly batchBytes: number;
  /**
   * The last batch hashed here lay in a hole: the next ones span the most regions a
   * request may name (16 MiB of 64 KiB regions), since a hole costs a map and a round
   * trip, not a read. A batch with data brings them back to batchBytes.
   */
  private inHoles = false;
  private readonly inFlight: number;

  constructor(private readonly cfg: VerifyConfig) {
    this.replyMs = cfg.replyMs ?? VERIFY_REPLY_MS;
    this.batchBytes = cfg.batchBytes ?? VERIFY_BATCH_BYTES;
    this.inFlight = cfg.inFlight ?? VERIFY_BATCHES_IN_FLIGHT;
    assert(this.inFlight >= 1, () => `verify: ${this.inFlight} batches in flight`);
  }

  /** The verify running now, or the last one (null: none since the daemon started). */
  get run(): VerifyRun | null {
    return this.current;
  }

  /** Batches out: asked and not answered, or being read and hashed. */
  get out(): number {
    return this.asked.size + this.reading.size;
  }

  /** Is this reply the answer to a batch out? (Else it is a first sync's, or from an older link.) */
  expects(first: number, regionSize: number, count: number): boolean {
    return this.current !== null && regionSize === this.current.regionSize && this.asked.get(first)?.hashes.length === count;
  }

  handle(e: VerifyEvent): VerifyAction[] {
    const out = this.dispatch(e);
    this.checkCounters();
    return out;
  }

  private dispatch(e: VerifyEvent): VerifyAction[] {
    switch (e.type) {
      case 'start': return this.start(e);
      case 'hashed': return this.hashed(e);
      case 'read-failed': return this.readFailed(e.first, e.message, e.now);
      case 'reply': return this.reply(e.first, e.hashes, e.now, e.ready);
      case 'down': return this.down();
      case 'tick': return this.tick(e.now, e.ready);
    }
  }

  /** Batches out and being read stay within the bound, and behind the next region to read. */
  private checkCounters(): void {
    const v = this.current;
    assert(this.asked.size + this.reading.size <= this.inFlight,
      () => `verify: ${this.asked.size} batches asked and ${this.reading.size} being read, more than ${this.inFlight}`);
    if (!v) return;
    for (const first of [...this.asked.keys(), ...this.reading.keys()]) {
      assert(first < v.next, () => `verify: a batch from region ${first} is out, but the next region to read is ${v.next}`);
    }
    assert(v.checkedRegions <= v.end, () => `verify: ${v.checkedRegions} regions checked of ${v.end}`);
    if (v.state !== 'running') return;
    // Every region before the next to read is checked, out, or to be asked again: once.
    let accounted = v.checkedRegions;
    for (const a of this.asked.values()) accounted += a.hashes.length;
    for (const count of this.reading.values()) accounted += count;
    for (const r of this.retry) accounted += r.count;
    assert(accounted === v.next, () => `verify: ${accounted} regions checked, out or to ask again, but ${v.next} handed out`);
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
    // (Batches of a run that ended are let go of before a new one names its regions.)
    const unlocks = this.letGo();
    this.retry = [];
    this.inHoles = false;
    this.current = {
      repair: e.repair, next: 0, end: e.regions, regionSize: e.regionSize, differing: [], startedAt: e.now, endedAt: null,
      checkedRegions: 0, state: 'running', message: 'running',
    };
    return [
      ...unlocks,
      { type: 'log', level: 'info', message: `volume ${name}: online verify started (${e.regions} regions${e.repair ? ', repairing what differs' : ''})` },
      ...this.pump(e.now, e.ready),
    ];
  }

  /** The next batches, as many as may be out now. */
  private pump(now: number, ready: boolean): VerifyAction[] {
    const v = this.current;
    if (!v || v.state !== 'running') return [];
    // (Not ready: a round makes the replica a moving target, or a batch would hold host
    // writes until the peer has applied what is ahead of it: not while nothing ships,
    // nor while the backlog would take the link long to carry.)
    if (!ready) return [];
    if (v.next >= v.end && this.retry.length === 0) return this.asked.size + this.reading.size === 0 ? this.finish(v, now) : [];
    const out: VerifyAction[] = [];
    while ((this.retry.length > 0 || v.next < v.end) && this.asked.size + this.reading.size < this.inFlight) {
      const again = this.retry.shift();
      const first = again?.first ?? v.next;
      const span = this.inHoles ? this.cfg.maxRegions : Math.max(1, Math.floor(this.batchBytes / v.regionSize));
      const count = again?.count ?? Math.min(this.cfg.maxRegions, span, v.end - v.next);
      if (!again) v.next += count;
      this.reading.set(first, count);
      out.push({ type: 'read', first, count });
    }
    return out;
  }

  private hashed(e: Extract<VerifyEvent, { type: 'hashed' }>): VerifyAction[] {
    const count = this.reading.get(e.first);
    const v = this.current;
    if (count === undefined || !v || v.state !== 'running') return [{ type: 'unlock', first: e.first }];
    this.reading.delete(e.first);
    if (e.stale) {
      // Read for a link that is gone, as every batch out was: all are read again on the next one.
      this.retry.push({ first: e.first, count });
      return [{ type: 'unlock', first: e.first }, ...this.letGo()];
    }
    this.asked.set(e.first, { hashes: e.hashes, at: e.now });
    this.inHoles = e.readBytes === 0;
    return [{ type: 'send', first: e.first, count, regionSize: v.regionSize, afterSeq: e.afterSeq }];
  }

  private readFailed(first: number, message: string, now: number): VerifyAction[] {
    const count = this.reading.get(first);
    this.reading.delete(first);
    const v = this.current;
    if (count === undefined || !v || v.state !== 'running') return [];
    v.state = 'failed';
    v.endedAt = now;
    v.message = `reading regions ${first}..${first + count - 1} failed: ${message}`;
    return [...this.letGo(), { type: 'log', level: 'error', message: `volume ${this.cfg.volume}: verify ${v.message}` }];
  }

  private reply(first: number, hashes: Buffer[], now: number, ready: boolean): VerifyAction[] {
    const v = this.current;
    const a = this.asked.get(first);
    if (!v || !a || hashes.length !== a.hashes.length) return [];
    const mine = a.hashes;
    for (let i = 0; i < mine.length; i++) if (!hashes[i]?.equals(mine[i]!)) v.differing.push(first + i);
    this.asked.delete(first);
    v.checkedRegions += mine.length;
    return [{ type: 'unlock', first }, ...this.pump(now, ready)];
  }

  /**
   * Every batch asked is let go of (its lock now), and every read under way (its lock
   * when it ends, unasked); both are read and asked again first, in order.
   */
  private letGo(): VerifyAction[] {
    const firsts = [...this.asked.keys()];
    for (const [first, a] of this.asked) this.retry.push({ first, count: a.hashes.length });
    for (const [first, count] of this.reading) this.retry.push({ first, count });
    this.retry.sort((a, b) => a.first - b.first);
    this.asked.clear();
    this.reading.clear();
    return firsts.map((first) => ({ type: 'unlock', first }));
  }

  private down(): VerifyAction[] {
    // The batches are asked again on the next link.
    return this.letGo();
  }

  private tick(now: number, ready: boolean): VerifyAction[] {
    const v = this.current;
    const late = [...this.asked.values()].some((a) => now - a.at > this.replyMs);
    if (v && late) {
      v.state = 'failed';
      v.endedAt = now;
      const secs = this.replyMs / 1000;
      v.message = `the peer did not answer within ${secs} s (a checkpoint held there stops it from applying); run verify again`;
      return [
        ...this.letGo(),
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
    v.endedAt = now;
    v.differing.sort((a, b) => a - b);
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
