// A promote to a past point (`offsite promote VOLUME --at TIME`, docs/HISTORY.md): the
// restore point it rolls the replica back to, written down before the promote begins,
// so that a start after a crash part-way rolls back to the same point (not to the
// newest), and the history keeps that point meanwhile. The role change removes it.
// state/volumes/NAME/promote-at, JSON: {"version":1,"seq":S,"time":T}.
import type { Store } from '../journal/store.js';
import { jsonVersion, refuseNewer } from '../versioning/format.js';

export const PROMOTE_AT_FILE = 'promote-at';
export const PROMOTE_AT_FORMAT = jsonVersion('promote-at file', 1, [1]);

export interface PromoteAt { seq: number; time: number }

export function writePromoteAt(store: Store, p: PromoteAt): Promise<void> {
  return store.replace(PROMOTE_AT_FILE, Buffer.from(`${JSON.stringify({ version: PROMOTE_AT_FORMAT.writes, seq: p.seq, time: p.time })}\n`));
}

/**
 * The point a promote under way rolls back to, or null when none is under way. A file
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
