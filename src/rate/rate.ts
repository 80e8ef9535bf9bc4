// Link rates as operators write them ("1mbit", "256kbit", "10MB/s") and the token
// bucket that holds a link to one. Pure: the caller passes the clock.

const RATE_UNITS: Record<string, number> = {
  bit: 1 / 8, kbit: 1000 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8,
  'b/s': 1, 'kb/s': 1e3, 'mb/s': 1e6, 'gb/s': 1e9, 'kib/s': 1024, 'mib/s': 1024 ** 2, 'gib/s': 1024 ** 3,
};

/** "1mbit" → 125000 bytes per second. Throws a readable message when it cannot. */
export function parseRate(input: string | number): number {
  if (typeof input === 'number') {
    if (!(input > 0)) throw new Error(`${input} is not a rate; write it like 1mbit, 256kbit or 10MB/s`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z/]+)\s*$/.exec(input);
  const unit = m ? RATE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) throw new Error(`"${input}" is not a rate; write it like 1mbit, 256kbit or 10MB/s`);
  return Number(m[1]) * unit;
}

export function formatRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  if (bits >= 1e9) return `${(bits / 1e9).toFixed(1)} Gbit/s`;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  return `${(bits / 1e3).toFixed(0)} kbit/s`;
}

/** A rate for part of the day: "08:00-18:00" (local time; may wrap past midnight). */
export interface RateWindow {
  at: string;
  rate: number;
}

/** "08:00-18:00" → minutes of the day [from, to); throws on anything else. */
export function parseWindow(at: string): [number, number] {
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$/.exec(at.trim());
  if (!m) throw new Error(`"${at}" is not a time window; write it like 08:00-18:00`);
  return [Number(m[1]) * 60 + Number(m[2]), Number(m[3]) * 60 + Number(m[4])];
}

/** The rate in force at `now`: the first window that contains it, else the base rate (null: unlimited). */
export function rateAt(base: number | null, windows: RateWindow[], now: number): number | null {
  const d = new Date(now);
  const minute = d.getHours() * 60 + d.getMinutes();
  for (const w of windows) {
    const [from, to] = parseWindow(w.at);
    const inside = from <= to ? minute >= from && minute < to : minute >= from || minute < to;
    if (inside) return w.rate;
  }
  return base;
}

/**
 * A token bucket: `rate` bytes per second, bursts up to `burst` bytes. take()
 * answers how long to wait before `bytes` may go (0: now), and charges them.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private rate: number, private burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  /** A new rate, kept from now on (a schedule switch or a reload). */
  setRate(rate: number, burst: number, now: number): void {
    this.refill(now);
    this.rate = rate;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }

  get bytesPerSecond(): number { return this.rate; }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Milliseconds until `bytes` may be sent; the bytes are charged now (the balance may go negative). */
  take(bytes: number, now: number): number {
    this.refill(now);
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rate) * 1000);
  }
}
