// The secondary's undo area for a resync round (docs/RESYNC.md). A round is not
// write-ordered, so while it runs the replica's last flush-point image is kept
// presentable: before the first write of the round to a region, the region's old
// bytes are copied here and made durable. Readers of the export see the old image
// (undo copy where there is one, the replica elsewhere); when the round completes
// the undo area is dropped, and after a crash mid-round it is read back so the
// old image is still what the export serves.
//
// File "undo": a 32-byte header (magic "OFFSUNDO", u32 version 1, u32 region size,
// u64 volume size, u32 reserved, u32 CRC32C of bytes 0..28), then entries of a
// 16-byte head (u64 LE region index, u32 LE CRC32C of the data, u32 LE CRC32C of
// the first 12 bytes) and the region's bytes (short for the volume's last region).
// A torn or damaged entry ends the file: its region was never written (entries are
// durable before the replica write they protect).
//
// The volume may grow during the round (docs/CONFIG.md, "Growing a volume"): the
// header keeps its size at the round's start. The image before the round is that
// volume and zeros after its end (the part grown into was never written before the
// round), so nothing past that end is saved, it reads as zeros, and a rollback
// zeroes it.
import { crc32c } from '../checksum/crc32c.js';
import type { Store, StoreFile } from '../store/store.js';
import type { ExportBackend } from '../export/backend.js';

/** What the undo area reads the old image from and writes it back to: the replica's volume. */
type Disk = Pick<ExportBackend, 'read' | 'write' | 'writeZeroes' | 'size'>;
import { magicAndU32, refuseNewer } from '../versioning/format.js';

const MAGIC = Buffer.from('OFFSUNDO', 'latin1');
const VERSION = 1;
/**
 * A newer release's undo area is refused (docs/VERSIONING.md): started afresh, the
 * image before the round would be lost while the round is half applied.
 */
export const UNDO_FORMAT = magicAndU32('resync undo area', 'OFFSUNDO', VERSION, [VERSION]);
const HEADER = 32;
const ENTRY_HEAD = 16;
const FILE = 'undo';

export class UndoArea {
  /** Region index → byte position of its saved copy in the file. */
  private readonly saved = new Map<number, number>();
  private constructor(private readonly file: StoreFile, readonly regionSize: number, private readonly volumeSize: number) {}

  get regions(): number {
    return this.saved.size;
  }

  get bytes(): number {
    return this.file.size();
  }

  /** Opens the undo area of a round in progress, or creates an empty one. */
  static async open(store: Store, regionSize: number, volumeSize: number): Promise<UndoArea> {
    if (store.list().includes(FILE)) {
      const file = store.open(FILE);
      const head = await file.read(0, HEADER);
      try {
        refuseNewer(UNDO_FORMAT, head, FILE);
      } catch (e) {
        file.close();
        throw e;
      }
      if (head.length === HEADER && head.subarray(0, 8).equals(MAGIC) && head.readUInt32LE(8) === VERSION &&
        crc32c(head.subarray(0, 28)) === head.readUInt32LE(28)) {
        const u = new UndoArea(file, head.readUInt32LE(12), Number(head.readBigUInt64LE(16)));
        await u.load();
        return u;
      }
      file.close();
    }
    const file = store.create(FILE);
    const head = Buffer.alloc(HEADER);
    MAGIC.copy(head, 0);
    head.writeUInt32LE(VERSION, 8);
    head.writeUInt32LE(regionSize, 12);
    head.writeBigUInt64LE(BigInt(volumeSize), 16);
    head.writeUInt32LE(crc32c(head.subarray(0, 28)), 28);
    file.writeSync(0, head);
    await file.sync();
    await store.syncDir();
    return new UndoArea(file, regionSize, volumeSize);
  }

  /** Drops the undo area (the round is complete, or there is none). */
  static async drop(store: Store): Promise<void> {
    if (!store.list().includes(FILE)) return;
    store.remove(FILE);
    await store.syncDir();
  }

  private regionLength(r: number): number {
    return Math.min(this.regionSize, this.volumeSize - r * this.regionSize);
  }

  private async load(): Promise<void> {
    const end = this.file.size();
    let pos = HEADER;
    while (pos + ENTRY_HEAD <= end) {
      const h = await this.file.read(pos, ENTRY_HEAD);
      if (h.length < ENTRY_HEAD || crc32c(h.subarray(0, 12)) !== h.readUInt32LE(12)) break;
      const r = Number(h.readBigUInt64LE(0));
      const len = this.regionLength(r);
      if (len <= 0 || pos + ENTRY_HEAD + len > end) break;
      const data = await this.file.read(pos + ENTRY_HEAD, len);
      if (crc32c(data) !== h.readUInt32LE(8)) break;
      if (!this.saved.has(r)) this.saved.set(r, pos + ENTRY_HEAD);
      pos += ENTRY_HEAD + len;
    }
    if (pos < end) this.file.truncateSync(pos);
  }

  /** Saves the old bytes of every region touching [offset, offset+length) not saved yet; durable on return. */
  async protect(disk: Disk, ranges: Array<{ offset: number; length: number }>): Promise<void> {
    const todo = new Set<number>();
    for (const { offset, length } of ranges) {
      if (length <= 0) continue;
      const last = Math.floor((offset + length - 1) / this.regionSize);
      // (A region wholly past the end the round began with held zeros: a rollback zeroes it.)
      for (let r = Math.floor(offset / this.regionSize); r <= last; r++) if (!this.saved.has(r) && this.regionLength(r) > 0) todo.add(r);
    }
    if (todo.size === 0) return;
    let pos = this.file.size();
    const parts: Buffer[] = [];
    const at = pos;
    for (const r of [...todo].sort((a, b) => a - b)) {
      const len = this.regionLength(r);
      const data = Buffer.allocUnsafe(len);
      await disk.read(r * this.regionSize, data, 0, len);
      const h = Buffer.alloc(ENTRY_HEAD);
      h.writeBigUInt64LE(BigInt(r), 0);
      h.writeUInt32LE(crc32c(data), 8);
      h.writeUInt32LE(crc32c(h.subarray(0, 12)), 12);
      parts.push(h, data);
      this.saved.set(r, pos + ENTRY_HEAD);
      pos += ENTRY_HEAD + len;
    }
    try {
      await this.file.writev(at, parts);
      await this.file.sync();
    } catch (e) {
      for (const r of todo) this.saved.delete(r);
      this.file.truncateSync(at);
      throw e;
    }
  }

  /** Reads [offset, offset+length) of the image as it stood before the round. */
  async readOld(disk: Disk, offset: number, into: Buffer, at: number, length: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const o = offset + done;
      const r = Math.floor(o / this.regionSize);
      const inRegion = Math.min(length - done, (r + 1) * this.regionSize - o);
      const pos = this.saved.get(r);
      // (Past the end the round began with: zeros, until the round completes.)
      const kept = Math.max(0, Math.min(inRegion, this.volumeSize - o));
      if (pos === undefined) {
        if (kept > 0) await disk.read(o, into, at + done, kept);
      } else if (kept > 0) {
        (await this.file.read(pos + (o - r * this.regionSize), kept)).copy(into, at + done);
      }
      into.fill(0, at + done + kept, at + done + inRegion);
      done += inRegion;
    }
  }

  /**
   * Puts the image from before the round back on the disk (a promote in the middle
   * of a round: the promoted volume must be a flush-point image). Durable on return.
   */
  async rollback(disk: Disk & { flush(): Promise<void> }): Promise<number> {
    for (const [r, pos] of this.saved) {
      const data = await this.file.read(pos, this.regionLength(r));
      await disk.write(r * this.regionSize, data, false);
    }
    // (Grown during the round: the part past the round's start was zeros then.)
    if (disk.size > this.volumeSize) await disk.writeZeroes(this.volumeSize, disk.size - this.volumeSize, { fua: false, mayTrim: true, fast: false });
    await disk.flush();
    return this.saved.size;
  }

  close(): void {
    this.file.close();
  }
}
