// Byte ranges of a volume mapped to where their bytes are, for the secondary's history
// (docs/HISTORY.md): which ranges an epoch already saved (so a range overwritten twice
// between two restore points is saved once), and, for a restore point being read, where
// each changed range's old bytes are. The first range put somewhere wins: for a restore
// point, the earliest save after it holds the bytes as they were at it.
//
// Kept in blocks of at most BLOCK_EXTENTS sorted extents (a B-tree of one level): a
// point opened far back maps hundreds of thousands of ranges, put in any order, and an
// insert moves at most one block, not the whole map.
import { assert } from '../invariants/assert.js';

/** A range [start, end) and what it maps to. */
export interface Extent<T> { start: number; end: number; value: T }

const BLOCK_EXTENTS = 512;

/** Non-overlapping extents in order of start; `fill` adds only what no extent covers yet. */
export class ExtentMap<T> {
  private blocks: Extent<T>[][] = [];
  private count = 0;

  get size(): number { return this.count; }

  /** The first extent that ends after `offset`: its block and index (the block count and 0 when none). */
  private locate(offset: number): { b: number; i: number } {
    let lo = 0;
    let hi = this.blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const blk = this.blocks[mid]!;
      if (blk[blk.length - 1]!.end <= offset) lo = mid + 1;
      else hi = mid;
    }
    if (lo === this.blocks.length) return { b: lo, i: 0 };
    const blk = this.blocks[lo]!;
    let l = 0;
    let h = blk.length;
    while (l < h) {
      const mid = (l + h) >>> 1;
      if (blk[mid]!.end <= offset) l = mid + 1;
      else h = mid;
    }
    return { b: lo, i: l };
  }

  private before(b: number, i: number): Extent<T> | undefined {
    if (i > 0) return this.blocks[b]![i - 1];
    const prev = this.blocks[b - 1];
    return prev ? prev[prev.length - 1] : undefined;
  }

  private insert(b: number, i: number, e: Extent<T>): void {
    if (this.blocks.length === 0) this.blocks.push([e]);
    else if (b === this.blocks.length) this.blocks[b - 1]!.push(e);
    else this.blocks[b]!.splice(i, 0, e);
    this.count++;
    const at = Math.min(b, this.blocks.length - 1);
    const blk = this.blocks[at]!;
    if (blk.length > BLOCK_EXTENTS) this.blocks.splice(at, 1, blk.slice(0, blk.length >> 1), blk.slice(blk.length >> 1));
  }

  private remove(b: number, i: number): void {
    const blk = this.blocks[b]!;
    blk.splice(i, 1);
    this.count--;
    if (blk.length === 0) this.blocks.splice(b, 1);
  }

  /**
   * Maps the parts of [start, end) no extent covers to `value(partStart)` (the value
   * for the part beginning at that byte), and returns those parts, in order. A part is
   * joined to a neighbour holding the same value (the ranges a long round saves stay few).
   */
  fill(start: number, end: number, value: (partStart: number) => T): Array<{ start: number; end: number }> {
    assert(start <= end, () => `an extent ${start}..${end} ends before it starts`);
    const added: Array<{ start: number; end: number }> = [];
    let at = start;
    while (at < end) {
      const { b, i } = this.locate(at);
      const next = this.blocks[b]?.[i];
      if (next && next.start <= at) {
        at = next.end;
        continue;
      }
      const gapEnd = Math.min(end, next ? next.start : end);
      const v = value(at);
      added.push({ start: at, end: gapEnd });
      const prev = this.before(b, i);
      if (prev && prev.end === at && prev.value === v) {
        prev.end = gapEnd;
        if (next && next.start === gapEnd && next.value === v) {
          prev.end = next.end;
          this.remove(b, i);
        }
        at = prev.end;
      } else if (next && next.start === gapEnd && next.value === v) {
        next.start = at;
        at = next.end;
      } else {
        this.insert(b, i, { start: at, end: gapEnd, value: v });
        at = gapEnd;
      }
    }
    return added;
  }

  /** The parts of [start, end): mapped ones with their extent, unmapped ones with null. */
  *parts(start: number, end: number): Generator<{ start: number; end: number; extent: Extent<T> | null }> {
    let { b, i } = this.locate(start);
    let at = start;
    while (at < end) {
      const e = this.blocks[b]?.[i];
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
      if (++i >= this.blocks[b]!.length) {
        b++;
        i = 0;
      }
    }
  }

  clear(): void {
    this.blocks = [];
    this.count = 0;
  }
}
