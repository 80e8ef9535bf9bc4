// A rate from a growing counter, sampled now and then: bytes per second, smoothed
// over about `windowSeconds` (an exponentially weighted average), so a figure in
// status neither jumps with each batch nor lags by minutes.

export class RateMeter {
  private last: { at: number; total: number } | null = null;
  /** Bytes per second. */
  rate = 0;

  constructor(private readonly windowSeconds = 5) {}

  sample(now: number, total: number): void {
    if (this.last && now > this.last.at) {
      const dt = (now - this.last.at) / 1000;
      const r = Math.max(0, total - this.last.total) / dt;
      const a = 1 - Math.exp(-dt / this.windowSeconds);
      this.rate += a * (r - this.rate);
    }
    this.last = { at: now, total };
  }
}
