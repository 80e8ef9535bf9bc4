// A compression worker: zstd off the event loop. One job at a time, in order. Every
// frame carries zstd's content checksum (4 bytes; codec 2 requires it).
import { parentPort } from 'node:worker_threads';
import { compress } from 'zstd-napi';

interface Job { id: number; data: Uint8Array; level: number }

parentPort!.on('message', (job: Job) => {
  try {
    const out = compress(job.data, { compressionLevel: job.level, checksumFlag: true });
    parentPort!.postMessage({ id: job.id, out });
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
