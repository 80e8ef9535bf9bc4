// The read-only NBD export VOLUME@checkpoint: the replica's image frozen by a held
// checkpoint, for a backup tool to read while replication goes on. Once the
// checkpoint is released, reads on a connection still open fail (ESTALE) rather
// than return a moving image.
import { DiskError, type Extent, type ExportBackend, type ZeroOptions, type Capabilities, readOnlyCapabilities } from '../export/backend.js';
import type { Checkpoint, Replica } from '../secondary/replica.js';

export const CHECKPOINT_SUFFIX = '@checkpoint';

export class CheckpointExport implements ExportBackend {
  /** The replica's size when the export began: a volume grown since (docs/CONFIG.md) leaves a frozen image as it was. */
  readonly size: number;
  constructor(private readonly replica: Replica, private readonly held: Checkpoint) {
    this.size = replica.size;
  }

  get name(): string { return `${this.replica.name}${CHECKPOINT_SUFFIX}`; }
  get readOnly(): boolean { return true; }
  capabilities(): Capabilities { return readOnlyCapabilities(true); }
  get description(): string {
    const of = this.held.point ? `, the restore point of ${new Date(this.held.point.time).toISOString()}` : '';
    return `checkpoint "${this.held.label}" of ${this.replica.name}${of}, taken ${new Date(this.held.createdAt).toISOString()} (read-only)`;
  }

  private check(): void {
    if (this.replica.checkpoint !== this.held) throw new DiskError('ESTALE', `checkpoint "${this.held.label}" of ${this.replica.name} was released`);
  }

  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.check();
    await this.replica.readImage(this.held, offset, into, at, length);
    this.check(); // (released during the read: the bytes may be from after it)
  }

  write(): Promise<void> { return Promise.reject(new DiskError('EPERM', 'a checkpoint is read-only (use a drill for a writable copy)')); }
  writeZeroes(_o: number, _l: number, _z: ZeroOptions): Promise<void> { return this.write(); }
  trim(): Promise<void> { return this.write(); }
  flush(): Promise<void> { return Promise.resolve(); }
  cache(offset: number, length: number): Promise<void> { return this.replica.cache(offset, length); }
  async extents(offset: number, length: number, max: number): Promise<Extent[]> {
    this.check();
    // A past point is partly in the history: call it all data.
    if (this.held.point) return [{ length, hole: false }];
    return this.replica.extents(offset, length, max);
  }
}
