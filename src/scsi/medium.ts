// The medium as SCSI sees it: the export backend in 512-byte logical blocks. Every
// call to the backend goes through here, after its range has been checked against the
// capacity and its capability against capabilities() (src/export/contract.ts asserts
// both), split at the backend's largest request, and a backend error comes back as
// the sense SBC-3 gives it (ENOSPC on a thin unit: SPACE ALLOCATION FAILED WRITE
// PROTECT; EIO: MEDIUM ERROR).
import type { Capabilities, ExportBackend } from '../export/backend.js';
import { InvariantError, assert } from '../invariants/assert.js';
import { SCSI_BLOCK_BYTES, SCSI_MAX_TRANSFER_BYTES } from '../limits/limits.js';
import { Asc, CheckCondition, SenseKey, invalidField, senseForDiskError } from './sense.js';
import { RangeLock } from './range-lock.js';

export class Medium {
  readonly caps: Capabilities;
  /** Capacity in logical blocks (more once the volume grew, resized()). */
  blocks: number;
  /** LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY 16): the backend's preferred block. */
  readonly physicalExponent: number;
  /** Thin provisioned: UNMAP deallocates and deallocated blocks read zeros (LBPME, LBPRZ). */
  readonly thin: boolean;
  /** Writes with WCE=0 (MODE SELECT of the caching page) are made durable before they complete. */
  writeCache = true;
  readonly lock = new RangeLock();

  constructor(readonly backend: ExportBackend) {
    this.caps = backend.capabilities();
    this.blocks = Math.floor(backend.size / SCSI_BLOCK_BYTES);
    const perPhysical = Math.max(1, Math.floor(this.caps.blockSize.preferred / SCSI_BLOCK_BYTES));
    this.physicalExponent = Math.min(15, Math.floor(Math.log2(perPhysical)));
    this.thin = this.caps.trim;
    assert(SCSI_BLOCK_BYTES % this.caps.blockSize.minimum === 0,
      `export ${backend.name}: its smallest block ${this.caps.blockSize.minimum} does not divide the ${SCSI_BLOCK_BYTES}-byte logical block`);
  }

  get readOnly(): boolean { return this.caps.readOnly; }

  /**
   * The backend grew (docs/CONFIG.md, "Growing a volume"): the capacity follows it, and
   * true is returned once, so the unit tells every nexus CAPACITY DATA HAS CHANGED.
   */
  resized(): boolean {
    const blocks = Math.floor(this.backend.size / SCSI_BLOCK_BYTES);
    if (blocks === this.blocks) return false;
    assert(blocks > this.blocks, () => `export ${this.backend.name}: its capacity fell from ${this.blocks} to ${blocks} blocks`);
    this.blocks = blocks;
    return true;
  }

  /** LBA OUT OF RANGE unless [lba, lba+count) lies in the medium (lba may be anything the CDB held). */
  checkRange(lba: number, count: number): void {
    if (!(lba <= this.blocks && count <= this.blocks - lba)) throw new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE);
  }

  /** DATA PROTECT / WRITE PROTECTED on a read-only unit. */
  checkWritable(): void {
    if (this.caps.readOnly) throw new CheckCondition(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED);
  }

  /** INVALID FIELD IN CDB (the transfer length at `field`) for a transfer over the advertised maximum. */
  checkTransfer(count: number, field: number): void {
    if (count * SCSI_BLOCK_BYTES > SCSI_MAX_TRANSFER_BYTES) throw invalidField(field);
  }

  /** `into`: exactly the bytes read, else a new buffer. */
  async read(lba: number, count: number, into?: Buffer): Promise<Buffer> {
    this.checkRange(lba, count);
    const bytes = count * SCSI_BLOCK_BYTES;
    assert(bytes <= SCSI_MAX_TRANSFER_BYTES, () => `a read of ${bytes} bytes past the transfer limit`);
    assert(!into || into.length === bytes, () => `a read of ${bytes} bytes into a buffer of ${into!.length}`);
    const out = into ?? Buffer.allocUnsafe(bytes);
    const max = this.caps.blockSize.maximum;
    const base = lba * SCSI_BLOCK_BYTES;
    try {
      for (let at = 0; at < bytes; at += max) await this.backend.read(base + at, out, at, Math.min(max, bytes - at));
    } catch (e) {
      throw mapped(e, 'read', this.thin);
    }
    return out;
  }

  /** Writes `data` (whole blocks, or fewer bytes when the initiator sent less) at lba; FUA or WCE=0 makes it durable first. */
  async write(lba: number, data: Buffer, fua: boolean): Promise<void> {
    this.checkWritable();
    this.checkRange(lba, Math.ceil(data.length / SCSI_BLOCK_BYTES));
    const durable = fua || !this.writeCache;
    const max = this.caps.blockSize.maximum;
    const base = lba * SCSI_BLOCK_BYTES;
    const len = data.length - (data.length % this.caps.blockSize.minimum);
    try {
      for (let at = 0; at < len; at += max) await this.backend.write(base + at, data.subarray(at, Math.min(len, at + max)), durable && this.caps.fua);
      if (durable && !this.caps.fua && this.caps.flush && len > 0) await this.backend.flush();
    } catch (e) {
      throw mapped(e, 'write', this.thin);
    }
  }

  /** Zeroes [lba, lba+count): deallocating where allowed and possible, else by writing zeros. */
  async zero(lba: number, count: number, mayTrim: boolean, fua: boolean): Promise<void> {
    this.checkWritable();
    this.checkRange(lba, count);
    const durable = fua || !this.writeCache;
    const max = this.caps.blockSize.maximum;
    const base = lba * SCSI_BLOCK_BYTES;
    const bytes = count * SCSI_BLOCK_BYTES;
    try {
      if (this.caps.zero) {
        for (let at = 0; at < bytes; at += max) {
          await this.backend.writeZeroes(base + at, Math.min(max, bytes - at), { fua: durable && this.caps.fua, mayTrim, fast: false });
        }
      } else if (mayTrim && this.thin) {
        for (let at = 0; at < bytes; at += max) await this.backend.trim(base + at, Math.min(max, bytes - at), durable && this.caps.fua);
      } else {
        const zeros = Buffer.alloc(Math.min(max, bytes, SCSI_MAX_TRANSFER_BYTES));
        for (let at = 0; at < bytes; at += zeros.length) {
          await this.backend.write(base + at, zeros.subarray(0, Math.min(zeros.length, bytes - at)), durable && this.caps.fua);
        }
      }
      if (durable && !this.caps.fua && this.caps.flush && bytes > 0) await this.backend.flush();
    } catch (e) {
      throw mapped(e, 'write', this.thin);
    }
  }

  /** Deallocates [lba, lba+count) (UNMAP): reads back zeros after. */
  async unmap(lba: number, count: number): Promise<void> {
    this.checkWritable();
    this.checkRange(lba, count);
    assert(this.thin, 'UNMAP on a unit that cannot deallocate');
    const max = this.caps.blockSize.maximum;
    const base = lba * SCSI_BLOCK_BYTES;
    const bytes = count * SCSI_BLOCK_BYTES;
    try {
      for (let at = 0; at < bytes; at += max) await this.backend.trim(base + at, Math.min(max, bytes - at), false);
    } catch (e) {
      throw mapped(e, 'write', this.thin);
    }
  }

  /** PRE-FETCH: asks the backend to bring the range into its cache, where that is useful; a failure is only a missed hint. */
  async prefetch(lba: number, count: number): Promise<void> {
    this.checkRange(lba, count);
    if (!this.caps.cache || count === 0) return;
    const max = this.caps.blockSize.maximum;
    const base = lba * SCSI_BLOCK_BYTES;
    const bytes = count * SCSI_BLOCK_BYTES;
    try {
      for (let at = 0; at < bytes; at += max) await this.backend.cache(base + at, Math.min(max, bytes - at));
    } catch (e) {
      if (e instanceof InvariantError) throw e;
    }
  }

  /** SYNCHRONIZE CACHE: every acknowledged write durable (the flush point NBD FLUSH is). */
  async flush(): Promise<void> {
    if (!this.caps.flush) return;
    try {
      await this.backend.flush();
    } catch (e) {
      throw mapped(e, 'write', this.thin);
    }
  }
}

/** A backend failure as sense (an error without an errno name reads as EIO, as NBD reads it); a broken invariant goes on up untouched. */
function mapped(e: unknown, op: 'read' | 'write', thin: boolean): unknown {
  if (e instanceof InvariantError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  return senseForDiskError(typeof code === 'string' ? code : 'EIO', op, thin);
}
