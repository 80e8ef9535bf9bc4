// INQUIRY data (SPC-4 6.6, 7.8; SBC-3 6.5): the standard data with its version
// descriptors and the VPD pages initiators read to identify the disk and its limits:
// 0x00 (the list), 0x80 (serial), 0x83 (device identification: NAA, T10 vendor id,
// relative target port, target port group), 0xB0 (block limits), 0xB1 (block device
// characteristics), 0xB2 (logical block provisioning).
import { assert } from '../invariants/assert.js';
import {
  SCSI_BLOCK_BYTES, SCSI_MAX_COMPARE_AND_WRITE_BLOCKS, SCSI_MAX_TRANSFER_BYTES, SCSI_MAX_UNMAP_BLOCKS, SCSI_MAX_UNMAP_DESCRIPTORS,
  SCSI_MAX_WRITE_SAME_BLOCKS,
} from '../limits/limits.js';
import type { Medium } from './medium.js';
import { invalidField } from './sense.js';

export const VENDOR = 'OFFSITE ';

/** Who the unit is: the same on both sites and across promote and demote (issue 17 item 4). */
export interface UnitIdentity {
  /** NAA type 3 (locally assigned) identifier, 8 bytes. */
  naa: Buffer;
  serial: string;
  /** At most 16 characters. */
  product: string;
  /** At most 4 characters. */
  revision: string;
}

/** Version descriptors (SPC-4 table 145): SAM-5, iSCSI, SPC-4, SBC-3. */
const VERSION_DESCRIPTORS = [0x00a0, 0x0960, 0x0460, 0x04c0];
/** The standard INQUIRY data's length: through the version descriptors and their reserved tail (SPC-4 6.6.2). */
export const STANDARD_INQUIRY_BYTES = 96;
/** The VPD pages served, in order. */
export const VPD_PAGES = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

const printable = (s: string): boolean => /^[\x20-\x7e]*$/.test(s);

export function checkIdentity(id: UnitIdentity): void {
  assert(id.naa.length === 8 && (id.naa.readUInt8(0) >> 4) === 3, 'the unit NAA identifier must be 8 bytes of NAA type 3');
  assert(printable(id.serial) && id.serial.length > 0 && id.serial.length <= 64,
    `unit serial ${JSON.stringify(id.serial)}: 1 to 64 printable ASCII characters`);
  assert(printable(id.product) && id.product.length <= 16, `unit product ${JSON.stringify(id.product)}: at most 16 printable ASCII characters`);
  assert(printable(id.revision) && id.revision.length <= 4, `unit revision ${JSON.stringify(id.revision)}: at most 4 printable ASCII characters`);
}

function ascii(s: string, width: number): Buffer {
  return Buffer.from(s.padEnd(width, ' ').slice(0, width), 'latin1');
}

/** Standard INQUIRY data; `present` false answers for a LUN that is not there (qualifier 3, type 0x1F). */
export function standardInquiry(id: UnitIdentity, present: boolean): Buffer {
  const d = Buffer.alloc(STANDARD_INQUIRY_BYTES);
  d[0] = present ? 0x00 : 0x7f; // qualifier 0, direct access block device
  d[1] = 0x00; // RMB=0: not removable
  d[2] = 0x06; // VERSION: SPC-4
  d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
  d[4] = STANDARD_INQUIRY_BYTES - 5;
  d[5] = 0x00; // SCCS, ACC, TPGS, 3PC, PROTECT all 0
  d[6] = 0x00;
  d[7] = 0x02; // CMDQUE
  ascii(VENDOR, 8).copy(d, 8);
  ascii(id.product, 16).copy(d, 16);
  ascii(id.revision, 4).copy(d, 32);
  VERSION_DESCRIPTORS.forEach((v, i) => d.writeUInt16BE(v, 58 + 2 * i));
  return d;
}

/** A VPD page (INQUIRY with EVPD=1); INVALID FIELD IN CDB (byte 2) for a page not served. */
export function vpdPage(page: number, id: UnitIdentity, medium: Medium, relativePort: number): Buffer {
  switch (page) {
    case 0x00: return vpd(page, Buffer.from(VPD_PAGES));
    case 0x80: return vpd(page, Buffer.from(id.serial, 'latin1'));
    case 0x83: return vpd(page, deviceIdentification(id, relativePort));
    case 0xb0: return vpd(page, blockLimits(medium));
    case 0xb1: {
      const b = Buffer.alloc(0x3c);
      b.writeUInt16BE(0x0001, 0); // MEDIUM ROTATION RATE: non-rotating medium
      return vpd(page, b);
    }
    case 0xb2: {
      const b = Buffer.alloc(4);
      if (medium.thin) {
        b[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ (deallocated blocks read zeros)
        b[2] = 0x02; // PROVISIONING TYPE: thin
      }
      return vpd(page, b);
    }
    default: throw invalidField(2);
  }
}

function vpd(page: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[1] = page;
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function designator(codeSet: number, association: number, type: number, value: Buffer, protocol = 0): Buffer {
  const d = Buffer.alloc(4 + value.length);
  d[0] = (protocol << 4) | codeSet;
  d[1] = (protocol !== 0 ? 0x80 : 0) | (association << 4) | type; // PIV with a protocol identifier
  d[3] = value.length;
  value.copy(d, 4);
  return d;
}

const ISCSI_PROTOCOL = 0x5;

function deviceIdentification(id: UnitIdentity, relativePort: number): Buffer {
  const port = Buffer.alloc(4);
  port.writeUInt16BE(relativePort & 0xffff, 2);
  const group = Buffer.alloc(4);
  group.writeUInt16BE(1, 2);
  return Buffer.concat([
    designator(1, 0, 3, id.naa), // binary, logical unit, NAA
    designator(2, 0, 1, Buffer.concat([ascii(VENDOR, 8), Buffer.from(id.serial, 'latin1')])), // ASCII, logical unit, T10 vendor id
    designator(1, 1, 4, port, ISCSI_PROTOCOL), // binary, target port, relative target port
    designator(1, 1, 5, group, ISCSI_PROTOCOL), // binary, target port, target port group
  ]);
}

function blockLimits(m: Medium): Buffer {
  const b = Buffer.alloc(0x3c);
  const perPhysical = 1 << m.physicalExponent;
  b[0] = 0x01; // WSNZ: WRITE SAME of 0 blocks is refused (not "to the end of the medium")
  b[1] = m.readOnly ? 0 : SCSI_MAX_COMPARE_AND_WRITE_BLOCKS;
  b.writeUInt16BE(perPhysical, 2); // OPTIMAL TRANSFER LENGTH GRANULARITY
  b.writeUInt32BE(SCSI_MAX_TRANSFER_BYTES / SCSI_BLOCK_BYTES, 4); // MAXIMUM TRANSFER LENGTH
  b.writeUInt32BE(SCSI_MAX_TRANSFER_BYTES / SCSI_BLOCK_BYTES, 8); // OPTIMAL TRANSFER LENGTH
  if (m.thin) {
    b.writeUInt32BE(SCSI_MAX_UNMAP_BLOCKS, 16); // MAXIMUM UNMAP LBA COUNT
    b.writeUInt32BE(SCSI_MAX_UNMAP_DESCRIPTORS, 20); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    b.writeUInt32BE(perPhysical, 24); // OPTIMAL UNMAP GRANULARITY
    b.writeUInt32BE(0x80000000, 28); // UGAVALID, alignment 0
  }
  b.writeBigUInt64BE(BigInt(m.readOnly ? 0 : SCSI_MAX_WRITE_SAME_BLOCKS), 32); // MAXIMUM WRITE SAME LENGTH
  return b;
}
