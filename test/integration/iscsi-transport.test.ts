// iSCSI transport behaviour a real initiator rarely shows: session reinstatement,
// NOP-In pings, task management, Reject, residuals, R2T sequences, logout, the data-out
// budget, and close() finishing in-flight commands. Driven by the bare test client.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestTarget, type TestTarget } from '../helpers/iscsi-target.js';
import { RawIscsi, bhs, rw10 } from '../helpers/iscsi-raw-client.js';
import { Op, RESERVED_TAG } from '../../src/iscsi/pdu.js';
import { parseText } from '../../src/iscsi/text.js';
import { OwnedBuffers, hostBuffers } from '../../src/memory/owned-buffers.js';

const MiB = 1024 * 1024;
const IQN = 'iqn.2026-12.com.example:site-a:disk';

async function loggedIn(t: TestTarget, opts: Parameters<RawIscsi['login']>[0] = {}): Promise<RawIscsi> {
  const c = await RawIscsi.connect(t.port);
  const r = await c.login(opts);
  assert.equal(r.status, 0, `login status 0x${r.status.toString(16)}`);
  return c;
}

/** Sends WRITE(10) of `data` at `lba`, answering R2Ts; returns the SCSI status. */
async function write(c: RawIscsi, lba: number, data: Buffer): Promise<number> {
  const itt = c.command(rw10(0x2a, lba, data.length / 512), { write: true, edtl: data.length });
  for (;;) {
    const p = await c.next();
    assert.ok(p, 'connection closed during a write');
    const op = p.bhs[0]! & 0x3f;
    if (op === Op.R2T && p.bhs.readUInt32BE(16) === itt) {
      const ttt = p.bhs.readUInt32BE(20);
      const off = p.bhs.readUInt32BE(40);
      const len = p.bhs.readUInt32BE(44);
      for (let o = 0, sn = 0; o < len; o += 8192, sn++) {
        c.dataOut(itt, ttt, sn, off + o, data.subarray(off + o, off + Math.min(len, o + 8192)), o + 8192 >= len);
      }
    } else if (op === Op.SCSI_RESPONSE && p.bhs.readUInt32BE(16) === itt) {
      return p.bhs[3]!;
    }
  }
}

async function read(
  c: RawIscsi,
  lba: number,
  bytes: number,
  edtl = bytes,
): Promise<{ data: Buffer; status: number; flags: number; residual: number; pdus: number }> {
  const itt = c.command(rw10(0x28, lba, bytes / 512), { read: true, edtl });
  const parts: Buffer[] = [];
  let pdus = 0;
  for (;;) {
    const p = await c.next();
    assert.ok(p, 'connection closed during a read');
    const op = p.bhs[0]! & 0x3f;
    if (p.bhs.readUInt32BE(16) !== itt) continue;
    if (op === Op.DATA_IN) {
      pdus++;
      assert.equal(p.bhs.readUInt32BE(36), pdus - 1, 'DataSN in order');
      parts.push(Buffer.from(p.data));
      if (p.bhs[1]! & 0x01) return { data: Buffer.concat(parts), status: p.bhs[3]!, flags: p.bhs[1]!, residual: p.bhs.readUInt32BE(44), pdus };
    } else if (op === Op.SCSI_RESPONSE) {
      return { data: Buffer.concat(parts), status: p.bhs[3]!, flags: p.bhs[1]!, residual: p.bhs.readUInt32BE(44), pdus };
    }
  }
}

describe('iSCSI transport', () => {
  let t: TestTarget;
  before(async () => {
    t = await startTestTarget([{ name: 'disk', size: 16 * MiB }], { server: { nopIntervalMs: 200, sweepMs: 50 } });
  });
  after(async () => {
    await t?.close();
  });

  test('writes through R2Ts and reads back split by MaxRecvDataSegmentLength, status on the last Data-In', async () => {
    const c = await loggedIn(t, {
      keys: [['MaxRecvDataSegmentLength', '4096'], ['MaxBurstLength', '16384'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No'], ['MaxOutstandingR2T', '2']],
    });
    const data = Buffer.alloc(64 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    // Ignore the power-on unit attention a new nexus gets first.
    await read(c, 0, 512);
    assert.equal(await write(c, 8, data), 0);
    const r = await read(c, 8, data.length);
    assert.equal(r.status, 0);
    assert.ok(r.data.equals(data));
    assert.equal(r.pdus, 16, '64 KiB in 4 KiB PDUs');
    c.close();
  });

  test('large writes gather into the node\'s host buffers, reused, back once written', async (tc) => {
    OwnedBuffers.poison = true; // (a buffer given back too early would put its poison on the disk)
    tc.after(() => {
      OwnedBuffers.poison = false;
    });
    const c = await loggedIn(t, { keys: [['MaxBurstLength', '262144'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No']] });
    await read(c, 0, 512);
    const before = { taken: hostBuffers.made + hostBuffers.reused, reused: hostBuffers.reused, out: hostBuffers.out };
    const datas = [1, 2, 3, 4].map((k) => {
      const d = Buffer.alloc(MiB);
      for (let i = 0; i < d.length; i++) d[i] = (i * k + (i >> 9)) & 0xff;
      return d;
    });
    for (const [i, d] of datas.entries()) assert.equal(await write(c, 4096 + i * 2048, d), 0);
    assert.equal(hostBuffers.made + hostBuffers.reused - before.taken, datas.length, 'each 1 MiB write\'s data went into a buffer of the pool');
    assert.ok(hostBuffers.reused - before.reused >= datas.length - 1, 'one after another, they reuse one');
    assert.equal(hostBuffers.out, before.out, 'every buffer went back');
    for (const [i, d] of datas.entries()) assert.ok((await read(c, 4096 + i * 2048, MiB)).data.equals(d), `write ${i} read back`);
    c.close();
  });

  test('large reads go into the node\'s host buffers, back once the socket wrote their Data-In', async (tc) => {
    OwnedBuffers.poison = true; // (a buffer given back too early would send its poison)
    tc.after(() => {
      OwnedBuffers.poison = false;
    });
    const c = await loggedIn(t, { keys: [['MaxBurstLength', '262144'], ['MaxRecvDataSegmentLength', '262144']] });
    await read(c, 0, 512);
    const d = Buffer.alloc(MiB);
    for (let i = 0; i < d.length; i++) d[i] = (i * 13 + (i >> 10)) & 0xff;
    assert.equal(await write(c, 8192, d), 0);
    const before = { taken: hostBuffers.made + hostBuffers.reused, out: hostBuffers.out };
    for (let i = 0; i < 3; i++) assert.ok((await read(c, 8192, MiB)).data.equals(d), `read ${i}: the bytes written, not the pool's poison`);
    assert.equal(hostBuffers.made + hostBuffers.reused - before.taken, 3, 'each 1 MiB read took a buffer of the pool');
    for (let i = 0; i < 50 && hostBuffers.out !== before.out; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(hostBuffers.out, before.out, 'every read\'s buffer went back');
    c.close();
  });

  test('immediate and unsolicited data (InitialR2T=No) up to FirstBurstLength, then R2Ts', async () => {
    const c = await loggedIn(t, { keys: [['InitialR2T', 'No'], ['ImmediateData', 'Yes'], ['FirstBurstLength', '16384'], ['MaxBurstLength', '32768']] });
    await read(c, 0, 512);
    const data = Buffer.alloc(65536, 0x5a);
    const itt = c.command(rw10(0x2a, 100, 128), { write: true, edtl: data.length, data: data.subarray(0, 8192), final: false });
    c.dataOut(itt, RESERVED_TAG, 0, 8192, data.subarray(8192, 16384), true);
    let r2ts = 0;
    for (;;) {
      const p = await c.next();
      assert.ok(p);
      const op = p.bhs[0]! & 0x3f;
      if (op === Op.R2T) {
        r2ts++;
        const off = p.bhs.readUInt32BE(40);
        const len = p.bhs.readUInt32BE(44);
        assert.ok(off >= 16384, 'no R2T for the unsolicited part');
        c.dataOut(itt, p.bhs.readUInt32BE(20), 0, off, data.subarray(off, off + len), true);
      } else if (op === Op.SCSI_RESPONSE) {
        assert.equal(p.bhs[3], 0);
        break;
      }
    }
    assert.equal(r2ts, 2, '48 KiB left in bursts of 32 KiB');
    assert.ok((await read(c, 100, 65536)).data.equals(data));
    c.close();
  });

  test('residuals: Data-In longer than EDTL is cut (O), shorter is reported (U)', async () => {
    const c = await loggedIn(t);
    await read(c, 0, 512);
    const over = await read(c, 0, 4096, 1024);
    assert.equal(over.data.length, 1024);
    assert.ok(over.flags & 0x04, 'O bit');
    assert.equal(over.residual, 3072);
    const under = await read(c, 0, 1024, 4096);
    assert.equal(under.data.length, 1024);
    assert.ok(under.flags & 0x02, 'U bit');
    assert.equal(under.residual, 3072);
    c.close();
  });

  test('NOP-Out is echoed; an unknown opcode gets a Reject and the connection goes on', async () => {
    const c = await loggedIn(t);
    const itt = c.nopOut(Buffer.from('ping-data'));
    const nop = await c.expect(Op.NOP_IN);
    assert.equal(nop?.bhs.readUInt32BE(16), itt);
    assert.equal(nop?.data.toString(), 'ping-data');
    c.send(bhs(0x1c, 0x80, 0, { 16: 99 }));
    const rej = await c.expect(Op.REJECT);
    assert.equal(rej?.bhs[2], 0x05, 'command not supported');
    assert.equal(rej?.data[0], 0x1c, 'the rejected header is returned');
    c.send(bhs(Op.SNACK_REQUEST, 0x80, 0));
    assert.equal((await c.expect(Op.REJECT))?.bhs[2], 0x04);
    const again = c.nopOut();
    assert.equal((await c.expect(Op.NOP_IN))?.bhs.readUInt32BE(16), again);
    c.close();
  });

  test('a command with a data segment over our MaxRecvDataSegmentLength: skipped, rejected, its CmdSN counted', async () => {
    const c = await loggedIn(t);
    await read(c, 0, 512);
    const big = 300 * 1024;
    c.send(bhs(Op.SCSI_COMMAND, 0xa1, big, { 16: 4242, 20: big, 24: c.cmdSN }).fill(0x2a, 32, 33), Buffer.alloc(big));
    c.cmdSN++;
    const rej = await c.expect(Op.REJECT);
    assert.equal(rej?.bhs[2], 0x04);
    assert.equal(rej?.data.readUInt32BE(16), 4242);
    const r = await read(c, 0, 4096);
    assert.equal(r.status, 0, 'the next command is taken');
    c.close();
  });

  test('an idle connection gets a NOP-In ping, and is closed when it does not answer', async () => {
    const c = await loggedIn(t);
    const ping = await c.expect(Op.NOP_IN);
    assert.ok(ping);
    assert.equal(ping.bhs.readUInt32BE(16), RESERVED_TAG);
    const ttt = ping.bhs.readUInt32BE(20);
    assert.notEqual(ttt, RESERVED_TAG);
    c.nopOut(null, RESERVED_TAG, ttt); // answered: the connection stays
    const second = await c.expect(Op.NOP_IN);
    assert.ok(second, 'pinged again later, not closed');
    await c.whenClosed(); // this one is not answered
    assert.equal(c.closed, true);
  });

  test('session reinstatement: the same InitiatorName and ISID close the older session', async () => {
    const isid = Buffer.from('400001371111', 'hex');
    const a = await loggedIn(t, { initiator: 'iqn.2026-01.test:re', isid });
    assert.equal(t.server.sessions().filter((s) => s.initiator === 'iqn.2026-01.test:re').length, 1);
    const b = await loggedIn(t, { initiator: 'iqn.2026-01.test:re', isid });
    await a.whenClosed();
    const mine = t.server.sessions().filter((s) => s.initiator === 'iqn.2026-01.test:re');
    assert.equal(mine.length, 1);
    assert.deepEqual(mine[0], { target: IQN, exportName: 'disk', initiator: 'iqn.2026-01.test:re', isid: '400001371111', address: '127.0.0.1' });
    const c = await loggedIn(t, { initiator: 'iqn.2026-01.test:re', isid: Buffer.from('400001372222', 'hex') });
    assert.equal(t.server.sessions().filter((s) => s.initiator === 'iqn.2026-01.test:re').length, 2, 'another ISID is another session');
    b.close();
    c.close();
  });

  test('ABORT TASK on a write waiting for data: no SCSI Response, the budget is given back', async () => {
    const c = await loggedIn(t);
    await read(c, 0, 512);
    const itt = c.command(rw10(0x2a, 0, 128), { write: true, edtl: 65536 });
    const r2t = await c.expect(Op.R2T);
    assert.equal(r2t?.bhs.readUInt32BE(16), itt);
    assert.equal(t.server.budget.used, 65536);
    const tm = c.tmf(1, itt, c.cmdSN - 1);
    const rsp = await c.expect(Op.TASK_MGMT_RESPONSE);
    assert.equal(rsp?.bhs.readUInt32BE(16), tm);
    assert.equal(rsp?.bhs[2], 0, 'function complete');
    assert.equal(t.server.budget.used, 0);
    // The task's late data is dropped silently; the next command works.
    c.dataOut(itt, r2t!.bhs.readUInt32BE(20), 0, 0, Buffer.alloc(8192), false);
    const skipped: import('../../src/iscsi/pdu.js').RawPdu[] = [];
    const r = await read(c, 0, 512);
    assert.equal(r.status, 0);
    assert.equal(skipped.length, 0);
    // An unknown task whose CmdSN is behind us: task does not exist.
    c.tmf(1, 0x7777, c.cmdSN - 1);
    assert.equal((await c.expect(Op.TASK_MGMT_RESPONSE))?.bhs[2], 1);
    c.tmf(5); // LUN RESET
    assert.equal((await c.expect(Op.TASK_MGMT_RESPONSE))?.bhs[2], 0);
    c.tmf(3); // CLEAR ACA
    assert.equal((await c.expect(Op.TASK_MGMT_RESPONSE))?.bhs[2], 5);
    c.tmf(8); // TASK REASSIGN
    assert.equal((await c.expect(Op.TASK_MGMT_RESPONSE))?.bhs[2], 4);
    c.tmf(0x42);
    assert.equal((await c.expect(Op.TASK_MGMT_RESPONSE))?.bhs[2], 255);
    c.close();
  });

  test('TARGET COLD RESET: answered, then every connection to the target ends', async () => {
    const a = await loggedIn(t, { initiator: 'iqn.2026-01.test:cold-a' });
    const b = await loggedIn(t, { initiator: 'iqn.2026-01.test:cold-b' });
    const itt = a.tmf(7);
    const r = await a.expect(Op.TASK_MGMT_RESPONSE);
    assert.equal(r?.bhs.readUInt32BE(16), itt);
    assert.equal(r?.bhs[2], 0);
    await a.whenClosed();
    await b.whenClosed();
    assert.equal(t.server.sessions().some((s) => s.initiator.includes('cold')), false);
  });

  test('header and data digests both ways (CRC32C): a write and a read; a damaged data digest gets Reject 0x02', async () => {
    const c = await RawIscsi.connect(t.port);
    const r = await c.login({ keys: [['HeaderDigest', 'CRC32C,None'], ['DataDigest', 'CRC32C,None']] });
    assert.equal(r.status, 0);
    assert.equal(c.headerDigest && c.dataDigest, true, 'both digests negotiated');
    await read(c, 0, 512);
    const data = Buffer.alloc(32768, 0x6e);
    assert.equal(await write(c, 64, data), 0);
    assert.ok((await read(c, 64, data.length)).data.equals(data));
    // A NOP-Out whose data digest is wrong: rejected, the connection goes on.
    const h = bhs(Op.NOP_OUT | 0x40, 0x80, 4, { 16: 77, 20: RESERVED_TAG, 24: c.cmdSN });
    const { framePdu } = await import('../../src/iscsi/framing.js');
    const frame = framePdu(h, Buffer.from('abcd'), true, true);
    const digest = Buffer.from(frame[frame.length - 1]!);
    digest[0] = digest[0]! ^ 0xff;
    frame[frame.length - 1] = digest;
    for (const b of frame) c.socket.write(b);
    const rej = await c.expect(Op.REJECT);
    assert.equal(rej?.bhs[2], 0x02);
    const ok = c.nopOut(Buffer.from('x'));
    assert.equal((await c.expect(Op.NOP_IN))?.bhs.readUInt32BE(16), ok);
    c.close();
  });

  test('login text continued over PDUs (C bit) is answered empty until whole', async () => {
    const c = await RawIscsi.connect(t.port);
    const text = Buffer.from('InitiatorName=iqn.2026-01.test:cont\0TargetName=' + IQN + '\0SessionType=Normal\0');
    const isid = Buffer.from('400001373333', 'hex');
    const first = bhs(0x43, 0x40 | (1 << 2) | 3, 20, { 16: 1, 24: 1 }); // C bit, no T
    isid.copy(first, 8);
    c.send(first, text.subarray(0, 20));
    const empty = await c.expect(Op.LOGIN_RESPONSE);
    assert.equal(empty?.data.length, 0);
    assert.equal(empty?.bhs.readUInt16BE(36), 0);
    const last = bhs(0x43, 0x80 | (1 << 2) | 3, text.length - 20, { 16: 1, 24: 1 });
    isid.copy(last, 8);
    c.send(last, text.subarray(20));
    const done = await c.expect(Op.LOGIN_RESPONSE);
    assert.equal(done?.bhs.readUInt16BE(36), 0);
    assert.equal(done!.bhs[1]! & 0x83, 0x83, 'T and NSG=3');
    assert.notEqual(done!.bhs.readUInt16BE(14), 0, 'a TSIH');
    c.close();
  });

  test('CmdSN outside the window is ignored; a gap too', async () => {
    const c = await loggedIn(t);
    c.cmdSN += 1000;
    c.command(Buffer.alloc(6), { edtl: 0 }); // TEST UNIT READY far ahead: ignored
    c.cmdSN -= 1001;
    const ok = c.nopOut(null);
    const p = await c.next();
    assert.equal(p?.bhs[0]! & 0x3f, Op.NOP_IN, 'nothing answered the command outside the window');
    assert.equal(p?.bhs.readUInt32BE(16), ok);
    c.close();
  });

  test('SendTargets in a discovery session, and a Text answer longer than one PDU comes in parts', async () => {
    const c = await loggedIn(t, { target: null, keys: [['MaxRecvDataSegmentLength', '512']] });
    c.text([['SendTargets', 'All'], ...Array.from({ length: 40 }, (_, i): [string, string] => [`X-pad-${i}`, 'v'.repeat(20)])]);
    const parts: Buffer[] = [];
    for (;;) {
      const p = await c.expect(Op.TEXT_RESPONSE);
      assert.ok(p);
      parts.push(Buffer.from(p.data));
      if (p.bhs[1]! & 0x80) break;
      assert.ok(p.bhs[1]! & 0x40, 'C bit on a partial answer');
      assert.ok(p.data.length <= 512);
      c.text([], p.bhs.readUInt32BE(20));
    }
    assert.ok(parts.length > 1);
    const pairs = parseText(Buffer.concat(parts));
    assert.deepEqual(pairs.slice(0, 2), [['TargetName', IQN], ['TargetAddress', `127.0.0.1:${t.port},1`]]);
    assert.ok(pairs.some(([k, v]) => k === 'X-pad-39' && v === 'NotUnderstood'));
    c.close();
  });

  test('Logout: the response, then the connection closes and the session is gone', async () => {
    const c = await loggedIn(t, { initiator: 'iqn.2026-01.test:bye' });
    assert.equal(t.server.sessions().some((s) => s.initiator === 'iqn.2026-01.test:bye'), true);
    const itt = c.logout(0);
    const r = await c.expect(Op.LOGOUT_RESPONSE);
    assert.equal(r?.bhs.readUInt32BE(16), itt);
    assert.equal(r?.bhs[2], 0);
    await c.whenClosed();
    assert.equal(t.server.sessions().some((s) => s.initiator === 'iqn.2026-01.test:bye'), false);
  });

  test('login refusals: unknown target, a second connection to a session (TSIH), garbage before login', async () => {
    const a = await RawIscsi.connect(t.port);
    const r = await a.login({ target: 'iqn.nope' });
    assert.equal(r.status, 0x0203);
    await a.whenClosed();
    const b = await RawIscsi.connect(t.port);
    b.send(bhs(Op.SCSI_COMMAND, 0x80, 0));
    await b.whenClosed();
    assert.equal(await b.next(), null, 'nothing answered before login');
  });
});

describe('iSCSI bounds', () => {
  test('write data held in memory stays under the budget: a connection waits for it without reading', async () => {
    const t = await startTestTarget([{ name: 'disk', size: 4 * MiB }], { server: { budget: undefined } });
    try {
      const budget = t.server.budget;
      const a = await loggedIn(t, { initiator: 'iqn.a' });
      const b = await loggedIn(t, { initiator: 'iqn.b' });
      await read(a, 0, 512);
      await read(b, 0, 512);
      // Each holds a 2 MiB write open, never sending its data.
      const big = 2 * MiB;
      const ia = a.command(rw10(0x2a, 0, big / 512), { write: true, edtl: big });
      await a.expect(Op.R2T);
      assert.equal(budget.used, big);
      b.command(rw10(0x2a, 0, big / 512), { write: true, edtl: big });
      await b.expect(Op.R2T);
      assert.equal(budget.used, 2 * big);
      a.tmf(1, ia, a.cmdSN - 1);
      await a.expect(Op.TASK_MGMT_RESPONSE);
      assert.equal(budget.used, big);
      a.close();
      b.close();
      await b.whenClosed();
      // The server notices the close on its own turn.
      while (t.server.connectionCount > 0) await new Promise((r) => setImmediate(r));
      assert.equal(budget.used, 0, 'a closed connection gives back what it held');
    } finally {
      await t.close();
    }
  });

  test('a write that stops receiving its data while others wait for the budget is cut; the waiting one goes on', async () => {
    const { RequestBudget } = await import('../../src/nbd/budget.js');
    const t = await startTestTarget([{ name: 'disk', size: 4 * MiB }], { server: { budget: new RequestBudget(1 * MiB), stalledDataOutMs: 100, sweepMs: 20 } });
    try {
      const a = await loggedIn(t, { initiator: 'iqn.stall-a' });
      const b = await loggedIn(t, { initiator: 'iqn.stall-b' });
      a.answerPings = true;
      b.answerPings = true;
      await read(a, 0, 512);
      await read(b, 0, 512);
      a.command(rw10(0x2a, 0, 2048), { write: true, edtl: MiB });
      await a.expect(Op.R2T);
      const data = Buffer.alloc(MiB, 0x42);
      const status = write(b, 0, data); // waits for the budget a holds
      await a.whenClosed();
      assert.equal(await status, 0, 'the waiting write completes once the stalled one is cut');
      b.close();
    } finally {
      await t.close();
    }
  });

  test('caps: connections per address, logins in progress, sessions per target', async () => {
    const t = await startTestTarget([{ name: 'disk', size: 4 * MiB }], {
      server: { maxConnectionsPerAddress: 3, maxPendingLogins: 2, maxSessionsPerTarget: 1 },
    });
    try {
      const a = await loggedIn(t, { initiator: 'iqn.cap-a' });
      const b = await RawIscsi.connect(t.port);
      const r = await b.login({ initiator: 'iqn.cap-b' });
      assert.equal(r.status, 0x0302, 'the target has its one session');
      await b.whenClosed();
      // Two connections that never log in fill the pending logins; a third is closed at once.
      const p1 = await RawIscsi.connect(t.port);
      const p2 = await RawIscsi.connect(t.port);
      while (t.server.connectionCount < 3) await new Promise((res) => setImmediate(res));
      const p3 = await RawIscsi.connect(t.port);
      await p3.whenClosed();
      assert.equal(await p3.next(), null);
      p1.close();
      p2.close();
      await p2.whenClosed();
      while (t.server.connectionCount > 1) await new Promise((res) => setImmediate(res));
      // a and two discovery sessions (logged in: no login in progress) reach the per-address cap of 3.
      const d1 = await loggedIn(t, { target: null, initiator: 'iqn.cap-d1' });
      const d2 = await loggedIn(t, { target: null, initiator: 'iqn.cap-d2' });
      const p5 = await RawIscsi.connect(t.port);
      await p5.whenClosed();
      assert.equal(await p5.next(), null, 'refused: 3 connections from this address');
      for (const c of [a, d1, d2]) c.close();
    } finally {
      await t.close();
    }
  });

  test('task attributes: an ORDERED command waits for the older ones, and the ones after it wait for it', async () => {
    const t = await startTestTarget([{ name: 'disk', size: 4 * MiB }]);
    const target = t.table.lookup(IQN)!;
    const real = target.lu;
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    (target as { lu: typeof real }).lu = {
      planDataOut: (...a) => real.planDataOut(...a), reset: (...a) => real.reset(...a),
      nexusAdded: (n) => real.nexusAdded(n), nexusLost: (n) => real.nexusLost(n),
      execute: async (task) => {
        const name = task.cdb[0] === 0 ? 'tur' : task.expectedLength === 4096 ? 'held read' : 'read';
        calls.push(name);
        if (name === 'held read') await gate;
        return real.execute(task);
      },
    };
    try {
      const c = await loggedIn(t);
      await read(c, 0, 512);
      calls.length = 0;
      const held = c.command(rw10(0x28, 0, 8), { read: true, edtl: 4096 });
      const tur = c.command(Buffer.alloc(6), { edtl: 0, attr: 2 }); // ORDERED
      const after = c.command(rw10(0x28, 0, 1), { read: true, edtl: 512 });
      const nop = c.nopOut();
      assert.equal((await c.expect(Op.NOP_IN))?.bhs.readUInt32BE(16), nop);
      assert.deepEqual(calls, ['held read'], 'the ORDERED command and the one after it wait');
      release();
      const answered: number[] = [];
      while (answered.length < 3) {
        const p = await c.next();
        assert.ok(p);
        const op = p.bhs[0]! & 0x3f;
        if (op === Op.SCSI_RESPONSE || (op === Op.DATA_IN && p.bhs[1]! & 1)) answered.push(p.bhs.readUInt32BE(16));
      }
      assert.deepEqual(answered, [held, tur, after]);
      assert.deepEqual(calls, ['held read', 'tur', 'read']);
      c.close();
    } finally {
      await t.close();
    }
  });

  test('close() lets an executing command answer before the connection ends', async () => {
    const t = await startTestTarget([{ name: 'disk', size: 4 * MiB }]);
    // The logical unit holds the read until the server has been asked to close.
    const target = t.table.lookup(IQN)!;
    const real = target.lu;
    let reached!: () => void;
    const inLu = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held: typeof real = {
      planDataOut: (...a) => real.planDataOut(...a), reset: (...a) => real.reset(...a),
      nexusAdded: (n) => real.nexusAdded(n), nexusLost: (n) => real.nexusLost(n),
      execute: async (task) => {
        if (task.cdb[0] === 0x28 && task.expectedLength === 4096) {
          reached();
          await gate;
        }
        return real.execute(task);
      },
    };
    (target as { lu: typeof real }).lu = held;
    const c = await loggedIn(t);
    await read(c, 0, 512);
    const itt = c.command(rw10(0x28, 0, 8), { read: true, edtl: 4096 });
    await inLu;
    const closing = t.server.close();
    release();
    let answered = false;
    for (let p = await c.next(); p; p = await c.next()) if (p.bhs.readUInt32BE(16) === itt) answered = true;
    await closing;
    assert.equal(answered, true);
    for (const v of t.volumes.values()) await v.close();
  });
});
