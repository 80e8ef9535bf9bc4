// Buffers of one size, reused: a hot path that reads into a buffer, uses it and is done
// with it (an apply's reads of the receive log, the history's saved bytes) takes one and
// gives it back, so gigabytes of it allocate nothing and no collector runs for them
// (docs/BENCHMARKS.md bench:history: the collector was a third of the apply's time).
// Bounded: at most `keep` idle buffers stay; more are made while more are taken at
// once (the node's memory budget bounds that) and let go when given back.
import { assert } from '../invariants/assert.js';

export class BufferPool {
  private readonly idle: Buffer[] = [];
  /** Taken and not yet given back (a figure for tests). */
  out = 0;

  constructor(readonly size: number, private readonly keep: number) {
    assert(size > 0 && keep >= 0, () => `a buffer pool of ${keep} buffers of ${size} bytes`);
  }

  take(): Buffer {
    this.out++;
    // (Its own memory, not a slice of Node's shared pool: kept, it keeps nothing else alive.)
    return this.idle.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(b: Buffer): void {
    assert(b.length === this.size && this.out > 0 && !this.idle.includes(b),
      () => `a buffer of ${b.length} bytes given back to a pool of ${this.size} twice, or never taken`);
    this.out--;
    if (this.idle.length < this.keep) this.idle.push(b);
  }
}

const pools = new Map<number, BufferPool>();

/** The node's pool of buffers of `size` bytes (one per size asked for; each keeps at most `keep` idle). */
export function bufferPool(size: number, keep: number): BufferPool {
  let p = pools.get(size);
  if (!p) pools.set(size, (p = new BufferPool(size, keep)));
  return p;
}
