// Requests per second per address, for API routes whose answer costs real work
// (the write history: up to 30 days of rows). Reads are open to anyone who reaches
// the port, and every millisecond the event loop spends on one is a millisecond
// NBD waits: four clients polling the history once raised 4 KiB read latency from
// 7 ms to 1.6 s. A token bucket per address: `burst` at once, then `perSecond`.

export interface AddressRateOptions {
  /** Requests a second one address may keep up. */
  perSecond: number;
  /** Requests one address may make at once, after a quiet spell. */
  burst: number;
  /**
   * Addresses tracked at once. Past this, buckets that are full again are dropped;
   * if none is, new addresses share one bucket ("other addresses"), so a flood from
   * many addresses costs no memory without end.
   */
  maxAddresses?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export const OTHER_ADDRESSES = 'other addresses';

export class AddressRateLimit {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(private readonly opts: AddressRateOptions) {
    this.maxAddresses = opts.maxAddresses ?? 4096;
    this.now = opts.now ?? Date.now;
  }

  /** Takes one request from `address`'s allowance; false: over the limit (answer 429). */
  take(address: string): boolean {
    const now = this.now();
    let b = this.buckets.get(address);
    if (!b) {
      if (this.buckets.size >= this.maxAddresses) this.sweep(now);
      const key = this.buckets.size >= this.maxAddresses ? OTHER_ADDRESSES : address;
      b = this.buckets.get(key);
      if (!b) this.buckets.set(key, (b = { tokens: this.opts.burst, at: now }));
    }
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.perSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Seconds until `address` may ask again (for Retry-After). */
  retryAfter(address: string): number {
    const b = this.buckets.get(address) ?? this.buckets.get(OTHER_ADDRESSES);
    if (!b) return 0;
    return Math.max(1, Math.ceil((1 - b.tokens) / this.opts.perSecond));
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.opts.perSecond >= this.opts.burst) this.buckets.delete(k);
    }
  }
}
