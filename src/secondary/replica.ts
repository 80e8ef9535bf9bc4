// The secondary side of one volume: the receive log, the replica volume, and the
// receiver state machine between them. Served read-only over NBD; a read never sees
// a half-applied unit (reads wait while a unit is applied), and after any crash the
// unit in progress is applied again from the receive log before anything is served,
// so the replica is always a flush-point image (docs/INVARIANTS.md, invariant 3).
// Beside it: the receiver's decisions (receiver.ts) and their carrying out
// (plan-runner.ts), the receive log read at a start and filled from frames
// (receive-log.ts), applying a unit (apply-unit.ts), the round's marker and undo area
// (replica-round.ts), a held checkpoint and its file (checkpoint-hold.ts), region
// hashes (src/sync/region-hashes.ts).
import type { MemoryBudget } from '../memory/budget.js';
import type { Extent, ExportBackend, ZeroOptions } from '../export/backend.js';
import { DiskError, type Capabilities, readOnlyCapabilities } from '../export/backend.js';
import type { Logger } from '../log/log.js';
import type { Journal } from '../journal/journal.js';
import { RecordKind, type JournalRecord } from '../journal/record.js';
import { formatBytes } from '../units/units.js';
import { removeGrowing, writeGrowing } from '../journal/grow.js';
import type { Store } from '../journal/store.js';
import type { RoundMark } from '../sync/round-marker.js';
import type { Disk } from '../journal/disk.js';
import { Receiver, type ReceiverAction } from './receiver.js';
import { UnitApplier } from './apply-unit.js';
import { ReplicaRound } from './replica-round.js';
import { CheckpointHold, readCheckpoint, type Checkpoint } from './checkpoint-hold.js';
import type { HashBuffers, RegionHash, Span } from '../sync/region-hashes.js';
import { assert } from '../invariants/assert.js';
import { received, receiverAtStart } from './receive-log.js';
import { PlanRunner, type FrameUse, type ReplicaLink } from './plan-runner.js';
import type { MemberView } from './receiver.js';
import { pointName, type History, type HistorySettings, type RestorePoint } from '../history/history.js';
import type { PointView } from '../history/view.js';
import { PastPoints } from './past-points.js';
import { PeerRequests } from './replica-requests.js';
import { readPromoteAt } from './promote-at-file.js';

export { SYNCED_FILE } from './replica-round.js';
export { CHECKPOINT_FILE, CHECKPOINT_FORMAT, readCheckpoint, type Checkpoint } from './checkpoint-hold.js';
export { GROUP_POINT_FILE, GROUP_POINT_FORMAT } from './group-point-file.js';
export type { ReplicaLink } from './plan-runner.js';

export interface ReplicaOptions {
  /** The volume's state folder: the resync round marker and the undo area live here. */
  roundStore: Store;
  /** Undo granularity (the volume's bitmap region). */
  regionSize: number;
  /** Apply units end at the first exposable barrier about this far ahead (default APPLY_UNIT_BYTES; the simulation makes it small). */
  applyUnitBytes?: number;
  /** The apply reads the receive log about this much at a time (default per src/limits; the simulation makes it small, so a unit takes several). */
  applyReadBytes?: number;
  /** A member of a consistency group (docs/GROUPS.md): applied only to group points up to the group's limit. */
  group?: boolean;
  /** The node's memory budget: every read of the receive log into the replica is an `apply` lease (src/memory/budget.ts). */
  memory?: MemoryBudget;
  /** The node's hashing buffers, shared by its volumes (src/sync/region-hashes.ts; absent: one per hashing). */
  hashBuffers?: HashBuffers;
  /** Keep history (docs/HISTORY.md): what each apply overwrites, so past flush points open. Absent: none is kept (any left is dropped). */
  history?: HistorySettings;
}

/** A promote refused: a unit failed part-way and failed again, so the replica is no flush-point image (its message says what to do). */
export class TornReplicaError extends DiskError {}

export class Replica implements ExportBackend {
  receiver: Receiver;
  log: Journal;
  private readonly units: UnitApplier;
  /** Carries out what the receiver plans. */
  private readonly runner: PlanRunner;
  private readonly resync: ReplicaRound;
  private readonly checkpoints: CheckpointHold;
  /** Records that arrive while a round opens wait for it (in order). */
  private opening: Promise<void> | null = null;
  /** Restore points the history keeps listed from its start (a held checkpoint's, a cut promote's). */
  private pinnedAtStart: number[] = [];
  /** Its history and past points, when the volume keeps history (docs/HISTORY.md). */
  private readonly past: PastPoints;

  private constructor(readonly volume: Disk, private readonly openLog: () => Journal, private readonly logger: Logger, private readonly opts: ReplicaOptions) {
    this.resync = new ReplicaRound(opts.roundStore, opts.regionSize, volume);
    this.units = new UnitApplier(volume, this.resync, logger, opts.memory, opts.applyReadBytes);
    this.units.inGroup = opts.group === true;
    this.past = new PastPoints(volume, this.units, logger, () => this.receiver.applied);
    this.requests = new PeerRequests({
      volume, units: this.units, hashBuffers: opts.hashBuffers ?? null, applied: () => this.receiver.applied, busy: () => this.attaching ?? this.opening,
    });
    this.checkpoints = new CheckpointHold(opts.roundStore);
    this.runner = new PlanRunner(this, this.units, logger, opts.roundStore);
    this.log = openLog();
    this.receiver = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 }, { unitBytes: opts.applyUnitBytes, group: opts.group });
  }

  /** A member of a consistency group. */
  get inGroup(): boolean { return this.opts.group === true; }

  /**
   * Called after the receiver moved (a sync or an apply ended): a group's coordinator
   * (src/node/groups.ts) looks at every member again.
   */
  onProgress: (() => void) | null = null;

  /** What the group's coordinator needs of this member. */
  get memberView(): MemberView {
    const v = this.receiver.memberView;
    // (The round's marker is there from its opening to its end; the receiver's flag a little less long.)
    return this.round !== null && !v.inRound ? { ...v, inRound: true } : v;
  }

  /** The group's limit moved: the replica may be brought to group points up to `point`. */
  async setGroupLimit(point: number | null): Promise<void> {
    this.groupLimit = point;
    // While the receive log is reopened the receiver is made again from the disk; the
    // limit is given to the new one (a unit asked of the old one would end on the new
    // one, which never asked for it: group simulation seed 32).
    while (this.reopening) await this.reopening.catch(() => undefined);
    if (this.groupLimit !== point) return; // a later limit overtook this one
    return this.run(this.receiver.handle({ type: 'groupLimit', point }));
  }

  /** The limit the group gave last (a receiver made again, after its log was reopened, starts from it). */
  private groupLimit: number | null = null;

  /**
   * Recovers the receive log, then finishes any unit a crash interrupted.
   * `openLog` makes a fresh Journal on the receive log's store (used again if the
   * log breaks, say on a full disk, once the disk has room).
   */
  static async open(volume: Disk, openLog: () => Journal, logger: Logger, opts: ReplicaOptions): Promise<Replica> {
    const replica = new Replica(volume, openLog, logger, opts);
    try {
      await replica.resync.readMark();
      const cp = await readCheckpoint(opts.roundStore);
      if (cp) replica.checkpoints.hold(cp);
      const promoting = await readPromoteAt(opts.roundStore);
      replica.pinnedAtStart = [cp?.point?.seq, promoting?.seq].filter((s): s is number => s !== undefined);
      await replica.resync.openUndo();
      // History is kept only for an image this replica holds since its first sync: any
      // other (turned off, or left from before a promote) could not open right.
      await PastPoints.dropUnless(opts.roundStore, opts.history !== undefined && replica.resync.synced,
        opts.history ? 'no first sync has completed' : 'history is off', replica.name, logger);
      await replica.recover();
      if (cp?.point) await replica.past.reopen(cp);
    } catch (err) {
      // (Its files are let go: the daemon sets the volume aside and may open it again.)
      try {
        replica.abandon();
      } catch {
        // what failed first is what counts
      }
      throw err;
    }
    return replica;
  }

  private async recover(): Promise<void> {
    const log = this.log;
    const { applied, redoTo } = await receiverAtStart(log, {
      name: this.name, logger: this.logger, round: this.resync, checkpoint: () => this.frozenBy,
      groupStore: this.inGroup ? this.opts.roundStore : null, receiverOptions: { unitBytes: this.opts.applyUnitBytes, group: this.opts.group },
      made: (r) => (this.receiver = r),
    });
    // Records applied before the stop but not yet released from the log.
    if (applied > log.released) await log.release(applied).catch(() => undefined);
    // (A unit that failed after its applied counter was written is whole: replication simulation seed 2762.)
    this.units.recovered(applied);
    // Opened before a unit a crash cut is redone: it knows what that unit saved already.
    // (Pinned: the point of a checkpoint held, and of a promote a crash cut part-way.)
    if (this.opts.history) await this.past.open(this.opts.roundStore, this.opts.history, applied, this.pinnedAtStart);
    // A unit interrupted by a crash is applied again now, before the export serves.
    const pending = this.receiver.handle({ type: 'up' });
    await this.run(pending);
    if (redoTo !== null) await this.run(this.receiver.handle({ type: 'groupLimit', point: redoTo }));
    // (A receiver made again after its log was reopened: the group's limit stays.)
    else if (this.groupLimit !== null) await this.run(this.receiver.handle({ type: 'groupLimit', point: this.groupLimit }));
    this.receiver.handle({ type: 'down' });
  }

  /** Why the image is between two flush points (a failed apply waits to be redone), or null. */
  get tornBy(): string | null { return this.units.torn; }
  /** The unit being applied now (records from..to), or null. Readers wait for it; it is not a failure. */
  get applyingUnit(): { from: number; to: number; since: number } | null { return this.units.unit; }
  get appliedUnits(): number { return this.units.units; }
  /** The open resync round, if any. */
  get round(): RoundMark | null { return this.resync.mark; }
  /** The held checkpoint, if any. */
  get checkpoint(): Checkpoint | null { return this.checkpoints.held; }
  /** The held checkpoint that freezes the replica, if any (one taken from the history leaves it current). */
  get frozenBy(): Checkpoint | null {
    const cp = this.checkpoints.held;
    return cp && !cp.point ? cp : null;
  }

  /** The history, when the volume keeps one. */
  get history(): History | null { return this.past.history; }

  /**
   * A reload turned history on (`settings`) or off (null), between two units: no unit
   * applies while it changes (a unit asked meanwhile waits, as for a read of the
   * replica), so every unit is saved whole or not at all. On, it begins at the record
   * applied now, as a start begins it; off, its files go (docs/HISTORY.md). Refused
   * while a checkpoint holds a past point: its image reads from the history.
   */
  async setHistory(settings: HistorySettings | null): Promise<void> {
    if (settings === null && this.checkpoint?.point) {
      throw new DiskError('EBUSY', `volume ${this.name}: checkpoint "${this.checkpoint.label}" holds a past point, read from the history: ` +
        `release it (offsite checkpoint release ${this.name}), then reload to turn history off`);
    }
    await this.units.beginRead();
    try {
      if (settings !== null) {
        await this.past.open(this.opts.roundStore, settings, this.receiver.applied, []);
        // (Kept for a reopen of the receive log, which recovers the history too.)
        (this.opts as { history?: HistorySettings }).history = settings;
      } else {
        delete (this.opts as { history?: HistorySettings }).history;
        const h = this.past.history;
        this.past.close();
        // (A compaction under way commits nothing once closed; its temporary file goes as it ends:
        // replication simulation seed 3673.)
        await h?.compacted();
        await PastPoints.dropUnless(this.opts.roundStore, false, 'history is off', this.name, this.logger);
      }
    } finally {
      this.units.endRead();
    }
  }

  /**
   * The volume's size: raised (docs/CONFIG.md, "Growing a volume"), between two units:
   * the new part reads zeros, as the primary's does once it grows too (its next Hello
   * then finds the sizes equal; until then it sends nothing past the old end). A round
   * under way keeps its undo area's size (src/sync/undo.ts); the history's new segments
   * say the new size.
   */
  async grow(size: number): Promise<void> {
    if (size <= this.volume.size) return;
    await this.units.beginRead();
    try {
      // (Written down first: a start after a crash part-way finishes it, src/journal/grow.ts.)
      await writeGrowing(this.opts.roundStore, size);
      await this.volume.extend(size);
      this.volume.setSize(size);
      this.past.history?.grow(size);
      await removeGrowing(this.opts.roundStore);
    } finally {
      this.units.endRead();
    }
  }

  /** The restore points the history can open, oldest first (none without history). */
  historyPoints(): RestorePoint[] {
    return this.past.list();
  }

  /** Opens the image at restore point `seq` (a listed one); close it when done. */
  openPoint(seq: number): Promise<PointView> {
    return this.past.openPoint(seq);
  }

  /** Reads the image checkpoint `cp` serves: the frozen replica, or its point in the history. */
  readImage(cp: Checkpoint, offset: number, into: Buffer, at: number, length: number): Promise<void> {
    if (!cp.point) return this.read(offset, into, at, length);
    if (this.checkpoint !== cp) return Promise.reject(new DiskError('ESTALE', `checkpoint "${cp.label}" of ${this.name} was released`));
    return this.past.read(cp, offset, into, at, length);
  }

  get name(): string { return this.volume.name; }
  get size(): number { return this.volume.size; }
  get readOnly(): boolean { return true; }
  capabilities(): Capabilities { return readOnlyCapabilities(true); }
  get description(): string { return `${this.volume.description} (replica: the last applied flush point)`; }

  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    await this.units.beginRead();
    try {
      // In a round the image before the round is served: undo copies where the round wrote.
      if (this.resync.undo) return await this.resync.undo.readOld(this.volume, offset, into, at, length);
      if (this.units.torn) throw new DiskError('EIO', `the replica is between two flush points until a failed apply is redone (${this.units.torn})`);
      return await this.volume.read(offset, into, at, length);
    } finally {
      this.units.endRead();
    }
  }

  /**
   * The export serves a flush-point image of the primary (false during the first
   * sync, or while a failed apply waits to be redone). A unit being applied does not
   * make it false: readers wait for the unit and then read the next flush point.
   */
  get consistent(): boolean {
    return this.notFrozenBecause() === null;
  }

  /** Why the replica is no flush-point image now (for an operator), or null when it is one. */
  notFrozenBecause(): string | null {
    if (!this.resync.synced) return this.round?.initial ? 'its first sync is under way, so it is not an image of the primary yet' :
      'its first sync has not completed, so it is not an image of the primary yet';
    if (this.round) return this.round.initial ? 'a first sync is under way' : null;
    if (this.units.torn) {
      return `an apply failed (${this.units.torn}) and the image is between two flush points until it is redone (the next link, or a promote, retries it)`;
    }
    return null;
  }

  /** The hashes of `count` regions of the replica from region `first` (replica-requests.ts). */
  hashRegions(
    algorithm: RegionHash, regionSize: number, first: number, count: number, wanted: () => boolean = () => true, afterSeq = 0,
  ): Promise<Buffer[] | null> {
    return this.requests.hashRegions(algorithm, regionSize, first, count, wanted, afterSeq);
  }

  /** Where the replica holds holes from `offset` (replica-requests.ts). */
  mapHoles(offset: number, length: number, maxHoles: number, wanted: () => boolean = () => true): Promise<{ covered: number; holes: Span[] } | null> {
    return this.requests.mapHoles(offset, length, maxHoles, wanted);
  }

  private readonly requests: PeerRequests;

  /** The round this side has open, as Hello reports it (0: none). */
  get roundStart(): number {
    return this.round?.startSeq ?? 0;
  }

  /**
   * The primary opened (or moved) a resync round starting at `startSeq`: everything
   * durable here is applied as part of the round, then the log continues at startSeq.
   * Records frames that arrive meanwhile wait.
   */
  openRound(startSeq: number): Promise<void> {
    // One at a time, in the order the Resyncs came (several wait out a held checkpoint,
    // one per link the primary began meanwhile): the last one's round is the primary's.
    const before = this.opening;
    const p = (before ? before.catch(() => undefined) : Promise.resolve()).then(() => this.doOpenRound(startSeq)).finally(() => {
      if (this.opening === p) this.opening = null;
    });
    this.opening = p;
    return p;
  }

  private async doOpenRound(startSeq: number): Promise<void> {
    // Each wait again until none holds: a checkpoint held for hours may see a link attach
    // and the receive log reopened meanwhile (found by the replication simulation's
    // failovers, seed 490: the round jumped the new log while its recovery ran).
    for (;;) {
      const wait = this.roundWaitsFor();
      if (wait) {
        await wait;
        continue;
      }
      await this.applyIdle(); // (the release starts an apply of its own: it ends before the round opens)
      if (!this.roundWaitsFor()) break;
    }
    if (!this.round) {
      // The first sync has no earlier image to keep; any later round keeps it in the undo area,
      // and so does the first round of a replica that follows a new primary (RoleChanges.follow):
      // its receive log is new, but the volume is an image of the primary it followed before.
      const initial = !this.resync.synced && this.receiver.applied === 0 && this.log.lastSeq === 0;
      await this.resync.begin(startSeq, initial);
      this.logger.info({ volume: this.name },
        `volume ${this.name}: resync round from record ${startSeq} ` +
        `opened${initial ? ' (first sync: the replica is not consistent until it ends)' : '; the export keeps serving the last consistent image'}`);
    } else if (this.round.startSeq !== startSeq) {
      await this.resync.move(startSeq);
    }
    await this.run(this.receiver.handle({ type: 'roundOpened' }));
    if (this.receiver.applied >= startSeq - 1) return;
    // What this log holds before the round is part of the round: make it durable and apply it.
    const upTo = await this.log.sync();
    await this.run(this.receiver.handle({ type: 'synced', upTo }));
    while (this.units.gate) await this.units.gate;
    if (this.receiver.applied < this.log.lastSeq) throw new Error(`could not apply records ${this.receiver.applied + 1}..${this.log.lastSeq} before the round`);
    await this.log.release(this.receiver.applied);
    this.log.jumpTo(startSeq - 1);
    this.receiver.handle({ type: 'jumped', seq: startSeq - 1 });
    // Durable with this sync; if it fails, the round marker makes the primary send Resync again.
    this.log.markApplied(startSeq - 1);
    await this.log.sync();
  }
  /** What a round's opening waits for now (a link attaching, the receive log reopened, a release, a unit, a checkpoint), or null. */
  private roundWaitsFor(): Promise<unknown> | null {
    const busy = this.attaching ?? this.reopening ?? this.releasing;
    if (busy) return busy.catch(() => undefined);
    if (this.units.gate) return this.units.gate;
    // Records before the round must be applied first: a held checkpoint makes the round wait.
    return this.frozenBy ? this.checkpoints.released : null;
  }
  write(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  writeZeroes(_o: number, _l: number, _z: ZeroOptions): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  trim(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  flush(): Promise<void> { return Promise.resolve(); }
  cache(offset: number, length: number): Promise<void> { return this.volume.cache(offset, length); }
  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    // In a round the served image is partly in the undo area: call it all data.
    if (this.resync.undo) return Promise.resolve([{ length, hole: false }]);
    return this.volume.extents(offset, length, max);
  }

  /**
   * Freezes the image at the last applied flush point: nothing is applied until
   * release; received records keep landing in the receive log (and when it is
   * full, the primary is asked to hold the rest in its journal).
   */
  async createCheckpoint(
    label: string,
    holdMs: number | null,
    now = Date.now(),
    ownedByDrill = false,
    group?: { group: string; groupPoint: number },
    at?: number | { seq: number },
  ): Promise<Checkpoint> {
    // (A receive log being reopened makes the receiver again: hold the new one.)
    while (this.reopening) await this.reopening.catch(() => undefined);
    if (this.checkpoint) {
      throw new DiskError('EEXIST', `checkpoint "${this.checkpoint.label}" is already held on ${this.name} ` +
        `(since ${new Date(this.checkpoint.createdAt).toISOString()}); release it first`);
    }
    if (at !== undefined) return this.checkpointAt(label, holdMs, now, ownedByDrill, at, group);
    const why = this.notFrozenBecause();
    if (why) throw new DiskError('EAGAIN', `no checkpoint of ${this.name} can be taken yet: ${why}`);
    // A unit being applied (or asked for) ends first, at most one (APPLY_UNIT_BYTES):
    // the hold stops the next one, so the image freezes at the flush point it ends on.
    this.receiver.handle({ type: 'hold', held: true });
    await this.applyIdle();
    const after = this.notFrozenBecause();
    const taken = this.checkpoint as Checkpoint | null; // (another create may have won while this one waited)
    if (after || taken) {
      if (!taken) void this.run(this.receiver.handle({ type: 'hold', held: false })).catch((e: Error) => this.fail('applying after a refused checkpoint', e));
      throw new DiskError(taken ? 'EEXIST' : 'EAGAIN', taken ? `checkpoint "${taken.label}" was taken on ${this.name} meanwhile` :
        `no checkpoint of ${this.name} can be taken: ${after}`);
    }
    const cp: Checkpoint = {
      label, createdAt: now, holdUntil: holdMs === null ? null : now + holdMs, appliedSeq: this.receiver.applied, ownedByDrill, ...group,
    };
    if (group) {
      // Invariant 10: every member of a group checkpoint is frozen at the same group point.
      assert(this.receiver.appliedPoint === group.groupPoint, () => `volume ${this.name}: a checkpoint of group ${group.group} ` +
        `at group point ${group.groupPoint} would freeze this member at ` +
        `${this.receiver.appliedPoint === null ? 'no group point' : `group point ${this.receiver.appliedPoint}`}`);
    }
    await this.holdCheckpoint(cp);
    this.logger.info({ volume: this.name },
      `volume ${this.name}: checkpoint "${label}" held at record ${cp.appliedSeq}${cp.holdUntil ? ` until ${new Date(cp.holdUntil).toISOString()}` : ''}; ` +
      `the image does not change until it is released`);
    return cp;
  }

  /**
   * A checkpoint of the newest restore point at or before `at` (ms), from the history:
   * the replica stays current (nothing is frozen), the image is the point's view.
   */
  private async checkpointAt(
    label: string, holdMs: number | null, now: number, ownedByDrill: boolean, at: number | { seq: number }, group?: { group: string; groupPoint: number },
  ): Promise<Checkpoint> {
    const chosen = typeof at === 'number' ? this.past.newestAtOrBefore(at) : this.historyPoints().find((p) => p.seq === at.seq);
    if (!chosen) throw new DiskError('ENOENT', `volume ${this.name} has no restore point at record ${(at as { seq: number }).seq}`);
    // Invariant 10: every member of a group checkpoint of the past holds the same group point.
    assert(!group || chosen.groupPoint === group.groupPoint, () => `volume ${this.name}: a checkpoint of group ${group!.group} at group point ` +
      `${group!.groupPoint} would hold the point at record ${chosen.seq} ` +
      `(${chosen.groupPoint === undefined ? 'no group point' : `group point ${chosen.groupPoint}`})`);
    const view = await this.openPoint(chosen.seq);
    if (this.checkpoint) {
      view.close();
      throw new DiskError('EEXIST', `checkpoint "${this.checkpoint.label}" was taken on ${this.name} meanwhile`);
    }
    const cp: Checkpoint = {
      label, createdAt: now, holdUntil: holdMs === null ? null : now + holdMs, appliedSeq: chosen.seq, ownedByDrill, ...group,
      point: { seq: chosen.seq, time: chosen.time },
    };
    this.past.hold(view);
    await this.holdCheckpoint(cp);
    this.logger.info({ volume: this.name },
      `volume ${this.name}: checkpoint "${label}" holds ${pointName(chosen)} ` +
      `from the history${cp.holdUntil ? ` until ${new Date(cp.holdUntil).toISOString()}` : ''}; the replica stays current`);
    return cp;
  }

  /** Holds `cp` and writes its file (held again after a restart); released again if the file cannot be written. */
  private async holdCheckpoint(cp: Checkpoint): Promise<void> {
    this.checkpoints.hold(cp);
    try {
      await this.checkpoints.writeFile(cp);
    } catch (e) {
      await this.releaseCheckpoint().catch(() => undefined);
      throw e;
    }
  }

  /** Resolves once no apply is running or asked for. */
  async applyIdle(): Promise<void> {
    while (this.units.gate || this.receiver.isApplying) {
      if (this.units.gate) await this.units.gate;
      else await this.units.nextEnd();
    }
  }

  /** Stops everything in flight (link, attach, round opening, apply): the replica is quiet on return. */
  async quiesce(): Promise<void> {
    this.detach();
    while (this.attaching || this.opening || this.reopening) await (this.attaching ?? this.opening ?? this.reopening)!.catch(() => undefined);
    await this.applyIdle();
  }

  /** The first step of a promote: the link gone, everything received made durable (nothing more applied than the receiver allows). */
  async prepareForPromote(): Promise<void> {
    await this.quiesce();
    if (!this.log.broken) {
      const upTo = await this.log.sync();
      await this.run(this.receiver.handle({ type: 'synced', upTo }));
    }
  }

  /**
   * Before a promote: the link is gone; everything durable in the receive log is
   * applied in whole units; what follows the last durable barrier is discarded; a
   * round in progress is rolled back to the image before it (the undo area).
   * Afterwards the replica is the flush-point image it served, on the volume itself.
   * A unit that failed part-way is applied again first; if it fails again (outside a
   * round), a promote throws: the replica would be no flush-point image.
   */
  async finishForPromote(at?: { seq: number; groupPoint?: number | undefined }, opts: { follow?: boolean } = {}):
    Promise<{ applied: number; discarded: number; rolledBack: number; initialRound: boolean; restoredBytes?: number }> {
    if (at !== undefined) return this.finishAtPoint(at.seq, at.groupPoint);
    await this.quiesce();
    // A unit that failed part-way (a full disk) is tried again now: left, the replica would
    // hold part of it, no flush point of the primary (replication simulation seed 25). A
    // receive log that failed with it is opened again first (seed 143).
    await this.reopenBrokenLog();
    if (this.receiver.applyFailed) await this.run(this.receiver.handle({ type: 'retryApply' }));
    // (Held by an attempt that failed after its hold, below: what is durable is applied again now.)
    if (!this.frozenBy) await this.run(this.receiver.handle({ type: 'hold', held: false }));
    await this.applyIdle();
    if (!this.log.broken) {
      const upTo = await this.log.sync();
      await this.run(this.receiver.handle({ type: 'synced', upTo }));
    }
    await this.applyIdle();
    // Nothing more is applied: a sync of the receive log still under way would otherwise start a
    // unit after this returns, writing the volume under its new role (or under a follow's
    // history: replication simulation seed 2427).
    this.receiver.handle({ type: 'hold', held: true });
    await this.applyIdle();
    // Failed again, the volume holding part of the unit (torn), and no round's undo area to roll
    // it back: a promote is refused, the replica as it is (the next attempt applies the unit
    // again). (A follow keeps it a secondary: it goes on as before, the unit redone by a round.)
    if (this.units.torn && !this.resync.undo && !opts.follow) {
      const room = this.runner.lastApplyCode === 'ENOSPC' || this.runner.lastApplyCode === 'EDQUOT';
      throw new TornReplicaError(this.runner.lastApplyCode, `volume ${this.name}: ${this.runner.lastApplyFailure}; the replica holds part of them, ` +
        `so it is no flush point yet: ${room ? 'make room on the disk of its volume file' : 'repair the disk of its volume file'} and promote again`);
    }
    const discarded = Math.max(0, this.log.lastSeq - this.receiver.applied);
    const initialRound = this.round?.initial === true;
    const rolledBack = await this.resync.rollBack();
    // The volume is the primary's from here: its history could not open right any more (the role change removes its files).
    // (`follow`: it stays a secondary, and keeps its history across the follow: followed().)
    if (!opts.follow) this.past.close();
    return { applied: this.receiver.applied, discarded, rolledBack, initialRound };
  }

  /**
   * After finishForPromote({ follow: true }), once the follow of `next` has begun (its
   * role change written down): the history keeps its points and numbers those of the
   * new primary's journal on past them (src/history/streams.ts), durably; then it closes
   * (the replica opens again on the new stream). `previous`: the primary it followed.
   */
  async followed(previous: string | null, next: string): Promise<void> {
    await this.past.history?.follow(previous, next, this.receiver.applied);
    this.past.close();
  }

  /**
   * Before a promote to a past point (`promote --at`): the link is gone; nothing more is
   * applied; the bytes changed since restore point `seq` are put back from the history
   * (a round in progress included: what it wrote was saved too). Afterwards the replica
   * is the image at that point, on the volume itself. Redone the same after a crash. In a
   * promote of a group (`groupPoint`), every member is rolled back to that group point.
   */
  private async finishAtPoint(seq: number, groupPoint?: number):
    Promise<{ applied: number; discarded: number; rolledBack: number; initialRound: boolean; restoredBytes: number }> {
    await this.quiesce();
    // Nothing is applied from here: a sync of the receive log still under way would otherwise
    // start a unit whose writes land over the roll-back's (replication simulation seed 2363).
    this.receiver.handle({ type: 'hold', held: true });
    await this.applyIdle();
    // Invariant 10: every member of a group promoted to a past point is rolled back to the same group point.
    const named = this.historyPoints().find((p) => p.seq === seq);
    const point = groupPoint === undefined ? undefined : named;
    assert(point === undefined || point.groupPoint === groupPoint, () => `volume ${this.name}: a promote of its group to group point ${groupPoint} ` +
      `would roll it back to the point at record ${seq} (${point!.groupPoint === undefined ? 'no group point' : `group point ${point!.groupPoint}`})`);
    // (A point of a stream before a follow: every record of the one received now is undone or discarded.)
    const record = this.past.history?.recordOf(seq) ?? 0;
    const restoredBytes = await this.past.rollBackTo(seq);
    const discarded = Math.max(0, this.log.lastSeq - record);
    this.past.close();
    // (`applied`: the record of the point's own primary, as messages name it.)
    return { applied: named?.record ?? seq, discarded, rolledBack: 0, initialRound: false, restoredBytes };
  }

  /** The newest restore point at or before `at` (ms), or why there is none (a promote to a past point checks first). */
  pastPoint(at: number): RestorePoint {
    return this.past.newestAtOrBefore(at);
  }

  /**
   * Keeps restore point `seq` listed, whatever thinning would do, until the history closes:
   * a promote to it chose it, and the units that may still end before its roll-back
   * (replication simulation seed 756: thinned away meanwhile) must not hide it.
   */
  keepPoint(seq: number): void {
    this.past.history?.pin(seq);
  }

  /** The promote that kept point `seq` did not begin (refused, or failed first): thinning may hide it again. */
  releasePoint(seq: number): void {
    this.past.history?.unpin(seq);
  }

  /** Lets the replica catch up again (what the receive log holds is applied at once). */
  async releaseCheckpoint(): Promise<Checkpoint | null> {
    const cp = this.checkpoint;
    if (!cp) return null;
    // Released in memory first: a failing disk below must not leave it held with no export.
    this.checkpoints.letGo();
    this.past.release();
    // (A round waiting for the release opens once the catch-up below is asked: doOpenRound.)
    // (Promise.resolve().then: a removal that throws at once is caught here too.)
    const removing = Promise.resolve().then(() => this.checkpoints.removeFile()).catch((e: Error) => {
      this.logger.error({ volume: this.name },
        `volume ${this.name}: cannot remove the checkpoint file (${e.message}); after a restart the checkpoint is held again until released`);
    });
    this.releasing = removing;
    await removing;
    if (this.releasing === removing) this.releasing = null;
    const heldFor = Math.round((Date.now() - cp.createdAt) / 1000);
    if (cp.point) {
      this.logger.info({ volume: this.name },
        `volume ${this.name}: checkpoint "${cp.label}" of the restore point at record ${cp.point.seq} released after ${heldFor} s`);
      return cp;
    }
    this.logger.info({ volume: this.name },
      `volume ${this.name}: checkpoint "${cp.label}" released after ${heldFor} s; applying ${this.log.lastSeq - this.receiver.applied} records the receive ` +
      `log gathered meanwhile`);
    // The catch-up runs on its own: the operator's release answers now, not after
    // everything gathered under the checkpoint is applied (a unit at a time).
    void this.run(this.receiver.handle({ type: 'hold', held: false })).catch((e: Error) => this.fail('applying after the checkpoint release', e));
    return cp;
  }

  /** Records that arrive while a link attaches wait for it (in order). */
  private attaching: Promise<void> | null = null;
  /** Bumped by every attach and detach: an attach that was overtaken stops. */
  private attachToken = 0;
  private reopening: Promise<void> | null = null;
  /** A checkpoint's release, until the catch-up it starts is asked (releaseCheckpoint). */
  private releasing: Promise<void> | null = null;

  /** `first`: runs before anything else (a stream to write down before the first record, src/stream/stream.ts). */
  attach(link: ReplicaLink, first?: () => Promise<void>): Promise<void> {
    const token = ++this.attachToken;
    const p = (first ? first().then(() => this.doAttach(link, token)) : this.doAttach(link, token)).finally(() => {
      if (this.attaching === p) this.attaching = null;
    });
    this.attaching = p;
    return p;
  }

  /**
   * Closes the replica's files, its receive log, its history and an open round's undo
   * area, as they are on disk: an open that failed part-way (the daemon sets its volume
   * aside), or a volume let go at a reload (src/node/volume-removal.ts, after quiesce).
   */
  abandon(): void {
    this.log.close();
    this.past.close();
    this.resync.closeFiles();
  }

  /** The receive log failed (disk full?): it starts again from what is durable on disk (at an attach, a promote). */
  private async reopenBrokenLog(): Promise<void> {
    // (Not while a unit is asked or applied: it was planned on this receiver; the next attach reopens.)
    if (!this.log.broken || this.units.gate || this.runner.appliesAsked !== 0) return;
    this.logger.warn({ volume: this.name }, `volume ${this.name}: reopening the receive log after: ${this.log.broken.message}`);
    // From here the receiver in hand plans on a log that is gone: its actions are
    // dropped until recover() makes the new one (a checkpoint released meanwhile
    // asked a unit of it: group simulation seed 292 with the memory budget).
    this.runner.staleReceiver = this.receiver;
    this.log.close();
    this.log = this.openLog();
    this.reopening = this.recover().finally(() => (this.reopening = null));
    await this.reopening;
  }

  private async doAttach(link: ReplicaLink, token: number): Promise<void> {
    while (this.reopening) await this.reopening;
    // (Not while a unit is asked or applied: it was planned on this receiver; the next attach reopens.)
    await this.reopenBrokenLog();
    if (token !== this.attachToken) return; // detached (or attached again) meanwhile
    // Space a failed release (disk full) kept is freed now.
    await this.log.release(this.receiver.applied).catch(() => undefined);
    if (token !== this.attachToken) return;
    this.runner.link = link;
    return this.run(this.receiver.handle({ type: 'up' }));
  }

  detach(): void {
    this.attachToken++;
    this.runner.link = null;
    this.receiver.handle({ type: 'down' });
    this.units.ended(); // (waiters see their link is gone)
  }

  /**
   * Records from the peer, already checksum-verified. `logged` (the release of the
   * frame's memory lease, src/memory/intake.ts) is called once the receive log has
   * written them, or at once if none is appended; not after the applies that may follow.
   * `done` (the frame's bytes given back, invariant 12) likewise, but never earlier:
   * while a round opens the lease goes back first, and the records are still read after.
   */
  async receive(records: JournalRecord[], logged: () => void = () => undefined, done: () => void = () => undefined): Promise<void> {
    const lease: FrameUse = { logged, done, hooked: false };
    try {
      // (A primary grown past this replica meets a Hello that refuses it; one that sends past the end anyway is refused here, before the log.)
      const size = this.volume.size;
      const past = records.find((r) => r.kind <= RecordKind.Trim && r.offset + r.length > size);
      if (past) {
        throw new Error(`a record (seq ${past.seq}) for ${formatBytes(past.length)} at ${past.offset} passes the end of ${this.name} ` +
          `(${formatBytes(size)} here): raise its size: here and reload (docs/CONFIG.md, "Growing a volume")`);
      }
      if (this.attaching || this.opening) {
        // A round opening may wait for a checkpoint's release (hours): the frame's lease
        // goes back now, or this volume's frames would fill the node's receive share and
        // stop the link for every volume on it. Its memory is still bounded, by the
        // primary's window for this volume (nothing more comes unacked).
        logged();
        while (this.attaching || this.opening) await (this.attaching ?? this.opening)!.catch(() => undefined);
      }
      const byseq = new Map(records.map((r) => [r.seq, r]));
      const actions = this.receiver.handle({ type: 'records', records: received(records) });
      if (!actions.some((a) => a.type === 'append')) logged();
      return await this.run(actions, byseq, lease);
    } finally {
      // (No append, or it never ran: the frame's bytes are dropped.)
      if (!lease.hooked) {
        logged();
        done();
      }
    }
  }

  /** Something failed: said in the log, and the link closes (the primary's journal keeps the data). */
  private fail(what: string, e: Error): void {
    this.runner.fail(what, e);
  }

  private run(actions: ReceiverAction[], frame?: Map<number, JournalRecord>, lease?: FrameUse): Promise<void> {
    return this.runner.run(actions, frame, lease);
  }
}
