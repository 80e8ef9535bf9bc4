// A local volume: positional I/O on a file or block device, durability through
// fdatasync, sparse files honoured (punch hole, zero range, SEEK_DATA/SEEK_HOLE).
import fs from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { WriteBatcher } from './write-batch.js';
import { assert } from '../invariants/assert.js';
import { DiskError, type Extent, type ExportBackend, type ZeroOptions, type Capabilities, diskCapabilities } from '../export/backend.js';
import { GroupSync } from './group-sync.js';
import { deviceIdentity, deviceWrites, type DeviceWrites } from './device-identity.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, POSIX_FADV_WILLNEED,
  SEEK_DATA, SEEK_HOLE, nativeFs,
} from './native.js';
import { formatBytes } from '../units/units.js';
import { IN_ORDER_WRITES_PER_JOB, MIN_VOLUME_BYTES, WRITE_BATCH_MAX_BYTES } from '../limits/limits.js';

export interface VolumeOptions {
  name: string;
  path: string;
  /** Required when the file does not exist yet. */
  size?: number | undefined;
  /**
   * A grow to this size was under way (src/journal/grow.ts): a file smaller is extended
   * to it. Without it, a file smaller than `size` is refused (a volume grows at a reload).
   */
  growTo?: number | undefined;
  readOnly: boolean;
  description?: string;
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

export class Volume implements ExportBackend {
  readonly name: string;
  readonly path: string;
  /** Bytes; grows (never shrinks) at a reload or start that raises `size:` (extend, setSize). */
  get size(): number { return this.currentSize; }
  private currentSize: number;
  /** The size the file had before this open extended it to the configured one (null: not extended). */
  readonly grownFrom: number | null;
  /** Changes with the volume's role (promote makes a replica writable, demote the reverse). */
  readOnly: boolean;
  /** What hosts are told the disk is (a reload may change it: applyVolumeKeys). */
  description: string;
  readonly isBlockDevice: boolean;
  /** This open made the file (it did not exist): a daemon whose start fails removes it again, if unwritten. */
  readonly created: boolean;
  /** Something was written, zeroed or punched through this volume (then it is never removed). */
  written = false;
  /** The file as this open found it, before anything was written (src/volume/file-identity.ts: was it written while stopped?). */
  readonly statAtOpen: fs.BigIntStats;
  /** A block device's disk as this open found it in sysfs (src/volume/device-identity.ts; null: a file, or none named). */
  readonly diskAtOpen: string | null;
  /** The file as a clean close left it, synced (null: open, or the close could not sync it): a clean stop writes its times down. */
  statAtClose: fs.BigIntStats | null = null;
  /** A block device: what the kernel counted written to it as this open found it, and as a clean close left it (device-identity.ts). */
  readonly writesAtOpen: DeviceWrites | null;
  writesAtClose: DeviceWrites | null = null;
  private fd: number;
  private readonly syncer: GroupSync;
  /** Set when fdatasync failed: the kernel may have dropped dirty pages, so nothing is trusted. */
  private failure: string | null = null;
  private canPunch = true;
  private canZeroRange = true;
  private canSeekData = true;
  /** RWF_NOWAIT fast paths; switched off for good the first time the kernel says unsupported. */
  private nowaitRead = process.env.OFFSITE_NOWAIT !== '0';
  private nowaitWrite = process.env.OFFSITE_NOWAIT !== '0';

  capabilities(): Capabilities {
    return diskCapabilities(this.readOnly);
  }

  private constructor(opts: VolumeOptions, fd: number, size: number, isBlockDevice: boolean, created: boolean, grownFrom: number | null,
    statAtOpen: fs.BigIntStats) {
    this.name = opts.name;
    this.statAtOpen = statAtOpen;
    this.diskAtOpen = deviceIdentity(statAtOpen);
    this.writesAtOpen = deviceWrites(statAtOpen);
    this.created = created;
    this.path = opts.path;
    this.currentSize = size;
    this.grownFrom = grownFrom;
    this.readOnly = opts.readOnly;
    this.description = opts.description ?? `offsite volume ${opts.name}`;
    this.isBlockDevice = isBlockDevice;
    this.fd = fd;
    this.syncer = new GroupSync(() => this.fdatasync());
    if (isBlockDevice) this.canSeekData = false;
  }

  /**
   * Opens (creating sparse if missing) and locks the volume. Errors read as operator
   * advice. A file this call created is created 0600 (host data is this user's
   * alone) and removed again if the open fails; an existing file or block device
   * keeps the mode its owner gave it.
   */
  static open(opts: VolumeOptions): Volume {
    let fd: number;
    let created = false;
    try {
      fd = fs.openSync(opts.path, 'r+');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'ENOENT') {
        throw new Error(`volume ${opts.name}: cannot open ${opts.path}: ${err.message}`);
      }
      if (opts.size === undefined) {
        throw new Error(`volume ${opts.name}: ${opts.path} does not exist and no size is configured to create it`);
      }
      fd = fs.openSync(opts.path, 'wx+', 0o600);
      created = true;
    }
    const fail = (message: string, remove = created): never => {
      fs.closeSync(fd);
      if (remove) fs.rmSync(opts.path, { force: true });
      throw new Error(message);
    };
    if (created) {
      try {
        fs.ftruncateSync(fd, opts.size);
        fs.fsyncSync(fd);
      } catch (e) {
        fail(`volume ${opts.name}: cannot create ${opts.path} of ${formatBytes(opts.size!)}: ${(e as Error).message}`);
      }
    }
    const st = fs.fstatSync(fd);
    const statAtOpen = fs.fstatSync(fd, { bigint: true });
    const isBlockDevice = st.isBlockDevice();
    if (!isBlockDevice && !st.isFile()) fail(`volume ${opts.name}: ${opts.path} is neither a regular file nor a block device`);
    // (Locked by another process: even one this call created is then that process's to keep.)
    if (!nativeFs.lock(fd)) fail(`volume ${opts.name}: ${opts.path} is in use by another process (locked)`, false);
    let actual = nativeFs.deviceSize(fd);
    if (actual < 0) fail(`volume ${opts.name}: cannot read the size of ${opts.path}`);
    let grownFrom: number | null = null;
    const growTo = opts.growTo;
    if (!created && growTo !== undefined && actual < growTo && !isBlockDevice) {
      // A grow a crash cut (docs/CONFIG.md, "Growing a volume"): the file is extended, the new part reads zeros.
      try {
        fs.ftruncateSync(fd, growTo);
        fs.fsyncSync(fd);
      } catch (e) {
        fail(`volume ${opts.name}: cannot grow ${opts.path} from ${formatBytes(actual)} to ${formatBytes(growTo)}: ${(e as Error).message}`);
      }
      grownFrom = actual;
      actual = growTo;
    }
    if (!created && opts.size !== undefined && actual !== opts.size) {
      const advice = actual > opts.size
        ? 'a volume does not shrink: fix size: or remove it to use the existing size'
        : isBlockDevice ? 'grow the device first (lvextend, ...), or fix size:'
        : 'fix size:, or to grow the volume, start it at the size it has and raise size: at a reload (docs/CONFIG.md, "Growing a volume")';
      fail(`volume ${opts.name}: ${opts.path} is ${formatBytes(actual)} (${actual} bytes) but the config says ` +
        `${formatBytes(opts.size)} (${opts.size} bytes); ${advice}`);
    }
    if (actual < MIN_VOLUME_BYTES) {
      fail(`volume ${opts.name}: ${opts.path} is ${actual} bytes; a volume must be at least ${formatBytes(MIN_VOLUME_BYTES)} (one block)`);
    }
    if (actual > Number.MAX_SAFE_INTEGER) fail(`volume ${opts.name}: ${actual} bytes is larger than Offsite supports (2^53 - 1)`);
    return new Volume(opts, fd, actual, isBlockDevice, created, grownFrom, statAtOpen);
  }

  /**
   * Makes room for `size` bytes (docs/CONFIG.md, "Growing a volume"): a file is extended
   * (sparse, the new part reads zeros) and its new length made durable; a block device
   * must have been grown by its owner already. The size the volume answers with changes
   * at setSize, which the caller calls in one turn with what must grow with it.
   */
  async extend(size: number): Promise<void> {
    this.check();
    assert(Number.isSafeInteger(size) && size >= this.currentSize, () => `volume ${this.name}: extend to ${size} from ${this.currentSize}`);
    if (this.isBlockDevice) {
      const why = this.cannotGrow(size);
      if (why !== null) throw new Error(why);
      return;
    }
    if (nativeFs.deviceSize(this.fd) < size) {
      await this.counted(() => new Promise<void>((resolve, reject) => fs.ftruncate(this.fd, size, (e) => (e ? reject(e) : resolve()))));
    }
    await this.counted(() => new Promise<void>((resolve, reject) => fs.fsync(this.fd, (e) => (e ? reject(e) : resolve()))));
  }

  /** Why a grow to `size` cannot be begun (a block device not grown yet), or null. */
  cannotGrow(size: number): string | null {
    this.check();
    const actual = nativeFs.deviceSize(this.fd);
    if (!this.isBlockDevice || actual >= size) return null;
    return `volume ${this.name}: ${this.path} is ${formatBytes(actual)}; grow the device to ${formatBytes(size)} first (lvextend, ...)`;
  }

  /** The volume answers with `size` bytes from now on: extend(size) made room for them. */
  setSize(size: number): void {
    assert(size >= this.currentSize && (this.isBlockDevice || nativeFs.deviceSize(this.fd) >= size),
      () => `volume ${this.name}: size ${size} without room made for it (${this.currentSize} now)`);
    this.currentSize = size;
  }

  get syncCount(): number {
    return this.syncer.syncs;
  }

  read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.check();
    let first = 0;
    if (this.nowaitRead) {
      // Page-cache hit: done here, no thread-pool round trip. Miss: the pool takes the rest.
      const n = nativeFs.preadNoWait(this.fd, into, at, length, offset);
      if (n === length) return Promise.resolve();
      if (n === -2) this.nowaitRead = false;
      else if (n > 0) first = n;
    }
    this.poolOps++;
    return new Promise<void>((resolve, reject) => {
      const step = (done: number): void => {
        fs.read(this.fd, into, at + done, length - done, offset + done, (err, n) => {
          if (err) return this.poolOpEnded(reject, diskError(err, `read ${this.name}`));
          if (n === 0) {
            into.fill(0, at + done, at + length); // past the end of a short file
            return this.poolOpEnded(resolve);
          }
          if (done + n < length) return step(done + n);
          this.poolOpEnded(resolve);
        });
      };
      step(first);
    });
  }

  /**
   * Reads, seeks, allocations and read-ahead hints in the thread pool, begun and not
   * ended: close waits for them, as for writes. A descriptor closed under one would be
   * read by it after its number was given to another file (another volume's, opened by
   * a reload): a straggler read of a volume let go must not see that file's bytes.
   */
  private poolOps = 0;
  private poolOpsIdle: Array<() => void> = [];

  private poolOpEnded<T>(settle: (x: T) => void, x?: T): void {
    assert(this.poolOps > 0, () => `volume ${this.name}: a thread-pool operation ended that never began`);
    if (--this.poolOps === 0) for (const w of this.poolOpsIdle.splice(0)) w();
    settle(x as T);
  }

  /** Runs a thread-pool operation counted in poolOps. */
  private counted<T>(op: () => Promise<T>): Promise<T> {
    this.poolOps++;
    return op().then((x) => {
      this.poolOpEnded(() => undefined);
      return x;
    }, (e: unknown) => {
      this.poolOpEnded(() => undefined);
      throw e;
    });
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.check();
    this.written = true;
    let first = 0;
    if (this.nowaitWrite) {
      const n = nativeFs.pwriteNoWait(this.fd, data, 0, data.length, offset);
      if (n === data.length) return fua ? this.flush() : Promise.resolve();
      if (n === -2) this.nowaitWrite = false;
      else if (n > 0) first = n;
    }
    const p = nativeFs.pwriteBatch
      ? this.writes.write(first === 0 ? data : data.subarray(first), offset + first)
      : this.counted(() => new Promise<void>((resolve, reject) => {
      const step = (done: number): void => {
        fs.write(this.fd, data, done, data.length - done, offset + done, (err, n) => {
          if (err) return reject(diskError(err, `write ${this.name}`));
          if (done + n < data.length) return step(done + n);
          resolve();
        });
      };
      step(first);
    }));
    return fua ? p.then(() => this.flush()) : p;
  }

  /** Disk.writeInOrder: each whole, in order, IN_ORDER_WRITES_PER_JOB (or WRITE_BATCH_MAX_BYTES) to a job, the jobs one after the other. */
  async writeInOrder(offsets: number[], data: Buffer[]): Promise<void> {
    assert(offsets.length === data.length, () => `volume ${this.name}: ${offsets.length} offsets for ${data.length} writes`);
    this.check();
    this.written = true;
    // (One thread-pool operation for the whole run: close waits for its last job, not only
    // for the one running when it began, before the descriptor goes.)
    this.poolOps++;
    try {
      if (!nativeFs.pwriteBatch) {
        for (let i = 0; i < data.length; i++) await this.write(offsets[i]!, data[i]!, false);
        return;
      }
      for (let i = 0; i < data.length;) {
        let j = i;
        let bytes = 0;
        const fits = (k: number): boolean => k - i < IN_ORDER_WRITES_PER_JOB && bytes + data[k]!.length <= WRITE_BATCH_MAX_BYTES;
        while (j < data.length && (j === i || fits(j))) bytes += data[j++]!.length;
        if (i > 0) this.check();
        const errs = await nativeFs.pwriteBatch(this.fd, data.slice(i, j), offsets.slice(i, j));
        assert(errs.length === j - i, () => `volume ${this.name}: ${errs.length} results for ${j - i} writes`);
        const failed = errs.find((e) => e !== 0);
        if (failed !== undefined) throw this.writeFailure(failed);
        i = j;
      }
    } finally {
      this.poolOpEnded(() => undefined);
    }
  }

  /**
   * A write another file's thread-pool job does after its own (the journal's append,
   * src/journal/volume-writes.ts): checked and counted as `write` does it. Null without
   * the addon's pwritevThen.
   */
  following(offset: number, data: Buffer): { fd: number; data: Buffer; position: number; failure: (errno: number) => Error; ended: () => void } | null {
    if (!nativeFs.pwritevThen) return null;
    this.check();
    this.written = true;
    this.followingInFlight++;
    let ended = false;
    return {
      fd: this.fd, data, position: offset, failure: this.writeFailure,
      ended: () => {
        assert(!ended, () => `volume ${this.name}: a following write ended twice`);
        ended = true;
        if (--this.followingInFlight === 0) for (const w of this.followingIdle.splice(0)) w();
      },
    };
  }

  /** Following writes handed out and not yet ended (close waits for them: the descriptor is in them). */
  private followingInFlight = 0;
  private followingIdle: Array<() => void> = [];

  private readonly writeFailure = (errno: number): Error =>
    diskError(Object.assign(new Error(`${getSystemErrorName(-errno)}`), { code: getSystemErrorName(-errno), errno: -errno }), `write ${this.name}`);

  /** Writes that go to the thread pool, several to a job under a queue of them (write-batch.ts). */
  private readonly writes = new WriteBatcher((bufs, positions) => nativeFs.pwriteBatch!(this.fd, bufs, positions), this.writeFailure);

  async writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    this.check();
    this.written = true;
    if (length === 0) return;
    if (opts.mayTrim && this.canPunch) {
      if (await this.tryFallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)) {
        return opts.fua ? this.flush() : undefined;
      }
      this.canPunch = false;
    }
    if (this.canZeroRange) {
      if (await this.tryFallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length)) {
        return opts.fua ? this.flush() : undefined;
      }
      this.canZeroRange = false;
    }
    if (opts.fast) throw new DiskError('ENOTSUP', `${this.name}: zeroing is not fast on ${this.path}`);
    for (let done = 0; done < length; done += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      await this.write(offset + done, ZERO_CHUNK.subarray(0, n), false);
    }
    if (opts.fua) await this.flush();
  }

  /** Trim deallocates where the storage can; it is advisory, so elsewhere it does nothing. */
  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.punch(offset, length);
    if (fua) await this.flush();
  }

  /** Deallocates the range if the storage can; true when it now reads as zeros. */
  async punch(offset: number, length: number): Promise<boolean> {
    this.check();
    this.written = true;
    if (length === 0) return true;
    if (!this.canPunch) return false;
    if (await this.tryFallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)) return true;
    this.canPunch = false;
    return false;
  }

  flush(): Promise<void> {
    this.check();
    return this.syncer.sync();
  }

  async cache(offset: number, length: number): Promise<void> {
    this.check();
    await this.counted(() => nativeFs.fadvise(this.fd, offset, length, POSIX_FADV_WILLNEED)).catch(() => undefined);
  }

  async extents(offset: number, length: number, max: number): Promise<Extent[]> {
    this.check();
    const end = offset + length;
    if (!this.canSeekData) return [{ length, hole: false }];
    const out: Extent[] = [];
    const push = (len: number, hole: boolean): void => {
      const last = out[out.length - 1];
      if (last && last.hole === hole) last.length += len;
      else out.push({ length: len, hole });
    };
    let pos = offset;
    try {
      while (pos < end && out.length < max) {
        const data = await this.counted(() => nativeFs.seek(this.fd, pos, SEEK_DATA));
        if (data < 0 || data >= end) {
          push(end - pos, true);
          break;
        }
        if (data > pos) {
          push(data - pos, true);
          pos = data;
          continue;
        }
        const hole = Math.min(await this.counted(() => nativeFs.seek(this.fd, pos, SEEK_HOLE)), end);
        push(hole - pos, false);
        pos = hole;
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'EOPNOTSUPP') {
        this.canSeekData = false;
        return [{ length, hole: false }];
      }
      throw diskError(e as NodeJS.ErrnoException, `map ${this.name}`);
    }
    return out;
  }

  /** Syncs and closes. Safe to call twice. */
  async close(): Promise<void> {
    if (this.fd < 0) return;
    // Writes still in the thread pool end first: a closed descriptor's number is reused.
    await this.writes.idle();
    if (this.followingInFlight > 0) await new Promise<void>((resolve) => this.followingIdle.push(resolve));
    if (this.poolOps > 0) await new Promise<void>((resolve) => this.poolOpsIdle.push(resolve));
    await this.syncer.idle();
    let synced = false;
    if (this.failure === null) synced = await this.syncer.sync().then(() => true, () => false);
    // Its times once nothing more is written through it: a clean stop writes them down. (fsync, not the
    // fdatasync of writes: the modification time the note names is made durable with it.)
    if (synced) {
      try {
        fs.fsyncSync(this.fd);
        this.statAtClose = fs.fstatSync(this.fd, { bigint: true });
        // (A block device keeps no time of its writes: the kernel's count of them, once nothing more is written.)
        if (this.isBlockDevice) this.writesAtClose = deviceWrites(this.statAtClose);
      } catch {
        // (No note: the next open takes the file as it is.)
      }
    }
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  private check(): void {
    if (this.failure !== null) throw new DiskError('EIO', this.failure);
    if (this.fd < 0) throw new DiskError('ESHUTDOWN', `volume ${this.name} is closed`);
  }

  private fdatasync(): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.fd, (err) => {
        if (err) {
          this.failure =
            `volume ${this.name}: fdatasync of ${this.path} failed (${err.code ?? err.message}); ` +
            'recent writes may be lost, the volume is offline until the daemon is restarted';
          return reject(new DiskError('EIO', this.failure));
        }
        resolve();
      });
    });
  }

  private async tryFallocate(mode: number, offset: number, length: number): Promise<boolean> {
    try {
      await this.counted(() => nativeFs.fallocate(this.fd, mode, offset, length));
      return true;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EOPNOTSUPP' || err.code === 'ENODEV' || err.code === 'EINVAL') return false;
      throw diskError(err, `fallocate ${this.name}`);
    }
  }
}

function diskError(err: NodeJS.ErrnoException, what: string): DiskError {
  return new DiskError(err.code ?? 'EIO', `${what}: ${err.message}`);
}
