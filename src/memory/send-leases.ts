// One shipper's leases on the node's memory budget (budget.ts, class `send`): each
// batch it reads takes a lease before its journal read and holds it, sized to what
// was read, until the peer acks the batch's last record. A burst on many volumes
// waits here, in order, rather than reading every backlog at once. When sending stops
// (link down, pause, hold), what was in flight is read again later, so every lease
// goes back at once and a read waiting for one is withdrawn.
import type { Lease, MemoryBudget } from './budget.js';

export class SendLeases {
  /** Batches read and not yet acked, each with its lease, in seq order (their last seq). */
  private readonly leases: Array<{ seq: number; lease: Lease }> = [];
  /** A read waiting for its lease (at most one: the machine reads one batch at a time). */
  private claim: { cancel(): void } | null = null;

  /** `memory` absent: no budget is kept (nothing is counted, nothing waits). */
  constructor(private readonly memory: MemoryBudget | undefined) {}

  /** Bytes of the node's budget this volume holds now (batches read, packed, queued or in flight). */
  get bytes(): number {
    return this.leases.reduce((n, l) => n + l.lease.bytes, 0);
  }

  /** A read waits for its lease (a burst of many volumes queues here, in order). */
  get waiting(): boolean {
    return this.claim !== null;
  }

  /** Sending stopped or began again: every lease goes back, and a read waiting for one is withdrawn. */
  drop(): void {
    this.claim?.cancel();
    this.claim = null;
    for (const l of this.leases.splice(0)) l.lease.release();
  }

  /** The peer acked up to `seq`: the batches it covers leave memory (their leases go back). */
  releaseAcked(seq: number): void {
    while (this.leases.length > 0 && this.leases[0]!.seq <= seq) this.leases.shift()!.lease.release();
  }

  /**
   * A lease for a read of up to `bytes`, or null when no budget is kept; stale (null
   * lease, false) if sending stopped meanwhile (`current()` false when it is granted).
   */
  leaseFor(bytes: number, current: () => boolean): Promise<{ lease: Lease | null; current: boolean }> {
    const m = this.memory;
    if (!m) return Promise.resolve({ lease: null, current: true });
    const now = m.tryAcquire(bytes, 'send');
    if (now) return Promise.resolve({ lease: now, current: true });
    const c = m.acquire(bytes, 'send');
    this.claim = c;
    return c.granted.then((lease) => {
      if (this.claim === c) this.claim = null;
      if (!current()) {
        // (Withdrawn by drop after the grant was queued: give it back.)
        c.cancel();
        return { lease: null, current: false };
      }
      return { lease, current: true };
    });
  }

  /** A batch read under `lease` goes: the lease is sized to its `bytes` and held until `seq`, its last record, is acked. */
  hold(lease: Lease, seq: number, bytes: number): void {
    if (bytes > lease.bytes) lease.grow(bytes - lease.bytes);
    else lease.shrink(bytes);
    this.leases.push({ seq, lease });
  }
}
