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
export function planUnit(headers: readonly RecordHeader[], maxBytes = Infinity, cutCost?: number): UnitPlan | null {
  // The barriers a unit may end at: a group member's only at group points (docs/GROUPS.md),
  // since the replica is brought to group points only and a unit ending past one would hold it back.
  const ends: number[] = [];
  const points: number[] = [];
  let stop = headers.length;
  for (let i = 0; i < headers.length; i++) {
    const r = headers[i]!;
    // A resync round's records and its end stay as they are (the round has its own unit).
    if ((r.flags & (FLAG_RESYNC | FLAG_ROUND_END)) !== 0 || r.kind === RecordKind.Skip) {
      stop = i;
      break;
    }
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
  if (cutCost !== undefined) {
    // Among the ends that fit, the one whose unit the records after it rewrite least.
    const fitting = candidates.filter((i) => i <= best.last);
    const cut = leastRewritten(headers, stop, fitting, cutCost);
    if (cut !== best.last) {
      const t = cover.skipsUpTo(cut);
      if (t.bytes <= maxBytes) best = t;
    }
  }
  assert(best.bytes <= maxBytes && best.last > ends[0]!,
    () => `coalesce: a unit of ${best.bytes} bytes ending at record ${best.last} (bound ${maxBytes}, first barrier at ${ends[0]})`);
  return { from: headers[0]!.seq, until: headers[best.last]!.seq, skip: best.skip };
}

/**
 * Where to end a unit, far behind: of the `ends` (barrier indexes, ascending, each a
 * unit that fits), the one that sends least in the long run. A byte the unit sends
 * that a record after its end writes again (within `upTo`, the headers read ahead:
 * beyond them nothing is known, so ends near there look better than they are)
 * travels twice; so does what follows the end in the batch that holds it (`cutCost`
 * bytes, about a batch: it goes as it is, coalesced with neither unit). An end is
 * judged by those bytes over the distinct bytes the unit sends, and the lowest wins
 * (the later of equals): a unit ends before a stretch of rewrites (a database's pages,
 * a filesystem's journal) rather than in its middle. Each elementary piece of the
 * volume the records touch has its first and last writer (found in a pass each way,
 * with a "next unmarked piece" union-find as UnitCover's); an end at `c` wastes the
 * pieces first written before `c` and written again after it.
 */
function leastRewritten(headers: readonly RecordHeader[], upTo: number, ends: readonly number[], cutCost: number): number {
  assert(ends.length > 0, () => 'coalesce: no end to choose from');
  // A piece is sent by the unit only if a write wrote it (a zeroing or a trim sends a
  // header, whatever its range: a large discard would make every end look alike), and
  // anything after the end writes it again, a zeroing too (had the unit reached it, the
  // write before would have been skipped).
  const pieces = piecesOf(headers, upTo);
  const m = pieces.points.length;
  const first = new Int32Array(m).fill(-1);
  const last = new Int32Array(m).fill(-1);
  for (const [from, step, to, mark, writesOnly] of [[0, 1, upTo, first, true], [upTo - 1, -1, -1, last, false]] as const) {
    const next = new Int32Array(m + 1);
    for (let i = 0; i < next.length; i++) next[i] = i;
    const find = (i: number): number => {
      while (next[i] !== i) {
        next[i] = next[next[i]!]!;
        i = next[i]!;
      }
      return i;
    };
    for (let i = from; i !== to; i += step) {
      if (pieces.hi[i] === pieces.lo[i] || (writesOnly && headers[i]!.kind !== RecordKind.Write)) continue;
      for (let at = find(pieces.lo[i]!); at < pieces.hi[i]!; at = find(at + 1)) {
        mark[at] = i;
        next[at] = at + 1;
      }
    }
  }
  // By record index: + a piece's bytes once it is in the unit, - once nothing after the end rewrites it.
  const distinct = new Float64Array(upTo + 1);
  const rewritten = new Float64Array(upTo + 1);
  for (let p = 0; p + 1 < m; p++) {
    const f = first[p]!;
    const l = last[p]!;
    if (f < 0) continue;
    const bytes = pieces.points[p + 1]! - pieces.points[p]!;
    distinct[f + 1] = distinct[f + 1]! + bytes;
    if (l > f) {
      rewritten[f + 1] = rewritten[f + 1]! + bytes;
      rewritten[l] = rewritten[l]! - bytes;
    }
  }
  let best = ends[ends.length - 1]!;
  let bestCost = Infinity;
  let d = 0;
  let w = 0;
  let e = 0;
  for (let c = 0; c <= ends[ends.length - 1]!; c++) {
    d += distinct[c]!;
    w += rewritten[c]!;
    if (c !== ends[e]) continue;
    e++;
    const cost = (w + cutCost) / (d + RECORD_HEADER_SIZE * (c + 1));
    if (cost <= bestCost) {
      bestCost = cost;
      best = c;
    }
  }
  return best;
}

/** The elementary pieces the ranges of headers[0, upTo) cut the volume into, and each record's first and end piece (lo = hi: none). */
function piecesOf(headers: readonly RecordHeader[], upTo: number): { points: Float64Array; lo: Int32Array; hi: Int32Array } {
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
  const lo = new Int32Array(upTo);
  const hi = new Int32Array(upTo);
  for (let i = 0; i < upTo; i++) {
    const r = headers[i]!;
    if (r.kind === RecordKind.Barrier || r.length === 0) continue;
    lo[i] = indexOf(points, r.offset);
    hi[i] = indexOf(points, r.offset + r.length);
  }
  return { points, lo, hi };
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
    const pieces = piecesOf(headers, upTo);
    this.lo = pieces.lo;
    this.hi = pieces.hi;
    this.next = new Int32Array(pieces.points.length + 1);
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
