// SCSI commands on one connection (RFC 7143 sections 11.3-11.8): the data-out of a
// write collected from immediate data, unsolicited Data-Out (InitialR2T=No, up to
// FirstBurstLength) and R2Ts (MaxBurstLength each, MaxOutstandingR2T at once); the
// task handed to the logical unit; its Data-In cut to the initiator's
// MaxRecvDataSegmentLength with status on the last PDU, or a SCSI Response with sense
// data; residuals exact both ways. A write's buffer is held against the node-wide
// budget from the moment it is allocated until the logical unit is done with it.
import type { Logger } from '../log/log.js';
import type { RequestBudget, BudgetWaiter } from '../nbd/budget.js';
import { ScsiStatus, type ScsiLogicalUnitPort, type ScsiNexus, type ScsiResult } from '../scsi/task.js';
import {
  RESERVED_TAG, RejectReason, decodeDataOut, encodeDataIn, encodeR2T, encodeScsiResponse, type RawPdu, type ScsiCommand, type SeqNumbers,
} from './pdu.js';
import type { SessionParams } from './keys.js';
import { ISCSI_MAX_SESSION_DATA_OUT_BYTES, MALLOC_MMAP_THRESHOLD_BYTES } from '../limits/limits.js';
import { hostBuffers, reclaim, type Owned } from '../memory/owned-buffers.js';

/** WRITE(6/10/12/16) and WRITE AND VERIFY(10/12/16): their data goes to the volume and nowhere else once they succeed. */
const WRITE_OPCODES: ReadonlySet<number> = new Set([0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e]);

/** What the engine needs of its connection. */
export interface CommandPort {
  readonly lu: ScsiLogicalUnitPort;
  readonly nexus: ScsiNexus;
  readonly params: SessionParams;
  readonly budget: RequestBudget;
  readonly maxDataOut: number;
  readonly log: Logger;
  readonly peer: string;
  /** `done`: called once the socket no longer holds `data`. */
  send(bhs: Buffer, data: Buffer | null, done?: () => void): void;
  /** The numbers for a status-bearing PDU (StatSN taken). */
  status(): SeqNumbers;
  /** The numbers for a PDU that carries no status (StatSN not taken). */
  peek(): SeqNumbers;
  reject(bhs: Buffer, reason: number): void;
  /** Stop (true) or restart (false) reading PDUs: a write waits for the budget. */
  hold(on: boolean): void;
  /** A command admitted by the session is over. */
  done(immediate: boolean): void;
}

interface R2TState {
  offset: number;
  length: number;
  received: number;
  dataSN: number;
}

interface Task {
  cmd: ScsiCommand;
  /** Data-out collected into this (null: discarded, or none). */
  buffer: Buffer | null;
  /** The node's host buffer `buffer` is, for a large write (given back once the write succeeded). */
  owned: Owned | null;
  /** Budget bytes held for `buffer`. */
  held: number;
  /** Unsolicited Data-Out still expected (TTT 0xffffffff, before its F bit). */
  unsolicited: boolean;
  /** The end of the unsolicited burst (immediate data included). */
  unsolicitedLimit: number;
  /** Bytes received in order so far, from offset 0 (immediate, unsolicited). */
  contiguous: number;
  unsolicitedDataSN: number;
  received: number;
  /** R2Ts outstanding (null until the first: most writes come whole in their immediate data). */
  r2ts: Map<number, R2TState> | null;
  nextR2TOffset: number;
  r2tSN: number;
  /** Answer at once with this, once unsolicited data is drained (a refused data-out). */
  refused: ScsiResult | null;
  executing: Promise<void> | null;
  aborted: boolean;
  waiter: BudgetWaiter | null;
}

export class CommandEngine {
  private readonly tasks = new Map<number, Task>();
  private nextTtt = 1;
  /** Tasks handed to (or waiting to be handed to) the logical unit, until answered. */
  private readonly running = new Set<Promise<void>>();
  /** The newest ORDERED task still running: the tasks after it wait for it. */
  private barrier: Promise<void> | null = null;
  /** When data-out last came in, or a task started waiting for it (ms). */
  private lastDataOutAt = Date.now();

  constructor(private readonly port: CommandPort) {}

  get nexus(): ScsiNexus {
    return this.port.nexus;
  }

  get count(): number {
    return this.tasks.size;
  }

  /** Bytes of data-out held by this connection's tasks. */
  get heldBytes(): number {
    let n = 0;
    for (const t of this.tasks.values()) n += t.held;
    return n;
  }

  /**
   * How long a task holding a write buffer has had no data-out (ms; 0: none waits for
   * data). Such a session holds budget bytes others may be waiting for.
   */
  stalledMs(now: number): number {
    for (const t of this.tasks.values()) {
      if (t.buffer !== null && t.executing === null && !t.aborted) return now - this.lastDataOutAt;
    }
    return 0;
  }

  has(itt: number): boolean {
    return this.tasks.has(itt);
  }

  /** A SCSI Command the session admitted; `immediateData` is its data segment. */
  command(cmd: ScsiCommand, immediateData: Buffer, raw: Buffer): void {
    const p = this.port;
    const params = p.params;
    if (immediateData.length > 0 &&
      (!cmd.write || !params.immediateData || immediateData.length > cmd.expectedLength || immediateData.length > params.firstBurstLength)) {
      p.reject(raw, RejectReason.PROTOCOL_ERROR);
      p.done(cmd.immediate);
      return;
    }
    const task: Task = {
      cmd, buffer: null, owned: null, held: 0, unsolicited: false, unsolicitedLimit: 0, contiguous: 0, unsolicitedDataSN: 0,
      received: 0, r2ts: null, nextR2TOffset: 0, r2tSN: 0, refused: null, executing: null, aborted: false, waiter: null,
    };
    this.tasks.set(cmd.itt, task);
    const edtl = cmd.expectedLength;
    if (!cmd.write || edtl === 0) {
      const plan = p.lu.planDataOut(cmd.cdb, edtl, p.maxDataOut);
      if (plan.kind === 'refuse') this.respond(task, plan.result);
      else this.execute(task);
      return;
    }
    let plan = p.lu.planDataOut(cmd.cdb, edtl, p.maxDataOut);
    // The logical unit bounds data-out by maxDataOut; should it not, the buffer is still never allocated.
    if (plan.kind === 'data' && edtl > p.maxDataOut) plan = { kind: 'refuse', result: invalidFieldInCdb() };
    task.unsolicited = !cmd.final && !params.initialR2T;
    task.unsolicitedLimit = task.unsolicited ? Math.min(params.firstBurstLength, edtl) : immediateData.length;
    if (plan.kind === 'refuse') task.refused = plan.result;
    if (plan.kind !== 'data') {
      // Nothing to collect: what comes unsolicited is drained, no R2T is sent.
      task.contiguous = immediateData.length;
      this.maybeFinishCollecting(task);
      return;
    }
    if (this.heldBytes > 0 && this.heldBytes + edtl > ISCSI_MAX_SESSION_DATA_OUT_BYTES) {
      // This session holds enough: the initiator retries later (TASK SET FULL, SAM-5 5.3.1).
      task.refused = { status: ScsiStatus.TASK_SET_FULL, sense: null, dataIn: null, dataOutWanted: 0 };
      task.contiguous = immediateData.length;
      this.maybeFinishCollecting(task);
      return;
    }
    const start = (): void => {
      task.waiter = null;
      this.lastDataOutAt = Date.now();
      task.held = edtl;
      // A large write's data goes into one of the node's host buffers, not a fresh one (an
      // mmap and a page fault per 4 KiB: limits.ts HOST_BUFFERS_KEPT_BYTES), back once the
      // write succeeded. Writes only: another command's parameters may be kept by its unit.
      task.owned = edtl >= MALLOC_MMAP_THRESHOLD_BYTES && WRITE_OPCODES.has(task.cmd.cdb[0]!) ? hostBuffers.take(edtl) : null;
      task.buffer = task.owned ? task.owned.bytes : Buffer.allocUnsafe(edtl);
      immediateData.copy(task.buffer, 0);
      task.contiguous = immediateData.length;
      task.received = immediateData.length;
      this.maybeFinishCollecting(task);
    };
    const w = p.budget.take(edtl, () => {
      p.hold(false);
      if (task.aborted) {
        p.budget.release(edtl);
        return;
      }
      start();
    });
    if (w === null) start();
    else {
      task.waiter = w;
      p.hold(true);
    }
  }

  /** A Data-Out PDU. */
  dataOut(pdu: RawPdu): void {
    const p = this.port;
    const d = decodeDataOut(pdu.bhs);
    const task = this.tasks.get(d.itt);
    if (!task || task.aborted) return; // an aborted or answered task's data: dropped silently
    if (task.executing) {
      // All its data-out was in: this one is beyond it.
      p.reject(pdu.bhs, RejectReason.PROTOCOL_ERROR);
      return;
    }
    const len = pdu.data.length;
    this.lastDataOutAt = Date.now();
    if (d.ttt === RESERVED_TAG) {
      // Unsolicited data, in order, within the first burst.
      if (!task.unsolicited || d.bufferOffset !== task.contiguous || d.dataSN !== task.unsolicitedDataSN || d.bufferOffset + len > task.unsolicitedLimit) {
        p.reject(pdu.bhs, RejectReason.PROTOCOL_ERROR);
        return;
      }
      task.unsolicitedDataSN++;
      this.store(task, d.bufferOffset, pdu.data);
      task.contiguous += len;
      if (d.final || task.contiguous === task.unsolicitedLimit) task.unsolicited = false;
      this.maybeFinishCollecting(task);
      return;
    }
    const r = task.r2ts?.get(d.ttt);
    if (!r || d.bufferOffset !== r.offset + r.received || d.dataSN !== r.dataSN || r.received + len > r.length) {
      p.reject(pdu.bhs, RejectReason.PROTOCOL_ERROR);
      return;
    }
    r.dataSN++;
    this.store(task, d.bufferOffset, pdu.data);
    r.received += len;
    if (r.received === r.length) task.r2ts!.delete(d.ttt);
    this.maybeFinishCollecting(task);
  }

  private store(task: Task, offset: number, data: Buffer): void {
    if (task.buffer) data.copy(task.buffer, offset);
    task.received += data.length;
  }

  /** After unsolicited data: R2Ts for the rest, and the task run once everything is in. */
  private maybeFinishCollecting(task: Task): void {
    if (task.unsolicited || task.waiter) return;
    const edtl = task.cmd.expectedLength;
    if (task.buffer === null) {
      // Drained: answer now (a refusal, or a command that takes no data-out).
      if (task.refused) this.respond(task, task.refused);
      else this.execute(task);
      return;
    }
    if (task.nextR2TOffset === 0) task.nextR2TOffset = task.contiguous;
    const p = this.port;
    while ((task.r2ts?.size ?? 0) < p.params.maxOutstandingR2T && task.nextR2TOffset < edtl) {
      const length = Math.min(p.params.maxBurstLength, edtl - task.nextR2TOffset);
      let ttt = this.nextTtt++ >>> 0;
      if (ttt === RESERVED_TAG) ttt = this.nextTtt = 1;
      (task.r2ts ??= new Map()).set(ttt, { offset: task.nextR2TOffset, length, received: 0, dataSN: 0 });
      const seq = p.peek();
      p.send(encodeR2T({
        statSN: seq.statSN, expCmdSN: seq.expCmdSN, maxCmdSN: seq.maxCmdSN,
        lunBytes: task.cmd.lunBytes, itt: task.cmd.itt, ttt, r2tSN: task.r2tSN++, bufferOffset: task.nextR2TOffset, length,
      }), null);
      task.nextR2TOffset += length;
    }
    if ((task.r2ts?.size ?? 0) === 0 && task.nextR2TOffset >= edtl) this.execute(task);
  }

  /**
   * Hands the task to the logical unit, in the order its task attribute asks (SAM-5
   * 8.6): an ORDERED task starts once every older one is done, and the ones after it
   * wait for it (so a SYNCHRONIZE CACHE sent ORDERED covers the writes before it);
   * HEAD OF QUEUE starts at once; SIMPLE (and untagged) wait only for an ORDERED one.
   */
  private execute(task: Task): void {
    const p = this.port;
    const cmd = task.cmd;
    const run = (): Promise<ScsiResult> => task.aborted
      ? Promise.resolve({ status: ScsiStatus.TASK_ABORTED, sense: null, dataIn: null, dataOutWanted: 0 })
      : p.lu.execute({ nexus: p.nexus, lun: cmd.lun < 0 ? 0xffff : cmd.lun, cdb: cmd.cdb, expectedLength: cmd.expectedLength, dataOut: task.buffer });
    let started: Promise<ScsiResult>;
    if (cmd.attr === ATTR_ORDERED) started = Promise.all([...this.running, this.barrier]).then(run);
    else if (cmd.attr === ATTR_HEAD_OF_QUEUE || this.barrier === null) started = run();
    else started = this.barrier.then(run);
    const done = this.finish(task, started);
    task.executing = done;
    this.running.add(done);
    if (cmd.attr === ATTR_ORDERED) this.barrier = done;
  }

  /** The task's result answered (a failure of the logical unit as BUSY), its buffer let go; then it runs no more. */
  private async finish(task: Task, started: Promise<ScsiResult>): Promise<void> {
    let result: ScsiResult;
    try {
      result = await started;
    } catch (e) {
      const p = this.port;
      p.log.error(`iSCSI ${p.peer}: the logical unit failed a command (opcode 0x${task.cmd.cdb[0]!.toString(16)}): ${(e as Error).message}`);
      result = { status: ScsiStatus.BUSY, sense: null, dataIn: null, dataOutWanted: 0 };
    }
    // (After a failure a part of the write path may still hold the data: the collector's.)
    this.releaseBuffer(task, result.status === ScsiStatus.GOOD);
    if (!task.aborted) this.respond(task, result);
    // (This call's own promise: execute set it before the first await came back.)
    const done = task.executing!;
    this.running.delete(done);
    if (this.barrier === done) this.barrier = null;
  }

  private releaseBuffer(task: Task, reuse: boolean): void {
    if (reuse) task.owned?.give();
    task.owned = null;
    task.buffer = null;
    if (task.held > 0) this.port.budget.release(task.held);
    task.held = 0;
  }

  /** Sends the result: Data-In (status on the last when it can), else a SCSI Response. */
  private respond(task: Task, r: ScsiResult): void {
    const p = this.port;
    const cmd = task.cmd;
    this.tasks.delete(cmd.itt);
    p.done(cmd.immediate);
    const edtl = cmd.expectedLength;
    const readLimit = cmd.read ? (cmd.write ? cmd.bidiReadLength ?? 0 : edtl) : 0;
    const dataIn = r.dataIn ?? EMPTY;
    const toSend = dataIn.subarray(0, Math.min(dataIn.length, readLimit));
    // A host buffer the read lent (src/scsi/block-io.ts): back once the socket wrote its last Data-In.
    const owned = r.dataIn ? reclaim(r.dataIn) : undefined;
    const given = owned ? (): void => owned.give() : undefined;
    if (toSend.length === 0) given?.();
    // The main residual: data-out wanted vs EDTL for writes (or commands that want data-out), data-in else.
    const byOut = cmd.write || (!cmd.read && r.dataOutWanted > 0);
    const wanted = byOut ? r.dataOutWanted : dataIn.length;
    const over = wanted > edtl;
    const under = wanted < edtl;
    const residual = over ? wanted - edtl : edtl - wanted;
    const bidi = cmd.read && cmd.write;
    const statusInData = r.status === ScsiStatus.GOOD && r.sense === null && toSend.length > 0 && !bidi;
    let dataSN = 0;
    const mrdsl = p.params.initiatorMaxRecv;
    const burst = p.params.maxBurstLength;
    for (let off = 0; off < toSend.length;) {
      const burstEnd = (Math.floor(off / burst) + 1) * burst;
      const n = Math.min(mrdsl, toSend.length - off, burstEnd - off);
      const last = off + n === toSend.length;
      const withStatus = last && statusInData;
      const seq = withStatus ? p.status() : p.peek();
      p.send(encodeDataIn({
        final: last || off + n === burstEnd, withStatus, status: r.status, overflow: over, underflow: under, residual,
        lunBytes: cmd.lunBytes, itt: cmd.itt, statSN: seq.statSN, expCmdSN: seq.expCmdSN, maxCmdSN: seq.maxCmdSN,
        dataSN: dataSN++, bufferOffset: off,
      }, n), toSend.subarray(off, off + n), last ? given : undefined);
      off += n;
    }
    if (statusInData) return;
    let senseData: Buffer | null = null;
    if (r.sense) {
      senseData = Buffer.alloc(2 + r.sense.length);
      senseData.writeUInt16BE(r.sense.length, 0);
      r.sense.copy(senseData, 2);
    }
    const bidiWanted = bidi ? dataIn.length : 0;
    const bidiLimit = bidi ? cmd.bidiReadLength ?? 0 : 0;
    // (Every field written out, no spread: a spread's copy has room for its own three
    // fields only, and the fields added after them grew its property store in V8's
    // runtime, once per command: MigrateToMap in a profile of 4 KiB writes.)
    const seq = p.status();
    p.send(encodeScsiResponse({
      statSN: seq.statSN, expCmdSN: seq.expCmdSN, maxCmdSN: seq.maxCmdSN,
      itt: cmd.itt, response: 0, status: r.status, overflow: over, underflow: under, residual,
      bidiOverflow: bidi && bidiWanted > bidiLimit, bidiUnderflow: bidi && bidiWanted < bidiLimit, bidiResidual: bidi ? Math.abs(bidiWanted - bidiLimit) : 0,
      expDataSN: cmd.write ? task.r2tSN : dataSN,
    }, senseData?.length ?? 0), senseData);
  }

  /**
   * Aborts the tasks `which` selects: no response will be sent for them. Resolves once
   * those the logical unit is executing are done (so a TMF response follows them).
   */
  abort(which: (cmd: ScsiCommand) => boolean): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const [itt, t] of [...this.tasks]) {
      if (!which(t.cmd)) continue;
      t.aborted = true;
      this.tasks.delete(itt);
      this.port.done(t.cmd.immediate);
      if (t.waiter) {
        this.port.budget.cancel(t.waiter);
        t.waiter = null;
        this.port.hold(false);
      }
      if (t.executing) waits.push(t.executing);
      else this.releaseBuffer(t, true); // (collecting: no disk saw its data, and the task is gone, so no Data-Out lands in it)
    }
    return Promise.all(waits).then(() => undefined);
  }

  /** Resolves when no task is executing in the logical unit (tasks collecting data are left). */
  settled(): Promise<void> {
    const waits = [...this.tasks.values()].map((t) => t.executing).filter((e): e is Promise<void> => e !== null);
    return Promise.all(waits).then(() => undefined);
  }

  /** The connection is gone: every task aborted, budget given back (executing ones give theirs when done). */
  close(): void {
    void this.abort(() => true);
  }
}

const EMPTY = Buffer.alloc(0);
/** Task attributes (RFC 7143 11.3.1.2, SAM-5 8.6). */
const ATTR_ORDERED = 2;
const ATTR_HEAD_OF_QUEUE = 3;

/** CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (fixed-format sense, SPC-4 4.5.3). */
function invalidFieldInCdb(): ScsiResult {
  const sense = Buffer.alloc(18);
  sense[0] = 0x70;
  sense[2] = 0x05;
  sense[7] = 10;
  sense[12] = 0x24;
  return { status: ScsiStatus.CHECK_CONDITION, sense, dataIn: null, dataOutWanted: 0 };
}
