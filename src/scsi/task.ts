// The contract between a SCSI transport (iSCSI today) and a logical unit: the transport
// carries a CDB and its data, the logical unit (src/scsi/logical-unit.ts) decodes it
// against an export backend (src/export/backend.ts) and answers with a status, sense
// data and the data to send back. Nothing here knows about PDUs, sockets or sessions.

/** SAM status codes the logical unit answers with. */
export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

/**
 * The I_T nexus a command arrived on: reservations, unit attentions and REQUEST SENSE
 * are kept per nexus. `initiator` is the initiator's name plus its session id (iSCSI:
 * `iqn...,i,0x<ISID>`); `transportId` is the TransportID bytes PERSISTENT RESERVE
 * reports (SPC-4 7.6.4.6, iSCSI format).
 */
export interface ScsiNexus {
  readonly initiator: string;
  readonly transportId: Buffer;
  /** The relative target port identifier (1 for the only port). */
  readonly relativePort: number;
}

export interface ScsiTask {
  readonly nexus: ScsiNexus;
  readonly lun: number;
  /** The CDB, 6 to 16 bytes or longer (an extended CDB), exactly as the initiator sent it. */
  readonly cdb: Buffer;
  /** The initiator's Expected Data Transfer Length (iSCSI EDTL): data-in it can take, or data-out it sends. */
  readonly expectedLength: number;
  /** The data-out the transport collected (exactly `expectedLength` bytes, or null for none). */
  readonly dataOut: Buffer | null;
}

export interface ScsiResult {
  status: number;
  /** Fixed-format sense data (SPC-4 4.5.3) with CHECK CONDITION, else null. */
  sense: Buffer | null;
  /**
   * Data-in the command produced, whole. The transport sends at most `expectedLength`
   * of it and reports the rest as residual overflow, or the missing part as underflow.
   */
  dataIn: Buffer | null;
  /**
   * For a command that takes data-out: how many bytes the CDB asked for. The transport
   * reports the difference from `expectedLength` as residual (over- or underflow).
   */
  dataOutWanted: number;
}

/** What the transport needs to know before it collects a command's data-out. */
export type DataOutPlan =
  | { kind: 'none' }
  /** Collect `expectedLength` bytes (the CDB asks for `wanted`; equal in a well-formed command). */
  | { kind: 'data'; wanted: number }
  /** Answer at once with this result; collect nothing (the transport drains what was sent unsolicited). */
  | { kind: 'refuse'; result: ScsiResult };

/** A logical unit as a transport sees it. */
export interface ScsiLogicalUnitPort {
  /** Decides, from the CDB alone, whether data-out is to be collected and how much (bounded by `maxDataOut`). */
  planDataOut(cdb: Buffer, expectedLength: number, maxDataOut: number): DataOutPlan;
  execute(task: ScsiTask): Promise<ScsiResult>;
  /** Task management: LUN RESET and TARGET WARM/COLD RESET (reservations, unit attentions). */
  reset(kind: 'lun' | 'target-warm' | 'target-cold', by: ScsiNexus): void;
  /** The nexus is gone (session closed): drop what it held that does not outlive it. */
  nexusLost(nexus: ScsiNexus): void;
  /** A new nexus logged in: it gets a power-on unit attention (SPC-4 6.x) once. */
  nexusAdded(nexus: ScsiNexus): void;
}
