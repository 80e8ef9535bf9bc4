// A consistency group at a past moment (docs/GROUPS.md, docs/HISTORY.md), as a pure
// function: from each member's restore points, the one group point a checkpoint, a
// drill or a promote of the group `--at TIME` opens every member at. The primary made
// each group point on every member at one instant, so the same number in every
// member's history is one moment of the group.
import type { RestorePoint } from '../history/history.js';

export interface MemberPoints {
  name: string;
  /** Its restore points, oldest first; null: the member keeps no history. */
  points: readonly RestorePoint[] | null;
}

export interface PastGroupPoint {
  /** The group point's number. */
  point: number;
  /** Its time (the newest of its members' barrier times: every one is at or before `at`). */
  time: number;
  /** Each member's restore point of it, by member name. */
  members: Map<string, RestorePoint>;
}

/**
 * The newest group point at or before `at` (ms) that every member's history lists.
 * Throws an operator's error when there is none, naming each member and the oldest group
 * point its history reaches back to (or that it keeps no history, or holds no group point).
 */
export function pastGroupPoint(members: readonly MemberPoints[], at: number): PastGroupPoint {
  const iso = (t: number): string => new Date(t).toISOString();
  if (members.length === 0) throw new Error('the group has no members here');
  const bare = members.filter((m) => m.points === null);
  if (bare.length > 0) {
    throw new Error(`${bare.map((m) => m.name).join(', ')} ${bare.length === 1 ? 'keeps' : 'keep'} no history, so the group has no past point ` +
      `(set history: on every member, docs/HISTORY.md)`);
  }
  const lists = members.map((m) => new Map(m.points!.filter((p) => p.groupPoint !== undefined && p.time <= at).map((p) => [p.groupPoint!, p])));
  let point: number | null = null;
  for (const gp of lists[0]!.keys()) if (lists.every((l) => l.has(gp)) && (point === null || gp > point)) point = gp;
  if (point === null) {
    const oldest = members.map((m) => {
      const first = m.points!.find((p) => p.groupPoint !== undefined);
      return first ? `${m.name}'s oldest is group point ${first.groupPoint} of ${iso(first.time)}` : `${m.name} holds no group point yet`;
    });
    throw new Error(`no group point at or before ${iso(at)} is in the history of every member (${oldest.join('; ')})`);
  }
  const chosen = new Map(members.map((m, k) => [m.name, lists[k]!.get(point)!]));
  return { point, time: Math.max(...[...chosen.values()].map((p) => p.time)), members: chosen };
}
