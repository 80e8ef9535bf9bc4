// Large buffers the node owns and hands from one use to the next: a shipper's batch is
// read into one, framed in place and written to the socket from it, and the buffer comes
// back once the socket's write of it is done (or the frame is dropped unsent). A fresh
// 4 MiB buffer per batch costs an mmap, a thousand page faults and a munmap each time
// (glibc maps buffers this large: limits.ts MALLOC_MMAP_THRESHOLD_BYTES), and buffers
// the collector has not yet freed sit in the RSS (docs/BENCHMARKS.md, catch-up).
//
// Ownership is one handle per use: `take` makes a new `Owned`, and only it may give the
// memory back. A handle given back is no longer `live`, so a frame still queued behind
// a handle that was given back too early is caught where it would be written (the
// pacer asserts `live` before each write: invariant 12). A handle
// never given back (a socket torn down mid-frame) is only memory the collector frees.
// The zstd workers take buffers too (src/compress/pool.ts): a batch's records to pack, a
// frame to unpack and what it unpacks to move to the worker and back (`moveOut`,
// `movedBack`), and are given back here, rather than each job mapping fresh memory on
// both sides: those page faults were a tenth of a replicating pair's CPU for 4 KiB writes.
// Tests and the simulations set `poison`: a buffer given back is overwritten at once,
// so a view of it used later reads bytes no checksum accepts.
import { assert } from '../invariants/assert.js';
import { OWNED_BUFFER_CLASS_MIN_BYTES, OWNED_BUFFERS_KEPT_BYTES, HOST_BUFFERS_KEPT_BYTES } from '../limits/limits.js';

/** One use of a buffer from the pool: `bytes` is exactly the length asked for. */
export class Owned {
  private given = false;
  /** The memory is on another thread (a zstd worker's job), until movedBack. */
  private away = false;

  /** The lengths of `bytes` and the whole, kept: views of memory moved away read as empty. */
  private readonly length: number;
  private readonly size: number;

  /** @internal (made by OwnedBuffers.take) */
  constructor(private readonly pool: OwnedBuffers, private mine: Buffer, private all: Buffer) {
    this.length = mine.length;
    this.size = all.length;
  }

  /** The whole buffer of the pool `bytes` is the start of (its size class). */
  get whole(): Buffer {
    return this.all;
  }

  /** This use's bytes (not while they are away on another thread). */
  get bytes(): Buffer {
    assert(!this.away, () => `an owned buffer of ${this.length} bytes read while it is on another thread`);
    return this.mine;
  }

  /** Still this use's: not given back (a view of `bytes` may be read or written). */
  get live(): boolean {
    return !this.given && !this.away;
  }

  /**
   * The memory moves to another thread (a postMessage transfer list takes the returned
   * buffer): until movedBack no one here may touch it, and views of it made before
   * are empty from now on. Returns the view of `bytes` to post.
   */
  moveOut(): { view: Uint8Array; transfer: ArrayBuffer } {
    assert(!this.given && !this.away, 'an owned buffer moved while given back or away');
    this.away = true;
    return { view: this.mine, transfer: this.whole.buffer as ArrayBuffer };
  }

  /** The memory came back from the thread it went to: `view` is the view moveOut gave, posted back. */
  movedBack(view: Uint8Array): void {
    assert(this.away, 'an owned buffer moved back that was not away');
    assert(view.byteOffset === 0 && view.byteLength === this.length && view.buffer.byteLength === this.size,
      () => `an owned buffer of ${this.length} bytes came back as ${view.byteLength} of ${view.buffer.byteLength}`);
    this.all = Buffer.from(view.buffer);
    this.mine = this.all.subarray(0, view.byteLength);
    this.away = false;
  }

  /** This use is over: the memory goes back to the pool (none, if it never came back from another thread). Once only. */
  give(): void {
    assert(!this.given, () => `an owned buffer of ${this.length} bytes given back twice`);
    this.given = true;
    if (this.away) this.pool.lost();
    else this.pool.back(this.whole);
  }
}

/** A byte fill that is no record's, header's or frame's (a use after give reads it). */
const POISON = 0xdb;

export class OwnedBuffers {
  /** Idle buffers, in the order they came back (the oldest first). */
  private readonly idle: Buffer[] = [];
  private idleBytes = 0;
  /** Handles taken and not given back (a figure for tests; a handle dropped unreturned stays counted). */
  out = 0;
  /** Buffers made, and takes served from the idle ones (figures for tests and benchmarks). */
  made = 0;
  reused = 0;
  /** Tests and simulations: fill what is given back, so a use after give shows. */
  static poison = false;

  /**
   * Bytes the node's memory budget has free now (src/memory/budget.ts): idle buffers are
   * kept within it too, so what the pool keeps and what the budget's leases hold (whose
   * bytes are mostly buffers out of this pool) stay within the budget together.
   */
  private budgetFree: () => number = () => Infinity;

  /** `keepBytes`: most idle bytes kept (the rest are let go to the collector). */
  constructor(private readonly keepBytes: number) {}

  /** Idle buffers from now on also stay within what `free` says the node's budget has free. */
  keepWithin(free: () => number): void {
    this.budgetFree = free;
  }

  /** The size of buffer a take of `length` gets: 1/8 steps between powers of two, so few sizes recur. */
  static classOf(length: number): number {
    if (length <= OWNED_BUFFER_CLASS_MIN_BYTES) return OWNED_BUFFER_CLASS_MIN_BYTES;
    const step = 2 ** (Math.floor(Math.log2(length - 1)) - 3);
    return Math.ceil(length / step) * step;
  }

  take(length: number): Owned {
    assert(Number.isSafeInteger(length) && length > 0, () => `an owned buffer of ${length} bytes`);
    const size = OwnedBuffers.classOf(length);
    assert(size >= length, () => `class ${size} for ${length} bytes`);
    // The smallest idle buffer that holds it, up to twice its class: batches of one and of
    // two large records (4 and 8 MiB) then share their buffers rather than each size
    // waiting for its own and the other's going to the collector.
    let best = -1;
    for (let i = 0; i < this.idle.length; i++) {
      const n = this.idle[i]!.length;
      if (n >= size && n <= 2 * size && (best < 0 || n < this.idle[best]!.length)) best = i;
    }
    let whole = best < 0 ? undefined : this.idle.splice(best, 1)[0];
    if (whole) {
      this.idleBytes -= whole.length;
      this.reused++;
    } else {
      // (A take that makes a buffer is where the budget's leases may have grown since the
      // last give: the idle ones are held to what it has free now, the longest idle first.)
      this.trim(Math.min(this.keepBytes, Math.max(0, this.budgetFree() - size)));
      // (Its own memory, never a slice of Node's shared pool.)
      whole = Buffer.allocUnsafeSlow(size);
      this.made++;
    }
    this.out++;
    return new Owned(this, whole.subarray(0, length), whole);
  }

  /** @internal (Owned.give) */
  back(whole: Buffer): void {
    assert(this.out > 0, 'an owned buffer given back to a pool with none out');
    this.out--;
    if (OwnedBuffers.poison) whole.fill(POISON);
    const keep = Math.min(this.keepBytes, Math.max(0, this.budgetFree()));
    assert(!this.idle.includes(whole), 'an owned buffer idle twice');
    // Kept newest first: over the bound, the buffers idle the longest go (the sizes the
    // batches have now are kept, not those of a while ago).
    if (whole.length <= keep) {
      this.idle.push(whole);
      this.idleBytes += whole.length;
    }
    this.trim(keep);
  }

  /** Lets the buffers idle longest go until at most `keep` bytes are idle. */
  private trim(keep: number): void {
    while (this.idleBytes > keep) this.idleBytes -= this.idle.shift()!.length;
  }

  /** @internal (Owned.give of one whose memory never came back from another thread: a worker died with it) */
  lost(): void {
    assert(this.out > 0, 'an owned buffer lost from a pool with none out');
    this.out--;
  }

  /** Idle bytes kept now. */
  get kept(): number {
    return this.idleBytes;
  }
}

/** The node's pool of frame buffers (a shipper's batch reads, in src/link/records-frame.ts). */
export const frameBuffers = new OwnedBuffers(OWNED_BUFFERS_KEPT_BYTES);

/**
 * Host buffers lent across a layer that passes plain Buffers (a SCSI read's data-in, from
 * the logical unit to the iSCSI transport that writes it): their handles, by memory. One
 * never reclaimed (a read that failed, a task aborted) goes with its buffer to the collector.
 */
const lent = new WeakMap<ArrayBufferLike, Owned>();

/** `o`'s bytes, to be reclaimed by whoever ends their use (reclaim). */
export function lend(o: Owned): Buffer {
  lent.set(o.bytes.buffer, o);
  return o.bytes;
}

/** The handle of a lent buffer (or a view of one), once: undefined for any other. */
export function reclaim(b: Buffer): Owned | undefined {
  const o = lent.get(b.buffer);
  if (o !== undefined) lent.delete(b.buffer);
  return o;
}

/** The node's pool of host I/O buffers: large NBD write payloads gathered from several socket reads, large read replies. */
export const hostBuffers = new OwnedBuffers(HOST_BUFFERS_KEPT_BYTES);
