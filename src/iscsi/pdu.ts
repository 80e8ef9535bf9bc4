// iSCSI PDUs (RFC 7143 section 11): the 48-byte Basic Header Segment of every opcode
// we receive and send, the Additional Header Segments we read (extended CDB,
// bidirectional read length), padding to 4 bytes. Digests and outgoing frames: framing.ts.
//
// Decoding reads fields out of the BHS on demand (`u32(bhs, 24)` is CmdSN in every
// initiator PDU that has one); encoding builds each target PDU's BHS from its fields.
// Byte layouts are in docs/ISCSI-PROTOCOL.md, "PDUs".

export const BHS_LENGTH = 48;
/** The "no tag" value of ITT and TTT (RFC 7143 11.2.1.7). */
export const RESERVED_TAG = 0xffffffff;

/** Opcodes (RFC 7143 11.2.1.2): initiator to target. */
export const Op = {
  NOP_OUT: 0x00,
  SCSI_COMMAND: 0x01,
  TASK_MGMT_REQUEST: 0x02,
  LOGIN_REQUEST: 0x03,
  TEXT_REQUEST: 0x04,
  DATA_OUT: 0x05,
  LOGOUT_REQUEST: 0x06,
  SNACK_REQUEST: 0x10,
  // target to initiator
  NOP_IN: 0x20,
  SCSI_RESPONSE: 0x21,
  TASK_MGMT_RESPONSE: 0x22,
  LOGIN_RESPONSE: 0x23,
  TEXT_RESPONSE: 0x24,
  DATA_IN: 0x25,
  LOGOUT_RESPONSE: 0x26,
  R2T: 0x31,
  ASYNC_MESSAGE: 0x32,
  REJECT: 0x3f,
} as const;

/** Reject reasons (RFC 7143 11.17.1). */
export const RejectReason = {
  DATA_DIGEST_ERROR: 0x02,
  SNACK_REJECT: 0x03,
  PROTOCOL_ERROR: 0x04,
  COMMAND_NOT_SUPPORTED: 0x05,
  IMMEDIATE_COMMAND_REJECT: 0x06,
  TASK_IN_PROGRESS: 0x07,
  INVALID_DATA_ACK: 0x08,
  INVALID_PDU_FIELD: 0x09,
  OUT_OF_RESOURCES: 0x0a,
  WAITING_FOR_LOGOUT: 0x0c,
} as const;

/** A PDU as read from the wire: the BHS, its AHS (null: none) and its data segment without padding or digest. */
export interface RawPdu {
  readonly bhs: Buffer;
  readonly ahs: Buffer | null;
  readonly data: Buffer;
}

export function opcodeOf(bhs: Buffer): number {
  return bhs[0]! & 0x3f;
}
export function isImmediate(bhs: Buffer): boolean {
  return (bhs[0]! & 0x40) !== 0;
}
export function isFinal(bhs: Buffer): boolean {
  return (bhs[1]! & 0x80) !== 0;
}
export function ahsLengthOf(bhs: Buffer): number {
  return bhs[4]! * 4;
}
export function dataLengthOf(bhs: Buffer): number {
  return (bhs[5]! << 16) | (bhs[6]! << 8) | bhs[7]!;
}
export function u32(bhs: Buffer, offset: number): number {
  return bhs.readUInt32BE(offset);
}
export function ittOf(bhs: Buffer): number {
  return bhs.readUInt32BE(16);
}
/** Bytes of padding after a segment of this length (to a multiple of 4). */
export function padOf(length: number): number {
  return (4 - (length & 3)) & 3;
}

/**
 * The LUN field (SAM-5 4.7) as a number: single-level peripheral (00b) and flat (01b)
 * addressing; any other form (or a nonzero second level) is a LUN we do not have,
 * returned as -1.
 */
export function lunOf(bhs: Buffer): number {
  const b0 = bhs[8]!;
  for (let i = 10; i < 16; i++) if (bhs[i] !== 0) return -1;
  const method = b0 >> 6;
  if (method === 0) return (b0 & 0x3f) === 0 ? bhs[9]! : -1;
  if (method === 1) return ((b0 & 0x3f) << 8) | bhs[9]!;
  return -1;
}

// --- initiator PDUs, decoded ---------------------------------------------------------

export interface LoginRequest {
  transit: boolean;
  cont: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionMin: number;
  isid: Buffer;
  tsih: number;
  itt: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

export function decodeLoginRequest(bhs: Buffer): LoginRequest {
  const b1 = bhs[1]!;
  return {
    transit: (b1 & 0x80) !== 0,
    cont: (b1 & 0x40) !== 0,
    csg: (b1 >> 2) & 3,
    nsg: b1 & 3,
    versionMax: bhs[2]!,
    versionMin: bhs[3]!,
    isid: Buffer.from(bhs.subarray(8, 14)),
    tsih: bhs.readUInt16BE(14),
    itt: bhs.readUInt32BE(16),
    cid: bhs.readUInt16BE(20),
    cmdSN: bhs.readUInt32BE(24),
    expStatSN: bhs.readUInt32BE(28),
  };
}

export interface ScsiCommand {
  immediate: boolean;
  final: boolean;
  read: boolean;
  write: boolean;
  attr: number;
  lun: number;
  lunBytes: Buffer;
  itt: number;
  expectedLength: number;
  cmdSN: number;
  expStatSN: number;
  cdb: Buffer;
  /** The expected bidirectional read length (AHS type 2), or null. */
  bidiReadLength: number | null;
}

/** AHS types (RFC 7143 11.2.2). */
const AHS_EXTENDED_CDB = 1;
const AHS_BIDI_READ_LENGTH = 2;

/** Decodes a SCSI Command; returns a string saying what is wrong with its AHS instead. */
export function decodeScsiCommand(pdu: RawPdu): ScsiCommand | string {
  const bhs = pdu.bhs;
  const b1 = bhs[1]!;
  let cdb: Buffer = Buffer.from(bhs.subarray(32, 48));
  let bidi: number | null = null;
  if (pdu.ahs) {
    let off = 0;
    while (off < pdu.ahs.length) {
      if (off + 3 > pdu.ahs.length) return 'truncated AHS';
      const len = pdu.ahs.readUInt16BE(off);
      const type = pdu.ahs[off + 2]!;
      const body = off + 3; // the first byte after the type is reserved for type 1 and part of the field for 2
      const end = off + 3 + len;
      if (end > pdu.ahs.length) return 'AHS longer than TotalAHSLength';
      if (type === AHS_EXTENDED_CDB) {
        if (len < 2) return 'empty extended CDB AHS';
        cdb = Buffer.concat([cdb, pdu.ahs.subarray(body + 1, end)]);
      } else if (type === AHS_BIDI_READ_LENGTH) {
        if (len !== 5) return 'bidirectional read length AHS of the wrong length';
        bidi = pdu.ahs.readUInt32BE(body + 1);
      } else {
        return `unknown AHS type ${type}`;
      }
      off = end + padOf(len + 3);
    }
  }
  return {
    immediate: isImmediate(bhs),
    final: (b1 & 0x80) !== 0,
    read: (b1 & 0x40) !== 0,
    write: (b1 & 0x20) !== 0,
    attr: b1 & 7,
    lun: lunOf(bhs),
    lunBytes: Buffer.from(bhs.subarray(8, 16)),
    itt: bhs.readUInt32BE(16),
    expectedLength: bhs.readUInt32BE(20),
    cmdSN: bhs.readUInt32BE(24),
    expStatSN: bhs.readUInt32BE(28),
    cdb,
    bidiReadLength: bidi,
  };
}

export interface DataOut {
  final: boolean;
  itt: number;
  ttt: number;
  dataSN: number;
  bufferOffset: number;
}

export function decodeDataOut(bhs: Buffer): DataOut {
  return {
    final: isFinal(bhs),
    itt: bhs.readUInt32BE(16),
    ttt: bhs.readUInt32BE(20),
    dataSN: bhs.readUInt32BE(36),
    bufferOffset: bhs.readUInt32BE(40),
  };
}

export interface TaskMgmtRequest {
  immediate: boolean;
  fn: number;
  lun: number;
  lunBytes: Buffer;
  itt: number;
  referencedTag: number;
  cmdSN: number;
  refCmdSN: number;
}

export function decodeTaskMgmtRequest(bhs: Buffer): TaskMgmtRequest {
  return {
    immediate: isImmediate(bhs),
    fn: bhs[1]! & 0x7f,
    lun: lunOf(bhs),
    lunBytes: Buffer.from(bhs.subarray(8, 16)),
    itt: bhs.readUInt32BE(16),
    referencedTag: bhs.readUInt32BE(20),
    cmdSN: bhs.readUInt32BE(24),
    refCmdSN: bhs.readUInt32BE(32),
  };
}

// --- target PDUs, encoded ------------------------------------------------------------

/** The sequence numbers every status-bearing target PDU carries at bytes 24, 28, 32. */
export interface SeqNumbers {
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

function header(opcode: number, b1: number, dataLength: number): Buffer {
  const b = Buffer.alloc(BHS_LENGTH);
  b[0] = opcode;
  b[1] = b1;
  b[5] = (dataLength >> 16) & 0xff;
  b[6] = (dataLength >> 8) & 0xff;
  b[7] = dataLength & 0xff;
  return b;
}

function putSeq(b: Buffer, s: SeqNumbers): void {
  b.writeUInt32BE(s.statSN >>> 0, 24);
  b.writeUInt32BE(s.expCmdSN >>> 0, 28);
  b.writeUInt32BE(s.maxCmdSN >>> 0, 32);
}

export interface LoginResponseFields extends SeqNumbers {
  transit: boolean;
  cont: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionActive: number;
  isid: Buffer;
  tsih: number;
  itt: number;
  statusClass: number;
  statusDetail: number;
}

export function encodeLoginResponse(f: LoginResponseFields, dataLength: number): Buffer {
  const b1 = (f.transit ? 0x80 : 0) | (f.cont ? 0x40 : 0) | ((f.csg & 3) << 2) | (f.transit ? f.nsg & 3 : 0);
  const b = header(Op.LOGIN_RESPONSE, b1, dataLength);
  b[2] = f.versionMax;
  b[3] = f.versionActive;
  f.isid.copy(b, 8, 0, 6);
  b.writeUInt16BE(f.tsih, 14);
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  b[36] = f.statusClass;
  b[37] = f.statusDetail;
  return b;
}

export function encodeTextResponse(f: SeqNumbers & { final: boolean; cont: boolean; itt: number; ttt: number; lunBytes: Buffer }, dataLength: number): Buffer {
  const b = header(Op.TEXT_RESPONSE, (f.final ? 0x80 : 0) | (f.cont ? 0x40 : 0), dataLength);
  f.lunBytes.copy(b, 8, 0, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  putSeq(b, f);
  return b;
}

export interface ScsiResponseFields extends SeqNumbers {
  itt: number;
  response: number;
  status: number;
  overflow: boolean;
  underflow: boolean;
  residual: number;
  bidiOverflow: boolean;
  bidiUnderflow: boolean;
  bidiResidual: number;
  expDataSN: number;
}

export function encodeScsiResponse(f: ScsiResponseFields, dataLength: number): Buffer {
  const b1 = 0x80 | (f.bidiOverflow ? 0x10 : 0) | (f.bidiUnderflow ? 0x08 : 0) | (f.overflow ? 0x04 : 0) | (f.underflow ? 0x02 : 0);
  const b = header(Op.SCSI_RESPONSE, b1, dataLength);
  b[2] = f.response;
  b[3] = f.status;
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  b.writeUInt32BE(f.expDataSN >>> 0, 36);
  b.writeUInt32BE(f.bidiResidual >>> 0, 40);
  b.writeUInt32BE(f.residual >>> 0, 44);
  return b;
}

export interface DataInFields {
  final: boolean;
  /** Status in this PDU (S bit): then `status`, the residual flags and StatSN count. */
  withStatus: boolean;
  status: number;
  overflow: boolean;
  underflow: boolean;
  residual: number;
  lunBytes: Buffer;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  dataSN: number;
  bufferOffset: number;
}

export function encodeDataIn(f: DataInFields, dataLength: number): Buffer {
  let b1 = f.final ? 0x80 : 0;
  if (f.withStatus) b1 |= 0x01 | (f.overflow ? 0x04 : 0) | (f.underflow ? 0x02 : 0);
  const b = header(Op.DATA_IN, b1, dataLength);
  if (f.withStatus) b[3] = f.status;
  f.lunBytes.copy(b, 8, 0, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(RESERVED_TAG, 20);
  b.writeUInt32BE(f.withStatus ? f.statSN >>> 0 : 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE(f.withStatus ? f.residual >>> 0 : 0, 44);
  return b;
}

export function encodeR2T(f: SeqNumbers & { lunBytes: Buffer; itt: number; ttt: number; r2tSN: number; bufferOffset: number; length: number }): Buffer {
  const b = header(Op.R2T, 0x80, 0);
  f.lunBytes.copy(b, 8, 0, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  putSeq(b, f);
  b.writeUInt32BE(f.r2tSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE(f.length >>> 0, 44);
  return b;
}

export function encodeNopIn(f: SeqNumbers & { lunBytes: Buffer; itt: number; ttt: number }, dataLength: number): Buffer {
  const b = header(Op.NOP_IN, 0x80, dataLength);
  f.lunBytes.copy(b, 8, 0, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  putSeq(b, f);
  return b;
}

export function encodeTaskMgmtResponse(f: SeqNumbers & { itt: number; response: number }): Buffer {
  const b = header(Op.TASK_MGMT_RESPONSE, 0x80, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  return b;
}

export function encodeLogoutResponse(f: SeqNumbers & { itt: number; response: number; time2Wait: number; time2Retain: number }): Buffer {
  const b = header(Op.LOGOUT_RESPONSE, 0x80, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  b.writeUInt16BE(f.time2Wait, 40);
  b.writeUInt16BE(f.time2Retain, 42);
  return b;
}

/** A Reject: its data segment is the rejected PDU's BHS (RFC 7143 11.17). */
export function encodeReject(f: SeqNumbers & { reason: number }): Buffer {
  const b = header(Op.REJECT, 0x80, BHS_LENGTH);
  b[2] = f.reason;
  b.writeUInt32BE(RESERVED_TAG, 16);
  putSeq(b, f);
  return b;
}

/** An Async Message (RFC 7143 11.9): event 1 asks the initiator to log out within `param3` seconds. */
export function encodeAsyncMessage(f: SeqNumbers & { event: number; param1: number; param2: number; param3: number }): Buffer {
  const b = header(Op.ASYNC_MESSAGE, 0x80, 0);
  b.writeUInt32BE(RESERVED_TAG, 16);
  putSeq(b, f);
  b[36] = f.event;
  b.writeUInt16BE(f.param1, 38);
  b.writeUInt16BE(f.param2, 40);
  b.writeUInt16BE(f.param3, 42);
  return b;
}
