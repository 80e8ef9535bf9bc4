// A SCSI logical unit over an in-memory export backend, for the scsi-* unit tests: the
// backend counts what reaches it (writes, FUA writes, flushes, trims, zeroings), keeps
// an allocation map per 512-byte block (thin: trimmed blocks are holes and read
// zeros), can fail the next call with an errno, and can hold writes at a gate; it is
// wrapped in CheckedBackend so a call outside the contract fails the test.
import {
  diskCapabilities, readOnlyCapabilities, DiskError, type Capabilities, type Extent, type ExportBackend, type ZeroOptions,
} from '../../src/export/backend.js';
import { CheckedBackend } from '../../src/export/contract.js';
import { LogicalUnit } from '../../src/scsi/logical-unit.js';
import type { ScsiNexus, ScsiResult } from '../../src/scsi/task.js';

export class MemoryDisk implements ExportBackend {
  readonly name = 'mem';
  readonly description = 'in-memory test disk';
  readonly data: Buffer;
  /** One flag per 512-byte block: 1 = holds data. */
  readonly allocated: Uint8Array;
  counts = { read: 0, write: 0, fuaWrite: 0, flush: 0, trim: 0, zero: 0, zeroMayTrim: 0, cache: 0 };
  /** The errno the next write/read fails with (then cleared). */
  failNext: { op: 'read' | 'write'; code: string } | null = null;
  /** When set, writes wait for it before landing (to interleave commands). */
  gate: Promise<void> | null = null;

  constructor(readonly size: number, private readonly caps: Capabilities) {
    this.data = Buffer.alloc(size);
    this.allocated = new Uint8Array(Math.ceil(size / 512));
  }

  get readOnly(): boolean { return this.caps.readOnly; }
  capabilities(): Capabilities { return this.caps; }

  private fail(op: 'read' | 'write'): void {
    if (this.failNext?.op === op) {
      const code = this.failNext.code;
      this.failNext = null;
      throw new DiskError(code, `injected ${code}`);
    }
  }

  async read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.counts.read++;
    this.fail('read');
    this.data.copy(into, at, offset, offset + length);
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    if (this.gate) await this.gate;
    this.fail('write');
    this.counts.write++;
    if (fua) this.counts.fuaWrite++;
    data.copy(this.data, offset);
    this.mark(offset, data.length, 1);
  }

  async writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    this.fail('write');
    this.counts.zero++;
    if (opts.mayTrim) this.counts.zeroMayTrim++;
    this.data.fill(0, offset, offset + length);
    this.mark(offset, length, opts.mayTrim ? 0 : 1);
  }

  async trim(offset: number, length: number, _fua: boolean): Promise<void> {
    this.fail('write');
    this.counts.trim++;
    this.data.fill(0, offset, offset + length);
    this.mark(offset, length, 0);
  }

  async flush(): Promise<void> {
    this.counts.flush++;
  }

  async cache(): Promise<void> {
    this.counts.cache++;
  }

  async extents(offset: number, length: number, max: number): Promise<Extent[]> {
    const out: Extent[] = [];
    let at = offset;
    while (at < offset + length && out.length < max) {
      const hole = this.allocated[Math.floor(at / 512)] === 0;
      let end = at;
      while (end < offset + length && (this.allocated[Math.floor(end / 512)] === 0) === hole) {
        end = Math.min(offset + length, (Math.floor(end / 512) + 1) * 512);
      }
      out.push({ length: end - at, hole });
      at = end;
    }
    return out;
  }

  private mark(offset: number, length: number, v: number): void {
    for (let b = Math.floor(offset / 512); b * 512 < offset + length; b++) {
      // A partly covered block keeps data when deallocating.
      if (v === 0 && (b * 512 < offset || (b + 1) * 512 > offset + length)) continue;
      this.allocated[b] = v;
    }
  }
}

export const NAA = Buffer.from('3a1b2c3d4e5f6071', 'hex');
export const IDENTITY = { naa: NAA, serial: 'vol-0001', product: 'Offsite volume', revision: '0017' };

export const A: ScsiNexus = {
  initiator: 'iqn.1991-05.com.microsoft:erp1,i,0x400001370000', transportId: Buffer.from('iqn.1991-05.com.microsoft:erp1'), relativePort: 1,
};
export const B: ScsiNexus = {
  initiator: 'iqn.1991-05.com.microsoft:erp2,i,0x400001370000', transportId: Buffer.from('iqn.1991-05.com.microsoft:erp2'), relativePort: 1,
};

export interface Setup {
  lu: LogicalUnit;
  disk: MemoryDisk;
}

/** A unit of `blocks` 512-byte blocks: writable thin (trim and zero), writable thick (no trim, no zero), or read-only. */
export function unit(kind: 'thin' | 'thick' | 'readonly' = 'thin', blocks = 2048): Setup {
  const caps = kind === 'readonly' ? readOnlyCapabilities(true)
    : kind === 'thick' ? { ...diskCapabilities(false), trim: false, zero: false, fastZero: false }
    : diskCapabilities(false);
  const disk = new MemoryDisk(blocks * 512, caps);
  const lu = new LogicalUnit({ backend: new CheckedBackend(disk), identity: IDENTITY });
  // No pending POWER ON: tests of unit attentions add their nexuses themselves.
  return { lu, disk };
}

/** Runs a CDB (hex, spaces allowed) as `nexus`, on LUN 0 unless told, with the data-out given. */
export function cmd(
  lu: LogicalUnit,
  cdbHex: string,
  opts: { nexus?: ScsiNexus; data?: Buffer; lun?: number; expectedLength?: number } = {},
): Promise<ScsiResult> {
  const cdb = Buffer.from(cdbHex.replace(/\s+/g, ''), 'hex');
  const data = opts.data ?? null;
  return lu.execute({ nexus: opts.nexus ?? A, lun: opts.lun ?? 0, cdb, expectedLength: opts.expectedLength ?? data?.length ?? 0, dataOut: data });
}

/** The sense key and ASC/ASCQ of a CHECK CONDITION, as 'key/ASCQ' hex ("5/2400"), or the status name. */
export function outcome(r: ScsiResult): string {
  if (r.status === 0) return 'GOOD';
  if (r.status === 0x18) return 'RESERVATION CONFLICT';
  if (r.status !== 2 || r.sense === null) return `status ${r.status}`;
  return `${(r.sense[2]! & 0x0f).toString(16)}/${r.sense.readUInt16BE(12).toString(16).padStart(4, '0')}`;
}

export const hex = (n: number, bytes: number): string => n.toString(16).padStart(2 * bytes, '0');
