// Bytes received but not yet parsed. Chunks are kept as they arrived; `take`
// returns a view when the bytes lie in one chunk and copies only when they span several.

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // offset into chunks[0]
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /** Whether the next n bytes lie in one chunk (take returns a view of it, no copy). */
  inOneChunk(n: number): boolean {
    return n === 0 || (this.chunks.length > 0 && this.chunks[0]!.length - this.head >= n);
  }

  /**
   * Removes and returns exactly n bytes; the caller has checked `length >= n`. A view when
   * they lie in one chunk; else copied into `into` (exactly n bytes), or a new buffer.
   */
  take(n: number, into?: Buffer): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.head += n;
      this.length -= n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      return out;
    }
    if (into && into.length !== n) throw new RangeError(`${n} bytes taken into a buffer of ${into.length}`);
    const out = into ?? Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.head, n - filled);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.head += k;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.length -= n;
    return out;
  }

  /** Drops up to n bytes; returns how many were dropped. */
  skip(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.head, n - dropped);
      dropped += k;
      this.head += k;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.length -= dropped;
    return dropped;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }
}

const EMPTY = Buffer.alloc(0);
