// A small pool of zstd workers, so zstd never blocks the event loop: batches are
// compressed here on a primary, and PackedRecords frames from the peer are
// decompressed here on a secondary (a peer's frame unpacks to at most 40 MiB, which
// would hold the event loop for tens of ms). Jobs wait in a queue; a worker that dies
// fails only the job it held (a batch goes uncompressed; a frame closes its link and
// the primary resends) and is replaced.
//
// Workers start when jobs wait and none is free (up to the pool's size), and one idle
// for COMPRESSION_WORKER_IDLE_MS stops: each is a V8 isolate of about 25 MiB, which a
// node whose data does not compress (auto sends it raw), or that is between bursts,
// need not hold (issue 18's memory target).
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { UnzstdError } from './codec.js';
import { boundYoungGeneration } from '../memory/collector.js';
import { Owned, type OwnedBuffers } from '../memory/owned-buffers.js';
import { COMPRESSION_WORKER_IDLE_MS } from '../limits/limits.js';
import { MAX_FRAME_PAYLOAD } from '../link/frame.js';

interface Job {
  id: number;
  /** A buffer the node owns moves to the worker and back (Owned.moveOut); any other is moved or copied (dispatch). */
  data: Buffer | Owned;
  /** unzstd: the node's buffer of exactly `size` bytes it unpacks into, moved there and back. */
  into: Owned | null;
  /** compress: at `level`; unzstd: into exactly `size` bytes (codec.ts unzstdExact). */
  op: 'compress' | 'unzstd';
  level: number;
  size: number;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}
interface Slot { worker: Worker; job: Job | null; busySince: number; idleSince: number }

export class PoolFull extends Error {}

export class CompressionPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  private busyMs = 0;
  private measuredAt = Date.now();
  /** Workers that died and were replaced (a figure for status and tests). */
  restarts = 0;
  private recentDeaths: number[] = [];
  /** No worker starts before this time (workers that keep dying wait a while). */
  private spawnAfter = 0;
  private spawnTimer: NodeJS.Timeout | null = null;
  /** Workers started so far, and stopped for being idle (figures for status and tests). */
  started = 0;
  retired = 0;
  /** The workers' busy fraction over the last second (0..1). */
  busy = 0;
  private readonly meter: NodeJS.Timeout;

  constructor(readonly size = Math.max(1, Math.min(4, os.availableParallelism() - 1)), private readonly maxQueue = 64,
    private readonly idleMs = COMPRESSION_WORKER_IDLE_MS) {
    this.meter = setInterval(() => {
      this.busy = this.busyFraction();
      this.retireIdle();
    }, 1000);
    this.meter.unref();
  }

  /** Workers running now (started, not stopped). */
  get workers(): number {
    return this.slots.length;
  }

  /** Stops workers idle for longer than idleMs (at `now`). */
  retireIdle(now = Date.now()): void {
    for (const slot of [...this.slots]) {
      if (slot.job || now - slot.idleSince < this.idleMs) continue;
      // (Out of the slots first: its exit is not a death to replace.)
      this.slots.splice(this.slots.indexOf(slot), 1);
      this.retired++;
      void slot.worker.terminate();
    }
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./worker.js', import.meta.url));
    this.started++;
    worker.unref();
    // A worker's start puts V8's flags back to their defaults, the young generation's
    // growth among them: bounded again once it runs (src/memory/collector.ts).
    worker.once('online', () => boundYoungGeneration());
    const slot: Slot = { worker, job: null, busySince: 0, idleSince: Date.now() };
    worker.on('message', (m: { id: number; out?: Uint8Array; error?: string; back?: Uint8Array; into?: Uint8Array }) => {
      const job = slot.job;
      if (!job || job.id !== m.id) return;
      this.finish(slot);
      // (What moved there comes back with every reply, the job done or not: the output of an
      // unpack into `into` is a view of it.)
      if (job.data instanceof Owned) job.data.movedBack(m.back!);
      if (job.into) job.into.movedBack(m.out ?? m.into!);
      if (m.out) job.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
      // (A frame the worker refused to unpack is the peer's fault, said as such; a worker
      // that died, or a closed pool, is this node's.)
      else if (job.op === 'unzstd') job.reject(new UnzstdError(m.error ?? 'does not decompress'));
      else job.reject(new Error(m.error ?? 'compression failed'));
      this.dispatch();
    });
    worker.on('error', () => undefined); // 'exit' follows and says what to do
    worker.on('exit', (code) => {
      const job = slot.job;
      if (job) {
        this.finish(slot);
        job.reject(new Error(`${job.op === 'compress' ? 'compression' : 'decompression'} worker stopped (exit code ${code})`));
      }
      const at = this.slots.indexOf(slot);
      if (this.closed || at < 0) return;
      this.slots.splice(at, 1);
      const now = Date.now();
      this.recentDeaths = this.recentDeaths.filter((t) => now - t < 10_000);
      this.recentDeaths.push(now);
      this.restarts++;
      // Replaced as jobs come, at once, unless it keeps dying: then after a pause (batches go uncompressed meanwhile).
      if (this.recentDeaths.length > 5) this.spawnAfter = now + 10_000;
      this.dispatch();
    });
    return slot;
  }

  private finish(slot: Slot): void {
    const now = Date.now();
    this.busyMs += now - slot.busySince;
    slot.job = null;
    slot.idleSince = now;
  }

  /**
   * Compresses `data` at `level`; rejects when the queue is full, the pool closed, or the
   * worker died. A buffer the node owns goes to the worker and comes back before this
   * settles (unless the worker died with it: Owned.give then keeps nothing); the caller
   * gives it back.
   */
  compress(data: Buffer | Owned, level: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('compression pool closed'));
    if (this.queue.length >= this.maxQueue) return Promise.reject(new PoolFull(`compression queue full (${this.maxQueue} batches)`));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, op: 'compress', data, into: null, level, size: 0, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Decompresses one zstd frame, which must be all of `z`, into exactly `size` bytes
   * (codec.ts unzstdExact: the worker never allocates more), in the node's buffers
   * (src/memory/owned-buffers.ts): `z`, a view into the received frame, is copied into
   * one, and the frame unpacks into another, which is the caller's to give back once
   * nothing reads it. Rejects with an UnzstdError that says why when the frame is not
   * that. These jobs go ahead of compression (a peer's frames wait behind them, and its
   * acks behind those) and are not held to the queue's bound: each link unpacks one
   * frame at a time, so there are no more of them than peers.
   */
  async unzstdOwned(z: Buffer, size: number, buffers: OwnedBuffers): Promise<Owned> {
    if (this.closed) throw new Error('compression pool closed');
    // (The peer's figures: refused as its fault, never asserted.)
    if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_FRAME_PAYLOAD) throw new UnzstdError(`declares ${size} bytes, not 1 to ${MAX_FRAME_PAYLOAD}`);
    if (z.length === 0) throw new UnzstdError('does not decompress: its zstd frame is empty');
    const input = buffers.take(z.length);
    z.copy(input.bytes);
    const into = buffers.take(size);
    try {
      await new Promise<Buffer>((resolve, reject) => this.unzstdJob({ id: this.nextId++, op: 'unzstd', data: input, into, level: 0, size, resolve, reject }));
    } catch (e) {
      into.give();
      throw e;
    } finally {
      input.give();
    }
    return into;
  }

  private unzstdJob(job: Job): void {
    let at = 0;
    while (at < this.queue.length && this.queue[at]!.op === 'unzstd') at++;
    this.queue.splice(at, 0, job);
    this.dispatch();
  }

  private dispatch(): void {
    if (this.closed) return;
    // A worker more while jobs wait and every one is busy (up to the pool's size).
    const free = this.slots.filter((s) => !s.job && s.worker.threadId >= 0).length;
    for (let more = Math.min(this.queue.length - free, this.size - this.slots.length); more > 0; more--) {
      const wait = this.spawnAfter - Date.now();
      if (wait > 0) {
        this.spawnTimer ??= setTimeout(() => {
          this.spawnTimer = null;
          this.dispatch();
        }, wait);
        this.spawnTimer.unref();
        break;
      }
      this.slots.push(this.spawn());
    }
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job || slot.worker.threadId < 0) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.busySince = Date.now();
      const msg = { id: job.id, op: job.op, level: job.level, size: job.size };
      const d = job.data;
      if (d instanceof Owned) {
        // The node's buffers go there and come back with the reply.
        const data = d.moveOut();
        const into = job.into?.moveOut();
        slot.worker.postMessage({ ...msg, data: data.view, into: into?.view, moved: true }, into ? [data.transfer, into.transfer] : [data.transfer]);
        continue;
      }
      // A buffer that owns its memory moves to the worker; a slice of Node's pool is copied.
      const own = d.byteOffset === 0 && d.byteLength === d.buffer.byteLength;
      slot.worker.postMessage({ ...msg, data: d }, own ? [d.buffer as ArrayBuffer] : []);
    }
  }

  /** Fraction of the workers' time spent compressing since the last call (0..1). */
  busyFraction(now = Date.now()): number {
    let busy = this.busyMs;
    for (const s of this.slots) if (s.job) busy += now - s.busySince;
    for (const s of this.slots) if (s.job) s.busySince = now;
    // (Of the pool's size, as when every worker ran from the start: one busy worker of four is a quarter busy.)
    const span = Math.max(1, now - this.measuredAt) * this.size;
    this.busyMs = 0;
    this.measuredAt = now;
    return Math.min(1, busy / span);
  }

  /** For tests: stops a worker the way a crash would. */
  async killWorker(i = 0): Promise<void> {
    await this.slots[i]?.worker.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.meter);
    if (this.spawnTimer) clearTimeout(this.spawnTimer);
    for (const j of this.queue.splice(0)) j.reject(new Error('compression pool closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
