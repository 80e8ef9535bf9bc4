// A zstd worker: compression and decompression off the event loop. One job at a
// time, in order. Every frame it makes carries zstd's content checksum (4 bytes;
// codec 2 requires it). A frame it unpacks must be one zstd frame of exactly the
// declared size (codec.ts unzstdExact), and the buffer it returns moves back to the
// caller rather than being copied. A job whose buffers are the node's (`moved`: the
// batch to pack, the frame to unpack and the buffer it unpacks into) sends them back
// with its reply, done or not (src/memory/owned-buffers.ts).
import { parentPort } from 'node:worker_threads';
import { compress } from 'zstd-napi';
import { unzstdExact } from './codec.js';

interface Job { id: number; op?: 'compress' | 'unzstd'; data: Uint8Array; level: number; size: number; into?: Uint8Array; moved?: boolean }

parentPort!.on('message', (job: Job) => {
  // (The node's buffers go back as they came: `into` as the unpacked output, or beside an error.)
  const back = job.moved ? { back: job.data } : {};
  const carry = job.moved ? [job.data.buffer as ArrayBuffer] : [];
  try {
    if (job.op === 'unzstd') {
      const out = unzstdExact(job.data, job.size, job.into);
      parentPort!.postMessage({ id: job.id, out, ...back }, [...carry, out.buffer as ArrayBuffer]);
      return;
    }
    const out = compress(job.data, { compressionLevel: job.level, checksumFlag: true });
    // (Moved, not copied, when it owns its memory: a copy left each batch's output
    // behind in this thread until its garbage collector ran, which an idle worker seldom does.)
    const own = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength;
    parentPort!.postMessage({ id: job.id, out, ...back }, own ? [...carry, out.buffer as ArrayBuffer] : carry);
  } catch (e) {
    const into = job.into ? { into: job.into } : {};
    parentPort!.postMessage({ id: job.id, error: (e as Error).message, ...back, ...into }, job.into ? [...carry, job.into.buffer as ArrayBuffer] : carry);
  }
});
