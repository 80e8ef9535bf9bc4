// The journaled write path: every host write goes to the local volume and to the
// change journal (or, after an overflow, the dirty bitmap), and is acknowledged
// when both hold it; FLUSH closes an epoch and makes volume, journal and bitmap
// durable together. The host never waits for the peer.
//
// Order, for crash safety:
//   1. the journal record is appended (page cache) before the volume write starts,
//      so after kill -9 the journal holds every write the volume might have;
//   2. after each sync round the journal's `applied` counter records the seq up to
//      which every volume write is durable; recovery replays records after it ("redo");
//   3. FLUSH/FUA reply only after volume, journal and bitmap are fdatasync'ed.
import { createHash } from 'node:crypto';
import type { Extent, ExportBackend, ZeroOptions } from '../export/backend.js';
import { DiskError, type Capabilities, diskCapabilities } from '../export/backend.js';
import type { Logger } from '../log/log.js';
import { formatBytes } from '../units/units.js';
import { GroupSync } from '../volume/group-sync.js';
import { RegionSet, type DirtyBitmap } from './bitmap.js';
import { IntentRing } from './intent.js';
import type { Store } from './store.js';
import type { Journal, RecoveryReport } from './journal.js';
import { FLAG_ROUND_END, RecordKind } from './record.js';
import { RangeLocks } from '../sync/range-lock.js';
import { ActivityLog } from './activity-log.js';
import { RoundMarker } from '../sync/round-marker.js';
import { assert } from '../invariants/assert.js';
import { READ_BATCH_BYTES, epochBytesFor } from '../limits/limits.js';

/** What the write path needs from the local volume (Volume, or the simulation's disk). */
/** The storage under the write path (a volume): a backend less the front end's capability query. */
export interface Disk extends Omit<ExportBackend, 'capabilities'> {
  /** Deallocates if it can; true when the range now reads as zeros. */
  punch(offset: number, length: number): Promise<boolean>;
}

export type OnFull = 'bitmap' | 'block';
export type TrackingMode = 'journal' | 'bitmap';

export interface WritePathOptions {
  disk: Disk;
  journal: Journal;
  bitmap: DirtyBitmap;
  onFull: OnFull;
  log: Logger;
  /** Most host writes that may wait for journal space under on_full: block. */
  maxBlocked?: number;
  /** Where the intent ring lives (the journal's folder); without it volume writes wait for their journal append. */
  intentStore?: Store;
  intentSlots?: number;
  /** Where the resync round marker lives (the volume's state folder); without it no resync. */
  roundStore?: Store;
  /** Where the activity log lives (the volume's state folder); without it a power loss is not covered. */
  activityStore?: Store;
  /** Activity log extent size (default 4 MiB) and slots (default 1024). */
  activityExtent?: number;
  activitySlots?: number;
  bootId?: () => string;
}

export class JournaledVolume implements ExportBackend {
  readonly disk: Disk;
  readonly journal: Journal;
  readonly bitmap: DirtyBitmap;
  readonly onFull: OnFull;
  private readonly log: Logger;
  private modeNow: TrackingMode = 'journal';
  /**
   * The largest epoch before the write path closes it with a barrier of its own.
   * The link lowers it to a quarter of the peer's receive log when they meet.
   */
  maxEpochBytes: number;
  private epochCloseQueued = false;
  /** A fold marked the bitmap but could not empty the journal (disk full). */
  private clearPending = false;
  private readonly ranges = new RangeLocks();
  private activity: ActivityLog | null = null;
  private readonly activityOpts: WritePathOptions;
  private readonly roundMarker: RoundMarker | null;
  /** The open resync round's first seq, or 0: dirty regions are being handed to the journal. */
  roundStart = 0;
  /** Resync records journaled but not yet durable: their regions leave the bitmap once they are. */
  private handed: Array<{ seq: number; first: number; count: number }> = [];
  private readonly handedRegions = new Set<number>();
  /** The round-end barrier, once appended. */
  private roundEndSeq = 0;
  /**
   * The round is a first sync by checksum: regions are compared by hash with the
   * peer first, and only those that differ are sent. `hashedUpTo` is how far the
   * comparison got (regions below it may be sent).
   */
  seeding = false;
  /**
   * Called (once) before the next host change is tracked: set by the link layer
   * while the peer is unreachable, so writes taken apart start a new generation
   * (split-brain detection, docs/FAILOVER.md).
   */
  apart: (() => void) | null = null;
  hashedUpTo = 0;
  /**
   * Regions touched by journal records of this round: the peer will still apply those
   * records, so such a region is never cleared by hash (a later change made in bitmap
   * mode, not in the journal, could make it look equal now and differ after them).
   */
  private roundTouched: RegionSet | null = null;
  private initialPending = false;
  /** Bytes of the round still in the bitmap when it began, and when it began (for progress). */
  roundTotalBytes = 0;
  roundStartedAt = 0;
  folding: Promise<void> | null = null;
  private readonly syncer: GroupSync;
  private lock: Promise<void> = Promise.resolve();
  /** Seqs whose volume write has not completed yet. */
  private readonly inFlight = new Set<number>();
  /** Highest seq with every volume write up to it completed and synced. */
  durableAppliedSeq = 0;
  private readonly blocked: Array<() => void> = [];
  private readonly maxBlocked: number;
  overflowAt: number | null = null;
  private skipFoldRead = false;
  private intents: IntentRing | null = null;
  private readonly intentStore: Store | null;
  private readonly intentSlots: number | undefined;
  overflows = 0;

  constructor(opts: WritePathOptions) {
    this.disk = opts.disk;
    this.journal = opts.journal;
    this.bitmap = opts.bitmap;
    this.onFull = opts.onFull;
    this.log = opts.log;
    this.maxBlocked = opts.maxBlocked ?? 4096;
    this.intentStore = opts.intentStore ?? null;
    this.intentSlots = opts.intentSlots;
    this.syncer = new GroupSync(() => this.syncAll());
    this.maxEpochBytes = epochBytesFor(opts.journal.capacity);
    this.roundMarker = opts.roundStore ? new RoundMarker(opts.roundStore) : null;
    this.activityOpts = opts;
  }

  get name(): string { return this.disk.name; }
  get size(): number { return this.disk.size; }
  get readOnly(): boolean { return this.disk.readOnly; }
  /** The disk's: every connection goes through this one write path and journal, so a FLUSH covers them all. */
  capabilities(): Capabilities { return diskCapabilities(this.disk.readOnly); }
  get description(): string { return this.disk.description; }
  get mode(): TrackingMode { return this.modeNow; }

  /**
   * Brings volume, journal and bitmap into agreement after a start (clean or not):
   * damage found by journal recovery goes to the bitmap; a non-empty bitmap means
   * bitmap mode; otherwise records after the `applied` counter are replayed.
   */
  async start(report: RecoveryReport, recorded?: RegionSet): Promise<void> {
    for (const n of report.notes) (report.damaged ? this.log.warn : this.log.info).call(this.log, { volume: this.name }, n);
    for (const r of report.lost) this.bitmap.mark(r.offset, r.length);
    if (report.unknownLoss || (report.damaged && !recorded)) this.bitmap.markAll();
    if (report.damaged) {
      // The journal cannot be read through: fold it from what recovery saw.
      recorded?.copyTo(this.bitmap);
      this.skipFoldRead = true;
    }
    if (this.activityOpts.activityStore) {
      // After a power loss, extents with writes in flight may hold writes the journal lost.
      const { log, suspect } = await ActivityLog.open({
        store: this.activityOpts.activityStore, extentSize: this.activityOpts.activityExtent ?? 4 << 20,
        slots: this.activityOpts.activitySlots ?? 1024, bootId: this.activityOpts.bootId,
      });
      for (const r of suspect) this.bitmap.mark(r.offset, Math.min(r.length, this.disk.size - r.offset));
      if (suspect.length > 0) {
        this.log.warn({ volume: this.name }, `volume ${this.name}: the machine restarted without a clean stop; ${suspect.length} recently written extents (${formatBytes(suspect.reduce((n, r) => n + r.length, 0))}) are marked for resync`);
      }
      await this.bitmap.sync();
      await log.reset();
      this.activity = log;
    }
    const mark = this.roundMarker ? await this.roundMarker.read() : null;
    if (mark && !report.damaged) {
      // A resync round was under way: the journal ships on, the bitmap holds what is left.
      this.roundStart = mark.startSeq;
      this.seeding = mark.initial;
      this.hashedUpTo = 0;
      this.roundTouched = new RegionSet(this.disk.size, this.bitmap.regionSize);
      // Without the recovered records' ranges the round cannot compare safely.
      if (this.seeding && !recorded) this.seeding = false;
      else recorded?.copyToSet(this.roundTouched);
      this.roundTotalBytes = this.bitmap.dirtyBytes;
      this.roundStartedAt = Date.now();
      await this.redo();
      await this.rejournal();
      this.log.info({ volume: this.name }, `volume ${this.name}: resync round from record ${mark.startSeq} resumes; ${formatBytes(this.bitmap.dirtyBytes)} left to send`);
    } else if (this.bitmap.count > 0) {
      // Writes in flight at the crash may be on the volume without a journal record:
      // their intents say where, and those ranges are resynced too.
      if (this.intentStore) {
        const ring = IntentRing.open(this.intentStore, this.intentSlots);
        if (ring) {
          for (const i of await ring.after(this.journal.lastSeq)) this.bitmap.mark(i.offset, i.length);
          ring.close();
        }
      }
      this.log.warn({ volume: this.name },
        `volume ${this.name}: ${this.bitmap.count} regions (${formatBytes(this.bitmap.dirtyBytes)}) are marked for resync; tracking changes in the dirty bitmap`);
      this.modeNow = 'bitmap';
      await this.fold();
    } else {
      await this.redo();
      await this.rejournal();
    }
    if (this.intentStore && this.modeNow === 'journal') this.intents = IntentRing.open(this.intentStore, this.intentSlots);
    await this.flush();
  }

  /**
   * Writes that were in flight when the process died may be on the volume although
   * their journal records are not: their intents say where. The volume's bytes there
   * are journaled again (as new records), so the journal describes the volume exactly.
   */
  private async rejournal(): Promise<void> {
    if (!this.intentStore) return;
    const ring = IntentRing.open(this.intentStore, this.intentSlots);
    if (!ring) return;
    const lost = await ring.after(this.journal.lastSeq);
    ring.close();
    for (const i of lost) {
      const data = Buffer.alloc(i.length);
      await this.disk.read(i.offset, data, 0, i.length);
      const zero = data.every((b) => b === 0);
      this.roundTouched?.mark(i.offset, i.length);
      let r: number | 'full';
      try {
        r = zero ? this.journal.append(RecordKind.Zeroes, i.offset, i.length, null) : this.journal.append(RecordKind.Write, i.offset, i.length, data);
      } catch {
        r = 'full';
      }
      if (r !== 'full' && this.journal.openEpochBytes > this.maxEpochBytes) {
        // In-flight writes had no order among them: a boundary between them is a valid image.
        this.journal.barrier();
      }
      if (r === 'full') {
        for (const rest of lost.slice(lost.indexOf(i))) this.bitmap.mark(rest.offset, rest.length);
        this.toBitmap('no journal space for the writes that were in flight at the crash');
        return;
      }
    }
    if (lost.length > 0) {
      this.log.info({ volume: this.name }, `volume ${this.name}: ${lost.length} writes were in flight at the crash; their ranges were journaled again from the volume`);
    }
  }

  /** Replays journal records whose volume writes may not have completed before a crash. */
  private async redo(): Promise<void> {
    // The `applied` counter on disk says up to where the volume surely had everything.
    const from = Math.max(this.journal.released, this.journal.appliedOnDisk) + 1;
    let replayed = 0;
    let skipped = 0;
    for (let seq = from; seq <= this.journal.lastSeq;) {
      const batch = await this.journal.read(seq, READ_BATCH_BYTES);
      if (batch.length === 0) break;
      for (const r of batch) {
        if (r.kind === RecordKind.Barrier || r.kind === RecordKind.Skip) continue;
        // A region marked for resync is sent from the volume as it is, and may hold a
        // newer write than this record: after an overflow the host's writes go to the
        // volume with only a bitmap mark, and the applied counter stops moving, so
        // replaying the journal there would put older data over a flushed write
        // (found by the replication simulation: a kill -9 while a fold was pending).
        // Only the parts of the record outside marked regions are replayed.
        for (const [o, l] of this.unmarkedParts(r.offset, r.length)) {
          if (r.kind === RecordKind.Write) await this.disk.write(o, r.payload.subarray(o - r.offset, o - r.offset + l), false);
          else if (r.kind === RecordKind.Zeroes) await this.disk.writeZeroes(o, l, { fua: false, mayTrim: true, fast: false });
          else await this.zeroRange(o, l);
        }
        if (this.unmarkedParts(r.offset, r.length).length === 0) skipped++;
        else replayed++;
      }
      seq = batch[batch.length - 1]!.seq + 1;
    }
    if (replayed > 0 || skipped > 0) {
      this.log.info({ volume: this.name }, `volume ${this.name}: replayed ${replayed} journal records onto the volume after an unclean stop${skipped > 0 ? ` (${skipped} more lie in regions marked for resync: those are sent as the volume holds them)` : ''}`);
    }
  }

  /** [offset, length] pieces of a range that lie outside regions marked in the dirty bitmap. */
  private unmarkedParts(offset: number, length: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const rs = this.bitmap.regionSize;
    const end = offset + length;
    for (let at = offset; at < end;) {
      const region = Math.floor(at / rs);
      const stop = Math.min(end, (region + 1) * rs);
      if (!this.bitmap.isSet(region)) {
        const last = out[out.length - 1];
        if (last && last[0] + last[1] === at) last[1] += stop - at;
        else out.push([at, stop - at]);
      }
      at = stop;
    }
    return out;
  }

  // --- the host's requests ----------------------------------------------------

  read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    return this.disk.read(offset, into, at, length);
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    const t = this.ranges.enterWrite(offset, data.length);
    const id = typeof t === 'number' ? t : await t;
    try {
      const seq = await this.track(RecordKind.Write, offset, data.length, data, fua);
      await this.both(seq, offset, data.length, () => this.disk.write(offset, data, false));
    } finally {
      this.ranges.exitWrite(id);
    }
    if (fua) await this.flush();
  }

  async writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    if (opts.fast && this.modeNow === 'journal' && !this.journal.fits(RecordKind.Zeroes, 0) && this.onFull === 'block') {
      throw new DiskError('ENOTSUP', 'journal full: zeroing would wait');
    }
    const t = this.ranges.enterWrite(offset, length);
    const id = typeof t === 'number' ? t : await t;
    try {
      const seq = await this.track(RecordKind.Zeroes, offset, length, null, opts.fua);
      await this.both(seq, offset, length, () => this.disk.writeZeroes(offset, length, { ...opts, fua: false }));
    } finally {
      this.ranges.exitWrite(id);
    }
    if (opts.fua) await this.flush();
  }

  /**
   * On a replicated volume a trim must leave the same bytes on both sides, so it
   * is a zeroing: a punched hole where the storage can, written zeros where not.
   */
  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    const t = this.ranges.enterWrite(offset, length);
    const id = typeof t === 'number' ? t : await t;
    try {
      const seq = await this.track(RecordKind.Trim, offset, length, null, fua);
      await this.both(seq, offset, length, () => this.zeroRange(offset, length));
    } finally {
      this.ranges.exitWrite(id);
    }
    if (fua) await this.flush();
  }

  // --- resync (docs/RESYNC.md) -------------------------------------------------

  /**
   * Begins (or begins again) a resync round: bitmap tracking ends, host writes are
   * journaled again from the next seq, and the regions still marked in the bitmap
   * will be handed to the journal one run at a time by resyncStep(). Returns the
   * round's first seq; records before it that the peer lacks are superseded.
   */
  startResync(): Promise<number> {
    // One at a time: two links (or a link and a restart) must not start rounds at once.
    const p = this.starting.then(() => this.doStartResync());
    this.starting = p.catch(() => undefined);
    return p;
  }

  private starting: Promise<unknown> = Promise.resolve();

  private async doStartResync(): Promise<number> {
    await this.quiesce();
    if (this.modeNow !== 'bitmap') return this.roundStart;
    if (!this.roundMarker) throw new Error('resync needs a round store');
    if (this.clearPending) {
      await this.exclusive(async () => {
        await this.journal.releaseAllDurably();
        this.clearPending = false;
        this.journal.clear();
        await this.journal.sync();
      });
    }
    let start = 0;
    while (start !== this.journal.lastSeq + 1) {
      start = this.journal.lastSeq + 1;
      await this.roundMarker.write({ startSeq: start, initial: this.initialPending });
      await this.quiesce();
      if (this.modeNow !== 'bitmap') return this.roundStart;
    }
    this.roundStart = start;
    this.seeding = this.initialPending;
    this.roundTouched = new RegionSet(this.disk.size, this.bitmap.regionSize);
    this.hashedUpTo = 0;
    this.initialPending = false;
    this.roundEndSeq = 0;
    this.handed = [];
    this.handedRegions.clear();
    this.roundTotalBytes = this.bitmap.dirtyBytes;
    this.roundStartedAt = Date.now();
    this.modeNow = 'journal';
    if (this.intentStore && !this.intents) this.intents = IntentRing.open(this.intentStore, this.intentSlots);
    this.log.info({ volume: this.name }, `volume ${this.name}: resync round from record ${start}: ${formatBytes(this.bitmap.dirtyBytes)} in ${this.bitmap.count} regions to send`);
    return start;
  }

  /**
   * The first sync of a new pair: every region is marked, so the whole volume goes
   * to the peer in the first round (regions that read as zeros go as Zeroes records).
   */
  async beginInitialSync(): Promise<void> {
    this.initialPending = true;
    await this.flush();
    this.bitmap.markAll();
    await this.bitmap.sync();
    this.modeNow = 'bitmap';
    await this.fold();
    this.log.info({ volume: this.name }, `volume ${this.name}: first sync: all ${formatBytes(this.disk.size)} will be sent to the peer when the link comes up`);
  }

  /** Folds the journal into the bitmap and begins a new round (the peer is behind what the journal holds). */
  async restartRound(reason: string): Promise<number> {
    this.toBitmap(reason);
    await this.quiesce();
    return this.startResync();
  }

  /** Resync records are journaled whose regions still wait for a sync to leave the bitmap. */
  get resyncUnsettled(): boolean {
    return this.handed.length > 0 && this.handed[0]!.seq <= this.journal.lastSeq;
  }

  /** The round-end barrier's seq once appended (0 before). */
  get roundEnd(): number {
    return this.roundEndSeq;
  }

  /**
   * The peer's hashes of regions first.. (a first sync by checksum): each region
   * still to send whose bytes here hash the same is equal on both sides, and leaves
   * the bitmap without travelling. Compared under the range lock, against what the
   * volume holds now; later host writes there are journaled and follow in order.
   */
  /**
   * Only while nothing of the round has been shipped (the shipper holds records back
   * until the comparison ends): the peer's replica then is what it was when the round
   * began, and every change here since is in the journal, after that point.
   */
  async compareRegions(first: number, regionSize: number, hashes: Buffer[]): Promise<number> {
    if (!this.seeding || regionSize !== this.bitmap.regionSize || first !== this.hashedUpTo) return 0;
    let equal = 0;
    // The whole span at once: one lock and large reads (host writes there wait for one read).
    const offset = first * regionSize;
    const length = Math.max(0, Math.min(hashes.length * regionSize, this.disk.size - offset));
    const buf = Buffer.allocUnsafe(Math.min(length, 4 << 20));
    const unlock = await this.ranges.lock(offset, length);
    try {
      for (let at = 0; at < length; at += buf.length) {
        const n = Math.min(buf.length, length - at);
        await this.disk.read(offset + at, buf, 0, n);
        for (let k = 0; k < n; k += regionSize) {
          const i = (at + k) / regionSize;
          const r = first + i;
          if (!this.bitmap.isSet(r) || this.handedRegions.has(r) || this.roundTouched?.has(r)) continue;
          const len = Math.min(regionSize, n - k);
          if (createHash('sha256').update(buf.subarray(k, k + len)).digest().equals(hashes[i]!)) {
            this.bitmap.clear(r);
            equal++;
          }
        }
      }
    } finally {
      unlock();
    }
    this.hashedUpTo = first + hashes.length;
    if (this.hashedUpTo >= this.bitmap.regions) this.seeding = false;
    this.seededBytes += equal * regionSize;
    return equal;
  }

  /**
   * Online verify, one batch: host writes to regions first..first+count wait while
   * they are read and hashed after a flush, so the peer, once it has applied through
   * `afterSeq`, must hold exactly these bytes. The caller unlocks once the peer's
   * hashes are in (or the attempt is given up).
   */
  async verifyHashes(first: number, count: number): Promise<{ hashes: Buffer[]; afterSeq: number; unlock: () => void }> {
    const rs = this.bitmap.regionSize;
    const offset = first * rs;
    const length = Math.max(0, Math.min(count * rs, this.disk.size - offset));
    const unlock = await this.ranges.lock(offset, length);
    try {
      await this.flush();
      const afterSeq = this.journal.lastSeq;
      const hashes: Buffer[] = [];
      const buf = Buffer.allocUnsafe(Math.max(rs, Math.min(length, 4 << 20)));
      for (let at = 0; at < length; at += buf.length) {
        const n = Math.min(buf.length, length - at);
        await this.disk.read(offset + at, buf, 0, n);
        for (let k = 0; k < n; k += rs) hashes.push(createHash('sha256').update(buf.subarray(k, Math.min(n, k + rs))).digest());
      }
      return { hashes, afterSeq, unlock };
    } catch (e) {
      unlock();
      throw e;
    }
  }

  /** Verify found these regions different on the peer: they go to the bitmap, and the next link resyncs them. */
  markForResync(regions: number[], reason: string): void {
    for (const r of regions) this.bitmap.mark(r * this.bitmap.regionSize, 1);
    this.toBitmap(reason);
  }

  /** Bytes a first sync found equal by hash (and so did not send), since the daemon started. */
  seededBytes = 0;
  /** Bytes of hash replies received from the peer for that (about 32 per region). */
  hashBytes = 0;

  /** A round store is configured, so a bitmap can be resynced. */
  get canResync(): boolean {
    return this.roundMarker !== null;
  }

  /** Bytes of dirty regions not yet handed to the journal. */
  get resyncLeftBytes(): number {
    return this.roundStart ? Math.max(0, this.bitmap.count - this.handedRegions.size) * this.bitmap.regionSize : 0;
  }

  /**
   * Hands the next run of dirty regions (at most maxBytes) to the journal: the run
   * is locked against host writes, read from the volume, and journaled as a resync
   * record (all zeros: a Zeroes record). When no region is left, appends the
   * round-end barrier. Returns false when there was nothing to do.
   */
  async resyncStep(maxBytes: number): Promise<boolean> {
    if (!this.roundStart || this.modeNow !== 'journal' || this.roundEndSeq) return false;
    const rs = this.bitmap.regionSize;
    let first = -1;
    let count = 0;
    for (const r of this.bitmap.dirtyRegions()) {
      if (this.seeding) return false; // the comparison with the peer comes first, then the data
      if (this.handedRegions.has(r)) {
        if (first >= 0) break;
        continue;
      }
      if (first < 0) first = r;
      else if (r !== first + count) break;
      count++;
      if ((count + 1) * rs > maxBytes) break;
    }
    if (first < 0) {
      if (this.handed.length > 0) return false; // wait for the last runs to become durable
      const r = this.journal.barrier(FLAG_ROUND_END, true);
      if (r === 'full') {
        this.overflow();
        return false;
      }
      if (typeof r === 'number') this.roundEndSeq = r;
      return true;
    }
    if (first < 0 || count === 0) count = 1;
    const offset = first * rs;
    const length = Math.min(count * rs, this.disk.size - offset);
    const unlock = await this.ranges.lock(offset, length);
    try {
      if (!this.roundStart || this.modeNow !== 'journal') return false;
      const data = Buffer.allocUnsafe(length);
      await this.disk.read(offset, data, 0, length);
      const zero = isZero(data);
      let seq: number | 'full';
      try {
        seq = zero ? this.journal.appendResync(RecordKind.Zeroes, offset, length, null) : this.journal.appendResync(RecordKind.Write, offset, length, data);
      } catch (e) {
        this.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        return false;
      }
      if (seq === 'full') {
        this.overflow();
        return false;
      }
      this.handed.push({ seq, first, count });
      for (let r = first; r < first + count; r++) this.handedRegions.add(r);
      return true;
    } finally {
      unlock();
    }
  }

  /** After a sync: regions whose resync records are durable leave the bitmap; a durable round end closes the round. */
  private async settleResync(): Promise<void> {
    if (!this.roundStart) return;
    if (this.modeNow !== 'journal') {
      // Overflowed again: the fold marked everything unreleased; the round starts over.
      this.handed = [];
      this.handedRegions.clear();
      this.roundEndSeq = 0;
      return;
    }
    const durable = this.journal.durableSeq;
    while (this.handed.length > 0 && this.handed[0]!.seq <= durable) {
      const h = this.handed.shift()!;
      for (let r = h.first; r < h.first + h.count; r++) {
        this.bitmap.clear(r);
        this.handedRegions.delete(r);
      }
    }
    // Complete once the peer holds the round's end (its acks release it here): until
    // then a peer that has not opened the round must still be sent Resync.
    if (this.roundEndSeq && this.roundEndSeq <= durable && this.roundEndSeq <= this.journal.released && this.bitmap.count === 0) {
      await this.bitmap.sync();
      await this.roundMarker?.remove();
      this.log.info({ volume: this.name }, `volume ${this.name}: resync round from record ${this.roundStart} is complete at record ${this.roundEndSeq}`);
      this.roundStart = 0;
      this.roundEndSeq = 0;
    }
  }

  cache(offset: number, length: number): Promise<void> {
    return this.disk.cache(offset, length);
  }

  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    return this.disk.extents(offset, length, max);
  }

  /** FLUSH: close the epoch with a barrier, then volume + journal + bitmap durable together. */
  async flush(): Promise<void> {
    if (this.modeNow === 'journal' && this.journal.openEpochHasWrites) {
      let r: number | 'full' | null;
      try {
        r = this.journal.barrier();
      } catch (e) {
        this.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        r = null;
      }
      if (r === 'full') {
        if (this.onFull === 'bitmap') this.overflow();
        else {
          await this.waitForSpace(RecordKind.Barrier, 0);
          return this.flush();
        }
      }
    }
    await this.syncer.sync();
  }

  /** The peer holds everything up to `seq` durably; free journal space behind it. */
  async release(seq: number): Promise<void> {
    // Never outrun local durability; a sync, not a FLUSH: no barrier, the epoch stays open.
    if (seq > this.durableAppliedSeq) await this.syncer.sync();
    await this.journal.release(Math.min(seq, this.durableAppliedSeq));
    this.wakeBlocked();
    if (this.roundEndSeq && this.journal.released >= this.roundEndSeq) await this.syncer.sync();
  }

  /** Resolves when no fold of the journal into the bitmap is running. */
  async quiesce(): Promise<void> {
    while (this.folding) await this.folding;
  }

  async close(): Promise<void> {
    await this.folding;
    await this.flush().catch(() => undefined);
    // A clean stop: everything is durable, so a reboot from here owes no resync.
    if (this.activity) {
      await this.flush().catch(() => undefined);
      await this.activity.reset().catch(() => undefined);
    }
    this.intents?.close();
    this.journal.close();
    this.bitmap.close();
  }

  // --- internals --------------------------------------------------------------

  /** Journals (or marks in the bitmap) one host change; returns its seq (0 in bitmap mode). */
  private async track(kind: RecordKind.Write | RecordKind.Zeroes | RecordKind.Trim, offset: number, length: number, payload: Buffer | null, fua: boolean): Promise<number> {
    // The front end checked the range (in bigint); a change outside the volume would reach the replica.
    assert(Number.isSafeInteger(offset) && offset >= 0 && length >= 0 && offset + length <= this.disk.size, () => `volume ${this.name}: a change at ${offset}+${length} is outside the volume of ${this.disk.size} bytes`);
    if (this.apart) {
      // The first change while apart from the peer: the link layer starts a new generation.
      const f = this.apart;
      this.apart = null;
      f();
    }
    for (;;) {
      if (this.modeNow === 'bitmap') {
        this.bitmap.mark(offset, length);
        return 0;
      }
      let seq: number | 'full';
      try {
        seq = this.journal.append(kind, offset, length, payload, fua);
      } catch (e) {
        // The journal's disk failed (full, I/O error): the host is still served, tracked by bitmap.
        this.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        continue;
      }
      if (seq !== 'full') {
        this.inFlight.add(seq);
        if (this.seeding) this.roundTouched?.mark(offset, length);
        if (this.journal.openEpochBytes > this.maxEpochBytes && !this.epochCloseQueued) {
          // A primary-chosen boundary: the secondary applies whole epochs from its
          // receive log, so an epoch must stay well below that log's size. The
          // barrier goes in right after this call (its seq follows this record's).
          this.epochCloseQueued = true;
          queueMicrotask(() => {
            this.epochCloseQueued = false;
            void this.flush().catch(() => undefined);
          });
        }
        return seq;
      }
      if (this.onFull === 'bitmap') {
        this.overflow();
        continue;
      }
      await this.waitForSpace(kind, length);
    }
  }

  /**
   * The journal append and the volume write. With the intent ring they run at once
   * (the intent, written first, covers a crash in between); without it the volume
   * write waits for the append.
   */
  private async both(seq: number, offset: number, length: number, write: () => Promise<void>): Promise<void> {
    // The activity log holds the extent (durably) before the volume may change there.
    const al = this.activity;
    const entered = al?.enter(offset, length);
    const gated = entered ? (): Promise<void> => entered.then(write) : write;
    const volumeWrite = al ? (): Promise<void> => gated().finally(() => al.leave(offset, length)) : gated;
    if (seq > 0 && this.intents) {
      this.intents.record(seq, offset, length);
      await Promise.all([this.landed(seq, offset, length), this.apply(seq, volumeWrite(), offset, length)]);
      return;
    }
    await this.landed(seq, offset, length);
    await this.apply(seq, volumeWrite(), offset, length);
  }

  /**
   * Waits until the record is in the journal file before the volume write starts,
   * so after kill -9 the volume never holds a write the journal lacks. If the
   * journal's disk failed, the range goes to the bitmap and the host is still served.
   */
  private async landed(seq: number, offset: number, length: number): Promise<void> {
    if (seq === 0) return;
    try {
      await this.journal.whenWritten(seq);
    } catch (e) {
      this.bitmap.mark(offset, length);
      this.toBitmap(`cannot write to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }

  private async apply(seq: number, p: Promise<void>, offset: number, length: number): Promise<void> {
    try {
      await p;
    } catch (e) {
      // The volume did not take a write the journal has: the peer must not get
      // ahead of this disk, so the range goes to the bitmap for a resync.
      this.bitmap.mark(offset, length);
      this.toBitmap(`volume write failed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      throw e;
    } finally {
      if (seq > 0) this.inFlight.delete(seq);
    }
  }

  /** Every record up to this seq has its volume write completed. */
  private appliedSeq(): number {
    let min = Infinity;
    for (const s of this.inFlight) if (s < min) min = s;
    return min === Infinity ? this.journal.lastSeq : min - 1;
  }

  private async syncAll(): Promise<void> {
    const applied = this.appliedSeq();
    let journalDurable = true;
    const journalSync = (): Promise<unknown> => this.journal.sync().catch((e: Error) => {
      if (!this.journal.broken) throw e;
      journalDurable = false;
      this.toBitmap(`cannot write to the journal (${(e as NodeJS.ErrnoException).code ?? e.message})`);
    });
    await this.exclusive(() => Promise.all([this.disk.flush(), journalSync(), this.bitmap.sync()]).then(() => undefined));
    if (!journalDurable) {
      // The journal could not be made durable: its records are durable only once the
      // fold has put their ranges in the bitmap and synced it.
      await this.quiesce();
      await this.exclusive(() => this.bitmap.sync());
    }
    this.durableAppliedSeq = Math.max(this.durableAppliedSeq, applied);
    this.activity?.synced();
    if (this.modeNow === 'journal') this.journal.markApplied(this.durableAppliedSeq);
    await this.settleResync().catch((e: Error) => this.log.warn({ volume: this.name }, `volume ${this.name}: resync bookkeeping: ${e.message}`));
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.lock;
    let done!: () => void;
    this.lock = new Promise((r) => (done = r));
    await prev;
    try {
      return await fn();
    } finally {
      done();
    }
  }

  /** Journal full under on_full: bitmap. The host keeps writing at full speed. */
  private overflow(): void {
    this.toBitmap(`journal full: ${formatBytes(this.journal.usedBytes)} of ${formatBytes(this.journal.capacity)}`);
  }

  /** Switches to dirty-bitmap tracking and folds the journal into the bitmap. */
  private toBitmap(reason: string): void {
    if (this.modeNow === 'bitmap') return;
    this.modeNow = 'bitmap';
    this.overflows++;
    this.overflowAt = Date.now();
    this.log.warn({ volume: this.name },
      `volume ${this.name}: ${reason}; switched to dirty-bitmap tracking (${formatBytes(this.bitmap.regionSize)} regions), the changed regions will be resynced`);
    this.folding = this.fold().catch((e: Error) => {
      this.log.error({ volume: this.name }, `volume ${this.name}: folding the journal into the bitmap failed: ${e.message}; marking every region for resync`);
      this.bitmap.markAll();
    }).finally(() => {
      this.folding = null;
    });
  }

  /** Marks the range of every unreleased record, makes the bitmap durable, then empties the journal. */
  private async fold(): Promise<void> {
    this.log.debug({ volume: this.name }, `folding journal records ${this.journal.released + 1}..${this.journal.lastSeq} into the bitmap`);
    if (!this.skipFoldRead) await this.journal.forEachUnreleased((o, l) => this.bitmap.mark(o, l));
    this.skipFoldRead = false;
    await this.exclusive(async () => {
      await this.journal.drained();
      await this.bitmap.sync();
      if (this.roundMarker) {
        // A round's records are folded away with the rest: the next link begins a new round.
        // (The marker goes first: a marker must never outlive the records it points at.)
        await this.roundMarker.remove();
        this.roundStart = 0;
        this.roundEndSeq = 0;
        this.handed = [];
        this.handedRegions.clear();
      }
      try {
        await this.journal.releaseAllDurably();
      } catch (e) {
        // Without the release point on disk an emptied journal could restart its
        // numbering after a crash: keep the records (the bitmap covers them) and
        // empty the journal when a round begins.
        this.clearPending = true;
        this.log.warn({ volume: this.name }, `volume ${this.name}: cannot empty the journal yet (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the bitmap holds its changes`);
        return;
      }
      this.clearPending = false;
      this.journal.clear();
      // If this fails (disk full) the old segments may come back after a crash;
      // the bitmap is durable already, so recovery folds them again.
      await this.journal.sync().catch((e: Error) => this.log.warn({ volume: this.name }, `volume ${this.name}: emptying the journal: ${e.message}`));
    });
    this.inFlight.clear();
  }

  private waitForSpace(kind: RecordKind, length: number): Promise<void> {
    if (this.blocked.length >= this.maxBlocked) {
      return Promise.reject(new DiskError('EIO', `journal full and ${this.maxBlocked} writes already waiting (on_full: block)`));
    }
    if (this.journal.fits(kind, length)) return Promise.resolve();
    return new Promise((resolve) => this.blocked.push(resolve));
  }

  private wakeBlocked(): void {
    for (const w of this.blocked.splice(0)) w();
  }

  private async zeroRange(offset: number, length: number): Promise<void> {
    if (!(await this.disk.punch(offset, length))) {
      await this.disk.writeZeroes(offset, length, { fua: false, mayTrim: false, fast: false });
    }
  }
}

const ZERO = Buffer.alloc(64 * 1024);

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}
