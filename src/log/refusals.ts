// Refusals said once, then counted. A listener that faces callers nobody vetted
// (the link port on the WAN, the API) refuses in floods, and a log line per refusal
// would bury everything else: the recent-events ring keeps only the last 1000, so
// 1200 bad-token calls used to push every earlier event out of the API and the
// dashboard in under a second. Instead, the first refusal of a kind from an address
// is logged at once, in full; the ones after it in the same window are counted and
// said in one line when the window ends ("refused 1187 more ... in the last minute").
// A flood that goes on gives one line per window, however fast it comes.
import type { Logger } from './log.js';

export interface Refusal {
  /** What was refused and why, the same for every address (e.g. "wrong token"). */
  kind: string;
  /** The address refused (counted apart from the others). */
  from: string;
  /** The line logged for the first refusal of this kind from this address in a window. */
  first: string;
  /** The window's summary: `n` refused after the first, from `from`, in `span` ("the last minute"). */
  more: (n: number, from: string, span: string) => string;
}

export interface RefusalLogOptions {
  log: Logger;
  /** How long repeats are counted before they are said (default a minute). */
  windowMs?: number;
  /**
   * Tallies kept at once, kinds and addresses together (default 256). Past this,
   * new addresses are counted together as "other addresses": a flood from many
   * addresses costs neither memory nor log lines without end.
   */
  maxAddresses?: number;
}

interface Tally {
  /** Refused since the line that was last logged for this kind and address. */
  count: number;
  /** The summary line for `count` refusals. */
  say: (n: number) => string;
  timer?: NodeJS.Timeout;
}

export const OTHER_ADDRESSES = 'other addresses';

export class RefusalLog {
  private readonly tallies = new Map<string, Tally>();
  private readonly windowMs: number;
  private readonly maxAddresses: number;

  constructor(private readonly opts: RefusalLogOptions) {
    this.windowMs = opts.windowMs ?? 60_000;
    this.maxAddresses = opts.maxAddresses ?? 256;
  }

  /** Logs `r.first` (warn) unless this kind from this address was logged in the current window; else counts it. */
  refuse(r: Refusal): void {
    let from = r.from;
    let key = `${r.kind}\u0000${from}`;
    if (!this.tallies.has(key) && this.tallies.size >= this.maxAddresses) {
      from = OTHER_ADDRESSES;
      key = `${r.kind}\u0000${from}`;
    }
    const t = this.tallies.get(key);
    if (t) {
      t.count++;
      return;
    }
    this.opts.log.warn(r.first);
    const tally: Tally = { count: 0, say: (n) => r.more(n, from, this.span()) };
    this.tallies.set(key, tally);
    this.arm(key, tally);
  }

  /** Stops counting (the listener closed); what was counted and not yet said is said now. */
  close(): void {
    for (const t of this.tallies.values()) {
      clearTimeout(t.timer);
      if (t.count > 0) this.opts.log.warn(t.say(t.count));
    }
    this.tallies.clear();
  }

  private arm(key: string, t: Tally): void {
    clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      if (t.count === 0) {
        // Quiet for a whole window: the next refusal is logged in full again.
        this.tallies.delete(key);
        return;
      }
      // Still refusing: say how many, and keep counting (one line per window while it lasts).
      const n = t.count;
      t.count = 0;
      this.arm(key, t);
      this.opts.log.warn(t.say(n));
    }, this.windowMs);
    t.timer.unref();
  }

  private span(): string {
    const ms = this.windowMs;
    if (ms === 60_000) return 'the last minute';
    if (ms % 60_000 === 0) return `the last ${ms / 60_000} minutes`;
    return `the last ${ms / 1000} s`;
  }
}
