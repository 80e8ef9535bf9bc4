// Coalescing (docs/LINK.md): when a batch of journal records spans several epochs
// (the link is behind), every record whose bytes a later record of the batch
// covers, up to the batch's last barrier, goes as a 56-byte Skip record instead. The
// epochs up to that barrier become one unit: each Skip names the barrier, and the
// replica is never brought to a barrier before it, so every image it exposes is
// still a primary flush-point image (DESIGN.md invariant 3), only fewer of them.
// Pure: the same function runs in the daemon and in the simulation.
import { FLAG_RESYNC, FLAG_ROUND_END, RecordKind, type JournalRecord } from '../journal/record.js';

export interface Coalesced {
  records: JournalRecord[];
  /** Records sent as Skip records, and the payload bytes that stayed home. */
  skipped: number;
  skippedBytes: number;
}

export function coalesce(records: JournalRecord[]): Coalesced {
  let last = -1;
  let barriers = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    // A resync round's records and its end stay as they are (the round has its own unit).
    if ((r.flags & (FLAG_RESYNC | FLAG_ROUND_END)) !== 0 || r.kind === RecordKind.Skip) return { records, skipped: 0, skippedBytes: 0 };
    if (r.kind === RecordKind.Barrier) {
      last = i;
      barriers++;
    }
  }
  if (barriers < 2) return { records, skipped: 0, skippedBytes: 0 };
  const until = records[last]!.seq;
  const covered = new Cover();
  const out = records.slice();
  let skipped = 0;
  let skippedBytes = 0;
  for (let i = last - 1; i >= 0; i--) {
    const r = records[i]!;
    if (r.kind === RecordKind.Barrier || r.length === 0) continue;
    if (covered.covers(r.offset, r.offset + r.length)) {
      out[i] = { kind: RecordKind.Skip, flags: 0, seq: r.seq, epoch: r.epoch, offset: until, length: 0, time: r.time, payload: Buffer.alloc(0) };
      skipped++;
      skippedBytes += r.payload.length;
      continue;
    }
    covered.add(r.offset, r.offset + r.length);
  }
  return { records: skipped > 0 ? out : records, skipped, skippedBytes };
}

/** Byte ranges [start, end) of the volume, merged and in order. */
export class Cover {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Index of the last range starting at or before `at` (-1: none). */
  private find(at: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= at) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  covers(start: number, end: number): boolean {
    const i = this.find(start);
    return i >= 0 && this.ends[i]! >= end;
  }

  add(start: number, end: number): void {
    let i = this.find(start);
    // Merge with the range before when it reaches `start`.
    if (i >= 0 && this.ends[i]! >= start) {
      start = this.starts[i]!;
      end = Math.max(end, this.ends[i]!);
    } else i++;
    // And with every range that starts within [start, end].
    let j = i;
    while (j < this.starts.length && this.starts[j]! <= end) {
      end = Math.max(end, this.ends[j]!);
      j++;
    }
    this.starts.splice(i, j - i, start);
    this.ends.splice(i, j - i, end);
  }

  get ranges(): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }
}
