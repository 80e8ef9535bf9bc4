// The node's memory budget (docs/CONFIG.md `memory`, docs/INVARIANTS.md invariant 10):
// the bytes of replication data a daemon holds in memory, all volumes and links
// together. A shipper's batch from its journal read until the peer acks it (read,
// packed, queued for the link, in flight), a frame from the peer from its arrival
// until the receive log has written its records, and an apply's read of the receive
// log are each a lease on it. A hundred volumes share it, and a burst waits for
// leases to come back instead of allocating: RSS follows the budget, not the number
// of volumes or what they were given.
//
// Three classes, each held to at most CLASS_SHARE of the budget, so each always has
// the rest: nothing one class waits on can be starved by the others (a node both
// primary and secondary must read its peer's frames, which carry the acks that
// free its own sends; a frame waiting to be logged may wait for an apply).
//   send:    the primary's batches, from the read to the ack (bytes in flight are
//            released on ack: what a volume holds, it finishes without more);
//   receive: the secondary's frames, from arrival until logged;
//   apply:   the secondary's reads of its receive log into the replica.
// Waiters are served in order within a class (a large batch is not starved by small
// ones). A request larger than its class's share is granted when its class holds
// nothing else, so one record larger than the budget still goes (one at a time).
import { assert } from '../invariants/assert.js';

export type BudgetClass = 'send' | 'receive' | 'apply';
const CLASSES: BudgetClass[] = ['send', 'receive', 'apply'];

/** The most of the budget one class may hold (with three classes, each keeps at least a fifth for itself). */
export const CLASS_SHARE = 0.4;

/** Bytes held from the budget; `release` gives them back (once). */
export interface Lease {
  readonly bytes: number;
  readonly cls: BudgetClass;
  /** Gives the bytes back; a second call is a bug (asserted). */
  release(): void;
  /** Gives back all but `bytes` (a read returned less than it asked for). */
  shrink(bytes: number): void;
  /**
   * Takes `bytes` more at once, past the budget if need be: a journal read returns at
   * least one record, which may be larger than the batch asked (at most the largest
   * host write). Counted, so the others wait for it.
   */
  grow(bytes: number): void;
}

/** A request waiting for bytes: `granted` resolves with its lease, `cancel` withdraws it (or releases what was granted). */
export interface Claim {
  readonly granted: Promise<Lease>;
  cancel(): void;
}

interface Waiter { bytes: number; grant: (l: Lease) => void; cancelled: boolean }

export class MemoryBudget {
  /** Bytes held now, per class and in all. */
  private readonly held: Record<BudgetClass, number> = { send: 0, receive: 0, apply: 0 };
  used = 0;
  /** The most ever held at once. */
  peak = 0;
  /** Leases granted and not yet released. */
  leases = 0;
  /** Grants that had to wait (a figure for status and tests). */
  waits = 0;
  private readonly queues: Record<BudgetClass, Waiter[]> = { send: [], receive: [], apply: [] };

  constructor(readonly limit: number) {
    assert(limit > 0, () => `a memory budget of ${limit} bytes`);
  }

  /** What one class may hold. */
  get classLimit(): number {
    return Math.floor(this.limit * CLASS_SHARE);
  }

  heldBy(cls: BudgetClass): number {
    return this.held[cls];
  }

  waiting(cls?: BudgetClass): number {
    return (cls ? [cls] : CLASSES).reduce((n, c) => n + this.queues[c].filter((w) => !w.cancelled).length, 0);
  }

  /** Takes `bytes` now if they fit and nobody of its class waits; null otherwise (nothing queued). */
  tryAcquire(bytes: number, cls: BudgetClass): Lease | null {
    if (this.queues[cls].length > 0 || !this.fits(bytes, cls)) return null;
    return this.take(bytes, cls);
  }

  /** Takes `bytes` when they fit, in order of asking within the class. */
  acquire(bytes: number, cls: BudgetClass): Claim {
    const now = this.tryAcquire(bytes, cls);
    if (now) {
      let lease: Lease | null = now;
      return { granted: Promise.resolve(now), cancel: () => { lease?.release(); lease = null; } };
    }
    let granted: Lease | null = null;
    let done = false;
    const w: Waiter = { bytes, cancelled: false, grant: () => undefined };
    const p = new Promise<Lease>((resolve) => {
      w.grant = (l) => {
        granted = l;
        resolve(l);
      };
    });
    this.queues[cls].push(w);
    this.waits++;
    return {
      granted: p,
      cancel: () => {
        if (done) return;
        done = true;
        if (granted) {
          (granted as Lease).release();
          return;
        }
        w.cancelled = true;
        this.admit();
      },
    };
  }

  /** A class may take `bytes`: within the budget and its share, or it holds nothing (one request past them at a time). */
  private fits(bytes: number, cls: BudgetClass): boolean {
    if (this.held[cls] === 0) return true;
    return this.used + bytes <= this.limit && this.held[cls] + bytes <= this.classLimit;
  }

  private take(bytes: number, cls: BudgetClass): Lease {
    assert(bytes >= 0 && Number.isFinite(bytes), () => `a lease of ${bytes} bytes`);
    this.held[cls] += bytes;
    this.used += bytes;
    this.leases++;
    this.peak = Math.max(this.peak, this.used);
    let left = bytes;
    let released = false;
    const give = (n: number): void => {
      this.held[cls] -= n;
      this.used -= n;
      left -= n;
      this.check();
    };
    const lease: Lease = {
      get bytes() { return left; },
      cls,
      release: () => {
        assert(!released, () => `a ${cls} lease of ${bytes} bytes released twice`);
        released = true;
        this.leases--;
        give(left);
        this.admit();
      },
      grow: (n: number) => {
        assert(!released && n >= 0, () => `a ${cls} lease grown by ${n} bytes${released ? ' after its release' : ''}`);
        this.held[cls] += n;
        this.used += n;
        left += n;
        this.peak = Math.max(this.peak, this.used);
      },
      shrink: (to: number) => {
        assert(!released, () => `a ${cls} lease shrunk after its release`);
        if (to >= left) return;
        give(left - Math.max(0, to));
        this.admit();
      },
    };
    return lease;
  }

  /** Never negative, the classes add up, and a lease is held for every byte. */
  private check(): void {
    const sum = this.held.send + this.held.receive + this.held.apply;
    assert(this.used >= 0 && this.held.send >= 0 && this.held.receive >= 0 && this.held.apply >= 0 && sum === this.used && this.leases >= 0,
      () => `memory budget: ${this.used} bytes used (send ${this.held.send}, receive ${this.held.receive}, apply ${this.held.apply}) in ${this.leases} leases`);
    assert(this.leases > 0 || this.used === 0, () => `memory budget: ${this.used} bytes used with no lease held`);
  }

  private admit(): void {
    for (const cls of CLASSES) {
      const q = this.queues[cls];
      while (q.length > 0) {
        const w = q[0]!;
        if (w.cancelled) {
          q.shift();
          continue;
        }
        if (!this.fits(w.bytes, cls)) break;
        q.shift();
        w.grant(this.take(w.bytes, cls));
      }
    }
  }
}

/** A budget no test or tool has to think about: large enough never to be the limit. */
export function unbounded(): MemoryBudget {
  return new MemoryBudget(Number.MAX_SAFE_INTEGER);
}
