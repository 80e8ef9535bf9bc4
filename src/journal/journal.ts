// The change journal: an ordered, durable, bounded queue of host writes in
// segment files, read in order by the shipper and released only on the peer's
// durable ack. See docs/JOURNAL.md for the format and the rules.
import { crc32c } from '@node-rs/crc32';
import type { Store, StoreFile } from './store.js';
import { assert } from '../invariants/assert.js';
import { READ_BATCH_BYTES } from '../limits/limits.js';
import {
  FLAG_FUA, FLAG_RESYNC, RECORD_HEADER_SIZE, RecordKind, SEGMENT_HEADER_SIZE, decodeRecordHeader, decodeSegmentHeader,
  encodeRecordHeader, encodeSegmentHeader, formatVolumeId, payloadMatches, recordSize, volumeId, type JournalRecord, type RecordHeader,
  SEGMENT_FILE_FORMAT,
} from './record.js';
import { NewerFormatError, isNewer, magicDigit, type FileFormat } from '../versioning/format.js';

const SEGMENT_NAME = /^(\d{20})\.seg$/;
const segmentName = (baseSeq: number): string => `${String(baseSeq).padStart(20, '0')}.seg`;
/** Samples for lag and backlog: one per 100 ms or 1 MiB of journal, at most this many. */
const MAX_SAMPLES = 65536;

interface Segment {
  name: string;
  baseSeq: number;
  /** Last record's seq; baseSeq - 1 while empty. */
  lastSeq: number;
  file: StoreFile;
  /** Bytes appended since this segment's last sync. */
  unsynced: boolean;
  /** Bytes the segment holds once queued writes land (what capacity counts). */
  reserved: number;
  /** Reads in progress: a removed segment's file is closed only when none are. */
  readers: number;
  removed: boolean;
}

interface Sample {
  seq: number;
  /** Journal stream position before this record. */
  pos: number;
  time: number;
}

/** The range a host record covers on the volume. */
interface Range {
  offset: number;
  length: number;
}

/** A range whose record was lost or damaged: the volume must resync it. */
export interface LostRange {
  offset: number;
  length: number;
}

export interface RecoveryReport {
  records: number;
  segments: number;
  /** Bytes cut from a torn tail. */
  tornBytes: number;
  /** Operator messages: what was found and what was done. */
  notes: string[];
  /** Damage before the tail: these ranges (or, if `unknownLoss`, the whole volume) need a resync. */
  lost: LostRange[];
  unknownLoss: boolean;
  /**
   * The journal cannot be read through (damage before its tail): every record's
   * range was passed to `onRecord`, and the journal must be folded from those.
   */
  damaged: boolean;
}

export interface JournalOptions {
  store: Store;
  /** Bytes the journal may use on disk. */
  capacity: number;
  /** Target segment size; segments are freed whole. */
  segmentSize?: number;
  now?: () => number;
  /**
   * A receive log: recovery keeps only the longest intact prefix and drops
   * everything after the first damage or gap (the peer sends it again), where a
   * journal keeps later records and reports the damaged ranges for resync.
   */
  prefixOnly?: boolean;
  /**
   * The volume this journal belongs to: every new segment names it, and recovery
   * refuses a segment that names another one (two volumes must never share a journal
   * folder: the other's records would be shipped to this one's replica). Absent: the
   * segments name no volume and none is checked.
   */
  volume?: JournalVolume;
}

export interface JournalVolume {
  /** For messages. */
  name: string;
  /**
   * Its UUID now (identity.json), read at each new segment and at recovery; '' while
   * it has none (a secondary before its first link adopts the primary's).
   */
  uuid(): string;
}

/**
 * Recovery found a segment that names another volume. Nothing was read, changed or
 * removed: refusing to open is the safe choice (dropping it as damaged would lose
 * the other volume's unshipped writes; reading it would corrupt this one's replica).
 */
export class ForeignSegmentError extends Error {
  constructor(
    readonly volume: string,
    /** Its uuid, and the other volume's (the first foreign segment's). */
    readonly uuid: string,
    readonly owner: string,
    readonly segment: string,
    readonly count: number,
  ) {
    super(`journal of volume ${volume}: ${ForeignSegmentError.explain(volume, uuid, owner, segment, count)}`);
  }

  /** The message without its "journal of volume NAME: " opening; `ownerName` when the caller knows whose uuid it is. */
  detail(ownerName?: string): string {
    return ForeignSegmentError.explain(this.volume, this.uuid, this.owner, this.segment, this.count, ownerName);
  }

  private static explain(volume: string, uuid: string, owner: string, segment: string, count: number, ownerName?: string): string {
    const which = count === 1 ? `segment ${segment} belongs` : `${count} segments (${segment} first) belong`;
    const other = ownerName ? `volume ${ownerName} (uuid ${owner})` : `another volume (uuid ${owner})`;
    return `${which} to ${other}, not to ${volume} (uuid ${uuid}): two volumes have shared this journal folder, ` +
      'and reading it would send the other volume\'s writes to this one\'s replica. Nothing was read, changed or removed. ' +
      'Give each volume a journal folder of its own (volumes.NAME.journal_dir), move the other volume\'s segments to its folder ' +
      '(a segment names its volume\'s uuid at bytes 40..56), and start again; ' +
      `if writes of ${volume} were lost to the sharing, \`offsite verify ${volume} --repair\` resends the regions that differ`;
  }
}

export type AppendResult = number | 'full';

export class Journal {
  readonly capacity: number;
  readonly segmentSize: number;
  private readonly store: Store;
  private readonly now: () => number;
  private segments: Segment[] = [];
  private used = 0;
  private dirChanged = false;
  /** Next record's seq (seqs start at 1). */
  nextSeq = 1;
  /** The open epoch: records appended now belong to it. */
  epoch = 1;
  private epochHasWrites = false;
  /** Bytes of host changes in the open epoch (bounded by the write path's maxEpochBytes). */
  openEpochBytes = 0;
  /** Highest seq the peer acked as durable and the journal let go of. */
  released = 0;
  /** Highest seq covered by a completed sync. */
  durableSeq = 0;
  /** Stream position (bytes ever appended); with `samples`, gives backlog bytes. */
  private streamEnd = 0;
  private samples: Sample[] = [];
  /** Totals for rates. */
  appendedBytes = 0;
  releasedBytes = 0;
  hostBytes = 0;
  private readonly waiters = new Set<() => void>();

  constructor(opts: JournalOptions) {
    this.store = opts.store;
    this.capacity = opts.capacity;
    this.segmentSize = opts.segmentSize ?? Math.min(64 << 20, Math.max(1 << 20, Math.floor(opts.capacity / 8)));
    this.now = opts.now ?? Date.now;
    this.prefixOnly = opts.prefixOnly ?? false;
    this.volume = opts.volume ?? null;
  }

  private readonly prefixOnly: boolean;
  private readonly volume: JournalVolume | null;

  /** What a new segment header names: this journal's volume, if it has an identity yet. */
  private volumeId(): Buffer | null {
    return this.volume ? volumeId(this.volume.uuid()) : null;
  }

  // --- figures --------------------------------------------------------------

  get usedBytes(): number {
    return this.used;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  get backlogRecords(): number {
    return this.lastSeq - this.released;
  }

  /** Bytes of records not yet released (over-estimates by at most one sample step). */
  get backlogBytes(): number {
    if (this.backlogRecords === 0) return 0;
    const s = this.sampleCovering(this.released + 1);
    return this.streamEnd - (s?.pos ?? 0);
  }

  /** Age in ms of the oldest unreleased record (0 when none). */
  lagMs(now = this.now()): number {
    if (this.backlogRecords === 0) return 0;
    const s = this.sampleCovering(this.released + 1);
    return s ? Math.max(0, now - s.time) : 0;
  }

  get openEpochHasWrites(): boolean {
    return this.epochHasWrites;
  }

  // --- writing ----------------------------------------------------------------

  /** Appends a host write/zeroes/trim record (page cache; durable at the next sync). */
  append(kind: RecordKind.Write | RecordKind.Zeroes | RecordKind.Trim, offset: number, length: number, payload: Buffer | null, fua = false): AppendResult {
    const seq = this.put({ kind, flags: fua ? FLAG_FUA : 0, seq: this.nextSeq, epoch: this.epoch, offset, length, time: this.now() }, payload);
    if (seq !== 'full') {
      this.epochHasWrites = true;
      this.hostBytes += length;
      this.openEpochBytes += recordSize(kind, length);
    }
    return seq;
  }

  /** Appends a resync record (a dirty region's current content), not counted as host bytes. */
  appendResync(kind: RecordKind.Write | RecordKind.Zeroes, offset: number, length: number, payload: Buffer | null): AppendResult {
    const seq = this.put({ kind, flags: FLAG_RESYNC, seq: this.nextSeq, epoch: this.epoch, offset, length, time: this.now() }, payload);
    if (seq !== 'full') {
      this.epochHasWrites = true;
      if (kind === RecordKind.Write) this.resyncBytes += length;
      this.openEpochBytes += recordSize(kind, length);
    }
    return seq;
  }

  /** Data bytes of resync records appended (zero runs travel as 56-byte Zeroes records and are not counted). */
  resyncBytes = 0;

  /**
   * A receive log whose records up to `seq` are superseded (the peer folded them into
   * a resync round): when everything here is applied and released, numbering
   * continues at seq + 1. Durable with the next sync.
   */
  jumpTo(seq: number): void {
    if (this.backlogRecords !== 0) throw new Error(`receive log: cannot skip to ${seq + 1} with ${this.backlogRecords} records unreleased`);
    if (seq <= this.lastSeq) return;
    this.restartAfter(seq);
  }

  /** An empty (all released) log continues after `seq`; the next sync writes the release point down. */
  private restartAfter(seq: number): void {
    for (const old of this.segments.splice(0)) {
      this.used -= old.reserved;
      this.drop(old);
    }
    this.nextSeq = seq + 1;
    this.released = seq;
    this.writtenSeq = Math.max(this.writtenSeq, seq);
    this.durableSeq = Math.max(this.durableSeq, seq);
    this.forceSegment = true;
    this.releasePending = true;
  }

  /**
   * Appends a record received from the peer, keeping its seq and epoch (the
   * secondary's receive log). The seq must follow the last one; an empty log may
   * start at any seq (a new segment begins there).
   */
  appendReceived(h: RecordHeader, payload: Buffer | null): AppendResult {
    if (h.seq !== this.nextSeq) {
      if (this.backlogRecords !== 0) throw new Error(`receive log: record ${h.seq} does not follow ${this.lastSeq}`);
      // Everything here is released: start over at the peer's numbering.
      this.restartAfter(h.seq - 1);
    }
    const seq = this.put(h, payload);
    if (seq !== 'full') {
      this.epoch = h.kind === RecordKind.Barrier ? h.epoch + 1 : h.epoch;
      this.hostBytes += h.length;
    }
    return seq;
  }

  private forceSegment = false;
  private releasePending = false;

  /**
   * Closes the open epoch with a barrier record, if it has any writes.
   */
  barrier(flags = 0, force = false): AppendResult | null {
    if (!this.epochHasWrites && !force) return null;
    const seq = this.put({ kind: RecordKind.Barrier, flags, seq: this.nextSeq, epoch: this.epoch, offset: 0, length: 0, time: this.now() }, null);
    if (seq === 'full') return seq;
    this.epoch++;
    this.epochHasWrites = false;
    this.openEpochBytes = 0;
    return seq;
  }

  /** True when a record of this kind and length fits now. */
  fits(kind: RecordKind, length: number): boolean {
    return this.used + recordSize(kind, length) + SEGMENT_HEADER_SIZE <= this.capacity;
  }

  private put(h: RecordHeader, payload: Buffer | null): AppendResult {
    const size = recordSize(h.kind, h.length);
    let seg = this.segments[this.segments.length - 1];
    if (this.broken) throw this.broken;
    const needSegment = !seg || this.forceSegment || (seg.reserved + size > this.segmentSize && seg.lastSeq >= seg.baseSeq);
    if (this.used + size + (needSegment ? SEGMENT_HEADER_SIZE : 0) > this.capacity) return 'full';
    if (needSegment) {
      seg = this.openSegment(h.seq);
      this.forceSegment = false;
    }
    // Seqs run without a gap: recovery, resume and release all count on it.
    assert(h.seq === this.nextSeq, () => `journal: record ${h.seq} appended where ${this.nextSeq} is next`);
    assert(h.kind !== RecordKind.Write || (payload !== null && payload.length === h.length), () => `journal: write record ${h.seq} of ${h.length} bytes carries ${payload?.length ?? 'no'} payload`);
    const header = encodeRecordHeader(h, payload);
    this.enqueue(seg!, h.seq, payload && payload.length > 0 ? [header, payload] : [header], h.kind === RecordKind.Barrier ? null : { offset: h.offset, length: h.length });
    seg!.lastSeq = h.seq;
    this.used += size;
    assert(this.used <= this.capacity, () => `journal: ${this.used} bytes used of a capacity of ${this.capacity}`);
    this.appendedBytes += size;
    this.sample(h.seq, h.time, size);
    this.nextSeq = h.seq + 1;
    return h.seq;
  }

  // --- the append queue -------------------------------------------------------
  // Records are written in order by one writer on the thread pool, batched: while
  // one writev is in flight the next records gather, and go in the next one. One
  // at a time and in order means a crash can tear only the tail, never leave a
  // hole; off the event loop means the host's requests keep flowing meanwhile.

  private readonly queue: Array<{ seg: Segment; at: number; parts: Buffer[]; bytes: number; seq: number; range: Range | null }> = [];
  /**
   * The ranges of records appended but dropped unwritten when the journal broke: they
   * are in no file, yet their host writes may be on the volume, so a fold must see them.
   */
  private unwritten: Range[] = [];
  private writing = false;
  /** Every record up to this seq is in the page cache (readable, syncable). */
  writtenSeq = 0;
  /** Set when a journal write failed: nothing more can be appended. */
  broken: Error | null = null;
  private readonly written: Array<{ seq: number; resolve: () => void; reject: (e: Error) => void }> = [];

  private enqueue(seg: Segment, seq: number, parts: Buffer[], range: Range | null = null): void {
    const bytes = parts.reduce((n, p) => n + p.length, 0);
    this.queue.push({ seg, at: seg.reserved, parts, bytes, seq, range });
    seg.reserved += bytes;
    this.pump();
  }

  /** Resolves when record `seq` is in the page cache; rejects if the journal write failed. */
  whenWritten(seq: number): Promise<void> {
    if (seq <= this.writtenSeq) return Promise.resolve();
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => this.written.push({ seq, resolve, reject }));
  }

  private pump(): void {
    // Writes for a segment dropped meanwhile (all released, or an empty tail) are moot.
    while (this.queue.length > 0 && this.queue[0]!.seg.removed) {
      const q = this.queue.shift()!;
      if (q.seq > this.writtenSeq) this.writtenSeq = q.seq;
    }
    if (this.writing || this.queue.length === 0) return;
    const first = this.queue[0]!;
    let n = 1;
    let end = first.at + first.bytes;
    let bytes = first.bytes;
    while (n < this.queue.length && n < 1024 && bytes < 16 << 20) {
      const q = this.queue[n]!;
      if (q.seg !== first.seg || q.at !== end) break;
      end += q.bytes;
      bytes += q.bytes;
      n++;
    }
    const batch = this.queue.splice(0, n);
    this.writing = true;
    const parts = batch.flatMap((q) => q.parts);
    const seg = first.seg;
    seg.readers++; // the file stays open while this write runs, even if the segment is dropped
    seg.file.writev(first.at, parts).then(() => {
      first.seg.unsynced = true;
      const top = batch[batch.length - 1]!.seq;
      if (top > this.writtenSeq) this.writtenSeq = top;
      this.settleWritten();
    }, (e: Error) => {
      this.broken = e;
      for (const q of [...batch, ...this.queue]) if (q.range) this.unwritten.push(q.range);
      this.queue.length = 0;
      this.settleWritten();
    }).finally(() => {
      if (--seg.readers === 0 && seg.removed) seg.file.close();
      this.writing = false;
      this.pump();
      for (const w of this.waiters) w();
    });
  }

  private settleWritten(): void {
    for (let i = this.written.length - 1; i >= 0; i--) {
      const w = this.written[i]!;
      if (w.seq <= this.writtenSeq) {
        this.written.splice(i, 1);
        w.resolve();
      } else if (this.broken) {
        this.written.splice(i, 1);
        w.reject(this.broken);
      }
    }
  }

  /** Resolves when every queued write has landed (or failed). */
  drained(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const w = (): void => {
        if (!this.writing && this.queue.length === 0) {
          this.waiters.delete(w);
          resolve();
        }
      };
      this.waiters.add(w);
    });
  }

  private openSegment(baseSeq: number): Segment {
    const name = segmentName(baseSeq);
    const file = this.store.create(name);
    const seg: Segment = { name, baseSeq, lastSeq: baseSeq - 1, file, unsynced: true, readers: 0, removed: false, reserved: 0 };
    this.enqueue(seg, baseSeq - 1, [encodeSegmentHeader({ baseSeq, baseEpoch: this.epoch, created: this.now(), volume: this.volumeId() })]);
    this.segments.push(seg);
    this.used += SEGMENT_HEADER_SIZE;
    this.dirChanged = true;
    return seg;
  }

  private sample(seq: number, time: number, size: number): void {
    const last = this.samples[this.samples.length - 1];
    if (!last || time - last.time >= 100 || this.streamEnd - last.pos >= 1 << 20) {
      this.samples.push({ seq, pos: this.streamEnd, time });
      if (this.samples.length > MAX_SAMPLES) this.samples = this.samples.filter((_, i) => i % 2 === 0 || i === this.samples.length - 1);
    }
    this.streamEnd += size;
  }

  /** The latest sample at or before `seq`: its time and position bound the record's from below. */
  private sampleCovering(seq: number): Sample | undefined {
    let lo = 0;
    let hi = this.samples.length - 1;
    let found: Sample | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.samples[mid]!.seq <= seq) {
        found = this.samples[mid];
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found ?? this.samples[0];
  }

  /** Makes every appended record durable. Returns the seq it covers. */
  async sync(): Promise<number> {
    const upTo = this.lastSeq;
    await this.drained();
    if (this.broken) throw this.broken;
    if (this.releasePending) {
      this.releasePending = false;
      try {
        await this.persistReleased(this.released);
      } catch (e) {
        this.releasePending = true;
        throw e;
      }
    }
    const dirty = this.segments.filter((s) => s.unsynced);
    for (const s of dirty) s.unsynced = false;
    const dir = this.dirChanged;
    this.dirChanged = false;
    const applied = this.appliedUnsynced ? this.appliedFile : null;
    this.appliedUnsynced = false;
    try {
      await Promise.all([...dirty.map((s) => this.syncSegment(s)), applied ? applied.sync() : undefined, dir ? this.store.syncDir() : undefined]);
    } catch (e) {
      for (const s of dirty) s.unsynced = true;
      if (dir) this.dirChanged = true;
      if (applied) this.appliedUnsynced = true;
      throw e;
    }
    this.durableSeq = Math.max(this.durableSeq, upTo);
    assert(this.durableSeq <= this.lastSeq, () => `journal: durable up to ${this.durableSeq} but records end at ${this.lastSeq}`);
    return upTo;
  }

  // --- releasing --------------------------------------------------------------

  /**
   * The peer holds everything up to `seq` durably: free whole segments it covers.
   * The caller must have made the local volume durable for these records first.
   */
  async release(seq: number): Promise<void> {
    if (Math.min(seq, this.lastSeq) > this.released) {
      const before = this.backlogBytes;
      this.released = Math.min(seq, this.lastSeq);
      // Released records are gone for good: only what is durable here may go (the caller
      // synced first; a broken journal's records are covered by the dirty bitmap instead),
      // and on a primary only what the peer acked (invariant 2, the shipper).
      assert(this.released <= this.durableSeq || this.broken !== null, () => `journal: released up to ${this.released} but durable only up to ${this.durableSeq}`);
      this.releasedBytes += before - this.backlogBytes;
      // Drop samples wholly behind the release point, keeping the one covering released+1.
      let keepFrom = 0;
      for (let i = 0; i < this.samples.length; i++) if (this.samples[i]!.seq <= this.released + 1) keepFrom = i;
      if (keepFrom > 0) this.samples.splice(0, keepFrom);
    }
    // (A release that failed part-way, say on a full disk, is retried by the next call.)
    const upTo = this.released;
    // Free closed segments whose every record is released; the tail stays for appends
    // unless it too is fully released and over its target size.
    const tail = this.segments[this.segments.length - 1];
    if (tail && tail.lastSeq <= upTo && tail.lastSeq >= tail.baseSeq && tail.reserved >= this.segmentSize) {
      try {
        this.openSegment(this.nextSeq); // an empty tail keeps the numbering; the full one can go
      } catch {
        // Disk full: keep the old tail for now.
      }
    }
    if (this.segments.length < 2 || this.segments[0]!.lastSeq > upTo) return;
    // The release point is made durable before any segment goes: after a power loss
    // a removed segment may come back, and recovery must know it was released.
    await this.persistReleased(upTo);
    while (this.segments.length > 1) {
      const s = this.segments[0]!;
      if (s.lastSeq > this.releasedDurable) break;
      assert(s.lastSeq <= this.released, () => `journal: dropping segment ${s.name} (to record ${s.lastSeq}) past the release point ${this.released}`);
      this.segments.shift();
      this.used -= s.reserved;
      this.drop(s);
    }
    assert(this.used >= 0, () => `journal: ${this.used} bytes used`);
  }

  /** Unlinks a segment; its file closes once no read is using it. */
  private drop(s: Segment): void {
    s.removed = true;
    this.store.remove(s.name);
    this.dirChanged = true;
    if (s.readers === 0) s.file.close();
  }

  /** Highest released seq known to be on disk in the `released` file. */
  private releasedDurable = 0;
  private releasing: Promise<void> = Promise.resolve();

  private persistReleased(upTo: number): Promise<void> {
    // A failed write of the counter must not poison the chain: the next release retries.
    this.releasing = this.releasing.catch(() => undefined).then(async () => {
      if (upTo <= this.releasedDurable) return;
      const b = encodeCounter(RELEASED_MAGIC, upTo);
      let f: StoreFile;
      const created = !this.store.list().includes(RELEASED_FILE);
      f = created ? this.store.create(RELEASED_FILE) : this.store.open(RELEASED_FILE);
      try {
        f.writeSync(0, b);
        await f.sync();
        if (created) await this.store.syncDir();
      } finally {
        f.close();
      }
      this.releasedDurable = Math.max(this.releasedDurable, upTo);
    });
    return this.releasing;
  }

  private async readReleased(): Promise<number> {
    return readCounter(this.store, RELEASED_FILE, RELEASED_MAGIC, RELEASED_FORMAT);
  }

  /**
   * Records that every volume write up to `seq` is durable (a sync covering them
   * completed). Written to the page cache now and synced with the next sync, so
   * whatever value is on disk after any crash was true: recovery replays the
   * records after it onto the volume.
   */
  markApplied(seq: number): void {
    if (seq <= this.appliedMarked) return;
    assert(seq <= this.lastSeq, () => `journal: applied marked at ${seq}, past the last record ${this.lastSeq}`);
    this.appliedMarked = seq;
    this.appliedFile ??= this.store.list().includes(APPLIED_FILE) ? this.store.open(APPLIED_FILE) : this.createCounterFile(APPLIED_FILE);
    try {
      this.appliedFile.writeSync(0, encodeCounter(APPLIED_MAGIC, seq));
      this.appliedUnsynced = true;
    } catch {
      // Disk full: the older value stays, which only means a longer replay.
    }
  }

  private createCounterFile(name: string): StoreFile {
    this.dirChanged = true;
    return this.store.create(name);
  }

  private appliedMarked = 0;
  private appliedFile: StoreFile | null = null;
  private appliedUnsynced = false;
  /** From the `applied` file at recovery: replay starts after it. */
  appliedOnDisk = 0;

  /**
   * Empties the journal (after its ranges were folded into the dirty bitmap).
   * The last segment is kept and rewritten in place as an empty segment that
   * carries nextSeq and the epoch across restarts: this needs no new disk space,
   * so it works on a full disk too.
   */
  /**
   * Before clear(): records that everything up to lastSeq is let go, durably, so the
   * numbering continues after it even if the emptied journal is all that survives.
   */
  async releaseAllDurably(): Promise<void> {
    await this.persistReleased(this.lastSeq);
  }

  clear(): void {
    this.broken = null; // the queue is drained; whatever failed is folded into the bitmap
    this.unwritten = [];
    const keep = this.segments.pop();
    for (const s of this.segments) this.drop(s);
    this.segments = [];
    this.used = 0;
    this.released = this.lastSeq;
    this.samples = [];
    this.dirChanged = true;
    if (!keep) {
      try {
        this.openSegment(this.nextSeq);
      } catch {
        // Disk full: the first append will try again.
      }
      return;
    }
    try {
      // (A version 1 segment kept here becomes a version 2 one naming this volume.)
      keep.file.writeSync(0, encodeSegmentHeader({ baseSeq: this.nextSeq, baseEpoch: this.epoch, created: this.now(), volume: this.volumeId() }));
      keep.file.truncateSync(SEGMENT_HEADER_SIZE);
    } catch {
      this.drop(keep); // disk full and no header to rewrite: the next append starts a segment
      return;
    }
    keep.reserved = SEGMENT_HEADER_SIZE;
    keep.baseSeq = this.nextSeq;
    keep.lastSeq = this.nextSeq - 1;
    keep.unsynced = true;
    this.segments.push(keep);
    this.used = SEGMENT_HEADER_SIZE;
  }

  // --- reading ----------------------------------------------------------------

  /**
   * Records from `fromSeq` in order, up to about `maxBytes` (at least one record)
   * and not past `limitSeq`. Streams from disk: the backlog is never held in memory.
   */
  async read(fromSeq: number, maxBytes: number, limitSeq = this.writtenSeq): Promise<JournalRecord[]> {
    const out: JournalRecord[] = [];
    if (fromSeq > limitSeq) return out;
    const segIndex = this.segments.findIndex((s) => s.baseSeq <= fromSeq && fromSeq <= s.lastSeq);
    if (segIndex < 0) throw new Error(`journal no longer holds record ${fromSeq} (released up to ${this.released})`);
    let bytes = 0;
    // A snapshot: releases may drop segments while this read awaits the disk.
    const segments = this.segments.slice(segIndex);
    for (const seg of segments) {
      if (bytes >= maxBytes) break;
      let pos = SEGMENT_HEADER_SIZE;
      const end = Math.min(seg.file.size(), seg.reserved);
      while (pos < end && bytes < maxBytes && !seg.removed) {
        const head = await this.readFrom(seg, pos, RECORD_HEADER_SIZE);
        if (seg.removed) break; // released meanwhile: nobody needs it any more
        const h = decodeRecordHeader(head);
        if (!h.ok) throw new Error(`journal segment ${seg.name} at byte ${pos}: ${h.reason}`);
        const size = RECORD_HEADER_SIZE + h.payloadLength;
        if (h.header.seq > limitSeq) return out;
        if (h.header.seq >= fromSeq) {
          const payload = h.payloadLength > 0 ? await this.readFrom(seg, pos + RECORD_HEADER_SIZE, h.payloadLength) : EMPTY;
          if (seg.removed) break; // released meanwhile: nobody needs it any more
          if (!payloadMatches(payload, h.payloadCrc)) {
            throw new Error(`journal segment ${seg.name} at byte ${pos}: record ${h.header.seq} payload checksum mismatch`);
          }
          out.push({ ...h.header, payload });
          bytes += size;
        }
        pos += size;
      }
    }
    return out;
  }

  private async syncSegment(seg: Segment): Promise<void> {
    if (seg.removed) return;
    seg.readers++;
    try {
      await seg.file.sync();
    } finally {
      if (--seg.readers === 0 && seg.removed) seg.file.close();
    }
  }

  private async readFrom(seg: Segment, pos: number, length: number): Promise<Buffer> {
    if (seg.removed) return EMPTY;
    seg.readers++;
    try {
      return await seg.file.read(pos, length);
    } finally {
      if (--seg.readers === 0 && seg.removed) seg.file.close();
    }
  }

  /** Resolves when a record past `seq` is written (or at once if there is one). */
  waitFor(seq: number): Promise<void> {
    if (this.writtenSeq > seq) return Promise.resolve();
    return new Promise((resolve) => {
      const w = (): void => {
        if (this.writtenSeq > seq || this.broken) {
          this.waiters.delete(w);
          resolve();
        }
      };
      this.waiters.add(w);
    });
  }

  /**
   * Visits the range of every unreleased host record (for folding into the bitmap),
   * those that never reached the file because the journal broke included.
   */

  async forEachUnreleased(visit: (offset: number, length: number) => void): Promise<void> {
    await this.drained();
    let from = this.released + 1;
    while (from <= this.writtenSeq) {
      const batch = await this.read(from, READ_BATCH_BYTES);
      if (batch.length === 0) break;
      for (const r of batch) if (r.kind !== RecordKind.Barrier) visit(r.offset, r.length);
      from = batch[batch.length - 1]!.seq + 1;
    }
    for (const r of this.unwritten) visit(r.offset, r.length);
  }

  close(): void {
    for (const s of this.segments) s.file.close();
    this.segments = [];
    this.appliedFile?.close();
    this.appliedFile = null;
  }

  // --- recovery ---------------------------------------------------------------

  /**
   * Scans every segment, verifies every checksum, cuts a torn tail, and rebuilds
   * the state. Damage before the tail is reported in `lost` (never silently skipped).
   */
  async recover(onRecord?: (offset: number, length: number) => void): Promise<RecoveryReport> {
    const report: RecoveryReport = { records: 0, segments: 0, tornBytes: 0, notes: [], lost: [], unknownLoss: false, damaged: false };
    const names = this.store.list().filter((n) => SEGMENT_NAME.test(n)).sort();
    // Before anything is cut or removed: every segment must be this volume's.
    await this.checkOwnership(names);
    const releasedOnDisk = await this.readReleased();
    this.appliedOnDisk = await readCounter(this.store, APPLIED_FILE, APPLIED_MAGIC, APPLIED_FORMAT);
    this.appliedMarked = this.appliedOnDisk;
    this.releasedDurable = releasedOnDisk;
    let expected: number | null = null;
    let lastHeader: RecordHeader | null = null;
    let damaged = false; // once set, later records are kept only for their ranges
    let cut = false; // prefixOnly: the rest was dropped
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const file = this.store.open(name);
      const isLastFile = i === names.length - 1;
      const sh = decodeSegmentHeader(await file.read(0, SEGMENT_HEADER_SIZE));
      if (typeof sh === 'string') {
        // Segments are created (empty) at once and filled by the ordered writer, so a
        // crash can leave several empty ones at the end: all were being created.
        if (file.size() <= SEGMENT_HEADER_SIZE && (isLastFile || !this.laterRecords(names.slice(i + 1)))) {
          report.notes.push(`journal segment ${name} was being created at the crash (${sh}); removed`);
          file.close();
          this.store.remove(name);
          this.dirChanged = true;
          continue;
        }
        if (this.prefixOnly) {
          file.close();
          this.cutFrom(names.slice(i), report, `segment ${name} is damaged (${sh})`);
          damaged = true;
          break;
        }
        report.notes.push(`journal segment ${name} is damaged (${sh}); its writes are unknown, so the whole volume will be resynced`);
        report.unknownLoss = true;
        damaged = true;
        file.close();
        this.store.remove(name);
        this.dirChanged = true;
        continue;
      }
      if (expected !== null && sh.baseSeq > expected && !damaged && sh.baseSeq - 1 <= releasedOnDisk) {
        // Segments are removed oldest first, only once their release is on disk: these
        // were released and their removal had not reached the disk.
        report.notes.push(`journal: segments before record ${sh.baseSeq} were already released (their removal had not reached the disk); dropped`);
        for (const old of this.segments.splice(0)) {
          old.file.close();
          this.store.remove(old.name);
        }
        this.used = 0;
        this.samples = [];
        this.streamEnd = 0;
        this.dirChanged = true;
        report.segments = 0;
      } else if (expected !== null && sh.baseSeq !== expected && !damaged && this.prefixOnly) {
        file.close();
        this.cutFrom(names.slice(i), report, `segment ${name} starts at record ${sh.baseSeq} but ${expected} was next`);
        damaged = true;
        break;
      } else if (expected !== null && sh.baseSeq !== expected && !damaged) {
        report.notes.push(`journal segment ${name} starts at record ${sh.baseSeq} but ${expected} was next; the records in between are lost, so the whole volume will be resynced`);
        report.unknownLoss = true;
        damaged = true;
      }
      const seg: Segment = { name, baseSeq: sh.baseSeq, lastSeq: sh.baseSeq - 1, file, unsynced: false, readers: 0, removed: false, reserved: 0 };
      this.epoch = Math.max(this.epoch, sh.baseEpoch);
      let pos = SEGMENT_HEADER_SIZE;
      let seq = sh.baseSeq;
      const end = file.size();
      while (pos < end) {
        const head = await file.read(pos, RECORD_HEADER_SIZE);
        const h = decodeRecordHeader(head);
        const fits = h.ok && pos + RECORD_HEADER_SIZE + h.payloadLength <= end;
        const inOrder = h.ok && h.header.seq === seq;
        let payloadOk = false;
        if (fits && inOrder) {
          const payload = h.payloadLength > 0 ? await file.read(pos + RECORD_HEADER_SIZE, h.payloadLength) : EMPTY;
          payloadOk = payloadMatches(payload, h.payloadCrc);
        }
        if (fits && inOrder && payloadOk) {
          if (h.header.kind !== RecordKind.Barrier) onRecord?.(h.header.offset, h.header.length);
          this.openEpochBytes = h.header.kind === RecordKind.Barrier ? 0 : this.openEpochBytes + RECORD_HEADER_SIZE + h.payloadLength;
          lastHeader = h.header;
          seg.lastSeq = seq;
          this.sample(seq, h.header.time, RECORD_HEADER_SIZE + h.payloadLength);
          report.records++;
          pos += RECORD_HEADER_SIZE + h.payloadLength;
          seq++;
          continue;
        }
        // Something is wrong at `pos`. A torn tail if nothing valid follows anywhere.
        const more = (await this.validRecordAfter(file, pos + 1, seq)) || this.laterRecords(names.slice(i + 1));
        if (!more) {
          report.tornBytes += end - pos;
          report.notes.push(`journal: cut a torn tail of ${end - pos} bytes at segment ${name} byte ${pos} (${h.ok ? (fits ? (inOrder ? 'payload checksum mismatch' : `record ${h.header.seq} where ${seq} was next`) : 'record runs past the end') : h.reason})`);
          file.truncateSync(pos);
          break;
        }
        damaged = true;
        if (this.prefixOnly) {
          file.truncateSync(pos);
          this.cutFrom(names.slice(i + 1), report, `damaged record at segment ${name} byte ${pos}`);
          cut = true;
          break;
        }
        if (h.ok && fits && inOrder) {
          report.notes.push(`journal: record ${seq} at segment ${name} byte ${pos} is damaged (payload checksum mismatch); its range ${h.header.offset}+${h.header.length} will be resynced`);
          report.lost.push({ offset: h.header.offset, length: h.header.length });
          pos += RECORD_HEADER_SIZE + h.payloadLength;
          seq++;
          continue;
        }
        report.notes.push(`journal: damaged record at segment ${name} byte ${pos} (${h.ok ? 'out of order' : h.reason}); the writes it held are unknown, so the whole volume will be resynced`);
        report.unknownLoss = true;
        break;
      }
      seg.reserved = file.size();
      this.segments.push(seg);
      this.used += file.size();
      report.segments++;
      expected = seg.lastSeq + 1;
      if (seg.lastSeq >= seg.baseSeq) this.nextSeq = seg.lastSeq + 1;
      else this.nextSeq = Math.max(this.nextSeq, seg.baseSeq);
      if (cut) break;
    }
    const floor = Math.max(releasedOnDisk, this.appliedOnDisk);
    if (this.prefixOnly && this.segments.length > 0 && this.segments[0]!.baseSeq - 1 > floor) {
      // The first segments never reached the disk (a power loss kept later ones): nothing here can be trusted.
      const gone = this.segments.splice(0);
      for (const seg of gone) seg.file.close();
      this.cutFrom(gone.map((seg) => seg.name), report, `records ${floor + 1}..${gone[0]!.baseSeq - 1} are missing at the start`);
      damaged = true;
      lastHeader = null;
      this.used = 0;
      this.samples = [];
      this.nextSeq = floor + 1;
    }
    // Numbering never goes back: a journal whose records are all released (or applied)
    // continues after them, and segments holding only such records are stale.
    if (this.lastSeq < floor) {
      const stale = this.segments.splice(0);
      for (const seg of stale) {
        seg.file.close();
        this.store.remove(seg.name);
      }
      if (stale.length > 0) {
        this.dirChanged = true;
        report.notes.push(`journal: ${stale.length} segment(s) held only records up to ${this.lastSeq}, released already (up to ${floor}); removed`);
      }
      this.used = 0;
      this.samples = [];
      lastHeader = null;
      this.nextSeq = floor + 1;
    }
    report.damaged = damaged;
    if (lastHeader) {
      this.epoch = Math.max(this.epoch, lastHeader.kind === RecordKind.Barrier ? lastHeader.epoch + 1 : lastHeader.epoch);
      this.epochHasWrites = lastHeader.kind !== RecordKind.Barrier;
    }
    this.streamEnd = this.samples.length > 0 ? this.streamEnd : 0;
    this.released = Math.min(this.lastSeq, Math.max(releasedOnDisk, (this.segments[0]?.baseSeq ?? this.nextSeq) - 1));
    // What recovery read may have been only in the page cache (a kill -9, or a log
    // reopened after a failed write): make it durable before calling it durable.
    await Promise.all(this.segments.map((seg) => seg.file.sync()));
    // (Their names too: a segment created just before a crash may not be in the directory yet.)
    if (this.dirChanged || this.segments.length > 0) {
      await this.store.syncDir();
      this.dirChanged = false;
    }
    this.durableSeq = this.lastSeq;
    this.writtenSeq = this.lastSeq;
    if (this.segments.length === 0) {
      try {
        this.openSegment(this.nextSeq);
      } catch (e) {
        // Disk full: the first append will try again (and fall back to the bitmap).
        report.notes.push(`journal: cannot create a segment (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    }
    if (report.records > 0 || report.notes.length > 0) {
      report.notes.unshift(`journal: recovered ${report.records} records in ${report.segments} segments, records ${this.released + 1}..${this.lastSeq}, epoch ${this.epoch}`);
    }
    return report;
  }

  /**
   * Refuses a journal folder holding a segment that names another volume. Segments
   * that name none (version 1, written before segments carried the volume, or a
   * receive log's first segment from before its first link) are read as this
   * volume's: the previous release's journal opens without a resync. A header that
   * does not decode is left to recovery (damage, handled there), except one of a
   * version newer than this build reads: refused (NewerFormatError), since recovery
   * would drop it as damaged and with it writes the peer may not have.
   */
  private async checkOwnership(names: string[]): Promise<void> {
    const mine = this.volumeId();
    const foreign: Array<{ name: string; owner: string }> = [];
    for (const name of names) {
      const file = this.store.open(name);
      let head;
      try {
        head = await file.read(0, SEGMENT_HEADER_SIZE);
      } finally {
        file.close();
      }
      const version = SEGMENT_FILE_FORMAT.version(head);
      if (isNewer(SEGMENT_FILE_FORMAT, version)) throw new NewerFormatError(SEGMENT_FILE_FORMAT, name, version);
      const sh = decodeSegmentHeader(head);
      if (mine && typeof sh !== 'string' && sh.volume && !sh.volume.equals(mine)) foreign.push({ name, owner: formatVolumeId(sh.volume) });
    }
    if (!this.volume || foreign.length === 0) return;
    const first = foreign[0]!;
    throw new ForeignSegmentError(this.volume.name, this.volume.uuid(), first.owner, first.name, foreign.length);
  }

  /** prefixOnly: removes these segment files; the peer sends their records again. */
  private cutFrom(names: string[], report: RecoveryReport, why: string): void {
    for (const n of names) this.store.remove(n);
    this.dirChanged = true;
    report.notes.push(`receive log: ${why}; it and everything after it (${names.length} segment file(s)) are dropped and will be fetched again from the peer`);
  }

  /** Do later segment files hold anything past their header? */
  private laterRecords(names: string[]): boolean {
    return names.some((n) => {
      const f = this.store.open(n);
      const size = f.size();
      f.close();
      return size > SEGMENT_HEADER_SIZE;
    });
  }

  /** Is there a checksummed record header with seq >= minSeq anywhere after `from`? */
  private async validRecordAfter(file: StoreFile, from: number, minSeq: number): Promise<boolean> {
    const end = file.size();
    const CHUNK = 1 << 20;
    for (let pos = from; pos + RECORD_HEADER_SIZE <= end; pos += CHUNK) {
      const buf = await file.read(pos, CHUNK + RECORD_HEADER_SIZE);
      for (let i = buf.indexOf(MAGIC_BYTES); i >= 0 && i + RECORD_HEADER_SIZE <= buf.length; i = buf.indexOf(MAGIC_BYTES, i + 1)) {
        const h = decodeRecordHeader(buf, i);
        if (h.ok && h.header.seq >= minSeq) return true;
      }
    }
    return false;
  }
}

const EMPTY = Buffer.alloc(0);
/** Counter files: 8-byte magic, u64 value, u32 CRC32C of the first 16 bytes. */
const COUNTER_SIZE = 20;
const RELEASED_FILE = 'released';
const RELEASED_MAGIC = Buffer.from('OFFSREL1', 'latin1');
const APPLIED_FILE = 'applied';
const APPLIED_MAGIC = Buffer.from('OFFSAPL1', 'latin1');
/** Their magic ends in their version (docs/VERSIONING.md). */
export const RELEASED_FORMAT = magicDigit('release point', 'OFFSREL', 1, [1]);
export const APPLIED_FORMAT = magicDigit('redo point', 'OFFSAPL', 1, [1]);

function encodeCounter(magic: Buffer, value: number): Buffer {
  const b = Buffer.alloc(COUNTER_SIZE);
  magic.copy(b, 0);
  b.writeBigUInt64LE(BigInt(value), 8);
  b.writeUInt32LE(crc32c(b.subarray(0, 16)), 16);
  return b;
}

async function readCounter(store: Store, name: string, magic: Buffer, format: FileFormat): Promise<number> {
  if (!store.list().includes(name)) return 0;
  const f = store.open(name);
  try {
    const b = await f.read(0, COUNTER_SIZE);
    // A newer release's counter is refused, not read as 0 (what a damaged one means):
    // its layout may differ, and going back a release is the operator's choice.
    const version = format.version(b);
    if (isNewer(format, version)) throw new NewerFormatError(format, name, version);
    if (b.length < COUNTER_SIZE || !b.subarray(0, 8).equals(magic) || crc32c(b.subarray(0, 16)) !== b.readUInt32LE(16)) return 0;
    return Number(b.readBigUInt64LE(8));
  } finally {
    f.close();
  }
}
const MAGIC_BYTES = Buffer.from('OFJR', 'latin1');
