// A DR drill (docs/FAILOVER.md): the writable export VOLUME@drill on the secondary,
// a copy-on-write overlay over a held checkpoint, so a test server can boot and
// write while replication goes on untouched. The overlay is a sparse file in the
// volume's state folder; a region (the volume's bitmap region) is copied from the
// frozen image the first time a drill write touches it. Throwaway: `drill stop`
// (or a restart of the daemon) deletes it. Memory: one bit per region.
import fs from 'node:fs';
import { DiskError, type Extent, type ExportBackend, type ZeroOptions, type Capabilities, MAX_REQUEST_BYTES } from '../export/backend.js';
import { RegionSet } from '../journal/bitmap.js';
import { Volume } from '../volume/volume.js';
import type { Checkpoint, Replica } from '../secondary/replica.js';

export const DRILL_SUFFIX = '@drill';

export class DrillOverlay implements ExportBackend {
  private readonly copied: RegionSet;
  /** Regions being copied in: later writes there wait for the copy. */
  private readonly copying = new Map<number, Promise<void>>();
  private stopped = false;
  bytesWritten = 0;

  private constructor(
    private readonly replica: Replica,
    readonly checkpoint: Checkpoint,
    private readonly overlay: Volume,
    readonly regionSize: number,
    readonly ownsCheckpoint: boolean,
  ) {
    this.size = overlay.size;
    this.copied = new RegionSet(this.size, regionSize);
  }

  /** The replica's size at the drill's start: a volume grown since (docs/CONFIG.md) leaves the drill's disk as it was. */
  readonly size: number;

  /** Starts over a held checkpoint; the overlay file is created empty (sparse). */
  static open(replica: Replica, checkpoint: Checkpoint, file: string, regionSize: number, ownsCheckpoint: boolean): DrillOverlay {
    fs.rmSync(file, { force: true });
    const overlay = Volume.open({ name: `${replica.name}${DRILL_SUFFIX}`, path: file, size: replica.size, readOnly: false });
    return new DrillOverlay(replica, checkpoint, overlay, regionSize, ownsCheckpoint);
  }

  get name(): string { return `${this.replica.name}${DRILL_SUFFIX}`; }
  get readOnly(): boolean { return false; }
  /**
   * Writable, over one overlay file (a FLUSH covers every connection); zeroing is a
   * written copy-in, never fast; the allocation map is not kept (all reads as data).
   */
  capabilities(): Capabilities {
    return {
      readOnly: false, flush: true, fua: true, trim: true, zero: true, fastZero: false, multiConn: true, extents: false, cache: false,
      blockSize: { minimum: 1, preferred: 4096, maximum: MAX_REQUEST_BYTES },
    };
  }
  get description(): string {
    return `DR drill of ${this.replica.name} over checkpoint "${this.checkpoint.label}" (writes stay here and are thrown away at drill stop)`;
  }

  private check(): void {
    if (this.stopped || this.replica.checkpoint !== this.checkpoint) throw new DiskError('ESHUTDOWN', `the drill of ${this.replica.name} was stopped`);
  }

  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.check();
    let done = 0;
    while (done < length) {
      const o = offset + done;
      const r = Math.floor(o / this.regionSize);
      const n = Math.min(length - done, (r + 1) * this.regionSize - o);
      const pending = this.copying.get(r);
      if (pending) await pending;
      if (this.copied.has(r)) await this.overlay.read(o, into, at + done, n);
      else await this.replica.readImage(this.checkpoint, o, into, at + done, n);
      done += n;
    }
  }

  /** Copies the frozen image of every region in [offset, offset+length) not yet in the overlay. */
  private async copyIn(offset: number, length: number): Promise<void> {
    const last = Math.floor((offset + length - 1) / this.regionSize);
    for (let r = Math.floor(offset / this.regionSize); r <= last; r++) {
      for (let p = this.copying.get(r); p; p = this.copying.get(r)) await p;
      if (this.copied.has(r)) continue;
      const start = r * this.regionSize;
      const n = Math.min(this.regionSize, this.size - start);
      const p = (async () => {
        const buf = Buffer.allocUnsafe(n);
        await this.replica.readImage(this.checkpoint, start, buf, 0, n);
        await this.overlay.write(start, buf, false);
        this.copied.mark(start, n);
      })();
      this.copying.set(r, p);
      try {
        await p;
      } finally {
        this.copying.delete(r);
      }
    }
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.check();
    if (data.length === 0) return;
    await this.copyIn(offset, data.length);
    this.bytesWritten += data.length;
    await this.overlay.write(offset, data, fua);
  }

  async writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    this.check();
    if (length === 0) return;
    await this.copyIn(offset, length);
    this.bytesWritten += length;
    await this.overlay.writeZeroes(offset, length, { ...opts, mayTrim: false });
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.writeZeroes(offset, length, { fua, mayTrim: false, fast: false });
  }

  flush(): Promise<void> {
    this.check();
    return this.overlay.flush();
  }

  cache(): Promise<void> { return Promise.resolve(); }

  async extents(_offset: number, length: number): Promise<Extent[]> {
    this.check();
    return [{ length, hole: false }];
  }

  /** Throws the overlay away. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const p of this.copying.values()) await p.catch(() => undefined);
    const file = this.overlay.path;
    await this.overlay.close();
    fs.rmSync(file, { force: true });
  }
}
