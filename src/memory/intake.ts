// A link's intake of frames from its peer, held to the node's memory budget: a frame
// that carries records (its bytes, and what it unpacks to) takes a `receive` lease as
// it arrives, in the order frames came; while one waits for its lease the socket is
// not read, so a burst from the peer waits in the kernel's buffers and on the link,
// not in this process. The lease follows the frame to the replica and goes back when
// the receive log has written its records (or the frame is dropped, or the link closes).
//
// Never a deadlock: what a waiting frame waits for is only frames ahead of it being
// logged (the `receive` class is apart from the shippers' sends, whose acks this very
// socket carries, and from applies: src/memory/budget.ts), and logging a frame waits
// for no lease.
import type { Claim, Lease, MemoryBudget } from './budget.js';

export interface IntakeOptions<F> {
  /** Bytes frame `f` holds while it is buffered and unpacked (0: no lease; a control frame). */
  bytesOf(f: F): number;
  /** A frame that may pass frames waiting for memory (a heartbeat: it carries liveness, no order). */
  passes(f: F): boolean;
  /** Hands a frame on, in order, its lease taken. */
  take(f: F): void;
  /** The link is closing: frames are dropped. */
  closed(): boolean;
  /** Stop (true) or go on (false) reading the socket. */
  pause(paused: boolean): void;
}

export class FrameIntake<F extends { payload: Buffer }> {
  private readonly queue: F[] = [];
  /** Leases of frames handed on and not yet claimed by their records (by the frame's payload). */
  private readonly leases = new Map<Buffer, Lease>();
  private claim: Claim | null = null;
  private readonly pausedFor = new Set<string>();
  private done = false;

  constructor(private readonly budget: MemoryBudget, private readonly o: IntakeOptions<F>) {}

  /** A frame came off the socket. */
  arrive(f: F): void {
    if (this.done) return;
    if (this.queue.length > 0 && this.o.passes(f)) {
      this.o.take(f);
      return;
    }
    this.queue.push(f);
    this.admit();
  }

  /** Frames waiting for memory (a figure for tests). */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * The release of the lease frame `payload` took (a no-op if it took none): called
   * once its records are logged, or it is dropped. Idempotent.
   */
  leaseOf(payload: Buffer): () => void {
    const l = this.leases.get(payload);
    this.leases.delete(payload);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      l?.release();
    };
  }

  /** Reading stops while any reason holds (`memory`: a frame waits for a lease; the session's own, unpacking). */
  pause(reason: string, paused: boolean): void {
    const was = this.pausedFor.size > 0;
    if (paused) this.pausedFor.add(reason);
    else this.pausedFor.delete(reason);
    const now = this.pausedFor.size > 0;
    if (now !== was && !this.done) this.o.pause(now);
  }

  /** The link closed: every lease not handed to records goes back, a waiting claim is withdrawn. */
  close(): void {
    this.done = true;
    this.claim?.cancel();
    this.claim = null;
    this.queue.length = 0;
    for (const l of this.leases.values()) l.release();
    this.leases.clear();
  }

  private admit(): void {
    while (this.queue.length > 0 && !this.claim && !this.done && !this.o.closed()) {
      const f = this.queue[0]!;
      const need = this.o.bytesOf(f);
      if (need > 0) {
        const now = this.budget.tryAcquire(need, 'receive');
        if (!now) {
          const c = this.budget.acquire(need, 'receive');
          this.claim = c;
          this.pause('memory', true);
          void c.granted.then((lease) => {
            if (this.claim !== c) return; // (withdrawn by close, which gave the lease back)
            this.claim = null;
            this.leases.set(f.payload, lease);
            this.queue.shift();
            this.o.take(f);
            this.pause('memory', false);
            this.admit();
          });
          return;
        }
        this.leases.set(f.payload, now);
      }
      this.queue.shift();
      this.o.take(f);
    }
  }
}
