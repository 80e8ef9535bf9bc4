// The secondary side of one volume: the receive log, the replica volume, and the
// receiver state machine between them. Served read-only over NBD; a read never sees
// a half-applied unit (reads wait while a unit is applied), and after any crash the
// unit in progress is applied again from the receive log before anything is served,
// so the replica is always a flush-point image (docs/INVARIANTS.md, invariant 3).
import { createHash } from 'node:crypto';
import type { Extent, ExportBackend, ZeroOptions } from '../export/backend.js';
import { DiskError, type Capabilities, readOnlyCapabilities } from '../export/backend.js';
import type { Logger } from '../log/log.js';
import type { Journal } from '../journal/journal.js';
import { RECORD_HEADER_SIZE, RecordKind, type JournalRecord } from '../journal/record.js';
import { formatBytes } from '../units/units.js';
import type { Store } from '../journal/store.js';
import { RoundMarker, type RoundMark } from '../sync/round-marker.js';
import { UndoArea } from '../sync/undo.js';
import { jsonVersion, refuseNewer } from '../versioning/format.js';
import { FLAG_ROUND_END } from '../journal/record.js';
import { assert } from '../invariants/assert.js';

/** Present once a first sync completed: from then on the replica is always a flush-point image. */
export const SYNCED_FILE = 'synced';

export interface ReplicaOptions {
  /** The volume's state folder: the resync round marker and the undo area live here. */
  roundStore: Store;
  /** Undo granularity (the volume's bitmap region). */
  regionSize: number;
  /** Apply units end at the first exposable barrier about this far ahead (default APPLY_UNIT_BYTES; the simulation makes it small). */
  applyUnitBytes?: number;
}
import type { Disk } from '../journal/write-path.js';
import { Receiver, type ReceiverAction } from './receiver.js';
import { READ_BATCH_BYTES, MIN_RECEIVE_LOG_BYTES } from '../limits/limits.js';

export interface ReplicaLink {
  ack(seq: number): void;
  /** Pause shipping (the log is full under a checkpoint) or resume right after `after`. */
  hold(held: boolean, after: number): void;
  close(reason: string): void;
}

/** A held checkpoint (state/volumes/NAME/checkpoint, JSON): the replica's image frozen at a flush point. */
export interface Checkpoint {
  label: string;
  /** ms since the epoch. */
  createdAt: number;
  /** Released by itself at this time (ms), if set. */
  holdUntil: number | null;
  /** The last record applied to the frozen image. */
  appliedSeq: number;
  /** Taken by a drill: released when the drill ends (or at the next start: a drill does not outlive the daemon). */
  ownedByDrill?: boolean;
}

export const CHECKPOINT_FILE = 'checkpoint';
/**
 * Its "version" (absent, as the previous release wrote it: 1). A newer release's
 * checkpoint is refused (docs/VERSIONING.md): read as unreadable it would still be
 * held, but under a label nobody asked for and at no known record.
 */
export const CHECKPOINT_FORMAT = jsonVersion('checkpoint file', 1, [1]);

export class Replica implements ExportBackend {
  receiver: Receiver;
  log: Journal;
  private link: ReplicaLink | null = null;
  private gate: Promise<void> | null = null;
  /**
   * An apply failed part-way (disk full, I/O error): the image is between flush points
   * until it is redone. Only a real failure sets it: a unit being applied is not torn
   * (readers wait at the gate until it ends), so the replica stays consistent meanwhile.
   */
  private torn: string | null = null;
  /** The unit being applied now (records from..to), or null. Readers wait for it; it is not a failure. */
  applyingUnit: { from: number; to: number; since: number } | null = null;
  appliedUnits = 0;

  /** The open resync round, if any; `undo` keeps the old image unless the round is the first sync. */
  round: RoundMark | null = null;
  private undo: UndoArea | null = null;
  private readonly marker: RoundMarker;
  /** Records that arrive while a round opens wait for it (in order). */
  private opening: Promise<void> | null = null;

  private constructor(readonly volume: Disk, private readonly openLog: () => Journal, private readonly logger: Logger, private readonly opts: ReplicaOptions) {
    this.marker = new RoundMarker(opts.roundStore);
    this.log = openLog();
    this.receiver = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 }, { unitBytes: opts.applyUnitBytes });
  }

  /**
   * Recovers the receive log, then finishes any unit a crash interrupted.
   * `openLog` makes a fresh Journal on the receive log's store (used again if the
   * log breaks, say on a full disk, once the disk has room).
   */
  static async open(volume: Disk, openLog: () => Journal, logger: Logger, opts: ReplicaOptions): Promise<Replica> {
    const replica = new Replica(volume, openLog, logger, opts);
    replica.round = await replica.marker.read();
    replica.synced = opts.roundStore.list().includes(SYNCED_FILE);
    const cp = await readCheckpoint(opts.roundStore);
    if (cp) replica.hold(cp);
    if (replica.round && !replica.round.initial) replica.undo = await UndoArea.open(opts.roundStore, opts.regionSize, volume.size);
    else if (!replica.round) await UndoArea.drop(opts.roundStore); // a round committed just before a crash
    await replica.recover();
    return replica;
  }

  private async recover(): Promise<void> {
    const log = this.log;
    const report = await log.recover();
    for (const n of report.notes) this.logger.info({ volume: this.name }, n);
    if (report.damaged) {
      this.logger.error({ volume: this.name }, `volume ${this.name}: the receive log is damaged; records after the damage are dropped and will be fetched again`);
    }
    let lastBarrier = 0;
    const roundEnds: number[] = [];
    const barriers: number[] = [];
    const skips: Array<{ seq: number; until: number }> = [];
    for (let seq = Math.max(log.released, log.appliedOnDisk) + 1; seq <= log.lastSeq;) {
      const batch = await log.read(seq, READ_BATCH_BYTES);
      if (batch.length === 0) break;
      for (const r of batch) {
        if (r.kind === RecordKind.Barrier) lastBarrier = r.seq;
        if (r.kind === RecordKind.Barrier && (r.flags & FLAG_ROUND_END)) roundEnds.push(r.seq);
        if (r.kind === RecordKind.Barrier) barriers.push(r.seq);
        if (r.kind === RecordKind.Skip) skips.push({ seq: r.seq, until: r.offset });
      }
      seq = batch[batch.length - 1]!.seq + 1;
    }
    // (A held checkpoint was taken after its last apply was durable on the volume; the
    // applied counter may lag it, but that is where the frozen image stands.)
    const applied = Math.max(log.appliedOnDisk, log.released, this.checkpoint?.appliedSeq ?? 0);
    if (applied > log.lastSeq) {
      // The log was cut back below `applied` (or a jump reached the applied counter
      // but not the log): it holds nothing the replica needs; continue after `applied`.
      await log.release(log.lastSeq);
      if (log.backlogRecords === 0) log.jumpTo(applied);
    }
    const held = Math.max(log.lastSeq, applied);
    this.receiver = new Receiver({ logged: held, logDurable: held, applied, lastBarrier, round: this.round !== null, roundEnds, barriers, skips }, { unitBytes: this.opts.applyUnitBytes });
    // A checkpoint held before the stop stays held: nothing is applied until it is released.
    if (this.checkpoint) this.receiver.handle({ type: 'hold', held: true });
    // Records applied before the stop but not yet released from the log.
    if (applied > log.released) await log.release(applied).catch(() => undefined);
    // A unit interrupted by a crash is applied again now, before the export serves.
    const pending = this.receiver.handle({ type: 'up' });
    await this.run(pending);
    this.receiver.handle({ type: 'down' });
  }

  /** Why the image is between two flush points (a failed apply waits to be redone), or null. */
  get tornBy(): string | null { return this.torn; }

  get name(): string { return this.volume.name; }
  get size(): number { return this.volume.size; }
  get readOnly(): boolean { return true; }
  capabilities(): Capabilities { return readOnlyCapabilities(true); }
  get description(): string { return `${this.volume.description} (replica: the last applied flush point)`; }

  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    while (this.gate) await this.gate;
    // In a round the image before the round is served: undo copies where the round wrote.
    if (this.undo) return this.undo.readOld(this.volume, offset, into, at, length);
    if (this.torn) throw new DiskError('EIO', `the replica is between two flush points until a failed apply is redone (${this.torn})`);
    return this.volume.read(offset, into, at, length);
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
    if (!this.synced) return this.round?.initial ? 'its first sync is under way, so it is not an image of the primary yet' : 'its first sync has not completed, so it is not an image of the primary yet';
    if (this.round) return this.round.initial ? 'a first sync is under way' : null;
    if (this.torn) return `an apply failed (${this.torn}) and the image is between two flush points until it is redone (the next link retries it)`;
    return null;
  }

  /** A first sync has completed here (or records were applied before rounds existed). */
  private synced = false;

  /**
   * SHA-256 of `count` regions of the replica from region `first` (for a first sync
   * by checksum: regions the primary finds equal need not travel). Reads what the
   * replica holds now; records still to come bring it forward in order either way.
   */
  hashRegions(regionSize: number, first: number, count: number, wanted: () => boolean = () => true, afterSeq = 0): Promise<Buffer[] | null> {
    // One at a time, and a request whose link is gone stops: a peer cannot pile up work here.
    // (After a round opening in progress: what it applies is part of what is compared.)
    const p = this.hashing.then(async () => {
      while (this.attaching || this.opening) await (this.attaching ?? this.opening)!.catch(() => undefined);
      // An online verify: the primary holds these regions still from afterSeq on; compare once it is applied here.
      while (this.receiver.applied < afterSeq || this.gate) {
        if (!wanted()) return null;
        if (this.gate) await this.gate;
        else await new Promise<void>((r) => this.applyWaiters.push(r));
      }
      return this.doHashRegions(regionSize, first, count, wanted);
    });
    this.hashing = p.catch(() => null);
    return p;
  }

  private hashing: Promise<unknown> = Promise.resolve();

  private async doHashRegions(regionSize: number, first: number, count: number, wanted: () => boolean): Promise<Buffer[] | null> {
    const out: Buffer[] = [];
    const offset = first * regionSize;
    const length = Math.max(0, Math.min(count * regionSize, this.size - offset));
    const buf = Buffer.allocUnsafe(Math.max(regionSize, Math.min(length, 4 << 20)));
    for (let at = 0; at < length; at += buf.length) {
      if (!wanted()) return null;
      const n = Math.min(buf.length, length - at);
      await this.volume.read(offset + at, buf, 0, n);
      for (let k = 0; k < n; k += regionSize) out.push(createHash('sha256').update(buf.subarray(k, Math.min(n, k + regionSize))).digest());
    }
    // Regions past the end of this volume (a peer asking beyond it) hash as empty.
    while (out.length < count) out.push(createHash('sha256').digest());
    return out;
  }

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
    const p = this.doOpenRound(startSeq).finally(() => {
      if (this.opening === p) this.opening = null;
    });
    this.opening = p;
    return p;
  }

  private async doOpenRound(startSeq: number): Promise<void> {
    while (this.attaching) await this.attaching.catch(() => undefined);
    while (this.gate) await this.gate;
    // Records before the round must be applied first: a held checkpoint makes the round wait.
    while (this.checkpoint) await this.checkpointReleased;
    await this.applyIdle(); // (the release starts an apply of its own: it ends before the round opens)
    if (!this.round) {
      // The first sync has no earlier image to keep; any later round keeps it in the undo area.
      const initial = this.receiver.applied === 0 && this.log.lastSeq === 0;
      if (!initial) {
        await UndoArea.drop(this.opts.roundStore);
        this.undo = await UndoArea.open(this.opts.roundStore, this.opts.regionSize, this.volume.size);
      }
      this.round = { startSeq, initial };
      await this.marker.write(this.round);
      this.logger.info({ volume: this.name }, `volume ${this.name}: resync round from record ${startSeq} opened${initial ? ' (first sync: the replica is not consistent until it ends)' : '; the export keeps serving the last consistent image'}`);
    } else if (this.round.startSeq !== startSeq) {
      this.round = { ...this.round, startSeq };
      await this.marker.write(this.round);
    }
    await this.run(this.receiver.handle({ type: 'roundOpened' }));
    if (this.receiver.applied >= startSeq - 1) return;
    // What this log holds before the round is part of the round: make it durable and apply it.
    const upTo = await this.log.sync();
    await this.run(this.receiver.handle({ type: 'synced', upTo }));
    while (this.gate) await this.gate;
    if (this.receiver.applied < this.log.lastSeq) throw new Error(`could not apply records ${this.receiver.applied + 1}..${this.log.lastSeq} before the round`);
    await this.log.release(this.receiver.applied);
    this.log.jumpTo(startSeq - 1);
    this.receiver.handle({ type: 'jumped', seq: startSeq - 1 });
    // Durable with this sync; if it fails, the round marker makes the primary send Resync again.
    this.log.markApplied(startSeq - 1);
    await this.log.sync();
  }
  write(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  writeZeroes(_o: number, _l: number, _z: ZeroOptions): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  trim(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  flush(): Promise<void> { return Promise.resolve(); }
  cache(offset: number, length: number): Promise<void> { return this.volume.cache(offset, length); }
  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    // In a round the served image is partly in the undo area: call it all data.
    if (this.undo) return Promise.resolve([{ length, hole: false }]);
    return this.volume.extents(offset, length, max);
  }

  /** The held checkpoint, if any. */
  checkpoint: Checkpoint | null = null;
  private checkpointReleased: Promise<void> = Promise.resolve();
  private releaseWaiters: (() => void) | null = null;

  /**
   * Freezes the image at the last applied flush point: nothing is applied until
   * release; received records keep landing in the receive log (and when it is
   * full, the primary is asked to hold the rest in its journal).
   */
  async createCheckpoint(label: string, holdMs: number | null, now = Date.now(), ownedByDrill = false): Promise<Checkpoint> {
    if (this.checkpoint) throw new DiskError('EEXIST', `checkpoint "${this.checkpoint.label}" is already held on ${this.name} (since ${new Date(this.checkpoint.createdAt).toISOString()}); release it first`);
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
      throw new DiskError(taken ? 'EEXIST' : 'EAGAIN', taken ? `checkpoint "${taken.label}" was taken on ${this.name} meanwhile` : `no checkpoint of ${this.name} can be taken: ${after}`);
    }
    const cp: Checkpoint = { label, createdAt: now, holdUntil: holdMs === null ? null : now + holdMs, appliedSeq: this.receiver.applied, ownedByDrill };
    this.hold(cp);
    try {
      await this.opts.roundStore.replace(CHECKPOINT_FILE, Buffer.from(`${JSON.stringify({ version: CHECKPOINT_FORMAT.writes, ...cp })}\n`));
    } catch (e) {
      await this.releaseCheckpoint().catch(() => undefined);
      throw e;
    }
    this.logger.info({ volume: this.name }, `volume ${this.name}: checkpoint "${label}" held at record ${cp.appliedSeq}${cp.holdUntil ? ` until ${new Date(cp.holdUntil).toISOString()}` : ''}; the image does not change until it is released`);
    return cp;
  }

  /** Resolves once no apply is running or asked for. */
  async applyIdle(): Promise<void> {
    while (this.gate || this.receiver.isApplying) {
      if (this.gate) await this.gate;
      else await new Promise<void>((r) => this.applyWaiters.push(r));
    }
  }

  /** Waiting for an apply that was asked for but had not begun. */
  private applyWaiters: Array<() => void> = [];

  private applyEnded(): void {
    for (const w of this.applyWaiters.splice(0)) w();
  }

  /** Stops everything in flight (link, attach, round opening, apply): the replica is quiet on return. */
  async quiesce(): Promise<void> {
    this.detach();
    while (this.attaching || this.opening || this.reopening) await (this.attaching ?? this.opening ?? this.reopening)!.catch(() => undefined);
    await this.applyIdle();
  }

  private hold(cp: Checkpoint): void {
    this.checkpoint = cp;
    this.checkpointReleased = new Promise((r) => (this.releaseWaiters = r));
  }

  /**
   * Before a promote: the link is gone; everything durable in the receive log is
   * applied in whole units; what follows the last durable barrier is discarded; a
   * round in progress is rolled back to the image before it (the undo area).
   * Afterwards the replica is the flush-point image it served, on the volume itself.
   */
  async finishForPromote(): Promise<{ applied: number; discarded: number; rolledBack: number; initialRound: boolean }> {
    await this.quiesce();
    if (!this.log.broken) {
      const upTo = await this.log.sync();
      await this.run(this.receiver.handle({ type: 'synced', upTo }));
    }
    await this.applyIdle();
    const discarded = Math.max(0, this.log.lastSeq - this.receiver.applied);
    let rolledBack = 0;
    const initialRound = this.round?.initial === true;
    if (this.undo) {
      rolledBack = await this.undo.rollback(this.volume);
      this.undo.close();
      this.undo = null;
    }
    this.round = null;
    return { applied: this.receiver.applied, discarded, rolledBack, initialRound };
  }

  /** Lets the replica catch up again (what the receive log holds is applied at once). */
  async releaseCheckpoint(): Promise<Checkpoint | null> {
    const cp = this.checkpoint;
    if (!cp) return null;
    // Released in memory first: a failing disk below must not leave it held with no export.
    this.checkpoint = null;
    this.releaseWaiters?.();
    this.releaseWaiters = null;
    try {
      this.opts.roundStore.remove(CHECKPOINT_FILE);
      await this.opts.roundStore.syncDir();
    } catch (e) {
      this.logger.error({ volume: this.name }, `volume ${this.name}: cannot remove the checkpoint file (${(e as Error).message}); after a restart the checkpoint is held again until released`);
    }
    const heldFor = Math.round((Date.now() - cp.createdAt) / 1000);
    this.logger.info({ volume: this.name }, `volume ${this.name}: checkpoint "${cp.label}" released after ${heldFor} s; applying ${this.log.lastSeq - this.receiver.applied} records the receive log gathered meanwhile`);
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

  attach(link: ReplicaLink): Promise<void> {
    const token = ++this.attachToken;
    const p = this.doAttach(link, token).finally(() => {
      if (this.attaching === p) this.attaching = null;
    });
    this.attaching = p;
    return p;
  }

  private async doAttach(link: ReplicaLink, token: number): Promise<void> {
    while (this.reopening) await this.reopening;
    if (this.log.broken && !this.gate) {
      // The receive log failed (disk full?): start again from what is durable on disk.
      this.logger.warn({ volume: this.name }, `volume ${this.name}: reopening the receive log after: ${this.log.broken.message}`);
      this.log.close();
      this.log = this.openLog();
      this.reopening = this.recover().finally(() => (this.reopening = null));
      await this.reopening;
    }
    if (token !== this.attachToken) return; // detached (or attached again) meanwhile
    // Space a failed release (disk full) kept is freed now.
    await this.log.release(this.receiver.applied).catch(() => undefined);
    if (token !== this.attachToken) return;
    this.link = link;
    return this.run(this.receiver.handle({ type: 'up' }));
  }

  detach(): void {
    this.attachToken++;
    this.link = null;
    this.receiver.handle({ type: 'down' });
    this.applyEnded(); // (waiters see their link is gone)
  }

  /** Records from the peer, already checksum-verified. */
  async receive(records: JournalRecord[]): Promise<void> {
    while (this.attaching || this.opening) await (this.attaching ?? this.opening)!.catch(() => undefined);
    const byseq = new Map(records.map((r) => [r.seq, r]));
    const actions = this.receiver.handle({ type: 'records', records: records.map((r) => ({ seq: r.seq, barrier: r.kind === RecordKind.Barrier, roundEnd: r.kind === RecordKind.Barrier && (r.flags & FLAG_ROUND_END) !== 0, ...(r.kind === RecordKind.Skip ? { skipUntil: r.offset } : {}), size: r.payload.length + RECORD_HEADER_SIZE })) });
    return this.run(actions, byseq);
  }

  private fail(what: string, e: Error): void {
    const why = (e as NodeJS.ErrnoException).code ?? e.message;
    this.logger.error({ volume: this.name }, `volume ${this.name}: ${what} failed (${why}); the link closes and the primary's journal keeps the data`);
    this.link?.close(`${what} failed on the secondary (${why})`);
  }

  private async run(actions: ReceiverAction[], frame?: Map<number, JournalRecord>): Promise<void> {
    for (const a of actions) {
      switch (a.type) {
        case 'append':
          // On a full or failed log the rest of this frame is dropped (the receiver
          // is told where the log really ends) and the link closes; the actions after
          // this one still run: the sync makes what was logged durable and acks it.
          for (let seq = a.fromSeq; seq <= a.toSeq; seq++) {
            const r = frame!.get(seq)!;
            let res;
            try {
              res = this.log.appendReceived(r, r.kind === RecordKind.Write ? r.payload : null);
            } catch (e) {
              this.receiver.handle({ type: 'appendStopped', upTo: this.log.lastSeq });
              this.fail('writing the receive log', e as Error);
              break;
            }
            if (res === 'full') {
              if (this.log.backlogRecords === 0 && r.payload.length + RECORD_HEADER_SIZE >= this.log.capacity / 2) {
                // It would not fit an empty log either: say so, rather than reconnect forever in silence.
                this.receiver.handle({ type: 'appendStopped', upTo: this.log.lastSeq });
                this.fail('writing the receive log', new Error(`a ${formatBytes(r.payload.length)} write does not fit the receive log of ${formatBytes(this.log.capacity)}; give this node's volume a journal: of at least ${formatBytes(Math.max(MIN_RECEIVE_LOG_BYTES, 4 * r.payload.length))}`));
                break;
              }
              const next = this.receiver.handle({ type: 'appendStopped', upTo: this.log.lastSeq, full: true });
              if (next.length > 0) {
                const why = this.checkpoint ? `while checkpoint "${this.checkpoint.label}" is held; shipping paused, the primary's journal holds the rest until the checkpoint is released` : 'ahead of the replica; shipping paused until applied records free room';
                (this.checkpoint ? this.logger.warn : this.logger.info).call(this.logger, { volume: this.name }, `volume ${this.name}: receive log full (${formatBytes(this.log.usedBytes)} of ${formatBytes(this.log.capacity)}) ${why}`);
                await this.run(next);
              } else {
                this.link?.close(`receive log full (${formatBytes(this.log.usedBytes)} of ${formatBytes(this.log.capacity)}); the primary's journal holds the rest`);
              }
              break;
            }
          }
          break;
        case 'sync': {
          const log = this.log;
          void log.sync().then((upTo) => {
            if (log === this.log) return this.run(this.receiver.handle({ type: 'synced', upTo, asked: a.upTo }));
          }, (e: Error) => {
            if (log !== this.log) return;
            this.receiver.handle({ type: 'syncFailed' });
            this.fail('syncing the receive log', e);
          }).catch((e: Error) => this.fail('handling a receive-log sync', e));
          break;
        }
        case 'ack':
          // (While a round opens, acks of what precedes it would run backwards for the primary.)
          if (!this.round || a.seq >= this.round.startSeq - 1) this.link?.ack(a.seq);
          break;
        case 'apply':
          try {
            await this.apply(a.fromSeq, a.toSeq, a.endsRound === true);
          } catch (e) {
            this.receiver.handle({ type: 'applyFailed' });
            this.applyEnded();
            this.fail(`applying records ${a.fromSeq}..${a.toSeq}`, e as Error);
            return;
          }
          {
            const next = this.receiver.handle({ type: 'applied', upTo: a.toSeq });
            this.applyEnded();
            await this.run(next);
          }
          if (a.endsRound && !this.round) await this.run(this.receiver.handle({ type: 'roundClosed' }));
          break;
        case 'releaseLog':
          await this.log.release(a.seq).catch(() => undefined);
          await this.run(this.receiver.handle({ type: 'released' }));
          break;
        case 'holdShipping':
          this.link?.hold(a.held, a.after);
          if (!a.held) this.logger.debug({ volume: this.name }, `volume ${this.name}: shipping resumes after record ${a.after}`);
          break;
        case 'close':
          this.logger.warn({ volume: this.name }, `volume ${this.name}: ${a.reason}`);
          this.link?.close(a.reason);
          break;
      }
    }
  }

  /**
   * Applies records from..to (ending at a barrier) as one unit: readers wait, the
   * replica is synced, then `applied` is recorded. If it fails part-way, readers get
   * EIO until a later attempt (or recovery after a restart) completes the unit.
   */
  private async apply(from: number, to: number, endsRound = false): Promise<void> {
    let open!: () => void;
    this.gate = new Promise((r) => (open = r));
    const log = this.log;
    this.applyingUnit = { from, to, since: Date.now() };
    assert(from === this.receiver.applied + 1 && from <= to, () => `volume ${this.name}: a unit ${from}..${to} asked after record ${this.receiver.applied} was applied`);
    let lastRead: JournalRecord | undefined;
    try {
      for (let seq = from; seq <= to;) {
        const batch = await log.read(seq, READ_BATCH_BYTES, to);
        if (batch.length === 0) throw new Error(`receive log lacks record ${seq}`);
        // In a round, the old bytes of every region about to change are saved (durably) first.
        if (this.undo) await this.undo.protect(this.volume, batch.filter((r) => r.kind !== RecordKind.Barrier && r.kind !== RecordKind.Skip).map((r) => ({ offset: r.offset, length: r.length })));
        for (const r of batch) {
          if (r.kind === RecordKind.Write) await this.volume.write(r.offset, r.payload, false);
          else if (r.kind === RecordKind.Zeroes || r.kind === RecordKind.Trim) {
            if (!(await this.volume.punch(r.offset, r.length))) await this.volume.writeZeroes(r.offset, r.length, { fua: false, mayTrim: false, fast: false });
          }
        }
        seq = batch[batch.length - 1]!.seq + 1;
        lastRead = batch[batch.length - 1]!;
      }
      // Invariant 3: a unit ends exactly at a barrier (in a round, at the part the receiver chose).
      assert(lastRead?.seq === to && (this.undo !== null || this.round !== null || lastRead.kind === RecordKind.Barrier),
        () => `volume ${this.name}: the unit ${from}..${to} ends at record ${lastRead?.seq} (${lastRead ? RecordKind[lastRead.kind] : 'none'}), not at a barrier`);
      await this.volume.flush();
      if (endsRound) {
        // The round is complete: from the marker's removal on, the replica itself is the image.
        await this.marker.remove();
        const wasInitial = this.round?.initial === true;
        this.round = null;
        this.undo?.close();
        this.undo = null;
        this.logger.info({ volume: this.name }, `volume ${this.name}: resync round complete at record ${to}${wasInitial ? '; the replica is consistent' : ''}`);
      }
      log.markApplied(to);
      await log.sync();
      if (endsRound) await UndoArea.drop(this.opts.roundStore);
      if (endsRound && !this.synced) {
        await this.opts.roundStore.replace(SYNCED_FILE, Buffer.from('the first sync of this replica is complete\n'));
        this.synced = true;
      }
      this.torn = null;
      this.appliedUnits++;
    } catch (e) {
      // The volume may now hold part of the unit: torn until it is redone (in a round
      // the undo area still serves the image before it).
      this.torn = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw e;
    } finally {
      this.applyingUnit = null;
      this.gate = null;
      open();
    }
  }
}

/** The held checkpoint in `store`, if any (exported for the format tests). */
export async function readCheckpoint(store: Store): Promise<Checkpoint | null> {
  if (!store.list().includes(CHECKPOINT_FILE)) return null;
  const f = store.open(CHECKPOINT_FILE);
  let raw: string;
  try {
    const b = await f.read(0, Math.min(f.size(), 64 * 1024));
    refuseNewer(CHECKPOINT_FORMAT, b, CHECKPOINT_FILE);
    raw = b.toString('utf8');
  } finally {
    f.close();
  }
  try {
    const cp = JSON.parse(raw) as Checkpoint;
    if (typeof cp.label !== 'string' || typeof cp.createdAt !== 'number') throw new Error('fields missing');
    // A release time that is no date was written before holds were checked (a hold of
    // 99999999999h): kept held until released, rather than released or left unlistable.
    const holdUntil = typeof cp.holdUntil === 'number' && !Number.isNaN(new Date(cp.holdUntil).getTime()) ? cp.holdUntil : null;
    return { label: cp.label, createdAt: cp.createdAt, holdUntil, appliedSeq: cp.appliedSeq ?? 0, ownedByDrill: cp.ownedByDrill === true };
  } catch (e) {
    // Safer to hold a checkpoint nobody asked for than to let a backup read a moving image.
    return { label: `unreadable (${(e as Error).message})`, createdAt: Date.now(), holdUntil: null, appliedSeq: 0 };
  }
}
