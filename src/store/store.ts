// The files the journal, the receive log, the dirty bitmap and the resync areas live
// in, behind an interface, so the seeded simulation can put them on a disk model that
// loses unsynced writes (test/sim/disk-model.ts); DirStore (src/journal/store.ts) is
// the real folder. Appends and page writes are synchronous (they land in the page
// cache, like the host's writes); reads and syncs are asynchronous (they may wait for
// the disk). Types (and one reader) only: the journal (journal/) and resync rounds (sync/) both write
// through it without importing each other. Beside it, readStateFile: a small state
// file's bytes, for any folder's reader (journal/, volume/, stream/).
import { refuseNewer, type FileFormat } from '../versioning/format.js';

/**
 * Writes to another file (a volume's descriptor) that must follow a write to this one,
 * done in the same thread-pool job after it: a host write after its journal record.
 */
export interface FollowingWrites {
  fd: number;
  bufs: Buffer[];
  positions: number[];
}

export interface StoreFile {
  readonly name: string;
  /** Current length, including writes not yet synced. */
  size(): number;
  appendSync(parts: Buffer[]): void;
  /** Writes `parts` back to back at `position`, on the thread pool. */
  writev(position: number, parts: Buffer[]): Promise<void>;
  /**
   * writev, then `after`'s writes in order, in one thread-pool job. Resolves with each
   * following write's 0 or errno (positive); rejects as writev does if this file's write failed
   * (then none of `after` was tried). Optional: only a file on a real descriptor has it.
   */
  writevThen?(position: number, parts: Buffer[], after: FollowingWrites): Promise<number[]>;
  writeSync(position: number, data: Buffer): void;
  /**
   * Up to `length` bytes from `position` (short at the end of the file); into `into`
   * when given (at least `length` long: a buffer the caller reuses), the result a view of it.
   */
  read(position: number, length: number, into?: Buffer): Promise<Buffer>;
  /**
   * Asks the kernel to read the whole file into the page cache ahead of a scan (advisory:
   * nothing waits for it, and a failure changes nothing). Optional: a file in memory has nothing to read ahead.
   */
  willNeed?(): void;
  sync(): Promise<void>;
  truncateSync(length: number): void;
  /**
   * Nothing uses the file after. The descriptor may close later, off the caller's thread
   * (DirStore's close on the thread pool): remove a large file before its close, so that
   * the kernel frees its pages and blocks there, not in the event loop's remove.
   */
  close(): void;
}

export interface Store {
  list(): string[];
  open(name: string): StoreFile;
  /** Creates an empty file (replacing any file of that name). */
  create(name: string): StoreFile;
  /** Removes the name (at once; a file still open lives on until its close). */
  remove(name: string): void;
  /**
   * Renames `from` to `to`, replacing any file of that name, atomically: after a crash `to`
   * holds its old bytes or `from`'s (synced before), never a mix. Durable at the next syncDir.
   */
  rename(from: string, to: string): void;
  /** Makes creations and removals durable. */
  syncDir(): Promise<void>;
  /** Replaces a small file atomically and durably: after a crash it holds the old bytes or the new. */
  replace(name: string, data: Buffer): Promise<void>;
}

/**
 * A small state file's bytes (its first 4 KiB: a JSON mark), or null when there is none;
 * one a newer release wrote is refused (docs/VERSIONING.md). Its reader parses the rest.
 */
export async function readStateFile(store: Store, name: string, format: FileFormat): Promise<Buffer | null> {
  if (!store.list().includes(name)) return null;
  const f = store.open(name);
  let b: Buffer;
  try {
    b = await f.read(0, Math.min(f.size(), 4096));
  } finally {
    f.close();
  }
  refuseNewer(format, b, name);
  return b;
}
