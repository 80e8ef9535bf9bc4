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
//
// Compactor runs it: one segment at a time, in the background, never one a start or an
// open view reads; the rewrite goes to history.NNNNNNNN.compact and replaces the segment
// by a rename (segments.ts).
import { crc32c } from '../checksum/crc32c.js';
import type { Store, StoreFile } from '../store/store.js';
import type { Logger } from '../log/log.js';
import { formatBytes } from '../units/units.js';
import { HISTORY_COMPACT_MIN_GAIN, HISTORY_VIEW_EXTENTS_MAX } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';
import { ExtentMap } from './extent-map.js';
import { encodeEntryHead, encodeHeader, EntryKind, historyFileName, HISTORY_ENTRY_HEAD_SIZE, HISTORY_HEADER_SIZE, type EntryHead } from './format.js';
import type { MarkedPoint, Segment, SegmentFiles } from './segments.js';

/** A segment being rewritten, or what a crash left of one (removed at the next start). */
export const COMPACTING_FILE = /^history\.\d{8}\.compact$/;

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

/** What the compactor needs of the history it compacts. */
export interface CompactedHistory {
  readonly store: Store;
  readonly segments: SegmentFiles;
  readonly name: string;
  readonly logger: Logger;
  /** The listed points, in order (their markers' positions are updated in place). */
  listed(): MarkedPoint[];
  /** The point the replica stands at (a start reads the entries after its marker), or null. */
  standsAt(): MarkedPoint | null;
  /** The oldest segment holding a pinned point's marker (an open view reads it and every later one); Infinity: none. */
  pinnedSegment(): number;
  /** One more at each close or drop after a failure: a rewrite begun before is not put in place. */
  generation(): number;
  /** Closed, or dropping after a failure: nothing is begun. */
  busy(): boolean;
}

export class Compactor {
  /** Thinning hid points this many times; a segment is looked at again only after it did. */
  private thinnings = 0;
  /** Each segment looked at, with `thinnings` then. */
  private readonly examined = new Map<number, number>();
  /** The compaction under way (one at a time: the apply never waits for it). */
  private running: Promise<void> | null = null;
  /** Segments rewritten, and the bytes that freed. */
  readonly done = { segments: 0, freedBytes: 0 };

  constructor(private readonly h: CompactedHistory) {}

  /** Thinning hid points. */
  thinned(): void {
    this.thinnings++;
  }

  /** The compaction under way has ended. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  /**
   * Begins the compaction of one segment thinning hid points of since it was last looked at:
   * a sealed one before the segment holding the marker of the point the replica stands at
   * (the tail a start reads is never touched) and before every pinned point's.
   */
  soon(): void {
    const h = this.h;
    if (this.running || h.busy()) return;
    const stands = h.standsAt();
    if (!stands) return;
    const limit = Math.min(stands.segment, h.pinnedSegment());
    // (The one looked at longest ago, one never looked at first: thinning may go on every second.)
    let seg: Segment | null = null;
    for (const s of h.segments.all) {
      if (s.index >= limit || s === h.segments.current || this.examined.get(s.index) === this.thinnings) continue;
      if (!seg || (this.examined.get(s.index) ?? -1) < (this.examined.get(seg.index) ?? -1)) seg = s;
    }
    if (!seg) return;
    const chosen = seg;
    const tmp = `${historyFileName(chosen.index)}.compact`;
    this.running = this.compact(chosen, tmp)
      .catch((e: Error) => {
        if (!h.segments.has(chosen)) return; // (dropped by retention meanwhile)
        h.logger[e instanceof CompactionDamage ? 'error' : 'warn']({ volume: h.name },
          `volume ${h.name}: compacting history segment ${historyFileName(chosen.index)} failed (${e.message}); it is kept as it is`);
      })
      .finally(() => {
        this.running = null;
        try {
          h.store.remove(tmp);
        } catch {
          // (removed at the next start)
        }
      });
  }

  private async compact(seg: Segment, tmpName: string): Promise<void> {
    const h = this.h;
    await h.segments.headsWritten(); // (a heads file being written of it reads the file this replaces)
    const generation = h.generation();
    const thinnings = this.thinnings;
    const points = h.listed();
    // The run open where the segment begins: the ranges saved since the newest marker before it,
    // listed or hidden. (A hidden point whose marker is in a segment not rewritten is listed again
    // after a restart, where thinning runs over every marker on disk: what it needs is kept too.
    // Every listed point before it needs no more: a range saved since a later marker was saved
    // since its own.) Found by reading the segments before this one, newest first.
    let run: ExtentMap<true> | null = null;
    const earlier = h.segments.all.filter((x) => x.index < seg.index).reverse();
    const acc = new ExtentMap<true>();
    for (const s of earlier) {
      let since = new ExtentMap<true>();
      let marked = false;
      const scan = await h.segments.scan(s, s.heads > 0, (head) => {
        if (head.kind === EntryKind.Point) {
          marked = true;
          since = new ExtentMap<true>();
        } else if (since.size <= HISTORY_VIEW_EXTENTS_MAX) {
          since.fill(head.offset, head.offset + head.length, () => true);
        }
      }, HISTORY_HEADER_SIZE);
      if (scan.end < s.bytes || since.size > HISTORY_VIEW_EXTENTS_MAX) {
        this.examined.set(seg.index, thinnings);
        return;
      }
      for (const part of since.parts(0, Number.MAX_SAFE_INTEGER)) if (part.extent) acc.fill(part.start, part.end, () => true);
      if (acc.size > HISTORY_VIEW_EXTENTS_MAX) {
        this.examined.set(seg.index, thinnings);
        return;
      }
      if (marked) {
        run = acc;
        break;
      }
    }
    const plan = new CompactionPlan(new Set(points.map((p) => p.seq)), run);
    const scan = await h.segments.scan(seg, seg.heads > 0, (head, position) => plan.add(head, position), HISTORY_HEADER_SIZE);
    this.examined.set(seg.index, thinnings);
    if (scan.end < seg.bytes || plan.tooMany || plan.bytes > seg.bytes * (1 - HISTORY_COMPACT_MIN_GAIN)) return;
    // (Closed or restarted during the scans: it would not commit, so no file is made in a folder that may be going.)
    if (generation !== h.generation()) return;
    const tmp = h.store.create(tmpName);
    let moved: Map<number, number>;
    try {
      tmp.appendSync([encodeHeader(h.segments.volumeSize)]);
      moved = await writeCompacted(seg.file, tmp, plan.kept);
      await tmp.sync();
    } finally {
      tmp.close();
    }
    // From here to the rename, one turn: no view began reading it meanwhile, nor did retention drop it.
    if (generation !== h.generation() || !h.segments.has(seg) || h.pinnedSegment() <= seg.index) return;
    const before = seg.bytes + seg.heads;
    const after = h.segments.replace(seg, tmpName);
    assert(after === plan.bytes, () => `volume ${h.name}: history segment ${seg.index} compacted to ${after} bytes, ${plan.bytes} planned`);
    for (const p of h.listed()) {
      if (p.segment !== seg.index) continue;
      const at = moved.get(p.position);
      assert(at !== undefined, () => `volume ${h.name}: compacting history segment ${seg.index} lost the marker of listed point ${p.seq}`);
      p.position = at;
    }
    this.done.segments++;
    this.done.freedBytes += before - after;
    h.logger.info({ volume: h.name }, `volume ${h.name}: history segment ${historyFileName(seg.index)} compacted from ${formatBytes(before)} to ` +
      `${formatBytes(after)} (what its thinned restore points alone needed)`);
    await h.segments.syncDir();
    h.segments.index(seg);
  }
}
