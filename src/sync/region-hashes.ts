// Region hashes of a disk (docs/RESYNC.md): the first sync's comparison by checksum
// and the online verify hash regions on both sides, and the primary sends only the
// regions that differ. A 32-byte hash of each region as the disk holds it now: BLAKE3
// on a link at protocol version 4, SHA-256 on an older one (regionHashOf). A region
// wholly inside a hole of the disk's allocation map reads as zeros: it is not read,
// its hash is that of zeros (a sparse volume costs its data, not its size).
import { createHash } from 'node:crypto';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { regionHash, type RegionHash } from './region-hash.js';
import type { HashWorkers } from './hash-workers.js';
import type { Extent } from '../export/backend.js';
import { assert } from '../invariants/assert.js';
import { HASH_BUFFERS, HASH_READ_BYTES } from '../limits/limits.js';

/** What hashing needs of a disk: reads and its allocation map. */
export interface HashedDisk {
  readonly size: number;
  read(offset: number, into: Buffer, at: number, length: number): Promise<void>;
  extents(offset: number, length: number, max: number): Promise<Extent[]>;
}

/** Extents asked of the allocation map per span; a map cut short reads the rest. */
export const HASH_MAP_EXTENTS = 4096;

export { BLAKE3_SINCE_VERSION, regionHash, regionHashOf, type RegionHash } from './region-hash.js';

const zeroHashes = new Map<string, Buffer>();

/**
 * A node's hashing buffers (one per daemon, shared by every volume): at most
 * HASH_BUFFERS of HASH_READ_BYTES, made when first needed and reused (no allocation
 * per request); a hashing that finds none free waits for one, in turn. With the
 * node's hashing workers (hash-workers.ts) the buffers are shared memory, and what is
 * read into one is hashed on a worker, the event loop free meanwhile.
 */
export class HashBuffers {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(b: Buffer) => void> = [];
  /** Buffers made so far (at most HASH_BUFFERS). */
  made = 0;
  /** Hashes a worker failed, hashed on the event loop instead (a figure for tests). */
  hashedHere = 0;

  constructor(private readonly workers: HashWorkers | null = null) {}

  take(): Promise<Buffer> | Buffer {
    const b = this.free.pop();
    if (b) return b;
    if (this.made < HASH_BUFFERS) {
      this.made++;
      return this.workers ? Buffer.from(new SharedArrayBuffer(HASH_READ_BYTES)) : Buffer.allocUnsafe(HASH_READ_BYTES);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /**
   * The hashes of `data` (a view of one of these buffers, unchanged until this settles)
   * in regions of `regionSize`: on a worker, or here without one. A worker that fails
   * leaves the bytes as they were: they are hashed here.
   */
  hash(algorithm: RegionHash, data: Buffer, regionSize: number): Promise<Buffer[]> | Buffer[] {
    if (!this.workers || !(data.buffer instanceof SharedArrayBuffer)) return hashHere(algorithm, data, regionSize);
    return this.workers.hash(algorithm, data, regionSize).catch(() => {
      this.hashedHere++;
      return hashHere(algorithm, data, regionSize);
    });
  }

  give(b: Buffer): void {
    assert(b.length === HASH_READ_BYTES && this.free.length < this.made, 'a hashing buffer is given back once');
    const next = this.waiting.shift();
    if (next) next(b);
    else this.free.push(b);
  }
}

/** The hashes of `data` cut into regions of `regionSize` (the last may be short), on this thread. */
function hashHere(algorithm: RegionHash, data: Buffer, regionSize: number): Buffer[] {
  const out: Buffer[] = [];
  for (let k = 0; k < data.length; k += regionSize) out.push(regionHash(algorithm, data.subarray(k, Math.min(data.length, k + regionSize))));
  return out;
}

/** The hash of `length` zero bytes (kept per algorithm and length: a volume has one or two). */
export function zeroHash(algorithm: RegionHash, length: number): Buffer {
  const key = `${algorithm} ${length}`;
  let h = zeroHashes.get(key);
  if (!h) {
    const zeros = Buffer.alloc(Math.min(length, HASH_READ_BYTES));
    const parts = (update: (b: Buffer) => void): void => {
      for (let left = length; left > 0; left -= zeros.length) update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    };
    if (algorithm === 'blake3') {
      const hash = new Blake3Hasher();
      parts((b) => hash.update(b));
      h = hash.digestBuffer();
    } else {
      const hash = createHash('sha256');
      parts((b) => hash.update(b));
      h = hash.digest();
    }
    if (zeroHashes.size < 16) zeroHashes.set(key, h);
  }
  return h;
}

/** A byte range of a volume. */
export interface Span {
  offset: number;
  length: number;
}

/** What to ask the peer next: where its replica holds holes, or the hashes of some regions. */
/**
 * The regions wholly inside a hole of both maps (each a list of holes in order and
 * apart), as runs [first, end) of region numbers. The volume's last region may end
 * short at `size`.
 */
export function sharedHoleRegions(a: readonly Span[], b: readonly Span[], regionSize: number, size: number): Array<{ first: number; end: number }> {
  const runs: Array<{ first: number; end: number }> = [];
  const regions = Math.ceil(size / regionSize);
  for (let i = 0, j = 0; i < a.length && j < b.length;) {
    const lo = Math.max(a[i]!.offset, b[j]!.offset);
    const hi = Math.min(a[i]!.offset + a[i]!.length, b[j]!.offset + b[j]!.length);
    if (lo < hi) {
      const first = Math.ceil(lo / regionSize);
      const end = hi >= size ? regions : Math.floor(hi / regionSize);
      if (end > first) runs.push({ first, end });
    }
    if (a[i]!.offset + a[i]!.length <= b[j]!.offset + b[j]!.length) i++;
    else j++;
  }
  return runs;
}

/**
 * The hashes (`algorithm`) of `count` regions of `disk` from region `first`, as it holds them now;
 * null once `wanted()` says the asker is gone. Regions past the end of the disk (a
 * peer asking beyond it) hash as empty. Reads go into a buffer of the node's
 * `buffers` (absent: one made for this call).
 */
export async function hashRegions(
  algorithm: RegionHash,
  disk: HashedDisk,
  regionSize: number,
  first: number,
  count: number,
  wanted: () => boolean = () => true,
  buffers: HashBuffers | null = null,
  /** Counts the bytes read from the disk (holes are not read). */
  read: { bytes: number } | null = null,
): Promise<Buffer[] | null> {
  const offset = first * regionSize;
  const length = Math.max(0, Math.min(count * regionSize, disk.size - offset));
  const inside = Math.ceil(length / regionSize);
  const holes = new Array<boolean>(inside).fill(false);
  if (inside > 0) {
    const map = holesOf(await disk.extents(offset, length, HASH_MAP_EXTENTS), offset, Infinity);
    for (const run of sharedHoleRegions(map.holes, [{ offset, length }], regionSize, disk.size)) {
      for (let r = run.first; r < run.end; r++) holes[r - first] = true;
    }
  }
  const out: Buffer[] = [];
  assert(regionSize <= HASH_READ_BYTES, () => `a region of ${regionSize} bytes fits a hashing buffer`);
  const perRead = Math.max(1, Math.floor(HASH_READ_BYTES / regionSize));
  let buf: Buffer | null = null;
  try {
    for (let i = 0; i < inside;) {
      if (!wanted()) return null;
      if (holes[i]) {
        out.push(zeroHash(algorithm, Math.min(regionSize, length - i * regionSize)));
        i++;
        continue;
      }
      // A run of regions with data: one read.
      let n = 1;
      while (n < perRead && i + n < inside && !holes[i + n]) n++;
      const at = i * regionSize;
      const bytes = Math.min(n * regionSize, length - at);
      buf ??= buffers ? await buffers.take() : Buffer.allocUnsafe(HASH_READ_BYTES);
      await disk.read(offset + at, buf, 0, bytes);
      if (read) read.bytes += bytes;
      const hashed = buffers ? buffers.hash(algorithm, buf.subarray(0, bytes), regionSize) : hashHere(algorithm, buf.subarray(0, bytes), regionSize);
      for (const h of hashed instanceof Promise ? await hashed : hashed) out.push(h);
      i += n;
    }
  } finally {
    if (buf && buffers) buffers.give(buf);
  }
  while (out.length < count) out.push(zeroHash(algorithm, 0));
  return out;
}

/**
 * The holes of an allocation map from `offset` (as `extents` returns it), at most
 * `maxHoles`: in order and apart, with how far the map they come from reaches (a
 * map cut short, or the last hole that fits, ends it).
 */
export function holesOf(map: readonly Extent[], offset: number, maxHoles: number): { covered: number; holes: Span[] } {
  const holes: Span[] = [];
  let at = offset;
  for (const e of map) {
    if (e.hole) {
      if (holes.length === maxHoles) break;
      holes.push({ offset: at, length: e.length });
    }
    at += e.length;
  }
  return { covered: at - offset, holes };
}
