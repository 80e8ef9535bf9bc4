// Byte ranges of a volume mapped to where their bytes are, for the secondary's history
// (docs/HISTORY.md): which ranges an epoch already saved (so a range overwritten twice
// between two restore points is saved once), and, for a restore point being read, where
// each changed range's old bytes are. The first range put somewhere wins: for a restore
// point, the earliest save after it holds the bytes as they were at it.
import { assert } from '../invariants/assert.js';

/** A range [start, end) and what it maps to. */
export interface Extent<T> { start: number; end: number; value: T }

/** Non-overlapping extents in order of start; `fill` adds only what no extent covers yet. */
export class ExtentMap<T> {
  private readonly extents: Extent<T>[] = [];

  get size(): number { return this.extents.length; }

  /** Index of the first extent that ends after `offset`. */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.extents.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.extents[mid]!.end <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Maps the parts of [start, end) no extent covers to `value(partStart)` (the value
   * for the part beginning at that byte), and returns those parts, in order.
   */
  fill(start: number, end: number, value: (partStart: number) => T): Array<{ start: number; end: number }> {
    assert(start <= end, () => `an extent ${start}..${end} ends before it starts`);
    const added: Array<{ start: number; end: number }> = [];
    let i = this.firstEndingAfter(start);
    let at = start;
    while (at < end) {
      const next = this.extents[i];
      if (next && next.start <= at) {
        at = Math.max(at, next.end);
        i++;
        continue;
      }
      const gapEnd = Math.min(end, next ? next.start : end);
      const v = value(at);
      added.push({ start: at, end: gapEnd });
      // Joined to a neighbour with the same value (the ranges a long round saves stay few).
      // (Each way leaves `at` at the end of the gap or of what now covers it, and `i` at the first extent after.)
      const prev = this.extents[i - 1];
      if (prev && prev.end === at && prev.value === v) {
        prev.end = gapEnd;
        if (next && next.start === gapEnd && next.value === v) {
          prev.end = next.end;
          this.extents.splice(i, 1);
        }
        at = prev.end;
      } else if (next && next.start === gapEnd && next.value === v) {
        next.start = at;
        at = next.end;
        i++;
      } else {
        this.extents.splice(i, 0, { start: at, end: gapEnd, value: v });
        at = gapEnd;
        i++;
      }
    }
    return added;
  }

  /** The parts of [start, end): mapped ones with their extent, unmapped ones with null. */
  *parts(start: number, end: number): Generator<{ start: number; end: number; extent: Extent<T> | null }> {
    let i = this.firstEndingAfter(start);
    let at = start;
    while (at < end) {
      const e = this.extents[i];
      if (!e || e.start >= end) {
        yield { start: at, end, extent: null };
        return;
      }
      if (e.start > at) {
        yield { start: at, end: e.start, extent: null };
        at = e.start;
      }
      const partEnd = Math.min(end, e.end);
      yield { start: at, end: partEnd, extent: e };
      at = partEnd;
      i++;
    }
  }

  clear(): void {
    this.extents.length = 0;
  }
}
