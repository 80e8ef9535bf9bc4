// The dirty-region bitmap: one bit per region (default 64 KiB) of the volume,
// set when the region may differ from the peer and must be resynced.
//
// Memory is fixed by volume size (1 TiB at 64 KiB regions = 2 MiB). On disk it is
// a 4 KiB header and self-checking 4 KiB pages (4092 bytes of bits + CRC32C), so a
// page torn by power loss is detected and treated as all-dirty: never as clean.
// A bit going 0 -> 1 rewrites its page at once (page cache: survives kill -9);
// sync() makes it durable (the write path calls it before FLUSH/FUA replies).
import { crc32c } from '../checksum/crc32c.js';
import type { Store, StoreFile } from './store.js';
import { magicAndU32, refuseNewer } from '../versioning/format.js';
import { assert } from '../invariants/assert.js';

export const BITMAP_FILE = 'dirty.bitmap';
/**
 * A detached peer's own bitmap (docs/PEERS.md): the regions it lacks beyond the
 * volume's bitmap. The same format; the file exists exactly while the peer is detached.
 */
export const PEER_BITMAP_FILE = /^dirty\.[A-Za-z0-9._-]{1,63}\.bitmap$/;
export function peerBitmapFile(peer: string): string {
  return `dirty.${peer}.bitmap`;
}
const MAGIC = Buffer.from('OFFSBMAP', 'latin1');
const VERSION = 1;
/** A newer release's bitmap is refused (docs/VERSIONING.md), never replaced as unusable. */
export const BITMAP_FORMAT = magicAndU32('dirty bitmap', 'OFFSBMAP', VERSION, [VERSION]);
export const PAGE_SIZE = 4096;
const PAGE_BITS_BYTES = PAGE_SIZE - 4;
export const BITS_PER_PAGE = PAGE_BITS_BYTES * 8;
const HEADER_SIZE = 4096;
/** A bitmap being converted to another region size is written under its name and this, then renamed. */
const CONVERTING_SUFFIX = '.converting';

export class DirtyBitmap {
  readonly regionSize: number;
  /** Regions of the volume; more after grow (a volume's size: raised). */
  get regions(): number { return this.regionCount; }
  private regionCount: number;
  private bits: Uint8Array;
  private pages: number;
  private file: StoreFile;
  private dirtyCount = 0;
  private unsynced = false;
  /** Set while the file's creation is not yet durable in its directory. */
  private created: Store | null = null;

  private constructor(file: StoreFile, volumeSize: number, regionSize: number) {
    this.file = file;
    this.regionSize = regionSize;
    this.regionCount = Math.ceil(volumeSize / regionSize);
    this.pages = Math.max(1, Math.ceil(this.regionCount / BITS_PER_PAGE));
    this.bits = new Uint8Array(this.pages * PAGE_BITS_BYTES);
  }

  /**
   * Opens or creates the bitmap. Returns notes for the operator about anything
   * found damaged (damaged pages count as all-dirty).
   */
  static async open(store: Store, volumeSize: number, regionSize: number, name = BITMAP_FILE): Promise<{ bitmap: DirtyBitmap; notes: string[] }> {
    if (regionSize < 4096 || (regionSize & (regionSize - 1)) !== 0) {
      throw new Error(`bitmap region size ${regionSize} must be a power of two of at least 4 KiB`);
    }
    const notes: string[] = [];
    const exists = store.list().includes(name);
    if (exists) {
      const file = store.open(name);
      const header = await file.read(0, HEADER_SIZE);
      try {
        refuseNewer(BITMAP_FORMAT, header, name);
      } catch (e) {
        file.close();
        throw e;
      }
      const check = checkHeader(header, volumeSize, regionSize);
      // (Smaller: the volume grew since, docs/CONFIG.md "Growing a volume"; its new regions are clean.)
      const was = check === null ? volumeSize : grownFrom(header, volumeSize, regionSize);
      if (was !== null) {
        const bm = new DirtyBitmap(file, was, regionSize);
        await bm.load(file, notes, true);
        if (was < volumeSize) await bm.grow(volumeSize);
        return { bitmap: bm, notes };
      }
      const other = otherRegionSize(header, volumeSize);
      if (other !== null) {
        // bitmap_region changed (docs/CONFIG.md): the marks carry over, each to the regions of the new size it touches.
        const old = new DirtyBitmap(file, other.volumeSize, other.regionSize);
        await old.load(file, notes, false);
        file.close();
        const bm = await DirtyBitmap.converted(store, name, old, volumeSize, regionSize);
        notes.push(`dirty bitmap: its region size was ${other.regionSize} bytes and bitmap_region is now ${regionSize}: its ` +
          `${old.count} marked regions carried over as ${bm.count} of the new size, nothing else resynced`);
        return { bitmap: bm, notes };
      }
      file.close();
      notes.push(`dirty bitmap unusable (${check}): every region will be resynced`);
      const bm = DirtyBitmap.fresh(store, volumeSize, regionSize, name);
      bm.markAll();
      return { bitmap: bm, notes };
    }
    return { bitmap: DirtyBitmap.fresh(store, volumeSize, regionSize, name), notes };
  }

  /** Reads the pages (a damaged one reads all marked, and is written so, when `mend`). */
  private async load(file: StoreFile, notes: string[], mend: boolean): Promise<void> {
    for (let p = 0; p < this.pages; p++) {
      const page = await file.read(HEADER_SIZE + p * PAGE_SIZE, PAGE_SIZE);
      if (page.length === 0) continue; // never written: clean
      if (page.length === PAGE_SIZE && crc32c(page.subarray(0, PAGE_BITS_BYTES)) === page.readUInt32LE(PAGE_BITS_BYTES)) {
        this.bits.set(page.subarray(0, PAGE_BITS_BYTES), p * PAGE_BITS_BYTES);
      } else {
        this.bits.fill(0xff, p * PAGE_BITS_BYTES, (p + 1) * PAGE_BITS_BYTES);
        notes.push(`dirty bitmap page ${p} was damaged (torn write or corruption): its ${BITS_PER_PAGE} regions will be resynced`);
        if (mend) this.writePage(p);
      }
    }
    this.clearBeyondEnd();
    this.recount();
  }

  /**
   * `old`'s marks in a bitmap of `regionSize`, made durable under a temporary name and
   * renamed over `name`: a crash before the rename leaves the old bitmap, after it the new.
   */
  private static async converted(store: Store, name: string, old: DirtyBitmap, volumeSize: number, regionSize: number): Promise<DirtyBitmap> {
    const bm = DirtyBitmap.fresh(store, volumeSize, regionSize, `${name}${CONVERTING_SUFFIX}`);
    for (let r = 0; r < old.regions; r++) {
      if (old.isSet(r)) bm.mark(r * old.regionSize, Math.min(old.regionSize, volumeSize - r * old.regionSize));
    }
    await bm.sync();
    store.rename(`${name}${CONVERTING_SUFFIX}`, name);
    await store.syncDir();
    // Postcondition: every byte the old bitmap marked is marked in the new one.
    for (let r = 0; r < old.regions; r++) {
      assert(!old.isSet(r) || bm.isSet(Math.floor((r * old.regionSize) / regionSize)),
        () => `dirty bitmap: region ${r} of ${old.regionSize} bytes lost its mark in the conversion to ${regionSize}`);
    }
    return bm;
  }

  private static fresh(store: Store, volumeSize: number, regionSize: number, name: string): DirtyBitmap {
    const file = store.create(name);
    const bm = new DirtyBitmap(file, volumeSize, regionSize);
    file.writeSync(0, encodeHeader(volumeSize, regionSize));
    // Every page is written now, so marking a region later never needs new space.
    for (let p = 0; p < bm.pages; p++) bm.writePage(p);
    bm.unsynced = true;
    bm.created = store;
    return bm;
  }

  get count(): number {
    return this.dirtyCount;
  }

  get dirtyBytes(): number {
    return this.dirtyCount * this.regionSize;
  }

  isSet(region: number): boolean {
    return (this.bits[region >> 3]! & (1 << (region & 7))) !== 0;
  }

  /** Marks every region touching [offset, offset+length). Returns how many bits were new. */
  mark(offset: number, length: number): number {
    if (length <= 0) return 0;
    const first = Math.floor(offset / this.regionSize);
    const last = Math.min(this.regions - 1, Math.floor((offset + length - 1) / this.regionSize));
    let added = 0;
    let touchedPage = -1;
    for (let r = first; r <= last; r++) {
      const byte = r >> 3;
      const bit = 1 << (r & 7);
      if ((this.bits[byte]! & bit) === 0) {
        this.bits[byte] = this.bits[byte]! | bit;
        added++;
        const page = Math.floor(byte / PAGE_BITS_BYTES);
        if (page !== touchedPage) {
          if (touchedPage >= 0) this.writePage(touchedPage);
          touchedPage = page;
        }
      }
    }
    if (touchedPage >= 0) this.writePage(touchedPage);
    this.dirtyCount += added;
    return added;
  }

  markAll(): void {
    this.bits.fill(0xff);
    this.clearBeyondEnd();
    this.recount();
    // (Marked here first: a page that cannot be written now is written by the next sync.)
    this.stalePages = true;
    for (let p = 0; p < this.pages; p++) this.writePage(p);
    this.stalePages = false;
  }

  /** markAll could not write every page: the next sync writes them all before it syncs. */
  private stalePages = false;

  /**
   * Clears the regions of [first, end) that `may` allows (a first sync found them
   * equal), writing each page of the file once. Returns how many were cleared.
   */
  clearRun(first: number, end: number, may: (region: number) => boolean): number {
    assert(first >= 0 && first <= end && end <= this.regions, () => `regions ${first}..${end} inside the bitmap's ${this.regions}`);
    let cleared = 0;
    let touchedPage = -1;
    for (let r = first; r < end; r++) {
      if (!this.isSet(r) || !may(r)) continue;
      this.bits[r >> 3] = this.bits[r >> 3]! & ~(1 << (r & 7));
      cleared++;
      const page = Math.floor((r >> 3) / PAGE_BITS_BYTES);
      if (page !== touchedPage) {
        if (touchedPage >= 0) this.writePage(touchedPage);
        touchedPage = page;
      }
    }
    if (touchedPage >= 0) this.writePage(touchedPage);
    this.dirtyCount -= cleared;
    return cleared;
  }

  /**
   * Clears these regions (a resync's runs now durable), writing each page of the file
   * they touch once: a first sync's 1 MiB run is 16 regions of one page, and writing the
   * page per region was 8192 writes on the event loop for 512 MiB.
   */
  clearAll(regions: Iterable<number>): void {
    const pages = new Set<number>();
    for (const r of regions) {
      assert(r >= 0 && r < this.regions, () => `region ${r} outside the bitmap's ${this.regions}`);
      if (!this.isSet(r)) continue;
      this.bits[r >> 3] = this.bits[r >> 3]! & ~(1 << (r & 7));
      this.dirtyCount--;
      pages.add(Math.floor((r >> 3) / PAGE_BITS_BYTES));
    }
    for (const p of pages) this.writePage(p);
  }

  /**
   * The volume grew to `volumeSize` (docs/CONFIG.md, "Growing a volume"): its new regions
   * are clean (both sides read zeros there). The new pages are written before the header
   * that counts them, and both are durable on return: a page never written reads clean,
   * a torn one all dirty, so a crash at any point leaves a bitmap that loses no mark.
   */
  async grow(volumeSize: number): Promise<void> {
    const regions = Math.ceil(volumeSize / this.regionSize);
    assert(regions >= this.regionCount, () => `a bitmap of ${this.regionCount} regions cannot shrink to ${regions}`);
    const pages = Math.max(1, Math.ceil(regions / BITS_PER_PAGE));
    if (pages > this.pages) {
      const bits = new Uint8Array(pages * PAGE_BITS_BYTES);
      bits.set(this.bits);
      this.bits = bits;
    }
    const from = this.pages;
    this.pages = pages;
    this.regionCount = regions;
    for (let p = from; p < pages; p++) this.writePage(p);
    this.file.writeSync(0, encodeHeader(volumeSize, this.regionSize));
    this.unsynced = true;
    await this.sync();
  }

  /** Dirty regions in order, from `from`, without allocating per region. */
  *dirtyRegions(from = 0): Generator<number> {
    for (let r = from; r < this.regions; r++) {
      const b = this.bits[r >> 3]!;
      if (b === 0) {
        r |= 7; // skip the rest of this byte
        continue;
      }
      if (b & (1 << (r & 7))) yield r;
    }
  }

  async sync(): Promise<void> {
    if (this.stalePages) {
      for (let p = 0; p < this.pages; p++) this.writePage(p);
      this.stalePages = false;
    }
    if (!this.unsynced) return;
    this.unsynced = false;
    const dir = this.created;
    this.created = null;
    try {
      await this.file.sync();
      if (dir) await dir.syncDir();
    } catch (e) {
      this.unsynced = true;
      this.created ??= dir;
      throw e;
    }
  }

  close(): void {
    this.file.close();
  }

  private writePage(p: number): void {
    const page = Buffer.allocUnsafe(PAGE_SIZE);
    page.set(this.bits.subarray(p * PAGE_BITS_BYTES, (p + 1) * PAGE_BITS_BYTES), 0);
    page.writeUInt32LE(crc32c(page.subarray(0, PAGE_BITS_BYTES)), PAGE_BITS_BYTES);
    this.file.writeSync(HEADER_SIZE + p * PAGE_SIZE, page);
    this.unsynced = true;
  }

  private clearBeyondEnd(): void {
    for (let r = this.regions; r < this.bits.length * 8; r++) this.bits[r >> 3] = this.bits[r >> 3]! & ~(1 << (r & 7));
  }

  private recount(): void {
    let n = 0;
    for (const b of this.bits) n += POPCOUNT[b]!;
    this.dirtyCount = n;
  }
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, i) => {
  let c = 0;
  for (let v = i; v; v >>= 1) c += v & 1;
  return c;
});

function encodeHeader(volumeSize: number, regionSize: number): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(regionSize, 12);
  h.writeBigUInt64LE(BigInt(volumeSize), 16);
  h.writeUInt32LE(crc32c(h.subarray(0, 24)), 24);
  return h;
}

function checkHeader(h: Buffer, volumeSize: number, regionSize: number): string | null {
  if (h.length < 28 || !h.subarray(0, 8).equals(MAGIC)) return 'bad magic';
  if (crc32c(h.subarray(0, 24)) !== h.readUInt32LE(24)) return 'header checksum mismatch';
  if (h.readUInt32LE(8) !== VERSION) return `format version ${h.readUInt32LE(8)}`;
  if (h.readUInt32LE(12) !== regionSize) return `region size was ${h.readUInt32LE(12)}, config says ${regionSize}`;
  if (Number(h.readBigUInt64LE(16)) !== volumeSize) return `volume size was ${h.readBigUInt64LE(16)}, now ${volumeSize}`;
  return null;
}

/** A sound header of another region size, of this volume or a smaller one (it grew too), else null. */
function otherRegionSize(h: Buffer, volumeSize: number): { regionSize: number; volumeSize: number } | null {
  if (h.length < 28) return null;
  const regionSize = h.readUInt32LE(12);
  const was = Number(h.readBigUInt64LE(16));
  if (regionSize < 4096 || (regionSize & (regionSize - 1)) !== 0 || !(was > 0 && was <= volumeSize)) return null;
  return checkHeader(h, was, regionSize) === null ? { regionSize, volumeSize: was } : null;
}

/** The volume size of a bitmap made for a smaller volume, else null (checkHeader's other checks pass). */
function grownFrom(h: Buffer, volumeSize: number, regionSize: number): number | null {
  const was = h.length >= 28 ? Number(h.readBigUInt64LE(16)) : Infinity;
  if (!(was > 0 && was < volumeSize) || checkHeader(h, was, regionSize) !== null) return null;
  return was;
}

/** Regions touched, in memory only, sized like the bitmap (for recovery's bookkeeping). */
export class RegionSet {
  private bits: Uint8Array;
  get volumeSize(): number { return this.size; }
  constructor(private size: number, readonly regionSize: number) {
    this.bits = new Uint8Array(Math.ceil(Math.ceil(size / regionSize) / 8));
  }

  /** The volume grew: the set covers `volumeSize` bytes, its new regions unmarked. */
  grow(volumeSize: number): void {
    assert(volumeSize >= this.size, () => `a region set of ${this.size} bytes cannot shrink to ${volumeSize}`);
    const bits = new Uint8Array(Math.ceil(Math.ceil(volumeSize / this.regionSize) / 8));
    bits.set(this.bits);
    this.bits = bits;
    this.size = volumeSize;
  }

  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((Math.min(offset + length, this.volumeSize) - 1) / this.regionSize);
    for (let r = Math.floor(offset / this.regionSize); r <= last; r++) this.bits[r >> 3] = this.bits[r >> 3]! | (1 << (r & 7));
  }

  has(region: number): boolean {
    return (this.bits[region >> 3]! & (1 << (region & 7))) !== 0;
  }

  /** Marks every region of this set in another set of the same geometry. */
  copyToSet(other: RegionSet): void {
    if (other.regionSize !== this.regionSize) {
      for (let r = 0; r * this.regionSize < this.volumeSize; r++) if (this.has(r)) other.mark(r * this.regionSize, this.regionSize);
      return;
    }
    for (let i = 0; i < this.bits.length; i++) other.bits[i] = other.bits[i]! | this.bits[i]!;
  }

  /** Marks every region of this set in `bitmap`. */
  copyTo(bitmap: DirtyBitmap): void {
    for (let byte = 0; byte < this.bits.length; byte++) {
      const b = this.bits[byte]!;
      if (b === 0) continue;
      for (let i = 0; i < 8; i++) if (b & (1 << i)) bitmap.mark((byte * 8 + i) * this.regionSize, 1);
    }
  }
}
