// Operator actions on a replicated volume that leave its role as it is: checkpoints
// (create, release, the schedule, hold expiry), drills over them, pausing shipping and
// the online verify. The base of RoleChanges (roles.ts), which adds promote and demote;
// one queue runs them all, one action at a time per node (docs/FAILOVER.md).
import { withoutName, type UnavailableVolumes } from './unavailable.js';
import fs from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../units/units.js';
import type { Logger } from '../log/log.js';
import { CHECKPOINT_SUFFIX, CheckpointExport } from '../checkpoint/checkpoint-export.js';
import type { Checkpoint } from '../secondary/replica.js';
import type { VolumeEntry } from './volume-entry.js';
import type { LinkManager } from './links.js';
import type { ExportRegistry } from '../export/registry.js';
import { pointName } from '../history/history.js';
import { ActionRefused, type ActionResult, type CheckpointInfo, type HistoryInfo, type RefusalReason } from '../contract/actions.js';
import { DRILL_SUFFIX, DrillOverlay } from '../drill/drill.js';
import { CheckpointSchedule, holdError } from '../checkpoint/schedule.js';
import type { NodeGroups } from './groups.js';
import type { GroupConfig } from '../config/config.js';
import { pastGroupPoint, type MemberPoints } from '../group/past-point.js';

/** Present while the operator has paused shipping of a primary volume. */
export const PAUSED_FILE = 'paused';

/** The drill overlay's file in the volume's state folder (thrown away at stop and at start). */
export const DRILL_FILE = 'drill.overlay';

/**
 * What these actions need of the daemon, and no more (the Daemon is one; tests pass a
 * double): its volumes, the export registry and the peer links. RoleHost (roles.ts)
 * adds what a role change needs.
 */
export interface ActionHost {
  readonly config: { readonly node: string };
  readonly entries: readonly VolumeEntry[];
  readonly registry: Pick<ExportRegistry, 'add' | 'remove'>;
  /** null: no identity yet (offsite init), so no link runs. */
  readonly links: Pick<LinkManager, 'pausedVolumes' | 'pause' | 'verify'> | null;
  /** Consistency groups (docs/GROUPS.md); absent: none. */
  readonly groups?: Pick<NodeGroups, 'group' | 'groupOf' | 'checkpoint'>;
  /** Volumes the daemon could not open (src/node/set-aside.ts); absent: none. */
  readonly unavailable?: Pick<UnavailableVolumes, 'reason'>;
}

/**
 * The actions that keep a volume's role, and what every action shares: the queue that
 * runs them one at a time and the look-ups by name that refuse with a reason.
 */
export class VolumeActions<H extends ActionHost = ActionHost> {
  private busy: Promise<unknown> = Promise.resolve();

  constructor(protected readonly daemon: H, protected readonly log: Logger) {}

  /** Runs actions one at a time (RoleChanges' promote and demote too). */
  protected serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.busy.then(f, f);
    this.busy = p.catch(() => undefined);
    return p;
  }

  /** Runs `f` in the same queue, after the actions before it (a volume let go: src/node/volume-removal.ts). */
  exclusive<T>(f: () => Promise<T>): Promise<T> {
    return this.serial(f);
  }

  /** A volume let go: what the actions kept of it by name goes (its checkpoint schedule). */
  forget(name: string): void {
    this.stoppedChanges.delete(name);
    this.replanSchedule(name);
  }

  /** The volume's checkpoint schedule changed (a reload): the next tick plans it from its config again. */
  replanSchedule(name: string): void {
    this.schedules.delete(name);
  }

  /** Resolves when no action is running. */
  async idle(): Promise<void> {
    await this.busy;
  }

  /** The consistency group of that name, if any. */
  protected groupNamed(name: string): GroupConfig | null {
    return this.daemon.groups?.group(name) ?? null;
  }

  /**
   * A checkpoint, drill, promote or demote of one member of a group is refused: the
   * members must stay at one moment, so these act on the whole group (docs/GROUPS.md).
   */
  protected refuseMember(name: string, command: string): void {
    const g = this.daemon.groups?.groupOf(name);
    if (g) {
      throw new ActionRefused('conflict', `volume ${name} is in consistency group ${g.name} (with ${g.members.filter((m) => m !== name).join(', ')}): ` +
        `${command.split(' ')[0]} acts on the whole group, so its members stay at one moment: offsite ${command} ${g.name}`);
    }
  }

  /**
   * Volumes whose role change stopped part-way where only a restart completes it (their
   * files may be half removed), with why: every action on them is refused with it until then.
   */
  protected readonly stoppedChanges = new Map<string, string>();

  protected entry(name: string): VolumeEntry {
    const stopped = this.stoppedChanges.get(name);
    if (stopped !== undefined) throw new ActionRefused('conflict', `${stopped}; nothing else is done to ${name} until then`);
    const e = this.daemon.entries.find((x) => x.config.name === name);
    const setAside = e ? null : this.daemon.unavailable?.reason(name) ?? null;
    if (setAside !== null) {
      throw new ActionRefused('unavailable', `volume ${name} is not served on node ${this.daemon.config.node}: it did not open ` +
        `(${withoutName(name, setAside)}); put that right and run \`offsite reload\``);
    }
    if (!e) throw new ActionRefused('not-found', `no volume named ${name} on node ${this.daemon.config.node}`);
    if (e.config.peer === undefined) throw new ActionRefused('not-replicated', `volume ${name} is not replicated (it has no peer)`);
    return e;
  }

  protected secondary(name: string, what: string): VolumeEntry {
    const e = this.entry(name);
    if (e.role !== 'secondary' || !e.replica) {
      throw new ActionRefused('wrong-role', `volume ${name} is primary on this node; ${what} runs on the node that holds the secondary (${e.config.peer})`);
    }
    return e;
  }

  // --- history (docs/HISTORY.md) ------------------------------------------------

  history(name: string): HistoryInfo {
    const e = this.secondary(name, 'its history');
    const h = e.replica!.history;
    if (!h) throw new ActionRefused('conflict', `volume ${name} keeps no history (set history: in its config, docs/HISTORY.md)`);
    return {
      volume: name, points: e.replica!.historyPoints(), bytes: h.bytes,
      keepSeconds: h.settings.keepMs === null ? null : h.settings.keepMs / 1000, maxBytes: h.settings.maxBytes, droppedForSize: h.droppedForSize,
    };
  }

  // --- checkpoints ------------------------------------------------------------

  checkpoints(): CheckpointInfo[] {
    return this.daemon.entries.filter((e) => e.replica?.checkpoint).map((e) => ({
      ...e.replica!.checkpoint!, volume: e.config.name, export: `${e.config.name}${CHECKPOINT_SUFFIX}`,
    }));
  }

  createCheckpoint(name: string, opts: { label?: string | undefined; holdSeconds?: number | undefined; at?: number | undefined }, now = Date.now()):
    Promise<ActionResult> {
    // Before anything is held: the API, the schedule (checked by the config too) and SNMP all come here.
    const holdWrong = opts.holdSeconds === undefined ? null : holdError(opts.holdSeconds);
    if (holdWrong) return Promise.reject(new ActionRefused('invalid', `hold: ${holdWrong}`));
    return this.serial(async () => {
      const label = opts.label ?? `manual-${new Date(now).toISOString().slice(0, 19)}Z`;
      const g = this.groupNamed(name);
      if (g) return this.groupCheckpoint(g, label, opts.holdSeconds, now, false, opts.at);
      this.refuseMember(name, 'checkpoint create');
      const e = this.secondary(name, 'a checkpoint');
      const rp = e.replica!;
      let cp: Checkpoint;
      try {
        cp = await rp.createCheckpoint(label, opts.holdSeconds === undefined ? null : opts.holdSeconds * 1000, now, false, undefined, opts.at);
      } catch (err) {
        throw new ActionRefused(refusalOf(err), (err as Error).message);
      }
      this.daemon.registry.add(new CheckpointExport(rp, cp));
      const named = cp.point ? rp.historyPoints().find((p) => p.seq === cp.point!.seq) : undefined;
      const what = named ? `holds ${pointName(named)}` :
        `held at record ${cp.appliedSeq}`;
      return {
        volume: name,
        message: `checkpoint "${label}" of ${name} ${what}; read it at export ${name}${CHECKPOINT_SUFFIX}`,
        checkpoint: cp,
      };
    });
  }

  /**
   * A checkpoint of every member at one group point: the group's limit is stopped,
   * every member is brought to it, then each is frozen there (the same point number on
   * each), and the limit moves again (the holds keep the members where they are).
   */
  private async groupCheckpoint(
    g: GroupConfig, label: string, holdSeconds: number | undefined, now: number, forDrill: boolean, at?: number,
  ): Promise<ActionResult> {
    const entries = g.members.map((m) => this.secondary(m, forDrill ? 'a drill' : 'a checkpoint'));
    const held = entries.filter((e) => e.replica!.checkpoint);
    if (held.length > 0) {
      const holders = held.map((e) => `${e.config.name} holds checkpoint "${e.replica!.checkpoint!.label}"`).join(', ');
      throw new ActionRefused('busy', `group ${g.name}: ${holders}; release it first (offsite checkpoint release ${g.name})`);
    }
    let point: number;
    try {
      if (at !== undefined) point = await this.groupCheckpointAt(g, entries, label, holdSeconds, now, forDrill, at);
      else ({ point } = await this.daemon.groups!.checkpoint(g.name, label, holdSeconds === undefined ? null : holdSeconds * 1000, now, forDrill));
    } catch (err) {
      throw new ActionRefused((err as NodeJS.ErrnoException).code === 'EEXIST' ? 'busy' : 'conflict',
        `no checkpoint of group ${g.name}: ${(err as Error).message}`);
    }
    for (const e of entries) this.daemon.registry.add(new CheckpointExport(e.replica!, e.replica!.checkpoint!));
    const where = entries.map((e) => `${e.config.name} at record ${e.replica!.checkpoint!.appliedSeq}`).join(', ');
    const past = at !== undefined ? `, a past point of ${new Date(entries[0]!.replica!.checkpoint!.point!.time).toISOString()},` : '';
    const message = `checkpoint "${label}" of group ${g.name} held at group point ${point}${past} (${where}); ` +
      `read it at ${entries.map((e) => `${e.config.name}${CHECKPOINT_SUFFIX}`).join(', ')}`;
    this.log.info({ group: g.name }, message);
    return {
      volume: g.name,
      group: g.name,
      groupPoint: point,
      message,
      checkpoints: entries.map((e) => ({ volume: e.config.name, ...e.replica!.checkpoint! })),
    };
  }

  releaseCheckpoint(name: string): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) {
        const entries = g.members.map((m) => this.secondary(m, 'a checkpoint'));
        const drilling = entries.filter((e) => e.drill);
        if (drilling.length > 0) {
          throw new ActionRefused('busy', `a drill of group ${g.name} runs over its checkpoint; stop it first (offsite drill stop ${g.name})`);
        }
        if (entries.every((e) => !e.replica!.checkpoint)) throw new ActionRefused('conflict', `group ${g.name} holds no checkpoint`);
        for (const e of entries) {
          this.daemon.registry.remove(`${e.config.name}${CHECKPOINT_SUFFIX}`);
          await e.replica!.releaseCheckpoint();
          this.letGo(e);
        }
        return { volume: g.name, group: g.name, message: `checkpoint of group ${g.name} released on ${g.members.join(', ')}; the replicas catch up` };
      }
      this.refuseMember(name, 'checkpoint release');
      const e = this.secondary(name, 'a checkpoint');
      const rp = e.replica!;
      if (!rp.checkpoint) throw new ActionRefused('conflict', `volume ${name} holds no checkpoint`);
      if (e.drill) {
        throw new ActionRefused('busy', `a drill of ${name} runs over checkpoint "${rp.checkpoint.label}"; stop it first (offsite drill stop ${name})`);
      }
      this.daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
      const cp = await rp.releaseCheckpoint();
      this.letGo(e);
      return { volume: name, message: `checkpoint "${cp?.label ?? ''}" of ${name} released; the replica catches up`, checkpoint: cp };
    });
  }

  // --- pause and resume -------------------------------------------------------

  /** Stops (or restarts) shipping a primary volume; the host keeps writing. Kept across restarts. */
  pause(name: string, paused: boolean): Promise<ActionResult> {
    return this.serial(async () => {
      const e = this.entry(name);
      if (e.role !== 'primary') {
        throw new ActionRefused('wrong-role',
          `volume ${name} is secondary on this node; ${paused ? 'pause' : 'resume'} runs on the node that holds its primary (${e.config.peer})`);
      }
      const links = this.daemon.links;
      if (!links) throw new ActionRefused('no-link', `node ${this.daemon.config.node} has no link yet (run offsite init)`);
      const file = path.join(e.dir, PAUSED_FILE);
      if (paused) {
        fs.writeFileSync(file, 'shipping paused by the operator\n', { mode: 0o600 });
        links.pausedVolumes.add(name);
      } else {
        fs.rmSync(file, { force: true });
        links.pausedVolumes.delete(name);
      }
      fsyncDir(e.dir);
      links.pause(name, paused);
      const j = e.journaled!.journal;
      const message = paused
        ? `shipping of ${name} paused; the host keeps writing, the journal holds the backlog ` +
          `(${formatBytes(j.backlogBytes)} now, ${formatBytes(j.capacity)} at most)`
        : `shipping of ${name} resumed; backlog ${formatBytes(j.backlogBytes)}`;
      this.log.info({ volume: name }, message);
      return { volume: name, message };
    });
  }

  // --- verify -----------------------------------------------------------------

  /** Online verify: every region compared with the peer by hash, against the same flush point. */
  verify(name: string, repair: boolean): Promise<ActionResult> {
    return this.serial(async () => {
      const e = this.entry(name);
      if (e.role !== 'primary') {
        throw new ActionRefused('wrong-role', `volume ${name} is secondary on this node; verify runs on the node that holds its primary (${e.config.peer})`);
      }
      if (!this.daemon.links) throw new ActionRefused('no-link', `node ${this.daemon.config.node} has no link yet (run offsite init)`);
      let run;
      try {
        run = this.daemon.links.verify(name, repair);
      } catch (err) {
        throw new ActionRefused('conflict', (err as Error).message);
      }
      return {
        volume: name,
        message: `verify of ${name} started: ${run.end} regions of ${formatBytes(run.regionSize)}` +
          `${repair ? ', repairing what differs' : ''}; offsite status shows its progress`,
      };
    });
  }

  // --- drills -----------------------------------------------------------------

  /**
   * A writable VOLUME@drill: copy-on-write over the held checkpoint (one is taken,
   * labelled "drill", if none is held). Replication goes on into the receive log.
   */
  startDrill(name: string, opts: { at?: number | undefined } = {}): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) return this.groupDrill(g, opts.at);
      this.refuseMember(name, 'drill start');
      const e = this.secondary(name, 'a drill');
      if (e.drill) throw new ActionRefused('busy', `a drill of ${name} is already running (export ${name}${DRILL_SUFFIX})`);
      const rp = e.replica!;
      let owns = false;
      if (opts.at !== undefined && rp.checkpoint) {
        throw new ActionRefused('busy', `checkpoint "${rp.checkpoint.label}" is held on ${name}; release it for a drill of a past point`);
      }
      if (!rp.checkpoint) {
        try {
          await rp.createCheckpoint('drill', null, Date.now(), true, undefined, opts.at);
        } catch (err) {
          throw new ActionRefused(refusalOf(err) === 'busy' ? 'busy' : refusalOf(err), `no drill of ${name}: ${(err as Error).message}`);
        }
        this.daemon.registry.add(new CheckpointExport(rp, rp.checkpoint!));
        owns = true;
      }
      const cp = rp.checkpoint!;
      e.drill = DrillOverlay.open(rp, cp, path.join(e.dir, DRILL_FILE), e.config.bitmap_region, owns);
      this.daemon.registry.add(e.drill);
      const message = `drill of ${name} started over checkpoint "${cp.label}": export ${name}${DRILL_SUFFIX} is writable; ` +
        'its writes stay there and are thrown away at drill stop';
      this.log.info({ volume: name }, message);
      return { volume: name, message };
    });
  }

  /**
   * A group checkpoint of the past (`--at`): the newest group point at or before `at` that
   * every member's history lists (pastGroupPoint), held on each member (nothing is frozen). Its number.
   */
  private async groupCheckpointAt(
    g: GroupConfig, entries: VolumeEntry[], label: string, holdSeconds: number | undefined, now: number, forDrill: boolean, at: number,
  ): Promise<number> {
    const { point, members } = pastGroupPoint(entries.map(memberPoints), at);
    const taken: VolumeEntry[] = [];
    try {
      for (const e of entries) {
        await e.replica!.createCheckpoint(label, holdSeconds === undefined ? null : holdSeconds * 1000, now, forDrill, { group: g.name, groupPoint: point },
          { seq: members.get(e.config.name)!.seq });
        taken.push(e);
      }
    } catch (err) {
      for (const e of taken) await e.replica!.releaseCheckpoint().catch(() => undefined);
      throw err;
    }
    return point;
  }

  /** A drill of every member over one group checkpoint (taken, labelled drill, unless the group holds one). */
  private async groupDrill(g: GroupConfig, at?: number): Promise<ActionResult> {
    const entries = g.members.map((m) => this.secondary(m, 'a drill'));
    if (entries.some((e) => e.drill)) throw new ActionRefused('busy', `a drill of group ${g.name} is already running`);
    const heldBy = entries.filter((e) => e.replica!.checkpoint);
    let owns = false;
    if (at !== undefined && heldBy.length > 0) {
      throw new ActionRefused('busy', `group ${g.name} holds a checkpoint; release it for a drill of a past point (offsite checkpoint release ${g.name})`);
    }
    if (heldBy.length === 0) {
      await this.groupCheckpoint(g, 'drill', undefined, Date.now(), true, at);
      owns = true;
    } else if (heldBy.length !== entries.length || new Set(heldBy.map((e) => e.replica!.checkpoint!.groupPoint)).size !== 1 ||
      heldBy[0]!.replica!.checkpoint!.groupPoint === undefined) {
      throw new ActionRefused('conflict',
        `group ${g.name}: its members hold checkpoints of different moments (${heldBy.map((e) => e.config.name).join(', ')}); ` +
        `release them first (offsite checkpoint release ${g.name})`);
    }
    for (const e of entries) {
      const rp = e.replica!;
      e.drill = DrillOverlay.open(rp, rp.checkpoint!, path.join(e.dir, DRILL_FILE), e.config.bitmap_region, owns);
      this.daemon.registry.add(e.drill);
    }
    const message = `drill of group ${g.name} started at group point ${entries[0]!.replica!.checkpoint!.groupPoint}: ` +
      `exports ${entries.map((e) => `${e.config.name}${DRILL_SUFFIX}`).join(', ')} are writable; their writes are thrown away at drill stop`;
    this.log.info({ group: g.name }, message);
    return { volume: g.name, group: g.name, message };
  }

  stopDrill(name: string): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) {
        const entries = g.members.map((m) => this.secondary(m, 'a drill'));
        if (entries.every((e) => !e.drill)) throw new ActionRefused('conflict', `no drill of group ${g.name} is running`);
        for (const e of entries) {
          await this.endDrill(e);
          if (!e.replica!.checkpoint) this.letGo(e);
        }
        const message = `drill of group ${g.name} stopped: its writes are thrown away`;
        this.log.info({ group: g.name }, message);
        return { volume: g.name, group: g.name, message };
      }
      this.refuseMember(name, 'drill stop');
      const e = this.secondary(name, 'a drill');
      if (!e.drill) throw new ActionRefused('conflict', `no drill of ${name} is running`);
      await this.endDrill(e);
      if (!e.replica!.checkpoint) this.letGo(e);
      const message = `drill of ${name} stopped: its writes are thrown away${e.replica!.checkpoint ? '' : '; the replica catches up'}`;
      this.log.info({ volume: name }, message);
      return { volume: name, message };
    });
  }

  /** The operator let go of a secondary's checkpoint (or the drill over it): what waited for that may go on (RoleChanges.follow). */
  protected letGo(_e: VolumeEntry): void {}

  protected async endDrill(e: VolumeEntry): Promise<void> {
    const d = e.drill;
    if (!d) return;
    e.drill = null;
    this.daemon.registry.remove(d.name);
    this.log.info({ volume: e.config.name }, `volume ${e.config.name}: the drill wrote ${formatBytes(d.bytesWritten)}, thrown away`);
    await d.stop();
    if (d.ownsCheckpoint && e.replica?.checkpoint === d.checkpoint) {
      this.daemon.registry.remove(`${e.config.name}${CHECKPOINT_SUFFIX}`);
      await e.replica.releaseCheckpoint();
    }
  }

  private readonly schedules = new Map<string, CheckpointSchedule>();

  /**
   * Once a second (tests pass their own clock): scheduled checkpoints whose time has
   * come are taken on secondaries, and checkpoints whose hold has expired are released.
   */
  tick(now: number): void {
    for (const e of this.daemon.entries) {
      const planned = e.config.checkpoints;
      if (planned.length === 0 || e.config.peer === undefined) continue;
      let sched = this.schedules.get(e.config.name);
      if (!sched) {
        sched = new CheckpointSchedule(planned.map((c) => ({ cron: c.cron, holdSeconds: c.hold ?? null, label: c.label })), now);
        this.schedules.set(e.config.name, sched);
      }
      for (const due of sched.due(now)) {
        const name = e.config.name;
        if (e.role !== 'secondary') continue; // a primary has no replica to freeze
        if (e.replica?.checkpoint) {
          this.log.warn({ volume: name },
            `volume ${name}: scheduled checkpoint "${due.label}" skipped: checkpoint "${e.replica.checkpoint.label}" is still held`);
          continue;
        }
        // A member's schedule checkpoints its whole group (docs/GROUPS.md).
        const g = this.daemon.groups?.groupOf(name);
        const target = g ? g.name : name;
        this.log.info({ volume: name }, `volume ${name}: scheduled checkpoint "${due.label}" (${due.cron})${g ? ` of its group ${g.name}` : ''}`);
        this.createCheckpoint(target, { label: due.label, holdSeconds: due.holdSeconds ?? undefined }, now)
          .catch((err: Error) => this.log.error({ volume: name }, `volume ${name}: scheduled checkpoint "${due.label}" not taken: ${err.message}`));
      }
    }
    this.expire(now);
  }

  private expire(now: number): void {
    const releasing = new Set<string>();
    for (const cp of this.checkpoints()) {
      if (this.daemon.entries.find((e) => e.config.name === cp.volume)?.drill) continue; // a drill keeps it
      if (cp.holdUntil !== null && now >= cp.holdUntil) {
        // A group checkpoint is released on every member at once.
        const target = cp.group !== undefined && this.daemon.groups?.group(cp.group) ? cp.group : cp.volume;
        if (releasing.has(target)) continue;
        releasing.add(target);
        this.log.info({ volume: cp.volume }, `volume ${cp.volume}: checkpoint "${cp.label}" reached the end of its hold`);
        this.releaseCheckpoint(target).catch((err: Error) =>
          this.log.error({ volume: cp.volume }, `volume ${cp.volume}: releasing checkpoint "${cp.label}" failed: ${err.message}`));
      }
    }
  }
}

/** The refusal a replica's error stands for: held already (busy), no such point or no history (conflict). */
function refusalOf(err: unknown): RefusalReason {
  return (err as NodeJS.ErrnoException).code === 'EEXIST' ? 'busy' : 'conflict';
}

/** A member secondary here, as the pick of a past group point sees it (src/group/past-point.ts). */
export function memberPoints(e: VolumeEntry): MemberPoints {
  return { name: e.config.name, points: e.replica!.history ? e.replica!.historyPoints() : null };
}

/** fsync on a folder: the files made or removed in it are durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
