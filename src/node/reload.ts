// SIGHUP or POST /api/v1/reload (docs/CONFIG.md, "Reloading"): the config file is read
// again and what changed is applied to the running node, its other volumes, their
// hosts' sessions and their links going on. Link rates, schedules and volume weights
// change at once, without reconnecting (src/node/links.ts); volumes set aside are
// opened again as the config now says (src/node/set-aside.ts); volumes new to the file
// are opened and served, and volumes gone from it let go, in the background
// (src/node/reloaded-volumes.ts, src/node/volume-removal.ts); a served volume's peers,
// size, folders and grouping change in place (volume-peers.ts, volume-size.ts,
// volume-reopen.ts, regroup.ts), each after the ones before it, in the node's action
// queue. What waits for a restart is said. A stop waits for what reloads began (idle).
import type { Config } from '../config/config.js';
import { loadConfig } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { LinkManager } from './links.js';
import type { NodeGroups } from './groups.js';
import type { RoleChanges } from './roles.js';
import type { SetAside } from './set-aside.js';
import type { UnavailableVolumes } from './unavailable.js';
import type { VolumeEntry } from './volume-entry.js';
import { applyVolumeKeys, historyReloaded, journalReloaded, volumesReloaded } from './reloaded-volumes.js';
import { reopenVolumes, type ReopenHost } from './volume-reopen.js';
import { regroupVolumes } from './regroup.js';
import { volumePeersReloaded } from './volume-peers.js';
import { volumeSizeReloaded } from './volume-size.js';
import { removeVolume, type RemovalHost } from './volume-removal.js';

/** What a reload reaches of the daemon. */
export interface ReloadHost {
  config(): Config;
  log(): Logger;
  entries(): readonly VolumeEntry[];
  unavailable(): UnavailableVolumes;
  links(): LinkManager | null;
  setAsides(): SetAside;
  groups(): NodeGroups;
  roles(): RoleChanges;
  /** The daemon's start is done and it is not stopping: volumes may open and go. */
  serving(): boolean;
  /** The daemon's start is done. */
  started(): boolean;
  /** What letting a volume go needs (src/node/volume-removal.ts). */
  removal(): RemovalHost;
}

export class NodeReloads {
  /** Each volume's peers as the latest reload asks for them, until that change has run (src/node/volume-peers.ts). */
  private readonly peersWanted = new Map<string, string[]>();
  /** What reloads let go, reopen or regroup, one after another (src/node/volume-removal.ts); a stop waits for it. */
  private removing: Promise<void> = Promise.resolve();
  /** The volumes being let go, until each is. */
  private readonly leaving = new Set<string>();

  constructor(private readonly host: ReloadHost) {}

  /** Resolves once what the reloads so far began is done. */
  idle(): Promise<void> {
    return this.removing;
  }

  run(): string {
    const h = this.host;
    const next = loadConfig(h.config().file);
    const notes = h.links()?.reload(next) ?? [];
    if (h.serving()) {
      // New volumes open in the background, as at a start, dropped ones are let go; the others go on (src/node/reloaded-volumes.ts).
      const changed = volumesReloaded(h.config(), next, h.links() !== null, (name) => h.unavailable().has(name));
      // (Put back while an earlier reload still lets it go: its entry goes at the end of that.)
      for (const name of this.leaving) {
        if (next.volumes.some((v) => v.name === name)) notes.push(`volume ${name}: still being let go; reload again once that is done to serve it`);
      }
      notes.push(...h.setAsides().adopt(next), ...h.setAsides().retry(new Set(changed.remove)), ...changed.notes);
      if (changed.remove.length > 0) {
        // One after another, each once the opens under way are done (one may be opening it);
        // a group dropped with its members goes after them.
        const opened = h.setAsides().idle();
        for (const name of changed.remove) this.leaving.add(name);
        this.removing = Promise.all([this.removing, opened]).then(async () => {
          for (const name of changed.remove) {
            await removeVolume(h.removal(), name);
            this.leaving.delete(name);
          }
          for (const g of changed.removeGroups) {
            h.groups().remove(g);
            h.config().groups.splice(h.config().groups.findIndex((x) => x.name === g), 1);
            h.log().info({ group: g }, `group ${g}: removed from the config with its members`);
          }
        });
        notes.push(...changed.remove.map((name) => `volume ${name}: gone from the config; letting it go (its file, journal and state are kept)`));
      }
      // (In place: the links, the iSCSI front and the set-aside know the volumes by this list;
      // a replica learns at its open that it is a group's member.)
      h.config().volumes.push(...changed.add);
      for (const g of changed.addGroups) {
        h.config().groups.push(g);
        h.groups().add(g, h.started());
        notes.push(`consistency group ${g.name}: added with ${g.members.join(', ')}`);
      }
      notes.push(...h.setAsides().add(changed.add, this.removing));
      // A served volume's new peers, after the removals, each in the node's action queue (src/node/volume-peers.ts).
      for (const e of h.entries()) {
        const v = next.volumes.find((x) => x.name === e.config.name);
        // (Not one being let go: put back, it opens with the file's peers.)
        if (!v || this.leaving.has(v.name)) continue;
        const peers = volumePeersReloaded(e, v, {
          links: h.links(), log: h.log(), wanted: this.peersWanted,
        });
        notes.push(...peers.notes);
        const change = peers.change;
        if (change) this.removing = this.removing.then(() => h.roles().exclusive(change));
        // A raised size: the volume grows in place (src/node/volume-size.ts), after its peers changed.
        const grown = volumeSizeReloaded(e, v, { links: h.links(), log: h.log() });
        notes.push(...grown.notes);
        const grow = grown.change;
        if (grow) this.removing = this.removing.then(() => h.roles().exclusive(grow));
      }
      // A served volume whose file, journal folder or bitmap granularity changed is let go and
      // opened again, alone, after its peers and size changed (src/node/volume-reopen.ts).
      // A consistency group's member is reopened with the other members: they open together.
      const host: ReopenHost = { ...h.removal(), unavailable: h.unavailable(), openAgain: (c) => h.setAsides().openAgain(c) };
      const reopening = new Set<string>();
      for (const v of changed.reopen) {
        if (reopening.has(v.name)) continue;
        const g = h.config().groups.find((x) => x.members.includes(v.name));
        const nexts = g ? changed.reopen.filter((x) => g.members.includes(x.name)) : [v];
        for (const x of nexts) reopening.add(x.name);
        // (After the opens under way: a member this reload retries is served, or set aside, by then.)
        this.removing = this.removing.then(() => h.setAsides().idle()).then(() => reopenVolumes(host, nexts, g?.members ?? [], g?.name))
          .then(() => undefined);
      }
      // A group whose members change among served volumes: its members, before and after, are
      // let go and opened again together under the new grouping (src/node/regroup.ts).
      for (const r of changed.regroup) {
        const regroupHost = {
          ...host, setGroup: (name: string, members: readonly string[] | null) => this.setGroup(name, members), groups: () => h.config().groups,
        };
        this.removing = this.removing.then(() => h.setAsides().idle()).then(() => regroupVolumes(regroupHost, r)).then(() => undefined);
      }
      // Peers dropped with their volumes go once those are let go.
      this.removing = this.removing.then(() => h.links()?.dropRetiring());
    }
    // A served volume's live keys: its schedule, failback, on_full, iSCSI access, a secondary's history.
    for (const e of h.entries()) {
      const v = next.volumes.find((x) => x.name === e.config.name);
      if (!v) continue;
      notes.push(...applyVolumeKeys(e, v, () => h.roles().replanSchedule(e.config.name)));
      notes.push(...historyReloaded(e, v, (f) => h.roles().exclusive(f), h.log()));
      notes.push(...journalReloaded(e, v, () => h.links()?.relink(e.config.name, e.config.peers)));
    }
    const msg = notes.length > 0 ? `config reloaded: ${notes.join('; ')}` : 'config reloaded: nothing that applies live changed';
    h.log().info(msg);
    return msg;
  }

  /** Group `name`'s members as a regroup sets them (null: the group goes), while none of them is served (src/node/regroup.ts). */
  private setGroup(name: string, members: readonly string[] | null): void {
    const h = this.host;
    const i = h.config().groups.findIndex((g) => g.name === name);
    if (i >= 0) {
      h.groups().remove(name);
      h.config().groups.splice(i, 1);
    }
    if (members === null) return;
    const g = { name, members: [...members] };
    h.config().groups.push(g);
    h.groups().add(g, h.started());
  }
}
