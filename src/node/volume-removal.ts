// A volume dropped from the config at a reload is let go as a clean stop lets it go,
// and the daemon serves the others on (docs/CONFIG.md, "Reloading"). An appliance that
// protects a hundred servers retires one without cutting the ninety-nine.
//
// The order is what makes it safe: first nothing new reaches the volume (its exports
// leave the registry), then whatever still uses it ends (its NBD connections and iSCSI
// sessions answer what is in flight and close; its links are closed and its shippers,
// resync and verify stopped; a replica's apply finishes its unit), and only then are its
// files closed (the write path made durable as at a stop, the receive log synced), its
// folder's lock given back and the volume closed (which waits for any straggler in the
// thread pool: src/volume/volume.ts). Nothing is removed from disk: the file, the
// journal or receive log and the state folder stay, so a volume added back resumes
// where it stopped (its journal shipped on, no first sync), as after a restart. The
// links to its peers come back without it: their Hellos no longer describe it, and
// the peers say it is missing here.
import type { Logger } from '../log/log.js';
import type { ExportRegistry } from '../export/registry.js';
import type { Config, VolumeConfig } from '../config/config.js';
import type { Volume } from '../volume/volume.js';
import { CHECKPOINT_SUFFIX } from '../checkpoint/checkpoint-export.js';
import { DRILL_SUFFIX } from '../drill/drill.js';
import { formatBytes } from '../units/units.js';
import { assert } from '../invariants/assert.js';
import type { LinkManager } from './links.js';
import type { VolumeEntry } from './volume-entry.js';
import type { UnavailableVolumes } from './unavailable.js';

/** What letting a volume go needs of the daemon. */
export interface RemovalHost {
  readonly config: Pick<Config, 'volumes' | 'state'>;
  readonly log: Logger;
  /** The served volumes (the entry leaves this list first: actions and status no longer find it). */
  readonly entries: VolumeEntry[];
  /** Every open volume file. */
  readonly volumes: Volume[];
  readonly registry: Pick<ExportRegistry, 'remove'>;
  readonly unavailable: Pick<UnavailableVolumes, 'has' | 'remove'>;
  links(): Pick<LinkManager, 'volumeChanged' | 'volumeRemoved'> | null;
  /** Closes the NBD connections and iSCSI sessions on these exports, once what they have in flight has answered. */
  closeExports(names: ReadonlySet<string>): Promise<number>;
  /** Runs `f` in the node's action queue: no promote, demote, checkpoint or drill of the volume runs meanwhile. */
  exclusive<T>(f: () => Promise<T>): Promise<T>;
  /** Gives back the volume's journal (or receive log) folder's lock. */
  releaseFolder(name: string): void;
  /** What the node keeps of the volume by name, beyond its entry: its stream, identity, schedules. */
  forget(name: string): void;
  /** Writes down how the close left the volume's file, as a clean stop does (src/volume/file-identity.ts). */
  stampStopped(e: VolumeEntry): Promise<void>;
}

/**
 * Lets `name` go (its config entry is still in host.config.volumes, and leaves it here;
 * the caller waits first for opens under way, which may be opening it). Resolves with
 * what the log says; never rejects: a step that fails is logged and the rest still
 * runs, so the volume is not left half served.
 */
export function removeVolume(host: RemovalHost, name: string): Promise<string> {
  return host.exclusive(async () => {
    const log = host.log;
    const i = host.config.volumes.findIndex((v) => v.name === name);
    if (i < 0) return `volume ${name}: already let go`;
    const config = host.config.volumes[i]!;
    const e = host.entries.find((x) => x.config.name === name);
    const peers = config.peers;
    if (!e) {
      // Set aside (never opened): nothing of it is served; the peers hear that it is gone.
      host.config.volumes.splice(i, 1);
      host.unavailable.remove(name);
      host.forget(name);
      if (peers.length > 0) host.links()?.volumeChanged(name, `volume ${name} was removed from the config here`);
      host.links()?.volumeRemoved(name, peers);
      const msg = `volume ${name}: removed from the config; it was not open here (set aside), so nothing was served`;
      log.info({ volume: name }, msg);
      return msg;
    }
    const t0 = Date.now();
    const { sessions, problems } = await letGo(host, e, config, `volume ${name} was removed from the config here`);
    // 4. What the node kept of it by name goes; the links come back without it.
    host.config.volumes.splice(host.config.volumes.indexOf(config), 1);
    host.links()?.volumeRemoved(name, peers);
    assert(!host.entries.some((x) => x.config.name === name) && !host.config.volumes.some((v) => v.name === name),
      () => `volume ${name}: still listed after it was let go`);
    const kept = e.journaled ? 'its journal' : e.replica ? 'its receive log' : null;
    const msg = `volume ${name}: removed from the config and let go in ${Date.now() - t0} ms (${formatBytes(e.volume.size)} ${e.role}` +
      `${sessions > 0 ? `, ${sessions} host session${sessions === 1 ? '' : 's'} closed` : ''}); ` +
      `${config.path}${kept ? `, ${kept}` : ''} and its state in ${e.dir} are kept: add it back and reload to serve it again` +
      (kept ? ', from where it stopped' : '') +
      (problems.length > 0 ? `; but ${problems.join('; ')}` : '');
    if (problems.length > 0) log.error({ volume: name }, msg);
    else log.info({ volume: name }, msg);
    return msg;
  });
}

/**
 * Steps 1 to 3 of letting a served volume go (the file's comment), and what the node kept
 * of it by name: after it nothing of the volume is open or served, and its config entry
 * is still listed (removeVolume drops it; a reopen opens it again: src/node/volume-reopen.ts).
 * Runs in the node's action queue. `why`: what its peers are told. Never rejects: a step
 * that fails is logged and returned, and the rest still runs.
 */
export async function letGo(host: RemovalHost, e: VolumeEntry, config: VolumeConfig, why: string): Promise<{ sessions: number; problems: string[] }> {
  const name = config.name;
  const problems: string[] = [];
  const step = async (what: string, f: () => unknown): Promise<void> => {
    try {
      await f();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
      host.log.error({ volume: name }, `volume ${name}: letting it go: ${what} failed: ${(err as Error).message}`);
    }
  };
  // 1. Nothing new reaches it: actions and status no longer find it, no host opens its exports.
  host.entries.splice(host.entries.indexOf(e), 1);
  const exports = new Set([name, `${name}${CHECKPOINT_SUFFIX}`, `${name}${DRILL_SUFFIX}`]);
  for (const x of exports) host.registry.remove(x);
  // 2. What uses it ends: hosts' requests in flight answer, its links close.
  let sessions = 0;
  await step('closing its NBD and iSCSI sessions', async () => {
    sessions = await host.closeExports(exports);
  });
  if (config.peers.length > 0) host.links()?.volumeChanged(name, why);
  await step('ending its drill', () => e.drill?.stop());
  e.drill = null;
  // 3. Its files close as at a clean stop.
  if (e.journaled) {
    const jv = e.journaled;
    await step('closing its journal', () => jv.close());
  }
  if (e.replica) {
    const rp = e.replica;
    await step('finishing its apply', () => rp.quiesce());
    await step('syncing its receive log', () => rp.log.sync());
    await step('closing its receive log and history', () => rp.abandon());
  }
  host.releaseFolder(name);
  const k = host.volumes.indexOf(e.volume);
  if (k >= 0) host.volumes.splice(k, 1);
  await step(`closing ${config.path}`, () => e.volume.close());
  await host.stampStopped(e);
  host.forget(name);
  return { sessions, problems };
}
