// A secondary's past flush points (docs/HISTORY.md): its history, opened once the
// replica knows where it stands, the restore points it lists, and the view a checkpoint
// of a past point reads through (opened again after a start). Replica (replica.ts)
// holds one; the history itself is src/history/.
import type { Disk } from '../journal/disk.js';
import type { Store } from '../journal/store.js';
import type { Logger } from '../log/log.js';
import { DiskError } from '../export/backend.js';
import { History, type HistorySettings, type RestorePoint } from '../history/history.js';
import { PointView } from '../history/view.js';
import type { UnitApplier } from './apply-unit.js';
import type { Checkpoint } from './checkpoint-hold.js';

export class PastPoints {
  /** The history, when the volume keeps one. */
  history: History | null = null;
  /** The view the held checkpoint of a past point reads through (null: none, or it could not open). */
  private view: PointView | null = null;
  /** Why the held checkpoint's point could not be opened after a start, if so. */
  private viewError: string | null = null;

  constructor(private readonly volume: Disk, private readonly units: UnitApplier, private readonly logger: Logger, private readonly applied: () => number) {}

  private get name(): string { return this.volume.name; }

  /**
   * At a start, or before: history is kept only for an image the replica holds since its
   * first sync; any other (turned off, or left from before a promote) could not open right.
   */
  static async dropUnless(store: Store, keep: boolean, why: string, name: string, logger: Logger): Promise<void> {
    if (keep) return;
    const n = await History.drop(store);
    if (n > 0) logger.info({ volume: name }, `volume ${name}: ${n} history segments dropped (${why})`);
  }

  /** Opens the history once the replica knows it stands at record `applied` (before a unit a crash cut is redone). */
  async open(store: Store, settings: HistorySettings, applied: number, pinned: readonly number[]): Promise<void> {
    if (this.history) return;
    this.history = await History.open(store, this.volume.size, applied, this.name, this.logger, settings, pinned);
    this.units.history = this.history;
  }

  /** The volume is leaving the secondary role: its history could not open right any more (the role change removes its files). */
  close(): void {
    this.release();
    this.history?.close();
    this.history = null;
    this.units.history = null;
  }

  /** The restore points the history can open, oldest first (none without history). */
  list(): RestorePoint[] {
    return this.history?.list(this.applied()) ?? [];
  }

  /** Opens the image at restore point `seq` (a listed one); close it when done. */
  async openPoint(seq: number): Promise<PointView> {
    if (!this.history) throw new DiskError('EINVAL', `volume ${this.name} keeps no history (set history: in its config)`);
    const marked = this.history.listed(seq, this.applied());
    if (!marked) throw new DiskError('ENOENT', `volume ${this.name} has no restore point ${seq}`);
    return PointView.open(this.history, marked, this.volume, () => this.quiet());
  }

  /** A read of the replica's volume that no unit overlaps: the exit is called when it is done. */
  private async quiet(): Promise<() => void> {
    await this.units.beginRead();
    return () => this.units.endRead();
  }

  /** The newest restore point at or before `at` (ms), or why there is none. */
  newestAtOrBefore(at: number): RestorePoint {
    if (!this.history) throw new DiskError('EINVAL', `volume ${this.name} keeps no history, so it has no past point to open (set history: in its config)`);
    const points = this.list();
    let chosen: RestorePoint | null = null;
    for (const p of points) if (p.time <= at) chosen = p;
    if (chosen) return chosen;
    throw new DiskError('ENOENT', points.length === 0 ? `volume ${this.name} has no restore point yet` :
      `volume ${this.name} has no restore point at or before ${new Date(at).toISOString()}: its history reaches back to ` +
      `${new Date(points[0]!.time).toISOString()}`);
  }

  /** Puts the image at restore point `seq` back on the replica's volume (a promote to a past point); bytes written back. */
  async rollBackTo(seq: number): Promise<number> {
    const view = await this.openPoint(seq);
    try {
      return await view.restore(this.volume);
    } finally {
      view.close();
    }
  }

  /** The held checkpoint of a past point reads through `view` from now on. */
  hold(view: PointView): void {
    this.release();
    this.view = view;
    this.viewError = null;
  }

  /** After a start: opens the view of the held checkpoint of a past point again. */
  async reopen(cp: Checkpoint): Promise<void> {
    try {
      const marked = cp.point ? this.history?.find(cp.point.seq) ?? null : null;
      // (By its time too: a seq names one point for good, src/history/streams.ts, and this guards that.)
      if (!marked || marked.time !== cp.point!.time) {
        throw new Error(`the history no longer holds the restore point of ${cp.point ? new Date(cp.point.time).toISOString() : '?'}`);
      }
      this.hold(await PointView.open(this.history!, marked, this.volume, () => this.quiet()));
    } catch (e) {
      this.viewError = (e as Error).message;
      this.logger.error({ volume: this.name }, `volume ${this.name}: checkpoint "${cp.label}" cannot be read: ${this.viewError}`);
    }
  }

  /** Reads the image of the held checkpoint `cp` of a past point. */
  read(cp: Checkpoint, offset: number, into: Buffer, at: number, length: number): Promise<void> {
    if (!this.view) {
      return Promise.reject(new DiskError('EIO', `checkpoint "${cp.label}" of ${this.name} cannot be read: ${this.viewError ?? 'it was released'}`));
    }
    return this.view.read(offset, into, at, length);
  }

  /** The checkpoint of a past point was released. */
  release(): void {
    this.view?.close();
    this.view = null;
  }
}
