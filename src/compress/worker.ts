// A zstd worker: compression and decompression off the event loop. One job at a
// time, in order. Every frame it makes carries zstd's content checksum (4 bytes;
// codec 2 requires it). A frame it unpacks must be one zstd frame of exactly the
// declared size (codec.ts unzstdExact), and the buffer it returns moves back to the
// caller rather than being copied.
import { parentPort } from 'node:worker_threads';
import { compress } from 'zstd-napi';
import { unzstdExact } from './codec.js';

interface Job { id: number; op?: 'compress' | 'unzstd'; data: Uint8Array; level: number; size: number }

parentPort!.on('message', (job: Job) => {
  try {
    if (job.op === 'unzstd') {
      const out = unzstdExact(job.data, job.size);
      parentPort!.postMessage({ id: job.id, out }, [out.buffer as ArrayBuffer]);
      return;
    }
    const out = compress(job.data, { compressionLevel: job.level, checksumFlag: true });
    // (Moved, not copied, when it owns its memory: a copy left each batch's output
    // behind in this thread until its garbage collector ran, which an idle worker seldom does.)
    const own = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength;
    parentPort!.postMessage({ id: job.id, out }, own ? [out.buffer as ArrayBuffer] : []);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
