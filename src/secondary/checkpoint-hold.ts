// A checkpoint on a secondary: the replica's image frozen at a flush point while it is
// held. Its file (state/volumes/NAME/checkpoint, JSON) keeps it held across a restart;
// the hold itself is what a resync round waits for before it opens. Taking and
// releasing one (the apply stopped at a unit's end, the catch-up after) is Replica's.
import type { Store } from '../journal/store.js';
import { jsonVersion, refuseNewer } from '../versioning/format.js';

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
  /** Taken on every member of this consistency group at one group point (docs/GROUPS.md). */
  group?: string;
  /** That group point's number, the same on every member. */
  groupPoint?: number;
  /**
   * Taken from the history (`--at`): the restore point it serves. The replica is not
   * frozen; the image is the history's view of this point (docs/HISTORY.md).
   */
  point?: { seq: number; time: number };
}

export const CHECKPOINT_FILE = 'checkpoint';
/**
 * Its "version" (absent, as the previous release wrote it: 1). A newer release's
 * checkpoint is refused (docs/VERSIONING.md): read as unreadable it would still be
 * held, but under a label nobody asked for and at no known record.
 */
export const CHECKPOINT_FORMAT = jsonVersion('checkpoint file', 1, [1, 2]);
/**
 * A checkpoint taken from the history is written as version 2: a release before history
 * refuses it rather than freeze the replica at a point it has long passed.
 */
export const CHECKPOINT_POINT_VERSION = 2;

/** The checkpoint held on one replica, if any, its file, and the wait for its release. */
export class CheckpointHold {
  /** The held checkpoint, if any. */
  held: Checkpoint | null = null;
  /** Resolves once the checkpoint held now is released (at once when none is). */
  released: Promise<void> = Promise.resolve();
  private releaseWaiters: (() => void) | null = null;

  constructor(private readonly store: Store) {}

  hold(cp: Checkpoint): void {
    this.held = cp;
    this.released = new Promise((r) => (this.releaseWaiters = r));
  }

  /** Released in memory (its file stays until `removeFile`). */
  letGo(): void {
    this.held = null;
    this.releaseWaiters?.();
    this.releaseWaiters = null;
  }

  /** Writes `cp`'s file: held again after a restart until released. */
  writeFile(cp: Checkpoint): Promise<void> {
    const version = cp.point ? CHECKPOINT_POINT_VERSION : CHECKPOINT_FORMAT.writes;
    return this.store.replace(CHECKPOINT_FILE, Buffer.from(`${JSON.stringify({ version, ...cp })}\n`));
  }

  /** Removes the file, durably. */
  removeFile(): Promise<void> {
    this.store.remove(CHECKPOINT_FILE);
    return this.store.syncDir();
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
    const group = typeof cp.group === 'string' && typeof cp.groupPoint === 'number' ? { group: cp.group, groupPoint: cp.groupPoint } : {};
    const point = typeof cp.point?.seq === 'number' && typeof cp.point.time === 'number' ? { point: { seq: cp.point.seq, time: cp.point.time } } : {};
    return { label: cp.label, createdAt: cp.createdAt, holdUntil, appliedSeq: cp.appliedSeq ?? 0, ownedByDrill: cp.ownedByDrill === true, ...group, ...point };
  } catch (e) {
    // Safer to hold a checkpoint nobody asked for than to let a backup read a moving image.
    return { label: `unreadable (${(e as Error).message})`, createdAt: Date.now(), holdUntil: null, appliedSeq: 0 };
  }
}
