// One iSCSI connection: the PDU stream read (src/iscsi/framing.ts), the login phase
// driven by LoginNegotiation, then the full feature phase: SCSI commands handed to
// the CommandEngine, Text (SendTargets), NOP-Out/NOP-In both ways, task management
// and Logout (src/iscsi/requests.ts), Reject for a PDU we can skip, a close for one we
// cannot. Replies leave corked, one writev per turn of the event loop.
import type { Socket } from 'node:net';
import type { Logger } from '../log/log.js';
import type { RequestBudget } from '../nbd/budget.js';
import type { IscsiTarget, IscsiTargetTable } from './targets.js';
import { PduReader, framePdu } from './framing.js';
import {
  BHS_LENGTH, Op, RESERVED_TAG, RejectReason, decodeLoginRequest, decodeScsiCommand, encodeLoginResponse, encodeNopIn, encodeReject,
  isImmediate, ittOf, opcodeOf, u32, type LoginRequest, type RawPdu, type SeqNumbers,
} from './pdu.js';
import { TextAccumulator, TextError, encodeText } from './text.js';
import { LoginNegotiation, LoginStatus, STAGE_FULL_FEATURE, type LoginIdentity } from './negotiation.js';
import { CommandEngine } from './commands.js';
import { IscsiSession, nexusOf } from './session.js';
import { RequestHandler } from './requests.js';
import type { SessionParams } from './keys.js';
import { ISCSI_LOGIN_TIMEOUT_MS, ISCSI_MAX_DATA_OUT_BYTES, ISCSI_NOP_INTERVAL_MS, ISCSI_QUEUE_DEPTH } from '../limits/limits.js';

/** Login PDUs carry at most this much data (the RFC's default MaxRecvDataSegmentLength, in force during login). */
const LOGIN_MAX_DATA = 8192;
/** Replies queued in the socket past this stop the reading of new PDUs until they drain. */
export const ISCSI_SEND_BACKLOG_BYTES = 16 * 1024 * 1024;

/** What a connection needs of the server. */
export interface ServerPort {
  readonly targets: IscsiTargetTable;
  readonly log: Logger;
  readonly budget: RequestBudget;
  /** `host:port,tpgt` to announce in SendTargets (the socket's local address when the portal is a wildcard). */
  portalFor(localAddress: string | undefined): string;
  /** A login is over: make the session (reinstating an older one), or say why not (a login status). */
  startSession(c: IscsiConnection, id: LoginIdentity, req: LoginRequest, params: SessionParams): IscsiSession | { status: number; why: string };
  endSession(s: IscsiSession): void;
  /** The live sessions on a target. */
  sessionsOn(target: IscsiTarget): IscsiSession[];
  /** A refusal or cut, for the refusal log (`kind` groups repeats). */
  report(c: IscsiConnection, kind: string, line: string): void;
  closed(c: IscsiConnection): void;
}

export class IscsiConnection {
  private readonly reader = new PduReader(LOGIN_MAX_DATA);
  private phase: 'login' | 'full' | 'closing' = 'login';
  private login: LoginNegotiation;
  private loginText = new TextAccumulator();
  private loginIsid: Buffer | null = null;
  private statSN = 0;
  session: IscsiSession | null = null;
  engine: CommandEngine | null = null;
  private requests: RequestHandler | null = null;
  private holdBudget = false;
  private holdBacklog = false;
  private stopping = false;
  private loginTimer: NodeJS.Timeout | null;
  private corked = false;
  private lastReceivedAt = Date.now();
  private ping: { ttt: number; sentAt: number } | null = null;
  private nextPingTag = 1;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: Socket,
    private readonly server: ServerPort,
    readonly peer: string,
    readonly address: string,
    loginTimeoutMs = ISCSI_LOGIN_TIMEOUT_MS,
  ) {
    this.login = new LoginNegotiation(server.targets);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      if (this.holdBacklog) {
        this.holdBacklog = false;
        this.pump();
      }
    });
    socket.on('error', (e) => server.log.debug(`iSCSI ${peer}: ${e.message}`));
    socket.on('close', () => this.finish());
    this.loginTimer = setTimeout(() => this.cut('login timeout', `did not finish its login within ${loginTimeoutMs / 1000} s`), loginTimeoutMs);
  }

  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }

  get loggingIn(): boolean {
    return this.phase === 'login';
  }

  get log(): Logger {
    return this.server.log;
  }

  /** Closes at once, said to the operator through the refusal log. */
  cut(kind: string, why: string): void {
    if (this.phase === 'closing') return;
    this.server.report(this, kind, `iSCSI connection from ${this.peer} closed: ${why}`);
    this.destroy();
  }

  destroy(): void {
    this.phase = 'closing';
    this.socket.destroy();
  }

  /** Once a second (the server's sweep): the target's NOP-In ping on an idle connection, and the cut when it goes unanswered. */
  tick(now: number, intervalMs = ISCSI_NOP_INTERVAL_MS): void {
    if (this.phase !== 'full' || this.stopping) return;
    if (this.ping) {
      if (this.lastReceivedAt > this.ping.sentAt) this.ping = null;
      else if (now - this.ping.sentAt >= intervalMs) {
        // Decided after this turn's I/O is read: an answer waiting in the socket while the
        // daemon itself was stalled still counts.
        const ping = this.ping;
        setImmediate(() => {
          if (this.ping === ping && this.lastReceivedAt <= ping.sentAt) {
            this.cut('no NOP-Out answer', `did not answer a NOP-In ping within ${intervalMs / 1000} s`);
          }
        });
      }
      return;
    }
    if (now - this.lastReceivedAt < intervalMs) return;
    if (this.nextPingTag >= RESERVED_TAG) this.nextPingTag = 1;
    const ttt = this.nextPingTag++;
    this.ping = { ttt, sentAt: now };
    this.send(encodeNopIn({ ...this.peek(), lunBytes: Buffer.alloc(8), itt: RESERVED_TAG, ttt }, 0), null);
  }

  /** How long a write of this connection has waited for its data-out (ms; 0: none). */
  stalledDataOutMs(now: number): number {
    return this.engine && this.phase === 'full' ? this.engine.stalledMs(now) : 0;
  }

  /** Stops taking PDUs, lets executing commands answer, then closes. */
  async shutdown(): Promise<void> {
    if (this.phase === 'closing' && this.socket.destroyed) return;
    this.stopping = true;
    this.socket.pause();
    if (this.engine) await this.engine.settled();
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      const timer = setTimeout(() => this.socket.destroy(), 2000);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.phase = 'closing';
      this.socket.end();
    });
  }

  // --- sending ---------------------------------------------------------------------

  /** `done`: called once the socket no longer holds `data` (written, or dropped with the connection). */
  send(bhs: Buffer, data: Buffer | null, done?: () => void): void {
    if (this.socket.destroyed) {
      done?.();
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    // Digests start with the first PDU after the last Login Response (RFC 7143 13.1).
    const p = this.phase === 'full' ? this.session?.params : undefined;
    const parts = framePdu(bhs, data, p?.headerDigest ?? false, p?.dataDigest ?? false);
    for (let i = 0; i < parts.length; i++) {
      if (done && i === parts.length - 1) this.socket.write(parts[i]!, () => done());
      else this.socket.write(parts[i]!);
    }
    if (this.socket.writableLength > ISCSI_SEND_BACKLOG_BYTES) this.holdBacklog = true;
  }

  /** Sequence numbers for a status-bearing PDU: StatSN advances. */
  status(): SeqNumbers {
    const s = this.peek();
    this.statSN = (this.statSN + 1) >>> 0;
    return s;
  }

  peek(): SeqNumbers {
    const s = this.session;
    return { statSN: this.statSN, expCmdSN: s ? s.expCmdSN : 0, maxCmdSN: s ? s.maxCmdSN : 0 };
  }

  reject(bhs: Buffer, reason: number): void {
    this.send(encodeReject({ ...this.status(), reason }), bhs.subarray(0, BHS_LENGTH));
  }

  // --- reading ---------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.phase === 'closing') return;
    this.lastReceivedAt = Date.now();
    this.reader.push(chunk);
    this.pump();
  }

  hold(on: boolean): void {
    this.holdBudget = on;
    if (!on) setImmediate(() => this.pump());
  }

  private pump(): void {
    while (this.phase !== 'closing' && !this.holdBudget && !this.holdBacklog && !this.stopping) {
      const f = this.reader.next();
      if (f === null) break;
      try {
        if (f.kind === 'header-digest') {
          this.cut('header digest error', 'sent a PDU whose header digest is wrong');
        } else if (f.kind === 'too-long') {
          if (this.phase === 'login') this.cut('oversized PDU', `sent a ${f.length}-byte login data segment (at most ${LOGIN_MAX_DATA})`);
          else {
            this.reject(f.bhs, RejectReason.PROTOCOL_ERROR);
            this.consumeCmdSN(f.bhs);
          }
        } else if (f.kind === 'data-digest') {
          this.onDataDigestError(f.pdu);
        } else if (this.phase === 'login') {
          this.onLoginPdu(f.pdu);
        } else {
          this.onFullFeaturePdu(f.pdu);
        }
      } catch (e) {
        const opcode = opcodeOf(f.kind === 'pdu' || f.kind === 'data-digest' ? f.pdu.bhs : f.bhs);
        this.server.log.error(`iSCSI ${this.peer}: internal error handling a PDU (opcode 0x${opcode.toString(16)}): ${(e as Error).stack ?? e}`);
        this.destroy();
      }
    }
    // Reading from the socket stops while PDUs are held back: their bytes wait in the kernel.
    if (this.holdBudget || this.holdBacklog) this.socket.pause();
    else if (this.phase !== 'closing' && !this.stopping) this.socket.resume();
  }

  private onDataDigestError(pdu: RawPdu): void {
    if (this.phase === 'login') return this.cut('data digest error', 'sent a login PDU whose data digest is wrong');
    this.reject(pdu.bhs, RejectReason.DATA_DIGEST_ERROR);
    this.consumeCmdSN(pdu.bhs);
  }

  /**
   * A rejected request that carries a CmdSN counts as received (RFC 7143 11.17.1), or
   * every command after it would wait behind a gap that never fills.
   */
  private consumeCmdSN(bhs: Buffer): void {
    const op = opcodeOf(bhs);
    const carries = op === Op.SCSI_COMMAND || op === Op.NOP_OUT || op === Op.TASK_MGMT_REQUEST || op === Op.TEXT_REQUEST || op === Op.LOGOUT_REQUEST;
    if (!carries || !this.session || isImmediate(bhs) || u32(bhs, 24) !== this.session.expCmdSN) return;
    if (this.session.admit(u32(bhs, 24), false) === 'ok') this.session.done(false);
  }

  // --- login -----------------------------------------------------------------------

  private onLoginPdu(pdu: RawPdu): void {
    if (opcodeOf(pdu.bhs) !== Op.LOGIN_REQUEST) return this.cut('not a login', `sent opcode 0x${opcodeOf(pdu.bhs).toString(16)} before logging in`);
    const req = decodeLoginRequest(pdu.bhs);
    if (this.loginIsid === null) {
      this.loginIsid = req.isid;
      this.statSN = req.expStatSN;
    }
    if (!this.loginText.add(pdu.data)) return this.refuseLogin(req, LoginStatus.INITIATOR_ERROR, 'sent more login text than we accept');
    if (req.cont) {
      // Continued: an empty answer asks for the rest (RFC 7143 6.2).
      return this.sendLogin(req, { transit: false, csg: req.csg, nsg: req.csg, status: 0 }, null);
    }
    let pairs;
    try {
      pairs = this.loginText.finish();
    } catch (e) {
      if (e instanceof TextError) return this.refuseLogin(req, LoginStatus.INITIATOR_ERROR, e.message);
      throw e;
    }
    if (req.tsih !== 0) {
      return this.refuseLogin(req, LoginStatus.SESSION_DOES_NOT_EXIST, `asked to join session ${req.tsih} (one connection per session: MaxConnections=1)`);
    }
    const step = this.login.step(req, pairs);
    if (step.kind === 'refuse') return this.refuseLogin(req, step.status, step.why);
    if (!step.done) return this.sendLogin(req, { transit: step.transit, csg: step.csg, nsg: step.nsg, status: 0 }, encodeText(step.pairs));
    const made = this.server.startSession(this, this.login.identity!, req, this.login.params);
    if (!(made instanceof IscsiSession)) return this.refuseLogin(req, made.status, made.why);
    this.session = made;
    this.sendLogin(req, { transit: true, csg: step.csg, nsg: STAGE_FULL_FEATURE, status: 0 }, encodeText(step.pairs));
    this.enterFullFeature(made);
  }

  private sendLogin(req: LoginRequest, r: { transit: boolean; csg: number; nsg: number; status: number }, data: Buffer | null): void {
    const seq = this.status();
    const tsih = r.status === 0 && this.session ? this.session.tsih : 0;
    const expCmdSN = req.cmdSN >>> 0;
    const bhs = encodeLoginResponse({
      transit: r.transit, cont: false, csg: r.csg, nsg: r.nsg, versionMax: 0, versionActive: 0, isid: req.isid, tsih, itt: req.itt,
      statSN: seq.statSN, expCmdSN, maxCmdSN: (expCmdSN + ISCSI_QUEUE_DEPTH - 1) >>> 0, statusClass: r.status >> 8, statusDetail: r.status & 0xff,
    }, data?.length ?? 0);
    this.send(bhs, data);
  }

  private refuseLogin(req: LoginRequest, status: number, why: string): void {
    const who = this.login.identity?.initiatorName;
    this.server.report(this, `login refused (0x${status.toString(16).padStart(4, '0')})`,
      `iSCSI login from ${this.address} refused: ${who ? `initiator ${who} ` : ''}${why}`);
    this.sendLogin(req, { transit: false, csg: req.csg, nsg: req.csg, status }, null);
    this.phase = 'closing';
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private enterFullFeature(s: IscsiSession): void {
    this.phase = 'full';
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.reader.maxData = s.params.targetMaxRecv;
    this.reader.headerDigest = s.params.headerDigest;
    this.reader.dataDigest = s.params.dataDigest;
    this.requests = new RequestHandler(this, s, this.server);
    if (s.target) {
      const target = s.target;
      this.engine = new CommandEngine({
        lu: target.lu, nexus: nexusOf(s.initiatorName, s.isid), params: s.params, budget: this.server.budget, maxDataOut: ISCSI_MAX_DATA_OUT_BYTES,
        log: this.server.log, peer: this.peer,
        send: (b, d, done) => this.send(b, d, done), status: () => this.status(), peek: () => this.peek(),
        reject: (b, r) => this.reject(b, r), hold: (on) => this.hold(on), done: (imm) => s.done(imm),
      });
    }
    s.link = {
      drop: (why) => {
        this.engine?.close();
        this.cut('session closed', why);
      },
      shutdown: () => this.shutdown(),
      abortTasks: (lun, spare) => this.engine
        ? this.engine.abort((cmd) => (lun === null || cmd.lun === lun) && !(spare?.(cmd.cdb) ?? false))
        : Promise.resolve(),
    };
  }

  // --- full feature phase ----------------------------------------------------------

  private onFullFeaturePdu(pdu: RawPdu): void {
    const s = this.session!;
    const op = opcodeOf(pdu.bhs);
    if (op === Op.DATA_OUT) {
      if (this.engine) this.engine.dataOut(pdu);
      else this.reject(pdu.bhs, RejectReason.PROTOCOL_ERROR);
      return;
    }
    if (op === Op.SNACK_REQUEST) return this.reject(pdu.bhs, RejectReason.PROTOCOL_ERROR); // ERL 0: no SNACK
    if (op === Op.LOGIN_REQUEST) return this.reject(pdu.bhs, RejectReason.PROTOCOL_ERROR);
    if (op !== Op.NOP_OUT && op !== Op.SCSI_COMMAND && op !== Op.TASK_MGMT_REQUEST && op !== Op.TEXT_REQUEST && op !== Op.LOGOUT_REQUEST) {
      return this.reject(pdu.bhs, RejectReason.COMMAND_NOT_SUPPORTED);
    }
    const immediate = isImmediate(pdu.bhs);
    // A NOP-Out answering our ping carries no CmdSN of its own.
    if (op === Op.NOP_OUT && ittOf(pdu.bhs) === RESERVED_TAG) {
      if (this.ping && u32(pdu.bhs, 20) === this.ping.ttt) this.ping = null;
      return;
    }
    const cmdSN = u32(pdu.bhs, 24);
    const adm = s.admit(cmdSN, immediate);
    if (adm === 'outside-window') {
      this.server.log.debug(`iSCSI ${this.peer}: ignored a PDU with CmdSN ${cmdSN} (expected ${s.expCmdSN}, MaxCmdSN ${s.maxCmdSN})`);
      return;
    }
    if (adm === 'too-many-immediate') return this.reject(pdu.bhs, RejectReason.IMMEDIATE_COMMAND_REJECT);
    switch (op) {
      case Op.SCSI_COMMAND: return this.onScsiCommand(pdu, immediate);
      case Op.NOP_OUT: {
        const echo = pdu.data.subarray(0, Math.min(pdu.data.length, s.params.initiatorMaxRecv));
        s.done(immediate);
        this.send(
          encodeNopIn({ ...this.status(), lunBytes: pdu.bhs.subarray(8, 16), itt: ittOf(pdu.bhs), ttt: RESERVED_TAG }, echo.length),
          echo.length > 0 ? Buffer.from(echo) : null,
        );
        return;
      }
      case Op.TEXT_REQUEST: return this.requests!.text(pdu, immediate);
      case Op.TASK_MGMT_REQUEST: return this.requests!.taskManagement(pdu, immediate);
      case Op.LOGOUT_REQUEST: return this.requests!.logout(pdu, immediate);
    }
  }

  private onScsiCommand(pdu: RawPdu, immediate: boolean): void {
    const s = this.session!;
    if (!this.engine) {
      s.done(immediate);
      return this.reject(pdu.bhs, RejectReason.COMMAND_NOT_SUPPORTED); // a discovery session has no LUN
    }
    const cmd = decodeScsiCommand(pdu);
    if (typeof cmd === 'string') {
      s.done(immediate);
      return this.reject(pdu.bhs, RejectReason.INVALID_PDU_FIELD);
    }
    if (this.engine.has(cmd.itt)) {
      s.done(immediate);
      return this.reject(pdu.bhs, RejectReason.TASK_IN_PROGRESS);
    }
    this.engine.command(cmd, pdu.data, pdu.bhs);
  }

  /** Logged out: the response is out, the connection ends once it has left. */
  endAfterLogout(): void {
    // The session is over now (a login after this one is not a reinstatement).
    if (this.session) this.server.endSession(this.session);
    this.phase = 'closing';
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** Stops reading PDUs for good (a logout or a reset in progress). */
  stopReading(): void {
    this.stopping = true;
  }

  private finish(): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.phase = 'closing';
    this.reader.clear();
    this.engine?.close();
    if (this.session) this.server.endSession(this.session);
    this.server.closed(this);
  }
}

