// Sense data (SPC-4 4.5): the sense keys and additional sense codes the logical unit
// answers with, fixed-format sense (response code 0x70) and, for REQUEST SENSE with
// DESC=1, its descriptor-format twin. A command that fails throws a CheckCondition (or
// a ReservationConflict); the logical unit turns it into the result.
import { ScsiStatus, type ScsiResult } from './task.js';

export const SenseKey = {
  NO_SENSE: 0x0,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;

/** Additional sense code and qualifier, as 0xAAQQ. */
export const Asc = {
  NO_ADDITIONAL: 0x0000,
  WRITE_ERROR: 0x0c00,
  INVALID_FIELD_IN_INFORMATION_UNIT: 0x0e03,
  UNRECOVERED_READ_ERROR: 0x1100,
  PARAMETER_LIST_LENGTH_ERROR: 0x1a00,
  MISCOMPARE_DURING_VERIFY: 0x1d00,
  INVALID_COMMAND_OPERATION_CODE: 0x2000,
  LBA_OUT_OF_RANGE: 0x2100,
  INVALID_FIELD_IN_CDB: 0x2400,
  LOGICAL_UNIT_NOT_SUPPORTED: 0x2500,
  INVALID_FIELD_IN_PARAMETER_LIST: 0x2600,
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: 0x2604,
  WRITE_PROTECTED: 0x2700,
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: 0x2707,
  POWER_ON_RESET_OCCURRED: 0x2900,
  TARGET_RESET_OCCURRED: 0x2902,
  LUN_RESET_OCCURRED: 0x2903,
  MODE_PARAMETERS_CHANGED: 0x2a01,
  RESERVATIONS_PREEMPTED: 0x2a03,
  RESERVATIONS_RELEASED: 0x2a04,
  REGISTRATIONS_PREEMPTED: 0x2a05,
  CAPACITY_DATA_HAS_CHANGED: 0x2a09,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x3900,
  INSUFFICIENT_REGISTRATION_RESOURCES: 0x5504,
  INTERNAL_TARGET_FAILURE: 0x4400,
} as const;

/** Where in the CDB (or parameter list) the bad field is: SPC-4 4.5.2.4.2, the field pointer. */
export interface FieldPointer {
  /** true: in the CDB; false: in the parameter list. */
  cdb: boolean;
  byte: number;
  /** The field's most significant bit, when it does not start a byte. */
  bit?: number;
}

/** A command ends in CHECK CONDITION with this sense. */
export class CheckCondition extends Error {
  constructor(readonly key: number, readonly asc: number, readonly field: FieldPointer | null = null, readonly information: number | null = null) {
    super(`sense ${key.toString(16)}/${asc.toString(16).padStart(4, '0')}`);
  }
}

/** A command ends in RESERVATION CONFLICT (no sense). */
export class ReservationConflict extends Error {
  constructor() {
    super('reservation conflict');
  }
}

/** ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at byte (and bit) of the CDB. */
export function invalidField(byte: number, bit?: number): CheckCondition {
  return new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, bit === undefined ? { cdb: true, byte } : { cdb: true, byte, bit });
}

/** ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at byte (and bit) of the list. */
export function invalidParameter(byte: number, bit?: number): CheckCondition {
  return new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    bit === undefined ? { cdb: false, byte } : { cdb: false, byte, bit });
}

export function illegal(asc: number): CheckCondition {
  return new CheckCondition(SenseKey.ILLEGAL_REQUEST, asc);
}

export const FIXED_SENSE_BYTES = 18;

/** Fixed-format sense data (SPC-4 4.5.3), 18 bytes. */
export function fixedSense(key: number, asc: number, field: FieldPointer | null = null, information: number | null = null): Buffer {
  const s = Buffer.alloc(FIXED_SENSE_BYTES);
  s[0] = 0x70 | (information !== null ? 0x80 : 0);
  s[2] = key & 0x0f;
  if (information !== null) s.writeUInt32BE(information >>> 0, 3);
  s[7] = FIXED_SENSE_BYTES - 8;
  s[12] = asc >> 8;
  s[13] = asc & 0xff;
  if (field !== null) {
    s[15] = 0x80 | (field.cdb ? 0x40 : 0) | (field.bit !== undefined ? 0x08 | (field.bit & 0x07) : 0);
    s.writeUInt16BE(field.byte, 16);
  }
  return s;
}

/** The same sense in descriptor format (SPC-4 4.5.2), for REQUEST SENSE with DESC=1. */
export function descriptorSense(fixed: Buffer): Buffer {
  const hasInfo = (fixed.readUInt8(0) & 0x80) !== 0;
  const hasField = (fixed.readUInt8(15) & 0x80) !== 0;
  const s = Buffer.alloc(8 + (hasInfo ? 12 : 0) + (hasField ? 8 : 0));
  s[0] = 0x72;
  s[1] = fixed.readUInt8(2) & 0x0f;
  s[2] = fixed.readUInt8(12);
  s[3] = fixed.readUInt8(13);
  s[7] = s.length - 8;
  let at = 8;
  if (hasInfo) {
    s[at] = 0x00; s[at + 1] = 0x0a; s[at + 2] = 0x80;
    s.writeUInt32BE(fixed.readUInt32BE(3), at + 8);
    at += 12;
  }
  if (hasField) {
    s[at] = 0x02; s[at + 1] = 0x06;
    fixed.copy(s, at + 4, 15, 18);
  }
  return s;
}

export function good(dataIn: Buffer | null = null, dataOutWanted = 0): ScsiResult {
  return { status: ScsiStatus.GOOD, sense: null, dataIn, dataOutWanted };
}

export function checkCondition(e: CheckCondition, dataOutWanted = 0): ScsiResult {
  return { status: ScsiStatus.CHECK_CONDITION, sense: fixedSense(e.key, e.asc, e.field, e.information), dataIn: null, dataOutWanted };
}

export function reservationConflict(dataOutWanted = 0): ScsiResult {
  return { status: ScsiStatus.RESERVATION_CONFLICT, sense: null, dataIn: null, dataOutWanted };
}

/** How a backend error (an errno name) reads to the initiator (SBC-3 4.18, 5.x). */
export function senseForDiskError(code: string, op: 'read' | 'write', thin: boolean): CheckCondition {
  switch (code) {
    case 'ENOSPC': case 'EDQUOT': case 'EFBIG':
      return thin
        ? new CheckCondition(SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
        : new CheckCondition(SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR);
    case 'EROFS': case 'EPERM': case 'EACCES':
      return new CheckCondition(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED);
    case 'EIO':
      return new CheckCondition(SenseKey.MEDIUM_ERROR, op === 'read' ? Asc.UNRECOVERED_READ_ERROR : Asc.WRITE_ERROR);
    default:
      return new CheckCondition(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
  }
}
