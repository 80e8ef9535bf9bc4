// An iSCSI session (RFC 7143 section 4.2): one initiator (InitiatorName + ISID) on one
// target, identified by our TSIH, with one connection (MaxConnections=1, ERL 0). It
// owns the command window: CmdSN/ExpCmdSN/MaxCmdSN, MaxCmdSN - ExpCmdSN + 1 being how
// many more commands the initiator may send, so commands in flight never pass
// ISCSI_QUEUE_DEPTH. Immediate commands (I bit) are outside the window and capped apart.
import type { ScsiNexus } from '../scsi/task.js';
import type { IscsiTarget } from './targets.js';
import type { SessionParams } from './keys.js';
import { ISCSI_MAX_IMMEDIATE, ISCSI_QUEUE_DEPTH } from '../limits/limits.js';

/** Serial number arithmetic (RFC 1982) on 32 bits: a < b. */
export function snLess(a: number, b: number): boolean {
  return a !== b && ((a - b) | 0) < 0;
}

export type Admission = 'ok' | 'outside-window' | 'too-many-immediate';

/** What the session needs of its connection: to be closed by a reinstatement or a reset. */
export interface SessionLink {
  /** Aborts every task silently and closes the connection (`why` for the log). */
  drop(why: string): void;
  /** Stops taking PDUs, lets executing commands answer, then closes the connection. */
  shutdown(): Promise<void>;
  /** Aborts the tasks on `lun` (null: all) silently, except those `spare` keeps; resolves once those executing are done. */
  abortTasks(lun: number | null, spare?: (cdb: Buffer) => boolean): Promise<void>;
}

export class IscsiSession {
  expCmdSN: number;
  private inFlight = 0;
  private immediates = 0;
  link: SessionLink | null = null;
  readonly startedAt = Date.now();

  constructor(
    readonly tsih: number,
    readonly isid: Buffer,
    readonly initiatorName: string,
    readonly target: IscsiTarget | null,
    readonly params: SessionParams,
    readonly address: string,
    firstCmdSN: number,
    readonly queueDepth = ISCSI_QUEUE_DEPTH,
  ) {
    this.expCmdSN = firstCmdSN >>> 0;
  }

  get discovery(): boolean {
    return this.target === null;
  }

  get isidHex(): string {
    return this.isid.toString('hex');
  }

  /** The highest CmdSN the initiator may send now; never goes back (a command taken keeps it, a command done moves it on). */
  get maxCmdSN(): number {
    return (this.expCmdSN + this.queueDepth - 1 - this.inFlight) >>> 0;
  }

  get commandsInFlight(): number {
    return this.inFlight;
  }

  /**
   * Whether a command with this CmdSN is taken. Non-immediate: only the next expected
   * one (one connection delivers in order); anything else is outside the window or a
   * gap and is ignored, as RFC 7143 4.2.2.1 says. Taken: counted until `done`.
   */
  admit(cmdSN: number, immediate: boolean): Admission {
    if (immediate) {
      if (this.immediates >= ISCSI_MAX_IMMEDIATE) return 'too-many-immediate';
      this.immediates++;
      return 'ok';
    }
    if ((cmdSN >>> 0) !== this.expCmdSN || this.inFlight >= this.queueDepth) return 'outside-window';
    this.expCmdSN = (this.expCmdSN + 1) >>> 0;
    this.inFlight++;
    return 'ok';
  }

  /** A command taken by `admit` is over (answered, or aborted). */
  done(immediate: boolean): void {
    if (immediate) this.immediates--;
    else this.inFlight--;
  }
}

/** The ScsiNexus of an iSCSI session: `<InitiatorName>,i,0x<ISID>` and its TransportID (SPC-4 7.6.4.6, format 01b). */
export function nexusOf(initiatorName: string, isid: Buffer): ScsiNexus {
  const initiator = `${initiatorName},i,0x${isid.toString('hex')}`;
  const name = Buffer.from(`${initiator}\0`, 'utf8');
  let total = 4 + name.length;
  total = Math.max(24, (total + 3) & ~3);
  const transportId = Buffer.alloc(total);
  transportId[0] = 0x40 | 0x05; // FORMAT CODE 01b, PROTOCOL IDENTIFIER 5h (iSCSI)
  transportId.writeUInt16BE(total - 4, 2);
  name.copy(transportId, 4);
  return { initiator, transportId, relativePort: 1 };
}
