// The receiver of one volume on the secondary, as a state machine: events in,
// actions out, no I/O. Received records go to the receive log; once the log is
// durable they are acked (only a durable ack lets the primary drop data); they are
// applied to the replica only in whole units that end at a barrier, so the replica
// is always a flush-point image (docs/INVARIANTS.md, invariant 3). An adapter does the I/O.

import { APPLY_UNIT_BYTES } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

export interface ReceivedRecord {
  seq: number;
  /** Ends an epoch: the replica may be brought up to here. */
  barrier: boolean;
  /** A barrier that completes a resync round. */
  roundEnd?: boolean;
  /**
   * A Skip record (a coalesced unit, docs/PEER-PROTOCOL.md): a later record covers it,
   * so the replica may be brought to a barrier at or after it only if that barrier is
   * at or past `skipUntil`.
   */
  skipUntil?: number;
  /** A barrier that is a group point (FLAG_GROUP_POINT): its number (docs/GROUPS.md). */
  groupPoint?: number;
  size: number;
}

/** What a group's coordinator (src/group/limit.ts) needs of one member's receiver. */
export interface MemberView {
  /** The group point the replica stands at, or null when it is at none (a round's end, a first sync, a point not known after a restart). */
  appliedPoint: number | null;
  /** Group points durable in the receive log after `applied` that the replica could be brought to, oldest first. */
  points: number[];
  /** A resync round (or the first sync) is open: the replica serves the image before it. */
  inRound: boolean;
}

/** A durable Skip record: no image may be exposed between `seq` and `until`. */
interface SkipHold { seq: number; until: number }

export type ReceiverEvent =
  /** A link came up; the receive log is durable up to `logDurable`, the replica applied up to `applied`. */
  | { type: 'up' }
  | { type: 'down' }
  | { type: 'records'; records: ReceivedRecord[] }
  /**
   * The receive log is durable up to `upTo`: a `sync` action asked for `asked`
   * finished (no `asked`: a sync of the adapter's own, which says nothing of failed writes).
   */
  | { type: 'synced'; upTo: number; asked?: number }
  /** The replica now holds every record up to `upTo` (an `apply` action finished). */
  | { type: 'applied'; upTo: number }
  /** A sync or an apply failed (disk full, I/O error); it is retried when a link comes up. */
  | { type: 'syncFailed' }
  /** A resync round is open: apply whatever is durable (undo keeps the old image), up to the round's end. */
  | { type: 'roundOpened' }
  /** The round's end was applied and committed. */
  | { type: 'roundClosed' }
  /** The log skipped to `seq` (records before a round are superseded): logged, durable and applied there. */
  | { type: 'jumped'; seq: number }
  /**
   * An append stopped part-way (log full or failed): the log holds records only up
   * to `upTo`. `full`: the log had no room (with a checkpoint held, shipping is
   * paused rather than the link closed).
   */
  | { type: 'appendStopped'; upTo: number; full?: boolean }
  | { type: 'applyFailed' }
  /** Try a failed unit again now (a promote must not leave one half applied), not at the next link. */
  | { type: 'retryApply' }
  /** A `releaseLog` action finished (whether or not it freed space). */
  | { type: 'released' }
  /** Hold applying (a checkpoint is held) or let it go on. */
  | { type: 'hold'; held: boolean }
  /**
   * A group member (docs/GROUPS.md): the replica may be brought to group points up to
   * this one (a group point every member holds durably), and to no other barrier.
   * Null: to none yet.
   */
  | { type: 'groupLimit'; point: number | null };

export type ReceiverAction =
  /** Append these records to the receive log (they are in the frame being handled). */
  | { type: 'append'; fromSeq: number; toSeq: number }
  | { type: 'sync'; upTo: number }
  | { type: 'ack'; seq: number }
  /**
   * Apply log records fromSeq..toSeq to the replica as one crash-atomic unit (it ends
   * at a barrier), or, in a resync round, as the next part of the round (endsRound:
   * the round's last part).
   */
  | { type: 'apply'; fromSeq: number; toSeq: number; round?: boolean; endsRound?: boolean }
  /** Free receive-log space behind `seq`, then report `released`. */
  | { type: 'releaseLog'; seq: number }
  /** Tell the primary to stop shipping (held) or to resume right after `after`, durable here (a Hold frame). */
  | { type: 'holdShipping'; held: boolean; after: number }
  | { type: 'close'; reason: string };

export interface ReceiverState {
  logged: number;
  logDurable: number;
  applied: number;
  /** Highest barrier seq in the log. */
  lastBarrier: number;
  /** A resync round is open. */
  round?: boolean;
  /** Durable round-end barriers after `applied`, in order. */
  roundEnds?: number[];
  /** Every durable barrier after `applied`, in order (with Skip records, the last may not be exposable). */
  barriers?: number[];
  /** Durable Skip records after `applied`, in order. */
  skips?: SkipHold[];
  /** Group point barriers in the log (any seq: those after `applied` mark barriers, the one at `applied` says where the replica stands). */
  groupPoints?: Array<{ seq: number; point: number }>;
  /** The group point the replica stands at as last written down (the member's group-point file), if known. */
  appliedPoint?: { seq: number; point: number } | null;
}

/** A barrier and where it falls in the stream of logged bytes (to size apply units); `point`: a group point's number. */
interface BarrierMark { seq: number; bytes: number; point?: number }

export class Receiver {
  private up = false;
  private syncing = false;
  private applying = false;
  /** An apply action is out (perhaps queued behind other actions in the adapter). */
  get isApplying(): boolean { return this.applying; }
  /** A unit failed part-way and waits to be applied again (the replica may hold part of it). */
  get applyFailed(): boolean { return this.applyBlocked; }
  private held = false;
  /**
   * Shipping paused because the log filled while a checkpoint held the replica:
   * 'paused' drops what still arrives; 'resuming' (after a Hold go) drops stale
   * frames sent before the primary heard the pause, until its resend begins.
   */
  private stalled: 'no' | 'paused' | 'resuming' = 'no';
  private applyBlocked = false;
  /** A releaseLog action is under way. */
  private releasing = false;
  /** What the receiver's own sync in flight was asked to cover. */
  private syncAsked = -1;
  /**
   * Appends handed to the log since the sync in progress was asked. A sync that reports
   * less than it was asked for means the log's writes failed only if nothing was appended
   * after it was asked: a link that dropped after a full log and came back resends the
   * same seqs, and those land after the old sync was asked (seed 83 of the replication
   * simulation: the resent records were taken for lost, never synced, never acked).
   */
  private appendsSinceAsk = 0;
  /** The last jump's seq: sync results below it are stale. */
  private jumpedTo = 0;
  roundOpen: boolean;
  private readonly roundEnds: number[] = [];
  private pendingRoundEnds: number[] = [];
  logged: number;
  logDurable: number;
  applied: number;
  /** Durable barriers not yet applied, in order. Bounded by the receive log's size. */
  private readonly barriers: BarrierMark[] = [];
  /** Barriers logged but not yet durable, in order. */
  private pendingBarriers: BarrierMark[] = [];
  /**
   * Bytes logged since this receiver began, and that count at the last applied
   * barrier: apply units are sized by their difference (APPLY_UNIT_BYTES). Barriers
   * recovered at a start count as 0 bytes apart (the first unit after a restart may be
   * larger), and records dropped by `appendStopped` leave a gap: only differences matter.
   */
  private loggedBytes = 0;
  private appliedBytes = 0;
  private readonly unitBytes: number;
  /** Skip records durable and not yet applied, and logged but not yet durable, in order. */
  private skips: SkipHold[] = [];
  private pendingSkips: SkipHold[] = [];

  /** A member of a consistency group: applied only to group points up to `groupLimit`. */
  readonly inGroup: boolean;
  private groupLimit: number | null = null;
  /** The group point the replica stands at (null: none, or not known). */
  appliedPoint: number | null = null;

  constructor(s: ReceiverState, opts: { unitBytes?: number | undefined; group?: boolean | undefined } = {}) {
    this.inGroup = opts.group ?? false;
    this.logged = s.logged;
    this.logDurable = s.logDurable;
    this.applied = s.applied;
    this.unitBytes = opts.unitBytes ?? APPLY_UNIT_BYTES;
    assert(this.applied <= this.logDurable && this.logDurable <= this.logged,
      `receiver state out of order: applied ${this.applied}, durable ${this.logDurable}, logged ${this.logged}`);
    for (const b of s.barriers ?? []) if (b > s.applied && b <= s.logDurable && b !== s.lastBarrier) this.barriers.push({ seq: b, bytes: 0 });
    if (s.lastBarrier > s.applied && s.lastBarrier <= s.logDurable) this.barriers.push({ seq: s.lastBarrier, bytes: 0 });
    this.barriers.sort((a, b) => a.seq - b.seq);
    const points = new Map((s.groupPoints ?? []).map((g) => [g.seq, g.point]));
    for (const b of this.barriers) if (points.has(b.seq)) b.point = points.get(b.seq)!;
    this.appliedPoint = points.get(s.applied) ?? (s.appliedPoint && s.appliedPoint.seq === s.applied ? s.appliedPoint.point : null);
    for (const k of s.skips ?? []) if (k.seq > s.applied && k.seq <= s.logDurable) this.skips.push(k);
    this.roundOpen = s.round ?? false;
    for (const r of s.roundEnds ?? []) if (r > s.applied && r <= s.logDurable) this.roundEnds.push(r);
  }

  /** The seq the primary should resume after: everything up to it is durable here. */
  get resumeAfter(): number {
    return this.logDurable;
  }

  handle(e: ReceiverEvent): ReceiverAction[] {
    const out = this.step(e);
    // applied <= durable <= logged: nothing is applied that the log could lose, nothing
    // is durable that was not logged (docs/INVARIANTS.md, invariant 3).
    assert(this.applied <= this.logDurable && this.logDurable <= this.logged,
      () => `receiver counters out of order after ${e.type}: applied ${this.applied}, durable ${this.logDurable}, logged ${this.logged}`);
    return out;
  }

  private step(e: ReceiverEvent): ReceiverAction[] {
    switch (e.type) {
      case 'up':
        this.applyBlocked = false;
        // Records logged but not yet durable stay: the primary resumes after
        // `resumeAfter` and what it resends up to `logged` is skipped (the same
        // records: the primary ships only what is durable in its journal).
        this.up = true;
        this.stalled = 'no'; // a new link resumes from the durable point anyway
        return [...this.maybeSync(), ...this.maybeApply()];
      case 'down':
        this.up = false;
        this.stalled = 'no';
        return [];
      case 'records': {
        if (!this.up || e.records.length === 0 || this.stalled === 'paused') return [];
        // Records at or below what is logged were resent after a reconnect: skip them.
        const fresh = e.records.filter((r) => r.seq > this.logged);
        if (this.stalled === 'resuming') {
          // Frames sent before the primary heard the pause: its resend starts at logged + 1.
          if (fresh.length > 0 && fresh[0]!.seq > this.logged + 1) return [];
          this.stalled = 'no';
        }
        // All resent: say again what is durable here (its ack may have been lost with a link).
        if (fresh.length === 0) return this.logDurable > 0 && this.logged === this.logDurable ? [{ type: 'ack', seq: this.logDurable }] : this.maybeSync();
        if (fresh[0]!.seq !== this.logged + 1) {
          return [{ type: 'close', reason: `records jump from ${this.logged} to ${fresh[0]!.seq}: a gap in the stream` }];
        }
        for (let i = 1; i < fresh.length; i++) {
          if (fresh[i]!.seq !== fresh[i - 1]!.seq + 1) return [{ type: 'close', reason: `record ${fresh[i]!.seq} follows ${fresh[i - 1]!.seq} in one batch` }];
        }
        const from = fresh[0]!.seq;
        const to = fresh[fresh.length - 1]!.seq;
        this.logged = to;
        for (const r of fresh) {
          this.loggedBytes += r.size;
          if (r.barrier) {
            this.pendingBarriers.push(r.groupPoint !== undefined
              ? { seq: r.seq, bytes: this.loggedBytes, point: r.groupPoint }
              : { seq: r.seq, bytes: this.loggedBytes });
          }
        }
        for (const r of fresh) if (r.roundEnd) this.pendingRoundEnds.push(r.seq);
        for (const r of fresh) if (r.skipUntil !== undefined) this.pendingSkips.push({ seq: r.seq, until: r.skipUntil });
        this.appendsSinceAsk++;
        return [{ type: 'append', fromSeq: from, toSeq: to }, ...this.maybeSync()];
      }
      case 'synced': {
        const mine = e.asked !== undefined && e.asked === this.syncAsked;
        if (mine) this.syncing = false;
        // A sync that began before a jump reports a point the jump superseded: stale.
        if (e.upTo < this.jumpedTo) return this.maybeSync();
        if (mine && this.appendsSinceAsk === 0 && e.upTo < e.asked! && e.upTo < this.logged && e.upTo === this.logDurable) {
          // The log holds less than was handed to it (its writes failed): what was
          // not logged is fetched again, rather than syncing the same range forever.
          this.logged = Math.max(e.upTo, this.logDurable);
          this.pendingBarriers = this.pendingBarriers.filter((b) => b.seq <= this.logged);
          this.pendingRoundEnds = this.pendingRoundEnds.filter((b) => b <= this.logged);
          this.pendingSkips = this.pendingSkips.filter((k) => k.seq <= this.logged);
        }
        if (e.upTo > this.logDurable) {
          this.logDurable = e.upTo;
          while (this.pendingBarriers.length > 0 && this.pendingBarriers[0]!.seq <= e.upTo) this.barriers.push(this.pendingBarriers.shift()!);
          while (this.pendingRoundEnds.length > 0 && this.pendingRoundEnds[0]! <= e.upTo) this.roundEnds.push(this.pendingRoundEnds.shift()!);
          while (this.pendingSkips.length > 0 && this.pendingSkips[0]!.seq <= e.upTo) this.skips.push(this.pendingSkips.shift()!);
        }
        const out: ReceiverAction[] = [...(this.up ? [{ type: 'ack', seq: this.logDurable } as const] : []), ...this.maybeSync(), ...this.maybeApply()];
        // Paused, and this sync starts nothing that would free room: ask for more anyway
        // (a log still full pauses again) rather than wait for a release that never comes.
        if (this.stalled === 'paused' && this.up && !this.held && !this.applying && !this.releasing && !this.syncing) out.push(this.resume());
        return out;
      }
      case 'applied': {
        assert(this.applying, () => `an apply up to ${e.upTo} finished but none was asked for`);
        assert(e.upTo <= this.logDurable, () => `applied up to ${e.upTo}, past the durable end of the receive log (${this.logDurable})`);
        this.applying = false;
        if (e.upTo > this.applied) {
          const at = this.barriers.find((b) => b.seq === e.upTo);
          this.appliedPoint = at?.point ?? null;
        }
        this.applied = Math.max(this.applied, e.upTo);
        while (this.barriers.length > 0 && this.barriers[0]!.seq <= this.applied) this.appliedBytes = this.barriers.shift()!.bytes;
        if (this.endingRound !== null && this.applied >= this.endingRound) {
          // The round's last part is in: the round is over before the next apply is
          // chosen, so what follows it goes in whole epochs again, never as a round part
          // (a part ends anywhere; outside a round that would expose a non-flush image).
          this.endingRound = null;
          this.closeRound();
        }
        while (this.skips.length > 0 && this.skips[0]!.seq <= this.applied) this.skips.shift();
        this.releasing = true;
        return [{ type: 'releaseLog', seq: this.applied }, ...this.maybeApply()];
      }
      case 'released': {
        this.releasing = false;
        return this.stalled === 'paused' && this.up ? [this.resume()] : [];
      }
      case 'appendStopped':
        if (e.upTo < this.logged) {
          this.logged = Math.max(e.upTo, this.logDurable);
          this.pendingBarriers = this.pendingBarriers.filter((b) => b.seq <= this.logged);
          this.pendingRoundEnds = this.pendingRoundEnds.filter((b) => b <= this.logged);
          this.pendingSkips = this.pendingSkips.filter((k) => k.seq <= this.logged);
        }
        if (e.full && this.up && this.held) {
          // A checkpoint keeps the log from draining: pause the primary, keep the link;
          // the release (its apply, then the log's release) resumes it. Without a
          // checkpoint the adapter closes the link and the primary resumes on the next.)
          const more = [...this.maybeSync(), ...this.maybeApply()];
          if (this.held || this.applying || this.releasing || this.syncing || more.length > 0) {
            this.stalled = 'paused';
            return [{ type: 'holdShipping', held: true, after: this.logDurable }, ...more];
          }
        }
        return [];
      case 'roundOpened':
        this.roundOpen = true;
        return this.maybeApply();
      case 'roundClosed':
        this.closeRound();
        return this.maybeApply();
      case 'jumped':
        this.jumpedTo = Math.max(this.jumpedTo, e.seq);
        if (e.seq > this.logged) {
          this.appliedPoint = null;
          this.logged = this.logDurable = this.applied = e.seq;
          this.barriers.length = 0;
          this.pendingBarriers = [];
          this.appliedBytes = this.loggedBytes;
          this.roundEnds.length = 0;
          this.pendingRoundEnds = [];
          this.skips = [];
          this.pendingSkips = [];
        }
        return [];
      case 'syncFailed':
        this.syncing = false;
        return [];
      case 'applyFailed':
        this.applying = false;
        this.endingRound = null;
        this.applyBlocked = true; // no busy retry against a full disk: the next link retries
        return [];
      case 'retryApply':
        this.applyBlocked = false;
        return this.maybeApply();
      case 'groupLimit':
        this.groupLimit = e.point;
        return this.maybeApply();
      case 'hold': {
        this.held = e.held;
        const out = this.maybeApply();
        // (An apply started here resumes shipping when it is done: see 'applied'.)
        if (!e.held && out.length === 0 && !this.releasing && this.stalled === 'paused' && this.up) out.push(this.resume());
        return out;
      }
    }
  }

  private closeRound(): void {
    this.roundOpen = false;
    while (this.roundEnds.length > 0 && this.roundEnds[0]! <= this.applied) this.roundEnds.shift();
  }

  /** The round end an apply out now finishes (its 'applied' closes the round), or null. */
  private endingRound: number | null = null;

  private resume(): ReceiverAction {
    this.stalled = 'resuming';
    return { type: 'holdShipping', held: false, after: this.logDurable };
  }

  private maybeSync(): ReceiverAction[] {
    if (!this.up || this.syncing || this.logged <= this.logDurable) return [];
    this.syncing = true;
    this.syncAsked = this.logged;
    this.appendsSinceAsk = 0;
    return [{ type: 'sync', upTo: this.logged }];
  }

  /**
   * Applies durable epochs in one unit: several may go as one when the secondary is
   * behind (the replica may apply several epochs atomically, docs/INVARIANTS.md), up
   * to about APPLY_UNIT_BYTES, so a reader or a checkpoint waits for one bounded unit.
   * Never past a barrier that is not durable.
   */
  private maybeApply(): ReceiverAction[] {
    if (this.roundOpen) return this.maybeApplyRound();
    if (this.applying || this.held || this.applyBlocked || this.barriers.length === 0) return [];
    const to = this.exposable();
    if (to <= this.applied) return [];
    assert(to <= this.logDurable, () => `an apply to ${to} would pass the durable end of the receive log (${this.logDurable})`);
    if (this.inGroup) {
      // Invariant 10: a member's replica moves only to a group point, never past the
      // group's limit (a point every member holds durably), so every member can be
      // brought to the same point.
      const end = this.barriers.find((b) => b.seq === to);
      const limitAt = this.barriers.findIndex((b) => b.point !== undefined && b.point === this.groupLimit);
      assert(end?.point !== undefined && limitAt >= 0 && this.barriers.indexOf(end) <= limitAt,
        () => `group member: an apply to record ${to} (${end?.point !== undefined ? `group point ${end.point}` : 'not a group point'}) ` +
          `passes the group's limit (${this.groupLimit === null ? 'none yet' : `group point ${this.groupLimit}`})`);
    }
    this.applying = true;
    return [{ type: 'apply', fromSeq: this.applied + 1, toSeq: to }];
  }

  /**
   * The durable barrier the replica is brought to next: one that no Skip record before
   * it reaches past (a coalesced unit is applied whole, or not at all); the first such
   * barrier at least a unit's bytes ahead, else the newest.
   */
  private exposable(): number {
    let best = this.applied;
    let reach = 0;
    let k = 0;
    const last = this.groupLimitIndex();
    for (let i = 0; i < this.barriers.length && i <= last; i++) {
      const b = this.barriers[i]!;
      while (k < this.skips.length && this.skips[k]!.seq <= b.seq) reach = Math.max(reach, this.skips[k++]!.until);
      if (reach > b.seq) continue;
      // A group member is brought to group points only (host barriers between them are not exposed on their own).
      if (this.inGroup && b.point === undefined) continue;
      best = b.seq;
      if (b.bytes - this.appliedBytes >= this.unitBytes) break;
    }
    return best;
  }

  /** The last barrier (index) a group member may be brought to: the group's limit; every barrier outside a group. */
  private groupLimitIndex(): number {
    if (!this.inGroup) return Infinity;
    if (this.groupLimit === null) return -1;
    return this.barriers.findIndex((b) => b.point === this.groupLimit);
  }

  /** What the group's coordinator needs of this member (src/group/limit.ts). */
  get memberView(): MemberView {
    const points: number[] = [];
    let reach = 0;
    let k = 0;
    for (const b of this.barriers) {
      while (k < this.skips.length && this.skips[k]!.seq <= b.seq) reach = Math.max(reach, this.skips[k++]!.until);
      if (reach <= b.seq && b.point !== undefined) points.push(b.point);
    }
    return { appliedPoint: this.appliedPoint, points, inRound: this.roundOpen };
  }

  /** The group point a durable barrier not yet applied is (null: none). */
  pointAt(seq: number): number | null {
    return this.barriers.find((b) => b.seq === seq)?.point ?? null;
  }

  /** The seq of a durable group point not yet applied (null: not held). */
  seqOfPoint(point: number): number | null {
    return this.barriers.find((b) => b.point === point)?.seq ?? null;
  }

  /**
   * The newest durable barrier the replica could be brought to if everything durable
   * were applied now: what a promote would present (the lag an operator reads is
   * measured to it).
   */
  get newestExposable(): number {
    let best = this.applied;
    let reach = 0;
    let k = 0;
    const last = this.groupLimitIndex();
    for (let i = 0; i < this.barriers.length && i <= last; i++) {
      const b = this.barriers[i]!;
      while (k < this.skips.length && this.skips[k]!.seq <= b.seq) reach = Math.max(reach, this.skips[k++]!.until);
      if (reach <= b.seq && (!this.inGroup || b.point !== undefined)) best = b.seq;
    }
    return best;
  }

  /**
   * In a resync round the replica's old image is kept by the undo area, so whatever
   * is durable is applied at once (the receive log never fills waiting for the
   * round's end), in parts that stop exactly at the round's end.
   */
  private maybeApplyRound(): ReceiverAction[] {
    if (this.applying || this.held || this.applyBlocked) return [];
    const end = this.roundEnds.find((r) => r > this.applied);
    const to = end !== undefined ? Math.min(end, this.logDurable) : this.logDurable;
    if (to <= this.applied) return [];
    this.applying = true;
    if (to === end) this.endingRound = end;
    return [{ type: 'apply', fromSeq: this.applied + 1, toSeq: to, round: true, endsRound: to === end }];
  }
}
