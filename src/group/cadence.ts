// The primary's side of a consistency group (docs/GROUPS.md): when to make the next
// group point, and its number, as a pure machine over the clock the caller passes.
// A point is due every GROUP_POINT_INTERVAL_MS while any member has records after the
// last point, and sooner when a member's host flushed (at most every
// GROUP_POINT_MIN_GAP_MS) or a member journaled more than its epoch bound since the
// last point (its peer's receive log must hold everything between two points).
import { GROUP_POINT_INTERVAL_MS, GROUP_POINT_MIN_GAP_MS } from '../limits/limits.js';

export type GroupAsk = 'flush' | 'bytes';

export class GroupPointCadence {
  private lastAt: number;
  private lastPoint: number;
  private asked: GroupAsk | null = null;

  /** `lastPoint`: the newest point number made before (numbers only grow). */
  constructor(now: number, lastPoint = 0, private readonly intervalMs = GROUP_POINT_INTERVAL_MS, private readonly minGapMs = GROUP_POINT_MIN_GAP_MS) {
    this.lastAt = now;
    this.lastPoint = lastPoint;
  }

  /** A member asked for a point sooner (its host flushed, or it passed its epoch bound). */
  ask(why: GroupAsk): void {
    if (this.asked !== 'bytes') this.asked = why;
  }

  /** Is a point due now? `pending`: some member has records after the last point. */
  due(now: number, pending: boolean): boolean {
    if (!pending) {
      this.asked = null;
      return false;
    }
    if (this.asked === 'bytes') return true;
    const since = now - this.lastAt;
    if (this.asked === 'flush' && since >= this.minGapMs) return true;
    return since >= this.intervalMs;
  }

  /** Ms until `due` may turn true (for the caller's timer). */
  waitMs(now: number): number {
    if (this.asked === 'bytes') return 0;
    const gap = this.asked === 'flush' ? this.minGapMs : this.intervalMs;
    return Math.max(0, this.lastAt + gap - now);
  }

  /**
   * The point is made now: its number, the primary's clock in ms, one more than the
   * last when the clock did not move (or went back), so numbers grow on every member.
   */
  made(now: number): number {
    this.lastPoint = Math.max(now, this.lastPoint + 1);
    this.lastAt = now;
    this.asked = null;
    return this.lastPoint;
  }

  get last(): number { return this.lastPoint; }
}
