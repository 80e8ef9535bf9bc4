// The command table: every command the logical unit runs, with its CDB usage bitmap,
// how it meets reservations and unit attentions, how much data-out its CDB asks for
// and how much data-in it may answer with. execute() dispatches from it, planDataOut()
// sizes data-out from it, the usage bitmaps check every CDB's reserved bits, and
// REPORT SUPPORTED OPERATION CODES is generated from it: what is listed is what runs.
import {
  SCSI_BLOCK_BYTES, SCSI_MAX_COMPARE_AND_WRITE_BLOCKS, SCSI_MAX_PARAMETER_LIST_BYTES, SCSI_MAX_TRANSFER_BYTES,
} from '../limits/limits.js';
import * as B from './block-io.js';
import { blockFields, u16, u32, u8 } from './cdb.js';
import type { Exec, Handler, Unit } from './context.js';
import type { Medium } from './medium.js';
import * as P from './primary-commands.js';
import { getLbaStatus, unmap, writeSame } from './provisioning.js';
import type { Access } from './reservations.js';
import { invalidField } from './sense.js';

export interface Command {
  readonly opcode: number;
  /** The service action (byte 1, bits 4-0) for commands that have them. */
  readonly serviceAction: number | null;
  readonly name: string;
  /** CDB USAGE DATA (SPC-4 6.35.3): byte 0 the opcode, then the bits the command reads. Its length is the CDB's. */
  readonly usage: readonly number[];
  readonly access: Access;
  /** INQUIRY, REPORT LUNS, REQUEST SENSE run despite a pending unit attention (SAM-5 5.14). */
  readonly passesAttention?: boolean;
  /** Offered only when the medium can (UNMAP needs a thin medium); otherwise an unknown opcode. */
  readonly available?: (m: Medium) => boolean;
  /** The data-out the CDB asks for, in bytes, the most the unit takes, and the CDB byte holding its length. */
  readonly dataOut?: { wanted: (cdb: Buffer) => number; limit: number; field: number };
  /** The most data-in the CDB allows (its allocation length, or the transfer length of a READ). */
  readonly dataIn?: (cdb: Buffer) => number;
  readonly run: Handler;
}

const lba4 = [0xff, 0xff, 0xff, 0xff];
const lba8 = [...lba4, ...lba4];
const blocks = (cdb: Buffer): number => blockFields(cdb).count * SCSI_BLOCK_BYTES;
const writeData = { wanted: blocks, limit: SCSI_MAX_TRANSFER_BYTES };
const params = (at: number, read: (cdb: Buffer, at: number) => number): { wanted: (cdb: Buffer) => number; limit: number; field: number } =>
  ({ wanted: (cdb) => read(cdb, at), limit: SCSI_MAX_PARAMETER_LIST_BYTES, field: at });
const verifyData = (field: number): { wanted: (cdb: Buffer) => number; limit: number; field: number } => ({
  wanted: (cdb) => {
    const bytchk = (u8(cdb, 1) >> 1) & 0x03;
    return bytchk === 1 ? blocks(cdb) : bytchk === 3 ? SCSI_BLOCK_BYTES : 0;
  },
  limit: SCSI_MAX_TRANSFER_BYTES,
  field,
});

export const COMMANDS: readonly Command[] = [
  { opcode: 0x00, serviceAction: null, name: 'TEST UNIT READY', usage: [0x00, 0, 0, 0, 0, 0], access: 'always', run: P.testUnitReady },
  { opcode: 0x03, serviceAction: null, name: 'REQUEST SENSE', usage: [0x03, 0x01, 0, 0, 0xff, 0], access: 'always',
    passesAttention: true, dataIn: (c) => u8(c, 4), run: P.requestSense },
  { opcode: 0x08, serviceAction: null, name: 'READ(6)', usage: [0x08, 0x1f, 0xff, 0xff, 0xff, 0], access: 'read', dataIn: blocks, run: B.read },
  { opcode: 0x0a, serviceAction: null, name: 'WRITE(6)', usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, 0], access: 'write',
    dataOut: { ...writeData, field: 4 }, run: B.write },
  { opcode: 0x12, serviceAction: null, name: 'INQUIRY', usage: [0x12, 0x01, 0xff, 0xff, 0xff, 0], access: 'always',
    passesAttention: true, dataIn: (c) => u16(c, 3), run: P.inquiry },
  { opcode: 0x15, serviceAction: null, name: 'MODE SELECT(6)', usage: [0x15, 0x11, 0, 0, 0xff, 0], access: 'write',
    dataOut: params(4, u8), run: P.modeSelect6 },
  { opcode: 0x16, serviceAction: null, name: 'RESERVE(6)', usage: [0x16, 0, 0, 0, 0, 0], access: 'write', run: P.reserve },
  { opcode: 0x17, serviceAction: null, name: 'RELEASE(6)', usage: [0x17, 0, 0, 0, 0, 0], access: 'always', run: P.release },
  { opcode: 0x1a, serviceAction: null, name: 'MODE SENSE(6)', usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0], access: 'read',
    dataIn: (c) => u8(c, 4), run: P.modeSense6 },
  { opcode: 0x1b, serviceAction: null, name: 'START STOP UNIT', usage: [0x1b, 0x01, 0, 0x0f, 0xf7, 0], access: 'write', run: P.startStopUnit },
  { opcode: 0x1e, serviceAction: null, name: 'PREVENT ALLOW MEDIUM REMOVAL', usage: [0x1e, 0, 0, 0, 0x03, 0], access: 'write',
    run: P.preventAllowMediumRemoval },
  { opcode: 0x25, serviceAction: null, name: 'READ CAPACITY(10)', usage: [0x25, 0, ...lba4, 0, 0, 0x01, 0], access: 'always',
    dataIn: () => 8, run: P.readCapacity10 },
  { opcode: 0x28, serviceAction: null, name: 'READ(10)', usage: [0x28, 0x1e, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'read', dataIn: blocks, run: B.read },
  { opcode: 0x2a, serviceAction: null, name: 'WRITE(10)', usage: [0x2a, 0x1a, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'write',
    dataOut: { ...writeData, field: 7 }, run: B.write },
  { opcode: 0x2e, serviceAction: null, name: 'WRITE AND VERIFY(10)', usage: [0x2e, 0x12, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'write',
    dataOut: { ...writeData, field: 7 }, run: B.write },
  { opcode: 0x2f, serviceAction: null, name: 'VERIFY(10)', usage: [0x2f, 0x16, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'read',
    dataOut: verifyData(7), run: B.verify },
  { opcode: 0x34, serviceAction: null, name: 'PRE-FETCH(10)', usage: [0x34, 0x02, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'read', run: B.preFetch },
  { opcode: 0x35, serviceAction: null, name: 'SYNCHRONIZE CACHE(10)', usage: [0x35, 0x06, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'write',
    run: B.synchronizeCache },
  { opcode: 0x37, serviceAction: null, name: 'READ DEFECT DATA(10)', usage: [0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0], access: 'read',
    dataIn: (c) => u16(c, 7), run: B.readDefectData },
  { opcode: 0x41, serviceAction: null, name: 'WRITE SAME(10)', usage: [0x41, 0x08, ...lba4, 0x1f, 0xff, 0xff, 0], access: 'write',
    dataOut: { wanted: () => SCSI_BLOCK_BYTES, limit: SCSI_BLOCK_BYTES, field: 7 }, run: writeSame },
  { opcode: 0x42, serviceAction: null, name: 'UNMAP', usage: [0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0], access: 'write',
    available: (m) => m.thin, dataOut: params(7, u16), run: unmap },
  { opcode: 0x55, serviceAction: null, name: 'MODE SELECT(10)', usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0], access: 'write',
    dataOut: params(7, u16), run: P.modeSelect10 },
  { opcode: 0x56, serviceAction: null, name: 'RESERVE(10)', usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], access: 'write', run: P.reserve },
  { opcode: 0x57, serviceAction: null, name: 'RELEASE(10)', usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], access: 'always', run: P.release },
  { opcode: 0x5a, serviceAction: null, name: 'MODE SENSE(10)', usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0], access: 'read',
    dataIn: (c) => u16(c, 7), run: P.modeSense10 },
  ...[0, 1, 2, 3].map((sa): Command => ({
    opcode: 0x5e, serviceAction: sa, name: `PERSISTENT RESERVE IN/${['READ KEYS', 'READ RESERVATION', 'REPORT CAPABILITIES', 'READ FULL STATUS'][sa]}`,
    usage: [0x5e, sa, 0, 0, 0, 0, 0, 0xff, 0xff, 0], access: 'always', dataIn: (c) => u16(c, 7), run: P.persistentReserveIn,
  })),
  ...[0, 1, 2, 3, 4, 5, 6].map((sa): Command => ({
    opcode: 0x5f, serviceAction: sa,
    name: `PERSISTENT RESERVE OUT/${['REGISTER', 'RESERVE', 'RELEASE', 'CLEAR', 'PREEMPT', 'PREEMPT AND ABORT', 'REGISTER AND IGNORE EXISTING KEY'][sa]}`,
    usage: [0x5f, sa, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0], access: 'always', dataOut: params(5, u32), run: P.persistentReserveOut,
  })),
  { opcode: 0x88, serviceAction: null, name: 'READ(16)', usage: [0x88, 0x1e, ...lba8, ...lba4, 0x1f, 0], access: 'read', dataIn: blocks, run: B.read },
  { opcode: 0x89, serviceAction: null, name: 'COMPARE AND WRITE', usage: [0x89, 0x18, ...lba8, 0, 0, 0, 0xff, 0x1f, 0], access: 'write',
    dataOut: { wanted: (c) => 2 * u8(c, 13) * SCSI_BLOCK_BYTES, limit: 2 * SCSI_MAX_COMPARE_AND_WRITE_BLOCKS * SCSI_BLOCK_BYTES, field: 13 },
    run: B.compareAndWrite },
  { opcode: 0x8a, serviceAction: null, name: 'WRITE(16)', usage: [0x8a, 0x1a, ...lba8, ...lba4, 0x1f, 0], access: 'write',
    dataOut: { ...writeData, field: 10 }, run: B.write },
  { opcode: 0x8b, serviceAction: null, name: 'ORWRITE(16)', usage: [0x8b, 0x1a, ...lba8, ...lba4, 0x1f, 0], access: 'write',
    dataOut: { ...writeData, field: 10 }, run: B.orWrite },
  { opcode: 0x8e, serviceAction: null, name: 'WRITE AND VERIFY(16)', usage: [0x8e, 0x12, ...lba8, ...lba4, 0x1f, 0], access: 'write',
    dataOut: { ...writeData, field: 10 }, run: B.write },
  { opcode: 0x8f, serviceAction: null, name: 'VERIFY(16)', usage: [0x8f, 0x16, ...lba8, ...lba4, 0x1f, 0], access: 'read',
    dataOut: verifyData(10), run: B.verify },
  { opcode: 0x90, serviceAction: null, name: 'PRE-FETCH(16)', usage: [0x90, 0x02, ...lba8, ...lba4, 0x1f, 0], access: 'read', run: B.preFetch },
  { opcode: 0x91, serviceAction: null, name: 'SYNCHRONIZE CACHE(16)', usage: [0x91, 0x06, ...lba8, ...lba4, 0x1f, 0], access: 'write',
    run: B.synchronizeCache },
  { opcode: 0x93, serviceAction: null, name: 'WRITE SAME(16)', usage: [0x93, 0x09, ...lba8, ...lba4, 0x1f, 0], access: 'write',
    dataOut: { wanted: (c) => (u8(c, 1) & 0x01 ? 0 : SCSI_BLOCK_BYTES), limit: SCSI_BLOCK_BYTES, field: 10 }, run: writeSame },
  { opcode: 0x9e, serviceAction: 0x10, name: 'READ CAPACITY(16)', usage: [0x9e, 0x10, ...lba8, ...lba4, 0x01, 0], access: 'always',
    dataIn: (c) => u32(c, 10), run: P.readCapacity16 },
  { opcode: 0x9e, serviceAction: 0x12, name: 'GET LBA STATUS', usage: [0x9e, 0x12, ...lba8, ...lba4, 0, 0], access: 'read',
    dataIn: (c) => u32(c, 10), run: getLbaStatus },
  { opcode: 0xa0, serviceAction: null, name: 'REPORT LUNS', usage: [0xa0, 0, 0xff, 0, 0, 0, ...lba4, 0, 0], access: 'always',
    passesAttention: true, dataIn: (c) => u32(c, 6), run: P.reportLuns },
  { opcode: 0xa3, serviceAction: 0x0c, name: 'REPORT SUPPORTED OPERATION CODES', usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, ...lba4, 0, 0], access: 'always',
    dataIn: (c) => u32(c, 6), run: reportSupportedOperationCodes },
  { opcode: 0xa8, serviceAction: null, name: 'READ(12)', usage: [0xa8, 0x1e, ...lba4, ...lba4, 0x1f, 0], access: 'read', dataIn: blocks, run: B.read },
  { opcode: 0xaa, serviceAction: null, name: 'WRITE(12)', usage: [0xaa, 0x1a, ...lba4, ...lba4, 0x1f, 0], access: 'write',
    dataOut: { ...writeData, field: 6 }, run: B.write },
  { opcode: 0xae, serviceAction: null, name: 'WRITE AND VERIFY(12)', usage: [0xae, 0x12, ...lba4, ...lba4, 0x1f, 0], access: 'write',
    dataOut: { ...writeData, field: 6 }, run: B.write },
  { opcode: 0xaf, serviceAction: null, name: 'VERIFY(12)', usage: [0xaf, 0x16, ...lba4, ...lba4, 0x1f, 0], access: 'read',
    dataOut: verifyData(6), run: B.verify },
  { opcode: 0xb7, serviceAction: null, name: 'READ DEFECT DATA(12)', usage: [0xb7, 0x1f, 0, 0, 0, 0, ...lba4, 0, 0], access: 'read',
    dataIn: (c) => u32(c, 6), run: B.readDefectData },
];

/** Opcodes whose service action (byte 1, bits 4-0) names the command. */
const WITH_SERVICE_ACTIONS = new Set(COMMANDS.filter((c) => c.serviceAction !== null).map((c) => c.opcode));

/** The commands the medium offers, as REPORT SUPPORTED OPERATION CODES lists them. */
export function offered(m: Medium): Command[] {
  return COMMANDS.filter((c) => c.available === undefined || c.available(m));
}

export function hasServiceActions(opcode: number): boolean {
  return WITH_SERVICE_ACTIONS.has(opcode);
}

/** The table by opcode and service action (opcode << 8 | service action, 0 without one): one lookup per command. */
const BY_CODE = new Map(COMMANDS.map((c) => [(c.opcode << 8) | (c.serviceAction ?? 0), c]));
if (BY_CODE.size !== COMMANDS.length) throw new Error('SCSI command table: an opcode and service action listed twice');

/** The command a CDB names on this medium, or null (INVALID COMMAND OPERATION CODE). */
export function lookup(cdb: Buffer, m: Medium): Command | null {
  const op = u8(cdb, 0);
  const c = BY_CODE.get((op << 8) | (WITH_SERVICE_ACTIONS.has(op) ? u8(cdb, 1) & 0x1f : 0));
  if (c === undefined || (c.available !== undefined && !c.available(m))) return null;
  return c;
}

/** INVALID FIELD IN CDB at the first bit the command does not define (its usage bitmap), else nothing. */
export function checkReservedBits(c: Command, cdb: Buffer): void {
  for (let i = 1; i < c.usage.length; i++) {
    let allowed = c.usage[i]!;
    if (i === 1 && c.serviceAction !== null) allowed |= 0x1f;
    const stray = u8(cdb, i) & ~allowed & 0xff;
    if (stray !== 0) throw invalidField(i, 31 - Math.clz32(stray));
  }
}

/** REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): all commands (option 0), or one by opcode (1) or opcode and service action (2). */
async function reportSupportedOperationCodes(u: Unit, x: Exec): Promise<Buffer> {
  const rctd = (u8(x.cdb, 2) & 0x80) !== 0;
  const option = u8(x.cdb, 2) & 0x07;
  const timeouts = (): Buffer => {
    const t = Buffer.alloc(12);
    t.writeUInt16BE(10, 0); // no nominal or recommended timeout reported (0: not specified)
    return t;
  };
  const list = offered(u.medium);
  if (option === 0) {
    const parts = list.map((c) => {
      const d = Buffer.alloc(8);
      d[0] = c.opcode;
      d.writeUInt16BE(c.serviceAction ?? 0, 2);
      d[5] = (rctd ? 0x02 : 0) | (c.serviceAction !== null ? 0x01 : 0); // CTDP, SERVACTV
      d.writeUInt16BE(c.usage.length, 6);
      return rctd ? Buffer.concat([d, timeouts()]) : d;
    });
    const body = Buffer.concat(parts);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    return Buffer.concat([head, body]);
  }
  if (option !== 1 && option !== 2) throw invalidField(2, 2);
  const op = u8(x.cdb, 3);
  const sa = u16(x.cdb, 4);
  const withSa = WITH_SERVICE_ACTIONS.has(op);
  if (option === 1 && withSa) throw invalidField(3);
  if (option === 2 && !withSa && COMMANDS.some((c) => c.opcode === op)) throw invalidField(3);
  const c = list.find((k) => k.opcode === op && (option === 1 ? k.serviceAction === null : k.serviceAction === sa));
  const head = Buffer.alloc(4);
  if (c === undefined) {
    head[1] = 0x01; // SUPPORT: not supported
    return head;
  }
  head[1] = (rctd ? 0x80 : 0) | 0x03; // CTDP, SUPPORT: supported as the standard says
  head.writeUInt16BE(c.usage.length, 2);
  return Buffer.concat([head, Buffer.from(c.usage), ...(rctd ? [timeouts()] : [])]);
}
