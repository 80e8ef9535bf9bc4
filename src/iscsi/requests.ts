// The full feature phase's requests other than SCSI commands: Text (SendTargets and
// the keys allowed after login, with continuations both ways), Task Management
// Functions (RFC 7143 11.5-11.6) and Logout (11.14-11.15).
import type { Logger } from '../log/log.js';
import type { CommandEngine } from './commands.js';
import type { IscsiSession } from './session.js';
import type { IscsiTarget, IscsiTargetTable } from './targets.js';
import {
  RESERVED_TAG, RejectReason, decodeTaskMgmtRequest, encodeLogoutResponse, encodeTaskMgmtResponse, encodeTextResponse, isFinal, ittOf, u32,
  type RawPdu, type SeqNumbers,
} from './pdu.js';
import { TextAccumulator, TextError, encodeText, splitText, type TextPair } from './text.js';
import { allowedInFullFeature, answerKey, applyKey } from './keys.js';
import { snLess } from './session.js';
import { ISCSI_MAX_RECV_DATA_SEGMENT } from '../limits/limits.js';

/** Task management functions (RFC 7143 11.5.1). */
export const Tmf = {
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LUN_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  TASK_REASSIGN: 8,
} as const;

/** Task management responses (RFC 7143 11.6.1). */
export const TmfResponse = {
  COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  REASSIGN_NOT_SUPPORTED: 4,
  NOT_SUPPORTED: 5,
  REJECTED: 255,
} as const;

/** The connection as the request handler sees it. */
export interface RequestPort {
  readonly peer: string;
  readonly log: Logger;
  readonly engine: CommandEngine | null;
  send(bhs: Buffer, data: Buffer | null): void;
  status(): SeqNumbers;
  reject(bhs: Buffer, reason: number): void;
  stopReading(): void;
  endAfterLogout(): void;
}

export interface DirectoryPort {
  readonly targets: IscsiTargetTable;
  portalFor(localAddress: string | undefined): string;
  sessionsOn(target: IscsiTarget): IscsiSession[];
}

export class RequestHandler {
  private readonly textIn = new TextAccumulator();
  /** The rest of a Text Response too long for one PDU, fetched with its TTT. */
  private pendingText: { ttt: number; parts: Buffer[] } | null = null;
  /** The ITT of the Text exchange whose request is being continued (C bit), or null. */
  private textItt: number | null = null;
  private nextTtt = 0x10000;

  constructor(private readonly c: RequestPort & { localAddress?: string }, private readonly s: IscsiSession, private readonly dir: DirectoryPort) {}

  // --- Text ------------------------------------------------------------------------

  text(pdu: RawPdu, immediate: boolean): void {
    const bhs = pdu.bhs;
    const itt = ittOf(bhs);
    const ttt = u32(bhs, 20);
    const cont = (bhs[1]! & 0x40) !== 0;
    const lunBytes = Buffer.from(bhs.subarray(8, 16));
    this.s.done(immediate);
    if (ttt !== RESERVED_TAG) {
      // The initiator asks for the next part of our answer, or sends the next part of its request.
      if (this.pendingText && this.pendingText.ttt === ttt && pdu.data.length === 0) return this.sendTextPart(itt, lunBytes);
      if (!cont && !this.textIn.bytes) return this.c.reject(bhs, RejectReason.INVALID_PDU_FIELD);
    } else {
      this.pendingText = null;
    }
    // A new exchange (another ITT) drops what an abandoned one left.
    if (this.textItt !== null && this.textItt !== itt) this.textIn.reset();
    this.textItt = cont ? itt : null;
    if (!this.textIn.add(pdu.data)) {
      this.textIn.reset();
      this.textItt = null;
      return this.c.reject(bhs, RejectReason.OUT_OF_RESOURCES);
    }
    if (cont) {
      const t = this.tag();
      this.c.send(encodeTextResponse({ ...this.c.status(), final: false, cont: false, itt, ttt: t, lunBytes }, 0), null);
      return;
    }
    let pairs: TextPair[];
    try {
      pairs = this.textIn.finish();
    } catch (e) {
      if (e instanceof TextError) return this.c.reject(bhs, RejectReason.PROTOCOL_ERROR);
      throw e;
    }
    const answer: TextPair[] = [];
    for (const [k, v] of pairs) {
      if (k === 'SendTargets') answer.push(...this.sendTargets(v));
      else if (allowedInFullFeature(k)) {
        const a = answerKey(k, v, this.s.discovery);
        if (a.result !== null) applyKey(this.s.params, k, a.result);
        if (a.kind === 'answer') answer.push([k, a.value]);
        if (k === 'MaxRecvDataSegmentLength' && a.kind === 'noted') answer.push([k, String(ISCSI_MAX_RECV_DATA_SEGMENT)]);
      } else {
        const a = answerKey(k, v, this.s.discovery);
        answer.push([k, a.kind === 'answer' && a.value === 'NotUnderstood' ? 'NotUnderstood' : 'Reject']);
      }
    }
    const parts = splitText(encodeText(answer), this.s.params.initiatorMaxRecv);
    this.pendingText = { ttt: parts.length > 1 ? this.tag() : RESERVED_TAG, parts };
    this.sendTextPart(itt, lunBytes);
  }

  private sendTextPart(itt: number, lunBytes: Buffer): void {
    const p = this.pendingText!;
    const part = p.parts.shift()!;
    const more = p.parts.length > 0;
    if (!more) this.pendingText = null;
    this.c.send(
      encodeTextResponse({ ...this.c.status(), final: !more, cont: more, itt, ttt: more ? p.ttt : RESERVED_TAG, lunBytes }, part.length),
      part.length > 0 ? part : null,
    );
  }

  private tag(): number {
    if (this.nextTtt >= RESERVED_TAG - 1) this.nextTtt = 0x10000;
    return this.nextTtt++;
  }

  /**
   * SendTargets (RFC 7143 appendix C): All in a discovery session lists every target the
   * initiator is allowed on; a name lists that one; empty (or All in a normal session)
   * the session's own target.
   */
  private sendTargets(v: string): TextPair[] {
    const who = this.s.initiatorName;
    const visible = (t: IscsiTarget): boolean => t.auth.initiators === null || t.auth.initiators.includes(who);
    let list: IscsiTarget[];
    if (this.s.discovery) {
      if (v === 'All') list = this.dir.targets.list().filter(visible);
      else {
        const t = this.dir.targets.lookup(v);
        list = t && visible(t) ? [t] : [];
      }
    } else {
      const own = this.s.target!;
      list = v === '' || v === 'All' || v === own.iqn ? [own] : [];
    }
    const portal = this.dir.portalFor(this.c.localAddress);
    return list.flatMap((t): TextPair[] => [['TargetName', t.iqn], ['TargetAddress', portal]]);
  }

  // --- Task management ---------------------------------------------------------------

  taskManagement(pdu: RawPdu, immediate: boolean): void {
    const req = decodeTaskMgmtRequest(pdu.bhs);
    const s = this.s;
    const answer = (response: number): void => {
      s.done(immediate);
      this.c.send(encodeTaskMgmtResponse({ ...this.c.status(), itt: req.itt, response }), null);
    };
    const engine = this.c.engine;
    const target = s.target;
    if (!engine || !target) return answer(TmfResponse.REJECTED);
    const nexus = { initiator: `${s.initiatorName},i,0x${s.isidHex}` };
    const everyone = (lun: number | null): Promise<void> =>
      Promise.all(this.dir.sessionsOn(target).map((o) => o.link?.abortTasks(lun) ?? Promise.resolve())).then(() => undefined);
    const run = (work: Promise<unknown>, then?: () => void): void => {
      void work.then(() => {
        answer(TmfResponse.COMPLETE);
        then?.();
      }, (e: unknown) => {
        this.c.log.error(`iSCSI ${this.c.peer}: task management function ${req.fn} failed: ${(e as Error).message}`);
        answer(TmfResponse.REJECTED);
      });
    };
    this.c.log.info(`iSCSI ${this.c.peer}: task management function ${TMF_NAMES[req.fn] ?? req.fn} from ${nexus.initiator} on ${target.exportName}`);
    switch (req.fn) {
      case Tmf.ABORT_TASK: {
        if (engine.has(req.referencedTag)) return run(engine.abort((cmd) => cmd.itt === req.referencedTag));
        // Not here: complete if its CmdSN is still to come (it will never run), else it does not exist (RFC 7143 11.5.1).
        const inWindow = !snLess(req.refCmdSN, s.expCmdSN) && !snLess(s.maxCmdSN, req.refCmdSN);
        return answer(inWindow ? TmfResponse.COMPLETE : TmfResponse.TASK_DOES_NOT_EXIST);
      }
      case Tmf.ABORT_TASK_SET:
        if (req.lun !== 0) return answer(TmfResponse.LUN_DOES_NOT_EXIST);
        return run(engine.abort((cmd) => cmd.lun === req.lun));
      case Tmf.CLEAR_TASK_SET:
        if (req.lun !== 0) return answer(TmfResponse.LUN_DOES_NOT_EXIST);
        return run(everyone(req.lun));
      case Tmf.LUN_RESET:
        if (req.lun !== 0) return answer(TmfResponse.LUN_DOES_NOT_EXIST);
        return run(everyone(req.lun).then(() => target.lu.reset('lun', engineNexus(engine))));
      case Tmf.TARGET_WARM_RESET:
        return run(everyone(null).then(() => target.lu.reset('target-warm', engineNexus(engine))));
      case Tmf.TARGET_COLD_RESET:
        this.c.stopReading();
        return run(everyone(null).then(() => target.lu.reset('target-cold', engineNexus(engine))), () => {
          // A cold reset ends every connection to the target, this one once its response is out (RFC 7143 11.5.1).
          for (const o of this.dir.sessionsOn(target)) if (o !== s) o.link?.drop('TARGET COLD RESET by another initiator');
          this.c.endAfterLogout();
        });
      case Tmf.TASK_REASSIGN:
        return answer(TmfResponse.REASSIGN_NOT_SUPPORTED);
      case Tmf.CLEAR_ACA:
        return answer(TmfResponse.NOT_SUPPORTED);
      default:
        return answer(TmfResponse.REJECTED);
    }
  }

  // --- Logout ------------------------------------------------------------------------

  logout(pdu: RawPdu, immediate: boolean): void {
    const bhs = pdu.bhs;
    const reason = bhs[1]! & 0x7f;
    const itt = ittOf(bhs);
    const s = this.s;
    if (!isFinal(bhs)) {
      s.done(immediate);
      return this.c.reject(bhs, RejectReason.PROTOCOL_ERROR);
    }
    if (reason === 2) {
      // Removing a connection for recovery needs ERL 2.
      s.done(immediate);
      this.c.send(encodeLogoutResponse({
        ...this.c.status(), itt, response: 2, time2Wait: s.params.defaultTime2Wait, time2Retain: s.params.defaultTime2Retain,
      }), null);
      return;
    }
    if (reason !== 0 && reason !== 1) {
      s.done(immediate);
      return this.c.reject(bhs, RejectReason.INVALID_PDU_FIELD);
    }
    // Reason 1 (close the connection) closes the session too: it has only this one.
    this.c.stopReading();
    const engine = this.c.engine;
    const settled = engine ? engine.settled().then(() => engine.abort(() => true)) : Promise.resolve();
    void settled.then(() => {
      s.done(immediate);
      this.c.send(encodeLogoutResponse({ ...this.c.status(), itt, response: 0, time2Wait: 0, time2Retain: 0 }), null);
      this.c.endAfterLogout();
    });
  }
}

const TMF_NAMES: Record<number, string> = {
  1: 'ABORT TASK', 2: 'ABORT TASK SET', 3: 'CLEAR ACA', 4: 'CLEAR TASK SET', 5: 'LUN RESET', 6: 'TARGET WARM RESET', 7: 'TARGET COLD RESET', 8: 'TASK REASSIGN',
};

function engineNexus(engine: CommandEngine) {
  return engine.nexus;
}
