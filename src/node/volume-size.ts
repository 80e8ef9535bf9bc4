// A served volume's `size:` raised at a reload (docs/CONFIG.md, "Growing a volume"):
// a server's disk grown without a restart, without cutting its hosts' sessions, and
// without a resync. Each site grows its own file (the new part reads zeros on both, so
// nothing of it differs); the secondaries first, then the primary:
//
// - a secondary grows between two units (Replica.grow); if its primary was grown
//   first and the pair waits for the sizes to match, its links are made again, and
//   the next Hello pairs it;
// - a primary grows (JournaledVolume.grow: bitmaps, file, size, in that order), then
//   its links are made again: each Hello compares the sizes, and a peer not grown yet
//   leaves that one volume unpaired (the link serves the others) until it is, its
//   changes kept in the journal meanwhile;
// - a volume without a role here (no peers) grows its file alone.
//
// A smaller size is refused: a volume never shrinks under its hosts. Each grow is written
// down first (src/journal/grow.ts): a start after a crash part-way finishes it; a start
// whose size: is above its file's without one refuses the volume, as a typo would be.
import type { VolumeConfig } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import type { Replica } from '../secondary/replica.js';
import type { Volume } from '../volume/volume.js';
import fs from 'node:fs';
import { formatBytes } from '../units/units.js';
import { DirStore } from '../journal/store.js';
import { readGrowing, removeGrowing, writeGrowing } from '../journal/grow.js';

export interface GrowLinks {
  /** The links to `peers` are made again: the next Hello compares `volume`'s size with each. */
  relink(volume: string, peers: readonly string[], why: string): void;
  /** Is `volume` paired with `peer` on a link now (its primary, at a secondary)? */
  paired(volume: string, peer: string): boolean;
}

export interface GrowHost {
  /** Null: this daemon runs no links. */
  links: GrowLinks | null;
  log: Logger;
}

/** What a grow reads of the volume's entry when it runs (its role may have changed since the reload). */
export interface GrownEntry {
  readonly config: VolumeConfig;
  /** Its state folder (a grow is written down there first, src/journal/grow.ts). */
  readonly dir: string;
  readonly volume: Volume;
  readonly journaled: JournaledVolume | null;
  readonly replica: Replica | null;
}

/**
 * `e`'s size as a reload's `next` has it. Returns the notes and the grow to run, which
 * the caller runs in the node's action queue (no promote, demote or checkpoint
 * meanwhile) after the reload's removals.
 */
export function volumeSizeReloaded(e: GrownEntry, next: VolumeConfig, host: GrowHost): { notes: string[]; change?: () => Promise<void> } {
  const v = e.config;
  const name = v.name;
  const want = next.size;
  const now = e.volume.size;
  if (want === undefined || want === now) {
    v.size = want;
    return { notes: [] };
  }
  if (want < now) {
    return {
      notes: [`volume ${name}: size ${formatBytes(want)} is less than its ${formatBytes(now)}: a volume does not shrink under its hosts; ` +
        `it stays ${formatBytes(now)} (put size: back, or remove it: a start with a smaller size: refuses the volume)`],
    };
  }
  const change = async (): Promise<void> => {
    const from = e.volume.size;
    // (An earlier reload's grow went as far, or further.)
    if (want <= from) return;
    const t0 = Date.now();
    const jv = e.journaled;
    const rp = e.replica;
    const failed = (why: string): void => host.log.error({ volume: name },
      `volume ${name}: growing to ${formatBytes(want)} failed (${why}); it stays ${formatBytes(e.volume.size)}: mend the cause and reload again`);
    // (A block device its owner has not grown yet: said before anything is written down or grows.)
    const refused = e.volume.cannotGrow(want);
    if (refused !== null) return failed(refused);
    try {
      if (jv) await jv.grow(want);
      else if (rp) await rp.grow(want);
      else {
        fs.mkdirSync(e.dir, { recursive: true, mode: 0o700 });
        const state = new DirStore(e.dir);
        await writeGrowing(state, want);
        await e.volume.extend(want);
        e.volume.setSize(want);
        await removeGrowing(state);
      }
    } catch (err) {
      return failed((err as Error).message);
    }
    v.size = want;
    const links = host.links;
    const why = `volume ${name} grew at a reload here`;
    let then = '';
    if (jv && links && v.peers.length > 0) {
      links.relink(name, v.peers, why);
      then = `; each of ${v.peers.join(', ')} must be as large: a peer not grown yet pairs no more (nothing of ${name} flows to it, ` +
        'its changes wait in the journal) until its size: is raised too';
    } else if (rp && links) {
      const waiting = v.peers.filter((p) => !links.paired(name, p));
      if (waiting.length > 0) links.relink(name, waiting, why);
      then = `; raise its size: at ${v.peers.join(', ') || 'its primary'} next`;
    }
    host.log.info({ volume: name }, `volume ${name}: grown from ${formatBytes(from)} to ${formatBytes(want)} in ${Date.now() - t0} ms ` +
      `(the new part reads zeros; nothing of it is resynced)${then}`);
  };
  return { notes: [`volume ${name}: growing from ${formatBytes(now)} to ${formatBytes(want)}`], change };
}

/**
 * At a volume's open: the size a grow a stop cut was to (its file in the state folder
 * `dir`), which the open finishes, or null. Refused when `size:` says another size now.
 */
export async function growToFinish(v: VolumeConfig, dir: string): Promise<number | null> {
  const growTo = fs.existsSync(dir) ? await readGrowing(new DirStore(dir)) : null;
  if (growTo !== null && v.size !== undefined && v.size !== growTo) {
    throw new Error(`volume ${v.name}: a grow to ${formatBytes(growTo)} was under way when the daemon stopped, and size: says ` +
      `${formatBytes(v.size)} now: set size: ${formatBytes(growTo)} (or remove it) and reload, to finish it`);
  }
  return growTo;
}

/** The volume opened with every part grown (the bitmaps from their smaller headers): the grow's file goes. */
export function growFinished(dir: string): Promise<void> {
  return removeGrowing(new DirStore(dir));
}
