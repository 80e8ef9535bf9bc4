// How hard `compression: auto` compresses, as a small state machine fed once a
// second: the slower the link is relative to the CPU, the higher the level.
//
//   link busy (data waiting for the link) and workers mostly idle  -> one level up
//   workers busy (compression is the bottleneck)                   -> two levels down
//   link idle (it takes all we give it)                            -> back toward the start level
//     (from above: less CPU; from below, once the workers are calm: fewer bytes)
//
// Bounded to AUTO_MIN_LEVEL..AUTO_MAX_LEVEL: above 12, zstd spends several times the
// CPU for a few percent. Below the fastest level is raw (AUTO_RAW), for a link that
// takes more than this node can compress (a LAN, a second site in the same building),
// where packing a batch (copies, a worker, the peer's unpacking) costs more than the
// bytes it saves. Whether it does is measured, not guessed:
//
//   level 1, the workers busy over half the time and the link idle
//     (what bounds shipping is not the line), for AUTO_RAW_TRY_AFTER_SECONDS  -> try raw
//   try raw (AUTO_TRY_SECONDS): ships AUTO_RAW_GAIN x what level 1 did  -> raw
//                               else back to level 1, and the next try waits twice as long
//   raw, shipping, for AUTO_RAW_RECHECK_SECONDS                    -> try level 1
//   try level 1: raw shipped AUTO_RAW_GAIN x what it does          -> raw again
//                else compressing again
//
// "Shipped" is record bytes a second, before packing: what the peer gains. A tie keeps
// compressing (fewer bytes on the line), and so does a host that writes less than
// either ships. A thin line never goes raw: there the workers wait for the link.
import { AUTO_MAX_LEVEL, AUTO_MIN_LEVEL, AUTO_START_LEVEL } from './setting.js';
import { AUTO_RAW_GAIN, AUTO_RAW_RECHECK_SECONDS, AUTO_RAW_TRY_AFTER_SECONDS, AUTO_RAW_TRY_MAX_AFTER_SECONDS, AUTO_TRY_SECONDS } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

/** The level `auto` sends raw at (no zstd). */
export const AUTO_RAW = 0;

export interface LevelSample {
  /** Fraction of the last interval the link had data waiting for it (0..1). */
  linkBusy: number;
  /** Fraction of the compression workers' time spent compressing (0..1). */
  workersBusy: number;
  /** Record bytes the link's batches carried in the interval, before packing (what it shipped). */
  recordBytes?: number;
}

type Phase =
  | { kind: 'zstd' }
  | { kind: 'try-raw' | 'try-zstd'; seconds: number; bytes: number; against: number }
  | { kind: 'raw'; seconds: number; rate: number };

export class LevelController {
  level = AUTO_START_LEVEL;
  private linkBusy = 0;
  private workersBusy = 0;
  private phase: Phase = { kind: 'zstd' };
  /** Seconds in a row at the fastest level with the workers busy and the link idle, and what was shipped (smoothed). */
  private atFastest = { seconds: 0, rate: 0 };
  /** Seconds at the fastest level before the next try of raw. */
  private tryAfter = AUTO_RAW_TRY_AFTER_SECONDS;
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
    if (p.kind === 'zstd') this.followLink(bytes);
    else if (p.kind === 'raw') {
      p.seconds++;
      p.rate = 0.5 * p.rate + 0.5 * bytes;
      if (p.seconds >= AUTO_RAW_RECHECK_SECONDS && bytes > 0) this.start('try-zstd', p.rate);
    } else {
      // (The first second of a try still carries batches packed before it.)
      if (++p.seconds > 1) p.bytes += bytes;
      if (p.seconds >= AUTO_TRY_SECONDS) this.settle(p.kind, p.bytes / (p.seconds - 1), p.against);
    }
    const raw = this.phase.kind === 'raw' || this.phase.kind === 'try-raw';
    assert(raw ? this.level === AUTO_RAW : this.level >= AUTO_MIN_LEVEL && this.level <= AUTO_MAX_LEVEL,
      () => `auto level ${this.level} while ${this.phase.kind}`);
    return this.level;
  }

  /** Compressing: the level follows the link and the workers; long at the fastest level with the workers busy and the link idle, raw is tried. */
  private followLink(bytes: number): void {
    if (this.workersBusy > 0.75) this.level = Math.max(AUTO_MIN_LEVEL, this.level - 2);
    else if (this.linkBusy > 0.8 && this.workersBusy < 0.4) this.level = Math.min(AUTO_MAX_LEVEL, this.level + 1);
    else if (this.linkBusy < 0.2 && this.level > AUTO_START_LEVEL) this.level--;
    else if (this.linkBusy < 0.2 && this.workersBusy < 0.3 && this.level < AUTO_START_LEVEL) this.level++;
    if (this.level !== AUTO_MIN_LEVEL || this.workersBusy <= 0.5 || this.linkBusy >= 0.2) {
      this.atFastest = { seconds: 0, rate: 0 };
      return;
    }
    const a = this.atFastest;
    a.rate = a.seconds === 0 ? bytes : 0.5 * a.rate + 0.5 * bytes;
    if (++a.seconds >= this.tryAfter && a.rate > 0) this.start('try-raw', a.rate);
  }

  private start(kind: 'try-raw' | 'try-zstd', against: number): void {
    this.phase = { kind, seconds: 0, bytes: 0, against };
    this.level = kind === 'try-raw' ? AUTO_RAW : AUTO_MIN_LEVEL;
  }

  /** A try ended having shipped `rate` against the other way's `against`. */
  private settle(kind: 'try-raw' | 'try-zstd', rate: number, against: number): void {
    const raw = kind === 'try-raw' ? rate : against;
    const zstd = kind === 'try-raw' ? against : rate;
    if (raw > zstd * AUTO_RAW_GAIN) {
      if (kind === 'try-raw') this.changed = { raw: true, rawRate: raw, zstdRate: zstd };
      this.phase = { kind: 'raw', seconds: 0, rate: raw };
      this.level = AUTO_RAW;
      this.tryAfter = AUTO_RAW_TRY_AFTER_SECONDS;
      return;
    }
    if (kind === 'try-zstd') this.changed = { raw: false, rawRate: raw, zstdRate: zstd };
    this.phase = { kind: 'zstd' };
    this.level = AUTO_MIN_LEVEL;
    this.atFastest = { seconds: 0, rate: 0 };
    // (Raw lost a try it asked for: the next waits longer. Back from raw, tries start afresh.)
    this.tryAfter = kind === 'try-raw' ? Math.min(AUTO_RAW_TRY_MAX_AFTER_SECONDS, 2 * this.tryAfter) : AUTO_RAW_TRY_AFTER_SECONDS;
  }
}
