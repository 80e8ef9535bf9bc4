// Writes to a volume handed to the thread pool several to a job. A host keeping 32
// small writes in flight (an iSCSI or NBD queue) would otherwise pay, per write, a
// wake-up of a pool thread and a completion back to the event loop: more than the
// pwrite of 4 KiB into the page cache costs. The writes of one turn of the event loop
// go together (the first queues their job behind the turn's other work, microtasks
// running in order), up to WRITE_BATCHES_IN_FLIGHT jobs at once; writes that arrive
// while they all run wait, and the next job takes them together (at most
// WRITE_BATCH_MAX_WRITES or WRITE_BATCH_MAX_BYTES). Writes in flight together have no
// order among them, as the protocols say; each is written whole or fails with its own error.
import { WRITE_BATCHES_IN_FLIGHT, WRITE_BATCH_MAX_BYTES, WRITE_BATCH_MAX_WRITES } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

interface Waiting { data: Buffer; position: number; resolve: () => void; reject: (e: Error) => void }

export class WriteBatcher {
  private waiting: Waiting[] = [];
  private inFlight = 0;

  constructor(
    private readonly submit: (bufs: Buffer[], positions: number[]) => Promise<number[]>,
    private readonly failure: (errno: number) => Error,
  ) {}

  write(data: Buffer, position: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ data, position, resolve, reject });
      if (this.waiting.length === 1 && this.inFlight < WRITE_BATCHES_IN_FLIGHT) queueMicrotask(() => this.submitTurn());
    });
  }

  private idleWaiters: Array<() => void> = [];

  /** Resolves once no write waits or runs (a volume is closed only then: its descriptor could be reused). */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Jobs running now (for tests). */
  get running(): number {
    return this.inFlight;
  }

  /** This turn's writes, in as few jobs as their bounds allow. */
  private submitTurn(): void {
    while (this.waiting.length > 0 && this.inFlight < WRITE_BATCHES_IN_FLIGHT) this.next();
  }

  private next(): void {
    if (this.waiting.length === 0) return;
    let bytes = 0;
    let n = 0;
    while (n < this.waiting.length && n < WRITE_BATCH_MAX_WRITES && (n === 0 || bytes + this.waiting[n]!.data.length <= WRITE_BATCH_MAX_BYTES)) {
      bytes += this.waiting[n]!.data.length;
      n++;
    }
    const job = this.waiting.splice(0, n);
    this.inFlight++;
    assert(this.inFlight <= WRITE_BATCHES_IN_FLIGHT, () => `volume writes: ${this.inFlight} jobs in flight, more than ${WRITE_BATCHES_IN_FLIGHT}`);
    const done = (errs: number[] | null, e?: Error): void => {
      this.inFlight--;
      job.forEach((w, i) => {
        const errno = errs?.[i];
        if (errs === null) w.reject(e!);
        else if (errno === 0) w.resolve();
        else w.reject(this.failure(errno ?? 5));
      });
      this.next();
      if (this.inFlight === 0 && this.waiting.length === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
    this.submit(job.map((w) => w.data), job.map((w) => w.position)).then((errs) => done(errs), (e: Error) => done(null, e));
  }
}
