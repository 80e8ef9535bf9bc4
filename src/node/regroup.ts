// A consistency group's members changed at a reload among volumes served before and
// after it (docs/CONFIG.md, "Reloading"; docs/GROUPS.md): a volume put into a group or
// taken out, a group new over served volumes, a group dropped while its members stay.
// A group's points are formed over its members (the primary), and each member's
// receiver applies up to the group's limit over them (the secondary); both are set up
// as the members open. So every member, before and after, is let go as a reload lets
// go a volume it reopens (src/node/volume-reopen.ts: its hosts' requests in flight
// answered, its sessions closed, its journal made durable, its links told), the node's
// grouping changes while none of them is served, and they open again together under
// it, as at a start. The node's other volumes, their sessions and links go on. A
// restart did this before, cutting every volume's hosts and links.
//
// Refused, with the grouping left as it was, while a checkpoint or drill is held on a
// member (its images are from one moment of the old grouping: release it, then reload),
// or while a member is not served here (set aside, or let go: the next reload tries again).
import type { UnavailableVolumes } from './unavailable.js';
import type { Regroup } from './reloaded-volumes.js';
import type { ReopenHost } from './volume-reopen.js';
import { letGo } from './volume-removal.js';

export interface RegroupHost extends ReopenHost {
  readonly unavailable: Pick<UnavailableVolumes, 'has' | 'remove' | 'reopen'>;
  /** Sets group `name`'s members (null: the group goes), in the config and the node's groups, while none of them is served. */
  setGroup(name: string, members: readonly string[] | null): void;
  /** The node's grouping as it is now (the config's groups). */
  groups(): ReadonlyArray<{ name: string; members: readonly string[] }>;
}

/** Lets the members of `r` go, regroups them and opens them again together. Resolves with what the log says; never rejects. */
export async function regroupVolumes(host: RegroupHost, r: Regroup): Promise<string> {
  const label = `consistency group ${r.group}`;
  let was: readonly string[] = r.was;
  let names: string[] = [];
  const closed = await host.exclusive(async () => {
    // From the grouping as it is now, not as the reload saw it: a regroup queued behind another
    // of the same group (two reloads close together) starts from what that one made, and
    // lets go every member of either.
    was = host.groups().find((g) => g.name === r.group)?.members ?? [];
    if (was.join() === r.now.join()) return { same: true as const };
    const elsewhere = r.now.filter((m) => host.groups().some((g) => g.name !== r.group && g.members.includes(m)));
    if (elsewhere.length > 0) {
      return { refused: `${elsewhere.join(', ')} ${elsewhere.length === 1 ? 'is' : 'are'} still a member of another group here: ` +
        'its members stay as they were; reload again once that group\'s change is done' };
    }
    names = [...new Set([...was, ...r.now])];
    const served = names.map((name) => ({
      name, config: host.config.volumes.find((v) => v.name === name), e: host.entries.find((x) => x.config.name === name),
    }));
    const away = served.filter((x) => !x.config || !x.e).map((x) => x.name);
    if (away.length > 0) {
      return { refused: `${away.join(', ')} ${away.length === 1 ? 'is' : 'are'} not served here now (set aside, or let go): ` +
        'its members stay as they were; a reload tries again' };
    }
    const held = served.filter((x) => x.e!.replica?.checkpoint || x.e!.drill).map((x) => x.name);
    if (held.length > 0) {
      return { refused: `a checkpoint or drill is held on ${held.join(', ')}: its members stay as they were; release it ` +
        `(offsite checkpoint release, offsite drill stop), then reload` };
    }
    const t0 = Date.now();
    let sessions = 0;
    const problems: string[] = [];
    for (const { name, config, e } of served) {
      const gone = await letGo(host, e!, config!, `volume ${name} is being reopened here (${label}: its members changed at a reload)`);
      sessions += gone.sessions;
      problems.push(...gone.problems);
      host.unavailable.reopen(name, `being opened again at a reload: ${label}'s members changed`, Date.now());
    }
    // None of them is served now: the grouping changes, and they open under it.
    host.setGroup(r.group, r.now.length > 0 ? r.now : null);
    return { configs: served.map((x) => x.config!), ms: Date.now() - t0, sessions, problems };
  });
  if ('same' in closed) return `${label}: already ${r.now.length > 0 ? r.now.join(', ') : 'gone'}`;
  if (closed.refused !== undefined) {
    const msg = `${label}: not regrouped: ${closed.refused}`;
    host.log.warn({ group: r.group }, msg);
    return msg;
  }
  host.log.info({ group: r.group }, `volumes ${names.join(', ')}: let go in ${closed.ms} ms to be opened again together (${label}: ` +
    `${was.length > 0 ? was.join(', ') : 'no group'} → ${r.now.length > 0 ? r.now.join(', ') : 'no group'})` +
    `${closed.sessions > 0 ? ` (${closed.sessions} host session${closed.sessions === 1 ? '' : 's'} closed)` : ''}` +
    (closed.problems.length > 0 ? `; but ${closed.problems.join('; ')}` : ''));
  await host.openAgain(closed.configs);
  const left = names.filter((n) => host.unavailable.has(n));
  return left.length > 0 ? `${label}: regrouped; ${left.join(', ')} set aside (the log says why)` : `${label}: regrouped`;
}
