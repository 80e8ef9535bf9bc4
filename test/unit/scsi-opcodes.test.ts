// REPORT SUPPORTED OPERATION CODES against what the logical unit runs (src/scsi/):
// every command listed is accepted (never INVALID COMMAND OPERATION CODE), every
// opcode not listed is refused, the one-command form gives the usage bitmap, and a
// bit outside that bitmap is refused with a field pointer at it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LogicalUnit } from '../../src/scsi/logical-unit.js';
import { cmd, outcome, unit } from '../helpers/scsi-unit.js';

interface Listed { opcode: number; sa: number | null; cdbLength: number }

async function listed(lu: LogicalUnit): Promise<Listed[]> {
  const r = await cmd(lu, 'a3 0c 00 00 0000 00010000 00 00');
  assert.equal(outcome(r), 'GOOD');
  const d = r.dataIn!;
  assert.equal(d.readUInt32BE(0), d.length - 4);
  const out: Listed[] = [];
  for (let at = 4; at < d.length; at += 8) {
    out.push({ opcode: d[at]!, sa: (d[at + 5]! & 0x01) !== 0 ? d.readUInt16BE(at + 2) : null, cdbLength: d.readUInt16BE(at + 6) });
  }
  return out;
}

function cdbOf(c: Listed): string {
  const b = Buffer.alloc(c.cdbLength);
  b[0] = c.opcode;
  if (c.sa !== null) b[1] = c.sa;
  return b.toString('hex');
}

test('every command REPORT SUPPORTED OPERATION CODES lists is accepted; every opcode and service action it does not list is refused', async () => {
  for (const kind of ['thin', 'thick'] as const) {
    const { lu } = unit(kind);
    const list = await listed(lu);
    assert.ok(list.length >= 40, `${list.length} commands listed`);
    assert.equal(list.some((c) => c.opcode === 0x42), kind === 'thin', 'UNMAP only where the medium can deallocate');
    for (const c of list) {
      const r = await cmd(lu, cdbOf(c), { data: Buffer.alloc(0) });
      assert.notEqual(outcome(r), '5/2000', `0x${c.opcode.toString(16)} listed but refused as unknown`);
      assert.ok(!(outcome(r) === '5/2400' && r.sense!.readUInt16BE(16) === 1 && (r.sense![15]! & 0x07) === 4),
        `0x${c.opcode.toString(16)}/${c.sa} listed but its service action refused`);
    }
    const withSa = new Set(list.filter((c) => c.sa !== null).map((c) => c.opcode));
    for (let op = 0; op < 256; op++) {
      if (withSa.has(op)) {
        for (let sa = 0; sa < 32; sa++) {
          if (list.some((c) => c.opcode === op && c.sa === sa)) continue;
          const r = await cmd(lu, Buffer.from([op, sa, ...Array(14).fill(0)]).toString('hex'));
          assert.equal(outcome(r), '5/2400', `0x${op.toString(16)} service action 0x${sa.toString(16)} is not listed`);
          assert.equal(r.sense!.readUInt16BE(16), 1);
        }
        continue;
      }
      if (list.some((c) => c.opcode === op)) continue;
      const r = await cmd(lu, Buffer.from([op, ...Array(15).fill(0)]).toString('hex'));
      assert.equal(outcome(r), '5/2000', `0x${op.toString(16)} is not listed but was not refused`);
    }
  }
});

test('one command: usage bitmaps for READ(10) and READ CAPACITY(16), not supported for others; options that do not fit the opcode are refused', async () => {
  const { lu } = unit();
  const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
  assert.deepEqual((await cmd(lu, 'a3 0c 01 28 0000 00000100 00 00')).dataIn, h('00 03 000a 28 1e ffffffff 1f ffff 00'));
  assert.deepEqual((await cmd(lu, 'a3 0c 02 9e 0010 00000100 00 00')).dataIn, h('00 03 0010 9e 10 ffffffffffffffff ffffffff 01 00'));
  assert.deepEqual((await cmd(lu, 'a3 0c 01 c0 0000 00000100 00 00')).dataIn, h('00 01 0000'));
  assert.deepEqual((await cmd(lu, 'a3 0c 02 9e 0011 00000100 00 00')).dataIn, h('00 01 0000'));
  assert.equal(outcome(await cmd(lu, 'a3 0c 01 9e 0000 00000100 00 00')), '5/2400', 'READ CAPACITY(16) has service actions');
  assert.equal(outcome(await cmd(lu, 'a3 0c 02 28 0000 00000100 00 00')), '5/2400', 'READ(10) has none');
  const rctd = (await cmd(lu, 'a3 0c 81 28 0000 00000100 00 00')).dataIn!;
  assert.equal(rctd[1], 0x83, 'CTDP with the timeouts descriptor');
  assert.equal(rctd.length, 4 + 10 + 12);
  const all = (await cmd(lu, 'a3 0c 80 00 0000 00010000 00 00')).dataIn!;
  assert.equal((all.length - 4) % 20, 0, '20-byte descriptors with RCTD');
  assert.equal(all[4 + 5]! & 0x02, 0x02);
});

test('a bit outside a command\'s usage bitmap is INVALID FIELD IN CDB pointing at it', async () => {
  const { lu } = unit();
  const list = await listed(lu);
  for (const c of list) {
    const one = (await cmd(lu,
      `a3 0c ${c.sa === null ? '01' : '02'} ${c.opcode.toString(16).padStart(2, '0')} ${(c.sa ?? 0).toString(16).padStart(4, '0')} 00000100 00 00`)).dataIn!;
    const usage = one.subarray(4, 4 + c.cdbLength);
    assert.equal(usage[0], c.opcode);
    for (let i = 1; i < c.cdbLength; i++) {
      const free = ~usage[i]! & (i === 1 && c.sa !== null ? 0xe0 : 0xff);
      if (free === 0) continue;
      const bit = 31 - Math.clz32(free);
      const cdb = Buffer.from(cdbOf(c), 'hex');
      cdb[i] = cdb[i]! | (1 << bit);
      const r = await cmd(lu, cdb.toString('hex'));
      assert.equal(outcome(r), '5/2400', `0x${c.opcode.toString(16)} byte ${i} bit ${bit}`);
      assert.equal(r.sense!.readUInt16BE(16), i);
      assert.equal(r.sense![15], 0xc8 | bit);
    }
  }
});
