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
  let best = skipsUpTo(headers, candidates[candidates.length - 1]!);
  if (best.bytes > maxBytes) {
    // The largest candidate that fits, by bisection (what a unit sends grows with its
    // end but for the records a later one covers, so a fitting end found is kept, and
    // the search goes on above it).
    let lo = 0;
    let hi = candidates.length - 2;
    let found: { last: number; skip: Set<number>; bytes: number } | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const t = skipsUpTo(headers, candidates[mid]!);
      if (t.bytes <= maxBytes) {
        found = t;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (!found) return null;
    best = found;
  }
  return { from: headers[0]!.seq, until: headers[best.last]!.seq, skip: best.skip };
}

/** The records of the unit ending at `headers[last]` that a later one covers, and the bytes the unit sends. */
function skipsUpTo(headers: readonly RecordHeader[], last: number): { last: number; skip: Set<number>; bytes: number } {
  const covered = new Cover();
  const skip = new Set<number>();
  let bytes = RECORD_HEADER_SIZE;
  for (let i = last - 1; i >= 0; i--) {
    const r = headers[i]!;
    if (r.kind === RecordKind.Barrier || r.length === 0) {
      bytes += recordSize(r.kind, r.length);
      continue;
    }
    if (covered.covers(r.offset, r.offset + r.length)) {
      skip.add(r.seq);
      bytes += RECORD_HEADER_SIZE;
    } else {
      covered.add(r.offset, r.offset + r.length);
      bytes += recordSize(r.kind, r.length);
    }
  }
  return { last, skip, bytes };
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

/** Byte ranges [start, end) of the volume, merged and in order. */
export class Cover {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Index of the last range starting at or before `at` (-1: none). */
  private find(at: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= at) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  covers(start: number, end: number): boolean {
    const i = this.find(start);
    return i >= 0 && this.ends[i]! >= end;
  }

  add(start: number, end: number): void {
    let i = this.find(start);
    // Merge with the range before when it reaches `start`.
    if (i >= 0 && this.ends[i]! >= start) {
      start = this.starts[i]!;
      end = Math.max(end, this.ends[i]!);
    } else i++;
    // And with every range that starts within [start, end].
    let j = i;
    while (j < this.starts.length && this.starts[j]! <= end) {
      end = Math.max(end, this.ends[j]!);
      j++;
    }
    this.starts.splice(i, j - i, start);
    this.ends.splice(i, j - i, end);
  }

  get ranges(): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }
}
