// A bare iSCSI initiator for tests that need to send what real initiators do not:
// PDUs built field by field, sent as is, and every PDU the target answers read back.
// Only for unit-level and fuzz tests; interoperability is proved with real initiators.
import net from 'node:net';
import { PduReader, framePdu } from '../../src/iscsi/framing.js';
import { Op, RESERVED_TAG, type RawPdu } from '../../src/iscsi/pdu.js';
import { encodeText, parseText, type TextPair } from '../../src/iscsi/text.js';

export function bhs(opcode: number, b1: number, dataLength: number, fields: Record<number, number> = {}): Buffer {
  const b = Buffer.alloc(48);
  b[0] = opcode;
  b[1] = b1;
  b[5] = (dataLength >> 16) & 0xff;
  b[6] = (dataLength >> 8) & 0xff;
  b[7] = dataLength & 0xff;
  for (const [off, v] of Object.entries(fields)) b.writeUInt32BE(v >>> 0, Number(off));
  return b;
}

export interface LoginResult {
  status: number;
  tsih: number;
  pairs: TextPair[];
}

export class RawIscsi {
  private readonly reader = new PduReader(16 * 1024 * 1024);
  private readonly queue: RawPdu[] = [];
  private waiter: (() => void) | null = null;
  closed = false;
  cmdSN = 1;
  expStatSN = 0;
  private itt = 1;
  headerDigest = false;
  dataDigest = false;
  /** Answer the target's NOP-In pings at once (else they are queued like any PDU). */
  answerPings = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c) => {
      this.reader.push(c);
      for (let f = this.reader.next(); f; f = this.reader.next()) {
        if (f.kind !== 'pdu') continue;
        const ping = (f.pdu.bhs[0]! & 0x3f) === Op.NOP_IN && f.pdu.bhs.readUInt32BE(16) === RESERVED_TAG;
        if (ping && this.answerPings) this.nopOut(null, RESERVED_TAG, f.pdu.bhs.readUInt32BE(20));
        else this.queue.push(f.pdu);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawIscsi> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawIscsi(s)));
      s.once('error', reject);
    });
  }

  nextItt(): number {
    return this.itt++;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  send(b: Buffer, data: Buffer | null = null): void {
    if (this.closed) return;
    for (const x of framePdu(b, data, this.headerDigest, this.dataDigest)) this.socket.write(x);
  }

  /** The next PDU from the target, or null once the connection is closed with nothing left. */
  async next(): Promise<RawPdu | null> {
    for (;;) {
      const p = this.queue.shift();
      if (p) {
        const op = p.bhs[0]! & 0x3f;
        if (op !== Op.DATA_IN && op !== Op.R2T && op !== Op.REJECT) this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        if (op === Op.DATA_IN && (p.bhs[1]! & 0x01)) this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        return p;
      }
      if (this.closed) return null;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  /** Waits for the next PDU with this opcode, skipping others (returned in `skipped`). */
  async expect(opcode: number, skipped: RawPdu[] = []): Promise<RawPdu | null> {
    for (;;) {
      const p = await this.next();
      if (p === null || (p.bhs[0]! & 0x3f) === opcode) return p;
      skipped.push(p);
    }
  }

  whenClosed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.socket.once('close', () => resolve());
    });
  }

  /** A login in one operational step (no authentication). */
  async login(opts: { initiator?: string; target?: string | null; isid?: Buffer; keys?: TextPair[] } = {}): Promise<LoginResult> {
    const isid = opts.isid ?? Buffer.from('400001370000', 'hex');
    const pairs: TextPair[] = [['InitiatorName', opts.initiator ?? 'iqn.2026-01.test:raw']];
    if (opts.target === null) pairs.push(['SessionType', 'Discovery']);
    else pairs.push(['TargetName', opts.target ?? 'iqn.2026-12.com.example:site-a:disk'], ['SessionType', 'Normal']);
    pairs.push(...(opts.keys ?? []));
    const data = encodeText(pairs);
    const b = bhs(0x43, 0x80 | (1 << 2) | 3, data.length, { 16: this.nextItt(), 24: this.cmdSN, 28: this.expStatSN });
    isid.copy(b, 8);
    this.send(b, data);
    const r = await this.expect(Op.LOGIN_RESPONSE);
    if (!r) return { status: -1, tsih: 0, pairs: [] };
    const status = r.bhs.readUInt16BE(36);
    if (status === 0) this.expStatSN = (r.bhs.readUInt32BE(24) + 1) >>> 0;
    const keys = parseText(r.data);
    this.headerDigest = keys.some(([k, v]) => k === 'HeaderDigest' && v === 'CRC32C');
    this.dataDigest = keys.some(([k, v]) => k === 'DataDigest' && v === 'CRC32C');
    if (status === 0) {
      // The target's PDUs after the last Login Response carry them too.
      this.reader.headerDigest = this.headerDigest;
      this.reader.dataDigest = this.dataDigest;
    }
    return { status, tsih: r.bhs.readUInt16BE(14), pairs: keys };
  }

  /** A SCSI Command (non-immediate unless told); returns its ITT. */
  command(
    cdb: Buffer,
    o: { read?: boolean; write?: boolean; edtl: number; data?: Buffer; final?: boolean; immediate?: boolean; lun?: number; attr?: number },
  ): number {
    const itt = this.nextItt();
    const data = o.data ?? null;
    const flags = ((o.final ?? true) ? 0x80 : 0) | (o.read ? 0x40 : 0) | (o.write ? 0x20 : 0) | (o.attr ?? 1);
    const b = bhs(Op.SCSI_COMMAND | (o.immediate ? 0x40 : 0), flags, data?.length ?? 0, {
      16: itt, 20: o.edtl, 24: this.cmdSN, 28: this.expStatSN,
    });
    b[9] = o.lun ?? 0;
    cdb.copy(b, 32, 0, Math.min(16, cdb.length));
    if (!o.immediate) this.cmdSN = (this.cmdSN + 1) >>> 0;
    this.send(b, data);
    return itt;
  }

  dataOut(itt: number, ttt: number, dataSN: number, offset: number, data: Buffer, final: boolean): void {
    this.send(bhs(Op.DATA_OUT, final ? 0x80 : 0, data.length, { 16: itt, 20: ttt, 28: this.expStatSN, 36: dataSN, 40: offset }), data);
  }

  nopOut(data: Buffer | null = null, itt = this.nextItt(), ttt = RESERVED_TAG): number {
    this.send(bhs(Op.NOP_OUT | 0x40, 0x80, data?.length ?? 0, { 16: itt, 20: ttt, 24: this.cmdSN, 28: this.expStatSN }), data);
    return itt;
  }

  tmf(fn: number, referencedTag = RESERVED_TAG, refCmdSN = 0): number {
    const itt = this.nextItt();
    this.send(bhs(Op.TASK_MGMT_REQUEST | 0x40, 0x80 | fn, 0, { 16: itt, 20: referencedTag, 24: this.cmdSN, 28: this.expStatSN, 32: refCmdSN }));
    return itt;
  }

  text(pairs: TextPair[], ttt = RESERVED_TAG): number {
    const itt = this.nextItt();
    const data = encodeText(pairs);
    this.send(bhs(Op.TEXT_REQUEST | 0x40, 0x80, data.length, { 16: itt, 20: ttt, 24: this.cmdSN, 28: this.expStatSN }), data);
    return itt;
  }

  logout(reason = 0): number {
    const itt = this.nextItt();
    this.send(bhs(Op.LOGOUT_REQUEST | 0x40, 0x80 | reason, 0, { 16: itt, 24: this.cmdSN, 28: this.expStatSN }));
    return itt;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** READ(10) / WRITE(10) CDBs. */
export function rw10(opcode: 0x28 | 0x2a, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = opcode;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}
