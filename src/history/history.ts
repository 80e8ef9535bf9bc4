// The secondary's history (docs/HISTORY.md): before an apply overwrites bytes of the
// replica, their old contents are saved here, durably, tagged with the restore point
// (a flush point the replica stood at) whose image held them. The replica stays
// current; a past point opens as the replica overlaid with the earliest bytes saved
// after it (view.ts). Saved bytes are written ahead of the replica's writes they
// precede, so after any crash every listed point still opens to its image (invariant 8).
//
// Segments (format.ts) hold, in the order they were written: a Point entry when the
// apply reaches a restore point, then the Saved entries of the writes after it. Old
// segments go whole (retention.ts); a point opens while its marker's segment is kept.
import type { Store } from '../store/store.js';
import type { Disk } from '../journal/disk.js';
import { FLAG_ROUND_END, groupPointOf, RecordKind, type JournalRecord } from '../journal/record.js';
import type { Logger } from '../log/log.js';
import { formatBytes } from '../units/units.js';
import { assert } from '../invariants/assert.js';
import { HISTORY_MIN_SEGMENT_BYTES, HISTORY_READ_BYTES, HISTORY_SEGMENT_BYTES } from '../limits/limits.js';
import { crc32c } from '../checksum/crc32c.js';
import { refuseNewer } from '../versioning/format.js';
import { ExtentMap } from './extent-map.js';
import {
  decodeHeader, encodeEntryHead, EntryKind, headsFileIndex, HISTORY_FORMAT, HISTORY_HEADER_SIZE, historyFileIndex, historyFileName, type EntryHead,
} from './format.js';

/** A heads file, or what a crash left of a write of one (Store.replace's temporary). */
const HEADS_FILE = /^history\.\d{8}\.heads(?:\.tmp)?$/;
import { PointBytes } from './point-bytes.js';
import { segmentsToDrop, thinPoints } from './retention.js';
import { HistoryStreams, STREAMS_FILE } from './streams.js';
import { COMPACTING_FILE, Compactor } from './compaction.js';
import { GONE, SegmentFiles, type MarkedPoint, type ScanEnd, type Segment } from './segments.js';

export { GONE, type MarkedPoint };

/** A file of the history (segments, heads files, the streams file): kept when the replica follows a new primary. */
export function isHistoryFile(name: string): boolean {
  return historyFileIndex(name) !== null || HEADS_FILE.test(name) || COMPACTING_FILE.test(name) || name === STREAMS_FILE || name === `${STREAMS_FILE}.tmp`;
}

/** A volume's `history` setting: how long and how much to keep (null: no limit of that kind). */
export interface HistorySettings {
  keepMs: number | null;
  maxBytes: number | null;
  /** The clock retention ages points by (default Date.now; the simulation's own). */
  now?: () => number;
  /** Segments are sealed at about this size (default: from maxBytes, see segmentBytes; the simulation's smaller ones). */
  segmentBytes?: number;
}

/**
 * A restore point: the replica's image at a barrier the primary wrote at `time` (ms).
 * `seq` names it in the history: its barrier's record seq, plus the base of the stream
 * it came from after a follow (streams.ts); `record` is that record seq, `primary` the
 * node whose journal it was (when written down: after a follow). `groupPoint`: its
 * number when the barrier is a consistency group's point.
 */
export interface RestorePoint { seq: number; time: number; record: number; primary?: string; groupPoint?: number }

/** A restore point as an operator reads it: its time, and the record (and after a follow the primary) it came from. */
export function pointName(p: RestorePoint): string {
  return `the restore point of ${new Date(p.time).toISOString()} (record ${p.record}${p.primary !== undefined ? ` of ${p.primary}` : ''})`;
}


/** Saved bytes as a reader of a past point finds them. */
export interface SavedBytes {
  segment: number;
  /** Where the bytes are in the segment (after the entry's head); unused when `zero`. */
  dataPosition: number;
  /** The volume offset of the entry's first byte, and its length. */
  offset: number;
  length: number;
  dataCrc: number;
  zero: boolean;
}


/** What the apply tells the history about the unit it is in. */
export interface CaptureContext {
  /** The replica holds a flush-point image when the unit begins (a first sync is over and this is none). */
  capturing: boolean;
  /** A resync round is open: only its end barrier is a restore point. */
  inRound: boolean;
  /** A consistency group member: only group points are restore points. */
  group: boolean;
  /** The last record applied before the unit (its seq in the stream the replica receives). */
  unitStart: number;
}

/** A reader of past points hears of every entry saved after it opened. */
export interface HistoryWatcher { saved(e: SavedBytes): void }

export class History {
  private readonly segments: SegmentFiles;
  private points: MarkedPoint[] = [];
  /** The newest point marker written (-1: none; 0 is the image before any record, a point too). */
  private lastMarked = -1;
  /** The restore point the bytes saved now belong to (null: the history has none yet). */
  private tag: number | null = null;
  /**
   * The restore point the replica stood at after its last applied unit: a unit starts
   * from it, also one tried again after a failed attempt had moved `tag` past points
   * of its own (group simulation seed 38: the redo saved its first records' bytes
   * under a later point, after that point's marker, and the point opened wrong).
   */
  private tagAtApplied: number | null = null;
  /** Ranges saved since each point at or after the current unit's start point: saved once per point. */
  private saved = new Map<number, ExtentMap<true>>();
  /** The furthest barrier a Skip record of this unit reaches (barriers before it are no points). */
  private skipReach = 0;
  private unsynced = false;
  private readonly watchers = new Set<HistoryWatcher>();
  private readonly pins = new Map<number, number>();
  /** Points dropped because the history passed its `max` (for status and metrics). */
  droppedForSize = 0;
  private lastKept = 0;
  /** The streams its points came from (streams.ts): a record seq of the one received now plus its base is the history's seq. */
  private streams = HistoryStreams.first();

  /** Rewrites sealed segments without what thinned points alone needed (compaction.ts). */
  private readonly compactor: Compactor;

  private constructor(
    private readonly store: Store,
    volumeSize: number,
    private readonly name: string,
    private readonly logger: Logger,
    public settings: HistorySettings,
  ) {
    const segments = (this.segments = new SegmentFiles(store, volumeSize));
    this.compactor = new Compactor({
      store, segments, name, logger,
      listed: () => this.points,
      standsAt: () => (this.tagAtApplied === null ? null : this.find(this.tagAtApplied)),
      pinnedSegment: () => {
        let oldest = Infinity;
        for (const seq of this.pins.keys()) oldest = Math.min(oldest, this.find(seq)?.segment ?? Infinity);
        return oldest;
      },
      generation: () => this.generation,
      busy: () => this.restarting || this.closed,
    });
  }

  /** The volume's size: each new segment's header says it; one written before a grow says less. */
  get volumeSize(): number { return this.segments.volumeSize; }

  /**
   * The volume grew (docs/CONFIG.md, "Growing a volume"): segments from now on say so.
   * A point from before it opens at the size the volume has now, the part it grew by
   * reading zeros (as it did then), and saved as any other when applies write there.
   */
  grow(volumeSize: number): void {
    assert(volumeSize >= this.segments.volumeSize, () => `history of ${this.name}: the volume cannot shrink to ${volumeSize}`);
    this.segments.volumeSize = volumeSize;
  }

  /** Removes every history segment (a promote, or history turned off). */
  static async drop(store: Store, opts: { keepStreams?: boolean } = {}): Promise<number> {
    const names = store.list().filter((n) => isHistoryFile(n) && !(opts.keepStreams === true && n === STREAMS_FILE));
    for (const n of names) store.remove(n);
    if (names.length > 0) await store.syncDir();
    return names.length;
  }

  /**
   * Opens the history in `store` (or begins one), with the replica applied up to record
   * `applied` (of the stream it receives): a torn tail (a crash before its sync) is cut, and the ranges the unit
   * being redone already saved are known, so they are not saved again (they hold the
   * bytes from before the crash; the replica may hold newer ones by now).
   */
  static async open(
    store: Store, volumeSize: number, applied: number, name: string, logger: Logger, settings: HistorySettings, pinned: readonly number[] = [],
  ): Promise<History> {
    const h = new History(store, volumeSize, name, logger, settings);
    for (const seq of pinned) h.pin(seq);
    await h.load(applied);
    return h;
  }

  private get segmentBytes(): number {
    if (this.settings.segmentBytes !== undefined) return this.settings.segmentBytes;
    const max = this.settings.maxBytes;
    return max === null ? HISTORY_SEGMENT_BYTES : Math.max(HISTORY_MIN_SEGMENT_BYTES, Math.min(HISTORY_SEGMENT_BYTES, Math.floor(max / 8)));
  }

  /** The history's seq of record `seq` of the stream the replica receives now. */
  private h(seq: number): number {
    return seq + this.streams.base;
  }

  private async load(appliedRecord: number): Promise<void> {
    const streams = await HistoryStreams.read(this.store);
    if (!streams) {
      this.logger.error({ volume: this.name }, `volume ${this.name}: its history's ${STREAMS_FILE} is damaged, so its points cannot be named; ` +
        'the history is dropped and begins again');
      await History.drop(this.store);
    }
    this.streams = streams ?? HistoryStreams.first();
    const applied = this.h(appliedRecord);
    const names = this.store.list();
    const indexes = names.map(historyFileIndex).filter((i): i is number => i !== null).sort((a, b) => a - b);
    // Heads files: of a segment there still is, used below; any other (its segment gone, a
    // write of one a crash cut) removed.
    const heads = new Set<number>();
    // (A compaction a crash cut: its segment is whole as it was, or whole as rewritten.)
    for (const n of names.filter((n) => COMPACTING_FILE.test(n))) this.store.remove(n);
    for (const n of names.filter((n) => HEADS_FILE.test(n))) {
      const i = headsFileIndex(n);
      if (i !== null && indexes.includes(i)) heads.add(i);
      else this.store.remove(n);
    }
    let tail: Array<{ head: EntryHead; position: number; segment: number }> = [];
    let startTag: number | null = null;
    for (let k = 0; k < indexes.length; k++) {
      const index = indexes[k]!;
      const file = this.store.open(historyFileName(index));
      const header = await file.read(0, HISTORY_HEADER_SIZE);
      refuseNewer(HISTORY_FORMAT, header, historyFileName(index));
      const hd = decodeHeader(header);
      // (Smaller: written before the volume grew, docs/CONFIG.md "Growing a volume".)
      if (!hd.ok || hd.volumeSize > this.volumeSize) {
        file.close();
        const why = hd.ok ? `it is for a volume of ${formatBytes(hd.volumeSize)}` : hd.reason;
        // Nothing before it can be opened without it; what follows is kept only if it is whole.
        await this.dropDamaged(`segment ${historyFileName(index)} is unreadable (${why})`);
        continue;
      }
      const seg: Segment = { index, file, bytes: file.size(), heads: 0 };
      this.segments.all.push(seg);
      const scan = await this.segments.scan(seg, heads.has(index), (head, position) => {
        if (head.kind === EntryKind.Point) {
          // (Marked by a unit never applied before a follow: the replica never stood there, streams.ts.)
          if (this.streams.unreached(head.point)) return;
          this.points.push({ seq: head.point, time: head.seq, segment: index, position, ...(head.offset > 0 ? { groupPoint: head.offset } : {}) });
          this.lastMarked = head.point;
          if (head.point <= applied) {
            startTag = head.point;
            tail = [];
          }
        } else {
          // (Also with no point at or before `applied` yet: the unit a crash cut may have
          // marked the history's first points and saved under them, group simulation seed
          // 581; redone without knowing it, it saved the replica's new bytes over a point's.)
          tail.push({ head, position, segment: index });
        }
      }, HISTORY_HEADER_SIZE);
      if (scan.end < seg.bytes) {
        const last = k === indexes.length - 1;
        this.logger[last ? 'info' : 'error']({ volume: this.name },
          `volume ${this.name}: history segment ${historyFileName(index)} ends at byte ${scan.end} of ${seg.bytes} (${scan.reason}); ` +
          (last ? 'a write the crash interrupted is cut' : 'the points before it cannot be opened and are dropped'));
        file.truncateSync(scan.end);
        seg.bytes = scan.end;
        if (!last) await this.dropThrough(this.segments.all.length - 1, 'damage');
      }
    }
    // Entries of segments that a damaged one after them took along (dropThrough) went with
    // them (replication simulation seed 421: read from a dropped segment, load threw).
    const kept = new Set(this.segments.all.map((s) => s.index));
    tail = tail.filter((t) => kept.has(t.segment));
    // The entries after the start point were written for units the crash may have cut:
    // their bytes are checked (a head whose data was torn would claim old bytes it lacks).
    for (let i = 0; i < tail.length; i++) {
      const t = tail[i]!;
      if (t.head.kind !== EntryKind.Saved) continue;
      const seg = this.segments.all.find((s) => s.index === t.segment);
      assert(seg !== undefined, () => `history: an entry of segment ${t.segment}, which is gone, was kept at load`);
      const data = await seg.file.read(t.position + 40, t.head.length);
      if (data.length !== t.head.length || crc32c(data) !== t.head.dataCrc) {
        this.logger.info({ volume: this.name },
          `volume ${this.name}: history cut at a write the crash interrupted (${historyFileName(t.segment)} byte ${t.position})`);
        seg.file.truncateSync(t.position);
        seg.bytes = t.position;
        this.segments.dropAfter(seg);
        this.points = this.points.filter((p) => p.segment < t.segment || (p.segment === t.segment && p.position < t.position));
        tail = tail.slice(0, i);
        await this.store.syncDir();
        break;
      }
    }
    this.lastMarked = this.points.length > 0 ? this.points[this.points.length - 1]!.seq : -1;
    this.tag = this.tagAtApplied = startTag;
    for (const t of tail) this.savedFor(t.head.point).fill(t.head.offset, t.head.offset + t.head.length, () => true);
    // (The first segment is made when the first entry is written.)
    this.thin(this.now());
  }

  private now(): number {
    return (this.settings.now ?? Date.now)();
  }

  /** Drops every segment up to index `k` of the list (their points cannot open any more). */
  private async dropThrough(k: number, why: 'age' | 'size' | 'damage'): Promise<void> {
    const before = this.points.length;
    const lastGone = await this.segments.dropOldest(k + 1);
    if (lastGone === null) return;
    this.points = this.points.filter((p) => p.segment > lastGone);
    if (why === 'size') {
      this.droppedForSize += before - this.points.length;
      const oldest = this.points[0];
      this.logger.warn({ volume: this.name }, `volume ${this.name}: history reached its max of ${formatBytes(this.settings.maxBytes ?? 0)}; ` +
        `${before - this.points.length} of its oldest restore points dropped` +
        (oldest ? `, it now reaches back to ${new Date(oldest.time).toISOString()}` : ''));
    }
  }

  private async dropDamaged(why: string): Promise<void> {
    this.logger.error({ volume: this.name }, `volume ${this.name}: ${why}; the history before it is dropped`);
    await this.dropThrough(this.segments.all.length - 1, 'damage');
  }

  /** Heads files written so far are on disk (a test waits for it; nothing else needs to). */
  headsWritten(): Promise<void> {
    return this.segments.headsWritten();
  }

  /**
   * The entries of segment `index` from byte `from` to `end` (how far it reached when a
   * past point's view began opening), from its heads file or by scanning it.
   */
  scanFrom(index: number, from: number, end: number, onEntry: (head: EntryHead, position: number) => void): Promise<ScanEnd> {
    return this.segments.scanFrom(index, from, end, onEntry);
  }

  private savedFor(point: number): ExtentMap<true> {
    let m = this.saved.get(point);
    if (!m) this.saved.set(point, (m = new ExtentMap<true>()));
    return m;
  }

  private get current(): Segment {
    return this.segments.current;
  }

  private append(head: EntryHead, data?: Buffer): SavedBytes | null {
    const seg = this.current;
    const position = seg.bytes;
    seg.file.appendSync(data ? [encodeEntryHead(head), data] : [encodeEntryHead(head)]);
    seg.bytes += 40 + (data?.length ?? 0);
    this.unsynced = true;
    if (head.kind === EntryKind.Point) {
      this.points.push({ seq: head.point, time: head.seq, segment: seg.index, position, ...(head.offset > 0 ? { groupPoint: head.offset } : {}) });
      return null;
    }
    return {
      segment: seg.index, dataPosition: position + 40, offset: head.offset, length: head.length, dataCrc: head.dataCrc,
      zero: head.kind === EntryKind.SavedZero,
    };
  }

  private isPoint(r: JournalRecord, ctx: CaptureContext): boolean {
    if (r.kind !== RecordKind.Barrier || r.seq < this.skipReach) return false;
    // In a round only its end is a point, but for a point a failed attempt at this unit
    // marked before the round opened (a barrier before the round, the primary's flush
    // point): the unit, applied again inside the round, saves under it again. Else what it
    // overwrites lands after that point's marker under an earlier point, and the point
    // opens to bytes from before it (replication simulation seed 1629, three sites).
    if (ctx.inRound) return (r.flags & FLAG_ROUND_END) !== 0 || this.find(this.h(r.seq)) !== null;
    return !ctx.group || groupPointOf(r) !== null;
  }

  /**
   * A unit begins right after record `unitStart`, the last one applied (a failed attempt
   * at it, if any, left what it saved and marked): it saves under the newest point at or
   * before it. (From the points, not from the last unit counted: an apply whose last
   * step failed after its writes, then a receive log reopened, leaves the replica at a
   * point no unitApplied saw, group simulation seed 9; or counts it applied up to an
   * earlier record than its writes reached, seed 41: the unit is then redone.)
   */
  beginUnit(unitStart: number): void {
    this.skipReach = 0;
    const start = this.h(unitStart);
    let newest: number | null = null;
    for (let i = this.points.length - 1; i >= 0; i--) {
      if (this.points[i]!.seq <= start) {
        newest = this.points[i]!.seq;
        break;
      }
    }
    this.tag = this.tagAtApplied = newest;
  }

  /**
   * Saves what `batch` (the next records of the unit, in order) overwrites on `volume`,
   * durably, before the apply writes it: each range once per restore point, with the
   * bytes it held at that point (those of an earlier record of this batch where one
   * wrote them, else the replica's). Restore points reached are marked. `inFlight`: the
   * records before the batch that are not (or not wholly) on the replica yet: their
   * bytes are taken from them, whatever a read of the replica found there.
   */
  async capture(volume: Disk, batch: readonly JournalRecord[], ctx: CaptureContext, inFlight: readonly JournalRecord[] = []): Promise<void> {
    if (await this.save(volume, batch, ctx, inFlight)) await this.sync();
  }

  /**
   * `capture` without its sync: appends what `batch` overwrites, and says whether it
   * saved any bytes (then `sync` makes them durable before the batch may be written).
   * The apply saves the next read while the sync of this one runs (apply-unit.ts).
   */
  save(volume: Disk, batch: readonly JournalRecord[], ctx: CaptureContext, inFlight: readonly JournalRecord[] = []): Promise<boolean> {
    const saving = this.saveBatch(volume, batch, ctx, inFlight);
    this.saving = saving;
    return saving;
  }

  /** The last `save` (it never fails: a failure restarts the history). */
  private saving: Promise<boolean> = Promise.resolve(false);

  private async saveBatch(volume: Disk, batch: readonly JournalRecord[], ctx: CaptureContext, inFlight: readonly JournalRecord[]): Promise<boolean> {
    if (this.restarting || this.disabled) return false;
    try {
      return await this.captureBatch(volume, batch, ctx, inFlight);
    } catch (e) {
      await this.restart(e as Error);
      return false;
    }
  }

  /**
   * Saving failed (a full disk, an I/O error): what was saved may have a hole, and a point
   * opened over it would be wrong. The history is dropped, with an error in the log, and
   * begins again at the end of the unit being applied (a flush point the replica then
   * holds whole); the replica's progress never waits for it. Once per unit: a second
   * failure meanwhile (a save and a sync under way together) waits for the same drop.
   */
  private restart(e: Error): Promise<void> {
    this.restarted ??= this.dropAfterFailure(e);
    return this.restarted;
  }

  private async dropAfterFailure(e: Error): Promise<void> {
    const lost = this.points.length;
    // Its points go, but not their numbers: the next are numbered past them (a held checkpoint names one by its seq).
    const used = Math.max(this.lastMarked, this.points.reduce((n, p) => Math.max(n, p.seq), -1));
    this.logger.error({ volume: this.name }, `volume ${this.name}: writing its history failed (${(e as NodeJS.ErrnoException).code ?? e.message}); ` +
      `its ${lost} restore points are dropped, and it begins again after the unit being applied`);
    this.segments.forget();
    this.points = [];
    this.saved.clear();
    this.tag = this.tagAtApplied = null;
    this.lastMarked = -1;
    this.unsynced = false;
    this.generation++;
    // The numbering is written down before any segment of the new history can be: a start
    // that found segments numbered past a streams file it lacks could not place them.
    const next = this.streams.restartPast(used);
    const written = await next.write(this.store).then(() => true, () => false);
    await History.drop(this.store, { keepStreams: true }).catch(() => undefined);
    if (written) {
      this.streams = next;
    } else {
      this.disabled = true;
      this.logger.error({ volume: this.name }, `volume ${this.name}: its history cannot write ${STREAMS_FILE} either; it keeps no history ` +
        'until the daemon starts again (make room on its disk)');
    }
  }

  /** Not even the numbering could be written after a failure: nothing is saved until the next start. */
  private disabled = false;

  /** The drop after a failure, until the unit being applied ends (see restart). */
  private restarted: Promise<void> | null = null;

  private get restarting(): boolean {
    return this.restarted !== null;
  }

  private async captureBatch(volume: Disk, batch: readonly JournalRecord[], ctx: CaptureContext, inFlight: readonly JournalRecord[]): Promise<boolean> {
    let savedAny = false;
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      if (r.kind === RecordKind.Skip) {
        this.skipReach = Math.max(this.skipReach, r.offset);
        continue;
      }
      if (r.kind === RecordKind.Barrier) {
        if (!this.isPoint(r, ctx) || (!ctx.capturing && (r.flags & FLAG_ROUND_END) === 0)) continue;
        const at = this.h(r.seq);
        if (at > this.lastMarked) {
          if (this.segments.all.length === 0) await this.segments.begin();
          this.append({ kind: EntryKind.Point, point: at, seq: r.time, offset: groupPointOf(r) ?? 0, length: 0, dataCrc: 0 });
          this.lastMarked = at;
        }
        this.tag = at;
        continue;
      }
      if (!ctx.capturing) continue;
      if (this.tag === null) {
        // The history begins at the image the replica holds now (its time is this site's clock).
        if (ctx.inRound) continue;
        const start = this.h(ctx.unitStart);
        assert(start >= this.lastMarked,
          () => `volume ${this.name}: history would begin at record ${ctx.unitStart} (${start}), before its newest point ${this.lastMarked}`);
        if (start > this.lastMarked) {
          if (this.segments.all.length === 0) await this.segments.begin();
          this.append({ kind: EntryKind.Point, point: start, seq: this.now(), offset: 0, length: 0, dataCrc: 0 });
          this.lastMarked = start;
        }
        // (The point the replica stands at: a unit tried again after a failed attempt starts from it.)
        this.tag = this.tagAtApplied = start;
      }
      const tag = this.tag;
      for (const part of this.savedFor(tag).fill(r.offset, r.offset + r.length, () => true)) {
        await this.saveRange(volume, inFlight, batch, i, part.start, part.end, tag, this.h(r.seq));
        savedAny = true;
      }
    }
    return savedAny;
  }

  /** Saves [start, end) as it is before record `batch[i]` (after those `inFlight`), a piece at a time. */
  private async saveRange(
    volume: Disk, inFlight: readonly JournalRecord[], batch: readonly JournalRecord[], i: number, start: number, end: number, tag: number, seq: number,
  ): Promise<void> {
    if (this.segments.all.length === 0) await this.segments.begin();
    const pieces = new PointBytes(volume, inFlight, batch, i);
    await pieces.findHoles(start, end);
    for (let at = start; at < end;) {
      const n = Math.min(HISTORY_READ_BYTES, end - at);
      const piece = await pieces.read(at, n);
      try {
        const head = piece.data === null ?
          { kind: EntryKind.SavedZero, point: tag, seq, offset: at, length: n, dataCrc: 0 } :
          { kind: EntryKind.Saved, point: tag, seq, offset: at, length: n, dataCrc: crc32c(piece.data) };
        // (Written at once, synchronously: the piece's buffer is free again after it.)
        this.tell(this.append(head, piece.data ?? undefined)!);
      } finally {
        piece.done();
      }
      at += n;
      if (this.current.bytes >= this.segmentBytes) await this.segments.begin();
    }
  }

  private tell(e: SavedBytes): void {
    for (const w of this.watchers) w.saved(e);
  }

  /**
   * Makes every entry written so far durable (before the replica writes they precede, and
   * before the applied counter moves past their points). Syncs may overlap (the apply
   * saves the next read meanwhile): each resolves once the ones before it have too. A
   * failed one restarts the history, once the save under way (if any) has ended: the
   * restart closes the files it appends to.
   */
  sync(): Promise<void> {
    if (!this.unsynced) return this.durable;
    this.unsynced = false;
    const before = this.durable;
    this.durable = this.current.file.sync().then(() => before, async (e: Error) => {
      await this.saving;
      await this.restart(e);
      await before;
    });
    return this.durable;
  }

  /** Resolves once every sync begun so far has ended (each a success, or the history restarted). */
  private durable: Promise<void> = Promise.resolve();

  /** A unit ended at record `to`: what was saved for points before the current one is no longer needed to save once. */
  async unitApplied(now = this.now()): Promise<void> {
    assert(!this.unsynced, () => `volume ${this.name}: a unit was counted applied before its history was durable`);
    this.tagAtApplied = this.tag;
    // (After a failure the history begins again with the next unit: the replica stands at a whole point now.)
    this.restarted = null;
    for (const k of [...this.saved.keys()]) if (this.tag === null || k < this.tag) this.saved.delete(k);
    if (now - this.lastKept >= 1000 || now < this.lastKept) {
      this.lastKept = now;
      await this.keep(now);
    }
  }

  /** Retention: whole old segments go by age and size (retention.ts), and old points are thinned. */
  async keep(now = this.now()): Promise<void> {
    const views = this.segments.all.map((s) => {
      const marked = this.points.filter((p) => p.segment === s.index);
      const newestPointTime = marked.length > 0 ? marked[marked.length - 1]!.time : null;
      return { bytes: s.bytes + s.heads, newestPointTime, pinned: marked.some((p) => this.pins.has(p.seq)) };
    });
    const { count, forSize } = segmentsToDrop(views, { ...this.settings, now });
    if (count > 0) await this.dropThrough(count - 1, forSize > 0 ? 'size' : 'age');
    this.thin(now);
    this.compactor.soon();
  }

  private thin(now: number): void {
    // (Never the point the replica stands at, nor the ones after it: a unit starts from them.)
    const from = this.tagAtApplied ?? -1;
    const kept = new Set(this.pins.keys());
    for (let i = this.points.length - 1; i >= 0 && this.points[i]!.seq >= from; i--) kept.add(this.points[i]!.seq);
    const before = this.points.length;
    this.points = thinPoints(this.points, now, kept);
    if (this.points.length < before) this.compactor.thinned();
  }

  /** Segments rewritten by compaction (for the simulation and tests), and the bytes that freed. */
  get compactions(): { segments: number; freedBytes: number } {
    return this.compactor.done;
  }

  /** The compaction under way has ended, its temporary file gone (tests; history turned off, before its files go). */
  compacted(): Promise<void> {
    return this.compactor.idle();
  }

  /** The restore points at or before record `upTo` (the replica's applied record), oldest first. */
  list(upTo: number): RestorePoint[] {
    const out: RestorePoint[] = [];
    const last = this.h(upTo);
    for (const p of this.points) if (p.seq <= last) out.push(this.named(p));
    return out;
  }

  private named(p: MarkedPoint): RestorePoint {
    const s = this.streams.of(p.seq);
    return {
      seq: p.seq, time: p.time, record: p.seq - s.base, ...(s.primary !== null ? { primary: s.primary } : {}),
      ...(p.groupPoint !== undefined ? { groupPoint: p.groupPoint } : {}),
    };
  }

  /** Point `seq` when it is listed with the replica applied up to record `applied` (list), else null. */
  listed(seq: number, applied: number): MarkedPoint | null {
    return seq <= this.h(applied) ? this.find(seq) : null;
  }

  /** The record of the stream received now that point `seq` is at; null for a point of a stream before a follow. */
  recordOf(seq: number): number | null {
    return seq >= this.streams.base ? seq - this.streams.base : null;
  }

  /**
   * The replica follows `next`, a new primary whose journal numbers its records from 1
   * (a failover elsewhere; `previous`: the one it followed until now), and stands at its
   * newest point: the points are kept, and those to come numbered on past them
   * (streams.ts). Durable on return; the next entries go to a segment of their own.
   */
  async follow(previous: string | null, next: string, applied: number): Promise<void> {
    // (Entries a failed apply saved and never synced: durable before the numbering moves on, or the history restarted.)
    await this.sync();
    assert(!this.unsynced, () => `volume ${this.name}: its history follows ${next} with entries not yet durable`);
    // Points a unit never applied marked (a failed attempt) stay unlisted for good: the replica never stood there.
    const stands = this.points.filter((p) => p.seq <= this.h(applied)).pop()?.seq ?? null;
    const streams = this.streams.follow(this.lastMarked, stands, previous, next);
    // The new journal's records from 1 on are points past every point held: a seq names one point for good.
    assert(streams.base > this.lastMarked && streams.base >= this.streams.base,
      () => `volume ${this.name}: its history would number ${next}'s records from ${streams.base + 1}, not past its newest point ${this.lastMarked}`);
    this.points = this.points.filter((p) => !streams.unreached(p.seq));
    if (this.segments.all.length > 0) await this.segments.begin();
    await streams.write(this.store);
    this.streams = streams;
    await this.segments.headsWritten(); // (the sealed segment's heads: written before the replica opens again on the new stream)
    this.logger.info({ volume: this.name }, `volume ${this.name}: its history keeps ${this.points.length} restore points across the follow of ${next}; ` +
      `those to come are numbered from ${streams.base + 1}`);
  }

  /** The listed point at `seq`, with its marker's place, or null. */
  find(seq: number): MarkedPoint | null {
    // (By halves: the points are in order of seq, and a past point's every read asks.)
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]!.seq < seq) lo = mid + 1;
      else hi = mid;
    }
    const p = this.points[lo];
    return p && p.seq === seq ? p : null;
  }

  get bytes(): number {
    return this.segments.bytes;
  }

  /** Keeps point `seq` listed and its segments kept by age while pinned. */
  pin(seq: number): void {
    this.pins.set(seq, (this.pins.get(seq) ?? 0) + 1);
  }

  unpin(seq: number): void {
    const n = (this.pins.get(seq) ?? 0) - 1;
    if (n <= 0) this.pins.delete(seq);
    else this.pins.set(seq, n);
  }

  watch(w: HistoryWatcher): () => void {
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  /** The segments from index `from` on and how far each reaches now (what a point's reader scans). */
  segmentsFrom(from: number): ReturnType<SegmentFiles['from']> {
    return this.segments.from(from);
  }

  /** Reads `length` bytes at `position` of segment `index`, or null when it is gone (retention dropped it). */
  readSegment(index: number, position: number, length: number): Promise<Buffer | null> {
    return this.segments.read(index, position, length);
  }

  close(): void {
    this.closed = true;
    this.generation++;
    this.segments.close();
  }

  private closed = false;
  /** One more at each close or drop after a failure: a compaction begun before does not commit. */
  private generation = 0;
}
