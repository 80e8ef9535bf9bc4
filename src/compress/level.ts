// How hard `compression: auto` compresses, as a small state machine fed once a
// second: the slower the link is relative to the CPU, the higher the level.
//
//   link busy (data waiting for the link) and workers mostly idle  -> one level up
//   workers busy (compression is the bottleneck)                   -> two levels down
//   link idle (it takes all we give it)                            -> back toward the start level
//     (from above: less CPU; from below, once the workers are calm: fewer bytes)
//
// Bounded to AUTO_MIN_LEVEL..AUTO_MAX_LEVEL: above 12, zstd spends several times the
// CPU for a few percent.
import { AUTO_MAX_LEVEL, AUTO_MIN_LEVEL, AUTO_START_LEVEL } from './setting.js';

export interface LevelSample {
  /** Fraction of the last interval the link had data waiting for it (0..1). */
  linkBusy: number;
  /** Fraction of the compression workers' time spent compressing (0..1). */
  workersBusy: number;
}

export class LevelController {
  level = AUTO_START_LEVEL;
  private linkBusy = 0;
  private workersBusy = 0;

  /** Feeds one interval's sample (smoothed); returns the level to use next. */
  observe(s: LevelSample): number {
    this.linkBusy = 0.5 * this.linkBusy + 0.5 * s.linkBusy;
    this.workersBusy = 0.5 * this.workersBusy + 0.5 * s.workersBusy;
    if (this.workersBusy > 0.75) this.level = Math.max(AUTO_MIN_LEVEL, this.level - 2);
    else if (this.linkBusy > 0.8 && this.workersBusy < 0.4) this.level = Math.min(AUTO_MAX_LEVEL, this.level + 1);
    else if (this.linkBusy < 0.2 && this.level > AUTO_START_LEVEL) this.level--;
    else if (this.linkBusy < 0.2 && this.workersBusy < 0.3 && this.level < AUTO_START_LEVEL) this.level++;
    return this.level;
  }
}
