// A promote to a past point (`offsite promote VOLUME --at TIME`, docs/HISTORY.md): the
// restore point it rolls the replica back to, written down before the promote begins,
// so that a start after a crash part-way rolls back to the same point (not to the
// newest), and the history keeps that point meanwhile. The role change removes it.
// The file is acted on only once the promote has begun (promoteBegun): one left by a
// promote that a crash or a failure stopped before it began is stale, and is removed.
// state/volumes/NAME/promote-at, JSON: {"version":1,"seq":S,"time":T}.
import type { Store } from '../journal/store.js';
import { jsonVersion, refuseNewer } from '../versioning/format.js';

export const PROMOTE_AT_FILE = 'promote-at';
export const PROMOTE_AT_FORMAT = jsonVersion('promote-at file', 1, [1]);

export interface PromoteAt { seq: number; time: number }

/** A volume's role change as its identity holds it (src/volume/identity.ts). */
export interface RoleMark {
  readonly changing?: 'primary' | 'secondary' | undefined;
}

/**
 * Whether the promote a promote-at file was written for has begun: its change to primary
 * is under way on the volume (written after the file, so a crash between the two leaves
 * a file and no change). Only then is the file acted on (the promote is finished at its
 * point); otherwise it is stale, and neither a later promote nor the history's pins may
 * take its point for one.
 */
export function promoteBegun(self: RoleMark): boolean {
  return self.changing === 'primary';
}

export function writePromoteAt(store: Store, p: PromoteAt): Promise<void> {
  return store.replace(PROMOTE_AT_FILE, Buffer.from(`${JSON.stringify({ version: PROMOTE_AT_FORMAT.writes, seq: p.seq, time: p.time })}\n`));
}

/** Removes the file, durably (a stale one, before a promote that goes elsewhere begins). */
export async function removePromoteAt(store: Store): Promise<void> {
  if (!store.list().includes(PROMOTE_AT_FILE)) return;
  store.remove(PROMOTE_AT_FILE);
  await store.syncDir();
}

/**
 * The point written down, or null when there is none (promoteBegun says whether to act on it). A file
 * that cannot be read stops the start (refused, not guessed: rolled to the newest
 * point, the volume would keep the damage the operator went back to undo).
 */
export async function readPromoteAt(store: Store): Promise<PromoteAt | null> {
  if (!store.list().includes(PROMOTE_AT_FILE)) return null;
  const f = store.open(PROMOTE_AT_FILE);
  let b: Buffer;
  try {
    b = await f.read(0, Math.min(f.size(), 4096));
  } finally {
    f.close();
  }
  refuseNewer(PROMOTE_AT_FORMAT, b, PROMOTE_AT_FILE);
  const j = JSON.parse(b.toString('utf8')) as { seq?: unknown; time?: unknown };
  if (typeof j.seq !== 'number' || typeof j.time !== 'number') throw new Error(`${PROMOTE_AT_FILE}: no restore point in it`);
  return { seq: j.seq, time: j.time };
}
