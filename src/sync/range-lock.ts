// Host writes and resync reads of the same range must not interleave: a resync reads
// a region of the volume and journals what it read, and that record must hold every
// host write journaled before it and none after. The resync takes the range: new host
// writes to it wait, and the lock is granted once host writes already in flight
// there have finished. Host writes elsewhere never wait.
//
// Locks on ranges apart are held at once (the online verify's batches out, a first
// sync's comparisons while the pump reads a run); a lock that overlaps one held waits
// for it to be let go, so two never cover the same byte.
import { assert } from '../invariants/assert.js';

interface Range {
  start: number;
  end: number;
}

interface Held extends Range {
  released: Promise<void>;
}

export class RangeLocks {
  private nextId = 1;
  private readonly writes = new Map<number, Range>();
  private readonly held = new Set<Held>();
  private changed: Array<() => void> = [];

  /** Locks held now (each a range apart from the others). */
  get locked(): number {
    return this.held.size;
  }

  /**
   * A host write begins; waits only while a lock overlaps it. Returns a token for
   * exitWrite, synchronously when nothing is locked there (the common case: the
   * journal append then happens in the same turn as the request).
   */
  enterWrite(offset: number, length: number): number | Promise<number> {
    const r = { start: offset, end: offset + length };
    if (this.held.size > 0 && this.lockOver(r)) return this.enterLater(r);
    const id = this.nextId++;
    this.writes.set(id, r);
    return id;
  }

  private async enterLater(r: Range): Promise<number> {
    for (let h = this.lockOver(r); h; h = this.lockOver(r)) await h.released;
    const id = this.nextId++;
    this.writes.set(id, r);
    return id;
  }

  exitWrite(id: number): void {
    this.writes.delete(id);
    if (this.changed.length > 0) {
      const wake = this.changed;
      this.changed = [];
      for (const w of wake) w();
    }
  }

  /**
   * Takes [offset, offset+length) once no other lock covers any of it: new host
   * writes there wait; resolves once the ones in flight are done.
   */
  async lock(offset: number, length: number): Promise<() => void> {
    const r = { start: offset, end: offset + length };
    for (let h = this.lockOver(r); h; h = this.lockOver(r)) await h.released;
    let release!: () => void;
    const mine: Held = { ...r, released: new Promise<void>((res) => (release = res)) };
    this.held.add(mine);
    while ([...this.writes.values()].some((w) => overlaps(w, r))) {
      await new Promise<void>((res) => this.changed.push(res));
    }
    return () => {
      assert(this.held.delete(mine), () => `the range lock of [${r.start}, ${r.end}) is let go once`);
      release();
    };
  }

  /** A lock held over any byte of `r`, if one is. */
  private lockOver(r: Range): Held | null {
    for (const h of this.held) if (overlaps(h, r)) return h;
    return null;
  }
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}
