// The SCSI logical unit (SPC-4, SBC-3) over an export backend: LUN 0 of an iSCSI
// target. The transport asks planDataOut() before it collects a command's data-out,
// then execute() and gets status, sense and data-in. Per command, in SAM-5's order:
// the LUN (only 0 exists; INQUIRY, REPORT LUNS and REQUEST SENSE answer on any), the
// opcode (the command table), a pending unit attention, a reservation conflict, the
// CDB's reserved bits, then the command itself.
//
// The parts: commands.ts (the command table: usage bitmaps, reservation access,
// data-out and data-in lengths, REPORT SUPPORTED OPERATION CODES), block-io.ts and
// provisioning.ts (SBC commands), primary-commands.ts (SPC commands), inquiry.ts and
// mode-pages.ts (what the unit says of itself), reservations.ts, unit-attention.ts,
// medium.ts (every backend call, checked and split, errors as sense), range-lock.ts
// (COMPARE AND WRITE's atomicity), sense.ts, cdb.ts.
import type { ExportBackend } from '../export/backend.js';
import { assert } from '../invariants/assert.js';
import { SCSI_MAX_TRANSFER_BYTES } from '../limits/limits.js';
import { u16, u32, u8 } from './cdb.js';
import { checkReservedBits, hasServiceActions, lookup, type Command } from './commands.js';
import type { Exec, Unit } from './context.js';
import { checkIdentity, standardInquiry, type UnitIdentity } from './inquiry.js';
import { Medium } from './medium.js';
import { Reservations } from './reservations.js';
import {
  Asc, CheckCondition, ReservationConflict, SenseKey, checkCondition, fixedSense, good, illegal, invalidField, reservationConflict,
} from './sense.js';
import { ScsiStatus, type DataOutPlan, type ScsiLogicalUnitPort, type ScsiNexus, type ScsiResult, type ScsiTask } from './task.js';
import { UnitAttentions } from './unit-attention.js';

export interface LogicalUnitOptions {
  backend: ExportBackend;
  identity: UnitIdentity;
  /** The clock (no command reads it yet: command timeouts in REPORT SUPPORTED OPERATION CODES are reported as unspecified). */
  nowMs?: () => number;
  /**
   * PREEMPT AND ABORT took these nexuses' registrations: the transport aborts their
   * outstanding tasks (no response, as for ABORT TASK SET on each). Absent: only the
   * preemption is done.
   */
  abortTasksOf?: (initiators: readonly string[]) => void;
}

/** The commands that answer on a LUN that does not exist (SPC-4 6.6.2, 6.33, 6.39). */
const INQUIRY = 0x12;
const REPORT_LUNS = 0xa0;
const REQUEST_SENSE = 0x03;

/**
 * An opcode not in the table: INVALID COMMAND OPERATION CODE; a known opcode with a service action not served:
 * INVALID FIELD IN CDB (SPC-4 4.5.2.4, the service action field).
 */
function unknown(cdb: Buffer): CheckCondition {
  return hasServiceActions(u8(cdb, 0)) ? invalidField(1, 4) : illegal(Asc.INVALID_COMMAND_OPERATION_CODE);
}

export class LogicalUnit implements ScsiLogicalUnitPort {
  readonly medium: Medium;
  readonly identity: UnitIdentity;
  readonly attentions = new UnitAttentions();
  readonly reservations: Reservations;
  private readonly unit: Unit;
  readonly nowMs: () => number;

  constructor(opts: LogicalUnitOptions) {
    checkIdentity(opts.identity);
    this.identity = opts.identity;
    this.medium = new Medium(opts.backend);
    this.reservations = new Reservations(this.attentions);
    const abort = opts.abortTasksOf ?? ((): void => {});
    this.unit = { medium: this.medium, identity: this.identity, attentions: this.attentions, reservations: this.reservations, abortTasksOf: abort };
    this.nowMs = opts.nowMs ?? Date.now;
  }

  planDataOut(cdb: Buffer, expectedLength: number, maxDataOut: number): DataOutPlan {
    const c = lookup(cdb, this.medium);
    if (c === null) return expectedLength > 0 ? { kind: 'refuse', result: checkCondition(unknown(cdb)) } : { kind: 'none' };
    const wanted = c.dataOut?.wanted(cdb) ?? 0;
    if (c.dataOut !== undefined && wanted > Math.min(c.dataOut.limit, maxDataOut)) {
      return { kind: 'refuse', result: checkCondition(invalidField(c.dataOut.field), wanted) };
    }
    // The initiator's own length must fit too: the transport collects expectedLength bytes.
    if (expectedLength > Math.min(maxDataOut, SCSI_MAX_TRANSFER_BYTES) && wanted > 0) {
      return { kind: 'refuse', result: checkCondition(new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_INFORMATION_UNIT), wanted) };
    }
    if (wanted === 0) return { kind: 'none' };
    return { kind: 'data', wanted };
  }

  async execute(task: ScsiTask): Promise<ScsiResult> {
    const result = await this.run(task);
    assert((result.status === ScsiStatus.CHECK_CONDITION) === (result.sense !== null),
      () => `SCSI result with status 0x${result.status.toString(16)} ${result.sense === null ? 'without' : 'with'} sense`);
    return result;
  }

  private async run(task: ScsiTask): Promise<ScsiResult> {
    const nexus = task.nexus.initiator;
    this.attentions.touch(nexus);
    // (A grown volume: every nexus is told, this one too, SPC-4 6.27 / SBC-3 5.16.)
    if (this.medium.resized()) this.attentions.raiseAll(Asc.CAPACITY_DATA_HAS_CHANGED);
    // iSCSI hands the CDB in a 16-byte field; a shorter buffer reads as zero-padded.
    const cdb = task.cdb.length >= 16 ? task.cdb : Buffer.concat([task.cdb, Buffer.alloc(16 - task.cdb.length)]);
    const op = u8(cdb, 0);
    if (task.lun !== 0) return this.absentLun(task, cdb);
    const c = lookup(cdb, this.medium);
    const wanted = c?.dataOut?.wanted(cdb) ?? 0;
    if (c === null || c.passesAttention !== true) {
      const asc = this.attentions.take(nexus);
      if (asc !== null) return checkCondition(new CheckCondition(SenseKey.UNIT_ATTENTION, asc), wanted);
    }
    if (c === null) return checkCondition(unknown(cdb));
    try {
      this.reservations.check(nexus, c.access, op);
      checkReservedBits(c, cdb);
      if (c.dataOut !== undefined && wanted > c.dataOut.limit) throw invalidField(c.dataOut.field);
      const got = task.dataOut ?? Buffer.alloc(0);
      const x: Exec = { task, cdb, data: got.length > wanted ? got.subarray(0, wanted) : got, wanted };
      const dataIn = await c.run(this.unit, x);
      return good(this.cut(c, cdb, dataIn), wanted);
    } catch (e) {
      if (e instanceof CheckCondition) return checkCondition(e, wanted);
      if (e instanceof ReservationConflict) return reservationConflict(wanted);
      throw e;
    }
  }

  /** Data-in cut to what the CDB allows: an allocation length, or exactly the transfer length of a READ. */
  private cut(c: Command, cdb: Buffer, dataIn: Buffer | null): Buffer | null {
    if (dataIn === null) return null;
    assert(c.dataIn !== undefined, () => `${c.name} produced data-in it has no length for`);
    const allowed = c.dataIn(cdb);
    const out = dataIn.length > allowed ? dataIn.subarray(0, allowed) : dataIn;
    assert(out.length <= allowed, () => `${c.name}: ${out.length} bytes of data-in over the ${allowed} the CDB allows`);
    return out;
  }

  /** A LUN other than 0: INQUIRY says nobody is there, REPORT LUNS lists LUN 0, REQUEST SENSE says why; the rest are refused. */
  private async absentLun(task: ScsiTask, cdb: Buffer): Promise<ScsiResult> {
    switch (u8(cdb, 0)) {
      case INQUIRY: {
        if ((u8(cdb, 1) & 0x01) !== 0) return checkCondition(new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED));
        const d = standardInquiry(this.identity, false);
        return good(d.subarray(0, Math.min(d.length, u16(cdb, 3))));
      }
      case REPORT_LUNS: {
        if (u32(cdb, 6) < 4) return checkCondition(invalidField(6));
        const d = Buffer.alloc(16);
        d.writeUInt32BE(8, 0);
        return good(d.subarray(0, Math.min(16, u32(cdb, 6))));
      }
      case REQUEST_SENSE: {
        const s = fixedSense(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED);
        return good(s.subarray(0, Math.min(s.length, u8(cdb, 4))));
      }
      default: {
        const c = lookup(cdb, this.medium);
        return checkCondition(new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED), c?.dataOut?.wanted(cdb) ?? 0);
      }
    }
  }

  reset(kind: 'lun' | 'target-warm' | 'target-cold', _by: ScsiNexus): void {
    // SAM-5 6.3: every nexus learns of the reset; an SPC-2 reservation ends, persistent ones stay.
    this.reservations.resetLegacy(null);
    this.attentions.raiseAll(kind === 'lun' ? Asc.LUN_RESET_OCCURRED : kind === 'target-warm' ? Asc.TARGET_RESET_OCCURRED : Asc.POWER_ON_RESET_OCCURRED);
    if (kind === 'target-cold' && !this.medium.writeCache) this.medium.writeCache = true; // mode parameters back to their defaults
  }

  nexusLost(nexus: ScsiNexus): void {
    this.reservations.resetLegacy(nexus.initiator);
    this.attentions.lost(nexus.initiator);
  }

  nexusAdded(nexus: ScsiNexus): void {
    this.attentions.added(nexus.initiator);
  }
}

