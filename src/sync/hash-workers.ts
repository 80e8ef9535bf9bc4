// The node's hashing workers: a first sync's comparison and an online verify hash
// each read of a disk (up to HASH_READ_BYTES) on a worker thread, so the event loop
// keeps serving hosts and links meanwhile, and the next read overlaps this hash. The
// bytes stay in the node's hashing buffer (shared memory: HashBuffers makes them so),
// and only the digests travel back.
//
// At most HASH_WORKERS workers, started when a hash waits and none is free; one idle
// for HASH_WORKER_IDLE_MS stops (each is a V8 isolate of about 25 MiB, which a node
// not syncing need not hold). A worker that dies fails the hash it held (its asker
// reads and hashes again, or gives the attempt up, as after a failed read) and is
// replaced by the next hash. A buffer not in shared memory is hashed where it is.
import { Worker } from 'node:worker_threads';
import { boundYoungGeneration } from '../memory/collector.js';
import { HASH_WORKERS, HASH_WORKER_IDLE_MS } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';
import type { RegionHash } from './region-hash.js';

interface Job {
  id: number;
  algorithm: RegionHash;
  data: Buffer;
  regionSize: number;
  resolve: (hashes: Buffer[]) => void;
  reject: (e: Error) => void;
}
interface Slot { worker: Worker; job: Job | null; idleSince: number }

export class HashWorkers {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  /** Workers started so far, and that died (figures for tests). */
  started = 0;
  deaths = 0;

  constructor(readonly size = HASH_WORKERS, private readonly idleMs = HASH_WORKER_IDLE_MS) {
    this.timer = setInterval(() => this.retireIdle(), Math.max(100, Math.min(1000, idleMs)));
    this.timer.unref();
  }

  /** Workers running now. */
  get workers(): number {
    return this.slots.length;
  }

  /**
   * The hashes of `data` cut into regions of `regionSize` (the last may be short).
   * `data` is a view of shared memory that its caller neither changes nor gives back
   * until this settles.
   */
  hash(algorithm: RegionHash, data: Buffer, regionSize: number): Promise<Buffer[]> {
    assert(data.buffer instanceof SharedArrayBuffer, 'a hashing worker reads shared memory only');
    if (this.closed) return Promise.reject(new Error('hashing workers closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, algorithm, data, regionSize, resolve, reject });
      this.dispatch();
    });
  }

  /** Stops workers idle for longer than idleMs (at `now`). */
  retireIdle(now = Date.now()): void {
    for (const slot of [...this.slots]) {
      if (slot.job || now - slot.idleSince < this.idleMs) continue;
      this.slots.splice(this.slots.indexOf(slot), 1);
      void slot.worker.terminate();
    }
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    this.started++;
    worker.unref();
    worker.once('online', () => boundYoungGeneration());
    const slot: Slot = { worker, job: null, idleSince: Date.now() };
    worker.on('message', (m: { id: number; out?: Uint8Array; error?: string }) => {
      const job = slot.job;
      if (!job || job.id !== m.id) return;
      slot.job = null;
      slot.idleSince = Date.now();
      if (m.out) {
        const n = Math.ceil(job.data.length / job.regionSize);
        assert(m.out.byteLength === n * 32, () => `a hashing worker answered ${m.out!.byteLength} bytes for ${n} regions`);
        const all = Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength);
        job.resolve(Array.from({ length: n }, (_, i) => all.subarray(i * 32, (i + 1) * 32)));
      } else job.reject(new Error(`hashing: ${m.error ?? 'failed'}`));
      this.dispatch();
    });
    worker.on('error', () => undefined); // 'exit' follows
    worker.on('exit', (code) => {
      const at = this.slots.indexOf(slot);
      if (at >= 0) this.slots.splice(at, 1);
      const job = slot.job;
      slot.job = null;
      if (job) job.reject(new Error(`a hashing worker stopped (exit code ${code})`));
      if (at >= 0 && !this.closed) this.deaths++;
      this.dispatch();
    });
    return slot;
  }

  private dispatch(): void {
    if (this.closed) return;
    const free = this.slots.filter((s) => !s.job).length;
    for (let more = Math.min(this.queue.length - free, this.size - this.slots.length); more > 0; more--) this.slots.push(this.spawn());
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.postMessage({ id: job.id, algorithm: job.algorithm, data: job.data, regionSize: job.regionSize });
    }
  }

  /** For tests: stops a worker the way a crash would. */
  async killWorker(i = 0): Promise<void> {
    await this.slots[i]?.worker.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const j of this.queue.splice(0)) j.reject(new Error('hashing workers closed'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }
}
