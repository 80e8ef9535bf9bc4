// A resync round as the secondary keeps it (docs/RESYNC.md): the round marker (the
// round is open from its write to its removal), the undo area that keeps serving the
// image from before the round (none for a first sync: there is no image yet), and
// whether a first sync ever completed here. When a round opens, moves and ends is the
// receiver's and Replica's to say; this is the state and its durable steps.
import type { Disk } from '../journal/disk.js';
import type { Store } from '../journal/store.js';
import { RoundMarker, type RoundMark } from '../sync/round-marker.js';
import { UndoArea } from '../sync/undo.js';

/** Present once a first sync completed: from then on the replica is always a flush-point image. */
export const SYNCED_FILE = 'synced';

export class ReplicaRound {
  /** The open resync round, if any; `undo` keeps the old image unless the round is the first sync. */
  mark: RoundMark | null = null;
  undo: UndoArea | null = null;
  /** The undo area of a round just complete, open until its removal (whose space its close then frees, off the event loop). */
  private spent: UndoArea | null = null;
  /** A first sync has completed here (or records were applied before rounds existed). */
  synced = false;
  private readonly marker: RoundMarker;

  constructor(private readonly store: Store, private readonly regionSize: number, private readonly volume: Disk) {
    this.marker = new RoundMarker(store);
  }

  /** At start: the round a stop left open, if any, and whether a first sync completed. */
  async readMark(): Promise<void> {
    this.mark = await this.marker.read();
    this.synced = this.store.list().includes(SYNCED_FILE);
  }

  /** At start: the undo area of the open round; one left by a round committed just before a crash is dropped. */
  async openUndo(): Promise<void> {
    if (this.mark && !this.mark.initial) this.undo = await UndoArea.open(this.store, this.regionSize, this.volume.size);
    else if (!this.mark) await this.dropUndo();
  }

  /** The replica is let go: the undo area's file closes, as it is on disk (the next open reads it again). */
  closeFiles(): void {
    this.undo?.close();
    this.undo = null;
    this.spent?.close();
    this.spent = null;
  }

  /** Opens a round from `startSeq`: a first sync has no earlier image to keep; any later round keeps it in the undo area. */
  async begin(startSeq: number, initial: boolean): Promise<void> {
    if (!initial) {
      await this.dropUndo();
      this.undo = await UndoArea.open(this.store, this.regionSize, this.volume.size);
    }
    this.mark = { startSeq, initial };
    await this.marker.write(this.mark);
  }

  /** The primary moved the open round's start. */
  move(startSeq: number): Promise<void> {
    this.mark = { ...this.mark!, startSeq };
    return this.marker.write(this.mark);
  }

  /**
   * The unit that ends the round is on the volume (flushed): said durably before its
   * applied counter is synced, so a start can tell a round whose end was applied
   * (complete it) from one whose end is still to apply (redo it), even where the log
   * holds the end of an earlier round below the applied point.
   */
  ending(): Promise<void> {
    this.mark = { ...this.mark!, ending: true };
    return this.marker.write(this.mark);
  }

  /**
   * The round is complete: from the marker's removal on, the replica itself is the
   * image. Returns whether it was the first sync.
   */
  async complete(): Promise<boolean> {
    await this.marker.remove();
    const wasInitial = this.mark?.initial === true;
    this.mark = null;
    this.spent?.close();
    this.spent = this.undo;
    this.undo = null;
    return wasInitial;
  }

  /** After a complete round is recorded applied: its undo area goes, and the first sync is noted as done. */
  async completed(): Promise<void> {
    await this.dropUndo();
    if (!this.synced) {
      await this.store.replace(SYNCED_FILE, Buffer.from('the first sync of this replica is complete\n'));
      this.synced = true;
    }
  }

  /** A promote in the middle of a round: the image before it goes back on the volume. Returns the regions put back. */
  async rollBack(): Promise<number> {
    let rolledBack = 0;
    if (this.undo) {
      rolledBack = await this.undo.rollback(this.volume);
      this.undo.close();
      this.undo = null;
    }
    this.mark = null;
    return rolledBack;
  }

  /** Removes the undo area, then closes a complete round's (so the kernel frees it at that close). */
  private async dropUndo(): Promise<void> {
    await UndoArea.drop(this.store);
    this.spent?.close();
    this.spent = null;
  }
}
