// Region hashes of a replica, for a first sync by checksum and the online verify:
// the primary compares them with its own and sends only the regions that differ.
import { createHash } from 'node:crypto';
import type { Disk } from '../journal/disk.js';

/**
 * SHA-256 of `count` regions of `volume` from region `first`, as it holds them now;
 * null once `wanted()` says the asker is gone. Regions past the end of the volume (a
 * peer asking beyond it) hash as empty.
 */
export async function hashRegions(volume: Disk, regionSize: number, first: number, count: number, wanted: () => boolean): Promise<Buffer[] | null> {
  const out: Buffer[] = [];
  const offset = first * regionSize;
  const length = Math.max(0, Math.min(count * regionSize, volume.size - offset));
  const buf = Buffer.allocUnsafe(Math.max(regionSize, Math.min(length, 4 << 20)));
  for (let at = 0; at < length; at += buf.length) {
    if (!wanted()) return null;
    const n = Math.min(buf.length, length - at);
    await volume.read(offset + at, buf, 0, n);
    for (let k = 0; k < n; k += regionSize) out.push(createHash('sha256').update(buf.subarray(k, Math.min(n, k + regionSize))).digest());
  }
  while (out.length < count) out.push(createHash('sha256').digest());
  return out;
}
