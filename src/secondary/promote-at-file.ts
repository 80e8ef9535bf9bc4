// A promote to a past point (`offsite promote VOLUME --at TIME`, docs/HISTORY.md): the
// restore point it rolls the replica back to, written down before the promote begins,
// so that a start after a crash part-way rolls back to the same point (not to the
// newest), and the history keeps that point meanwhile. The role change removes it.
// The file is acted on only once the promote has begun (promoteBegun): one left by a
// promote that a crash or a failure stopped before it began is stale, and is removed.
// A promote of a consistency group to a past group point (`promote GROUP --at`,
// docs/GROUPS.md) writes one on every member, naming the group and its point, before
// any member's change begins; the group's promote has begun once one member's has.
// state/volumes/NAME/promote-at, JSON: {"version":1,"seq":S,"time":T}, and for a
// group's promote also "group":"G","groupPoint":N (a release that reads only seq and
// time rolls the member back to the same point).
import { readStateFile, type Store } from '../journal/store.js';
import { jsonVersion } from '../versioning/format.js';

export const PROMOTE_AT_FILE = 'promote-at';
export const PROMOTE_AT_FORMAT = jsonVersion('promote-at file', 1, [1]);

export interface PromoteAt {
  seq: number;
  time: number;
  /** A group's promote: the group, and the group point every member is rolled back to. */
  group?: string;
  groupPoint?: number;
}

/** A volume's role, and a change of it under way, as its identity holds them (src/volume/identity.ts). */
export interface RoleMark {
  readonly role?: 'primary' | 'secondary' | undefined;
  readonly changing?: 'primary' | 'secondary' | undefined;
}

/**
 * Whether the promote a promote-at file `at` was written for has begun: its change to
 * primary is under way on the volume (written after the file, so a crash between the
 * two leaves a file and no change), or, for a group's promote, on one of the group's
 * other `members`, or done there (every member's file was written before the first
 * member's change began, when every member was secondary here, and only this promote
 * has made one primary since). Only then is the file acted on (the promote is finished
 * at its point); otherwise it is stale, and neither a later promote nor the history's
 * pins may take its point for one.
 */
export function promoteBegun(self: RoleMark, at: PromoteAt | null = null, members: ReadonlyArray<RoleMark | null> = []): boolean {
  if (self.changing === 'primary') return true;
  return at?.group !== undefined && members.some((m) => m !== null && (m.changing === 'primary' || m.role === 'primary'));
}

export function writePromoteAt(store: Store, p: PromoteAt): Promise<void> {
  const group = p.group === undefined ? {} : { group: p.group, groupPoint: p.groupPoint };
  return store.replace(PROMOTE_AT_FILE, Buffer.from(`${JSON.stringify({ version: PROMOTE_AT_FORMAT.writes, seq: p.seq, time: p.time, ...group })}\n`));
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
  const b = await readStateFile(store, PROMOTE_AT_FILE, PROMOTE_AT_FORMAT);
  if (b === null) return null;
  const j = JSON.parse(b.toString('utf8')) as { seq?: unknown; time?: unknown; group?: unknown; groupPoint?: unknown };
  if (typeof j.seq !== 'number' || typeof j.time !== 'number') throw new Error(`${PROMOTE_AT_FILE}: no restore point in it`);
  if (j.group === undefined) return { seq: j.seq, time: j.time };
  if (typeof j.group !== 'string' || typeof j.groupPoint !== 'number') throw new Error(`${PROMOTE_AT_FILE}: a group's promote with no group point in it`);
  return { seq: j.seq, time: j.time, group: j.group, groupPoint: j.groupPoint };
}
