// Host writes and resync reads of the same range must not interleave: a resync reads
// a region of the volume and journals what it read, and that record must hold every
// host write journaled before it and none after. The resync takes the range: new host
// writes to it wait, and the lock is granted once host writes already in flight
// there have finished. Host writes elsewhere never wait.

interface Range {
  start: number;
  end: number;
}

export class RangeLocks {
  private nextId = 1;
  private readonly writes = new Map<number, Range>();
  private held: (Range & { released: Promise<void> }) | null = null;
  private changed: Array<() => void> = [];

  /**
   * A host write begins; waits only while a lock overlaps it. Returns a token for
   * exitWrite, synchronously when nothing is locked (the common case: the journal
   * append then happens in the same turn as the request).
   */
  enterWrite(offset: number, length: number): number | Promise<number> {
    const r = { start: offset, end: offset + length };
    if (this.held && overlaps(this.held, r)) return this.enterLater(r);
    const id = this.nextId++;
    this.writes.set(id, r);
    return id;
  }

  private async enterLater(r: Range): Promise<number> {
    while (this.held && overlaps(this.held, r)) await this.held.released;
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

  /** Takes [offset, offset+length): new host writes there wait; resolves once the ones in flight are done. */
  async lock(offset: number, length: number): Promise<() => void> {
    while (this.held) await this.held.released;
    let release!: () => void;
    const r = { start: offset, end: offset + length };
    this.held = { ...r, released: new Promise<void>((res) => (release = res)) };
    while ([...this.writes.values()].some((w) => overlaps(w, r))) {
      await new Promise<void>((res) => this.changed.push(res));
    }
    return () => {
      this.held = null;
      release();
    };
  }
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}
