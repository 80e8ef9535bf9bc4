// How hard `compression: auto` compresses, as a small state machine fed once a
// second: the slower the link is relative to the CPU, the higher the level.
//
//   link busy (data waiting for the link) and workers mostly idle  -> one level up
//     (three with CPU to spare: AUTO_IDLE_WORKERS, the node calm)
//   workers busy (compression is the bottleneck)                   -> two levels down
//   link idle (it takes all we give it)                            -> back toward the start level
//     (from above: less CPU, unless there is CPU to spare, when the level is held for
//     the next burst; from below, once the workers are calm: fewer bytes)
//   link idle and the node busy (AUTO_RAW_CPU_CORES)               -> one level down, to 1
//
// Bounded to AUTO_MIN_LEVEL..AUTO_MAX_LEVEL: above 12, zstd spends several times the
// CPU for a few percent. Below the fastest level is raw (AUTO_RAW), for a line that
// takes more than this node packs (a LAN, a second site in the same building), where
// packing (a copy, a worker, the peer's unpacking, on the cores the host's writes
// share) slows shipping, and the host, for bytes nobody waits for. Whether it does is
// measured, not guessed:
//
//   at level 1, the link idle while shipping and the node using half a
//     core or more (AUTO_RAW_CPU_CORES), for `tryAfter` seconds          -> try raw
//   raw, the link busy for AUTO_RAW_TRY_AFTER_SECONDS,
//     or AUTO_RAW_RECHECK_SECONDS of shipping                           -> try level 1
//   a try (AUTO_TRY_SECONDS) ends: raw if raw shipped AUTO_RAW_GAIN x what compressing
//     did (and, trying raw, the link stayed idle), else compressing. Raw losing (its
//     try, or at a recheck) doubles `tryAfter` (AUTO_RAW_TRY_AFTER_SECONDS up to
//     AUTO_RAW_TRY_MAX_AFTER_SECONDS): a host whose bursts made raw look faster once
//     pays a try less and less often. Raw winning its try resets it; a recheck raw
//     wins leaves it.
//
// "Shipped" is record bytes a second, before packing: what the peer gains (with the
// pair keeping up, what the host wrote). A tie keeps compressing (fewer bytes on the
// line), so a host that writes less than either way ships stays compressed; a line
// that data waits for is never tried raw.
import { AUTO_MAX_LEVEL, AUTO_MIN_LEVEL, AUTO_START_LEVEL } from './setting.js';
import {
  AUTO_FAST_CLIMB_LEVELS, AUTO_IDLE_WORKERS, AUTO_RAW_CPU_CORES, AUTO_RAW_GAIN, AUTO_RAW_RECHECK_SECONDS, AUTO_RAW_TRY_AFTER_SECONDS,
  AUTO_RAW_TRY_MAX_AFTER_SECONDS, AUTO_TRY_SECONDS,
} from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

/** The level `auto` sends raw at (no zstd). */
export const AUTO_RAW = 0;

// (A try's first second is not counted: it needs one more to measure.)
assert(AUTO_TRY_SECONDS >= 2, () => `AUTO_TRY_SECONDS is ${AUTO_TRY_SECONDS}: a try needs 2 seconds or more`);

export interface LevelSample {
  /** Fraction of the last interval the link had data waiting for it (0..1). */
  linkBusy: number;
  /** Fraction of the compression workers' time spent compressing (0..1). */
  workersBusy: number;
  /** Record bytes the link's batches carried in the interval, before packing (what it shipped). */
  recordBytes?: number;
  /** Cores of CPU this node used in the interval, all its threads (process.cpuUsage): packing costs only where that is scarce. */
  cpuBusy?: number;
}

/** Compressing or raw: `rate` shipped a second (smoothed); `waited`: seconds in a row the other way might ship more; `seconds`: shipping, in the phase. */
interface Steady { kind: 'zstd' | 'raw'; rate: number; waited: number; seconds: number }
/** Trying the other way: its seconds so far, what it shipped after the first (and the link's busy fraction, summed), and the steady way's rate. */
interface Try { kind: 'try-raw' | 'try-zstd'; seconds: number; bytes: number; against: number; busy: number }
type Phase = Steady | Try;
const isTry = (p: Phase): p is Try => p.kind === 'try-raw' || p.kind === 'try-zstd';

export class LevelController {
  level = AUTO_START_LEVEL;
  private linkBusy = 0;
  private workersBusy = 0;
  private phase: Phase = { kind: 'zstd', rate: 0, waited: 0, seconds: 0 };
  /** Seconds compressing must look worse (the link idle while shipping) before raw is tried. */
  private tryAfter = AUTO_RAW_TRY_AFTER_SECONDS;
  /** The level compressing was at when raw was tried (it goes on there if raw loses). */
  private levelBefore = AUTO_START_LEVEL;
  /**
   * The last try that changed the way batches go (to raw, or back to zstd), with what
   * each way shipped (record bytes a second): for the log. Cleared by whoever says it.
   */
  changed: { raw: boolean; rawRate: number; zstdRate: number } | null = null;

  /** What the controller is doing, for status and tests. */
  get state(): Phase['kind'] {
    return this.phase.kind;
  }

  /** Feeds one interval's sample (smoothed); returns the level to use next (AUTO_RAW: none). */
  observe(s: LevelSample): number {
    this.linkBusy = 0.5 * this.linkBusy + 0.5 * s.linkBusy;
    this.workersBusy = 0.5 * this.workersBusy + 0.5 * s.workersBusy;
    const bytes = s.recordBytes ?? 0;
    assert(bytes >= 0, () => `an interval shipped ${bytes} record bytes`);
    const p = this.phase;
    if (isTry(p)) {
      // (The first second of a try still carries batches packed before it.)
      if (++p.seconds > 1) {
        p.bytes += bytes;
        p.busy += s.linkBusy;
      }
      if (p.seconds >= AUTO_TRY_SECONDS) this.settle(p.kind, p.bytes / (p.seconds - 1), p.against, p.busy / (p.seconds - 1));
    } else {
      p.rate = p.seconds === 0 ? bytes : 0.5 * p.rate + 0.5 * bytes;
      if (bytes > 0) p.seconds++;
      if (p.kind === 'zstd') {
        const cpuBusy = (s.cpuBusy ?? 0) >= AUTO_RAW_CPU_CORES;
        this.followLink(cpuBusy);
        // (Raw might ship more only from the fastest level, where the line is not what data
        // waits for and the node works hard: an idle line with a trickle and a calm CPU gains
        // nothing, and a thin line, whose moments of idling hold the level above 1, never tries.)
        p.waited = this.level === AUTO_MIN_LEVEL && this.linkBusy < 0.2 && bytes > 0 && cpuBusy ? p.waited + 1 : 0;
        if (p.waited >= this.tryAfter && p.rate > 0) this.start('try-raw', p.rate);
      } else {
        p.waited = this.linkBusy > 0.8 ? p.waited + 1 : 0;
        if (p.waited >= AUTO_RAW_TRY_AFTER_SECONDS || (p.seconds >= AUTO_RAW_RECHECK_SECONDS && bytes > 0)) this.start('try-zstd', p.rate);
      }
    }
    const raw = this.phase.kind === 'raw' || this.phase.kind === 'try-raw';
    assert(raw ? this.level === AUTO_RAW : this.level >= AUTO_MIN_LEVEL && this.level <= AUTO_MAX_LEVEL,
      () => `auto level ${this.level} while ${this.phase.kind}`);
    return this.level;
  }

  /** Compressing: the level follows the link, the workers and the node's CPU. */
  private followLink(cpuBusy: boolean): void {
    // (CPU to spare: a level more costs nothing anyone waits for.)
    const spare = !cpuBusy && this.workersBusy < AUTO_IDLE_WORKERS;
    if (this.workersBusy > 0.75) this.level = Math.max(AUTO_MIN_LEVEL, this.level - 2);
    else if (this.linkBusy > 0.8 && this.workersBusy < 0.4) this.level = Math.min(AUTO_MAX_LEVEL, this.level + (spare ? AUTO_FAST_CLIMB_LEVELS : 1));
    // (An idle link with the node working hard: the bytes are not needed, the CPU is.)
    else if (this.linkBusy < 0.2 && cpuBusy && this.level > AUTO_MIN_LEVEL) this.level--;
    // (From above, with CPU to spare: held for the next burst.)
    else if (this.linkBusy < 0.2 && this.level > AUTO_START_LEVEL && !spare) this.level--;
    else if (this.linkBusy < 0.2 && !cpuBusy && this.workersBusy < 0.3 && this.level < AUTO_START_LEVEL) this.level++;
  }

  private start(kind: 'try-raw' | 'try-zstd', against: number): void {
    if (kind === 'try-raw') this.levelBefore = this.level;
    this.phase = { kind, seconds: 0, bytes: 0, against, busy: 0 };
    this.level = kind === 'try-raw' ? AUTO_RAW : AUTO_MIN_LEVEL;
  }

  /** A try ended having shipped `rate` against the other way's `against`, the link busy `linkBusy` of the time (0..1). */
  private settle(kind: 'try-raw' | 'try-zstd', rate: number, against: number, linkBusy: number): void {
    const raw = kind === 'try-raw' ? rate : against;
    const zstd = kind === 'try-raw' ? against : rate;
    // (A try of raw that kept data waiting for the link found the line, not the packing,
    // to be the limit: raw loses it, whatever it shipped against a calmer time before.)
    const rawWins = raw > zstd * AUTO_RAW_GAIN && !(kind === 'try-raw' && linkBusy >= 0.2);
    const changed = rawWins === (kind === 'try-raw');
    if (!rawWins) this.tryAfter = Math.min(AUTO_RAW_TRY_MAX_AFTER_SECONDS, 2 * this.tryAfter);
    else if (kind === 'try-raw') this.tryAfter = AUTO_RAW_TRY_AFTER_SECONDS;
    if (changed) this.changed = { raw: rawWins, rawRate: raw, zstdRate: zstd };
    this.phase = { kind: rawWins ? 'raw' : 'zstd', rate: rawWins ? raw : zstd, waited: 0, seconds: 0 };
    this.level = rawWins ? AUTO_RAW : kind === 'try-raw' ? this.levelBefore : AUTO_MIN_LEVEL;
  }
}
