// The change journal: an ordered, durable, bounded queue of host writes in
// segment files, read in order by the shipper and released only on the peer's
// durable ack. See docs/JOURNAL.md for the format and the rules.
//
// Beside it: the ordered writer (append-queue.ts), recovery (recovery.ts, with the
// policy for damage that tells a journal from a receive log), the counter files
// (counters.ts), the segment owner check (ownership.ts), the backlog and lag samples
// (samples.ts), the segment files and the space they take (segment-set.ts).
import type { Store } from './store.js';
import { assert } from '../invariants/assert.js';
import { READ_BATCH_BYTES } from '../limits/limits.js';
import {
  FLAG_FUA, FLAG_GROUP_POINT, FLAG_RESYNC, RecordKind, SEGMENT_HEADER_SIZE, encodeRecordHeader, encodeSegmentHeader, recordSize,
  type JournalRecord, type RecordHeader,
} from './record.js';
import { RedoPoint, ReleasePoint } from './counters.js';
import { checkOwnership, segmentVolumeId, type JournalVolume } from './ownership.js';
import { REPORT_DAMAGE, scanSegments, type DamagePolicy, type RecoveryReport, type ScanOptions } from './recovery.js';
import { Samples } from './samples.js';
import { AppendQueue } from './append-queue.js';
import type { FollowingWrite } from './disk.js';
import { SEGMENT_NAME, readRecordHeaders, readRecords, syncSegment, type RecordHeaderRead, type Scratch } from './segment.js';
import { SegmentSet } from './segment-set.js';

export { ForeignSegmentError, type JournalVolume } from './ownership.js';
export { KEEP_PREFIX, REPORT_DAMAGE, type DamagePolicy, type LostRange, type RecoveryReport } from './recovery.js';

export interface JournalOptions {
  store: Store;
  /** Bytes the journal may use on disk. */
  capacity: number;
  /** Target segment size; segments are freed whole. */
  segmentSize?: number;
  now?: () => number;
  /**
   * What recovery does with damage before the tail (recovery.ts): REPORT_DAMAGE (a
   * journal, the default) keeps later records and reports the damaged ranges for
   * resync; KEEP_PREFIX (a receive log) keeps only the longest intact prefix and
   * drops everything after the first damage or gap (the peer sends it again).
   */
  onDamage?: DamagePolicy;
  /**
   * The volume this journal belongs to: every new segment names it, and recovery
   * refuses a segment that names another one (two volumes must never share a journal
   * folder: the other's records would be shipped to this one's replica). Absent: the
   * segments name no volume and none is checked.
   */
  volume?: JournalVolume;
}

export type AppendResult = number | 'full';

export class Journal {
  /** Bytes it may use on disk (resize: a reload may change it). */
  capacity: number;
  readonly segmentSize: number;
  private readonly store: Store;
  /** The clock records are stamped with (the simulation's own in tests). */
  readonly now: () => number;
  /** The segment files and the space they take (segment-set.ts). */
  private readonly files: SegmentSet;
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
  /** Samples of the record stream: backlog bytes and lag. */
  private readonly samples = new Samples();
  /** Totals for rates. */
  appendedBytes = 0;
  releasedBytes = 0;
  hostBytes = 0;

  constructor(opts: JournalOptions) {
    this.store = opts.store;
    this.capacity = opts.capacity;
    this.segmentSize = opts.segmentSize ?? Math.min(64 << 20, Math.max(1 << 20, Math.floor(opts.capacity / 8)));
    this.now = opts.now ?? Date.now;
    this.onDamage = opts.onDamage ?? REPORT_DAMAGE;
    this.volume = opts.volume ?? null;
    this.files = new SegmentSet({
      store: opts.store, capacity: this.capacity, segmentSize: this.segmentSize, appends: this.appends,
      header: (baseSeq) => encodeSegmentHeader({ baseSeq, baseEpoch: this.epoch, created: this.now(), volume: segmentVolumeId(this.volume) }),
    });
    this.releasePoint = new ReleasePoint(opts.store);
    this.redoPoint = new RedoPoint(opts.store, () => (this.files.dirChanged = true));
  }

  /** What recovery does with damage before the tail: KEEP_PREFIX for a receive log, REPORT_DAMAGE for a journal. */
  readonly onDamage: DamagePolicy;
  private readonly volume: JournalVolume | null;
  /** The `released` and `applied` counter files (counters.ts). */
  private readonly releasePoint: ReleasePoint;
  private readonly redoPoint: RedoPoint;

  /**
   * A reload's new size for it (`journal:`): the records it holds stay, the next appends
   * see the new room. Never below what it holds (the caller says so first). Its
   * segments keep their size; a start sizes them for the new capacity.
   */
  resize(capacity: number): void {
    assert(capacity >= this.usedBytes + SEGMENT_HEADER_SIZE, () => `journal: resized to ${capacity} bytes, below the ${this.usedBytes} it holds`);
    this.files.resize(capacity);
    this.capacity = capacity;
  }

  // --- figures --------------------------------------------------------------

  get usedBytes(): number {
    return this.files.used;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /**
   * Every peer holds the records up to here (a primary's journal: its write path says so
   * at each ack). A release may come later, after the volume's next sync (write-path.ts's
   * Releases.upTo, release.ts): the backlog figures count from here or the release, whichever is later.
   * A receive log's stays 0: its backlog is what is not yet released.
   */
  private heldSeq = 0;

  /**
   * Every attached peer holds the records up to `seq` now (the backlog figures count from
   * it). It may go back: a detached peer attached again at a lower point. None attached
   * (Infinity) leaves it as it was.
   */
  held(seq: number): void {
    if (Number.isFinite(seq)) this.heldSeq = seq;
  }

  /** The backlog figures' starting point: the later of the release and what every peer holds. */
  get heldUpTo(): number {
    return Math.min(this.lastSeq, Math.max(this.released, this.heldSeq));
  }

  /** Records not yet held by every peer (a receive log: not yet released). */
  get backlogRecords(): number {
    return this.lastSeq - this.heldUpTo;
  }

  /** Records not yet released (the journal holds them on disk). */
  get unreleasedRecords(): number {
    return this.lastSeq - this.released;
  }

  private unreleasedBytes(): number {
    return this.unreleasedRecords === 0 ? 0 : this.samples.bytesFrom(this.released + 1);
  }

  /** Bytes of the records backlogRecords counts (over-estimates by at most one sample step). */
  get backlogBytes(): number {
    return this.backlogRecords === 0 ? 0 : this.samples.bytesFrom(this.heldUpTo + 1);
  }

  /** Age in ms of the oldest record backlogRecords counts (0 when none). */
  lagMs(now = this.now()): number {
    return this.backlogRecords === 0 ? 0 : this.samples.ageOf(this.heldUpTo + 1, now);
  }

  /** Bytes of the records after `seq` (a peer's cursor, peer-cursors.ts; over-estimates by at most one sample step). */
  bytesAfter(seq: number): number {
    const from = Math.max(seq, this.released) + 1;
    return from > this.lastSeq ? 0 : this.samples.bytesFrom(from);
  }

  /** Age in ms of the first record after `seq` (0 when none). */
  lagMsAfter(seq: number, now = this.now()): number {
    const from = Math.max(seq, this.released) + 1;
    return from > this.lastSeq ? 0 : this.samples.ageOf(from, now);
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
    if (this.unreleasedRecords !== 0) throw new Error(`receive log: cannot skip to ${seq + 1} with ${this.unreleasedRecords} records unreleased`);
    if (seq <= this.lastSeq) return;
    this.restartAfter(seq);
  }

  /** An empty (all released) log continues after `seq`; the next sync writes the release point down. */
  private restartAfter(seq: number): void {
    this.files.restart();
    this.nextSeq = seq + 1;
    this.released = seq;
    this.writtenSeq = Math.max(this.writtenSeq, seq);
    this.durableSeq = Math.max(this.durableSeq, seq);
    this.releasePending = true;
  }

  /**
   * Appends a record received from the peer, keeping its seq and epoch (the
   * secondary's receive log). The seq must follow the last one; an empty log may
   * start at any seq (a new segment begins there).
   */
  appendReceived(h: RecordHeader, payload: Buffer | null, payloadCrc?: number): AppendResult {
    if (h.seq !== this.nextSeq) {
      if (this.unreleasedRecords !== 0) throw new Error(`receive log: record ${h.seq} does not follow ${this.lastSeq}`);
      // Everything here is released: start over at the peer's numbering.
      this.restartAfter(h.seq - 1);
    }
    const seq = this.put(h, payload, payloadCrc);
    if (seq !== 'full') {
      this.epoch = h.kind === RecordKind.Barrier ? h.epoch + 1 : h.epoch;
      this.hostBytes += h.length;
    }
    return seq;
  }

  private releasePending = false;

  /**
   * Closes the open epoch with a barrier record, if it has any writes (or `force`).
   * `groupPoint`: the barrier is that group point (FLAG_GROUP_POINT, its number in
   * the offset field; docs/GROUPS.md).
   */
  barrier(flags = 0, force = false, groupPoint: number | null = null): AppendResult | null {
    if (!this.epochHasWrites && !force) return null;
    const point = groupPoint === null ? 0 : groupPoint;
    const seq = this.put({
      kind: RecordKind.Barrier, flags: groupPoint === null ? flags : flags | FLAG_GROUP_POINT, seq: this.nextSeq, epoch: this.epoch, offset: point,
      length: 0, time: this.now(),
    }, null);
    if (seq === 'full') return seq;
    this.epoch++;
    this.epochHasWrites = false;
    this.openEpochBytes = 0;
    return seq;
  }

  /** True when a record of this kind and length fits now. */
  fits(kind: RecordKind, length: number): boolean {
    return this.files.fits(recordSize(kind, length));
  }

  private put(h: RecordHeader, payload: Buffer | null, payloadCrc?: number): AppendResult {
    const size = recordSize(h.kind, h.length);
    if (this.broken) throw this.broken;
    const seg = this.files.segmentFor(h.seq, size);
    if (seg === 'full') return 'full';
    // Seqs run without a gap: recovery, resume and release all count on it.
    assert(h.seq === this.nextSeq, () => `journal: record ${h.seq} appended where ${this.nextSeq} is next`);
    assert(h.kind !== RecordKind.Write || (payload !== null && payload.length === h.length),
      () => `journal: write record ${h.seq} of ${h.length} bytes carries ${payload?.length ?? 'no'} payload`);
    const header = encodeRecordHeader(h, payload, payloadCrc);
    // (A CRC the caller checked, not computed here: checked again once written, append-queue.ts.)
    this.appends.enqueue(seg, h.seq, payload && payload.length > 0 ? [header, payload] : [header],
      h.kind === RecordKind.Barrier ? null : { offset: h.offset, length: h.length }, payloadCrc);
    this.files.appended(seg, h.seq, size);
    this.appendedBytes += size;
    this.samples.add(h.seq, h.time, size);
    this.nextSeq = h.seq + 1;
    return h.seq;
  }

  // --- the append queue (append-queue.ts) -------------------------------------

  private readonly appends = new AppendQueue();

  /** Every record up to this seq is in the page cache (readable, syncable). */
  get writtenSeq(): number {
    return this.appends.writtenSeq;
  }

  private set writtenSeq(seq: number) {
    this.appends.writtenSeq = seq;
  }

  /** Set when a journal write failed: nothing more can be appended. */
  get broken(): Error | null {
    return this.appends.broken;
  }

  /** Resolves when record `seq` is in the page cache; rejects if the journal write failed. */
  whenWritten(seq: number): Promise<void> {
    return this.appends.whenWritten(seq);
  }

  /**
   * Puts a volume write behind record `seq`, in the job that writes the record (AppendQueue.follow):
   * its 0 or errno, NOT_TRIED, WRITE_ALONE or DETACHED; null if the record's write has begun.
   */
  follow(seq: number, write: FollowingWrite): Promise<number> | null {
    return this.appends.follow(seq, write);
  }

  /** Takes the volume writes off the records still queued (AppendQueue.detachFollowers). */
  detachFollowers(): number {
    return this.appends.detachFollowers();
  }

  /** Resolves when every queued write has landed (or failed). */
  drained(): Promise<void> {
    return this.appends.drained();
  }

  /** Resolves when a record past `seq` is written (or at once if there is one). */
  waitFor(seq: number): Promise<void> {
    return this.appends.waitFor(seq);
  }

  /** Makes every appended record durable. Returns the seq it covers. */
  async sync(): Promise<number> {
    const upTo = this.lastSeq;
    await this.drained();
    if (this.broken) throw this.broken;
    if (this.releasePending) {
      this.releasePending = false;
      try {
        await this.releasePoint.persist(this.released);
      } catch (e) {
        this.releasePending = true;
        throw e;
      }
    }
    const { dirty, dir } = this.files.takeUnsynced();
    const applied = this.redoPoint.takeUnsynced();
    try {
      await Promise.all([...dirty.map((s) => syncSegment(s)), applied ? applied.sync() : undefined, dir ? this.store.syncDir() : undefined]);
    } catch (e) {
      this.files.unsyncedAgain({ dirty, dir });
      if (applied) this.redoPoint.unsyncedAgain();
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
      const before = this.unreleasedBytes();
      this.released = Math.min(seq, this.lastSeq);
      // Released records are gone for good: only what is durable here may go (the caller
      // synced first; a broken journal's records are covered by the dirty bitmap instead),
      // and on a primary only what the peer acked (invariant 2, the shipper).
      assert(this.released <= this.durableSeq || this.broken !== null,
        () => `journal: released up to ${this.released} but durable only up to ${this.durableSeq}`);
      this.releasedBytes += before - this.unreleasedBytes();
      // Drop samples wholly behind the release point, keeping the one covering released+1.
      this.samples.released(this.released);
    }
    // (A release that failed part-way, say on a full disk, is retried by the next call.)
    const upTo = this.released;
    // Free closed segments whose every record is released; the tail stays for appends
    // unless it too is fully released and over its target size.
    this.files.rollTail(upTo, this.nextSeq);
    if (!this.files.freeable(upTo)) return;
    // The release point is made durable before any segment goes: after a power loss
    // a removed segment may come back, and recovery must know it was released.
    await this.releasePoint.persist(upTo);
    this.files.free(this.releasePoint.durable, this.released);
  }

  /**
   * Records that every volume write up to `seq` is durable (a sync covering them
   * completed). Written to the page cache now and synced with the next sync, so
   * whatever value is on disk after any crash was true: recovery replays the
   * records after it onto the volume.
   */
  markApplied(seq: number): void {
    if (seq <= this.redoPoint.value) return;
    assert(seq <= this.lastSeq, () => `journal: applied marked at ${seq}, past the last record ${this.lastSeq}`);
    this.redoPoint.mark(seq);
  }

  /** From the `applied` file at recovery: replay starts after it. */
  get appliedOnDisk(): number {
    return this.redoPoint.onDisk;
  }

  /**
   * Before clear(): records that everything up to lastSeq is let go, durably, so the
   * numbering continues after it even if the emptied journal is all that survives.
   */
  async releaseAllDurably(): Promise<void> {
    await this.releasePoint.persist(this.lastSeq);
  }

  /**
   * Empties the journal (after its ranges were folded into the dirty bitmap). The last
   * segment is kept, rewritten in place as an empty one that carries nextSeq and the epoch
   * across restarts (SegmentSet.empty): no new disk space, so it works on a full disk too.
   */
  clear(): void {
    this.appends.reset(); // the queue is drained; whatever failed is folded into the bitmap
    this.released = this.lastSeq;
    this.samples.clear();
    this.files.empty(this.nextSeq);
  }

  // --- reading ----------------------------------------------------------------

  /**
   * Records from `fromSeq` in order, up to about `maxBytes` (at least one record)
   * and not past `limitSeq`. Streams from disk: the backlog is never held in memory.
   * `scratch`: a buffer the caller reuses, read into where it fits (the payloads are then
   * views of it, good until the caller reuses it), or one it makes for the first read.
   */
  read(fromSeq: number, maxBytes: number, limitSeq = this.writtenSeq, scratch?: Scratch): Promise<JournalRecord[]> {
    return readRecords(this.files.list, fromSeq, maxBytes, limitSeq, this.released, scratch);
  }

  /** The headers (and sizes) of the records `read` would return, without their payloads. */
  readHeaders(fromSeq: number, maxBytes: number, limitSeq = this.writtenSeq): Promise<RecordHeaderRead[]> {
    return readRecordHeaders(this.files.list, fromSeq, maxBytes, limitSeq, this.released);
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
      // (A read a release overtook ends short, maybe empty: records released meanwhile need
      // no visit, every peer holds them or a detached one's bitmap does; the rest still do.)
      if (batch.length === 0 && from > this.released) break;
      for (const r of batch) if (r.kind !== RecordKind.Barrier) visit(r.offset, r.length);
      from = Math.max(batch.length > 0 ? batch[batch.length - 1]!.seq + 1 : from, this.released + 1);
    }
    for (const r of this.appends.unwritten) visit(r.offset, r.length);
  }

  /** Set by close(): whatever reads or appends after it fails because the node let the journal go, not for damage. */
  closed = false;

  close(): void {
    this.closed = true;
    this.files.close();
    this.redoPoint.close();
  }

  // --- recovery (recovery.ts) -------------------------------------------------

  /**
   * Scans every segment, verifies every checksum, cuts a torn tail, and rebuilds
   * the state. Damage before the tail goes to the journal's damage policy: reported
   * in `lost` (never silently skipped), or, in a receive log, cut off.
   */
  async recover(onRecord?: (offset: number, length: number) => void, onSegment?: ScanOptions['onSegment']): Promise<RecoveryReport> {
    const names = this.store.list().filter((n) => SEGMENT_NAME.test(n)).sort();
    // Before anything is cut or removed: every segment must be this volume's.
    await checkOwnership(this.store, names, this.volume);
    const releasedOnDisk = await this.releasePoint.read();
    this.redoPoint.restored(await this.redoPoint.read());
    this.releasePoint.durable = releasedOnDisk;
    const s = await scanSegments({
      store: this.store, names, policy: this.onDamage, releasedOnDisk, appliedOnDisk: this.appliedOnDisk, samples: this.samples,
      nextSeq: this.nextSeq, epoch: this.epoch, onRecord, onSegment,
    });
    const report = s.report;
    this.files.recovered(s.segments, s.used, s.dirChanged);
    this.nextSeq = s.nextSeq;
    this.epoch = s.epoch;
    this.openEpochBytes = s.openEpochBytes;
    if (s.lastHeader) {
      this.epoch = Math.max(this.epoch, s.lastHeader.kind === RecordKind.Barrier ? s.lastHeader.epoch + 1 : s.lastHeader.epoch);
      this.epochHasWrites = s.lastHeader.kind !== RecordKind.Barrier;
    }
    if (this.samples.empty) this.samples.end = 0;
    this.released = Math.min(this.lastSeq, Math.max(releasedOnDisk, (this.files.list[0]?.baseSeq ?? this.nextSeq) - 1));
    // What recovery read may have been only in the page cache (a kill -9, or a log
    // reopened after a failed write): make it durable before calling it durable.
    await Promise.all(this.files.list.map((seg) => seg.file.sync()));
    // (Their names too: a segment created just before a crash may not be in the directory yet.)
    if (this.files.dirChanged || this.files.list.length > 0) {
      await this.store.syncDir();
      this.files.dirChanged = false;
    }
    this.durableSeq = this.lastSeq;
    this.writtenSeq = this.lastSeq;
    // A log without a segment gets one (on a full disk the first append tries again, and falls back to the bitmap).
    const cannot = this.files.openIfNone(this.nextSeq);
    if (cannot !== null) report.notes.push(`journal: cannot create a segment (${cannot})`);
    if (report.records > 0 || report.notes.length > 0) {
      report.notes.unshift(`journal: recovered ${report.records} records in ${report.segments} segments, records ` +
        `${this.released + 1}..${this.lastSeq}, epoch ${this.epoch}`);
    }
    return report;
  }
}
