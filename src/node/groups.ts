// Consistency groups on a node (docs/GROUPS.md): the adapter around the pure machines
// of src/group/. On the primary it makes the group points (a barrier flagged as a group
// point on every member in one turn of the event loop, on the cadence of
// GroupPointCadence); on the secondary it keeps every member's receiver limited to the
// newest group point all members hold durably (groupLimit), and brings the members
// together at one point for a checkpoint or a promote of the group.
import type { GroupConfig } from '../config/config.js';
import type { GroupStatus, VolumeStatus } from '../contract/status.js';
import type { Logger } from '../log/log.js';
import type { Replica } from '../secondary/replica.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { GroupPointCadence } from '../group/cadence.js';
import { groupLimit, type GroupLimitView } from '../group/limit.js';
import { GROUP_POINT_MIN_GAP_MS } from '../limits/limits.js';
import type { VolumeEntry } from './volume-entry.js';
import { assert } from '../invariants/assert.js';

/** Recent group points the primary remembers for the group's lag (a minute of points at the most frequent). */
const MAX_RECENT_POINTS = 600;

/** How long a group checkpoint or promote waits for every member to stand at the group's point. */
const TOGETHER_TIMEOUT_MS = 60_000;

interface GroupState {
  config: GroupConfig;
  cadence: GroupPointCadence;
  /** Secondary: the limit every member's receiver has been given. */
  limit: number | null;
  /** Secondary: the limit does not move (a checkpoint or promote of the group brings the members together). */
  frozen: boolean;
  view: GroupLimitView | null;
  /** Primary: members that missed the last point (bitmap mode, full journal). */
  missed: string[];
  /** Primary: the recent points (newest last) and each member's seq of it, until every member's peer holds them. */
  recent: Array<{ point: number; at: number; seqs: Map<string, number> }>;
  /** The journaled volumes and replicas hooked up (a role change opens new ones). */
  hooked: WeakSet<object>;
}

export interface GroupsHost {
  readonly config: { readonly groups: readonly GroupConfig[] };
  readonly entries: readonly VolumeEntry[];
}

/** The clock and the wait between looks (the simulation passes its own). */
export interface GroupsTiming {
  now: () => number;
  /** A short wait while members are brought to one point. */
  pause: () => Promise<void>;
  /** How many looks before a checkpoint or promote of the group gives up. */
  looks: number;
}

const REAL_TIMING: GroupsTiming = {
  now: () => Date.now(),
  pause: () => new Promise((r) => setTimeout(r, 20)),
  looks: TOGETHER_TIMEOUT_MS / 20,
};

export class NodeGroups {
  private readonly states = new Map<string, GroupState>();
  private timer: NodeJS.Timeout | null = null;
  private readonly timing: GroupsTiming;

  constructor(private readonly host: GroupsHost, private readonly log: Logger, timing: Partial<GroupsTiming> = {}) {
    this.timing = { ...REAL_TIMING, ...timing };
    for (const g of host.config.groups) this.states.set(g.name, this.fresh(g));
  }

  private fresh(g: GroupConfig): GroupState {
    return {
      config: g, cadence: new GroupPointCadence(this.timing.now()), limit: null, frozen: false, view: null, missed: [], recent: [], hooked: new WeakSet(),
    };
  }

  /**
   * A group a reload adds with its members (src/node/reloaded-volumes.ts), before they
   * open: its points begin once they all are served. `started`: the daemon's start is done.
   */
  add(g: GroupConfig, started: boolean): void {
    assert(!this.states.has(g.name), () => `group ${g.name} added twice`);
    this.states.set(g.name, this.fresh(g));
    if (started && this.timer === null) this.start();
  }

  /** A group a reload dropped, once its members are let go (src/node/volume-removal.ts). */
  remove(name: string): void {
    const s = this.states.get(name);
    if (!s) return;
    assert(this.members(s) === null, () => `group ${name} dropped while its members are served`);
    this.states.delete(name);
  }

  get names(): string[] { return [...this.states.keys()]; }

  /** The group a volume is in, if any. */
  groupOf(volume: string): GroupConfig | null {
    for (const s of this.states.values()) if (s.config.members.includes(volume)) return s.config;
    return null;
  }

  group(name: string): GroupConfig | null {
    return this.states.get(name)?.config ?? null;
  }

  start(): void {
    if (this.states.size === 0) return;
    this.tick(this.timing.now());
    this.timer = setInterval(() => this.tick(this.timing.now()), GROUP_POINT_MIN_GAP_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private members(s: GroupState): VolumeEntry[] | null {
    const out: VolumeEntry[] = [];
    for (const m of s.config.members) {
      const e = this.host.entries.find((x) => x.config.name === m);
      if (!e) return null;
      out.push(e);
    }
    return out;
  }

  private roleOf(members: VolumeEntry[]): 'primary' | 'secondary' | 'mixed' {
    if (members.every((e) => e.role === 'primary' && e.journaled)) return 'primary';
    if (members.every((e) => e.role === 'secondary' && e.replica)) return 'secondary';
    return 'mixed';
  }

  /** Every GROUP_POINT_MIN_GAP_MS (tests pass their own clock). */
  tick(now: number): void {
    for (const s of this.states.values()) {
      const members = this.members(s);
      if (!members) continue;
      const role = this.roleOf(members);
      if (role === 'primary') {
        for (const e of members) this.hookPrimary(s, e.journaled!);
        this.maybePoint(s, members.map((e) => e.journaled!), now);
      } else if (role === 'secondary') {
        for (const e of members) this.hookReplica(s, e.replica!);
        this.recompute(s);
      }
    }
  }

  // --- the primary: group points ------------------------------------------------

  private hookPrimary(s: GroupState, j: JournaledVolume): void {
    if (s.hooked.has(j)) return;
    s.hooked.add(j);
    j.groupAsk = (why) => {
      s.cadence.ask(why);
      // (Not inside the member's append: the point follows in a microtask, still before any other I/O completes.)
      if (why === 'bytes') queueMicrotask(() => this.pointNowIfDue(s));
    };
  }

  private pointNowIfDue(s: GroupState): void {
    const members = this.members(s);
    if (members && this.roleOf(members) === 'primary') this.maybePoint(s, members.map((e) => e.journaled!), this.timing.now());
  }

  private maybePoint(s: GroupState, journaled: JournaledVolume[], now: number): void {
    const pending = journaled.some((j) => j.recordsSinceGroupPoint > 0);
    if (!s.cadence.due(now, pending)) return;
    this.makePoint(s, journaled, now);
  }

  /**
   * One group point: a barrier flagged as group point N on every member, in this one
   * synchronous loop (no host write is given a seq in between), then each made durable
   * as a FLUSH makes its barrier durable. Returns its number.
   */
  makePoint(s: GroupState, journaled: JournaledVolume[], now: number): number {
    const n = s.cadence.made(now);
    const missed: string[] = [];
    const durable: Array<Promise<void>> = [];
    const seqs = new Map<string, number>();
    for (const j of journaled) {
      const r = j.groupPoint(n);
      if (!r.made) missed.push(j.name);
      else seqs.set(j.name, j.journal.lastSeq);
      durable.push(r.durable);
    }
    if (missed.length === 0) {
      s.recent.push({ point: n, at: now, seqs });
      // Points every member's peer holds are kept only as the newest such (what the lag is measured to).
      const held = (p: { seqs: Map<string, number> }): boolean => journaled.every((j) => j.journal.heldUpTo >= p.seqs.get(j.name)!);
      while (s.recent.length > 1 && held(s.recent[1]!)) s.recent.shift();
      if (s.recent.length > MAX_RECENT_POINTS) s.recent.splice(0, s.recent.length - MAX_RECENT_POINTS);
    }
    if (missed.length > 0 && missed.join() !== s.missed.join()) {
      // (Info: the switch to the bitmap was warned of itself; a first sync starts there.)
      this.log.info({ group: s.config.name }, `group ${s.config.name}: ${missed.join(', ')} missed group point ${n} (tracking by the dirty bitmap); ` +
        `the group's secondary image is from one moment again once ${missed.length === 1 ? 'its' : 'their'} resync ends`);
    }
    s.missed = missed;
    void Promise.all(durable).catch((e: Error) =>
      this.log.warn({ group: s.config.name }, `group ${s.config.name}: group point ${n} not made durable: ${e.message}`));
    return n;
  }

  // --- the secondary: the group's limit -----------------------------------------

  private hookReplica(s: GroupState, rp: Replica): void {
    if (s.hooked.has(rp)) return;
    s.hooked.add(rp);
    rp.onProgress = () => this.recompute(s);
    // A member opened again (a restart of its receive log, a demote) starts from the group's limit.
    if (s.limit !== null) void rp.setGroupLimit(s.limit).catch((e: Error) => this.log.warn({ volume: rp.name }, `volume ${rp.name}: ${e.message}`));
  }

  private recompute(s: GroupState): void {
    const members = this.members(s);
    if (!members || this.roleOf(members) !== 'secondary') return;
    const view = groupLimit(members.map((e) => ({ name: e.config.name, view: e.replica!.memberView })), s.limit);
    s.view = view;
    if (s.frozen || view.limit === s.limit) return;
    s.limit = view.limit;
    for (const e of members) {
      void e.replica!.setGroupLimit(view.limit).catch((err: Error) =>
        this.log.warn({ volume: e.config.name }, `volume ${e.config.name}: applying to group point ${view.limit}: ${err.message}`));
    }
  }

  /**
   * Stops the group's limit and waits until every member stands at it: the members'
   * images are then from one moment. Returns the point; `thaw` lets the limit move again.
   */
  async bringTogether(name: string): Promise<number> {
    const s = this.states.get(name)!;
    const members = this.members(s);
    if (!members || this.roleOf(members) !== 'secondary') throw new Error(`group ${name}: its members are not all secondary here`);
    this.recompute(s);
    const why = s.view?.notConsistentBecause;
    if (why) throw new Error(`group ${name} is not at one moment: ${why}`);
    if (s.limit === null) throw new Error(`group ${name}: no group point has reached every member yet`);
    s.frozen = true;
    const point = s.limit;
    for (let look = 0; ; look++) {
      for (const e of members) await e.replica!.applyIdle();
      const behind = members.filter((e) => e.replica!.memberView.appliedPoint !== point);
      if (behind.length === 0) return point;
      if (look >= this.timing.looks) {
        this.thaw(name);
        throw new Error(`group ${name}: ${behind.map((e) => e.config.name).join(', ')} did not reach group point ${point} ` +
          `within ${Math.round(TOGETHER_TIMEOUT_MS / 1000)} s`);
      }
      // (Their applies to the point were asked for when the limit moved; a failed one is retried by the next link.)
      await this.timing.pause();
    }
  }

  /**
   * A checkpoint of every member at one group point (docs/GROUPS.md): the limit is
   * stopped, every member brought to it, each frozen there (the same point number on
   * each), then the limit moves again (the holds keep the members where they are). On
   * a failure part-way the checkpoints taken are released. Returns the point.
   */
  async checkpoint(name: string, label: string, holdMs: number | null, now: number, forDrill: boolean): Promise<{ point: number; replicas: Replica[] }> {
    const s = this.states.get(name)!;
    const point = await this.bringTogether(name);
    const replicas = this.members(s)!.map((e) => e.replica!);
    const taken: Replica[] = [];
    try {
      for (const rp of replicas) {
        await rp.createCheckpoint(label, holdMs, now, forDrill, { group: name, groupPoint: point });
        taken.push(rp);
      }
    } catch (err) {
      for (const rp of taken) await rp.releaseCheckpoint().catch(() => undefined);
      throw err;
    } finally {
      this.thaw(name);
    }
    return { point, replicas };
  }

  /**
   * The limit stays where it is until `thaw` (a promote of the group to a past point: with
   * the links gone, nothing more is applied, so the history keeps the point it goes to).
   */
  hold(name: string): void {
    const s = this.states.get(name);
    if (s) s.frozen = true;
  }

  /** The limit moves again. */
  thaw(name: string): void {
    const s = this.states.get(name);
    if (!s) return;
    s.frozen = false;
    this.recompute(s);
  }

  // --- status ---------------------------------------------------------------------

  /**
   * The group's lag on the primary (seconds): the age of the newest group point every
   * member's peer holds durably (a promote of the group there goes back to it), when a
   * member has records after it; 0 when every member's peer holds everything.
   */
  private primaryLag(s: GroupState, journaled: JournaledVolume[]): number {
    if (journaled.every((j) => j.journal.heldUpTo >= j.journal.lastSeq)) return 0;
    const now = this.timing.now();
    let newest: { at: number } | null = null;
    for (const p of s.recent) if (journaled.every((j) => j.journal.heldUpTo >= (p.seqs.get(j.name) ?? Infinity))) newest = p;
    // (No point held by every peer since the start: from the oldest point remembered, if any.)
    const from = newest ?? s.recent[0] ?? null;
    return from === null ? 0 : Math.round((now - from.at) / 100) / 10;
  }

  status(volumes: ReadonlyArray<Pick<VolumeStatus, 'name' | 'lagSeconds' | 'consistent' | 'tracking'>>): GroupStatus[] {
    const out: GroupStatus[] = [];
    for (const s of this.states.values()) {
      const members = this.members(s);
      const vs = s.config.members.map((m) => volumes.find((v) => v.name === m));
      const lagSeconds = Math.max(0, ...vs.map((v) => v?.lagSeconds ?? 0));
      const role = members ? this.roleOf(members) : 'mixed';
      const base = { name: s.config.name, members: [...s.config.members], role, lagSeconds };
      if (role === 'primary') {
        const bitmap = vs.filter((v) => v?.tracking === 'bitmap').map((v) => v!.name);
        const reason = bitmap.length > 0
          ? `${bitmap.join(', ')} ${bitmap.length === 1 ? 'tracks' : 'track'} changes by the dirty bitmap: ` +
            `group points do not reach ${bitmap.length === 1 ? 'it' : 'them'} until the resync ends`
          : null;
        out.push({
          ...base,
          lagSeconds: Math.max(lagSeconds, this.primaryLag(s, members!.map((e) => e.journaled!))),
          consistent: reason === null,
          reason,
          groupPoint: s.cadence.last || null,
          together: reason === null,
        });
      } else if (role === 'secondary') {
        if (members) this.recompute(s);
        const v = s.view;
        const torn = vs.filter((x) => x && !x.consistent).map((x) => x!.name);
        const reason = v?.notConsistentBecause ??
          (torn.length > 0 ? `${torn.join(', ')} ${torn.length === 1 ? 'is' : 'are'} no flush-point image now` : null) ??
          (s.limit === null ? 'no group point has reached every member yet' : null);
        out.push({ ...base, consistent: reason === null, reason, groupPoint: s.limit, together: v?.together ?? false });
      } else {
        const missing = s.config.members.filter((_, i) => vs[i] === undefined);
        out.push({
          ...base,
          consistent: false,
          reason: missing.length > 0
            ? `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not served here (did not open: the status's unavailable says why), ` +
              'and the group makes no group point without every member'
            : 'the members do not hold one role here (a promote or demote of the group is under way, or was done member by member)',
          groupPoint: null,
          together: false,
        });
      }
    }
    return out;
  }
}
