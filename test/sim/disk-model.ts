// A disk model for the seeded simulation: files with a page cache. Writes land in
// the cache at once; sync() makes them durable; a crash keeps the durable bytes
// and, for a power loss, a random subset of unsynced writes, some torn at 512-byte
// sector boundaries. Every asynchronous completion is ordered by the seeded
// scheduler, so one seed is one exact schedule.
import type { Store, StoreFile } from '../../src/journal/store.js';
import type { FollowingWrites } from '../../src/store/store.js';
import type { FollowingWrite } from '../../src/journal/disk.js';
import type { Extent, ZeroOptions } from '../../src/export/backend.js';
import type { Disk } from '../../src/journal/write-path.js';

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Completions wait here until the simulation lets them through, in seeded order. */
export class Scheduler {
  private pending: Array<() => void> = [];
  constructor(private readonly rng: Rng) {}

  defer<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push(() => {
        try {
          resolve(fn());
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  get size(): number {
    return this.pending.length;
  }

  /** Completes one pending operation chosen by the seed; false when none is pending. */
  step(): boolean {
    if (this.pending.length === 0) return false;
    const i = this.rng.int(this.pending.length);
    const [op] = this.pending.splice(i, 1);
    op!();
    return true;
  }

  /** Drops everything pending (the process died). */
  clear(): void {
    this.pending = [];
  }
}

interface Change {
  pos: number;
  /** Bytes written (empty for a truncate). */
  data: Buffer;
  /** What was there before, and the length before: to roll the change back. */
  old: Buffer;
  oldLength: number;
}

/**
 * A file in the model. `current` is what processes see (page cache included);
 * unsynced changes keep their before-image, so a power loss can roll them back
 * and replay a random part of them, without copying the file on every sync.
 */
export class MemFile {
  current: Buffer = Buffer.alloc(0);
  unsynced: Change[] = [];

  write(pos: number, data: Buffer): void {
    const end = pos + data.length;
    const oldLength = this.current.length;
    if (end > this.current.length) {
      const grown = Buffer.alloc(end);
      this.current.copy(grown);
      this.current = grown;
    }
    const old = Buffer.from(this.current.subarray(pos, end));
    data.copy(this.current, pos);
    this.unsynced.push({ pos, data: Buffer.from(data), old, oldLength });
  }

  truncate(len: number): void {
    const oldLength = this.current.length;
    const old = Buffer.from(this.current.subarray(Math.min(len, oldLength)));
    const t = Buffer.alloc(len);
    this.current.copy(t, 0, 0, Math.min(len, oldLength));
    this.current = t;
    this.unsynced.push({ pos: len, data: Buffer.alloc(0), old, oldLength });
  }

  sync(): void {
    this.unsynced = [];
  }

  /**
   * A sync that begins now: when it ends, the changes made before it began are durable,
   * not those made while it ran (an fdatasync runs while the process writes on; a write
   * that relied on a sync begun before it would be lost by a power loss).
   */
  syncBegun(): () => void {
    const last = this.unsynced[this.unsynced.length - 1];
    return () => {
      const i = last ? this.unsynced.indexOf(last) : -1;
      if (i >= 0) this.unsynced = this.unsynced.slice(i + 1);
    };
  }

  /** What the disk holds after the crash. */
  crash(rng: Rng, powerLoss: boolean): void {
    if (!powerLoss) {
      this.sync(); // the page cache outlives the process
      return;
    }
    const changes = this.unsynced;
    // Roll back to the durable image.
    for (let i = changes.length - 1; i >= 0; i--) {
      const c = changes[i]!;
      if (c.oldLength !== this.current.length) {
        const img = Buffer.alloc(c.oldLength);
        this.current.copy(img, 0, 0, Math.min(c.oldLength, this.current.length));
        this.current = img;
      }
      c.old.copy(this.current, c.pos);
    }
    this.unsynced = [];
    // Replay a random part of what was in the cache: whole, torn at sectors, or lost.
    for (const c of changes) {
      if (c.data.length === 0) {
        if (rng.chance(0.5)) this.truncate(c.pos);
        continue;
      }
      const r = rng.next();
      if (r < 0.4) continue;
      const sectors = Math.ceil(c.data.length / 512);
      for (let s = 0; s < sectors; s++) {
        if (r < 0.7 && rng.chance(0.5)) continue;
        const from = s * 512;
        this.write(c.pos + from, c.data.subarray(from, Math.min(c.data.length, from + 512)));
      }
    }
    this.unsynced = [];
  }
}

/** A directory of MemFiles; creations and removals are durable only after syncDir. */
export class MemStore implements Store {
  files = new Map<string, MemFile>();
  private durableNames = new Set<string>();
  full = false;
  /** Files whose content is counted against `capacity` when set. */
  capacity = Infinity;

  /**
   * `directAppends`: as the real store's (src/journal/store.ts), an append at a file's
   * end is written padded with zeros to a 4 KiB boundary (the real store pads only large
   * ones, those it writes O_DIRECT; here every one larger than a segment's header, so
   * recovery meets the zeros after every kind of crash), and a handle's size is the end
   * of what it wrote.
   */
  constructor(readonly sched: Scheduler, readonly opts: { directAppends?: boolean } = {}) {}

  list(): string[] {
    return [...this.files.keys()].sort();
  }

  open(name: string): StoreFile {
    const f = this.files.get(name);
    if (!f) throw Object.assign(new Error(`ENOENT ${name}`), { code: 'ENOENT' });
    return new MemHandle(name, f, this);
  }

  create(name: string): StoreFile {
    const f = new MemFile();
    this.files.set(name, f);
    return new MemHandle(name, f, this);
  }

  private removed = new Map<string, MemFile>();

  remove(name: string): void {
    const f = this.files.get(name);
    if (f) this.removed.set(name, f);
    this.files.delete(name);
  }

  /**
   * Renames not yet made durable by a syncDir, in order. A power loss keeps each or
   * undoes it as a whole (a rename is atomic: the file has one of its two names, never
   * both nor neither), newest first, so a chain of renames of one file is undone from
   * its end only. (Until 2026-12-05 a rename was a create and a remove, each kept or lost
   * apart: a power loss could leave a file under both names, or under neither.)
   */
  private renames: Array<{ n: number; from: string; to: string; file: MemFile; replaced: MemFile | undefined }> = [];
  private renameCount = 0;

  rename(from: string, to: string): void {
    const f = this.files.get(from);
    if (!f) throw Object.assign(new Error(`ENOENT ${from}`), { code: 'ENOENT' });
    this.renames.push({ n: ++this.renameCount, from, to, file: f, replaced: this.files.get(to) });
    this.files.delete(from);
    this.files.set(to, f);
  }

  replace(name: string, data: Buffer): Promise<void> {
    const copy = Buffer.from(data);
    return this.sched.defer(() => {
      if (this.full) throw Object.assign(new Error('ENOSPC: disk full'), { code: 'ENOSPC' });
      const f = new MemFile();
      f.write(0, copy);
      f.sync();
      const old = this.files.get(name);
      if (old) this.removed.delete(name);
      this.files.set(name, f);
      this.durableNames.add(name);
    });
  }

  syncDir(): Promise<void> {
    // What the directory holds now becomes durable: the names in it, and the removal of
    // names already gone. A name made durable after this call (a `replace` that
    // completed meanwhile) stays durable: an older sync cannot undo a newer one.
    const names = new Set(this.files.keys());
    const gone = [...this.durableNames].filter((n) => !names.has(n));
    const renamed = this.renameCount;
    return this.sched.defer(() => {
      for (const n of names) if (this.files.has(n)) this.durableNames.add(n);
      for (const n of gone) if (!this.files.has(n)) this.durableNames.delete(n);
      this.renames = this.renames.filter((r) => r.n > renamed);
    });
  }

  bytes(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.current.length;
    return n;
  }

  crash(rng: Rng, powerLoss: boolean): void {
    const removed = this.removed;
    this.removed = new Map();
    const renames = this.renames;
    this.renames = [];
    if (powerLoss) {
      // Renames first, each kept or undone whole (newest first; one whose file has moved on since is kept).
      for (const r of [...renames].reverse()) {
        if (this.files.get(r.to) === r.file && rng.chance(0.5)) {
          if (r.replaced) this.files.set(r.to, r.replaced);
          else this.files.delete(r.to);
          this.files.set(r.from, r.file);
        }
      }
      // (A name a rename gave or took was settled just above.)
      const renamed = new Set(renames.flatMap((r) => [r.from, r.to]));
      // Names created since the last syncDir may vanish; removed ones may come back.
      for (const name of [...this.files.keys()]) {
        if (!this.durableNames.has(name) && !renamed.has(name) && rng.chance(0.5)) this.files.delete(name);
      }
      for (const [name, f] of removed) {
        if (this.durableNames.has(name) && !this.files.has(name) && ![...this.files.values()].includes(f) && rng.chance(0.5)) this.files.set(name, f);
      }
    }
    for (const f of this.files.values()) f.crash(rng, powerLoss);
    this.durableNames = new Set(this.files.keys());
  }
}

/** The block a padded append ends on (DIRECT_BLOCK_BYTES in src/limits/limits.ts). */
const PAD_BLOCK = 4096;
/**
 * The smallest append padded: the real store pads appends of 256 KiB or more
 * (DIRECT_APPEND_MIN_BYTES), never a new segment's header alone; the simulation's
 * records are small, so it pads anything larger than a header (a header alone never).
 */
const SIM_DIRECT_MIN = 65;

class MemHandle implements StoreFile {
  /** The end of what this handle wrote when a padded append left the file longer (null: the file's length). */
  private logical: number | null = null;
  /** Where this handle's last padded append ended, zeros included. */
  private padEnd = -1;

  constructor(readonly name: string, private readonly f: MemFile, private readonly store: MemStore) {}

  size(): number {
    return this.logical ?? this.f.current.length;
  }

  /** `data` written at `position`; padded with zeros to a block's end when it is an append of a directAppends store. */
  private put(position: number, data: Buffer): void {
    const before = this.size();
    const end = position + data.length;
    if (this.store.opts.directAppends && position === before && data.length >= SIM_DIRECT_MIN && end % PAD_BLOCK !== 0) {
      this.f.write(position, Buffer.concat([data, Buffer.alloc(PAD_BLOCK - (end % PAD_BLOCK))]));
      this.padEnd = end + PAD_BLOCK - (end % PAD_BLOCK);
    } else {
      this.f.write(position, data);
    }
    this.grew(before, end);
  }

  /** After a write ending at `end` to a file `before` long (this handle's size): the handle's size is at least `end`. */
  private grew(before: number, end: number): void {
    const logical = Math.max(before, end);
    this.logical = logical === this.f.current.length ? null : logical;
  }

  appendSync(parts: Buffer[]): void {
    if (this.store.full) throw Object.assign(new Error('ENOSPC: disk full'), { code: 'ENOSPC' });
    const at = this.size();
    const data = Buffer.concat(parts);
    this.f.write(at, data);
    this.grew(at, at + data.length);
  }

  writev(position: number, parts: Buffer[]): Promise<void> {
    // (The bytes are taken when the write runs, as the thread pool's writev takes them: a
    // buffer given back or changed before the write's promise settles shows in the file.)
    return this.store.sched.defer(() => {
      const data = Buffer.concat(parts);
      if (this.store.full && position + data.length > this.f.current.length) {
        throw Object.assign(new Error('ENOSPC: disk full'), { code: 'ENOSPC' });
      }
      this.put(position, data);
    });
  }

  /**
   * writev, then the following writes to a MemDisk (found by its `fd`), one operation of
   * the schedule each: a crash between them (the scheduler cleared) leaves the record
   * written and a prefix of the following writes done, as kill -9 mid-job does. Each
   * next operation is queued from inside the one before, never from a continuation, so
   * nothing of a dead process's job can run in the next life.
   */
  writevThen(position: number, parts: Buffer[], after: FollowingWrites): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const errs: number[] = [];
      const next = (i: number): void => {
        if (i === after.bufs.length) return resolve(errs);
        this.store.sched.defer(() => {
          errs.push(MemDisk.writeFollowing(after.fd, after.bufs[i]!, after.positions[i]!));
          next(i + 1);
        }).catch(reject);
      };
      this.store.sched.defer(() => {
        const data = Buffer.concat(parts);
        if (this.store.full && position + data.length > this.f.current.length) {
          throw Object.assign(new Error('ENOSPC: disk full'), { code: 'ENOSPC' });
        }
        this.put(position, data);
        next(0);
      }).catch(reject);
    });
  }

  writeSync(position: number, data: Buffer): void {
    if (this.store.full && position + data.length > this.f.current.length) {
      throw Object.assign(new Error('ENOSPC: disk full'), { code: 'ENOSPC' });
    }
    const before = this.size();
    this.f.write(position, data);
    this.grew(before, position + data.length);
  }

  read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    // (Up to the end of what was written, as the real store reads: not into a padded append's zeros.)
    const source = this.f.current.subarray(position, Math.min(position + length, this.size()));
    if (into) {
      source.copy(into);
      return this.store.sched.defer(() => into.subarray(0, source.length));
    }
    const snapshot = Buffer.from(source);
    return this.store.sched.defer(() => snapshot);
  }

  sync(): Promise<void> {
    return this.store.sched.defer(this.f.syncBegun());
  }

  truncateSync(length: number): void {
    this.f.truncate(length);
    this.logical = null;
  }

  /** A padded append's zeros are cut at a clean close, as the real store cuts them (while the file ends at them). */
  close(): void {
    if (this.logical !== null && this.f.current.length === this.padEnd) this.f.truncate(this.logical);
    this.logical = null;
  }
}

/** The block size of the simulated volume's allocation map. */
const SIM_BLOCK = 4096;

/** The volume: a MemFile of fixed size behind the Disk interface. */
export class MemDisk implements Disk {
  readonly name = 'sim';
  readonly readOnly = false;
  readonly description = 'simulated volume';
  file = new MemFile();
  full = false;
  /** Its writes may follow their journal records in the records' job (`following`). */
  follows = false;
  /** Disk.writeInOrder, once `takesRunsInOrder` gave it (else absent: the apply writes one record at a time). */
  writeInOrder?: (offsets: number[], data: Buffer[]) => Promise<void>;
  /** (Weak: a thousand seeds' disks must not stay in memory for their descriptor numbers.) */
  private static readonly byFd = new Map<number, WeakRef<MemDisk>>();
  private static nextFd = 1_000_000;
  /** Following writes done, over all disks (the journal simulation reports them). */
  static followed = 0;
  private readonly fd = MemDisk.nextFd++;

  constructor(private bytes: number, private readonly sched: Scheduler) {
    this.file.current = Buffer.alloc(bytes);
  }

  get size(): number {
    return this.bytes;
  }

  /** A grown volume: the new part reads zeros; made durable with what was written before (an fsync). */
  async extend(size: number): Promise<void> {
    await this.sched.defer(() => {
      if (this.file.current.length < size) this.file.truncate(size);
    });
    await this.sched.defer(this.file.syncBegun());
  }

  setSize(size: number): void {
    if (size < this.bytes || this.file.current.length < size) throw new Error(`simulation: disk size ${size} without room made (${this.bytes} now)`);
    this.bytes = size;
  }

  /** A write another file's job does after its own (Disk.following), when `follows`. */
  following(offset: number, data: Buffer): FollowingWrite | null {
    if (!this.follows) return null;
    MemDisk.byFd.set(this.fd, new WeakRef(this));
    return { fd: this.fd, data, position: offset, failure: (errno) => Object.assign(new Error(`errno ${errno}`), { code: 'ENOSPC' }), ended: () => undefined };
  }

  /**
   * Takes a run of writes in order (Disk.writeInOrder, as the volume's thread-pool jobs
   * do them, one after the other): three writes a step, so a crash can cut a run after
   * any step and a disk that fills part-way fails it with the steps before it written.
   */
  takesRunsInOrder(): this {
    this.writeInOrder = async (offsets, data) => {
      const copies = data.map((d) => Buffer.from(d));
      for (let i = 0; i < copies.length; i += 3) {
        await this.sched.defer(() => {
          if (this.full) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
          for (let k = i; k < Math.min(i + 3, copies.length); k++) this.file.write(offsets[k]!, copies[k]!);
        });
      }
    };
    return this;
  }

  /** One following write (MemHandle.writevThen): 0, or 28 (ENOSPC) on a full disk. */
  static writeFollowing(fd: number, data: Buffer, position: number): number {
    const disk = MemDisk.byFd.get(fd)?.deref();
    if (!disk) throw new Error(`simulation: no disk behind descriptor ${fd}`);
    MemDisk.followed++;
    if (disk.full) return 28;
    disk.file.write(position, Buffer.from(data));
    return 0;
  }

  read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    return this.sched.defer(() => {
      this.file.current.copy(into, at, offset, offset + length);
    });
  }

  write(offset: number, data: Buffer): Promise<void> {
    const copy = Buffer.from(data);
    return this.sched.defer(() => {
      if (this.full) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
      this.file.write(offset, copy);
    });
  }

  writeZeroes(offset: number, length: number, _opts: ZeroOptions): Promise<void> {
    return this.sched.defer(() => this.file.write(offset, Buffer.alloc(length)));
  }

  trim(offset: number, length: number): Promise<void> {
    return this.punch(offset, length).then(() => undefined);
  }

  punch(offset: number, length: number): Promise<boolean> {
    return this.sched.defer(() => {
      this.file.write(offset, Buffer.alloc(length));
      return true;
    });
  }

  flush(): Promise<void> {
    return this.sched.defer(this.file.syncBegun());
  }

  cache(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * The allocation map as a file system might report it: a 4 KiB block of zeros is a
   * hole, except every seventh (a file system may call zeros data; both must be right).
   */
  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    return this.sched.defer(() => {
      const out: Extent[] = [];
      const end = offset + length;
      for (let at = offset; at < end;) {
        const next = Math.min(end, (Math.floor(at / SIM_BLOCK) + 1) * SIM_BLOCK);
        const block = this.file.current.subarray(at, next);
        const hole = Math.floor(at / SIM_BLOCK) % 7 !== 3 && block.every((b) => b === 0);
        const last = out[out.length - 1];
        if (last && last.hole === hole) last.length += next - at;
        else if (out.length === max) break;
        else out.push({ length: next - at, hole });
        at = next;
      }
      return out;
    });
  }

  crash(rng: Rng, powerLoss: boolean): void {
    this.file.crash(rng, powerLoss);
    if (this.file.current.length < this.size) {
      const g = Buffer.alloc(this.size);
      this.file.current.copy(g);
      this.file.current = g;
    }
  }
}

/** Lets every pending promise reaction run. */
export async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/**
 * Runs simulated I/O (`step` completes one operation, false when none is pending)
 * until `p` settles; calls `fail` on a deadlock (p waits and nothing can complete).
 */
export async function settleOn<T>(p: Promise<T>, step: () => boolean, fail: (msg: string) => never): Promise<T> {
  const st: { state: 'pending' | 'ok' | 'err'; value?: T; error?: unknown } = { state: 'pending' };
  p.then((v) => { st.state = 'ok'; st.value = v; }, (e: unknown) => { st.state = 'err'; st.error = e; });
  for (let i = 0; i < 100000; i++) {
    await flushMicrotasks();
    if (st.state !== 'pending') break;
    if (!step()) {
      // (A long chain of awaits may take more than one flush to reach its next operation.)
      let moved = false;
      for (let k = 0; k < 10 && st.state === 'pending' && !moved; k++) {
        await flushMicrotasks();
        moved = st.state === 'pending' && step();
      }
      if (st.state === 'pending' && !moved) fail('deadlock: an operation waits and nothing can complete');
    }
  }
  if (st.state === 'pending') fail('an operation did not complete in 100000 steps of the simulation');
  if (st.state === 'err') throw st.error;
  return st.value as T;
}

const ASYNC_METHODS = new Set(['read', 'write', 'writev', 'writevThen', 'sync', 'flush', 'replace', 'syncDir', 'writeZeroes', 'punch', 'trim', 'cache',
  'extents', 'extend']);

/**
 * What one life of a process sees of a store or disk. A process killed by the
 * simulation stops at once; its code may still be mid-chain in this JavaScript
 * process, but after the crash nothing it does reaches the disk: its I/O never
 * completes and its synchronous calls fail. (Without this, a dead primary's last
 * steps could land after the restart: something no real crash can do.)
 */
export function fence<T extends object>(target: T, alive: () => boolean): T {
  return new Proxy(target, {
    get(t, p) {
      const v = Reflect.get(t, p, t) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]): unknown => {
        if (!alive()) {
          if (ASYNC_METHODS.has(String(p))) return new Promise(() => undefined);
          throw new Error('the process is dead (simulated crash)');
        }
        const out = (v as (...a: unknown[]) => unknown).apply(t, args);
        // Files opened in this life die with it too.
        return (p === 'open' || p === 'create') && out !== null && typeof out === 'object' ? fence(out as object, alive) : out;
      };
    },
  });
}
