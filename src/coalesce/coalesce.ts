// Coalescing (docs/LINK.md): when a batch of journal records spans several epochs
// (the link is behind), every record whose bytes a later record of the batch
// covers, up to the batch's last barrier, goes as a 56-byte Skip record instead. The
// epochs up to that barrier become one unit: each Skip names the barrier, and the
// replica is never brought to a barrier before it, so every image it exposes is
// still a primary flush-point image (docs/INVARIANTS.md, invariant 3), only fewer of them.
// Pure: the same function runs in the daemon and in the simulation.
import {
  FLAG_GROUP_POINT, FLAG_RESYNC, FLAG_ROUND_END, RECORD_HEADER_SIZE, RecordKind, recordSize, type JournalRecord, type RecordHeader,
} from '../journal/record.js';
import { assert } from '../invariants/assert.js';

export interface Coalesced {
  records: JournalRecord[];
  /** Records sent as Skip records, and the payload bytes that stayed home. */
  skipped: number;
  skippedBytes: number;
}

/** A coalesced unit: its records from `from` to the barrier `until`, and those a later one covers. */
export interface UnitPlan {
  from: number;
  until: number;
  skip: Set<number>;
}

/**
 * Plans a unit over records (headers are enough) in seq order: it ends at a barrier
 * before any resync record or round end, and holds at least two epochs; the records a
 * later record of the unit covers whole are skipped. It ends at the last such barrier
 * whose unit, as sent (kept records whole, skipped ones as Skip headers), is at most
 * `maxBytes`: the peer holds a unit whole before it applies it, so this, not the span of
 * journal planned over, is what its receive log must hold. Null: nothing to merge.
 */
export function planUnit(headers: readonly RecordHeader[], maxBytes = Infinity): UnitPlan | null {
  // The barriers a unit may end at: a group member's only at group points (docs/GROUPS.md),
  // since the replica is brought to group points only and a unit ending past one would hold it back.
  const ends: number[] = [];
  const points: number[] = [];
  for (let i = 0; i < headers.length; i++) {
    const r = headers[i]!;
    // A resync round's records and its end stay as they are (the round has its own unit).
    if ((r.flags & (FLAG_RESYNC | FLAG_ROUND_END)) !== 0 || r.kind === RecordKind.Skip) break;
    if (r.kind === RecordKind.Barrier) {
      ends.push(i);
      if ((r.flags & FLAG_GROUP_POINT) !== 0) points.push(i);
    }
  }
  // (At least two epochs: the end's barrier is the second barrier or later.)
  const candidates = (points.length > 0 ? points : ends).filter((i) => i > ends[0]!);
  if (candidates.length === 0) return null;
  const cover = new UnitCover(headers, candidates[candidates.length - 1]!);
  let best = cover.skipsUpTo(candidates[candidates.length - 1]!);
  if (best.bytes > maxBytes) {
    // The largest candidate that fits, by bisection (what a unit sends grows with its
    // end but for the records a later one covers, so a fitting end found is kept, and
    // the search goes on above it; a later end that would fit may be missed, which only
    // coalesces less).
    let lo = 0;
    let hi = candidates.length - 2;
    let found: { last: number; skip: Set<number>; bytes: number } | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const t = cover.skipsUpTo(candidates[mid]!);
      if (t.bytes <= maxBytes) {
        found = t;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (!found) return null;
    best = found;
  }
  assert(best.bytes <= maxBytes && best.last > ends[0]!,
    () => `coalesce: a unit of ${best.bytes} bytes ending at record ${best.last} (bound ${maxBytes}, first barrier at ${ends[0]})`);
  return { from: headers[0]!.seq, until: headers[best.last]!.seq, skip: best.skip };
}

/**
 * Which records of a unit a later record covers whole, for units ending at any record
 * up to `upTo`: the ranges' ends, sorted and deduplicated, cut the volume into
 * elementary pieces, and a pass walks the records backwards marking the pieces each
 * covers, skipping the marked ones with a union-find "next unmarked piece" (so a pass
 * costs about one step per record and piece, not a sorted insert per record: a plan
 * over 65536 scattered writes took most of a second that way, on the event loop).
 */
class UnitCover {
  private readonly lo: Int32Array;
  private readonly hi: Int32Array;
  private readonly next: Int32Array;

  constructor(private readonly headers: readonly RecordHeader[], upTo: number) {
    const all = new Float64Array(2 * upTo);
    let n = 0;
    for (let i = 0; i < upTo; i++) {
      const r = headers[i]!;
      if (r.kind === RecordKind.Barrier || r.length === 0) continue;
      all[n++] = r.offset;
      all[n++] = r.offset + r.length;
    }
    const sorted = all.subarray(0, n).sort();
    let m = 0;
    for (let i = 0; i < n; i++) if (i === 0 || sorted[i] !== sorted[m - 1]) sorted[m++] = sorted[i]!;
    const points = sorted.subarray(0, m);
    this.lo = new Int32Array(upTo);
    this.hi = new Int32Array(upTo);
    for (let i = 0; i < upTo; i++) {
      const r = headers[i]!;
      if (r.kind === RecordKind.Barrier || r.length === 0) continue;
      this.lo[i] = indexOf(points, r.offset);
      this.hi[i] = indexOf(points, r.offset + r.length);
    }
    this.next = new Int32Array(m + 1);
  }

  skipsUpTo(last: number): { last: number; skip: Set<number>; bytes: number } {
    const { headers, lo, hi, next } = this;
    for (let i = 0; i < next.length; i++) next[i] = i;
    const skip = new Set<number>();
    let bytes = RECORD_HEADER_SIZE;
    for (let i = last - 1; i >= 0; i--) {
      const r = headers[i]!;
      if (r.kind === RecordKind.Barrier || r.length === 0) {
        bytes += recordSize(r.kind, r.length);
        continue;
      }
      const end = hi[i]!;
      let at = this.find(lo[i]!);
      if (at >= end) {
        skip.add(r.seq);
        bytes += RECORD_HEADER_SIZE;
        continue;
      }
      bytes += recordSize(r.kind, r.length);
      while (at < end) {
        next[at] = at + 1;
        at = this.find(at + 1);
      }
    }
    return { last, skip, bytes };
  }

  /** The first unmarked piece at or after `i` (path halving). */
  private find(i: number): number {
    const next = this.next;
    while (next[i] !== i) {
      next[i] = next[next[i]!]!;
      i = next[i]!;
    }
    return i;
  }
}

function indexOf(sorted: Float64Array, v: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The batch's records with the plan's skipped ones as Skip records naming the unit's end. */
export function applyPlan(records: JournalRecord[], plan: UnitPlan | null): Coalesced {
  if (!plan) return { records, skipped: 0, skippedBytes: 0 };
  let skipped = 0;
  let skippedBytes = 0;
  const out = records.map((r) => {
    if (!plan.skip.has(r.seq)) return r;
    skipped++;
    skippedBytes += r.payload.length;
    return { kind: RecordKind.Skip, flags: 0, seq: r.seq, epoch: r.epoch, offset: plan.until, length: 0, time: r.time, payload: Buffer.alloc(0) };
  });
  return { records: skipped > 0 ? out : records, skipped, skippedBytes };
}

/** Coalesces one batch on its own (its last barrier ends the unit). */
export function coalesce(records: JournalRecord[]): Coalesced {
  const plan = planUnit(records);
  // (A batch that a resync record cuts short is left as it is.)
  if (plan && records.some((r) => (r.flags & (FLAG_RESYNC | FLAG_ROUND_END)) !== 0)) return { records, skipped: 0, skippedBytes: 0 };
  return applyPlan(records, plan);
}
