// A lock over ranges of logical blocks, inside one logical unit: COMPARE AND WRITE
// reads, compares and writes as one step against every other write of the unit
// (SBC-3 5.2: no other command may change the blocks in between). Writes, WRITE SAME,
// UNMAP and COMPARE AND WRITE hold their range while they run; overlapping holders go
// one after another in arrival order (a waiter also waits for earlier overlapping
// waiters, so none starves), disjoint ones run at once. Reads do not lock: a write is
// handed to the backend whole, so a read sees it all or not at all.
// The entries are the commands in flight, which the transport's queue bounds.
import { assert } from '../invariants/assert.js';

interface Entry {
  readonly start: number;
  readonly end: number;
  granted: boolean;
  wake: (() => void) | null;
}

export class RangeLock {
  /** Held and waiting entries, in arrival order. */
  private readonly entries: Entry[] = [];

  /** Waits until [start, end) is this caller's; returns the release. */
  async acquire(start: number, end: number): Promise<() => void> {
    assert(start <= end, () => `range lock of ${start}..${end}`);
    const e: Entry = { start, end, granted: false, wake: null };
    const blocked = this.entries.some((o) => overlaps(o, e));
    this.entries.push(e);
    if (!blocked) e.granted = true;
    else await new Promise<void>((resolve) => { e.wake = resolve; });
    assert(e.granted, 'range lock woke without the range');
    let released = false;
    return () => {
      assert(!released, 'range lock released twice');
      released = true;
      this.release(e);
    };
  }

  /** Entries held or waiting (for tests and status). */
  get size(): number { return this.entries.length; }

  private release(e: Entry): void {
    const i = this.entries.indexOf(e);
    assert(i >= 0, 'range lock released an entry it does not hold');
    this.entries.splice(i, 1);
    for (let k = 0; k < this.entries.length; k++) {
      const w = this.entries[k]!;
      if (w.granted) continue;
      let free = true;
      for (let j = 0; j < k; j++) if (overlaps(this.entries[j]!, w)) { free = false; break; }
      if (free) {
        w.granted = true;
        const wake = w.wake;
        w.wake = null;
        wake?.();
      }
    }
  }
}

function overlaps(a: Entry, b: Entry): boolean {
  // Empty ranges (zero blocks) still serialize with what covers their start.
  return a.start <= b.start ? b.start < Math.max(a.end, a.start + 1) : a.start < Math.max(b.end, b.start + 1);
}
