// The secondary's side of a consistency group (docs/GROUPS.md), as a pure function:
// from what each member's receiver holds (its MemberView), the group point every
// member may be brought to. The members are applied only up to it, so whatever they
// present comes from one moment of the primary.
import type { MemberView } from '../secondary/receiver.js';

export interface GroupLimitView {
  /** The group point every member holds durably and can be brought to; null: none yet. */
  limit: number | null;
  /** Every member stands at that same group point now (a checkpoint there freezes one moment). */
  together: boolean;
  /** Why the members' replicas do not come from one moment now (for status), or null. */
  notConsistentBecause: string | null;
}

/** The points a member could stand at, oldest first: where it stands, then what it holds durably. */
function reachable(m: MemberView): number[] {
  return m.appliedPoint === null ? m.points : [m.appliedPoint, ...m.points];
}

/**
 * The newest group point that every member can stand at (in the order of the first
 * member's stream: the primary makes each point on every member at one instant, so the
 * orders agree), never one before `current` (the limit only moves forward: a member
 * may already stand at it). Members are named for the status message.
 */
export function groupLimit(members: ReadonlyArray<{ name: string; view: MemberView }>, current: number | null): GroupLimitView {
  if (members.length === 0) return { limit: current, together: false, notConsistentBecause: 'the group has no members here' };
  const order = reachable(members[0]!.view);
  const sets = members.map((m) => new Set(reachable(m.view)));
  const currentAt = current === null ? -1 : order.indexOf(current);
  let limit = current;
  for (let i = order.length - 1; i > currentAt; i--) {
    const p = order[i]!;
    if (sets.every((s) => s.has(p))) {
      limit = p;
      break;
    }
  }
  const together = limit !== null && members.every((m) => m.view.appliedPoint === limit);
  const inRound = members.filter((m) => m.view.inRound).map((m) => m.name);
  const atNone = members.filter((m) => !m.view.inRound && m.view.appliedPoint === null).map((m) => m.name);
  let why: string | null = null;
  if (inRound.length > 0) {
    why = `${inRound.join(', ')} ${inRound.length === 1 ? 'is' : 'are'} in a resync round (or a first sync): ` +
      "the group's image is from one moment only once every member finished";
  } else if (atNone.length > 0) {
    why = `${atNone.join(', ')} ${atNone.length === 1 ? 'stands' : 'stand'} at no group point yet ` +
      '(after a resync round, or before the first group point arrived)';
  }
  return { limit, together, notConsistentBecause: why };
}
