// The journaled write path: every host write goes to the local volume and to the
// change journal (or, after an overflow, the dirty bitmap), and is acknowledged
// when both hold it; FLUSH closes an epoch and makes volume, journal and bitmap
// durable together. The host never waits for the peer.
//
// Order, for crash safety:
//   1. the journal record is appended (page cache) before the volume write starts,
//      so after kill -9 the journal holds every write the volume might have (or the
//      intent ring does; or the volume write follows the record in its job: volume-writes.ts);
//   2. after each sync round the journal's `applied` counter records the seq up to
//      which every volume write is durable; recovery replays records after it ("redo");
//   3. FLUSH/FUA reply only after volume, journal and bitmap are fdatasync'ed.
//
// Around it, each in its own file: the start-up order and its steps (startup.ts), each
// change's journal append and volume write in their order (volume-writes.ts), the
// switch to the dirty bitmap and the fold (tracking.ts), and the resync round's steps
// (resync.ts), whose state and decisions are in src/sync/ (round.ts, seeding.ts).
// With several peers (docs/PEERS.md) a round may be one peer's own: a detached peer's
// return (startRoundFor) or a new secondary's first sync, compared by hash
// (firstSyncFor); the other peers are sent its records as padding (padFor).
import { samePeers, writePeers } from './peers-file.js';
import type { Extent, ExportBackend, ZeroOptions } from '../export/backend.js';
import { DiskError, type Capabilities, diskCapabilities } from '../export/backend.js';
import type { Logger } from '../log/log.js';
import { GroupSync, type SyncStrength } from '../volume/group-sync.js';
import type { RegionSet, DirtyBitmap } from './bitmap.js';
import { growVolume } from './grow.js';
import { IntentRing } from './intent.js';
import type { Store } from './store.js';
import type { Journal, RecoveryReport } from './journal.js';
import { FLAG_RESYNC, FLAG_ROUND_END, RecordKind, recordSize, type JournalRecord } from './record.js';
import { RangeLocks } from '../sync/range-lock.js';
import { RoundMarker } from '../sync/round-marker.js';
import { ResyncRound } from '../sync/round.js';
import { Seeding } from '../sync/seeding.js';
import type { HashBuffers, RegionHash, Span } from '../sync/region-hashes.js';
import { assert, InvariantError } from '../invariants/assert.js';
import { epochBytesFor, FOLLOW_AFTER_RELEASE_MS, redoBytesFor, VOLUME_SYNC_INTERVAL_MS } from '../limits/limits.js';
import { zeroRange, type Disk } from './disk.js';
import { startUp, type Starting } from './startup.js';
import { Tracking, type TrackingMode } from './tracking.js';
import { RoundSteps } from './resync.js';
import { VolumeWrites } from './volume-writes.js';
import { PeerCursors, THE_PEER } from './peer-cursors.js';
import { DetachedPeers } from './detach.js';
import { Releases } from './release.js';

export type { Disk } from './disk.js';
export type { TrackingMode } from './tracking.js';

export type OnFull = 'bitmap' | 'block';

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
  /** The node's hashing buffers, shared by its volumes (src/sync/region-hashes.ts; absent: one per hashing). */
  hashBuffers?: HashBuffers;
  /** The volume's peers (its secondaries), in its configuration's order (absent: one, THE_PEER). */
  peers?: readonly string[];
  /** Where a detached peer's own bitmap lives (the volume's state folder; absent: no peer is ever detached, docs/PEERS.md). */
  peerStore?: Store;
}

export class JournaledVolume implements ExportBackend {
  readonly disk: Disk;
  readonly journal: Journal;
  readonly bitmap: DirtyBitmap;
  /** on_full; a reload may change it (setOnFull). */
  private onFullMode: OnFull;
  get onFull(): OnFull {
    return this.onFullMode;
  }
  private readonly log: Logger;
  /**
   * The largest epoch before the write path closes it with a barrier of its own.
   * The link lowers it to a quarter of the peer's receive log when they meet.
   */
  maxEpochBytes: number;
  private epochCloseQueued = false;
  private readonly ranges = new RangeLocks();
  private readonly activityOpts: WritePathOptions;
  /** The resync round (src/sync/round.ts): its marker, start and end, the regions handed to the journal. */
  readonly round: ResyncRound;
  /** The first sync by checksum (src/sync/seeding.ts): how far the comparison with the peer got. */
  readonly seed: Seeding;
  /** Journal or dirty bitmap, and the fold from one to the other (tracking.ts). */
  private readonly tracking: Tracking;
  /** What a round does to this volume and journal (resync.ts). */
  private readonly rounds: RoundSteps;
  /** What the start-up steps (startup.ts) work on. */
  private readonly parts: Starting;
  /**
   * Called (once) before the next host change is tracked: set by the link layer
   * while the peer is unreachable, so writes taken apart start a new generation
   * (split-brain detection, docs/FAILOVER.md).
   */
  apart: (() => void) | null = null;
  /**
   * Set when the volume is a member of a consistency group (src/group/): told of a
   * host flush ('flush') and of a member past its epoch bound since the last group
   * point ('bytes'), so the group makes a group point sooner than its cadence.
   */
  groupAsk: ((why: 'flush' | 'bytes') => void) | null = null;
  /** Bytes journaled since the last group point (a member's receive log must hold them). */
  bytesSinceGroupPoint = 0;
  /** The seq of the last group point this volume took (0: none since the start). */
  private lastGroupPointSeq = 0;
  /** Records journaled since the last group point (host writes, resync records, barriers of any kind). */
  get recordsSinceGroupPoint(): number {
    return this.tracking.mode === 'journal' ? Math.max(0, this.journal.lastSeq - this.lastGroupPointSeq) : 1;
  }
  private readonly syncer: GroupSync;
  /** Record bytes journaled since the volume's last sync began: what recovery would replay. */
  private redoBytes = 0;
  /** Syncs of the volume running now (host writes do not follow their records meanwhile: volume-writes.ts). */
  private volumeSyncs = 0;
  /** The journal's release of what every peer holds (release.ts). */
  private readonly releases: Releases;
  /** When the volume's last sync began (the journal's clock). */
  private volumeSyncedAt: number;
  /** The most that may be journaled before the volume is synced (redoBytesFor; resizeJournal changes it). */
  redoBound: number;
  private lock: Promise<void> = Promise.resolve();
  /** Each change's journal append and volume write in their order, and the ones in flight (volume-writes.ts). */
  private readonly writes: VolumeWrites;
  /** Highest seq with every volume write up to it completed and synced. */
  durableAppliedSeq = 0;
  private readonly blocked: Array<() => void> = [];
  private readonly maxBlocked: number;
  private readonly intentStore: Store | null;
  private readonly intentSlots: number | undefined;
  /** Where each peer stands (peer-cursors.ts): the journal releases up to the lowest. */
  readonly cursors: PeerCursors;
  /** Peers detached from the journal into bitmaps of their own (detach.ts; null: none may be). */
  readonly detached: DetachedPeers | null;

  constructor(opts: WritePathOptions) {
    this.cursors = new PeerCursors(opts.peers ?? [THE_PEER], 0);
    this.seed = new Seeding(this.cursors.count === 1);
    this.bitmapSize = opts.disk.size;
    const sizes = (): number => this.bitmapSize;
    this.detached = opts.peerStore ? new DetachedPeers({
      name: opts.disk.name, log: opts.log, journal: opts.journal, cursors: this.cursors, bitmap: opts.bitmap, store: opts.peerStore,
      get size() { return sizes(); },
      detachedOne: () => {
        void this.releases.releaseHeld();
      },
    }) : null;
    this.disk = opts.disk;
    this.journal = opts.journal;
    this.bitmap = opts.bitmap;
    this.onFullMode = opts.onFull;
    this.log = opts.log;
    this.maxBlocked = opts.maxBlocked ?? 4096;
    this.intentStore = opts.intentStore ?? null;
    this.intentSlots = opts.intentSlots;
    this.syncer = new GroupSync((strength) => this.syncAll(strength));
    this.redoBound = redoBytesFor(opts.journal.capacity);
    this.volumeSyncedAt = opts.journal.now();
    this.maxEpochBytes = epochBytesFor(opts.journal.capacity);
    this.round = new ResyncRound(opts.roundStore ? new RoundMarker(opts.roundStore) : null);
    // (After the detached peers, the round and the syncer: the release keeps them as they are now.)
    this.releases = new Releases({
      name: opts.disk.name, log: opts.log, journal: opts.journal, cursors: this.cursors, detached: this.detached, round: this.round,
      mode: () => this.tracking.mode, durableAppliedSeq: () => this.durableAppliedSeq, volumeSyncedAt: () => this.volumeSyncedAt,
      sync: () => this.syncer.sync(), freed: () => this.wakeBlocked(),
    });
    this.stateStore = opts.roundStore ?? null;
    this.activityOpts = opts;
    const parts = { name: this.name, log: this.log, disk: this.disk, journal: this.journal, bitmap: this.bitmap, round: this.round };
    this.parts = parts;
    this.tracking = new Tracking({
      ...parts, exclusive: (fn) => this.exclusive(fn),
      folded: () => this.writes.folded(),
      emptied: () => this.cursors.folded(this.journal.released),
    });
    this.writes = new VolumeWrites({ journal: this.journal, bitmap: this.bitmap, toBitmap: (why) => this.tracking.toBitmap(why),
      mayFollow: () => this.volumeSyncs === 0 && this.journal.now() - this.releases.syncedAt >= FOLLOW_AFTER_RELEASE_MS });
    this.rounds = new RoundSteps({
      ...parts, ranges: this.ranges, seed: this.seed, tracking: this.tracking, flush: () => this.flush(), hashBuffers: opts.hashBuffers ?? null,
      rejoinDetached: async () => { await this.detached?.rejoinAll(); }, detached: this.detached, cursors: this.cursors,
      journalAgain: () => {
        this.tracking.mode = 'journal';
        if (this.intentStore && !this.writes.intents) this.writes.intents = IntentRing.open(this.intentStore, this.intentSlots);
      },
    });
  }

  get name(): string { return this.disk.name; }
  get size(): number { return this.disk.size; }
  get readOnly(): boolean { return this.disk.readOnly; }
  /** The disk's: every connection goes through this one write path and journal, so a FLUSH covers them all. */
  capabilities(): Capabilities { return diskCapabilities(this.disk.readOnly); }
  get description(): string { return this.disk.description; }
  get mode(): TrackingMode { return this.tracking.mode; }
  /** Times the journal overflowed into the bitmap since the daemon started, and the last time. */
  get overflows(): number { return this.tracking.overflows; }
  get overflowAt(): number | null { return this.tracking.overflowAt; }
  /** The fold of the journal into the bitmap under way, if any. */
  get folding(): Promise<void> | null { return this.tracking.folding; }
  /** The open resync round's first seq, or 0. */
  get roundStart(): number { return this.round.start; }
  /** The peer the open round resyncs alone (docs/PEERS.md), or null: a round of every peer (or none). */
  get roundOwner(): string | null { return this.round.owner; }
  /** The open round's first seq as `peer` sees it: 0 when it is another peer's own round (or none). */
  roundStartFor(peer: string): number {
    return this.round.owner === null || this.round.owner === peer ? this.round.start : 0;
  }
  /** The round-end barrier's seq once appended (0 before). */
  get roundEnd(): number { return this.round.endSeq; }
  /** A round store is configured, so a bitmap can be resynced. */
  get canResync(): boolean { return this.round.canResync; }
  /** The open round compares regions by hash first (a first sync by checksum). */
  get seeding(): boolean { return this.seed.active; }
  /**
   * The open round compares with `peer`'s replica: its records wait for the comparison
   * (a round of all, or `peer`'s own). Another peer's first sync of its own holds none of
   * `peer`'s records back (docs/PEERS.md).
   */
  seedingFor(peer: string): boolean {
    return this.seed.active && (this.round.owner === null || this.round.owner === peer);
  }
  /** The bitmap the open round sends (and a comparison clears): the round's peer's own in a round of one peer's, else the volume's. */
  get roundBitmap(): DirtyBitmap { return this.rounds.roundBitmap(); }
  /** Bytes of dirty regions not yet handed to the journal. */
  get resyncLeftBytes(): number { return this.rounds.leftBytes(); }
  /** Resync records are journaled whose regions still wait for a sync to leave the bitmap. */
  get resyncUnsettled(): boolean { return this.round.unsettled(this.journal.lastSeq); }

  /**
   * Brings volume, journal and bitmap into agreement after a start (clean or not), in
   * the order of startUp() (startup.ts); last, tracking by journal, the intent ring
   * opens, and a FLUSH (through the activity log, open by then) makes it all durable.
   */
  async start(report: RecoveryReport, recorded?: RegionSet): Promise<void> {
    // Every peer's cursor starts at the durable release point (peer-cursors.ts); a peer
    // detached before the stop has its bitmap merged into the volume's (detach.ts).
    this.cursors.folded(this.journal.released);
    if (this.detached) await this.detached.mergeAtStart();
    await startUp({
      ...this.parts, round: this.round, seed: this.seed, tracking: this.tracking, intents: { store: this.intentStore, slots: this.intentSlots },
      activity: this.activityOpts, epochBytes: () => this.maxEpochBytes, journaledEnd: (from) => this.rounds.journaledEnd(from),
      activityOpened: (log) => (this.writes.activity = log),
      ready: () => {
        if (this.intentStore && this.tracking.mode === 'journal') this.writes.intents = IntentRing.open(this.intentStore, this.intentSlots);
        return this.flush();
      },
    }, report, recorded);
  }

  // --- the host's requests ----------------------------------------------------

  read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    return this.disk.read(offset, into, at, length);
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    const t = this.ranges.enterWrite(offset, data.length);
    if (typeof t !== 'number' || fua) return this.writeWaiting(offset, data, fua, t);
    // The common case, in this call and with one promise of its own: nothing locked there,
    // no FUA, the record taken at once (a host write's record is taken in the call either
    // way). About a dozen promises a write fewer than the async path below.
    let written: Promise<void>;
    try {
      const seq = this.trackNow(RecordKind.Write, offset, data.length, data, false);
      if (seq === 'wait') return this.writeWaiting(offset, data, fua, t);
      written = this.writes.both(seq, offset, data.length, () => this.disk.write(offset, data, false),
        this.disk.following ? () => this.disk.following!(offset, data) : undefined);
    } catch (e) {
      this.ranges.exitWrite(t);
      return Promise.reject(e as Error);
    }
    return written.then(() => this.ranges.exitWrite(t), (e: unknown) => {
      this.ranges.exitWrite(t);
      throw e;
    });
  }

  /** write() when the range is locked, the journal full (on_full: block) or FUA. */
  private async writeWaiting(offset: number, data: Buffer, fua: boolean, t: number | Promise<number>): Promise<void> {
    const id = typeof t === 'number' ? t : await t;
    try {
      const seq = await this.track(RecordKind.Write, offset, data.length, data, fua);
      await this.writes.both(seq, offset, data.length, () => this.disk.write(offset, data, false),
        this.disk.following ? () => this.disk.following!(offset, data) : undefined);
    } finally {
      this.ranges.exitWrite(id);
    }
    if (fua) await this.flush();
  }

  async writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    if (opts.fast && this.tracking.mode === 'journal' && !this.journal.fits(RecordKind.Zeroes, 0) && this.onFull === 'block') {
      throw new DiskError('ENOTSUP', 'journal full: zeroing would wait');
    }
    const t = this.ranges.enterWrite(offset, length);
    const id = typeof t === 'number' ? t : await t;
    try {
      const seq = await this.track(RecordKind.Zeroes, offset, length, null, opts.fua);
      await this.writes.both(seq, offset, length, () => this.disk.writeZeroes(offset, length, { ...opts, fua: false }));
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
      await this.writes.both(seq, offset, length, () => zeroRange(this.disk, offset, length));
    } finally {
      this.ranges.exitWrite(id);
    }
    if (fua) await this.flush();
  }

  // --- resync (docs/RESYNC.md): the steps in resync.ts, state and decisions in src/sync/ ---

  /** Begins (or begins again) a resync round; returns its first seq (RoundSteps.start). */
  startResync(): Promise<number> { return this.rounds.start(); }
  /** The first sync of a new pair: every region is marked, to go in the first round. */
  beginInitialSync(): Promise<void> { return this.rounds.beginInitialSync(); }
  /** Folds the journal into the bitmap and begins a new round (the peer is behind what the journal holds). */
  restartRound(reason: string): Promise<number> { return this.rounds.restart(reason); }
  /**
   * A reload changed this volume's peers (resync.ts's setPeers, docs/PEERS.md): one
   * added waits detached for its first sync, one taken away holds the journal back no
   * more, and the journal releases what the others hold.
   */
  async setPeers(next: readonly string[]): Promise<{ added: string[]; removed: string[] }> {
    const changed = await this.rounds.setPeers(next);
    // (Written down before the release: a restart opens with these peers, src/journal/peers-file.ts.)
    if (this.stateStore) await writePeers(this.stateStore, this.cursors.peers);
    // The change is made; what it lets the journal release goes at the next ack or the volume's next sync if not now
    // (a full disk: the release point's write failed), as after any ack.
    await this.releases.releaseHeld();
    return changed;
  }
  /**
   * After its start: the peers written down at its last run (`had`: it was opened with
   * them, peersToOpenWith) become `configured`, as a reload makes the change: a peer new
   * since then waits detached for a first sync of its own (src/journal/peers-file.ts).
   * None written down (a new volume, a release before the file): `configured` is now.
   */
  async settlePeers(had: readonly string[] | null, configured: readonly string[]): Promise<{ added: string[]; removed: string[] } | null> {
    if (!this.stateStore) return null;
    if (had === null) {
      await writePeers(this.stateStore, configured);
      return null;
    }
    if (samePeers(had, configured)) return null;
    return this.setPeers(configured);
  }
  /** The volume's size: raised at a reload; it grows after its peers did (grow.ts). One at a time (the node's action queue). */
  grow(size: number): Promise<void> {
    return growVolume({
      disk: this.disk, state: this.stateStore, bitmap: this.bitmap, detached: this.detached, seed: this.seed,
      bitmapsFor: (n) => { this.bitmapSize = n; },
    }, size);
  }
  /** The size a detached peer's bitmap is made for (the new one from the start of a grow). */
  private bitmapSize: number;
  /** The volume's state folder (the round store), where a grow is written down (grow.ts). */
  private readonly stateStore: Store | null;
  /** A round of detached `peer`'s own (resync.ts's startFor); 0: it cannot be, fold and begin a round of all. */
  startRoundFor(peer: string): Promise<number> { return this.rounds.startFor(peer); }
  /** A first sync of new `peer`'s own, compared by hash, the others streaming on (resync.ts's firstSyncFor); 0: it cannot be. */
  firstSyncFor(peer: string): Promise<number> { return this.rounds.firstSyncFor(peer); }
  /**
   * `peer`, whatever its replica holds, gets all of the volume from the open round of all
   * (every region was marked at its start, a first sync) and every record of it the
   * journal holds for `peer` (attached, its cursor before the round's start).
   */
  roundCoversAllFor(peer: string): boolean {
    return this.round.start !== 0 && this.round.owner === null && this.round.whole && !this.cursors.isDetached(peer) &&
      this.cursors.of(peer) < this.round.start;
  }
  /** The open round is `peer`'s first sync of its own (firstSyncFor), which covers every region. */
  firstSyncOpenFor(peer: string): boolean {
    const own = this.detached?.ownRound;
    return this.round.start !== 0 && this.round.owner === peer && own?.peer === peer && own.first;
  }
  /** New `peer` waits for another's round: it leaves the journal meanwhile, every region marked (detach.ts's detachNew). */
  async detachNew(peer: string): Promise<boolean> {
    return this.detached !== null && this.cursors.count > 1 && await this.detached.detachNew(peer);
  }

  /**
   * The records as `peer` is sent them (docs/PEERS.md, "Rounds for one peer"): a resync
   * record of a round of another peer's own goes as a Skip record naming its own seq (no
   * payload; it holds the replica back from no barrier), that round's end as a plain
   * barrier. The peer holds every record before them, so it holds their bytes already.
   */
  padFor(peer: string, records: JournalRecord[]): JournalRecord[] {
    if (!this.round.ownRounds) return records;
    let out: JournalRecord[] | null = null;
    records.forEach((r, i) => {
      if ((r.flags & (FLAG_RESYNC | FLAG_ROUND_END)) === 0) return;
      const owner = this.round.ownerOf(r.seq, this.journal.released);
      if (owner === null || owner === peer) return;
      out ??= [...records];
      out[i] = r.kind === RecordKind.Barrier ? { ...r, flags: r.flags & ~FLAG_ROUND_END }
        : { kind: RecordKind.Skip, flags: 0, seq: r.seq, epoch: r.epoch, offset: r.seq, length: 0, time: r.time, payload: Buffer.alloc(0) };
    });
    return out ?? records;
  }
  /** Hands the next run of dirty regions (at most maxBytes) to the journal; false: nothing to do. */
  resyncStep(maxBytes: number): Promise<boolean> { return this.rounds.step(maxBytes); }
  /** The peer's hashes of regions first.. (a first sync by checksum): equal regions leave the bitmap. Returns how many. */
  compareRegions(first: number, regionSize: number, hashes: Buffer[], algorithm: RegionHash): Promise<number> {
    return this.rounds.compareRegions(first, regionSize, hashes, algorithm);
  }
  clearHoles(offset: number, covered: number, peerHoles: Span[]): Promise<number> { return this.rounds.clearHoles(offset, covered, peerHoles); }
  /** Online verify, one batch: read and hashed under the range lock after a flush; the caller unlocks. */
  verifyHashes(first: number, count: number, algorithm: RegionHash): Promise<{ hashes: Buffer[]; afterSeq: number; unlock: () => void; readBytes: number }> {
    return this.rounds.verifyHashes(first, count, algorithm);
  }
  /** Verify found these regions different on the peer: they go to the bitmap, and the next link resyncs them. */
  markForResync(regions: number[], reason: string): void { this.rounds.markForResync(regions, reason); }

  cache(offset: number, length: number): Promise<void> {
    return this.disk.cache(offset, length);
  }

  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    return this.disk.extents(offset, length, max);
  }

  /**
   * Appends group point `point` (a barrier flagged FLAG_GROUP_POINT, docs/GROUPS.md)
   * now, in the caller's turn of the event loop, and returns at once: true when the
   * record is in the journal (a group makes it on every member in one turn, so no host
   * write gets a seq in between). `durable` then makes it a flush point as a FLUSH does
   * (volume, journal and bitmap synced together); the shipper ships it once durable.
   * False in bitmap mode or on a full journal: this member misses the point, and the
   * group is not consistent until its resync ends.
   */
  groupPoint(point: number): { made: boolean; durable: Promise<void> } {
    let made = false;
    if (this.tracking.mode === 'journal') {
      try {
        const r = this.journal.barrier(0, true, point);
        made = typeof r === 'number';
        if (typeof r === 'number') this.lastGroupPointSeq = r;
        if (r === 'full' && this.onFull === 'bitmap') this.tracking.overflow();
      } catch (e) {
        this.tracking.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    }
    if (made) this.bytesSinceGroupPoint = 0;
    return { made, durable: this.syncer.sync() };
  }

  /** FLUSH: close the epoch with a barrier, then volume + journal + bitmap durable together. */
  flush(): Promise<void> {
    return this.closeAndSync('full');
  }

  /**
   * A boundary the primary chose (the host has not flushed for a while): the epoch is
   * closed with a barrier and the journal made durable, so its records ship; the volume
   * too only when its sync is due (docs/JOURNAL.md, "Epochs and syncs").
   */
  closeEpochNow(): Promise<void> {
    return this.closeAndSync(this.epochSyncStrength());
  }

  private async closeAndSync(strength: SyncStrength): Promise<void> {
    this.groupAsk?.('flush');
    if (this.tracking.mode === 'journal' && this.journal.openEpochHasWrites) {
      let r: number | 'full' | null;
      try {
        r = this.journal.barrier();
      } catch (e) {
        this.tracking.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        r = null;
      }
      if (r === 'full') {
        if (this.onFull === 'bitmap') this.tracking.overflow();
        else {
          await this.waitForSpace(RecordKind.Barrier, 0);
          return this.closeAndSync(strength);
        }
      }
    }
    await this.syncer.sync(strength);
  }

  /** A light sync (the journal alone) for an epoch close, unless the volume's sync is due. */
  private epochSyncStrength(): SyncStrength {
    if (this.tracking.mode !== 'journal') return 'full';
    if (this.redoBytes >= this.redoBound) return 'full';
    // (Extents leave the activity log only after syncs of the volume: a log past its slots
    // rewrites more with each new extent, and what a power loss must resync grows.)
    if (this.writes.activity?.overfull) return 'full';
    return this.redoBytes > 0 && this.journal.now() - this.volumeSyncedAt >= VOLUME_SYNC_INTERVAL_MS ? 'full' : 'light';
  }

  /** Every peer holds everything up to `seq` durably; free journal space behind it (release.ts). */
  release(seq: number): Promise<void> {
    return this.releases.release(seq);
  }

  /** `peer` holds everything up to `seq` durably; free the journal space every peer holds (docs/PEERS.md). */
  releaseFor(peer: string, seq: number): Promise<void> {
    return this.releases.releaseFor(peer, seq);
  }

  /** The shipper's tick: a release waiting since the volume's sync interval passed syncs it now, in the background (release.ts). */
  releaseIfDue(): void {
    this.releases.ifDue();
  }

  /** Resolves when no fold of the journal into the bitmap is running. */
  quiesce(): Promise<void> {
    return this.tracking.quiesce();
  }

  /**
   * Closes the files of a write path whose start failed (the daemon sets its volume
   * aside: src/node/set-aside.ts): nothing is flushed or reset, since it took no write;
   * the next open recovers from the disk as after a crash.
   */
  abandon(): void {
    this.writes.intents?.close();
    this.journal.close();
    this.bitmap.close();
    this.detached?.close();
  }

  async close(): Promise<void> {
    this.releases.close();
    await this.tracking.folding;
    await this.flush().catch(() => undefined);
    await this.releases.afterLastFlush();
    // A clean stop: everything is durable, so a reboot from here owes no resync.
    if (this.writes.activity) {
      await this.flush().catch(() => undefined);
      await this.writes.activity.reset().catch(() => undefined);
    }
    this.writes.intents?.close();
    this.journal.close();
    this.bitmap.close();
    this.detached?.close();
  }

  // --- internals --------------------------------------------------------------

  /**
   * Ends the open epoch now with a barrier the primary chose (the epoch bound), and
   * makes it durable soon: one sync for the barriers of one turn, of the journal alone
   * unless the volume's is due (a group member's group is asked for a point then too).
   */
  private closeEpoch(): void {
    const r = this.journal.barrier();
    // (A full journal: the record after it finds it full too, and the path for a full journal takes over.)
    if (r === 'full' || this.epochCloseQueued) return;
    this.epochCloseQueued = true;
    queueMicrotask(() => {
      this.epochCloseQueued = false;
      void this.syncer.sync(this.epochSyncStrength()).catch(() => undefined);
    });
  }

  /** Journals (or marks in the bitmap) one host change; returns its seq (0 in bitmap mode). */
  private async track(kind: RecordKind.Write | RecordKind.Zeroes | RecordKind.Trim, offset: number, length: number, payload: Buffer | null,
    fua: boolean): Promise<number> {
    for (;;) {
      const seq = this.trackNow(kind, offset, length, payload, fua);
      if (seq !== 'wait') return seq;
      await this.waitForSpace(kind, length);
    }
  }

  /**
   * track(), in this call: the seq (0 in bitmap mode), or 'wait' when the journal is full
   * under on_full: block (the caller waits for space and tries again).
   */
  private trackNow(kind: RecordKind.Write | RecordKind.Zeroes | RecordKind.Trim, offset: number, length: number, payload: Buffer | null,
    fua: boolean): number | 'wait' {
    // The front end checked the range (in bigint); a change outside the volume would reach the replica.
    assert(Number.isSafeInteger(offset) && offset >= 0 && length >= 0 && offset + length <= this.disk.size,
      () => `volume ${this.name}: a change at ${offset}+${length} is outside the volume of ${this.disk.size} bytes`);
    if (this.apart) {
      // The first change while apart from the peer: the link layer starts a new generation.
      const f = this.apart;
      this.apart = null;
      f();
    }
    for (;;) {
      if (this.tracking.mode === 'bitmap') {
        this.bitmap.mark(offset, length);
        return 0;
      }
      let seq: number | 'full';
      try {
        // A primary-chosen boundary: the secondary applies whole epochs from its receive
        // log, so an epoch holds at most maxEpochBytes (or one record alone). The barrier
        // goes in before the record that would pass the bound, in this same call: writes
        // let go at once (the waiters of a range lock) cannot pile up past it.
        if (this.journal.openEpochBytes > 0 && this.journal.openEpochBytes + recordSize(kind, length) > this.maxEpochBytes) this.closeEpoch();
        seq = this.journal.append(kind, offset, length, payload, fua);
        if (seq !== 'full') this.redoBytes += recordSize(kind, length);
      } catch (e) {
        // The journal's disk failed (full, I/O error): the host is still served, tracked by bitmap.
        this.tracking.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        continue;
      }
      if (seq !== 'full') {
        this.writes.journaled(seq);
        // The record is in the journal and will ship: whatever the bookkeeping below meets,
        // the write goes on to the volume (or the peer would hold what this disk lacks).
        try {
          this.releases.appended();
          if (this.detached && this.cursors.count > 1) this.detached.check();
          if (this.seed.active) this.seed.touch(offset, length);
          this.bytesSinceGroupPoint += length;
          if (this.groupAsk && this.bytesSinceGroupPoint > this.maxEpochBytes) this.groupAsk('bytes');
        } catch (e) {
          if (e instanceof InvariantError) throw e;
          this.log.error({ volume: this.name }, `volume ${this.name}: after journaling record ${seq}: ${(e as Error).message}; the write goes on`);
        }
        // (A record larger than the bound alone: its epoch ends right after it. The record is
        // in: a barrier the journal's disk refuses sends the volume to the bitmap, and the
        // write goes on to the volume.)
        if (this.journal.openEpochBytes > this.maxEpochBytes) {
          try {
            this.closeEpoch();
          } catch (e) {
            this.tracking.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
          }
        }
        assert(this.journal.openEpochBytes <= Math.max(this.maxEpochBytes, recordSize(kind, length)),
          () => `volume ${this.name}: an epoch of ${this.journal.openEpochBytes} bytes is open, over the bound of ${this.maxEpochBytes}`);
        return seq;
      }
      if (this.onFull === 'bitmap') {
        this.tracking.overflow();
        continue;
      }
      return 'wait';
    }
  }

  private async syncAll(strength: SyncStrength): Promise<void> {
    if (strength === 'light' && this.tracking.mode === 'journal') return this.syncJournal();
    const applied = this.writes.appliedSeq();
    // What is journaled from here on is not covered by this sync.
    this.redoBytes = 0;
    this.volumeSyncedAt = this.journal.now();
    let journalDurable = true;
    const journalSync = (): Promise<void> => this.syncJournalOrFold().then((ok) => {
      journalDurable = ok;
    });
    const volumeSync = async (): Promise<void> => {
      this.volumeSyncs++;
      try {
        // (Queued followers go their own way: one waiting for this sync's writeback would hold up the journal.)
        this.journal.detachFollowers();
        await this.disk.flush();
      } finally {
        this.volumeSyncs--;
      }
    };
    await this.exclusive(() => Promise.all([volumeSync(), journalSync(), this.bitmap.sync()]).then(() => undefined));
    if (!journalDurable) {
      // The journal could not be made durable: its records are durable only once the
      // fold has put their ranges in the bitmap and synced it.
      await this.quiesce();
      await this.exclusive(() => this.bitmap.sync());
    }
    this.durableAppliedSeq = Math.max(this.durableAppliedSeq, applied);
    this.writes.activity?.synced();
    if (this.tracking.mode === 'journal') this.journal.markApplied(this.durableAppliedSeq);
    this.releases.afterSync();
    await this.rounds.settle().catch((e: Error) => this.log.warn({ volume: this.name }, `volume ${this.name}: resync bookkeeping: ${e.message}`));
  }

  /** The journal alone durable (its records may ship); the volume and `applied` stay as they were. */
  private async syncJournal(): Promise<void> {
    await this.exclusive(() => this.syncJournalOrFold());
  }

  /** Syncs the journal; false if its disk broke (the volume goes to the bitmap then). */
  private syncJournalOrFold(): Promise<boolean> {
    return this.journal.sync().then(() => true, (e: Error) => {
      if (!this.journal.broken) throw e;
      this.tracking.toBitmap(`cannot write to the journal (${(e as NodeJS.ErrnoException).code ?? e.message})`);
      return false;
    });
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

  /**
   * A reload's on_full. From block to bitmap, the writes waiting for space go on at
   * once (the journal full, they overflow to the bitmap, as that mode does).
   */
  setOnFull(mode: OnFull): void {
    this.onFullMode = mode;
    if (mode === 'bitmap') this.wakeBlocked();
  }

  /**
   * A reload's `journal:` size: grown, writes waiting for space (on_full: block) go on at
   * once, and a journal that would have overflowed into the bitmap keeps the order of
   * the writes for longer (docs/JOURNAL.md, "Its size"); shrunk, only down to what it
   * holds now. The redo bound and the epochs follow the size.
   */
  resizeJournal(capacity: number): void {
    this.journal.resize(capacity);
    this.redoBound = redoBytesFor(capacity);
    this.maxEpochBytes = Math.min(this.maxEpochBytes, epochBytesFor(capacity));
    this.wakeBlocked();
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
}
