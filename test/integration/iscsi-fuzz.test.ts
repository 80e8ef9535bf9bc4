// PDU fuzzing of the iSCSI target: random and mutated PDUs before login, in the full
// feature phase and in the middle of a write's Data-Out, seeded (ISCSI_FUZZ_SEED,
// ISCSI_FUZZ_ROUNDS). The server must never crash nor log an internal error; a fuzzed
// connection gets Rejects or is closed; the write budget stays bounded and is all
// given back; a well-behaved session writes and reads back correctly after every round.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { startTestTarget } from '../helpers/iscsi-target.js';
import { RawIscsi, bhs, rw10 } from '../helpers/iscsi-raw-client.js';
import { Op, RESERVED_TAG } from '../../src/iscsi/pdu.js';
import { encodeText } from '../../src/iscsi/text.js';
import { RequestBudget, type BudgetWaiter } from '../../src/nbd/budget.js';
import { createLogger } from '../../src/log/log.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env.ISCSI_FUZZ_SEED ?? 20261203);
// (npm test: 40 rounds; npm run test:soak, OFFSITE_SOAK=1: 600.)
const ROUNDS = Number(process.env.ISCSI_FUZZ_ROUNDS ?? (process.env.OFFSITE_SOAK ? 600 : 40));
/** Fuzzed connections at once (the good session works beside all of them). */
const PARALLEL = 4;
const BUDGET = 4 * MiB;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Records the most bytes the budget ever held. */
class WatchedBudget extends RequestBudget {
  max = 0;
  override take(bytes: number, grant: () => void): BudgetWaiter | null {
    const r = super.take(bytes, () => {
      this.max = Math.max(this.max, this.used);
      grant();
    });
    this.max = Math.max(this.max, this.used);
    return r;
  }
}

test('iSCSI PDU fuzz: no crash, Reject or close, bounded memory, other sessions unaffected', { timeout: 600_000 }, async () => {
  const errors: string[] = [];
  const log = createLogger({
    level: process.env.ISCSI_FUZZ_LOG ?? 'error',
    format: 'json',
    destination: new Writable({
      write(c, _e, cb) {
        errors.push(String(c));
        if (process.env.ISCSI_FUZZ_LOG) process.stderr.write(String(c));
        cb();
      },
    }),
  });
  const budget = new WatchedBudget(BUDGET);
  const t = await startTestTarget([{ name: 'disk', size: 16 * MiB }], { log, server: { budget, nopIntervalMs: 1000, sweepMs: 50, loginTimeoutMs: 2000 } });
  const rssStart = process.memoryUsage().rss;

  // The well-behaved session.
  const good = await RawIscsi.connect(t.port);
  good.answerPings = true;
  assert.equal((await good.login({ initiator: 'iqn.2026-01.test:good' })).status, 0);
  const goodRead = async (lba: number, bytes: number): Promise<{ status: number; data: Buffer }> => {
    const itt = good.command(rw10(0x28, lba, bytes / 512), { read: true, edtl: bytes });
    const parts: Buffer[] = [];
    for (;;) {
      const p = await good.next();
      assert.ok(p, 'the good session was closed');
      if (p.bhs.readUInt32BE(16) !== itt) continue;
      if ((p.bhs[0]! & 0x3f) === Op.DATA_IN) {
        parts.push(Buffer.from(p.data));
        if (p.bhs[1]! & 1) return { status: p.bhs[3]!, data: Buffer.concat(parts) };
      } else if ((p.bhs[0]! & 0x3f) === Op.SCSI_RESPONSE) return { status: p.bhs[3]!, data: Buffer.concat(parts) };
    }
  };
  const goodWrite = async (lba: number, data: Buffer): Promise<number> => {
    const itt = good.command(rw10(0x2a, lba, data.length / 512), { write: true, edtl: data.length });
    for (;;) {
      const p = await good.next();
      assert.ok(p, 'the good session was closed');
      const op = p.bhs[0]! & 0x3f;
      if (p.bhs.readUInt32BE(16) !== itt) continue;
      if (op === Op.R2T) {
        good.dataOut(itt, p.bhs.readUInt32BE(20), 0, p.bhs.readUInt32BE(40),
          data.subarray(p.bhs.readUInt32BE(40), p.bhs.readUInt32BE(40) + p.bhs.readUInt32BE(44)), true);
      }
      else if (op === Op.SCSI_RESPONSE) return p.bhs[3]!;
    }
  };
  await goodRead(0, 512); // the power-on unit attention

  /** One fuzzed connection; its own generator, so a round does the same whatever runs beside it. */
  const fuzzRound = async (round: number): Promise<void> => {
    const rand = rng((SEED * 1_000_003 + round) >>> 0);
    const int = (n: number): number => Math.floor(rand() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
    const templates = (c: RawIscsi): Buffer[][] => {
      const d = encodeText([['SendTargets', 'All']]);
      return [
        [bhs(Op.NOP_OUT | 0x40, 0x80, 8, { 16: 5, 20: RESERVED_TAG, 24: c.cmdSN }), Buffer.from('abcdefgh')],
        [bhs(Op.SCSI_COMMAND, 0xc1, 0, { 16: 6, 20: 4096, 24: c.cmdSN }), Buffer.alloc(0)],
        [bhs(Op.SCSI_COMMAND, 0xa1, 512, { 16: 7, 20: 4096, 24: c.cmdSN }), Buffer.alloc(512)],
        [bhs(Op.TASK_MGMT_REQUEST | 0x40, 0x80 | (1 + int(8)), 0, { 16: 8, 20: 6, 24: c.cmdSN }), Buffer.alloc(0)],
        [bhs(Op.TEXT_REQUEST | 0x40, 0x80, d.length, { 16: 9, 20: RESERVED_TAG, 24: c.cmdSN }), d],
        [bhs(Op.DATA_OUT, 0x80, 512, { 16: 7, 20: int(4), 36: 0, 40: 512 }), Buffer.alloc(512)],
        [bhs(Op.LOGOUT_REQUEST | 0x40, 0x80 | int(4), 0, { 16: 10, 24: c.cmdSN }), Buffer.alloc(0)],
        [bhs(Op.SNACK_REQUEST, 0x80, 0, { 16: 11 }), Buffer.alloc(0)],
        [bhs(Op.LOGIN_REQUEST | 0x40, 0x87, d.length, { 16: 12 }), d],
      ];
    };
    const mutate = (h: Buffer, data: Buffer): Buffer => {
      const b = Buffer.from(h);
      switch (int(6)) {
        case 0: for (let i = 0, n = 1 + int(4); i < n; i++) b[int(48)] = int(256); break;
        case 1: b.writeUInt32BE(pick([0, 1, 0xffffffff, 0x7fffffff, 0x10000, int(2 ** 32)]) >>> 0, 4 * (1 + int(11))); break;
        case 2: b[0] = int(256); break;
        case 3: b[4] = int(256); break; // TotalAHSLength
        case 4: b[5] = int(2); b[6] = int(256); b[7] = int(256); break; // DataSegmentLength
        default: break;
      }
      // TARGET COLD RESET ends every session on the target by design (the good one too): not fuzzed.
      if ((b[0]! & 0x3f) === Op.TASK_MGMT_REQUEST && (b[1]! & 0x7f) === 7) b[1] = (b[1]! & 0x80) | 6;
      const tail = int(3) === 0 ? data.subarray(0, int(data.length + 1)) : data;
      return Buffer.concat([b, tail, Buffer.alloc((4 - (tail.length & 3)) & 3)]);
    };

    const where = `seed ${SEED} round ${round}`;
    const phase = pick(['login', 'full', 'data-out'] as const);
    const c = await RawIscsi.connect(t.port);
    if (phase === 'login') {
      if (int(2) === 0) c.socket.write(randomBytes(int(300)));
      const text = encodeText([['InitiatorName', 'iqn.f'], ['TargetName', 'iqn.2026-12.com.example:site-a:disk']]);
      for (let i = 0, n = 1 + int(4); i < n; i++) {
        const m = mutate(bhs(0x43, 0x87, text.length, { 16: 1 }), text);
        if ((m[0]! & 0x3f) === Op.TASK_MGMT_REQUEST && (m[1]! & 0x7f) === 7) m[1] = (m[1]! & 0x80) | 6;
        c.socket.write(m);
      }
    } else {
      const r = await c.login({ initiator: `iqn.2026-01.test:fuzz${round % 7}`, isid: randomBytes(6) });
      assert.equal(r.status, 0, where);
      if (phase === 'data-out') {
        const edtl = pick([512, 65536, 1 * MiB, 3 * MiB]);
        const itt = c.command(rw10(0x2a, int(1000), edtl / 512), { write: true, edtl });
        const r2t = await c.expect(Op.R2T);
        const ttt = r2t ? r2t.bhs.readUInt32BE(20) : 0;
        for (let i = 0, n = 1 + int(6); i < n; i++) {
          const h = bhs(Op.DATA_OUT, int(2) ? 0x80 : 0, 512, {
            16: int(4) ? itt : int(2 ** 32), 20: int(4) ? ttt : int(2 ** 32), 36: int(3), 40: int(4) ? 512 * i : int(2 ** 32),
          });
          c.socket.write(int(3) ? mutate(h, randomBytes(512)) : Buffer.concat([h, randomBytes(512)]));
        }
      }
      for (let i = 0, n = 1 + int(8); i < n; i++) {
        const [h, d] = pick(templates(c));
        c.socket.write(int(5) === 0 ? randomBytes(int(200)) : mutate(h!, d!));
      }
    }
    // A valid NOP-Out last: answered if the stream is still in step, else the connection is closed (ping unanswered).
    const probe = c.nopOut(Buffer.from('probe'), 0x0badcafe);
    for (;;) {
      const p = await c.next();
      if (p === null) break;
      const op = p.bhs[0]! & 0x3f;
      if (op === Op.NOP_IN && p.bhs.readUInt32BE(16) === probe) break;
      if (op === Op.NOP_IN && p.bhs.readUInt32BE(16) === RESERVED_TAG) continue; // a ping: not answered on purpose
    }
    c.close();
  };

  try {
    for (let round = 0; round < ROUNDS; round += PARALLEL) {
      const batch = Array.from({ length: Math.min(PARALLEL, ROUNDS - round) }, (_, i) => round + i);
      await Promise.all(batch.map(fuzzRound));
      const where = `seed ${SEED} rounds ${round}..${round + batch.length - 1}`;
      const data = Buffer.alloc(4096, round & 0xff);
      const lba = 2048 + (round % 64) * 8;
      // A fuzzed LUN or warm reset leaves the good nexus a unit attention: one CHECK CONDITION, then it works.
      let st = await goodWrite(lba, data);
      if (st === 2) st = await goodWrite(lba, data);
      assert.equal(st, 0, `${where}: the good session's write`);
      let back = await goodRead(lba, 4096);
      if (back.status === 2) back = await goodRead(lba, 4096);
      assert.equal(back.status, 0, `${where}: the good session's read`);
      assert.ok(back.data.equals(data), `${where}: the good session reads back what it wrote`);
      assert.deepEqual(errors.filter((e) => /internal error/.test(e)), [], `${where}: no internal error`);
    }
    while (t.server.connectionCount > 1) await new Promise((r) => setTimeout(r, 20));
    assert.equal(budget.used, 0, `seed ${SEED}: every buffered write given back`);
    // Past the budget only when one command alone is larger (admitted alone, never two at once).
    assert.ok(budget.max <= BUDGET + 3 * MiB, `seed ${SEED}: the budget held at most ${budget.max} bytes`);
    const grown = process.memoryUsage().rss - rssStart;
    assert.ok(grown < 512 * MiB, `seed ${SEED}: memory grew by ${Math.round(grown / MiB)} MiB`);
  } catch (e) {
    console.error(`iSCSI fuzz failed: reproduce with ISCSI_FUZZ_SEED=${SEED} ISCSI_FUZZ_ROUNDS=${ROUNDS}`);
    throw e;
  } finally {
    good.close();
    await t.close();
  }
});
