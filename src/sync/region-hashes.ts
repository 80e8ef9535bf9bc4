// Region hashes of a disk (docs/RESYNC.md): the first sync's comparison by checksum
// and the online verify hash regions on both sides, and the primary sends only the
// regions that differ. SHA-256 of each region as the disk holds it now. A region
// wholly inside a hole of the disk's allocation map reads as zeros: it is not read,
// its hash is that of zeros (a sparse volume costs its data, not its size).
import { createHash } from 'node:crypto';
import type { Extent } from '../export/backend.js';

/** What hashing needs of a disk: reads and its allocation map. */
export interface HashedDisk {
  readonly size: number;
  read(offset: number, into: Buffer, at: number, length: number): Promise<void>;
  extents(offset: number, length: number, max: number): Promise<Extent[]>;
}

/** Bytes read at once while hashing (several regions a read). */
export const HASH_READ_BYTES = 4 << 20;
/** Extents asked of the allocation map per span; a map cut short reads the rest. */
export const HASH_MAP_EXTENTS = 4096;

const zeroHashes = new Map<number, Buffer>();

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

/**
 * Which of the `count` regions from `offset` lie wholly inside holes of `map` (the
 * allocation map of the range from `offset`, in order; what it does not reach is data).
 */
export function holeRegions(map: readonly Extent[], offset: number, regionSize: number, count: number, size: number): boolean[] {
  const out = new Array<boolean>(count).fill(false);
  let at = offset;
  for (const e of map) {
    if (e.hole) {
      // Regions [ceil(at), floor(end)) are inside; the volume's last region may end short.
      const end = at + e.length;
      const from = Math.ceil((at - offset) / regionSize);
      for (let i = from; i < count; i++) {
        const rEnd = Math.min(offset + (i + 1) * regionSize, size);
        if (rEnd > end) break;
        out[i] = true;
      }
    }
    at += e.length;
  }
  return out;
}

/**
 * SHA-256 of `count` regions of `disk` from region `first`, as it holds them now;
 * null once `wanted()` says the asker is gone. Regions past the end of the disk (a
 * peer asking beyond it) hash as empty.
 */
export async function hashRegions(
  disk: HashedDisk,
  regionSize: number,
  first: number,
  count: number,
  wanted: () => boolean = () => true,
): Promise<Buffer[] | null> {
  const offset = first * regionSize;
  const length = Math.max(0, Math.min(count * regionSize, disk.size - offset));
  const inside = Math.ceil(length / regionSize);
  const holes = inside > 0 ? holeRegions(await disk.extents(offset, length, HASH_MAP_EXTENTS), offset, regionSize, inside, disk.size) : [];
  const out: Buffer[] = [];
  const perRead = Math.max(1, Math.floor(HASH_READ_BYTES / regionSize));
  let buf: Buffer | null = null;
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
    buf ??= Buffer.allocUnsafe(Math.min(perRead * regionSize, Math.max(regionSize, length)));
    await disk.read(offset + at, buf, 0, bytes);
    for (let k = 0; k < bytes; k += regionSize) out.push(createHash('sha256').update(buf.subarray(k, Math.min(bytes, k + regionSize))).digest());
    i += n;
  }
  while (out.length < count) out.push(createHash('sha256').digest());
  return out;
}

/**
 * The holes of an allocation map from `offset` (as `extents` returns it), at most
 * `maxHoles`: in order and apart, with how far the map they come from reaches (a
 * map cut short, or the last hole that fits, ends it).
 */
export function holesOf(map: readonly Extent[], offset: number, maxHoles: number): { covered: number; holes: Array<{ offset: number; length: number }> } {
  const holes: Array<{ offset: number; length: number }> = [];
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
