// The primary commands (SPC-4 6) and the block commands without data (SBC-3): TEST
// UNIT READY, REQUEST SENSE, INQUIRY, READ CAPACITY, MODE SENSE/SELECT, REPORT LUNS,
// PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE, START STOP UNIT, PREVENT ALLOW MEDIUM
// REMOVAL. Each returns its whole data-in; the command table cuts it to the CDB's
// allocation length.
import { SCSI_BLOCK_BYTES } from '../limits/limits.js';
import { u32, u64, u8 } from './cdb.js';
import type { Exec, Unit } from './context.js';
import { standardInquiry, vpdPage } from './inquiry.js';
import { modeSelect, modeSense } from './mode-pages.js';
import { Reservations } from './reservations.js';
import { Asc, SenseKey, descriptorSense, fixedSense, illegal, invalidField } from './sense.js';

export async function testUnitReady(): Promise<null> {
  return null;
}

/** REQUEST SENSE (SPC-4 6.39): the pending unit attention (now cleared), else NO SENSE; DESC=1 in descriptor format. */
export async function requestSense(u: Unit, x: Exec): Promise<Buffer> {
  const asc = u.attentions.take(x.task.nexus.initiator);
  const fixed = asc === null ? fixedSense(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL) : fixedSense(SenseKey.UNIT_ATTENTION, asc);
  return (u8(x.cdb, 1) & 0x01) !== 0 ? descriptorSense(fixed) : fixed;
}

export async function inquiry(u: Unit, x: Exec): Promise<Buffer> {
  const evpd = (u8(x.cdb, 1) & 0x01) !== 0;
  const page = u8(x.cdb, 2);
  if (!evpd) {
    if (page !== 0) throw invalidField(2);
    return standardInquiry(u.identity, true);
  }
  return vpdPage(page, u.identity, u.medium, x.task.nexus.relativePort);
}

export async function readCapacity10(u: Unit, x: Exec): Promise<Buffer> {
  if ((u8(x.cdb, 8) & 0x01) === 0 && u32(x.cdb, 2) !== 0) throw invalidField(2); // PMI=0 wants LBA 0
  const d = Buffer.alloc(8);
  d.writeUInt32BE(Math.min(u.medium.blocks - 1, 0xffffffff) >>> 0, 0); // 0xFFFFFFFF: ask READ CAPACITY(16)
  d.writeUInt32BE(SCSI_BLOCK_BYTES, 4);
  return d;
}

/** READ CAPACITY(16) (SBC-3 5.16): last LBA, block length, physical block exponent, LBPME/LBPRZ when thin. */
export async function readCapacity16(u: Unit, x: Exec): Promise<Buffer> {
  if ((u8(x.cdb, 14) & 0x01) === 0 && u64(x.cdb, 2) !== 0) throw invalidField(2);
  const d = Buffer.alloc(32);
  d.writeBigUInt64BE(BigInt(Math.max(0, u.medium.blocks - 1)), 0);
  d.writeUInt32BE(SCSI_BLOCK_BYTES, 8);
  d[13] = u.medium.physicalExponent & 0x0f;
  d[14] = u.medium.thin ? 0x80 | 0x40 : 0; // LBPME, LBPRZ; LOWEST ALIGNED LBA 0
  return d;
}

export async function modeSense6(u: Unit, x: Exec): Promise<Buffer> {
  return modeSense(x.cdb, false, u.medium);
}

export async function modeSense10(u: Unit, x: Exec): Promise<Buffer> {
  return modeSense(x.cdb, true, u.medium);
}

async function select(u: Unit, x: Exec, ten: boolean): Promise<null> {
  const wasCaching = u.medium.writeCache;
  if (modeSelect(x.cdb, ten, x.data, u.medium)) {
    u.attentions.raiseAll(Asc.MODE_PARAMETERS_CHANGED, x.task.nexus.initiator);
    // Turning the write cache off: what it held becomes durable now, as a disk writes its cache back.
    if (wasCaching && !u.medium.writeCache) await u.medium.flush();
  }
  return null;
}

export async function modeSelect6(u: Unit, x: Exec): Promise<null> {
  return select(u, x, false);
}

export async function modeSelect10(u: Unit, x: Exec): Promise<null> {
  return select(u, x, true);
}

/** REPORT LUNS (SPC-4 6.33): LUN 0 only, for every SELECT REPORT value defined. */
export async function reportLuns(_u: Unit, x: Exec): Promise<Buffer> {
  if (u8(x.cdb, 2) > 2) throw invalidField(2);
  if (u32(x.cdb, 6) < 4) throw invalidField(6);
  const d = Buffer.alloc(16);
  d.writeUInt32BE(8, 0); // one LUN: 0
  return d;
}

export async function persistentReserveIn(u: Unit, x: Exec): Promise<Buffer> {
  switch (u8(x.cdb, 1) & 0x1f) {
    case 0: return u.reservations.readKeys();
    case 1: return u.reservations.readReservation();
    case 2: return Reservations.reportCapabilities();
    case 3: return u.reservations.readFullStatus();
    default: throw invalidField(1, 4);
  }
}

/** PERSISTENT RESERVE OUT (SPC-4 6.16): a 24-byte parameter list (no SPEC_I_PT, so no longer one). */
export async function persistentReserveOut(u: Unit, x: Exec): Promise<null> {
  const action = u8(x.cdb, 1) & 0x1f;
  if (action > 6) throw invalidField(1, 4);
  if (x.wanted !== 24 || x.data.length < 24) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const preempted = u.reservations.out(x.task.nexus, action, u8(x.cdb, 2), x.data);
  if (action === 5 && preempted.length > 0) u.abortTasksOf(preempted);
  return null;
}

export async function reserve(u: Unit, x: Exec): Promise<null> {
  u.reservations.reserveLegacy(x.task.nexus.initiator);
  return null;
}

export async function release(u: Unit, x: Exec): Promise<null> {
  u.reservations.releaseLegacy(x.task.nexus.initiator);
  return null;
}

/** START STOP UNIT (SBC-3 5.25): nothing to spin or eject; a stop without NO_FLUSH flushes, as a disk does. */
export async function startStopUnit(u: Unit, x: Exec): Promise<null> {
  const b = u8(x.cdb, 4);
  const stop = (b & 0x01) === 0 && (b >> 4) === 0;
  if (stop && (b & 0x04) === 0 && !u.medium.readOnly) await u.medium.flush();
  return null;
}

/** PREVENT ALLOW MEDIUM REMOVAL: the medium is not removable (RMB=0), so there is nothing to prevent. */
export async function preventAllowMediumRemoval(): Promise<null> {
  return null;
}
