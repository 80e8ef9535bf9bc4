// Region hashes of a disk (docs/RESYNC.md): the first sync's comparison by checksum
// and the online verify hash regions on both sides, and the primary sends only the
// regions that differ. SHA-256 of each region as the disk holds it now. A region
// wholly inside a hole of the disk's allocation map reads as zeros: it is not read,
// its hash is that of zeros (a sparse volume costs its data, not its size).
import { createHash } from 'node:crypto';
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

const zeroHashes = new Map<number, Buffer>();

/**
 * A node's hashing buffers (one per daemon, shared by every volume): at most
 * HASH_BUFFERS of HASH_READ_BYTES, made when first needed and reused (no allocation
 * per request); a hashing that finds none free waits for one, in turn.
 */
export class HashBuffers {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(b: Buffer) => void> = [];
  /** Buffers made so far (at most HASH_BUFFERS). */
  made = 0;

  take(): Promise<Buffer> | Buffer {
    const b = this.free.pop();
    if (b) return b;
    if (this.made < HASH_BUFFERS) {
      this.made++;
      return Buffer.allocUnsafe(HASH_READ_BYTES);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  give(b: Buffer): void {
    assert(b.length === HASH_READ_BYTES && this.free.length < this.made, 'a hashing buffer is given back once');
    const next = this.waiting.shift();
    if (next) next(b);
    else this.free.push(b);
  }
}

/** SHA-256 of `length` zero bytes (kept per length: a volume has one or two). */
export function zeroHash(length: number): Buffer {
  let h = zeroHashes.get(length);
  if (!h) {
    const hash = createHash('sha256');
    const zeros = Buffer.alloc(Math.min(length, HASH_READ_BYTES));
    for (let left = length; left > 0; left -= zeros.length) hash.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    h = hash.digest();
    if (zeroHashes.size < 16) zeroHashes.set(length, h);
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
 * SHA-256 of `count` regions of `disk` from region `first`, as it holds them now;
 * null once `wanted()` says the asker is gone. Regions past the end of the disk (a
 * peer asking beyond it) hash as empty. Reads go into a buffer of the node's
 * `buffers` (absent: one made for this call).
 */
export async function hashRegions(
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
        out.push(zeroHash(Math.min(regionSize, length - i * regionSize)));
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
      for (let k = 0; k < bytes; k += regionSize) out.push(createHash('sha256').update(buf.subarray(k, Math.min(bytes, k + regionSize))).digest());
      i += n;
    }
  } finally {
    if (buf && buffers) buffers.give(buf);
  }
  while (out.length < count) out.push(createHash('sha256').digest());
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
