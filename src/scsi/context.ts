// What a command's handler sees: the unit's parts and the command in hand. The command
// table (src/scsi/commands.ts) runs handlers over these; the logical unit builds them.
import type { UnitIdentity } from './inquiry.js';
import type { Medium } from './medium.js';
import type { Reservations } from './reservations.js';
import type { ScsiTask } from './task.js';
import type { UnitAttentions } from './unit-attention.js';

export interface Unit {
  readonly medium: Medium;
  readonly identity: UnitIdentity;
  readonly attentions: UnitAttentions;
  readonly reservations: Reservations;
  /** PREEMPT AND ABORT: the transport aborts the tasks of these nexuses (SPC-4 5.13.11.4.4). */
  readonly abortTasksOf: (initiators: readonly string[]) => void;
}

export interface Exec {
  readonly task: ScsiTask;
  /** The CDB, at least the command's length (zero padded when the initiator sent fewer bytes). */
  readonly cdb: Buffer;
  /** The data-out the command works on: what the initiator sent, cut to what the CDB asked for. */
  readonly data: Buffer;
  /** The data-out the CDB asked for, in bytes. */
  readonly wanted: number;
}

/** A handler: the data-in it produced (whole; the table cuts it to the allocation length), or null. Fails by throwing CheckCondition or ReservationConflict. */
export type Handler = (u: Unit, x: Exec) => Promise<Buffer | null>;
