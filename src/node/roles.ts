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
import { fsyncDir, memberPoints, VolumeActions, type ActionHost } from './volume-actions.js';
import { DirStore } from '../journal/store.js';
import { SYNCED_FILE, TornReplicaError } from '../secondary/replica.js';
import { isHistoryFile, pointName, type RestorePoint } from '../history/history.js';
import { readStream } from '../stream/stream.js';
import { assert } from '../invariants/assert.js';
import { promoteBegun, readPromoteAt, removePromoteAt } from '../secondary/promote-at-file.js';
import { PromoteIntents, type IdentityOf } from './promote-intents.js';
import { pastGroupPoint, type PastGroupPoint } from '../group/past-point.js';

/**
 * What the node's actions need of the daemon, and no more (the Daemon is one; tests
 * pass a double): what VolumeActions needs (its volumes, the export registry, the peer
 * links), and for a role change the links told of it, the group brought together, and
 * opening a volume in its new role.
 */
export interface RoleHost extends ActionHost {
  /** null: no identity yet (offsite init), so no link runs. */
  readonly links: Pick<LinkManager, 'primaryLinked' | 'primaryOf' | 'volumeChanged' | 'volumeReady' | 'volumeKept' | 'changeStopped' |
    'pausedVolumes' | 'pause' | 'verify'> | null;
  /** Opens the volume in its current role (after a promote or demote). */
  openRole(e: VolumeEntry): Promise<void>;
  /** The export the volume's name serves in its current role. */
  backendOf(e: VolumeEntry): ExportBackend;
  /** Consistency groups (docs/GROUPS.md); absent: none. */
  readonly groups?: Pick<NodeGroups, 'group' | 'groupOf' | 'bringTogether' | 'hold' | 'thaw' | 'checkpoint'>;
}

/** Files in a volume's state folder that belong to neither role: kept across a role change. */
const KEEP = new Set(['identity.json', 'history.csv']);
/**
 * What a secondary keeps when it follows a new primary (follow): the volume is still the
 * image its first sync made, and its history's points are still that image's past.
 */
const keptFollowing = (f: string): boolean => KEEP.has(f) || f === SYNCED_FILE || isHistoryFile(f);
const keptOtherwise = (f: string): boolean => KEEP.has(f);
const JOURNAL_FILE = /^(?:\d{20}\.seg|released|applied|intent)(?:\.tmp)?$/;
/** What completes a promote whose change is written down while its replica is still whole. */
const promoteAgain = (name: string): string => `it is recorded, and completes when 'offsite promote ${name}' runs again (or at the next start)`;
/** Failures of a promote past the replica's close (finishPromote): only a start completes it then. */
const restartCompletes = new WeakSet<object>();

export class RoleChanges extends VolumeActions<RoleHost> implements NodeActions {
  /** Where each promote goes, written down before it begins (promote-intents.ts). */
  private readonly intents = new PromoteIntents({ entries: () => this.daemon.entries, group: (n) => this.groupNamed(n) }, this.log);

  /**
   * Failover: the secondary applies what it holds durably, becomes primary with a
   * new generation, and serves the volume read-write. Refused (unless forced) while
   * the primary is still connected or the replica is not a flush-point image.
   */
  promote(name: string, opts: { force?: boolean | undefined; at?: number | undefined }): Promise<ActionResult> {
    return this.serial(async () => {
      const g = this.groupNamed(name);
      if (g) await this.intents.refuseBegun(g.name, g.members.map((m) => this.entry(m)));
      if (g && opts.at !== undefined) return this.groupPromoteAt(g, opts.at, opts.force === true);
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
      const peer = this.daemon.links?.primaryOf(e.config.name) ?? (e.config.peers.length === 1 ? e.config.peer! : null);
      if (peer !== null && this.daemon.links?.primaryLinked(e.config.name, peer) === true) {
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
    try {
      for (const e of todo) await e.replica!.prepareForPromote();
    } catch (err) {
      for (const e of todo) daemon.links?.volumeKept(e.config.name, e.replica!, `volume ${e.config.name}: the promote of group ${g.name} did not begin`);
      throw new Error(`no promote of group ${g.name}: ${(err as Error).message}; every member is still secondary`);
    }
    const groups = daemon.groups!;
    let point: number | null = null;
    if (todo.length === entries.length) {
      try {
        point = await groups.bringTogether(g.name);
      } catch (err) {
        if (!opts.force) {
          groups.thaw(g.name);
          for (const e of todo) daemon.links?.volumeKept(e.config.name, e.replica!, `volume ${e.config.name}: the promote of group ${g.name} was refused`);
          throw new ActionRefused('conflict',
            `refused to promote group ${g.name}: ${(err as Error).message}. Add --force to promote each member at its own newest flush point`);
        }
        reasons.push((err as Error).message);
      }
    }
    const done: string[] = [];
    let at = 0;
    try {
      for (const e of todo) await this.intents.write(e, null);
      for (; at < todo.length; at++) {
        const e = todo[at]!;
        e.identity!.beginChange('primary');
        const fin = await this.finishPromote(e);
        daemon.registry.add(daemon.backendOf(e), e.config.default === true);
        daemon.links?.volumeReady(e.config.name, `volume ${e.config.name} is primary here now`);
        done.push(`${e.config.name} up to record ${fin.applied}` +
          `${fin.discarded > 0 ? ` (${fin.discarded} record${fin.discarded === 1 ? '' : 's'} after it discarded)` : ''}`);
      }
    } catch (err) {
      const rest = todo.slice(at);
      // (What the identity holds decides, not the throw: a write may fail after its rename.
      // A member whose role is written but which did not open is one a start opens.)
      const started = rest.filter((e) => (e.role === 'secondary' && e.identity?.changing === 'primary') ||
        (e.role === 'primary' && restartCompletes.has(err as object)));
      const waiting = rest.filter((e) => e.role === 'secondary' && e.identity?.changing !== 'primary');
      if (done.length === 0 && started.length === 0 && waiting.length === todo.length) {
        // Nothing began: every member is the secondary it was, and pairs again.
        for (const e of todo) daemon.links?.volumeKept(e.config.name, e.replica!, `volume ${e.config.name}: the promote of group ${g.name} did not begin`);
        throw Object.assign(new Error(`no promote of group ${g.name}: ${(err as Error).message}; every member is still secondary`),
          { code: (err as NodeJS.ErrnoException).code });
      }
      // The members not promoted stay unpaired until a restart (a change begun, or a member
      // that pairing again would carry past the others' moment): its start completes those
      // begun, and the same promote then takes the rest.
      const names = (es: VolumeEntry[]): string => es.map((e) => e.config.name).join(', ');
      const why = `group ${g.name}: its promote stopped part-way (${(err as Error).message}); restart the daemon` +
        (started.length > 0 ? `: its start completes the promote of ${names(started)}` : '') +
        (waiting.length > 0 ? `; then 'offsite promote ${g.name}' promotes ${names(waiting)}` : '') +
        (done.length > 0 ? ` (done: ${done.join(', ')})` : '');
      for (const e of [...started, ...waiting]) this.stopped(e.config.name, why);
      this.log.error({ group: g.name }, why);
      throw Object.assign(new Error(why), { code: (err as NodeJS.ErrnoException).code });
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

  /**
   * A promote of every member at one past group point (`promote GROUP --at`): the newest
   * group point at or before `at` that every member's history lists, picked as a group
   * checkpoint --at picks it (pastGroupPoint). Every member's link goes and nothing more
   * is applied (the group's limit is held); each member's point is written down, durably,
   * before any member's change to primary begins; then each member is rolled back there
   * and promoted. Once the first member's change has begun, a start after a crash
   * completes every member at that point (settlePromoteAt).
   */
  private async groupPromoteAt(g: GroupConfig, at: number, force: boolean): Promise<ActionResult> {
    const t0 = performance.now();
    const entries = g.members.map((m) => this.entry(m));
    const primary = entries.filter((e) => e.role !== 'secondary' || !e.replica).map((e) => e.config.name);
    if (primary.length === entries.length) throw new ActionRefused('wrong-role', `group ${g.name} is already primary on this node`);
    if (primary.length > 0) {
      throw new ActionRefused('conflict', `refused to promote group ${g.name} to a past point: ${primary.join(', ')} ${primary.length === 1 ? 'is' : 'are'} ` +
        `primary here already, and only a secondary keeps history; promote the others to their newest flush point: offsite promote ${g.name}`);
    }
    let pick = pickPastPoint(g, entries, at);
    // (A past point is an image whatever a member is now: a torn apply, a round, are undone with the rest.)
    const primaryOf = (e: VolumeEntry): string | null => this.daemon.links?.primaryOf(e.config.name) ?? (e.config.peers.length === 1 ? e.config.peer! : null);
    const reasons = entries.filter((e) => primaryOf(e) !== null && this.daemon.links?.primaryLinked(e.config.name, primaryOf(e)!) === true).map((e) =>
      `${e.config.name}'s primary on ${primaryOf(e)} is still connected (demote group ${g.name} on ${primaryOf(e)} first, or stop that node)`);
    if (reasons.length > 0 && !force) {
      throw new ActionRefused('conflict', `refused to promote group ${g.name}: ${reasons.join('; ')}. Add --force to promote anyway`);
    }
    const daemon = this.daemon;
    const groups = daemon.groups!;
    for (const e of entries) {
      await this.endDrill(e);
      if (e.replica!.checkpoint) {
        daemon.registry.remove(`${e.config.name}${CHECKPOINT_SUFFIX}`);
        await e.replica!.releaseCheckpoint();
      }
    }
    for (const e of entries) daemon.links?.volumeChanged(e.config.name, `volume ${e.config.name} is being promoted here with group ${g.name}`);
    groups.hold(g.name);
    let begun = 0;
    const kept: Array<{ e: VolumeEntry; seq: number }> = [];
    try {
      for (const e of entries) await e.replica!.quiesce();
      // (Picked again now that nothing applies: the last units may have let retention drop the point.)
      pick = pickPastPoint(g, entries, at);
      // Every member's point written down before any member's change begins: a start after
      // a crash in between removes them all (nothing began), or completes every member there.
      for (const e of entries) {
        const p = pick.members.get(e.config.name)!;
        e.replica!.keepPoint(p.seq);
        kept.push({ e, seq: p.seq });
        await this.intents.write(e, { seq: p.seq, time: p.time, group: g.name, groupPoint: pick.point });
      }
      for (const e of entries) {
        e.identity!.beginChange('primary');
        begun++;
      }
    } catch (err) {
      // (What the identities hold decides, not the count: a write may fail after its rename.)
      if (begun > 0 || entries.some((e) => e.identity?.changing === 'primary')) {
        groups.thaw(g.name);
        const why = `group ${g.name}: its promote to group point ${pick.point} began on ${entries[0]!.config.name} but stopped: ` +
          `${(err as Error).message}; restart the daemon: its start completes the promote on every member at that point`;
        for (const e of entries) this.stopped(e.config.name, why);
        throw new Error(why);
      }
      for (const e of entries) await removePromoteAt(new DirStore(e.dir)).catch(() => undefined);
      for (const k of kept) k.e.replica!.releasePoint(k.seq);
      groups.thaw(g.name);
      for (const e of entries) daemon.links?.volumeKept(e.config.name, e.replica!, `volume ${e.config.name}: the promote of group ${g.name} did not begin`);
      if (err instanceof ActionRefused) throw err;
      throw new Error(`no promote of group ${g.name}: ${(err as Error).message}; every member is still secondary`);
    }
    const done: string[] = [];
    const failed: string[] = [];
    try {
      for (const e of entries) {
        try {
          const fin = await this.finishPromote(e);
          daemon.registry.add(daemon.backendOf(e), e.config.default === true);
          daemon.links?.volumeReady(e.config.name, `volume ${e.config.name} is primary here now`);
          done.push(`${e.config.name} to record ${fin.applied} (${formatBytes(fin.restoredBytes ?? 0)} of later changes undone` +
            `${fin.discarded > 0 ? `, ${fin.discarded} record${fin.discarded === 1 ? '' : 's'} after it undone or discarded` : ''})`);
        } catch (err) {
          failed.push(`${e.config.name}: ${(err as Error).message}`);
          // (Not one that opened, then failed to be served: it is paired as primary.)
          if (e.role === 'secondary' || restartCompletes.has(err as object)) {
            this.stopped(e.config.name, `volume ${e.config.name}: the promote of group ${g.name} to group point ${pick.point} ` +
              `stopped part-way (${(err as Error).message}); restart the daemon: its start completes it at that point`);
          }
        }
      }
    } finally {
      groups.thaw(g.name);
    }
    const where = `group point ${pick.point} of ${new Date(pick.time).toISOString()}`;
    if (failed.length > 0) {
      throw new Error(`group ${g.name}: the promote to ${where} did not finish on ${failed.join('; ')}` +
        `${done.length > 0 ? ` (done: ${done.join(', ')})` : ''}; restart the daemon: its start completes it at that point`);
    }
    const ms = Math.round(performance.now() - t0);
    const message = `group ${g.name} promoted: ${g.members.join(', ')} primary on this node, read-write, rolled back to ${where}: ` +
      done.join(', ') + (reasons.length > 0 ? ` (forced: ${reasons.join('; ')})` : '') + `; took ${ms} ms`;
    this.log.warn({ group: g.name }, message);
    return { volume: g.name, group: g.name, groupPoint: pick.point, time: pick.time, message, ms };
  }

  private async promoteOne(name: string, opts: { force?: boolean | undefined; at?: number | undefined }): Promise<ActionResult> {
    const t0 = performance.now();
    const e = this.entry(name);
    if (e.role === 'primary') throw new ActionRefused('wrong-role', `volume ${name} is already primary on this node`);
    const rp = e.replica!;
    // (With several peers, the one it follows now: another secondary of the set may be linked too.)
    const peer = this.daemon.links?.primaryOf(name) ?? (e.config.peers.length === 1 ? e.config.peer! : null);
    const reasons: string[] = [];
    if (peer !== null && this.daemon.links?.primaryLinked(name, peer) === true) {
      reasons.push(`its primary on ${peer} is still connected (two primaries would take writes apart: demote ${name} on ${peer} first, or stop that node)`);
    }
    // A past point (--at) is an image whatever the replica is now (a torn apply, a round: what they wrote was saved).
    let point: RestorePoint | null = null;
    // (A change already under way, of an earlier promote that failed part-way: not this call's.)
    const changingBefore = e.identity?.changing;
    if (opts.at !== undefined) {
      try {
        point = rp.pastPoint(opts.at);
        rp.keepPoint(point.seq);
      } catch (err) {
        throw new ActionRefused('conflict', `refused to promote ${name}: ${(err as Error).message}`);
      }
    }
    try {
      // (A promote already begun applies a failed unit again itself, and refuses if it fails again: replica.ts finishForPromote.)
      const notImage = point || e.identity?.changing === 'primary' ? null : rp.notFrozenBecause();
      if (notImage) reasons.push(`the replica is no flush-point image: ${notImage}`);
      if (reasons.length > 0 && !opts.force) {
        throw new ActionRefused('conflict', `refused to promote ${name}: ${reasons.join('; ')}. Add --force to promote anyway`);
      }
      await this.intents.refuseElsewhere(e, point, `offsite promote ${name}`);
      try {
        return await this.promoteNow(e, name, point, reasons, t0);
      } catch (err) {
        throw diskFullSaysSo(err as Error, e, name);
      }
    } catch (err) {
      // Refused, or failed before its change began: the volume stays a secondary, and its
      // history may thin the point again (a change begun keeps it: the promote-at file names it).
      if (point && e.identity?.changing === changingBefore && e.role === 'secondary') rp.releasePoint(point.seq);
      throw err;
    }
  }

  /** A promote past its checks: the checkpoint let go, the point written down, the change begun and finished. */
  private async promoteNow(e: VolumeEntry, name: string, point: RestorePoint | null, reasons: string[], t0: number): Promise<ActionResult> {
    const rp = e.replica!;
    const daemon = this.daemon;
    await this.endDrill(e);
    if (rp.checkpoint) {
      daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
      await rp.releaseCheckpoint();
    }
    daemon.links?.volumeChanged(name, `volume ${name} is being promoted here`);
    try {
      // Written first: a start after a crash part-way rolls back to this same point.
      await this.intents.write(e, point);
      // From here a crash does not leave a half-promoted volume: the next start redoes it.
      e.identity!.beginChange('primary');
    } catch (err) {
      // (What the identity holds decides, not the throw: a write may fail after its rename,
      // and an earlier promote may have begun it.)
      if (promoteBegun(e.identity!)) {
        this.stoppedPartWay(name, 'promote', err, promoteAgain(name));
      } else {
        // Nothing began: the replica is as it was, and pairs again as the secondary it is.
        daemon.links?.volumeKept(name, rp, `volume ${name}: its promote did not begin`);
      }
      throw err;
    }
    const fin = await this.finishPromote(e).catch((err: unknown) => {
      // (The operator's error is the failure itself, which diskFullSaysSo words.)
      if (restartCompletes.has(err as object)) this.stopped(name, `volume ${name}: its promote stopped part-way (${(err as Error).message}); ` +
        'restart the daemon: its start completes it');
      else this.stoppedPartWay(name, 'promote', err, promoteAgain(name));
      throw err;
    });
    daemon.registry.add(daemon.backendOf(e), e.config.default === true);
    daemon.links?.volumeReady(name, `volume ${name} is primary here now`);
    const ms = Math.round(performance.now() - t0);
    const message = `volume ${name} promoted: primary on this node, read-write, generation ${e.identity!.current}; ` +
      (point ? `rolled back to ${pointName(point)}, ` +
        `${formatBytes(fin.restoredBytes ?? 0)} of later changes undone` : `applied up to record ${fin.applied}`) +
      (fin.discarded > 0 ? `, ${fin.discarded} records after ${point ? 'the restore point undone or discarded' : 'the last flush point discarded'}` : '') +
      (fin.rolledBack > 0 ? `, ${fin.rolledBack} regions of an unfinished resync rolled back` : '') +
      (reasons.length > 0 ? ` (forced: ${reasons.join('; ')})` : '') + `; took ${ms} ms`;
    this.log.warn({ volume: name }, message);
    return { volume: name, message, generation: e.identity!.current, applied: fin.applied, discarded: fin.discarded, ms };
  }

  /** At start, before the volume is opened: its promote-at file kept, joined or removed (PromoteIntents.settle). */
  settlePromoteAt(e: VolumeEntry, identityOf: IdentityOf): Promise<void> {
    return this.intents.settle(e, identityOf);
  }

  /** The part of a promote a restart can redo: apply, roll back, swap the role's files, open as primary. */
  private async finishPromote(e: VolumeEntry): Promise<Awaited<ReturnType<NonNullable<VolumeEntry['replica']>['finishForPromote']>>> {
    const rp = e.replica!;
    // A promote to a past point goes to the point it wrote down, also when a start redoes it.
    const at = await readPromoteAt(new DirStore(e.dir));
    // (Never a stale one: it was removed at the start, or before this promote began.)
    assert(promoteBegun(e.identity!), () => `volume ${e.config.name}: a promote finished with no change to primary under way`);
    const fin = await rp.finishForPromote(at ?? undefined);
    try {
      rp.log.close();
      this.wipeRoleState(e);
      e.identity!.setRole('primary', true);
      e.volume.readOnly = false;
      e.role = 'primary';
      await this.daemon.openRole(e);
    } catch (err) {
      // The replica's files are going or gone: only a start completes it now (completeChange).
      if (err instanceof Object) restartCompletes.add(err);
      throw err;
    }
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
        try {
          await this.endDrill(e);
          // Let go first: a Resync's round waits for a held checkpoint, and quiesce for the round.
          daemon.registry.remove(`${name}${CHECKPOINT_SUFFIX}`);
          if (rp.checkpoint) await rp.releaseCheckpoint();
          await rp.quiesce(); // nothing applies while its files go
        } catch (err) {
          daemon.links?.volumeKept(name, rp, `volume ${name}: its demote did not begin`);
          throw new Error(`no demote of ${name}: ${(err as Error).message}; it is still the secondary it was, its data kept`);
        }
        try {
          rp.log.close();
        } catch (err) {
          throw this.stoppedPartWay(name, 'demote', err, 'it did not begin; a restart of the daemon serves it as the secondary it was', true);
        }
      } else {
        const jv = e.journaled!;
        // New writes are refused from here on (EPERM); those in flight finish.
        e.volume.readOnly = true;
        daemon.links?.volumeChanged(name, `volume ${name} is being demoted here`);
        unshipped = jv.journal.backlogBytes + jv.bitmap.count * jv.bitmap.regionSize;
        await jv.close().catch((err: unknown) => {
          throw this.stoppedPartWay(name, 'demote', err, 'it takes no writes, and a restart of the daemon serves it as the primary it was ' +
            '(its journal kept); demote it again then', true);
        });
      }
      // A restart completes a demote once its change is written down, but forgets no history: that is said.
      const completes = (): string => 'it is recorded, and a restart of the daemon completes it' +
        (opts.discardMyData && e.identity!.generations.length > 0 ? `; its data is not discarded yet: run 'offsite demote ${name} ` +
          "--discard-my-data' again then" : '');
      try {
        // From here a crash does not leave a half-demoted volume: the next start redoes it.
        e.identity!.beginChange('secondary');
      } catch (err) {
        // (What the identity holds decides, not the throw: a write may fail after its rename.)
        throw this.stoppedPartWay(name, 'demote', err, e.identity!.changing === 'secondary' ? completes()
          : `it did not begin; a restart of the daemon serves it as the ${e.role} it was`, true);
      }
      try {
        this.wipeRoleState(e);
        // (Before the role: a failure between the two leaves the change to complete, not a demote done without its discard.)
        if (opts.discardMyData) e.identity!.forgetHistory();
        e.identity!.setRole('secondary', false);
        e.volume.readOnly = true;
        e.role = 'secondary';
        await daemon.openRole(e);
      } catch (err) {
        throw this.stoppedPartWay(name, 'demote', err, completes(), true);
      }
      daemon.registry.add(daemon.backendOf(e), e.config.default === true);
      daemon.links?.volumeReady(name, `volume ${name} is secondary here now`);
      const message = `volume ${name} demoted: secondary on this node, read-only; ` +
        (opts.discardMyData ? 'its data is discarded in favour of the peer\'s; ' : '') +
        (unshipped > 0 ? `${formatBytes(unshipped)} of changes the peer never received will be replaced; ` : '') +
        `when ${e.config.peers.length === 1 ? `${e.config.peer} (primary)` : `its primary (one of ${e.config.peers.join(', ')})`} links, ` +
        'every region is compared by hash and only differing ones are copied';
      this.log.warn({ volume: name }, message);
      return { volume: name, message };
    }
  }

  /**
   * A secondary meets `primary`, whose journal is not the one its receive log holds
   * records of (src/stream/stream.ts: a new primary after a failover, or the old one
   * promoted again): it starts again as a new replica of `primary` that keeps its data.
   * Everything durable is applied in whole units, a round in progress is rolled back
   * (as for a promote: the volume is the flush-point image it served), and the receive
   * log, round marker, undo area and stream go, the first-sync mark stays. The next
   * link finds a replica with an empty receive log: the primary compares every region
   * by hash and sends those that differ, in a round the replica keeps an undo area for,
   * so its export serves this image until the round ends. A held checkpoint (or a drill
   * over it) is kept: the volume waits, nothing flowing, until the operator lets it go
   * (letGo), then links again. Null when the volume is no secondary here any more.
   */
  follow(name: string, primary: string): Promise<ActionResult | null> {
    return this.serial(async () => {
      const e = this.entry(name);
      if (e.role !== 'secondary' || !e.replica) return null;
      const daemon = this.daemon;
      const rp = e.replica;
      const held = rp.checkpoint;
      const previous = await readStream(new DirStore(e.dir));
      // The same primary in a new stream: it began its journal again (its file replaced, its journal or bitmap lost, docs/PEERS.md).
      const why = previous?.primary === primary
        ? `${primary} began a new journal (its volume file replaced or written while stopped, its journal or dirty bitmap lost, or ` +
          'it served the volume without peers: its log says which)'
        : `${primary} is primary with a journal this replica never followed (a failover elsewhere)`;
      if (held) {
        this.waitingToFollow.set(name, primary);
        return {
          volume: name,
          message: `volume ${name}: ${why}; it follows ` +
            `${primary} once ${e.drill ? `the drill ends (offsite drill stop ${name})` : `checkpoint "${held.label}" is released ` +
            `(offsite checkpoint release ${name})`}; until then nothing is received, and the checkpoint's image stays served`,
        };
      }
      daemon.links?.volumeChanged(name, `volume ${name} starts again as ${primary}'s secondary`);
      let begun = false;
      let fin: Awaited<ReturnType<typeof rp.finishForPromote>>;
      try {
        fin = await rp.finishForPromote(undefined, { follow: true });
        rp.log.close();
        // From here a crash finishes it as a demote does (the first-sync mark and the history go too: the next round is a first sync).
        e.identity!.beginChange('secondary');
        begun = true;
        // Its history keeps its points, and numbers the new primary's on past them (docs/HISTORY.md, "After a follow").
        await rp.followed(previous?.primary || null, primary);
        this.wipeRoleState(e, keptFollowing);
        e.identity!.setRole('secondary', false);
        await daemon.openRole(e);
      } catch (err) {
        throw this.stoppedPartWay(name, `start again as ${primary}'s secondary`, err, begun
          ? 'it is recorded, and a restart of the daemon completes it'
          : `a restart of the daemon opens it as it was, and it follows ${primary} then`, true);
      }
      daemon.registry.add(daemon.backendOf(e), e.config.default === true);
      daemon.links?.volumeReady(name, `volume ${name} follows ${primary} now`);
      const message = `volume ${name}: ${why}; ` +
        `the replica stays the image at record ${fin.applied} of its last primary` +
        (fin.discarded > 0 ? ` (${fin.discarded} records after its last flush point discarded)` : '') +
        (fin.rolledBack > 0 ? ` (${fin.rolledBack} regions of an unfinished resync rolled back)` : '') +
        `, and ${primary} compares every region by hash and sends those that differ`;
      return { volume: name, message };
    });
  }

  /** Secondaries whose new primary (the value) waits for their checkpoint's release (follow). */
  private readonly waitingToFollow = new Map<string, string>();

  override forget(name: string): void {
    super.forget(name);
    this.waitingToFollow.delete(name);
  }

  /**
   * A role change of `name` that failed after its peers heard of it (volumeChanged) and
   * cannot give the volume back to its old role: the peers and the log hear where it
   * stands (`standing`, what completes it), not "being promoted" until a restart, and
   * the error that goes back to the operator says the same.
   */
  private stoppedPartWay(name: string, change: string, err: unknown, standing: string, restartOnly = false): Error {
    const why = `volume ${name}: its ${change} stopped part-way (${(err as Error).message}); ${standing}`;
    if (restartOnly) this.stopped(name, why);
    else this.daemon.links?.changeStopped(name, why);
    this.log.error({ volume: name }, why);
    return Object.assign(new Error(why), { code: (err as NodeJS.ErrnoException).code });
  }

  /**
   * `name`'s change stopped where only a restart completes it (its files may be half
   * removed, or a group's members at no one moment): its peers hear `why`, and every
   * action on it is refused with it until then (VolumeActions.entry).
   */
  private stopped(name: string, why: string): void {
    this.stoppedChanges.set(name, why);
    this.daemon.links?.changeStopped(name, why.startsWith(`volume ${name}`) ? why : `volume ${name}: ${why}`);
  }

  protected override letGo(e: VolumeEntry): void {
    const primary = this.waitingToFollow.get(e.config.name);
    if (primary === undefined) return;
    this.waitingToFollow.delete(e.config.name);
    // The next Hello finds the other journal again, and the follow goes ahead.
    this.daemon.links?.volumeReady(e.config.name, `volume ${e.config.name}: its checkpoint is released; it follows ${primary} now`);
  }

  /**
   * Removes what the old role kept (journal, bitmap, activity log, receive log,
   * round marker, undo area, checkpoint, first-sync mark, stream); keeps the identity
   * and the write history (`keep`). Made durable before the new role starts.
   */
  private wipeRoleState(e: VolumeEntry, kept: (file: string) => boolean = keptOtherwise): void {
    for (const f of fs.readdirSync(e.dir)) {
      if (!kept(f)) fs.rmSync(path.join(e.dir, f), { recursive: true, force: true });
    }
    const jdir = e.config.journal_dir;
    if (jdir && fs.existsSync(jdir)) {
      for (const f of fs.readdirSync(jdir)) if (JOURNAL_FILE.test(f)) fs.rmSync(path.join(jdir, f), { force: true });
      fsyncDir(jdir);
    }
    fsyncDir(e.dir);
  }
}

/** The past group point a promote of `g` --at `at` goes to (pastGroupPoint), or the refusal that says why there is none. */
function pickPastPoint(g: GroupConfig, entries: readonly VolumeEntry[], at: number): PastGroupPoint {
  try {
    return pastGroupPoint(entries.map(memberPoints), at);
  } catch (err) {
    throw new ActionRefused('conflict', `refused to promote group ${g.name}: ${(err as Error).message}`);
  }
}

/**
 * A promote that met a full disk (ENOSPC, EDQUOT) says which folder, that room must be
 * made, and where the volume stands: nothing changed, or the change is recorded and
 * completes when the promote runs again (or at the next start). Other errors pass as
 * they are, with the last said of a promote that had begun.
 */
function diskFullSaysSo(err: Error, e: VolumeEntry, name: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  // (A torn replica's refusal names its volume file's disk and says what to do itself.)
  if (err instanceof TornReplicaError) return err;
  const full = code === 'ENOSPC' || code === 'EDQUOT' || /ENOSPC|EDQUOT|no space left/i.test(err.message);
  if (restartCompletes.has(err)) {
    return new Error(full ? `the disk holding ${e.dir} is full (${err.message}): make room there and restart the daemon: its start completes ` +
      `the promote of ${name}` : `${err.message}; restart the daemon: its start completes the promote of ${name}`);
  }
  const begun = e.identity != null && promoteBegun(e.identity);
  if (!full) {
    return begun ? new Error(`${err.message}; the promote of ${name} is recorded, and completes when 'offsite promote ${name}' runs again ` +
      '(or at the next start)') : err;
  }
  return new Error(`the disk holding ${e.dir} is full (${err.message}): make room there and run 'offsite promote ${name}' again; ` +
    (begun ? 'the promote is recorded and completes then (or at the next start)' : `nothing changed, ${name} is still a secondary`));
}
