// The files the journal and the dirty bitmap live in, behind an interface, so the
// seeded simulation can put them on a disk model that loses unsynced writes.
// Appends and page writes are synchronous (they land in the page cache, like the
// host's writes); reads and syncs are asynchronous (they may wait for the disk).
import fs from 'node:fs';
import path from 'node:path';

export interface StoreFile {
  readonly name: string;
  /** Current length, including writes not yet synced. */
  size(): number;
  appendSync(parts: Buffer[]): void;
  /** Writes `parts` back to back at `position`, on the thread pool. */
  writev(position: number, parts: Buffer[]): Promise<void>;
  writeSync(position: number, data: Buffer): void;
  /** Up to `length` bytes from `position` (short at the end of the file). */
  read(position: number, length: number): Promise<Buffer>;
  sync(): Promise<void>;
  truncateSync(length: number): void;
  close(): void;
}

export interface Store {
  list(): string[];
  open(name: string): StoreFile;
  /** Creates an empty file (replacing any file of that name). */
  create(name: string): StoreFile;
  remove(name: string): void;
  /** Makes creations and removals durable. */
  syncDir(): Promise<void>;
  /** Replaces a small file atomically and durably: after a crash it holds the old bytes or the new. */
  replace(name: string, data: Buffer): Promise<void>;
}

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
    return new NodeFile(name, fs.openSync(path.join(this.dir, name), 'w+'));
  }

  remove(name: string): void {
    fs.rmSync(path.join(this.dir, name), { force: true });
  }

  async replace(name: string, data: Buffer): Promise<void> {
    const tmp = path.join(this.dir, `${name}.tmp`);
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
    fs.writeSync(this.fd, data, 0, data.length, position);
    this.length = Math.max(this.length, position + data.length);
  }

  read(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(Math.max(0, Math.min(length, this.length - position)));
    if (buf.length === 0) return Promise.resolve(buf);
    return new Promise((resolve, reject) => {
      fs.read(this.fd, buf, 0, buf.length, position, (err, n) => (err ? reject(err) : resolve(buf.subarray(0, n))));
    });
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
