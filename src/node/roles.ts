// Role changes of a node's volumes: promote (failover) and demote (failback), and at
// start the completion of one a crash interrupted. RoleChanges is the node's actions
// (NodeActions): checkpoints, drills, pause and verify come from its base VolumeActions
// (volume-actions.ts), and one queue runs them all, one at a time per node
// (docs/FAILOVER.md). Each says what it did in words an operator can act on, or refuses
// and says why.
import fs from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../units/units.js';
import { CHECKPOINT_SUFFIX } from '../checkpoint/checkpoint-export.js';
import type { VolumeEntry } from './volume-entry.js';
import type { LinkManager } from './links.js';
import type { ExportBackend } from '../export/backend.js';
import { ActionRefused, type ActionResult, type NodeActions } from '../contract/actions.js';
import type { NodeGroups } from './groups.js';
import type { GroupConfig } from '../config/config.js';
import { fsyncDir, VolumeActions, type ActionHost } from './volume-actions.js';
import { DirStore } from '../journal/store.js';
import type { RestorePoint } from '../history/history.js';
import { assert } from '../invariants/assert.js';
import { PROMOTE_AT_FILE, promoteBegun, readPromoteAt, removePromoteAt, writePromoteAt, type PromoteAt } from '../secondary/promote-at-file.js';

/**
 * What the node's actions need of the daemon, and no more (the Daemon is one; tests
 * pass a double): what VolumeActions needs (its volumes, the export registry, the peer
 * links), and for a role change the links told of it, the group brought together, and
 * opening a volume in its new role.
 */
export interface RoleHost extends ActionHost {
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

export class RoleChanges extends VolumeActions<RoleHost> implements NodeActions {
  /**
   * Failover: the secondary applies what it holds durably, becomes primary with a
   * new generation, and serves the volume read-write. Refused (unless forced) while
   * the primary is still connected or the replica is not a flush-point image.
   */
  promote(name: string, opts: { force?: boolean | undefined; at?: number | undefined }): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g && opts.at !== undefined) {
        throw new ActionRefused('invalid', `group ${g.name}: a promote to a past point is done per volume for now (docs/HISTORY.md)`);
      }
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
      if (this.daemon.links?.linkState(peer) === 'connected') {
        reasons.push(`${e.config.name}'s primary on ${peer} is still connected (demote group ${g.name} on ${peer} first, or stop that node)`);
      }
      const notImage = e.replica!.notFrozenBecause();
      if (notImage) reasons.push(`${e.config.name} is no flush-point image: ${notImage}`);
    }
    if (reasons.length > 0 && !opts.force) {
      throw new ActionRefused('conflict', `refused to promote group ${g.name}: ${reasons.join('; ')}. Add --force to promote anyway`);
    }
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
          throw new ActionRefused('conflict',
            `refused to promote group ${g.name}: ${(err as Error).message}. Add --force to promote each member at its own newest flush point`);
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
        done.push(`${e.config.name} up to record ${fin.applied}` +
          `${fin.discarded > 0 ? ` (${fin.discarded} record${fin.discarded === 1 ? '' : 's'} after it discarded)` : ''}`);
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

  private async promoteOne(name: string, opts: { force?: boolean | undefined; at?: number | undefined }): Promise<ActionResult> {
    {
      const t0 = performance.now();
      const e = this.entry(name);
      if (e.role === 'primary') throw new ActionRefused('wrong-role', `volume ${name} is already primary on this node`);
      const rp = e.replica!;
      const peer = e.config.peer!;
      const reasons: string[] = [];
      if (this.daemon.links?.linkState(peer) === 'connected') {
        reasons.push(`its primary on ${peer} is still connected (two primaries would take writes apart: demote ${name} on ${peer} first, or stop that node)`);
      }
      // A past point (--at) is an image whatever the replica is now (a torn apply, a round: what they wrote was saved).
      let point: RestorePoint | null = null;
      if (opts.at !== undefined) {
        try {
          point = rp.pastPoint(opts.at);
        } catch (err) {
          throw new ActionRefused('conflict', `refused to promote ${name}: ${(err as Error).message}`);
        }
      }
      const notImage = point ? null : rp.notFrozenBecause();
      if (notImage) reasons.push(`the replica is no flush-point image: ${notImage}`);
      if (reasons.length > 0 && !opts.force) {
        throw new ActionRefused('conflict', `refused to promote ${name}: ${reasons.join('; ')}. Add --force to promote anyway`);
      }
      await this.refuseElsewhere(e, point, `offsite promote ${name}`);
      const daemon = this.daemon;
      await this.endDrill(e);
      if (rp.checkpoint) {
        daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
        await rp.releaseCheckpoint();
      }
      daemon.links?.volumeChanged(name, `volume ${name} is being promoted here`);
      // Written first: a start after a crash part-way rolls back to this same point.
      await this.writeIntent(e, point);
      // From here a crash does not leave a half-promoted volume: the next start redoes it.
      e.identity!.beginChange('primary');
      const fin = await this.finishPromote(e);
      daemon.registry.add(daemon.backendOf(e), e.config.default === true);
      daemon.links?.volumeReady(name, `volume ${name} is primary here now`);
      const ms = Math.round(performance.now() - t0);
      const message = `volume ${name} promoted: primary on this node, read-write, generation ${e.identity!.current}; ` +
        (point ? `rolled back to the restore point of ${new Date(point.time).toISOString()} (record ${point.seq}), ` +
          `${formatBytes(fin.restoredBytes ?? 0)} of later changes undone` : `applied up to record ${fin.applied}`) +
        (fin.discarded > 0 ? `, ${fin.discarded} records after ${point ? 'the restore point undone or discarded' : 'the last flush point discarded'}` : '') +
        (fin.rolledBack > 0 ? `, ${fin.rolledBack} regions of an unfinished resync rolled back` : '') +
        (reasons.length > 0 ? ` (forced: ${reasons.join('; ')})` : '') + `; took ${ms} ms`;
      this.log.warn({ volume: name }, message);
      return { volume: name, message, generation: e.identity!.current, applied: fin.applied, discarded: fin.discarded, ms };
    }
  }

  /**
   * A promote of `e` that began and failed part-way (its change to primary is still under
   * way) goes on only to where it began: a roll-back may have put part of its point back
   * already. Refused when `wanted` (a past point, or null: the newest) is elsewhere.
   */
  private async refuseElsewhere(e: VolumeEntry, wanted: PromoteAt | null, command: string): Promise<void> {
    if (!promoteBegun(e.identity!)) return;
    const begun = await readPromoteAt(new DirStore(e.dir));
    if ((begun?.seq ?? null) === (wanted?.seq ?? null)) return;
    throw new ActionRefused('conflict', `volume ${e.config.name}: a promote to ${begun ? describePoint(begun) : 'its newest flush point'} began here ` +
      `and failed part-way; it completes only there: ${command}${begun ? ` --at ${new Date(begun.time).toISOString()}` : ''}, ` +
      'or restart the daemon, whose start completes it');
  }

  /**
   * Before a promote of `e` begins: where it goes, written down (the past point `wanted`),
   * or, for the newest, a promote-at file a promote that never began left removed (it
   * must not roll this one back). A promote that began already keeps its own.
   */
  private async writeIntent(e: VolumeEntry, wanted: PromoteAt | null): Promise<void> {
    if (promoteBegun(e.identity!)) return;
    const store = new DirStore(e.dir);
    if (wanted) return writePromoteAt(store, wanted);
    if (!store.list().includes(PROMOTE_AT_FILE)) return;
    const stale = await readPromoteAt(store).catch(() => null);
    await removePromoteAt(store);
    this.log.info({ volume: e.config.name }, `volume ${e.config.name}: removed the promote-at file ` +
      `${stale ? `of a promote to ${describePoint(stale)} ` : ''}that a promote which never began left; this one goes to the newest flush point`);
  }

  /**
   * At start, before the volume is opened (so its history does not pin the point): a
   * promote-at file is kept only for a promote that has begun (promoteBegun), which
   * completeChange then finishes at its point. Any other was written by a promote that a
   * stop cut before it began: the promote did not happen, and the file is removed so that
   * no later promote rolls back to its point.
   */
  async settlePromoteAt(e: VolumeEntry): Promise<void> {
    if (!e.identity) return;
    const store = new DirStore(e.dir);
    const at = await readPromoteAt(store);
    if (!at || promoteBegun(e.identity)) return;
    await removePromoteAt(store);
    const name = e.config.name;
    this.log.info({ volume: name }, `volume ${name}: removed the promote-at file of a promote to ${describePoint(at)} that a stop cut before it began: ` +
      `the promote did not happen and ${name} is still ${e.role} here; promote it again if that is still wanted`);
  }

  /** The part of a promote a restart can redo: apply, roll back, swap the role's files, open as primary. */
  private async finishPromote(e: VolumeEntry): Promise<Awaited<ReturnType<NonNullable<VolumeEntry['replica']>['finishForPromote']>>> {
    const rp = e.replica!;
    // A promote to a past point goes to the point it wrote down, also when a start redoes it.
    const at = await readPromoteAt(new DirStore(e.dir));
    // (Never a stale one: it was removed at the start, or before this promote began.)
    assert(promoteBegun(e.identity!), () => `volume ${e.config.name}: a promote finished with no change to primary under way`);
    const fin = await rp.finishForPromote(at?.seq);
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
        if (entries.every((e) => e.role === 'secondary') && !opts.discardMyData) {
          throw new ActionRefused('wrong-role', `group ${g.name} is already secondary on this node`);
        }
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

/** A restore point as an operator reads it. */
function describePoint(p: PromoteAt): string {
  return `the restore point of ${new Date(p.time).toISOString()} (record ${p.seq})`;
}
