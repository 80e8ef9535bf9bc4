// Compaction of thinned points (docs/HISTORY.md, "Compaction"). Thinning hides restore
// points as they age (retention.ts); the bytes saved for them alone stay in their
// segment until the whole segment goes. A sealed segment is rewritten with what the
// listed points still need, so a month of history thinned to one point a day costs
// about the ranges changed per day, not every overwrite of the month.
//
// What a listed point needs: it opens to the first bytes saved after its marker, for
// each range (view.ts). Take a listed point L and the hidden points after it, up to the
// next listed point: for each range only the first save after L's marker is read by any
// listed point (every listed point at or before L meets it, or an earlier save, first;
// every listed point after the run meets none of the run's saves). So within a run the
// first save of each range is kept, the later ones and the hidden points' markers go,
// and saves before the first listed marker of the history go too: no listed point reads
// them. The run that began before the segment is carried in: the ranges saved since its
// listed point's marker, in the segments before (the caller scans them).
import { crc32c } from '@node-rs/crc32';
import type { StoreFile } from '../store/store.js';
import { HISTORY_VIEW_EXTENTS_MAX } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';
import { ExtentMap } from './extent-map.js';
import { encodeEntryHead, EntryKind, HISTORY_ENTRY_HEAD_SIZE, HISTORY_HEADER_SIZE, type EntryHead } from './format.js';

/** An entry as compaction keeps it: a listed point's marker, or the part [start, end) of the volume bytes a save holds. */
export interface KeptEntry { position: number; head: EntryHead; start: number; end: number }

/** Bytes written through one append (what the rewrite holds in memory at a time, about). */
const APPEND_BYTES = 1 << 20;

export class CompactionPlan {
  readonly kept: KeptEntry[] = [];
  /** Bytes the rewritten segment takes, its header included. */
  bytes = HISTORY_HEADER_SIZE;
  /** The run's map grew past HISTORY_VIEW_EXTENTS_MAX ranges: nothing is rewritten. */
  tooMany = false;

  /**
   * `listed`: the seqs of the listed points. `run`: the ranges saved since the newest
   * listed point marked before the segment (null: none is marked before it).
   */
  constructor(private readonly listed: ReadonlySet<number>, private run: ExtentMap<true> | null) {}

  /** The segment's entries, in order. */
  add(head: EntryHead, position: number): void {
    if (this.tooMany) return;
    if (head.kind === EntryKind.Point) {
      if (!this.listed.has(head.point)) return; // (a hidden point: its run goes on)
      this.run = new ExtentMap<true>();
      this.keep({ position, head, start: 0, end: 0 });
      return;
    }
    if (this.run === null) return; // (before the first listed marker: no listed point reads it)
    for (const part of this.run.fill(head.offset, head.offset + head.length, () => true)) this.keep({ position, head, start: part.start, end: part.end });
    if (this.run.size > HISTORY_VIEW_EXTENTS_MAX) this.tooMany = true;
  }

  private keep(k: KeptEntry): void {
    this.kept.push(k);
    this.bytes += HISTORY_ENTRY_HEAD_SIZE + (k.head.kind === EntryKind.Saved ? k.end - k.start : 0);
  }
}

/** A saved entry of the segment being compacted failed its checksum: it is left as it is (and a point over it reports it when read). */
export class CompactionDamage extends Error {}

/**
 * Appends `kept` to `dst` (a new segment whose header is written), reading saved bytes
 * from `src` and checking them against their CRC; a part of a save gets a head of its
 * own with the part's CRC. Where each kept marker moved: old position to new.
 */
export async function writeCompacted(src: StoreFile, dst: StoreFile, kept: readonly KeptEntry[]): Promise<Map<number, number>> {
  const moved = new Map<number, number>();
  let at = dst.size();
  let parts: Buffer[] = [];
  let pending = 0;
  const flush = (): void => {
    if (parts.length > 0) dst.appendSync(parts);
    parts = [];
    pending = 0;
  };
  for (const k of kept) {
    const h = k.head;
    if (h.kind === EntryKind.Point) {
      moved.set(k.position, at);
      parts.push(encodeEntryHead(h));
      at += HISTORY_ENTRY_HEAD_SIZE;
      pending += HISTORY_ENTRY_HEAD_SIZE;
    } else {
      assert(k.start >= h.offset && k.end <= h.offset + h.length && k.start < k.end,
        () => `history compaction: part ${k.start}..${k.end} is not within the save ${h.offset}+${h.length}`);
      const part = { ...h, offset: k.start, length: k.end - k.start };
      if (h.kind === EntryKind.Saved) {
        const data = await src.read(k.position + HISTORY_ENTRY_HEAD_SIZE, h.length);
        if (data.length !== h.length || crc32c(data) !== h.dataCrc) {
          throw new CompactionDamage(`saved bytes at byte ${k.position} fail their checksum`);
        }
        const bytes = Buffer.from(data.subarray(k.start - h.offset, k.end - h.offset));
        parts.push(encodeEntryHead({ ...part, dataCrc: crc32c(bytes) }), bytes);
        at += HISTORY_ENTRY_HEAD_SIZE + bytes.length;
        pending += HISTORY_ENTRY_HEAD_SIZE + bytes.length;
      } else {
        parts.push(encodeEntryHead(part));
        at += HISTORY_ENTRY_HEAD_SIZE;
        pending += HISTORY_ENTRY_HEAD_SIZE;
      }
    }
    if (pending >= APPEND_BYTES) flush();
  }
  flush();
  assert(dst.size() === at, () => `history compaction wrote ${dst.size()} bytes where ${at} were planned`);
  return moved;
}
