// Mode parameters (SPC-4 7.5, SBC-3 6.4): MODE SENSE(6/10) answers with a header, a
// block descriptor unless DBD, and the pages asked for: caching (0x08, WCE=1: an
// acknowledged write sits in the journal until SYNCHRONIZE CACHE or FUA, as in a
// disk's volatile cache), control (0x0A) and informational exceptions (0x1C, which
// initiators probe); 0x3F is all of them. MODE SELECT may change WCE only (the one
// changeable bit); parameters are not savable (PS=0; SP=1 is refused).
import { SCSI_BLOCK_BYTES } from '../limits/limits.js';
import type { Medium } from './medium.js';
import { Asc, illegal, invalidField, invalidParameter } from './sense.js';

const CACHING = 0x08;
const CONTROL = 0x0a;
const INFORMATIONAL_EXCEPTIONS = 0x1c;
const ALL_PAGES = 0x3f;
export const MODE_PAGES = [CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS];

/** Page control (CDB byte 2 bits 7-6). */
type PageControl = 0 | 1 | 2 | 3;

/** One page as the page control asks: current, changeable (a mask), default or saved (= default: nothing is saved). */
function page(code: number, pc: PageControl, medium: Medium): Buffer {
  switch (code) {
    case CACHING: {
      const p = Buffer.alloc(20);
      p[0] = CACHING;
      p[1] = 18;
      if (pc === 1) p[2] = 0x04; // WCE is changeable
      else p[2] = pc === 0 ? (medium.writeCache ? 0x04 : 0) : 0x04;
      return p;
    }
    case CONTROL: {
      const p = Buffer.alloc(12);
      p[0] = CONTROL;
      p[1] = 10;
      if (pc !== 1) {
        p[2] = 0x02; // TST 0 (one task set), GLTSD (no log parameters saved), D_SENSE 0 (fixed-format sense)
        p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering; QERR 0
        p.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
      }
      return p;
    }
    case INFORMATIONAL_EXCEPTIONS: {
      const p = Buffer.alloc(12);
      p[0] = INFORMATIONAL_EXCEPTIONS;
      p[1] = 10;
      if (pc !== 1) p[2] = 0x08; // DEXCPT: no informational exceptions reported; MRIE 0
      return p;
    }
    default: throw invalidField(2, 5);
  }
}

/** MODE SENSE(6) (ten = false) or MODE SENSE(10): the whole answer, before the allocation length cuts it. */
export function modeSense(cdb: Buffer, ten: boolean, medium: Medium): Buffer {
  const dbd = (cdb.readUInt8(1) & 0x08) !== 0;
  const llbaa = ten && (cdb.readUInt8(1) & 0x10) !== 0;
  const pc = (cdb.readUInt8(2) >> 6) as PageControl;
  const code = cdb.readUInt8(2) & 0x3f;
  const subpage = cdb.readUInt8(3);
  if (!(subpage === 0 || (code === ALL_PAGES && subpage === 0xff))) throw invalidField(3);
  const pages = code === ALL_PAGES ? MODE_PAGES.map((c) => page(c, pc, medium)) : [page(code, pc, medium)];
  let descriptor = Buffer.alloc(0);
  if (!dbd) {
    if (llbaa) {
      descriptor = Buffer.alloc(16);
      descriptor.writeBigUInt64BE(BigInt(medium.blocks), 0);
      descriptor.writeUInt32BE(SCSI_BLOCK_BYTES, 12);
    } else {
      descriptor = Buffer.alloc(8);
      descriptor.writeUInt32BE(Math.min(medium.blocks, 0xffffffff), 0);
      descriptor.writeUInt32BE(SCSI_BLOCK_BYTES, 4); // density code 0, BLOCK LENGTH in bytes 5-7
    }
  }
  // DEVICE-SPECIFIC PARAMETER: WP on a read-only unit, DPOFUA (DPO and FUA are taken).
  const deviceSpecific = (medium.readOnly ? 0x80 : 0) | 0x10;
  const body = Buffer.concat([descriptor, ...pages]);
  if (ten) {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(6 + body.length, 0);
    h[3] = deviceSpecific;
    h[4] = llbaa && !dbd ? 0x01 : 0; // LONGLBA
    h.writeUInt16BE(descriptor.length, 6);
    return Buffer.concat([h, body]);
  }
  const h = Buffer.alloc(4);
  h[0] = Math.min(0xff, 3 + body.length);
  h[2] = deviceSpecific;
  h[3] = descriptor.length;
  return Buffer.concat([h, body]);
}

/**
 * MODE SELECT(6/10) of `list` (the parameter list as the initiator sent it): checks
 * the header, the block descriptor (512-byte blocks only) and every page against
 * what is changeable, then applies WCE. Returns whether a parameter changed (the other
 * nexuses then get MODE PARAMETERS CHANGED).
 */
export function modeSelect(cdb: Buffer, ten: boolean, list: Buffer, medium: Medium): boolean {
  const flags = cdb.readUInt8(1);
  if (flags & 0x01) throw illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED); // SP: nothing is savable
  if (list.length === 0) return false;
  const headerBytes = ten ? 8 : 4;
  if (list.length < headerBytes) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const descBytes = ten ? list.readUInt16BE(6) : list.readUInt8(3);
  let at = headerBytes;
  if (descBytes > 0) {
    const long = ten && (list.readUInt8(4) & 0x01) !== 0;
    const one = long ? 16 : 8;
    if (descBytes !== one || at + one > list.length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
    const blockLength = long ? list.readUInt32BE(at + 12) : list.readUIntBE(at + 5, 3);
    if (blockLength !== SCSI_BLOCK_BYTES && blockLength !== 0) throw invalidParameter(at + (long ? 12 : 5));
    at += one;
  }
  let wce: boolean | null = null;
  while (at < list.length) {
    if (at + 2 > list.length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
    const code = list.readUInt8(at) & 0x3f;
    if (list.readUInt8(at) & 0x40) throw invalidParameter(at, 6); // SPF: no subpages
    const len = list.readUInt8(at + 1);
    if (!MODE_PAGES.includes(code)) throw invalidParameter(at, 5);
    const current = page(code, 0, medium);
    const changeable = page(code, 1, medium);
    if (len !== current.length - 2) throw invalidParameter(at + 1);
    if (at + 2 + len > list.length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
    for (let i = 2; i < current.length; i++) {
      const diff = (list.readUInt8(at + i) ^ current.readUInt8(i)) & ~changeable.readUInt8(i) & 0xff;
      if (diff !== 0) throw invalidParameter(at + i, 31 - Math.clz32(diff));
    }
    if (code === CACHING) wce = (list.readUInt8(at + 2) & 0x04) !== 0;
    at += 2 + len;
  }
  if (wce === null || wce === medium.writeCache) return false;
  medium.writeCache = wce;
  return true;
}
