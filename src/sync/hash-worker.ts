// A hashing worker (hash-workers.ts): the region hashes of one read of a disk, off the
// event loop. The bytes are the node's hashing buffer itself (shared memory, not
// copied); the digests, 32 bytes a region, move back.
import { parentPort } from 'node:worker_threads';
import { regionHash, type RegionHash } from './region-hash.js';

interface Job { id: number; algorithm: RegionHash; data: Uint8Array; regionSize: number }

parentPort!.on('message', (job: Job) => {
  try {
    const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
    const n = Math.ceil(data.length / job.regionSize);
    const out = new Uint8Array(n * 32);
    for (let i = 0; i < n; i++) out.set(regionHash(job.algorithm, data.subarray(i * job.regionSize, Math.min(data.length, (i + 1) * job.regionSize))), i * 32);
    parentPort!.postMessage({ id: job.id, out }, [out.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
