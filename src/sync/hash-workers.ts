// The node's hashing workers: a first sync's comparison and an online verify hash
// each read of a disk (up to HASH_READ_BYTES) on a worker thread, so the event loop
// keeps serving hosts and links meanwhile, and other requests' reads overlap this hash.
// The bytes stay in the node's hashing buffer (shared memory: HashBuffers makes them
// so), and only the digests travel back.
//
// At most HASH_WORKERS workers, started when a hash waits and none is free; one idle
// for HASH_WORKER_IDLE_MS stops (each is a V8 isolate of about 25 MiB, which a node
// not syncing need not hold). A worker that dies, or cannot start, fails the hashes it
// was given (HashBuffers then hashes those bytes on the event loop) and is replaced by
// the next hash; workers that keep dying (HASH_WORKER_DEATHS within 10 s) are not
// started again for HASH_WORKER_PAUSE_MS, said once in the log, and every hash is made
// on the event loop meanwhile. A buffer not in shared memory is hashed where it is.
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { boundYoungGeneration } from '../memory/collector.js';
import { HASH_WORKERS, HASH_WORKER_DEATHS, HASH_WORKER_IDLE_MS, HASH_WORKER_PAUSE_MS } from '../limits/limits.js';
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
  /** Workers started so far, and that died or could not start (figures for tests). */
  started = 0;
  deaths = 0;
  private recentDeaths: number[] = [];
  /** No worker starts before this time (workers that keep dying): hashes are refused, and made on the event loop. */
  private pausedUntil = 0;

  constructor(
    readonly size = HASH_WORKERS,
    private readonly idleMs = HASH_WORKER_IDLE_MS,
    /** Says what an operator should know (workers that keep dying), once each time they are paused. */
    private readonly warn: (message: string) => void = () => undefined,
  ) {
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
    if (performance.now() < this.pausedUntil) return Promise.reject(new Error('hashing workers paused: they kept dying'));
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
    let error = '';
    worker.on('error', (e: Error) => (error = e.message)); // 'exit' follows
    worker.on('exit', (code) => {
      const at = this.slots.indexOf(slot);
      if (at >= 0) this.slots.splice(at, 1);
      const job = slot.job;
      slot.job = null;
      if (job) job.reject(new Error(`a hashing worker stopped (exit code ${code}${error ? `: ${error}` : ''})`));
      if (at >= 0 && !this.closed) this.died(error || `exit code ${code}`);
      this.dispatch();
    });
    return slot;
  }

  /** A worker died or could not start: counted; too many of late pause the workers and fail what waits. */
  private died(why: string): void {
    this.deaths++;
    // (A monotonic clock: a wall clock set back would stretch the pause.)
    const now = performance.now();
    this.recentDeaths = this.recentDeaths.filter((t) => now - t < 10_000);
    this.recentDeaths.push(now);
    if (this.recentDeaths.length < HASH_WORKER_DEATHS) return;
    this.recentDeaths = [];
    this.pausedUntil = now + HASH_WORKER_PAUSE_MS;
    for (const j of this.queue.splice(0)) j.reject(new Error('hashing workers paused: they kept dying'));
    try {
      this.warn(`hashing workers died ${HASH_WORKER_DEATHS} times within 10 s (last: ${why}); region hashes are made on the event loop ` +
        `for the next ${HASH_WORKER_PAUSE_MS / 1000} s (a first sync and a verify go on, slower, and host requests wait behind each hash)`);
    } catch {
      // (Saying it must not strand what this handler runs for.)
    }
  }

  private dispatch(): void {
    if (this.closed) return;
    const free = this.slots.filter((s) => !s.job && s.worker.threadId >= 0).length;
    for (let more = Math.min(this.queue.length - free, this.size - this.slots.length); more > 0 && performance.now() >= this.pausedUntil; more--) {
      try {
        this.slots.push(this.spawn());
      } catch (e) {
        // (No thread to be had, say: with no worker left, what waits is hashed on the event loop; else the others take it.)
        this.died((e as Error).message);
        if (this.slots.length === 0) for (const j of this.queue.splice(0)) j.reject(new Error(`a hashing worker cannot start: ${(e as Error).message}`));
        break;
      }
    }
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job || slot.worker.threadId < 0) continue;
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
