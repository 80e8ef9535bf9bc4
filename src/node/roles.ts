// Operator actions on a node's volumes: checkpoints (create, release, expiry) and
// role changes (promote, demote). One action at a time per node; each says what it
// did in words an operator can act on, or refuses and says why.
import fs from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../units/units.js';
import type { Logger } from '../log/log.js';
import { CHECKPOINT_SUFFIX, CheckpointExport } from '../checkpoint/checkpoint-export.js';
import type { Checkpoint } from '../secondary/replica.js';
import type { VolumeEntry } from './volume-entry.js';
import type { LinkManager } from './links.js';
import type { ExportRegistry } from '../export/registry.js';
import type { ExportBackend } from '../export/backend.js';
import { ActionRefused, type ActionResult, type CheckpointInfo, type NodeActions } from '../contract/actions.js';
import { DRILL_SUFFIX, DrillOverlay } from '../drill/drill.js';
import { CheckpointSchedule, holdError } from '../checkpoint/schedule.js';
import type { NodeGroups } from './groups.js';
import type { GroupConfig } from '../config/config.js';

/** Present while the operator has paused shipping of a primary volume. */
export const PAUSED_FILE = 'paused';

/** The drill overlay's file in the volume's state folder (thrown away at stop and at start). */
export const DRILL_FILE = 'drill.overlay';

/**
 * What the actions need of the daemon, and no more (the Daemon is one; tests pass a
 * double): its volumes, the export registry, the peer links, and opening a volume in
 * its new role.
 */
export interface RoleHost {
  readonly config: { readonly node: string };
  readonly entries: readonly VolumeEntry[];
  readonly registry: Pick<ExportRegistry, 'add' | 'remove'>;
  /** null: no identity yet (offsite init), so no link runs. */
  readonly links: Pick<LinkManager, 'linkState' | 'volumeChanged' | 'volumeReady' | 'pausedVolumes' | 'pause' | 'verify'> | null;
  /** Opens the volume in its current role (after a promote or demote). */
  openRole(e: VolumeEntry): Promise<void>;
  /** The export the volume's name serves in its current role. */
  backendOf(e: VolumeEntry): ExportBackend;
  /** Consistency groups (docs/GROUPS.md); absent: none. */
  readonly groups?: Pick<NodeGroups, 'group' | 'groupOf' | 'bringTogether' | 'thaw' | 'checkpoint'>;
}

/** Files in a volume's state folder that belong to neither role: kept across a role change. */
const KEEP = new Set(['identity.json', 'history.csv']);
const JOURNAL_FILE = /^(?:\d{20}\.seg|released|applied|intent)(?:\.tmp)?$/;

export class RoleChanges implements NodeActions {
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly daemon: RoleHost, private readonly log: Logger) {}

  /** Runs actions one at a time. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.busy.then(f, f);
    this.busy = p.catch(() => undefined);
    return p;
  }

  /** Resolves when no action is running. */
  async idle(): Promise<void> {
    await this.busy;
  }

  /** The consistency group of that name, if any. */
  private groupNamed(name: string): GroupConfig | null {
    return this.daemon.groups?.group(name) ?? null;
  }

  /**
   * A checkpoint, drill, promote or demote of one member of a group is refused: the
   * members must stay at one moment, so these act on the whole group (docs/GROUPS.md).
   */
  private refuseMember(name: string, command: string): void {
    const g = this.daemon.groups?.groupOf(name);
    if (g) throw new ActionRefused('conflict', `volume ${name} is in consistency group ${g.name} (with ${g.members.filter((m) => m !== name).join(', ')}): ${command.split(' ')[0]} acts on the whole group, so its members stay at one moment: offsite ${command} ${g.name}`);
  }

  private entry(name: string): VolumeEntry {
    const e = this.daemon.entries.find((x) => x.config.name === name);
    if (!e) throw new ActionRefused('not-found', `no volume named ${name} on node ${this.daemon.config.node}`);
    if (e.config.peer === undefined) throw new ActionRefused('not-replicated', `volume ${name} is not replicated (it has no peer)`);
    return e;
  }

  private secondary(name: string, what: string): VolumeEntry {
    const e = this.entry(name);
    if (e.role !== 'secondary' || !e.replica) {
      throw new ActionRefused('wrong-role', `volume ${name} is primary on this node; ${what} runs on the node that holds the secondary (${e.config.peer})`);
    }
    return e;
  }

  // --- checkpoints ------------------------------------------------------------

  checkpoints(): CheckpointInfo[] {
    return this.daemon.entries.filter((e) => e.replica?.checkpoint).map((e) => ({
      ...e.replica!.checkpoint!, volume: e.config.name, export: `${e.config.name}${CHECKPOINT_SUFFIX}`,
    }));
  }

  createCheckpoint(name: string, opts: { label?: string | undefined; holdSeconds?: number | undefined }, now = Date.now()): Promise<ActionResult> {
    // Before anything is held: the API, the schedule (checked by the config too) and SNMP all come here.
    const holdWrong = opts.holdSeconds === undefined ? null : holdError(opts.holdSeconds);
    if (holdWrong) return Promise.reject(new ActionRefused('invalid', `hold: ${holdWrong}`));
    return this.serial(async () => {
      const label = opts.label ?? `manual-${new Date(now).toISOString().slice(0, 19)}Z`;
      const g = this.groupNamed(name);
      if (g) return this.groupCheckpoint(g, label, opts.holdSeconds, now, false);
      this.refuseMember(name, 'checkpoint create');
      const e = this.secondary(name, 'a checkpoint');
      const rp = e.replica!;
      let cp: Checkpoint;
      try {
        cp = await rp.createCheckpoint(label, opts.holdSeconds === undefined ? null : opts.holdSeconds * 1000, now);
      } catch (err) {
        throw new ActionRefused((err as NodeJS.ErrnoException).code === 'EEXIST' ? 'busy' : 'conflict', (err as Error).message);
      }
      this.daemon.registry.add(new CheckpointExport(rp, cp));
      return { volume: name, message: `checkpoint "${label}" of ${name} held at record ${cp.appliedSeq}; read it at export ${name}${CHECKPOINT_SUFFIX}`, checkpoint: cp };
    });
  }

  /**
   * A checkpoint of every member at one group point: the group's limit is stopped,
   * every member is brought to it, then each is frozen there (the same point number on
   * each), and the limit moves again (the holds keep the members where they are).
   */
  private async groupCheckpoint(g: GroupConfig, label: string, holdSeconds: number | undefined, now: number, forDrill: boolean): Promise<ActionResult> {
    const entries = g.members.map((m) => this.secondary(m, forDrill ? 'a drill' : 'a checkpoint'));
    const held = entries.filter((e) => e.replica!.checkpoint);
    if (held.length > 0) throw new ActionRefused('busy', `group ${g.name}: ${held.map((e) => `${e.config.name} holds checkpoint "${e.replica!.checkpoint!.label}"`).join(', ')}; release it first (offsite checkpoint release ${g.name})`);
    let point: number;
    try {
      ({ point } = await this.daemon.groups!.checkpoint(g.name, label, holdSeconds === undefined ? null : holdSeconds * 1000, now, forDrill));
    } catch (err) {
      throw new ActionRefused((err as NodeJS.ErrnoException).code === 'EEXIST' ? 'busy' : 'conflict', `no checkpoint of group ${g.name}: ${(err as Error).message}`);
    }
    for (const e of entries) this.daemon.registry.add(new CheckpointExport(e.replica!, e.replica!.checkpoint!));
    const at = entries.map((e) => `${e.config.name} at record ${e.replica!.checkpoint!.appliedSeq}`).join(', ');
    const message = `checkpoint "${label}" of group ${g.name} held at group point ${point} (${at}); read it at ${entries.map((e) => `${e.config.name}${CHECKPOINT_SUFFIX}`).join(', ')}`;
    this.log.info({ group: g.name }, message);
    return { volume: g.name, group: g.name, groupPoint: point, message, checkpoints: entries.map((e) => ({ volume: e.config.name, ...e.replica!.checkpoint! })) };
  }

  releaseCheckpoint(name: string): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) {
        const entries = g.members.map((m) => this.secondary(m, 'a checkpoint'));
        const drilling = entries.filter((e) => e.drill);
        if (drilling.length > 0) throw new ActionRefused('busy', `a drill of group ${g.name} runs over its checkpoint; stop it first (offsite drill stop ${g.name})`);
        if (entries.every((e) => !e.replica!.checkpoint)) throw new ActionRefused('conflict', `group ${g.name} holds no checkpoint`);
        for (const e of entries) {
          this.daemon.registry.remove(`${e.config.name}${CHECKPOINT_SUFFIX}`);
          await e.replica!.releaseCheckpoint();
        }
        return { volume: g.name, group: g.name, message: `checkpoint of group ${g.name} released on ${g.members.join(', ')}; the replicas catch up` };
      }
      this.refuseMember(name, 'checkpoint release');
      const e = this.secondary(name, 'a checkpoint');
      const rp = e.replica!;
      if (!rp.checkpoint) throw new ActionRefused('conflict', `volume ${name} holds no checkpoint`);
      if (e.drill) throw new ActionRefused('busy', `a drill of ${name} runs over checkpoint "${rp.checkpoint.label}"; stop it first (offsite drill stop ${name})`);
      this.daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
      const cp = await rp.releaseCheckpoint();
      return { volume: name, message: `checkpoint "${cp?.label ?? ''}" of ${name} released; the replica catches up`, checkpoint: cp };
    });
  }

  // --- pause and resume -------------------------------------------------------

  /** Stops (or restarts) shipping a primary volume; the host keeps writing. Kept across restarts. */
  pause(name: string, paused: boolean): Promise<ActionResult> {
    return this.serial(async () => {
      const e = this.entry(name);
      if (e.role !== 'primary') throw new ActionRefused('wrong-role', `volume ${name} is secondary on this node; ${paused ? 'pause' : 'resume'} runs on the node that holds its primary (${e.config.peer})`);
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
        ? `shipping of ${name} paused; the host keeps writing, the journal holds the backlog (${formatBytes(j.backlogBytes)} now, ${formatBytes(j.capacity)} at most)`
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
      if (e.role !== 'primary') throw new ActionRefused('wrong-role', `volume ${name} is secondary on this node; verify runs on the node that holds its primary (${e.config.peer})`);
      if (!this.daemon.links) throw new ActionRefused('no-link', `node ${this.daemon.config.node} has no link yet (run offsite init)`);
      let run;
      try {
        run = this.daemon.links.verify(name, repair);
      } catch (err) {
        throw new ActionRefused('conflict', (err as Error).message);
      }
      return { volume: name, message: `verify of ${name} started: ${run.end} regions of ${formatBytes(run.regionSize)}${repair ? ', repairing what differs' : ''}; offsite status shows its progress` };
    });
  }

  // --- drills -----------------------------------------------------------------

  /**
   * A writable VOLUME@drill: copy-on-write over the held checkpoint (one is taken,
   * labelled "drill", if none is held). Replication goes on into the receive log.
   */
  startDrill(name: string): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) return this.groupDrill(g);
      this.refuseMember(name, 'drill start');
      const e = this.secondary(name, 'a drill');
      if (e.drill) throw new ActionRefused('busy', `a drill of ${name} is already running (export ${name}${DRILL_SUFFIX})`);
      const rp = e.replica!;
      let owns = false;
      if (!rp.checkpoint) {
        try {
          await rp.createCheckpoint('drill', null, Date.now(), true);
        } catch (err) {
          throw new ActionRefused('conflict', `no drill of ${name}: ${(err as Error).message}`);
        }
        this.daemon.registry.add(new CheckpointExport(rp, rp.checkpoint!));
        owns = true;
      }
      const cp = rp.checkpoint!;
      e.drill = DrillOverlay.open(rp, cp, path.join(e.dir, DRILL_FILE), e.config.bitmap_region, owns);
      this.daemon.registry.add(e.drill);
      const message = `drill of ${name} started over checkpoint "${cp.label}": export ${name}${DRILL_SUFFIX} is writable; its writes stay there and are thrown away at drill stop`;
      this.log.info({ volume: name }, message);
      return { volume: name, message };
    });
  }

  /** A drill of every member over one group checkpoint (taken, labelled drill, unless the group holds one). */
  private async groupDrill(g: GroupConfig): Promise<ActionResult> {
    const entries = g.members.map((m) => this.secondary(m, 'a drill'));
    if (entries.some((e) => e.drill)) throw new ActionRefused('busy', `a drill of group ${g.name} is already running`);
    const heldBy = entries.filter((e) => e.replica!.checkpoint);
    let owns = false;
    if (heldBy.length === 0) {
      await this.groupCheckpoint(g, 'drill', undefined, Date.now(), true);
      owns = true;
    } else if (heldBy.length !== entries.length || new Set(heldBy.map((e) => e.replica!.checkpoint!.groupPoint)).size !== 1 || heldBy[0]!.replica!.checkpoint!.groupPoint === undefined) {
      throw new ActionRefused('conflict', `group ${g.name}: its members hold checkpoints of different moments (${heldBy.map((e) => e.config.name).join(', ')}); release them first (offsite checkpoint release ${g.name})`);
    }
    for (const e of entries) {
      const rp = e.replica!;
      e.drill = DrillOverlay.open(rp, rp.checkpoint!, path.join(e.dir, DRILL_FILE), e.config.bitmap_region, owns);
      this.daemon.registry.add(e.drill);
    }
    const message = `drill of group ${g.name} started at group point ${entries[0]!.replica!.checkpoint!.groupPoint}: exports ${entries.map((e) => `${e.config.name}${DRILL_SUFFIX}`).join(', ')} are writable; their writes are thrown away at drill stop`;
    this.log.info({ group: g.name }, message);
    return { volume: g.name, group: g.name, message };
  }

  stopDrill(name: string): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) {
        const entries = g.members.map((m) => this.secondary(m, 'a drill'));
        if (entries.every((e) => !e.drill)) throw new ActionRefused('conflict', `no drill of group ${g.name} is running`);
        for (const e of entries) await this.endDrill(e);
        const message = `drill of group ${g.name} stopped: its writes are thrown away`;
        this.log.info({ group: g.name }, message);
        return { volume: g.name, group: g.name, message };
      }
      this.refuseMember(name, 'drill stop');
      const e = this.secondary(name, 'a drill');
      if (!e.drill) throw new ActionRefused('conflict', `no drill of ${name} is running`);
      await this.endDrill(e);
      const message = `drill of ${name} stopped: its writes are thrown away${e.replica!.checkpoint ? '' : '; the replica catches up'}`;
      this.log.info({ volume: name }, message);
      return { volume: name, message };
    });
  }

  private async endDrill(e: VolumeEntry): Promise<void> {
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
          this.log.warn({ volume: name }, `volume ${name}: scheduled checkpoint "${due.label}" skipped: checkpoint "${e.replica.checkpoint.label}" is still held`);
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
        this.releaseCheckpoint(target).catch((err: Error) => this.log.error({ volume: cp.volume }, `volume ${cp.volume}: releasing checkpoint "${cp.label}" failed: ${err.message}`));
      }
    }
  }

  // --- promote and demote -----------------------------------------------------

  /**
   * Failover: the secondary applies what it holds durably, becomes primary with a
   * new generation, and serves the volume read-write. Refused (unless forced) while
   * the primary is still connected or the replica is not a flush-point image.
   */
  promote(name: string, opts: { force?: boolean | undefined }): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) return this.groupPromote(g, opts);
      this.refuseMember(name, 'promote');
      return this.promoteOne(name, opts);
    });
  }

  /**
   * A promote of every member at one group point: each member's link goes and its
   * receive log is made durable, the group's limit is stopped at the newest group
   * point every member holds, every member is brought to it, and each is promoted
   * there (what follows the point in a member's log is discarded, as records after a
   * flush point are for one volume).
   */
  private async groupPromote(g: GroupConfig, opts: { force?: boolean | undefined }): Promise<ActionResult> {
    const t0 = performance.now();
    const entries = g.members.map((m) => this.entry(m));
    const todo = entries.filter((e) => e.role === 'secondary' && e.replica);
    if (todo.length === 0) throw new ActionRefused('wrong-role', `group ${g.name} is already primary on this node`);
    const reasons: string[] = [];
    for (const e of todo) {
      const peer = e.config.peer!;
      if (this.daemon.links?.linkState(peer) === 'connected') reasons.push(`${e.config.name}'s primary on ${peer} is still connected (demote group ${g.name} on ${peer} first, or stop that node)`);
      const notImage = e.replica!.notFrozenBecause();
      if (notImage) reasons.push(`${e.config.name} is no flush-point image: ${notImage}`);
    }
    if (reasons.length > 0 && !opts.force) throw new ActionRefused('conflict', `refused to promote group ${g.name}: ${reasons.join('; ')}. Add --force to promote anyway`);
    const daemon = this.daemon;
    for (const e of todo) {
      await this.endDrill(e);
      if (e.replica!.checkpoint) {
        daemon.registry.remove(`${e.config.name}${CHECKPOINT_SUFFIX}`);
        await e.replica!.releaseCheckpoint();
      }
    }
    for (const e of todo) daemon.links?.volumeChanged(e.config.name, `volume ${e.config.name} is being promoted here with group ${g.name}`);
    for (const e of todo) await e.replica!.prepareForPromote();
    const groups = daemon.groups!;
    let point: number | null = null;
    if (todo.length === entries.length) {
      try {
        point = await groups.bringTogether(g.name);
      } catch (err) {
        if (!opts.force) {
          groups.thaw(g.name);
          for (const e of todo) daemon.links?.volumeReady(e.config.name, `volume ${e.config.name}: the promote of group ${g.name} was refused`);
          throw new ActionRefused('conflict', `refused to promote group ${g.name}: ${(err as Error).message}. Add --force to promote each member at its own newest flush point`);
        }
        reasons.push((err as Error).message);
      }
    }
    const done: string[] = [];
    try {
      for (const e of todo) {
        e.identity!.beginChange('primary');
        const fin = await this.finishPromote(e);
        daemon.registry.add(daemon.backendOf(e), e.config.default === true);
        daemon.links?.volumeReady(e.config.name, `volume ${e.config.name} is primary here now`);
        done.push(`${e.config.name} up to record ${fin.applied}${fin.discarded > 0 ? ` (${fin.discarded} record${fin.discarded === 1 ? '' : 's'} after it discarded)` : ''}`);
      }
    } finally {
      groups.thaw(g.name);
    }
    const ms = Math.round(performance.now() - t0);
    const message = `group ${g.name} promoted: ${g.members.join(', ')} primary on this node, read-write, ` +
      (point !== null ? `at group point ${point}: ` : 'each at its own newest flush point (forced): ') + done.join(', ') +
      (reasons.length > 0 ? ` (forced: ${reasons.join('; ')})` : '') + `; took ${ms} ms`;
    this.log.warn({ group: g.name }, message);
    return { volume: g.name, group: g.name, groupPoint: point, message, ms };
  }

  private async promoteOne(name: string, opts: { force?: boolean | undefined }): Promise<ActionResult> {
    {
      const t0 = performance.now();
      const e = this.entry(name);
      if (e.role === 'primary') throw new ActionRefused('wrong-role', `volume ${name} is already primary on this node`);
      const rp = e.replica!;
      const peer = e.config.peer!;
      const reasons: string[] = [];
      if (this.daemon.links?.linkState(peer) === 'connected') reasons.push(`its primary on ${peer} is still connected (two primaries would take writes apart: demote ${name} on ${peer} first, or stop that node)`);
      const notImage = rp.notFrozenBecause();
      if (notImage) reasons.push(`the replica is no flush-point image: ${notImage}`);
      if (reasons.length > 0 && !opts.force) throw new ActionRefused('conflict', `refused to promote ${name}: ${reasons.join('; ')}. Add --force to promote anyway`);
      const daemon = this.daemon;
      await this.endDrill(e);
      if (rp.checkpoint) {
        daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
        await rp.releaseCheckpoint();
      }
      daemon.links?.volumeChanged(name, `volume ${name} is being promoted here`);
      // From here a crash does not leave a half-promoted volume: the next start redoes it.
      e.identity!.beginChange('primary');
      const fin = await this.finishPromote(e);
      daemon.registry.add(daemon.backendOf(e), e.config.default === true);
      daemon.links?.volumeReady(name, `volume ${name} is primary here now`);
      const ms = Math.round(performance.now() - t0);
      const message = `volume ${name} promoted: primary on this node, read-write, generation ${e.identity!.current}; ` +
        `applied up to record ${fin.applied}` +
        (fin.discarded > 0 ? `, ${fin.discarded} records after the last flush point discarded` : '') +
        (fin.rolledBack > 0 ? `, ${fin.rolledBack} regions of an unfinished resync rolled back` : '') +
        (reasons.length > 0 ? ` (forced: ${reasons.join('; ')})` : '') + `; took ${ms} ms`;
      this.log.warn({ volume: name }, message);
      return { volume: name, message, generation: e.identity!.current, applied: fin.applied, discarded: fin.discarded, ms };
    }
  }

  /** The part of a promote a restart can redo: apply, roll back, swap the role's files, open as primary. */
  private async finishPromote(e: VolumeEntry): Promise<Awaited<ReturnType<NonNullable<VolumeEntry['replica']>['finishForPromote']>>> {
    const rp = e.replica!;
    const fin = await rp.finishForPromote();
    rp.log.close();
    this.wipeRoleState(e);
    e.identity!.setRole('primary', true);
    e.volume.readOnly = false;
    e.role = 'primary';
    await this.daemon.openRole(e);
    return fin;
  }

  /**
   * At start: a promote or demote a crash interrupted is completed before the
   * volume is served (the entry is open in its old role).
   */
  async completeChange(e: VolumeEntry): Promise<void> {
    const to = e.identity?.changing;
    if (!to) return;
    const name = e.config.name;
    this.log.warn({ volume: name }, `volume ${name}: completing a change to ${to} that a stop interrupted`);
    if (to === 'primary') {
      if (e.role === 'primary') e.identity!.setRole('primary', false);
      else await this.finishPromote(e);
    }
  }

  /**
   * At start, before the volume is opened: a demote a crash interrupted is finished
   * (its old files may be half removed, so they are not opened at all).
   */
  completeDemote(e: VolumeEntry): void {
    if (e.identity?.changing !== 'secondary') return;
    this.log.warn({ volume: e.config.name }, `volume ${e.config.name}: completing a demote that a stop interrupted`);
    this.wipeRoleState(e);
    e.identity.setRole('secondary', false);
    e.volume.readOnly = true;
    e.role = 'secondary';
  }

  /**
   * The way back: a primary becomes a secondary. Writes its peer never received
   * are discarded (the next link compares every region with the new primary and
   * copies back the ones that differ). With --discard-my-data this side also forgets
   * its history, which resolves a split brain in favour of the peer.
   */
  demote(name: string, opts: { discardMyData?: boolean | undefined }): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) {
        // Each member as one volume's demote: a demoted member's writes the peer lacks
        // are replaced by the first sync by checksum, so no moment is mixed.
        const entries = g.members.map((m) => this.entry(m));
        if (entries.every((e) => e.role === 'secondary') && !opts.discardMyData) throw new ActionRefused('wrong-role', `group ${g.name} is already secondary on this node`);
        const messages: string[] = [];
        for (const e of entries) {
          if (e.role === 'secondary' && !opts.discardMyData) continue;
          messages.push((await this.demoteOne(e.config.name, opts)).message);
        }
        return { volume: g.name, group: g.name, message: `group ${g.name} demoted: ${messages.join('; ')}` };
      }
      this.refuseMember(name, 'demote');
      return this.demoteOne(name, opts);
    });
  }

  private async demoteOne(name: string, opts: { discardMyData?: boolean | undefined }): Promise<ActionResult> {
    {
      const e = this.entry(name);
      const daemon = this.daemon;
      let unshipped = 0;
      if (e.role === 'secondary') {
        if (!opts.discardMyData) throw new ActionRefused('wrong-role', `volume ${name} is already secondary on this node`);
        daemon.links?.volumeChanged(name, `volume ${name} discards its data`);
        const rp = e.replica!;
        await this.endDrill(e);
        await rp.quiesce(); // nothing applies while its files go
        daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
        rp.log.close();
      } else {
        const jv = e.journaled!;
        // New writes are refused from here on (EPERM); those in flight finish.
        e.volume.readOnly = true;
        daemon.links?.volumeChanged(name, `volume ${name} is being demoted here`);
        unshipped = jv.journal.backlogBytes + jv.bitmap.count * jv.bitmap.regionSize;
        await jv.close();
      }
      // From here a crash does not leave a half-demoted volume: the next start redoes it.
      e.identity!.beginChange('secondary');
      this.wipeRoleState(e);
      e.identity!.setRole('secondary', false);
      if (opts.discardMyData) e.identity!.forgetHistory();
      e.volume.readOnly = true;
      e.role = 'secondary';
      await daemon.openRole(e);
      daemon.registry.add(daemon.backendOf(e), e.config.default === true);
      daemon.links?.volumeReady(name, `volume ${name} is secondary here now`);
      const message = `volume ${name} demoted: secondary on this node, read-only; ` +
        (opts.discardMyData ? 'its data is discarded in favour of the peer\'s; ' : '') +
        (unshipped > 0 ? `${formatBytes(unshipped)} of changes the peer never received will be replaced; ` : '') +
        `when ${e.config.peer} (primary) links, every region is compared by hash and only differing ones are copied`;
      this.log.warn({ volume: name }, message);
      return { volume: name, message };
    }
  }

  /**
   * Removes what the old role kept (journal, bitmap, activity log, receive log,
   * round marker, undo area, checkpoint, first-sync mark); keeps the identity and
   * the write history. Made durable before the new role starts.
   */
  private wipeRoleState(e: VolumeEntry): void {
    for (const f of fs.readdirSync(e.dir)) {
      if (!KEEP.has(f)) fs.rmSync(path.join(e.dir, f), { recursive: true, force: true });
    }
    const jdir = e.config.journal_dir;
    if (jdir && fs.existsSync(jdir)) {
      for (const f of fs.readdirSync(jdir)) if (JOURNAL_FILE.test(f)) fs.rmSync(path.join(jdir, f), { force: true });
      fsyncDir(jdir);
    }
    fsyncDir(e.dir);
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
