// The node-wide budget for NBD request bytes held in memory: write payloads from
// the moment their header is read until the disk has them. Per connection the
// limits were already bounded (64 MiB in flight), but not across connections:
// a client that sends a 32 MiB write header and all but one byte of it pins 32 MiB
// for as long as it likes, before any authentication (NBD has none), and the
// 256-connection cap let that reach 8 GiB. Now a connection whose request would
// pass the budget stops reading its socket (its bytes wait in the kernel's buffers,
// not in the daemon) until others drain.
//
// Never a deadlock: a request larger than what is free is admitted when nothing
// else is held (one at a time past the budget), so a budget set below the largest
// request (32 MiB) still serves it. Waiters are served in order, so a large request
// is not starved by a stream of small ones.

/** The default budget: 8 of the largest writes at once, whatever the number of clients. */
export const NBD_REQUEST_BUDGET_BYTES = 256 * 1024 * 1024;

export interface BudgetWaiter {
  readonly bytes: number;
  /** When it started to wait (ms). */
  readonly since: number;
}

interface Waiting extends BudgetWaiter {
  grant: () => void;
}

export class RequestBudget {
  /** Bytes held now. */
  used = 0;
  private readonly queue: Waiting[] = [];

  constructor(readonly limit: number = NBD_REQUEST_BUDGET_BYTES, private readonly now: () => number = Date.now) {}

  /** Requests waiting for bytes to free. */
  get waiting(): number {
    return this.queue.length;
  }

  /** How long the oldest waiter has waited (ms; 0: none waits). */
  oldestWaitMs(): number {
    return this.queue.length === 0 ? 0 : this.now() - this.queue[0]!.since;
  }

  /**
   * Takes `bytes` now and returns null, or queues `grant` (called once they are
   * taken for it) and returns the waiter, which `cancel` withdraws.
   */
  take(bytes: number, grant: () => void): BudgetWaiter | null {
    if (this.queue.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return null;
    }
    const w: Waiting = { bytes, since: this.now(), grant };
    this.queue.push(w);
    return w;
  }

  release(bytes: number): void {
    this.used -= bytes;
    this.admit();
  }

  cancel(w: BudgetWaiter): void {
    const i = this.queue.indexOf(w as Waiting);
    if (i >= 0) this.queue.splice(i, 1);
    this.admit();
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }

  private admit(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.bytes)) {
      const w = this.queue.shift()!;
      this.used += w.bytes;
      w.grant();
    }
  }
}
