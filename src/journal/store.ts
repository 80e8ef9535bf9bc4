// The Store (src/store/store.ts) on a real folder, and the lock that keeps a journal
// or receive log folder one volume's alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { POSIX_FADV_WILLNEED, nativeFs } from '../volume/native.js';
import { getSystemErrorName } from 'node:util';
import { readStateFile, type FollowingWrites, type Store, type StoreFile } from '../store/store.js';
import { assert } from '../invariants/assert.js';

/** The journal's files import the interface from here as well. */
export type { Store, StoreFile };
/** (It lives beside the interface, src/store/store.ts, so src/volume reads state files too without a circle.) */
export { readStateFile };

export class DirStore implements Store {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  list(): string[] {
    return fs.readdirSync(this.dir);
  }

  open(name: string): StoreFile {
    return new NodeFile(name, fs.openSync(path.join(this.dir, name), 'r+'));
  }

  create(name: string): StoreFile {
    // 0600: host data (journal records, undo copies) and the node's state are this user's alone.
    return new NodeFile(name, fs.openSync(path.join(this.dir, name), 'w+', 0o600));
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

class NodeFile implements StoreFile {
  private length: number;

  constructor(readonly name: string, private fd: number) {
    this.length = fs.fstatSync(fd).size;
  }

  size(): number {
    return this.length;
  }

  appendSync(parts: Buffer[]): void {
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

  writev(position: number, parts: Buffer[]): Promise<void> {
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
    fs.ftruncateSync(this.fd, length);
    this.length = length;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
