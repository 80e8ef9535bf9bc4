// Volumes this daemon could not open. One volume's fault (its file gone with a failed
// disk, its disk full under a promote a restart must finish, a journal folder another
// daemon holds, a state file a newer release wrote) must not keep the node's other
// volumes offline: an appliance serves a hundred servers. Such a volume is set aside:
// nothing of it is served, linked or written (its peer hears nothing of it, as during a
// role change, and keeps its backlog), and the status, the metrics and the log say why.
// A reload (SIGHUP, `offsite reload`, POST /api/v1/reload) tries each again, where the
// reloaded config now says it lives (`path`, `journal_dir`: a disk replaced and mounted
// elsewhere needs no restart; nothing of the volume is open to move). A start at
// which no volume opens still fails, with every volume's reason: there is nothing to serve.
// A consistency group's members are set aside, and opened again, together.
import fs from 'node:fs';
import path from 'node:path';
import { journalDirOf, type Config, type VolumeConfig } from '../config/config.js';
import type { Logger } from '../log/log.js';
import { InvariantError } from '../invariants/assert.js';
import { formatBytes } from '../units/units.js';
import { VolumeIdentity } from '../volume/identity.js';
import type { LinkManager } from './links.js';
import type { VolumeEntry } from './volume-entry.js';
import { PAUSED_FILE } from './volume-actions.js';
import { withoutName, type UnavailableVolumes } from './unavailable.js';

/** What SetAside needs of the daemon. */
export interface SetAsideHost {
  readonly config: Pick<Config, 'state' | 'volumes' | 'groups'>;
  readonly log: Logger;
  readonly unavailable: UnavailableVolumes;
  entries(): readonly VolumeEntry[];
  links(): Pick<LinkManager, 'pausedVolumes' | 'armApart' | 'volumeReady' | 'volumeAdded' | 'relink'> | null;
  /** Opens the volume in its role and serves it; on failure closes what it opened and throws. */
  openVolume(v: VolumeConfig, identityOf: (name: string) => VolumeIdentity | null): Promise<VolumeEntry>;
  /** Says where a volume opened at a reload is reached (its NBD URL, its iSCSI target). */
  served(e: VolumeEntry): void;
}

/** Keys of a volume set aside that a reload does not take: the default export is made at the start. (Its peers: see adopt.) */
const RESTART_KEYS: ReadonlySet<string> = new Set(['default']);

/** Setting volumes aside, and opening them again at a reload. */
export class SetAside {
  /** The reload's reopen running now, which a stop waits for. */
  private readonly reopening = new Set<Promise<void>>();

  constructor(private readonly host: SetAsideHost) {}

  /** A volume that did not open is set aside (a broken invariant is no volume's fault: it stops the daemon). */
  setAside(v: VolumeConfig, err: unknown): void {
    if (err instanceof InvariantError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    this.host.unavailable.set(v.name, message, Date.now());
    this.host.log.error({ volume: v.name }, `volume ${v.name} is not served: ${withoutName(v.name, message)}. ` +
      'The node serves its other volumes; once this is put right, `offsite reload` (or SIGHUP) opens it');
  }

  /**
   * A member of a consistency group set aside sets the others aside too (those in
   * `candidates` not already): a promote a stop cut on the group is settled only with
   * every member's identity in hand (RoleChanges.settlePromoteAt), so the members open
   * together or not at all. (A member that fails later in its open leaves the others
   * served: they then make no group point without it, so their replicas stay at one
   * moment: docs/GROUPS.md.)
   */
  withGroup(candidates: readonly VolumeConfig[]): void {
    const u = this.host.unavailable;
    for (const g of this.host.config.groups) {
      const down = g.members.find((m) => u.has(m) && !u.isOpening(m));
      if (down === undefined) continue;
      for (const m of g.members) {
        const v = candidates.find((x) => x.name === m);
        if (!v || (u.has(m) && !u.isOpening(m))) continue;
        this.setAside(v, new Error(`consistency group ${g.name}: its member ${down} did not open ` +
          `(${withoutName(down, u.reason(down) ?? '')}), and its members open together`));
      }
    }
  }

  /**
   * A reload's config, for the volumes set aside: where each lives (`path`,
   * `journal_dir`) and how it opens (`size`, `journal`, ...: the keys an error at its
   * open may have asked the operator to fix) are taken from it, into the daemon's own
   * config object of the volume (changed in place: the links and the entries' order know
   * the volume by that object; nothing of the volume is open, so nothing moves under a
   * reader; a folder or file another volume holds is refused by its lock at the open).
   * Its peers are taken too (the links to the peers it had and has are made again, so
   * each Hello says it is set aside, or not paired here any more; a consistency group's
   * members, set aside together, take the same new peers), but on a daemon that runs no
   * link; those and `default` wait for a
   * restart (the default export is made at the start), and the reload says so, as it
   * says of a volume being opened now (by the reload before). Returns what the reload says.
   */
  adopt(next: Pick<Config, 'volumes'>): string[] {
    const { config, unavailable } = this.host;
    const notes: string[] = [];
    for (const name of unavailable.names()) {
      const was = config.volumes.find((x) => x.name === name);
      const n = next.volumes.find((x) => x.name === name);
      if (!was || !n) continue;
      const moved = was.path !== n.path || was.journal_dir !== n.journal_dir;
      if (moved && unavailable.isOpening(name)) {
        notes.push(`volume ${name}: being opened now where it was; if that fails, reload again to open it where the file now says`);
        continue;
      }
      if (was.path !== n.path) notes.push(`volume ${name}: its file is now ${n.path}`);
      if (was.journal_dir !== n.journal_dir) notes.push(`volume ${name}: its journal folder is now ${journalDirOf(n, config.state)}`);
      const changed = (Object.keys({ ...was, ...n }) as (keyof VolumeConfig)[])
        .filter((k) => k !== 'path' && k !== 'journal_dir' && JSON.stringify(was[k]) !== JSON.stringify(n[k]));
      // Its peers are taken as the rest (nothing of it is open: it opens with them, as at a start,
      // and the links to the peers it had and has are made again, so each Hello says so; a group's
      // members, set aside together, all take the same new peers: the config has them alike), but
      // on a daemon that runs no link.
      const peersChanged = changed.includes('peer') || changed.includes('peers');
      const links = this.host.links();
      const peersWait = peersChanged && links === null && n.peers.length > 0;
      const restart = changed.filter((k) => RESTART_KEYS.has(k) || (peersWait && (k === 'peer' || k === 'peers')));
      const taken = changed.filter((k) => !restart.includes(k));
      const relink = peersChanged && !peersWait && !unavailable.isOpening(name) ? [...new Set([...was.peers, ...n.peers])] : [];
      if (taken.length > 0 && unavailable.isOpening(name)) {
        notes.push(`volume ${name}: ${taken.join(', ')} changed while it is being opened: reload again once it has opened or failed`);
      } else if (taken.length > 0) {
        for (const k of taken) (was as unknown as Record<string, unknown>)[k] = n[k];
        notes.push(`volume ${name}: ${taken.join(', ')} taken (it opens with ${taken.length === 1 ? 'it' : 'them'})`);
      }
      if (restart.length > 0) {
        const why = peersWait ? ' (no peer link runs on this daemon)' : '';
        notes.push(`volume ${name}: ${restart.join(', ')} changed: that takes a restart${why} (it is opened as it was)`);
      }
      was.path = n.path;
      was.journal_dir = n.journal_dir;
      if (relink.length > 0) links?.relink(name, relink, `volume ${name}'s peers changed at a reload here (it is set aside)`);
    }
    return notes;
  }

  /**
   * A reload: the volumes set aside are opened again, one after another, in the
   * background (not those `gone` from the file: they are let go); returns what the reload says of them.
   */
  retry(gone: ReadonlySet<string> = new Set()): string[] {
    const u = this.host.unavailable;
    const todo = u.names().filter((n) => !gone.has(n)).map((n) => this.host.config.volumes.find((x) => x.name === n))
      .filter((v): v is VolumeConfig => v !== undefined && u.begin(v.name));
    if (todo.length === 0) return [];
    const p = this.reopen(todo).finally(() => this.reopening.delete(p));
    this.reopening.add(p);
    return todo.map((v) => `volume ${v.name}: opening it again`);
  }

  /**
   * Volumes a reload's config adds (checked by the caller: already in the daemon's
   * config): opened as the start opens them, one after another, in the background,
   * then served and linked. One that does not open is set aside, with why, as at a
   * start. Returns what the reload says of them. `after`: what must end first (volumes
   * the same reload lets go, whose file or target name one of these may take).
   */
  add(vs: readonly VolumeConfig[], after: Promise<unknown> = Promise.resolve()): string[] {
    if (vs.length === 0) return [];
    const p = after.then(() => this.reopen(vs, true)).finally(() => this.reopening.delete(p));
    this.reopening.add(p);
    return vs.map((v) => `volume ${v.name}: added; opening it`);
  }

  /**
   * Opens a served volume a reload let go to reopen it (src/node/volume-reopen.ts): it is
   * set aside, being opened, by now. Resolves once it is served again or set aside with why.
   */
  openAgain(vs: readonly VolumeConfig[]): Promise<void> {
    const p = this.reopen(vs).finally(() => this.reopening.delete(p));
    this.reopening.add(p);
    return p;
  }

  /** Resolves once no reopen runs. */
  async idle(): Promise<void> {
    await Promise.all([...this.reopening]);
  }

  /**
   * Opens the volumes (again) as the start does: identities first, a group's members
   * together, then each volume. `added`: new to the config (none is in a group, none
   * was set aside), else volumes set aside that this reload retries.
   */
  private async reopen(vs: readonly VolumeConfig[], added = false): Promise<void> {
    const { host } = this;
    // The volumes this run still opens: one it set aside is another reload's to try
    // (that reload may have begun it again while this one awaited an earlier volume).
    const mine = new Set(vs.map((v) => v.name));
    const setAside = (v: VolumeConfig, err: unknown): void => {
      mine.delete(v.name);
      this.setAside(v, err);
    };
    const identities = new Map<string, VolumeIdentity>();
    for (const v of vs) {
      if (v.peer === undefined) continue;
      try {
        const dir = path.join(host.config.state, 'volumes', v.name);
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        identities.set(v.name, VolumeIdentity.open(dir, v.role));
      } catch (err) {
        setAside(v, err);
      }
    }
    // (A retry's volume that another reload's run set aside meanwhile is that run's.)
    const ours = (name: string): boolean => mine.has(name) && (added ? !host.unavailable.has(name) : host.unavailable.isOpening(name));
    // (Members of a group the reload adds open together too: one set aside sets the others aside.)
    this.withGroup(vs);
    for (const v of vs) if (!ours(v.name)) mine.delete(v.name);
    const identityOf = (m: string): VolumeIdentity | null => identities.get(m) ?? host.entries().find((x) => x.config.name === m)?.identity ?? null;
    for (const v of vs) {
      if (!ours(v.name)) continue; // set aside again by this run
      try {
        const e = await host.openVolume(v, identityOf);
        if (!added) host.unavailable.opened(v.name);
        const links = host.links();
        if (e.role === 'primary' && fs.existsSync(path.join(e.dir, PAUSED_FILE))) links?.pausedVolumes.add(v.name);
        // Its first write while apart from the peer starts a new generation, as for the volumes the start opened.
        if (e.role === 'primary') links?.armApart(v.name);
        if (added) links?.volumeAdded(v.name);
        links?.volumeReady(v.name, `volume ${v.name} is served here now`);
        host.log.info({ volume: v.name }, `volume ${v.name}: ${added ? 'added' : 'opened'} at a reload; served as ${e.role} (${formatBytes(e.volume.size)})`);
        host.served(e);
      } catch (err) {
        setAside(v, err);
      }
    }
  }
}
