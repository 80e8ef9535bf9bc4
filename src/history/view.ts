// A past restore point, read (docs/HISTORY.md "Opening a point"): the replica's bytes,
// except where an apply overwrote them since the point, where the earliest bytes saved
// after it are the point's. Made by scanning the entry heads from the point's marker
// on, then kept current as the apply saves more (the replica moves on underneath).
// Nothing is copied: opening costs a scan of heads, reading costs the reads.
import { crc32c } from '../checksum/crc32c.js';
import type { Disk } from '../journal/disk.js';
import { DiskError } from '../export/backend.js';
import { HISTORY_VIEW_EXTENTS_MAX } from '../limits/limits.js';
import { ExtentMap } from './extent-map.js';
import { EntryKind, HISTORY_ENTRY_HEAD_SIZE, HISTORY_HEADER_SIZE } from './format.js';
import { GONE, type History, type MarkedPoint, type SavedBytes } from './history.js';

export class PointView {
  private readonly map = new ExtentMap<SavedBytes>();
  /** Entries saved while the scan runs: added after it (they are later than all it finds). */
  private pending: SavedBytes[] | null = [];
  private unwatch: () => void = () => undefined;
  private closed = false;
  private tooMany = false;
  /** The last saved entry read whole and checked (reads of one large entry come in pieces). */
  private cached: { segment: number; position: number; data: Buffer } | null = null;

  private constructor(
    private readonly history: History,
    readonly point: MarkedPoint,
    private readonly volume: Pick<Disk, 'read' | 'name'>,
    private readonly quiet: () => Promise<() => void>,
  ) {}

  /**
   * Opens `point` of `history` over the replica's `volume`; `quiet` resolves when no
   * unit is being applied and keeps the next from writing until its result is called
   * (a read of the replica never sees half of one).
   */
  static async open(history: History, point: MarkedPoint, volume: Pick<Disk, 'read' | 'name'>, quiet: () => Promise<() => void>): Promise<PointView> {
    const v = new PointView(history, point, volume, quiet);
    history.pin(point.seq);
    try {
      await v.build();
    } catch (e) {
      v.close();
      throw e;
    }
    return v;
  }

  /** The point as messages name it. */
  private get what(): string {
    return `the restore point of ${new Date(this.point.time).toISOString()}`;
  }

  private add(e: SavedBytes): void {
    this.map.fill(e.offset, e.offset + e.length, () => e);
    if (this.map.size > HISTORY_VIEW_EXTENTS_MAX) this.tooMany = true;
  }

  private async build(): Promise<void> {
    // Watching and the scan's end are taken in one turn: every entry is in one or the other.
    this.unwatch = this.history.watch({ saved: (e) => (this.pending ? this.pending.push(e) : this.add(e)) });
    const segments = this.history.segmentsFrom(this.point.segment);
    for (const s of segments) {
      const from = s.index === this.point.segment ? this.point.position : HISTORY_HEADER_SIZE;
      // (A sealed segment's heads from its heads file: some megabytes, not a walk through its saved bytes.)
      const scan = await this.history.scanFrom(s.index, from, s.end, (head, position) => {
        if (head.kind === EntryKind.Point) return;
        this.add({
          segment: s.index, dataPosition: position + HISTORY_ENTRY_HEAD_SIZE, offset: head.offset, length: head.length,
          dataCrc: head.dataCrc, zero: head.kind === EntryKind.SavedZero,
        });
      });
      if (scan.reason === GONE) {
        throw new DiskError('ESTALE', `${this.what} of ${this.volume.name} left the history (its max was reached)`);
      }
      if (scan.end < s.end) {
        throw new DiskError('EIO', `the history of ${this.volume.name} is damaged at byte ${scan.end} of segment ${s.index} (${scan.reason})`);
      }
      if (this.tooMany) break;
    }
    for (const e of this.pending!) this.add(e);
    this.pending = null;
    if (this.tooMany) {
      throw new DiskError('E2BIG', `${this.what} of ${this.volume.name} is too far back to open: more than ` +
        `${HISTORY_VIEW_EXTENTS_MAX} ranges changed since; open a newer one`);
    }
  }

  private check(): void {
    if (this.closed) throw new DiskError('ESTALE', `${this.what} of ${this.volume.name} was closed`);
    if (this.tooMany) throw new DiskError('E2BIG', `${this.what} of ${this.volume.name} changed in too many ranges to follow`);
    // (By its time too: a seq names one point for good, streams.ts, and this guards that.)
    const listed = this.history.find(this.point.seq);
    if (!listed || listed.time !== this.point.time) {
      throw new DiskError('ESTALE', `${this.what} of ${this.volume.name} left the history (its max was reached)`);
    }
  }

  /** The image at the point: [offset, offset+length) into `into` at `at`. */
  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.check();
    // No unit writes while this reads (what it overwrites is saved, and in the map, before it writes).
    const done = await this.quiet();
    try {
      for (const part of this.map.parts(offset, offset + length)) {
        if (part.extent) await this.readSaved(part.extent.value, part.start, part.end, into, at + part.start - offset);
        else await this.volume.read(part.start, into, at + part.start - offset, part.end - part.start);
      }
    } finally {
      done();
    }
    this.check();
  }

  private async readSaved(e: SavedBytes, start: number, end: number, into: Buffer, at: number): Promise<void> {
    if (e.zero) {
      into.fill(0, at, at + end - start);
      return;
    }
    let data = this.cached && this.cached.segment === e.segment && this.cached.position === e.dataPosition ? this.cached.data : null;
    if (!data) {
      const read = await this.history.readSegment(e.segment, e.dataPosition, e.length);
      if (!read) throw new DiskError('ESTALE', `${this.what} of ${this.volume.name} left the history (its max was reached)`);
      if (read.length !== e.length || crc32c(read) !== e.dataCrc) {
        throw new DiskError('EIO', `the history of ${this.volume.name} is damaged: saved bytes at ${e.offset} (segment ${e.segment}, byte ${e.dataPosition}) ` +
          'fail their checksum');
      }
      data = read;
      this.cached = { segment: e.segment, position: e.dataPosition, data };
    }
    data.copy(into, at, start - e.offset, end - e.offset);
  }

  /**
   * Writes the point's bytes back over every range of `volume` changed since it (a
   * promote to a past point): afterwards the volume is the image at the point. Flushed
   * on return; idempotent (a crash part-way is redone the same). Bytes written back.
   */
  async restore(volume: Pick<Disk, 'write' | 'punch' | 'writeZeroes' | 'flush'>): Promise<number> {
    this.check();
    let bytes = 0;
    for (const part of this.map.parts(0, Number.MAX_SAFE_INTEGER)) {
      if (!part.extent) continue;
      const e = part.extent.value;
      const n = part.end - part.start;
      if (e.zero) {
        if (!(await volume.punch(part.start, n))) await volume.writeZeroes(part.start, n, { fua: false, mayTrim: false, fast: false });
      } else {
        const data = Buffer.alloc(n);
        await this.readSaved(e, part.start, part.end, data, 0);
        await volume.write(part.start, data, false);
      }
      bytes += n;
    }
    await volume.flush();
    return bytes;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    this.history.unpin(this.point.seq);
  }
}
