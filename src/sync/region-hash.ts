// The hash of a region (docs/PEER-PROTOCOL.md, "Region hashes"): the function a link
// agreed on by its protocol version, and the function itself. Its own file: the
// hashing workers (hash-worker.ts) load it without the rest of region-hashes.ts.
import { createHash } from 'node:crypto';
import { blake3 } from '@napi-rs/blake-hash';

/**
 * The hash of a region: BLAKE3 (unkeyed, 32 bytes) since protocol version 4, SHA-256
 * before. Both cryptographic: a host that writes data crafted to collide with what the
 * peer holds cannot make a first sync or a verify take different regions for equal.
 * BLAKE3 runs at about three times SHA-256's rate here (docs/BENCHMARKS.md).
 */
export type RegionHash = 'sha256' | 'blake3';

/** The protocol version from which a link hashes regions with BLAKE3 (docs/PEER-PROTOCOL.md). */
export const BLAKE3_SINCE_VERSION = 4;

/** The region hash of a link that agreed on protocol `version` (absent: 1). */
export function regionHashOf(version: number | undefined): RegionHash {
  return (version ?? 1) >= BLAKE3_SINCE_VERSION ? 'blake3' : 'sha256';
}

/** The 32-byte hash of `data`. */
export function regionHash(algorithm: RegionHash, data: Buffer): Buffer {
  return algorithm === 'blake3' ? blake3(data) : createHash('sha256').update(data).digest();
}
