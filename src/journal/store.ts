// The Store (src/store/store.ts) on a real folder, and the lock that keeps a journal
// or receive log folder one volume's alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { POSIX_FADV_WILLNEED, nativeFs } from '../volume/native.js';
import { getSystemErrorName } from 'node:util';
import { readStateFile, type FollowingWrites, type Store, type StoreFile } from '../store/store.js';
import { assert } from '../invariants/assert.js';
import { DIRECT_APPEND_MIN_BYTES, DIRECT_BLOCK_BYTES } from '../limits/limits.js';

/** The journal's files import the interface from here as well. */
export type { Store, StoreFile };
/** (It lives beside the interface, src/store/store.ts, so src/volume reads state files too without a circle.) */
export { readStateFile };

/** How a DirStore writes. */
export interface DirStoreOptions {
  /**
   * Large appends (writev at a file's end, of at least DIRECT_APPEND_MIN_BYTES) go
   * through O_DIRECT, padded with zeros to a whole block: for a folder whose files only
   * grow by such appends and whose readers know a file may end in zeros after its last
   * record (the journal and the receive log: src/journal/recovery.ts).
   */
  directAppends?: boolean;
}

export class DirStore implements Store {
  constructor(readonly dir: string, private readonly opts: DirStoreOptions = {}) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  list(): string[] {
    return fs.readdirSync(this.dir);
  }

  open(name: string): StoreFile {
    const file = path.join(this.dir, name);
    return new NodeFile(name, fs.openSync(file, 'r+'), this.opts.directAppends ? file : null);
  }

  create(name: string): StoreFile {
    // 0600: host data (journal records, undo copies) and the node's state are this user's alone.
    const file = path.join(this.dir, name);
    return new NodeFile(name, fs.openSync(file, 'w+', 0o600), this.opts.directAppends ? file : null);
  }

  remove(name: string): void {
    fs.rmSync(path.join(this.dir, name), { force: true });
  }

  rename(from: string, to: string): void {
    fs.renameSync(path.join(this.dir, from), path.join(this.dir, to));
  }

  async replace(name: string, data: Buffer): Promise<void> {
    const tmp = path.join(this.dir, `${name}.tmp`);
    await fs.promises.rm(tmp, { force: true }); // (a leftover of a crash would keep its mode)
    const fh = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, path.join(this.dir, name));
    await this.syncDir();
  }

  syncDir(): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.open(this.dir, 'r', (err, fd) => {
        if (err) return reject(err);
        fs.fsync(fd, (e) => {
          fs.close(fd, () => (e ? reject(e) : resolve()));
        });
      });
    });
  }
}

/** In a journal (or receive log) folder: its flock says the folder is in use, its text by whom. */
export const FOLDER_LOCK_FILE = 'journal.lock';

/**
 * A journal folder held by one volume while a daemon uses it: flock on
 * FOLDER/journal.lock through the native addon, as for volume files and the state
 * folder, so the lock dies with the process, even on kill -9. Two volumes writing one
 * folder would mix their records and ship one's writes to the other's replica;
 * this catches what the config check cannot see: another daemon with another
 * config, or a folder reached through a symlink. flock is per open file, so a
 * second volume of the same daemon is refused too.
 */
export class FolderLock {
  private constructor(readonly dir: string, readonly volume: string, readonly what: string, private fd: number) {}

  /**
   * Takes `dir` (created if missing) for `volume`, or throws an operator error naming
   * the folder and the volume holding it; `what` and `advice` complete that error.
   */
  static take(dir: string, volume: string, what = 'journal folder',
    advice = 'give each volume a journal folder of its own (volumes.NAME.journal_dir)'): FolderLock {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, FOLDER_LOCK_FILE);
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    if (!nativeFs.lock(fd)) {
      let holder = '';
      try {
        holder = fs.readFileSync(fd, 'utf8');
      } catch {
        // unreadable: named below as "another process"
      } finally {
        fs.closeSync(fd);
      }
      throw new Error(`volume ${volume}: ${what} ${dir} is in use by ${describeHolder(holder)}; ` +
        `two volumes must never share one: their records would mix and one's writes would reach the other's replica; ${advice}`);
    }
    // Says who holds it, for the next opener's error (the lock, not this text, is what counts).
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `volume ${volume}, pid ${process.pid} on ${os.hostname()}\n`, 0);
    return new FolderLock(dir, volume, what, fd);
  }

  release(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

function describeHolder(text: string): string {
  const m = /^volume (\S+), pid (\d+) on (\S+)/.exec(text);
  if (!m) return 'another process';
  const [, volume, pid, host] = m;
  if (Number(pid) === process.pid && host === os.hostname()) return `volume ${volume} of this daemon`;
  return `volume ${volume} (pid ${pid} on ${host})`;
}

/** EINVAL: a filesystem that opens O_DIRECT yet refuses the write (alignment, or no direct I/O at all). */
const EINVAL = 22;
/** ENOMEM: the aligned buffer could not be had (nothing written): this append goes through the page cache. */
const ENOMEM = 12;

class NodeFile implements StoreFile {
  /** The end of what was written: a direct append may leave the file longer, zeros to a block's end. */
  private length: number;
  /** Where the last direct append's zeros end on disk (-1: none since the last truncate). */
  private padEnd = -1;
  /** The O_DIRECT descriptor for large appends: -1 not opened yet, -2 none (not asked for, or refused). */
  private direct: number;
  /** The bytes of the block `length` is in, before it, once known (null: read them when needed). */
  private tail: Buffer | null = null;

  /** `directPath`: the file's path, to open it O_DIRECT for large appends; null for none. */
  constructor(readonly name: string, private fd: number, private readonly directPath: string | null = null) {
    this.length = fs.fstatSync(fd).size;
    this.direct = directPath === null ? -2 : -1;
  }

  /** Whether an append of `parts` at `position` goes direct (opening the descriptor the first time). */
  private goesDirect(position: number, parts: Buffer[]): boolean {
    if (this.direct === -2 || position !== this.length || nativeFs.pwritevDirectThen === undefined) return false;
    let n = 0;
    for (const p of parts) n += p.length;
    if (n < DIRECT_APPEND_MIN_BYTES) return false;
    if (this.direct === -1) {
      try {
        this.direct = fs.openSync(this.directPath!, fs.constants.O_RDWR | fs.constants.O_DIRECT);
      } catch {
        this.direct = -2; // (a filesystem without O_DIRECT: the page cache, as before)
        return false;
      }
    }
    return true;
  }

  /** The bytes of `position`'s block before it (the direct write rewrites them, the same). */
  private prefix(position: number): Buffer {
    const r = position % DIRECT_BLOCK_BYTES;
    if (r === 0) return Buffer.alloc(0);
    if (this.tail !== null && this.tail.length === r) return this.tail;
    const b = Buffer.alloc(r);
    const n = fs.readSync(this.fd, b, 0, r, position - r);
    assert(n === r, () => `${this.name}: read ${n} of the ${r} bytes before byte ${position}`);
    return b;
  }

  /**
   * Appends `parts` at `position` (the file's end) through the direct descriptor, then
   * `after`'s writes: each following write's 0 or errno. Null if the filesystem refused
   * the direct write (EINVAL: none again for this file) or its buffer could not be had
   * (ENOMEM): the caller writes through the page cache, the following writes too (not tried).
   */
  private async appendDirect(position: number, parts: Buffer[], after: FollowingWrites | null): Promise<number[] | null> {
    const prefix = this.prefix(position);
    const bufs = after?.bufs ?? [];
    const errs = await nativeFs.pwritevDirectThen!(this.direct, position, prefix, parts, after?.fd ?? 0, bufs, after?.positions ?? []);
    assert(errs.length === bufs.length + 1, () => `${this.name}: ${errs.length} results for ${bufs.length + 1} writes`);
    const first = errs[0]!;
    if (first === EINVAL) {
      fs.closeSync(this.direct);
      this.direct = -2;
      return null;
    }
    if (first === ENOMEM) return null;
    if (first !== 0) {
      this.tail = null; // (a part of it may be on disk)
      const code = getSystemErrorName(-first);
      throw Object.assign(new Error(`${code}: write to ${this.name}`), { code, errno: -first });
    }
    let end = position;
    for (const p of parts) end += p.length;
    this.tail = lastBlock([prefix, ...parts], end % DIRECT_BLOCK_BYTES);
    this.length = end;
    this.padEnd = Math.ceil(end / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
    return errs.slice(1);
  }

  size(): number {
    return this.length;
  }

  appendSync(parts: Buffer[]): void {
    this.tail = null;
    let n = 0;
    for (const p of parts) n += p.length;
    const wrote = fs.writevSync(this.fd, parts, this.length);
    if (wrote !== n) {
      // A short write leaves a torn record; cut it so the file stays parseable.
      fs.ftruncateSync(this.fd, this.length);
      throw Object.assign(new Error(`short write to ${this.name}: ${wrote} of ${n} bytes`), { code: 'ENOSPC' });
    }
    this.length += n;
  }

  /** Set only where the addon has it (an addon built before it lacks it). */
  readonly writevThen = nativeFs.pwritevThen ? this.writevThenNative : undefined;

  private async writevThenNative(position: number, parts: Buffer[], after: FollowingWrites): Promise<number[]> {
    if (this.goesDirect(position, parts)) {
      const direct = await this.appendDirect(position, parts, after);
      if (direct !== null) return direct;
    }
    this.tail = null;
    const errs = await nativeFs.pwritevThen!(this.fd, position, parts, after.fd, after.bufs, after.positions);
    assert(errs.length === after.bufs.length + 1, () => `${this.name}: ${errs.length} results for ${after.bufs.length + 1} writes`);
    const first = errs[0]!;
    if (first !== 0) {
      // (The file may have grown by a part of it: the caller treats the journal as broken, as after a failed writev.)
      const code = getSystemErrorName(-first);
      throw Object.assign(new Error(`${code}: write to ${this.name}`), { code, errno: -first });
    }
    this.length = Math.max(this.length, position + parts.reduce((n, p) => n + p.length, 0));
    return errs.slice(1);
  }

  async writev(position: number, parts: Buffer[]): Promise<void> {
    if (this.goesDirect(position, parts) && (await this.appendDirect(position, parts, null)) !== null) return;
    return this.writevBuffered(position, parts);
  }

  private writevBuffered(position: number, parts: Buffer[]): Promise<void> {
    this.tail = null;
    const total = parts.reduce((n, p) => n + p.length, 0);
    return new Promise((resolve, reject) => {
      const step = (bufs: Buffer[], pos: number, left: number): void => {
        fs.writev(this.fd, bufs, pos, (err, n) => {
          if (err) return reject(err);
          if (n === left) {
            this.length = Math.max(this.length, position + total);
                    return resolve();
          }
          if (n === 0) return reject(Object.assign(new Error(`no progress writing ${this.name}`), { code: 'ENOSPC' }));
          // Short write: continue with what is left.
          const rest: Buffer[] = [];
          let skip = n;
          for (const b of bufs) {
            if (skip >= b.length) skip -= b.length;
            else {
              rest.push(b.subarray(skip));
              skip = 0;
            }
          }
          step(rest, pos + n, left - n);
        });
      };
      step(parts, position, total);
    });
  }

  writeSync(position: number, data: Buffer): void {
    this.tail = null;
    const n = fs.writeSync(this.fd, data, 0, data.length, position);
    // (A short write, a full disk part way: the caller must not count on any of it.)
    if (n !== data.length) throw Object.assign(new Error(`short write to ${this.name}: ${n} of ${data.length} bytes`), { code: 'ENOSPC' });
    this.length = Math.max(this.length, position + data.length);
  }

  read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    const n = Math.max(0, Math.min(length, this.length - position));
    const buf = into ? into.subarray(0, n) : Buffer.allocUnsafe(n);
    if (buf.length === 0) return Promise.resolve(buf);
    return new Promise((resolve, reject) => {
      fs.read(this.fd, buf, 0, buf.length, position, (err, n) => (err ? reject(err) : resolve(buf.subarray(0, n))));
    });
  }

  willNeed(): void {
    // (Length 0: to the end of the file.)
    nativeFs.fadvise(this.fd, 0, 0, POSIX_FADV_WILLNEED).catch(() => undefined);
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  truncateSync(length: number): void {
    this.tail = null;
    fs.ftruncateSync(this.fd, length);
    this.length = length;
    this.padEnd = -1;
  }

  close(): void {
    // A direct append's zeros past the last record are cut: a file closed cleanly ends at
    // its last byte, as an older release wrote it (only a crash leaves them, for recovery).
    // (Only while the file ends where this descriptor's last direct append left it: never
    // bytes written past them since, by this descriptor or another.)
    if (this.fd >= 0 && this.padEnd > this.length) {
      try {
        if (fs.fstatSync(this.fd).size === this.padEnd) fs.ftruncateSync(this.fd, this.length);
      } catch {
        // (recovery cuts them at the next open)
      }
    }
    // The descriptors close on the thread pool, not here: the last close of a removed file
    // is where the kernel frees its pages and blocks, about 38 ms for a released segment
    // of 64 MiB on this project's test machine (docs/JOURNAL.md, "Releasing a segment"),
    // and the event loop serves every host meanwhile. (Nothing is left to write: a
    // failed close says nothing a sync has not said, so its error goes unheard.)
    for (const fd of [this.fd, this.direct]) if (fd >= 0) fs.close(fd, () => undefined);
    this.fd = -1;
    this.direct = -2;
  }
}

/** The last `n` bytes of `chain`'s bytes back to back (n at most a block). */
function lastBlock(chain: Buffer[], n: number): Buffer {
  const t = Buffer.allocUnsafe(n);
  let at = n;
  for (let i = chain.length - 1; i >= 0 && at > 0; i--) {
    const p = chain[i]!;
    const k = Math.min(p.length, at);
    p.copy(t, at - k, p.length - k);
    at -= k;
  }
  assert(at === 0, () => `direct append: ${n} bytes of the last block asked, ${n - at} written`);
  return t;
}
