// Applying a unit on a secondary: records from..to of the receive log, ending at a
// barrier, written to the replica as one whole. Readers of the export wait at the gate
// while a unit is applied; the replica is synced, then `applied` is recorded. A unit
// that fails part-way leaves the image torn (readers get EIO) until a later attempt,
// or recovery after a restart, completes it (docs/INVARIANTS.md, invariant 3).
import type { Disk } from '../journal/disk.js';
import type { Journal } from '../journal/journal.js';
import { RECORD_HEADER_SIZE, RecordKind, type JournalRecord } from '../journal/record.js';
import type { Logger } from '../log/log.js';
import {
  APPLY_BUFFERS_KEPT, APPLY_READ_BYTES, HISTORY_APPLY_READ_BYTES, HISTORY_APPLY_READS, JOURNAL_HEADER_CHUNK_BYTES, READ_BATCH_BYTES,
} from '../limits/limits.js';
import { assert } from '../invariants/assert.js';
import type { ReplicaRound } from './replica-round.js';
import type { MemoryBudget } from '../memory/budget.js';
import type { CaptureContext, History } from '../history/history.js';
import { bufferPool, type BufferPool } from '../memory/buffer-pool.js';

export class UnitApplier {
  /** Readers wait on it while a unit is applied. */
  gate: Promise<void> | null = null;
  /**
   * An apply failed part-way (disk full, I/O error): the image is between flush points
   * until it is redone. Only a real failure sets it: a unit being applied is not torn
   * (readers wait at the gate until it ends), so the replica stays consistent meanwhile.
   */
  torn: string | null = null;
  /** The last record of the unit that failed (torn), or null. */
  private tornTo: number | null = null;
  /** The unit being applied now (records from..to), or null. Readers wait for it; it is not a failure. */
  unit: { from: number; to: number; since: number } | null = null;
  /** Units applied since the start. */
  units = 0;
  /** Waiting for an apply that was asked for but had not begun. */
  private waiters: Array<() => void> = [];
  /** Reads of the replica under way: a unit begins writing only once they are done (they began before its gate closed). */
  private reading = 0;
  private readersDone: (() => void) | null = null;
  /** The replica's history, when it keeps one: what a unit overwrites is saved there first (docs/HISTORY.md). */
  history: History | null = null;
  /** A consistency group member: only group points are restore points. */
  inGroup = false;

  constructor(
    private readonly volume: Disk, private readonly round: ReplicaRound, private readonly logger: Logger, private readonly memory?: MemoryBudget,
    private readonly readBytes?: number,
  ) {}

  private get name(): string { return this.volume.name; }

  /**
   * A read of the replica begins: after the unit being applied, if any; no unit writes
   * until `endRead`. (A read that began before a unit and ended after its first write
   * would see half of it.)
   */
  async beginRead(): Promise<void> {
    while (this.gate) await this.gate;
    this.reading++;
  }

  endRead(): void {
    assert(this.reading > 0, 'a read of the replica ended that never began');
    if (--this.reading === 0 && this.readersDone) {
      this.readersDone();
      this.readersDone = null;
    }
  }

  /** Resolves at the end of the next apply (or when the link goes: see `ended`). */
  nextEnd(): Promise<void> {
    return new Promise<void>((r) => this.waiters.push(r));
  }

  /** An apply ended (or will not begin): whoever waits for one looks again. */
  ended(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * The receive log was opened again after a failure, and its recovery found records up
   * to `applied` applied: a unit that failed at its end (its applied counter durable,
   * the sync after it not) is whole on the volume, which was flushed before the
   * counter was written, so the image is the flush point of its last record. A unit the
   * counter does not cover stays torn until it is redone.
   */
  recovered(applied: number): void {
    if (this.torn !== null && this.tornTo !== null && applied >= this.tornTo) {
      this.torn = null;
      this.tornTo = null;
    }
  }

  /**
   * Applies records from..to of `log` (ending at a barrier) as one unit, right after
   * record `applied`: readers wait, the replica is synced, then `applied` is recorded.
   * If it fails part-way, readers get EIO until a later attempt (or recovery after a
   * restart) completes the unit.
   */
  async apply(log: Journal, applied: number, from: number, to: number, endsRound = false): Promise<void> {
    let open!: () => void;
    this.gate = new Promise((r) => (open = r));
    this.unit = { from, to, since: Date.now() };
    assert(from === applied + 1 && from <= to, () => `volume ${this.name}: a unit ${from}..${to} asked after record ${applied} was applied`);
    let lastRead: JournalRecord | undefined;
    try {
      // (No read begins once the gate is closed; those that began before end first.)
      if (this.reading > 0) await new Promise<void>((r) => (this.readersDone = r));
      this.history?.beginUnit(from - 1);
      lastRead = this.history && !this.round.undo ? await this.applySaving(log, from, to) : await this.applyInBatches(log, from, to);
      // Invariant 3: a unit ends exactly at a barrier (in a round, at the part the receiver chose).
      const round = this.round;
      assert(lastRead?.seq === to && (round.undo !== null || round.mark !== null || lastRead.kind === RecordKind.Barrier),
        () => `volume ${this.name}: the unit ${from}..${to} ends at record ${lastRead?.seq} ` +
          `(${lastRead ? RecordKind[lastRead.kind] : 'none'}), not at a barrier`);
      await this.volume.flush();
      // The applied counter is durable before a round's marker goes: a crash between
      // the two leaves a marker flagged ending with no round end left to apply, which
      // the start completes (Replica.recover). The other order left the round's image on the volume under
      // counters from before it, and the records redone over it made an image that
      // was no flush point (group simulation seed 942).
      if (endsRound) await round.ending();
      // Invariant 8: the points this unit reached are durable before it counts as applied.
      await this.history?.sync();
      log.markApplied(to);
      await log.sync();
      if (endsRound) {
        const wasInitial = await round.complete();
        this.logger.info({ volume: this.name }, `volume ${this.name}: resync round complete at record ${to}${wasInitial ? '; the replica is consistent' : ''}`);
        await round.completed();
      }
      this.torn = null;
      this.tornTo = null;
      this.units++;
      await this.history?.unitApplied().catch((e: Error) => this.logger.error({ volume: this.name },
        `volume ${this.name}: history retention failed (${(e as NodeJS.ErrnoException).code ?? e.message}); it is tried again after the next unit`));
    } catch (e) {
      // The volume may now hold part of the unit: torn until it is redone (in a round
      // the undo area still serves the image before it).
      this.torn = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      this.tornTo = to;
      throw e;
    } finally {
      this.unit = null;
      this.gate = null;
      open();
    }
  }

  /** Records from..to of `log`, a read at a time, each saved (history, a round's undo area) then written; the last record read. */
  private async applyInBatches(log: Journal, from: number, to: number): Promise<JournalRecord | undefined> {
    let lastRead: JournalRecord | undefined;
    for (let seq = from; seq <= to;) {
      // Each read is a lease on the node's budget while its records are written to the
      // replica: a hundred volumes applying at once wait in turn, not read 8 MiB each.
      // (1 MiB reads, not 8, when a budget is kept: a share of 16 MiB then lets 16
      // volumes apply at once rather than 2.)
      const readBytes = this.readBytes ?? (this.memory ? APPLY_READ_BYTES : READ_BATCH_BYTES);
      const lease = this.memory ? await this.memory.acquire(readBytes, 'apply').granted : null;
      const pool = readBuffers(readBytes);
      const scratch = pool.take();
      let batch: JournalRecord[];
      try {
        batch = await log.read(seq, readBytes, to, scratch);
        const bytes = batchBytes(batch);
        if (lease && bytes > lease.bytes) lease.grow(bytes - lease.bytes);
        else lease?.shrink(bytes);
        await this.capture(batch, from - 1, []);
        await this.protect(batch);
        await this.write(batch);
      } finally {
        // (The batch's payloads are views of it: given back only once they are written.)
        pool.give(scratch);
        lease?.release();
      }
      if (batch.length === 0) throw new Error(`receive log lacks record ${seq}`);
      seq = batch[batch.length - 1]!.seq + 1;
      lastRead = batch[batch.length - 1]!;
    }
    return lastRead;
  }

  /**
   * With history (and no round's undo area): a read's saved bytes are appended to the
   * history and synced while the read before it waits for its own sync to end and the
   * one before that is written to the replica, so the history's reads, appends and syncs
   * overlap each other and the replica's writes rather than add to them (bench:history).
   * Three reads of HISTORY_APPLY_READ_BYTES at most are held, on one lease. The last
   * record read.
   */
  private async applySaving(log: Journal, from: number, to: number): Promise<JournalRecord | undefined> {
    const readBytes = this.readBytes ?? HISTORY_APPLY_READ_BYTES;
    const lease = this.memory ? await this.memory.acquire(HISTORY_APPLY_READS * readBytes, 'apply').granted : null;
    const history = this.history!;
    const at: { writing: Writing | null; saved: Saved | null } = { writing: null, saved: null };
    let lastRead: JournalRecord | undefined;
    const pool = readBuffers(readBytes);
    // Buffers in turn: read k goes into the one read k-3 used, whose write ended before
    // read k-2's began (one read is written, the next waits for its sync, the next is read).
    const buffers = Array.from({ length: HISTORY_APPLY_READS }, () => pool.take());
    const writeSaved = async (): Promise<void> => {
      const saved = at.saved;
      if (!saved) return;
      // Invariant 8: a read is written only once what it overwrites is durable in the history.
      await saved.durable;
      await at.writing?.done;
      const done = this.write(saved.batch);
      // (Awaited later or in `finally`; a failure meanwhile is not an unhandled one.)
      done.catch(() => undefined);
      at.writing = { batch: saved.batch, done };
      at.saved = null;
    };
    try {
      for (let seq = from, k = 0; seq <= to; k++) {
        const batch = await log.read(seq, readBytes, to, buffers[k % HISTORY_APPLY_READS]);
        if (batch.length === 0) throw new Error(`receive log lacks record ${seq}`);
        const last = batch[batch.length - 1]!;
        if (lease) {
          const held = batchBytes(batch) + (at.saved ? batchBytes(at.saved.batch) : 0) + (at.writing ? batchBytes(at.writing.batch) : 0);
          if (held > lease.bytes) lease.grow(held - lease.bytes);
          // (A unit read whole at once holds what it read, not three reads' worth.)
          else if (!at.writing && !at.saved && last.seq === to) lease.shrink(held);
        }
        // Invariant 8: the reads before it, not (or not wholly) on the replica yet, are given
        // to the history, whose saved bytes come from them there, not from the replica.
        const unwritten = [...(at.writing?.batch ?? []), ...(at.saved?.batch ?? [])];
        const durable = (await this.saveInHistory(history, batch, from - 1, unwritten)) ? history.sync() : Promise.resolve();
        // A round's undo area (of a round that opened while the unit ran, even while the
        // history saved) reads the replica as it is: the reads before it are written, and
        // the write under way ends, first (simulation seeds 733 and 2190).
        if (this.round.undo) {
          await writeSaved();
          await at.writing?.done;
          at.writing = null;
          await this.protect(batch);
        }
        await writeSaved();
        at.saved = { batch, durable };
        seq = last.seq + 1;
        lastRead = last;
      }
      await writeSaved();
      await at.writing?.done;
    } finally {
      // (On a failure: the write under way ends before its buffer and lease go.)
      await at.writing?.done.catch(() => undefined);
      for (const b of buffers) pool.give(b);
      lease?.release();
    }
    return lastRead;
  }

  /** Appends what `batch` overwrites to the history (not yet durable); whether it saved any bytes. */
  private saveInHistory(history: History, batch: JournalRecord[], unitStart: number, unwritten: JournalRecord[]): Promise<boolean> {
    return history.save(this.volume, batch, this.captureContext(unitStart), unwritten);
  }

  /** Saves what `batch` overwrites in the history, durably, before it is written (`inFlight`: the read being written meanwhile). */
  private async capture(batch: JournalRecord[], unitStart: number, inFlight: JournalRecord[]): Promise<void> {
    // Invariant 8: what the batch overwrites is saved in the history, durably, before it is written.
    if (!this.history) return;
    await this.history.capture(this.volume, batch, this.captureContext(unitStart), inFlight);
  }

  private captureContext(unitStart: number): CaptureContext {
    const round = this.round;
    return { capturing: round.synced && round.mark?.initial !== true, inRound: round.mark !== null || round.undo !== null, group: this.inGroup, unitStart };
  }

  /** In a round, the old bytes of every region `batch` changes are saved in its undo area, durably, first (no write is under way). */
  private async protect(batch: JournalRecord[]): Promise<void> {
    const undo = this.round.undo;
    if (!undo) return;
    // (It reads the replica as it is: a write under way would put bytes of the round's own in the undo area.)
    assert(this.writing === 0, () => `volume ${this.name}: a round's undo area saved bytes while a write was under way`);
    await undo.protect(this.volume, batch.filter((r) => r.kind !== RecordKind.Barrier && r.kind !== RecordKind.Skip).map(
      (r) => ({ offset: r.offset, length: r.length })));
  }

  /** Reads of the unit being written to the replica now (at most one). */
  private writing = 0;

  /** Writes one read of the unit to the replica. */
  private async write(batch: JournalRecord[]): Promise<void> {
    this.writing++;
    try {
      await this.writeRecords(batch);
    } finally {
      this.writing--;
    }
  }

  /**
   * The read's records onto the replica, in their order: a run of writes in one call
   * where the disk takes them so (Disk.writeInOrder: one thread-pool job for up to
   * IN_ORDER_WRITES_PER_JOB), a zeroing after the writes before it.
   */
  private async writeRecords(batch: JournalRecord[]): Promise<void> {
    // (A disk without it: the run's writes one after the other.)
    const inOrder = this.volume.writeInOrder?.bind(this.volume) ?? (async (o: number[], d: Buffer[]): Promise<void> => {
      for (let i = 0; i < d.length; i++) await this.volume.write(o[i]!, d[i]!, false);
    });
    let offsets: number[] = [];
    let data: Buffer[] = [];
    const writeRun = async (): Promise<void> => {
      if (data.length === 0) return;
      const [o, d] = [offsets, data];
      offsets = [];
      data = [];
      await inOrder(o, d);
    };
    for (const r of batch) {
      if (r.kind === RecordKind.Write) {
        offsets.push(r.offset);
        data.push(r.payload);
      } else if (r.kind === RecordKind.Zeroes || r.kind === RecordKind.Trim) {
        await writeRun();
        if (!(await this.volume.punch(r.offset, r.length))) await this.volume.writeZeroes(r.offset, r.length, { fua: false, mayTrim: false, fast: false });
      }
    }
    await writeRun();
  }
}

/** A read of the unit being written to the replica. */
interface Writing { batch: JournalRecord[]; done: Promise<void> }

/** A read whose saved bytes are being made durable: written once they are and the `Writing` before it is done. */
interface Saved { batch: JournalRecord[]; durable: Promise<void> }

/** The bytes a read of the receive log holds in memory. */
function batchBytes(batch: readonly JournalRecord[]): number {
  return batch.reduce((n, r) => n + r.payload.length + RECORD_HEADER_SIZE, 0);
}

/** The node's buffers for reads of `readBytes` of a receive log (each holds a whole read: header chunks are smaller). */
function readBuffers(readBytes: number): BufferPool {
  return bufferPool(Math.max(JOURNAL_HEADER_CHUNK_BYTES, readBytes + RECORD_HEADER_SIZE), APPLY_BUFFERS_KEPT);
}
