// Garbage collection under memory pressure. The budget bounds the batches and frames a
// daemon holds; once used, each is garbage, and its bytes (outside V8's heap, in
// Buffers) go back only when V8 next collects the objects holding them. With a small
// heap V8 collects seldom: through a burst on a hundred volumes, site-a's dead Buffers
// reached 250 MiB while 40 MiB were alive. So, ten times a second, if the memory held
// by Buffers (`external`) passes a threshold (the budget), a full collection is asked
// for, at most every 250 ms: up to a tenth of the event loop while a burst drains (a
// full collection holds it 15-37 ms at a secondary draining 4 KiB writes on the test
// machine, measured 2026-12-07 with --trace-gc), nothing while it is quiet.
import v8 from 'node:v8';
import vm from 'node:vm';
import { OLD_GENERATION_HEADROOM_BYTES, OLD_GENERATION_MAX_GROWTH_PERCENT, YOUNG_GENERATION_GROWTH } from '../limits/limits.js';

/** V8's collector, made callable without starting node with --expose-gc; null where that is refused. */
function collector(): (() => void) | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}

/**
 * Keeps V8's young generation at its first size. Under a steady stream of short-lived
 * objects (a drain's records, frames, acks) V8 doubles it up to 16 MiB semi-spaces:
 * 32 MiB more heap committed for a daemon whose live heap is about 20 MiB, and the
 * spent Buffers whose wrappers sit in it wait longer for the scavenge that frees them.
 * Growth factor 1 keeps the first size (1 MiB semi-spaces): scavenges come more often
 * and each costs little (what survives a drain's turn is little). V8 reads the factor
 * each time it would grow the space; it is set before anything else loads
 * (bin/offsite.js: loading the daemon's modules alone would have grown the space to
 * its most) and again at the daemon's start (a daemon started other than by bin/offsite.js).
 * Returns false where setting V8's flags is refused (the young generation then grows
 * as V8 likes: more memory, nothing wrong).
 */
export function boundYoungGeneration(): boolean {
  try {
    v8.setFlagsFromString(`--semi-space-growth-factor=${YOUNG_GENERATION_GROWTH}`);
    return true;
  } catch {
    return false;
  }
}

export interface PressureOptions {
  /** Collect when Buffers hold more than this (bytes). */
  thresholdBytes: number;
  /** At most one collection this often (ms). */
  minIntervalMs?: number;
  /** How often to look (ms). */
  everyMs?: number;
}

/** Starts looking; returns the stop, and how many collections it asked for. */
export function collectUnderPressure(o: PressureOptions): { stop(): void; readonly collections: number } {
  const gc = collector();
  let last = 0;
  let collections = 0;
  const timer = gc ? setInterval(() => {
    const now = Date.now();
    if (now - last < (o.minIntervalMs ?? 250)) return;
    if (process.memoryUsage().external <= o.thresholdBytes) return;
    last = now;
    collections++;
    gc();
  }, o.everyMs ?? 100) : null;
  timer?.unref();
  return {
    stop: () => timer && clearInterval(timer),
    get collections() { return collections; },
  };
}

/**
 * How far V8's old generation may grow past what is live before a full collection:
 * OLD_GENERATION_HEADROOM_BYTES, at most OLD_GENERATION_MAX_GROWTH_PERCENT more than
 * live. V8 sizes that room by its own measure of collection and allocation speeds: a
 * drain (records, frames, acks: many objects living tens of milliseconds, so promoted)
 * got about 9 MB over a 19 MB live heap, and a full collection every 45 ms at both
 * sites. The room is set through V8's heap growing percent, which it reads each time
 * it sets its limit after a collection. What is live is taken as the least heap used in
 * the last LIVE_SAMPLES seconds (the low point after a collection), so a daemon whose
 * live heap is larger gets a smaller percent and the same room in bytes, and one whose
 * live heap is as large as the room (a hundred volumes) V8's own: RSS grows by at most
 * the headroom. Returns the stop; null where V8's flags cannot be set (V8 then sizes the
 * room itself: slower, nothing wrong).
 */
/**
 * V8's heap growing percent for this live heap (bytes): OLD_GENERATION_HEADROOM_BYTES of
 * room, at most OLD_GENERATION_MAX_GROWTH_PERCENT; 0 (V8 sizes the room itself) once
 * what is live is as large as that room: V8's own factor (up to 4x) was never the
 * problem there, and a smaller one would only collect more often.
 */
export function oldGenerationPercent(liveBytes: number): number {
  if (liveBytes >= OLD_GENERATION_HEADROOM_BYTES) return 0;
  return Math.min(OLD_GENERATION_MAX_GROWTH_PERCENT, Math.floor((100 * OLD_GENERATION_HEADROOM_BYTES) / Math.max(1, liveBytes)));
}

export function boundOldGeneration(): { stop(): void } | null {
  const LIVE_SAMPLES = 10;
  const used: number[] = [];
  let percent = -1;
  const set = (p: number): boolean => {
    try {
      v8.setFlagsFromString(`--heap-growing-percent=${p}`);
      percent = p;
      return true;
    } catch {
      return false;
    }
  };
  const look = (): void => {
    used.push(v8.getHeapStatistics().used_heap_size);
    if (used.length > LIVE_SAMPLES) used.shift();
    // (Set each time: a worker's start puts V8's flags back to their defaults.)
    set(oldGenerationPercent(Math.min(...used)));
  };
  look();
  if (percent < 0) return null;
  const timer = setInterval(look, 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
