// A served volume a reload reopens, alone (docs/CONFIG.md, "Reloading"): its file
// (`path`), its journal's folder (`journal_dir`) or its bitmap's granularity
// (`bitmap_region`) changed. Those are where the volume's data lives, and nothing of a
// volume can move while it is open; a restart would cut every NBD and iSCSI session of
// the node and drop every link. So the one volume is let go as a reload lets go a volume
// dropped from the file (src/node/volume-removal.ts: its hosts' requests in flight
// answered, its journal closed durable, its links told), and opened again at once with
// the new keys, as a volume set aside is opened at a reload (src/node/set-aside.ts): its
// journal moved to the new folder at the open (src/journal/journal-move.ts), its bitmap's
// marks carried to the new granularity (DirtyBitmap.open), nothing resynced. Meanwhile
// it is listed as set aside, being opened: the status says so, its peers hear it is not
// served (and keep their side as it is), and another reload does not open it twice. An
// open that fails leaves it set aside with the reason, as at a start; a reload with the
// key put right opens it. Hosts connect again (iSCSI initiators do so by themselves).
import type { VolumeConfig } from '../config/config.js';
import type { UnavailableVolumes } from './unavailable.js';
import { REOPEN_KEYS } from './reloaded-volumes.js';
import { letGo, type RemovalHost } from './volume-removal.js';

export interface ReopenHost extends RemovalHost {
  readonly unavailable: Pick<UnavailableVolumes, 'has' | 'remove' | 'reopen'>;
  /** Opens volumes set aside, being opened (unavailable.begin), together, as a reload does; one that fails stays set aside, with why. */
  openAgain(vs: readonly VolumeConfig[]): Promise<void>;
}

/**
 * Reopens the served volumes `nexts` with their REOPEN_KEYS, together with the volumes
 * named in `together` (a consistency group's other members: its members open together,
 * as at a start, so the group's points and limit are formed again over all of them; their
 * own keys are as they were). Resolves with what the log says; never rejects.
 */
export async function reopenVolumes(host: ReopenHost, nexts: readonly VolumeConfig[], together: readonly string[] = [], group?: string): Promise<string> {
  const keys = [...REOPEN_KEYS] as (keyof VolumeConfig)[];
  const names = [...new Set([...nexts.map((v) => v.name), ...together])];
  const label = names.join(', ');
  const closed = await host.exclusive(async () => {
    const changes = new Map<string, (keyof VolumeConfig)[]>();
    for (const next of nexts) {
      const config = host.config.volumes.find((v) => v.name === next.name);
      const changed = config ? keys.filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k])) : [];
      if (changed.length > 0) changes.set(next.name, changed);
    }
    // Each must be served now (a group's members are set aside together, and let go together).
    const served = names.map((name) => ({ config: host.config.volumes.find((v) => v.name === name), e: host.entries.find((x) => x.config.name === name) }));
    const away = names.filter((_, i) => !served[i]!.config || !served[i]!.e);
    if (changes.size === 0 || away.length > 0) return { away }; // let go, or set aside, since the reload
    const what = [...changes].map(([name, changed]) => `${name}'s ${changed.join(', ')}`).join('; ');
    const t0 = Date.now();
    let sessions = 0;
    const problems: string[] = [];
    for (const { config, e } of served) {
      const name = config!.name;
      const why = changes.has(name) ? `a reload changed its ${changes.get(name)!.join(', ')}` : `consistency group ${group}: a reload changed ${what}`;
      const gone = await letGo(host, e!, config!, `volume ${name} is being reopened here (${why})`);
      sessions += gone.sessions;
      problems.push(...gone.problems);
      host.unavailable.reopen(name, changes.has(name) ? `being opened again at a reload with its new ${changes.get(name)!.join(', ')}`
        : `being opened again at a reload with the other members of consistency group ${group} (${what})`, Date.now());
    }
    for (const next of nexts) {
      const config = served.find((x) => x.config!.name === next.name)!.config!;
      // (In place: the links and the entries' order know the volume by this object.)
      config.path = next.path;
      config.journal_dir = next.journal_dir;
      config.bitmap_region = next.bitmap_region;
    }
    return { configs: served.map((x) => x.config!), what, ms: Date.now() - t0, sessions, problems };
  });
  if (closed.away !== undefined) {
    const away = closed.away;
    if (away.length === 0) return `volume ${label}: nothing to reopen`;
    const msg = `volume ${label}: not reopened with the new keys: ${away.join(', ')} ${away.length === 1 ? 'is' : 'are'} not ` +
      'served here now (let go, or set aside: a reload retries those with the file\'s keys)';
    host.log.warn({ volume: label }, msg);
    return msg;
  }
  const { configs, what, sessions, problems } = closed;
  const one = names.length === 1;
  host.log.info({ volume: label }, `${one ? 'volume' : 'volumes'} ${label}: let go in ${closed.ms} ms to be reopened ` +
    `${one ? `with its new ${closed.what.replace(/^[^']+'s /, '')}` : `together (consistency group ${group}: ${what})`}` +
    `${sessions > 0 ? ` (${sessions} host session${sessions === 1 ? '' : 's'} closed)` : ''}` +
    (problems.length > 0 ? `; but ${problems.join('; ')}` : ''));
  await host.openAgain(configs);
  const left = names.filter((n) => host.unavailable.has(n));
  return left.length > 0 ? `volume ${label}: not reopened; ${left.join(', ')} set aside (the log says why)` : `volume ${label}: reopened`;
}
