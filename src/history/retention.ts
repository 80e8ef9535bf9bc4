// What the secondary's history keeps (docs/HISTORY.md "Retention"): pure decisions,
// so the unit tests and the simulation reach them. Which restore points stay listed as
// they age (thinning), and which whole segments may go (age, size, pins).
import { HISTORY_POINTS_MAX } from '../limits/limits.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * The thinning schedule: a point of this age or more keeps at most one per bucket of
 * this width (the newest in it). Younger than an hour: every flush point.
 */
export const THINNING: ReadonlyArray<{ age: number; bucket: number }> = [
  { age: 7 * DAY, bucket: DAY },
  { age: DAY, bucket: HOUR },
  { age: HOUR, bucket: 10 * MINUTE },
];

export interface ListedPoint { seq: number; time: number }

/**
 * The points to keep listed at `now`, in order: the thinning schedule, every pinned
 * point, the oldest (where the window starts) and the newest; then, if more than
 * `max` remain, every other one of the oldest half until they fit (a burst of flushes).
 */
export function thinPoints<P extends ListedPoint>(points: readonly P[], now: number, pinned: ReadonlySet<number>, max = HISTORY_POINTS_MAX): P[] {
  const bucketOf = (p: P): string | null => {
    const age = now - p.time;
    for (const t of THINNING) if (age >= t.age) return `${t.bucket}:${Math.floor(p.time / t.bucket)}`;
    return null;
  };
  let kept: P[] = [];
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    const b = bucketOf(p);
    const next = points[i + 1];
    const last = i === 0 || i === points.length - 1;
    // The newest of its bucket: the next point falls in another bucket.
    if (last || b === null || pinned.has(p.seq) || next === undefined || bucketOf(next) !== b) kept.push(p);
  }
  while (kept.length > max) {
    const half = Math.floor(kept.length / 2);
    kept = kept.filter((p, i) => i >= half || i === 0 || i % 2 === 0 || pinned.has(p.seq));
    if (kept.length > max && kept.filter((p) => pinned.has(p.seq)).length >= max) break;
  }
  return kept;
}

/** A history segment as retention sees it. */
export interface SegmentView {
  /** Bytes on disk. */
  bytes: number;
  /** The time of the newest restore point whose marker it holds (null: none). */
  newestPointTime: number | null;
  /** It holds the marker of a point an open view or checkpoint pins. */
  pinned: boolean;
}

/**
 * How many of the oldest segments go now (never the newest, which is being written).
 * A point opens only while its marker's segment and every later one are kept, so a
 * segment's going takes the points marked in it and no other (docs/HISTORY.md). While
 * the history is over `maxBytes`, the oldest go whatever they hold (the operator's
 * limit wins over a pinned point, with a warning: `forSize` says how many went for
 * it); otherwise the oldest goes while every point it marks is older than `keepMs`
 * and none is pinned.
 */
export function segmentsToDrop(
  segments: readonly SegmentView[],
  opts: { maxBytes: number | null; keepMs: number | null; now: number },
): { count: number; forSize: number } {
  let total = segments.reduce((n, s) => n + s.bytes, 0);
  let count = 0;
  let forSize = 0;
  while (count < segments.length - 1) {
    const s = segments[count]!;
    if (opts.maxBytes !== null && total > opts.maxBytes) {
      forSize++;
    } else {
      if (opts.keepMs === null || s.pinned) break;
      if (s.newestPointTime !== null && s.newestPointTime >= opts.now - opts.keepMs) break;
    }
    total -= s.bytes;
    count++;
  }
  return { count, forSize };
}
