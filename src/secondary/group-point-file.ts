// A group member's replica (docs/GROUPS.md): the group point its next (or last) apply
// unit ends at, written down before the unit starts. After a crash in the middle of a
// unit the replica is brought to that same point again (it is durable in the receive
// log: the group's limit is a point every member holds durably), and once the unit is
// applied the file says which group point the replica stands at.
// state/volumes/NAME/group-point, JSON: {"version":1,"point":N,"seq":S}.
import { readStateFile, type Store } from '../journal/store.js';
import { jsonVersion } from '../versioning/format.js';

export const GROUP_POINT_FILE = 'group-point';
export const GROUP_POINT_FORMAT = jsonVersion('group point file', 1, [1]);

export interface GroupPointMark {
  /** The group point's number. */
  point: number;
  /** Its barrier's seq in this member's stream. */
  seq: number;
}

export function writeGroupPoint(store: Store, m: GroupPointMark): Promise<void> {
  return store.replace(GROUP_POINT_FILE, Buffer.from(`${JSON.stringify({ version: GROUP_POINT_FORMAT.writes, point: m.point, seq: m.seq })}\n`));
}

/** The mark, or null (none, or unreadable: the replica then stands at no known group point until its next one). */
export async function readGroupPoint(store: Store): Promise<GroupPointMark | null> {
  const b = await readStateFile(store, GROUP_POINT_FILE, GROUP_POINT_FORMAT);
  if (b === null) return null;
  try {
    const j = JSON.parse(b.toString('utf8')) as { point?: unknown; seq?: unknown };
    return typeof j.point === 'number' && typeof j.seq === 'number' ? { point: j.point, seq: j.seq } : null;
  } catch {
    return null;
  }
}
