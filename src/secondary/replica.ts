// The secondary side of one volume: the receive log, the replica volume, and the
// receiver state machine between them. Served read-only over NBD; a read never sees
// a half-applied unit (reads wait while a unit is applied), and after any crash the
// unit in progress is applied again from the receive log before anything is served,
// so the replica is always a flush-point image (DESIGN.md invariant 3).
import type { Extent, ExportBackend, ZeroOptions } from '../nbd/export.js';
import { DiskError } from '../nbd/export.js';
import type { Logger } from '../log/log.js';
import type { Journal } from '../journal/journal.js';
import { RecordKind, type JournalRecord } from '../journal/record.js';
import type { Volume } from '../volume/volume.js';
import { Receiver, type ReceiverAction } from './receiver.js';

export interface ReplicaLink {
  ack(seq: number): void;
  close(reason: string): void;
}

export class Replica implements ExportBackend {
  readonly receiver: Receiver;
  private link: ReplicaLink | null = null;
  private gate: Promise<void> | null = null;
  appliedUnits = 0;

  private constructor(readonly volume: Volume, readonly log: Journal, private readonly logger: Logger, lastBarrier: number) {
    const applied = Math.max(log.appliedOnDisk, log.released);
    this.receiver = new Receiver({ logged: log.lastSeq, logDurable: log.lastSeq, applied, lastBarrier });
  }

  /** Recovers the receive log, then finishes any unit a crash interrupted. */
  static async open(volume: Volume, log: Journal, logger: Logger): Promise<Replica> {
    const report = await log.recover();
    for (const n of report.notes) logger.info({ volume: volume.name }, n);
    if (report.damaged) {
      logger.error({ volume: volume.name }, `volume ${volume.name}: the receive log is damaged; records after the damage are dropped and will be fetched again`);
    }
    let lastBarrier = 0;
    for (let seq = Math.max(log.released, log.appliedOnDisk) + 1; seq <= log.lastSeq;) {
      const batch = await log.read(seq, 8 << 20);
      if (batch.length === 0) break;
      for (const r of batch) if (r.kind === RecordKind.Barrier) lastBarrier = r.seq;
      seq = batch[batch.length - 1]!.seq + 1;
    }
    const replica = new Replica(volume, log, logger, lastBarrier);
    // Records applied before the stop but not yet released from the log.
    if (replica.receiver.applied > log.released) await log.release(replica.receiver.applied).catch(() => undefined);
    // A unit interrupted by a crash is applied again now, before the export serves.
    const pending = replica.receiver.handle({ type: 'up' });
    await replica.run(pending);
    replica.receiver.handle({ type: 'down' });
    return replica;
  }

  get name(): string { return this.volume.name; }
  get size(): number { return this.volume.size; }
  get readOnly(): boolean { return true; }
  get description(): string { return `${this.volume.description} (replica: the last applied flush point)`; }

  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    while (this.gate) await this.gate;
    return this.volume.read(offset, into, at, length);
  }
  write(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  writeZeroes(_o: number, _l: number, _z: ZeroOptions): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  trim(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'the replica is read-only')); }
  flush(): Promise<void> { return Promise.resolve(); }
  cache(offset: number, length: number): Promise<void> { return this.volume.cache(offset, length); }
  extents(offset: number, length: number, max: number): Promise<Extent[]> { return this.volume.extents(offset, length, max); }

  attach(link: ReplicaLink): Promise<void> {
    this.link = link;
    return this.run(this.receiver.handle({ type: 'up' }));
  }

  detach(): void {
    this.link = null;
    this.receiver.handle({ type: 'down' });
  }

  /** Records from the peer, already checksum-verified. */
  receive(records: JournalRecord[]): Promise<void> {
    const byseq = new Map(records.map((r) => [r.seq, r]));
    const actions = this.receiver.handle({ type: 'records', records: records.map((r) => ({ seq: r.seq, barrier: r.kind === RecordKind.Barrier, size: r.payload.length + 56 })) });
    return this.run(actions, byseq);
  }

  private async run(actions: ReceiverAction[], frame?: Map<number, JournalRecord>): Promise<void> {
    for (const a of actions) {
      switch (a.type) {
        case 'append':
          for (let seq = a.fromSeq; seq <= a.toSeq; seq++) {
            const r = frame!.get(seq)!;
            const res = this.log.appendReceived(r, r.kind === RecordKind.Write ? r.payload : null);
            if (res === 'full') {
              this.link?.close(`receive log full (${this.log.usedBytes} of ${this.log.capacity} bytes); the primary's journal holds the rest`);
              return;
            }
          }
          break;
        case 'truncate':
          break; // records logged but not durable are identical when resent: they stay
        case 'sync':
          void this.log.sync().then((upTo) => this.run(this.receiver.handle({ type: 'synced', upTo })), (e: Error) => {
            this.logger.error({ volume: this.name }, `volume ${this.name}: receive log sync failed: ${e.message}`);
            this.link?.close('receive log sync failed');
          });
          break;
        case 'ack':
          this.link?.ack(a.seq);
          break;
        case 'apply':
          await this.apply(a.fromSeq, a.toSeq);
          await this.run(this.receiver.handle({ type: 'applied', upTo: a.toSeq }));
          break;
        case 'releaseLog':
          await this.log.release(a.seq).catch(() => undefined);
          break;
        case 'close':
          this.logger.warn({ volume: this.name }, `volume ${this.name}: ${a.reason}`);
          this.link?.close(a.reason);
          break;
      }
    }
  }

  /** Applies records from..to (ending at a barrier) as one unit: readers wait, the replica is synced, then `applied` is recorded. */
  private async apply(from: number, to: number): Promise<void> {
    let open!: () => void;
    this.gate = new Promise((r) => (open = r));
    try {
      for (let seq = from; seq <= to;) {
        const batch = await this.log.read(seq, 8 << 20, to);
        if (batch.length === 0) throw new Error(`receive log lacks record ${seq}`);
        for (const r of batch) {
          if (r.kind === RecordKind.Write) await this.volume.write(r.offset, r.payload, false);
          else if (r.kind === RecordKind.Zeroes || r.kind === RecordKind.Trim) {
            if (!(await this.volume.punch(r.offset, r.length))) await this.volume.writeZeroes(r.offset, r.length, { fua: false, mayTrim: false, fast: false });
          }
        }
        seq = batch[batch.length - 1]!.seq + 1;
      }
      await this.volume.flush();
      this.log.markApplied(to);
      await this.log.sync();
      this.appliedUnits++;
    } finally {
      this.gate = null;
      open();
    }
  }
}
