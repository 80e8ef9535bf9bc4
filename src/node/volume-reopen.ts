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
  /** Opens a volume set aside, being opened (unavailable.begin), as a reload does; one that fails stays set aside, with why. */
  openAgain(v: VolumeConfig): Promise<void>;
}

/** Reopens the served volume `next.name` with `next`'s REOPEN_KEYS. Resolves with what the log says; never rejects. */
export async function reopenVolume(host: ReopenHost, next: VolumeConfig): Promise<string> {
  const name = next.name;
  const keys = [...REOPEN_KEYS] as (keyof VolumeConfig)[];
  const closed = await host.exclusive(async () => {
    const config = host.config.volumes.find((v) => v.name === name);
    const e = host.entries.find((x) => x.config.name === name);
    if (!config || !e) return null; // let go, or set aside, since the reload
    const changed = keys.filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k]));
    if (changed.length === 0) return null;
    const t0 = Date.now();
    const gone = await letGo(host, e, config, `volume ${name} is being reopened here (a reload changed its ${changed.join(', ')})`);
    host.unavailable.reopen(name, `being opened again at a reload with its new ${changed.join(', ')}`, Date.now());
    // (In place: the links and the entries' order know the volume by this object.)
    config.path = next.path;
    config.journal_dir = next.journal_dir;
    config.bitmap_region = next.bitmap_region;
    return { config, changed, ms: Date.now() - t0, ...gone };
  });
  if (!closed) {
    const msg = `volume ${name}: not reopened: it is not served here now (let go or set aside since the reload)`;
    host.log.warn({ volume: name }, msg);
    return msg;
  }
  const { config, changed, sessions, problems } = closed;
  host.log.info({ volume: name }, `volume ${name}: let go in ${closed.ms} ms to be reopened with its new ${changed.join(', ')}` +
    `${sessions > 0 ? ` (${sessions} host session${sessions === 1 ? '' : 's'} closed)` : ''}` +
    (problems.length > 0 ? `; but ${problems.join('; ')}` : ''));
  await host.openAgain(config);
  const msg = host.unavailable.has(name) ? `volume ${name}: not reopened; it is set aside (the log says why)` : `volume ${name}: reopened`;
  return msg;
}
