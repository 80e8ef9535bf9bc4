// The storage under the journaled write path: a volume (or the simulation's disk).
import type { ExportBackend } from '../export/backend.js';

/** The storage under the write path (a volume): a backend less the front end's capability query. */
export interface Disk extends Omit<ExportBackend, 'capabilities'> {
  /** Deallocates if it can; true when the range now reads as zeros. */
  punch(offset: number, length: number): Promise<boolean>;
  /**
   * A write of `data` at `offset` that another file's thread-pool job does for this disk,
   * after its own write (a host write after its journal record, write-path.ts "Order"):
   * the descriptor and position, checked as `write` checks them. Null where it cannot (a
   * disk not on a descriptor); absent on disks that never can.
   */
  following?(offset: number, data: Buffer): FollowingWrite | null;
  /**
   * Writes each of `data` whole at its offset, in this order (a later one over an earlier
   * one where they overlap), in as few thread-pool jobs as it can: the secondary's apply
   * of a read of its receive log (src/secondary/apply-unit.ts). Absent: the caller writes
   * them one after the other with `write`.
   */
  writeInOrder?(offsets: number[], data: Buffer[]): Promise<void>;
  /** Makes room for `size` bytes, durable (a grown volume, docs/CONFIG.md "Growing a volume"); `size` holds the old value until setSize. */
  extend(size: number): Promise<void>;
  /** From now on the disk is `size` bytes: extend(size) made room. */
  setSize(size: number): void;
}

export interface FollowingWrite {
  fd: number;
  data: Buffer;
  position: number;
  /** The error `write` would have thrown for this errno. */
  failure(errno: number): Error;
  /** Called once when the job ended (written, failed or not tried): the disk may close then. */
  ended(): void;
}

/** Zeroes a range the way a replicated trim must: a punched hole where the storage can, written zeros where not. */
export async function zeroRange(disk: Disk, offset: number, length: number): Promise<void> {
  if (!(await disk.punch(offset, length))) {
    await disk.writeZeroes(offset, length, { fua: false, mayTrim: false, fast: false });
  }
}

const ZERO = Buffer.alloc(64 * 1024);

export function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}
