// The bytes the replica held at a restore point over a range a batch of the apply is
// about to overwrite (docs/HISTORY.md "How it works"): the replica's, except where a
// record before the one overwriting them wrote them and is not (or not wholly) on the
// replica yet (an earlier record of the same batch, or one of the batch being written
// meanwhile): there, that record's bytes. Read a piece at a time into reused buffers.
import type { Disk } from '../journal/disk.js';
import { isZero } from '../journal/disk.js';
import { RecordKind, type JournalRecord } from '../journal/record.js';
import { HISTORY_EXTENTS_MAX, HISTORY_READ_BYTES, HISTORY_SCRATCH_KEPT } from '../limits/limits.js';
import { bufferPool } from '../memory/buffer-pool.js';

/** Buffers of HISTORY_READ_BYTES the node's captures read saved bytes into. */
const SCRATCH = bufferPool(HISTORY_READ_BYTES, HISTORY_SCRATCH_KEPT);

/** A piece as the point held it: `data` null when it was all zero (a hole, or zeros); `done` gives its buffer back. */
export interface PointPiece { data: Buffer | null; done(): void }

export class PointBytes {
  private holes: Array<{ start: number; end: number }> = [];

  /**
   * Before record `batch[i]` of `volume`'s apply; `inFlight`: the records before the
   * batch being written to the replica meanwhile.
   */
  constructor(
    private readonly volume: Disk, private readonly inFlight: readonly JournalRecord[], private readonly batch: readonly JournalRecord[],
    private readonly i: number,
  ) {}

  /**
   * Holes are found by reading a piece (a hole reads as zeros, from no disk) and seeing
   * it is zero, not by asking the file system where they are: that asks twice per piece,
   * and cost more than the apply's own writes (bench:history). A range of many pieces
   * asks once, so a trim over a large sparse region does not read it.
   */
  async findHoles(start: number, end: number): Promise<void> {
    this.holes = [];
    if (end - start <= HISTORY_READ_BYTES) return;
    let at = start;
    for (const e of await this.volume.extents(start, end - start, HISTORY_EXTENTS_MAX).catch(() => [])) {
      if (e.hole) this.holes.push({ start: at, end: at + e.length });
      at += e.length;
    }
  }

  /** [at, at + n) as the point held it (n at most HISTORY_READ_BYTES). */
  async read(at: number, n: number): Promise<PointPiece> {
    const earlier = this.writtenBefore(at, at + n);
    if (earlier.length === 0 && this.holes.some((h) => h.start <= at && at + n <= h.end)) return { data: null, done: () => undefined };
    const scratch = SCRATCH.take();
    const done = (): void => SCRATCH.give(scratch);
    try {
      const data = scratch.subarray(0, n);
      await this.volume.read(at, data, 0, n);
      // Bytes an earlier record wrote (of this batch, or of the one being written: not
      // yet on the replica, or half) are what the point holds; later ones over earlier
      // ones, as the apply writes them.
      for (const w of earlier) {
        const s = Math.max(at, w.offset);
        const e = Math.min(at + n, w.offset + w.length);
        if (w.kind === RecordKind.Write) w.payload.copy(data, s - at, s - w.offset, e - w.offset);
        else data.fill(0, s - at, e - at);
      }
      return { data: isZero(data) ? null : data, done };
    } catch (e) {
      done();
      throw e;
    }
  }

  /** The records in flight, then those of the batch before index `i`, that write into [start, end), in order. */
  private writtenBefore(start: number, end: number): JournalRecord[] {
    const out: JournalRecord[] = [];
    const take = (w: JournalRecord): void => {
      const writes = w.kind === RecordKind.Write || w.kind === RecordKind.Zeroes || w.kind === RecordKind.Trim;
      if (writes && w.offset < end && w.offset + w.length > start) out.push(w);
    };
    for (const w of this.inFlight) take(w);
    for (let k = 0; k < this.i; k++) take(this.batch[k]!);
    return out;
  }
}
