// The activity log (DRBD's word for it): which extents of the volume may hold writes
// that are not yet durable. After a power loss a volume write can survive while its
// journal record (or, in bitmap mode, its bitmap bit) did not; the journal cannot
// know. So before the first write to an extent, the extent is entered here and made
// durable; after the machine restarts (a new boot id), every extent in the log is
// marked for resync. After a kill -9 the page cache survives and the intent ring is
// enough, so the log is only consulted when the boot id changed.
//
// An extent leaves the log once a sync made every write to it durable and newer
// extents need the room (least recently used first).
//
// Two slot files, "activity.0" and "activity.1", written alternately and fdatasync'ed
// (a crash leaves at least the other one whole). Each: magic "OFFSACT1", u32 version 1,
// u32 extent size in KiB, u64 generation, 36 bytes of boot id (ASCII, zero padded),
// u32 count, then count u64 LE extent indexes, then u32 LE CRC32C of all before it.
import { crc32c } from '../checksum/crc32c.js';
import fs from 'node:fs';
import type { Store, StoreFile } from './store.js';
import { magicAndU32, refuseNewer } from '../versioning/format.js';

const MAGIC = Buffer.from('OFFSACT1', 'latin1');
/**
 * A newer release's slot is refused (docs/VERSIONING.md): read as absent, its extents
 * would not be resynced after a power loss.
 */
export const ACTIVITY_FORMAT = magicAndU32('activity log', 'OFFSACT1', 1, [1]);
const HEAD = 8 + 4 + 4 + 8 + 36 + 4;
const FILES = ['activity.0', 'activity.1'];

export interface ActivityLogOptions {
  store: Store;
  extentSize: number;
  /** Most extents in the log at once. */
  slots: number;
  /** This machine's boot (a power loss changes it). */
  bootId?: () => string;
}

export function currentBootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

interface Slot {
  gen: number;
  bootId: string;
  extents: number[];
}

export function encodeActivity(extentSize: number, s: Slot): Buffer {
  const b = Buffer.alloc(HEAD + s.extents.length * 8 + 4);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(extentSize / 1024, 12);
  b.writeBigUInt64LE(BigInt(s.gen), 16);
  b.write(s.bootId.slice(0, 36), 24, 'latin1');
  b.writeUInt32LE(s.extents.length, 60);
  s.extents.forEach((e, i) => b.writeBigUInt64LE(BigInt(e), HEAD + i * 8));
  b.writeUInt32LE(crc32c(b.subarray(0, b.length - 4)), b.length - 4);
  return b;
}

export function decodeActivity(b: Buffer): (Slot & { extentSize: number }) | null {
  if (b.length < HEAD + 4 || !b.subarray(0, 8).equals(MAGIC) || b.readUInt32LE(8) !== 1) return null;
  const count = b.readUInt32LE(60);
  const end = HEAD + count * 8;
  if (b.length < end + 4 || crc32c(b.subarray(0, end)) !== b.readUInt32LE(end)) return null;
  const extents: number[] = [];
  for (let i = 0; i < count; i++) extents.push(Number(b.readBigUInt64LE(HEAD + i * 8)));
  return { extentSize: b.readUInt32LE(12) * 1024, gen: Number(b.readBigUInt64LE(16)), bootId: b.toString('latin1', 24, 60).replace(/\0+$/, ''), extents };
}

export class ActivityLog {
  /** Extent → last use (a counter), in the log on disk or about to be. */
  private readonly active = new Map<number, number>();
  /** Extent → the sync generation after which all its writes are durable. */
  private readonly dirtyUntil = new Map<number, number>();
  /** Extent → volume writes in flight there (never evicted while any is). */
  private readonly inFlight = new Map<number, number>();
  private tick = 0;
  private gen = 0;
  private syncGen = 0;
  private writing: Promise<void> | null = null;
  private pending = new Set<number>();
  private readonly bootId: string;

  private constructor(private readonly opts: ActivityLogOptions) {
    this.bootId = (opts.bootId ?? currentBootId)();
  }

  /**
   * Opens the log. Returns the extents that may hold writes lost to a power loss
   * (non-empty only when the machine restarted since the log was last written).
   */
  static async open(opts: ActivityLogOptions): Promise<{ log: ActivityLog; suspect: Array<{ offset: number; length: number }> }> {
    const log = new ActivityLog(opts);
    let best: (Slot & { extentSize: number }) | null = null;
    for (const name of FILES) {
      if (!opts.store.list().includes(name)) continue;
      const f = opts.store.open(name);
      try {
        // Whole: a log of more than 131072 extents (a large volume between syncs) is over 1 MiB,
        // and a slot read short fails its CRC and would be taken as absent (no extent suspect).
        const b = await f.read(0, f.size());
        refuseNewer(ACTIVITY_FORMAT, b, name);
        const s = decodeActivity(b);
        if (s && (!best || s.gen > best.gen)) best = s;
      } finally {
        f.close();
      }
    }
    const suspect: Array<{ offset: number; length: number }> = [];
    if (best) {
      log.gen = best.gen;
      if (best.bootId !== log.bootId) for (const e of best.extents) suspect.push({ offset: e * best.extentSize, length: best.extentSize });
    }
    // Start empty on this boot: what was suspect goes to the bitmap (the caller syncs it first).
    return { log, suspect };
  }

  /** Writes the (empty) log for this boot; call once the suspect extents are durable in the bitmap. */
  async reset(): Promise<void> {
    this.active.clear();
    this.dirtyUntil.clear();
    await this.persist();
  }

  get size(): number {
    return this.active.size;
  }

  /** More extents are in the log than its slots: only a sync of the volume lets them leave. */
  get overfull(): boolean {
    return this.active.size > this.opts.slots;
  }

  /**
   * Before a volume write to [offset, offset+length): resolves once every extent it
   * touches is durably in the log. Synchronous (undefined) when they all are.
   */
  enter(offset: number, length: number): Promise<void> | undefined {
    const es = this.opts.extentSize;
    const missing: number[] = [];
    for (let e = Math.floor(offset / es); e <= Math.floor((offset + Math.max(1, length) - 1) / es); e++) {
      this.active.set(e, ++this.tick);
      this.inFlight.set(e, (this.inFlight.get(e) ?? 0) + 1);
      if (!this.onDisk.has(e)) {
        this.pending.add(e);
        missing.push(e);
      }
    }
    return missing.length > 0 ? this.ensure(missing) : undefined;
  }

  /** Resolves once every one of `mine` is in a slot on disk (whoever wrote that slot). */
  private async ensure(mine: number[]): Promise<void> {
    while (mine.some((e) => !this.onDisk.has(e))) {
      if (this.writing) {
        await this.writing.catch(() => undefined);
        continue;
      }
      for (const e of mine) if (!this.onDisk.has(e)) this.pending.add(e);
      const batch = [...this.pending];
      this.pending.clear();
      this.writing = this.write(batch).finally(() => (this.writing = null));
      await this.writing;
    }
  }

  /** The volume write that entered [offset, offset+length) ended (or failed). */
  leave(offset: number, length: number): void {
    const es = this.opts.extentSize;
    for (let e = Math.floor(offset / es); e <= Math.floor((offset + Math.max(1, length) - 1) / es); e++) {
      const n = (this.inFlight.get(e) ?? 1) - 1;
      if (n > 0) this.inFlight.set(e, n);
      else this.inFlight.delete(e);
      // Durable after a sync that began after this write ended: two completed syncs from now.
      this.dirtyUntil.set(e, this.syncGen + 2);
    }
  }

  /** A sync of the volume completed: writes before it are durable. */
  synced(): void {
    this.syncGen++;
  }

  private readonly onDisk = new Set<number>();

  private async write(batch: number[]): Promise<void> {
    // Make room: least recently used extents whose writes are all durable leave first.
    const want = new Set([...this.onDisk, ...batch]);
    if (want.size > this.opts.slots) {
      const evictable = [...this.onDisk].filter((e) => !this.inFlight.has(e) && (this.dirtyUntil.get(e) ?? 0) <= this.syncGen && !batch.includes(e))
        .sort((a, b) => (this.active.get(a) ?? 0) - (this.active.get(b) ?? 0));
      for (const e of evictable) {
        if (want.size <= this.opts.slots) break;
        want.delete(e);
      }
      // (If nothing can leave, the log grows past its slots until a sync lets extents go.)
    }
    // Evicted extents stop counting as logged now, before the new slot is written: a
    // write that enters one meanwhile must wait for the next slot, not ride this one.
    for (const e of [...this.onDisk]) {
      if (!want.has(e)) {
        this.onDisk.delete(e);
        if (!this.pending.has(e)) this.active.delete(e);
      }
    }
    try {
      await this.persist([...want]);
    } catch (e) {
      for (const x of batch) this.pending.add(x);
      throw e;
    }
    for (const e of want) this.onDisk.add(e);
  }

  private async persist(extents: number[] = []): Promise<void> {
    this.gen++;
    const name = FILES[this.gen % 2]!;
    const data = encodeActivity(this.opts.extentSize, { gen: this.gen, bootId: this.bootId, extents });
    let f: StoreFile;
    const created = !this.opts.store.list().includes(name);
    f = created ? this.opts.store.create(name) : this.opts.store.open(name);
    try {
      f.writeSync(0, data);
      await f.sync();
    } finally {
      f.close();
    }
    if (created) await this.opts.store.syncDir();
  }
}
