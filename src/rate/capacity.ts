// What a link can carry, as the sender sees it: the bytes its socket passed on per
// second over the seconds in which it was the bottleneck (data waited for it all
// second long; bytes still in node's socket buffer do not count, so a frame written
// whole into the socket counts as it drains). An idle or half-used link says nothing
// about its capacity, so the estimate holds until the link is busy again. A rate cap
// bounds it, and a new cap (or none) forgets what was measured under the old one. From it follow the batch size (a record
// frame takes at most about BATCH_SECONDS of the link, so acks, heartbeats, hash
// requests and Hold wait little behind one; shared by several volumes, about a second
// of a volume's share, so each gets a turn within about a second) and how much the
// socket may hold unsent.
import { MIN_SHARED_BATCH_BYTES, SHARE_BATCH_SECONDS } from '../limits/limits.js';

/**
 * Seconds of the link one batch of records may take. Shorter batches let control
 * frames pass sooner; longer ones cost less per record (a zstd frame and its tables
 * per batch: 4 KiB writes on a 1 Mbit/s line lost 0.2% of it at 2 s).
 */
export const BATCH_SECONDS = 4;
/** Smallest batch: below it per-frame costs (headers, zstd frames, acks) start to show. */
export const MIN_BATCH_BYTES = 64 * 1024;
/** Seconds of the link the socket's buffer may hold: control frames wait behind it. */
const SOCKET_SECONDS = 0.25;
const MIN_SOCKET_BYTES = 16 * 1024;
export const MAX_SOCKET_BYTES = 256 * 1024;
/** Weight of each busy second in the estimate. */
const SMOOTHING = 0.3;

export class LinkCapacity {
  /** Bytes per second (null: not measured busy yet). */
  private measured: number | null = null;
  private last: { at: number; total: number } | null = null;
  /** The cap the measurement was taken under. */
  private cap: number | null = null;

  /**
   * Once a second: the bytes the link's socket has passed on so far, the share of the
   * second that data waited for the link (0..1), and the cap now.
   */
  observe(now: number, passedBytes: number, busy: number, cap: number | null): void {
    const last = this.last;
    this.last = { at: now, total: passedBytes };
    if (cap !== this.cap) {
      // (This second ran under the old cap: it counts for neither.)
      this.cap = cap;
      this.measured = null;
      return;
    }
    if (!last || now <= last.at || busy < 1) return;
    const r = Math.max(0, passedBytes - last.total) / ((now - last.at) / 1000);
    this.measured = this.measured === null ? r : this.measured + SMOOTHING * (r - this.measured);
  }

  /** The estimate, bounded by the cap (bytes per second; null: unknown and uncapped). */
  estimate(cap: number | null): number | null {
    const m = this.measured === null || this.measured <= 0 ? null : this.measured;
    if (cap === null) return m;
    return m === null ? cap : Math.min(cap, m);
  }
}

/**
 * The batch for a link of `capacity` bytes per second (null: unknown, the most), of
 * which this volume's `share` (0..1, scheduler.ts's shareOf) is its own while others
 * want the link too: then about SHARE_BATCH_SECONDS of that share, so each of the
 * volumes gets a turn within about that long (a frame goes whole: the batch is the
 * grain of the sharing), never under MIN_SHARED_BATCH_BYTES nor over the batch of
 * a volume alone on the link.
 */
export function batchFor(capacity: number | null, maxBatch: number, share = 1): number {
  if (capacity === null) return maxBatch;
  const alone = Math.max(Math.min(MIN_BATCH_BYTES, maxBatch), Math.min(maxBatch, Math.floor(capacity * BATCH_SECONDS)));
  if (!(share < 1)) return alone;
  return Math.min(alone, Math.max(MIN_SHARED_BATCH_BYTES, Math.floor(capacity * share * SHARE_BATCH_SECONDS)));
}

/** Most bytes the socket may hold unsent on a link of `capacity` bytes per second. */
export function socketAllowance(capacity: number | null): number {
  if (capacity === null) return MAX_SOCKET_BYTES;
  return Math.max(MIN_SOCKET_BYTES, Math.min(MAX_SOCKET_BYTES, Math.floor(capacity * SOCKET_SECONDS)));
}
