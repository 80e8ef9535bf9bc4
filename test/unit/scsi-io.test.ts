// The SCSI logical unit's block commands (src/scsi/): round trips through every READ
// and WRITE size, FUA and SYNCHRONIZE CACHE reaching the backend as flush points,
// read-only and out-of-range refusals, backend errors as sense, short data-out,
// VERIFY, COMPARE AND WRITE atomic under concurrent writes, UNMAP, WRITE SAME and GET
// LBA STATUS on a thin unit, and planDataOut bounding what an initiator can make us take.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SCSI_MAX_TRANSFER_BYTES } from '../../src/limits/limits.js';
import { cmd, hex, outcome, unit } from '../helpers/scsi-unit.js';

const pattern = (blocks: number, seed: number): Buffer => {
  const b = Buffer.alloc(blocks * 512);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
};

test('WRITE and READ of 6, 10, 12 and 16 bytes round-trip; WRITE AND VERIFY writes; zero blocks transfer nothing', async () => {
  const { lu, disk } = unit();
  const cases: Array<[string, string]> = [
    ['0a 00 00 10 02 00', '08 00 00 10 02 00'],
    [`2a 00 ${hex(40, 4)} 00 0003 00`, `28 00 ${hex(40, 4)} 00 0003 00`],
    [`aa 00 ${hex(80, 4)} ${hex(2, 4)} 00 00`, `a8 00 ${hex(80, 4)} ${hex(2, 4)} 00 00`],
    [`8a 00 ${hex(100, 8)} ${hex(4, 4)} 00 00`, `88 00 ${hex(100, 8)} ${hex(4, 4)} 00 00`],
    [`2e 00 ${hex(200, 4)} 00 0001 00`, `28 00 ${hex(200, 4)} 00 0001 00`],
    [`8e 00 ${hex(300, 8)} ${hex(2, 4)} 00 00`, `88 00 ${hex(300, 8)} ${hex(2, 4)} 00 00`],
  ];
  for (const [i, [w, r]] of cases.entries()) {
    const blocks = Buffer.from(w.replace(/ /g, ''), 'hex')[0] === 0x0a ? 2 : [3, 2, 4, 1, 2][i - 1]!;
    const data = pattern(blocks, i);
    const wr = await cmd(lu, w, { data });
    assert.equal(outcome(wr), 'GOOD', w);
    assert.equal(wr.dataOutWanted, data.length);
    const rd = await cmd(lu, r, { expectedLength: data.length });
    assert.deepEqual(rd.dataIn, data, r);
  }
  assert.equal(disk.data.subarray(16 * 512, 18 * 512).equals(pattern(2, 0)), true, 'WRITE(6) landed at LBA 16');
  // READ(6) of 0 blocks means 256; READ(10) of 0 blocks reads nothing.
  assert.equal((await cmd(lu, '08 00 00 00 00 00')).dataIn!.length, 256 * 512);
  assert.equal((await cmd(lu, '28 00 00000000 00 0000 00')).dataIn!.length, 0);
  assert.equal(disk.counts.fuaWrite, 0);
});

test('FUA writes reach the backend as FUA, SYNCHRONIZE CACHE 10/16 as flush; FUA on a backend without it flushes after the write', async () => {
  const { lu, disk } = unit();
  await cmd(lu, '2a 08 00000000 00 0001 00', { data: pattern(1, 1) });
  await cmd(lu, `8a 08 ${hex(8, 8)} ${hex(1, 4)} 00 00`, { data: pattern(1, 2) });
  assert.equal(disk.counts.fuaWrite, 2);
  assert.equal(disk.counts.flush, 0);
  assert.equal(outcome(await cmd(lu, '35 00 00000000 00 0000 00')), 'GOOD');
  assert.equal(outcome(await cmd(lu, `91 02 ${hex(0, 8)} ${hex(0, 4)} 00 00`)), 'GOOD');
  assert.equal(disk.counts.flush, 2);
  assert.equal(outcome(await cmd(lu, `35 00 ${hex(2048, 4)} 00 0001 00`)), '5/2100', 'a range past the end');
  assert.equal(disk.counts.flush, 2);
  // DPO is taken and means nothing.
  assert.equal(outcome(await cmd(lu, '28 10 00000000 00 0001 00')), 'GOOD');
});

test('a read-only unit refuses every write with DATA PROTECT / WRITE PROTECTED and never calls the backend to write', async () => {
  const { lu, disk } = unit('readonly');
  for (const c of [
    '0a 00 00 00 01 00', '2a 00 00000000 00 0001 00', `8a 00 ${hex(0, 8)} ${hex(1, 4)} 00 00`, '41 00 00000000 00 0001 00',
    `89 00 ${hex(0, 8)} 00 00 00 01 00 00`,
  ]) {
    const data = Buffer.alloc(c.startsWith('89') ? 1024 : 512);
    assert.equal(outcome(await cmd(lu, c, { data })), '7/2700', c);
  }
  assert.equal(disk.counts.write, 0);
  assert.equal(outcome(await cmd(lu, '28 00 00000000 00 0001 00')), 'GOOD');
  assert.equal(outcome(await cmd(lu, '42 00 00 00 00 00 00 0018 00')), '5/2000', 'UNMAP is not offered on a unit that cannot deallocate');
});

test('LBA out of range, transfer over the maximum, and reserved bits are refused before the backend sees anything', async () => {
  const { lu, disk } = unit('thin', 2048);
  assert.equal(outcome(await cmd(lu, '28 00 000007ff 00 0002 00')), '5/2100');
  assert.equal(outcome(await cmd(lu, '28 00 00000801 00 0000 00')), '5/2100', 'zero blocks one past the end');
  assert.equal(outcome(await cmd(lu, '28 00 00000800 00 0000 00')), 'GOOD', 'zero blocks at the end');
  assert.equal(outcome(await cmd(lu, `88 00 ffffffffffffffff ${hex(1, 4)} 00 00`)), '5/2100');
  assert.equal(outcome(await cmd(lu, '2a 00 00000800 00 0001 00', { data: Buffer.alloc(512) })), '5/2100');
  const over = await cmd(lu, `a8 00 00000000 ${hex(SCSI_MAX_TRANSFER_BYTES / 512 + 1, 4)} 00 00`);
  assert.equal(outcome(over), '5/2400');
  assert.equal(over.sense!.readUInt16BE(16), 6, 'the field pointer names the transfer length');
  assert.equal(outcome(await cmd(lu, '28 20 00000000 00 0001 00')), '5/2400', 'RDPROTECT is not supported');
  assert.equal(outcome(await cmd(lu, '28 00 00000000 00 0001 04')), '5/2400', 'NACA is not supported');
  assert.equal(disk.counts.read + disk.counts.write, 0);
});

test('backend errors: EIO reads as MEDIUM ERROR (UNRECOVERED READ / WRITE ERROR), ' +
  'ENOSPC on thin as SPACE ALLOCATION FAILED, on thick as MEDIUM ERROR', async () => {
  const thin = unit('thin');
  thin.disk.failNext = { op: 'read', code: 'EIO' };
  assert.equal(outcome(await cmd(thin.lu, '28 00 00000000 00 0001 00')), '3/1100');
  thin.disk.failNext = { op: 'write', code: 'EIO' };
  assert.equal(outcome(await cmd(thin.lu, '2a 00 00000000 00 0001 00', { data: Buffer.alloc(512) })), '3/0c00');
  thin.disk.failNext = { op: 'write', code: 'ENOSPC' };
  assert.equal(outcome(await cmd(thin.lu, '2a 00 00000000 00 0001 00', { data: Buffer.alloc(512) })), '7/2707');
  const thick = unit('thick');
  thick.disk.failNext = { op: 'write', code: 'ENOSPC' };
  assert.equal(outcome(await cmd(thick.lu, '2a 00 00000000 00 0001 00', { data: Buffer.alloc(512) })), '3/0c00');
});

test('planDataOut: the CDB says how much to collect; oversize transfers and parameter lists are refused before any data is taken', () => {
  const { lu } = unit();
  const cdb = (s: string): Buffer => Buffer.from(s.replace(/ /g, ''), 'hex');
  assert.deepEqual(lu.planDataOut(cdb('2a 00 00000000 00 0008 00'), 4096, 1 << 24), { kind: 'data', wanted: 4096 });
  assert.deepEqual(lu.planDataOut(cdb('28 00 00000000 00 0008 00'), 4096, 1 << 24), { kind: 'none' });
  assert.deepEqual(lu.planDataOut(cdb('89 00 0000000000000000 00 00 00 02 00 00'), 2048, 1 << 24), { kind: 'data', wanted: 2048 });
  const big = lu.planDataOut(cdb(`8a 00 ${hex(0, 8)} ${hex(SCSI_MAX_TRANSFER_BYTES / 512 + 1, 4)} 00 00`), SCSI_MAX_TRANSFER_BYTES + 512, 1 << 30);
  assert.equal(big.kind, 'refuse');
  if (big.kind === 'refuse') assert.equal(outcome(big.result), '5/2400');
  const overTransport = lu.planDataOut(cdb('2a 00 00000000 00 0010 00'), 8192, 4096);
  assert.equal(overTransport.kind, 'refuse', 'more than the transport takes');
  const list = lu.planDataOut(cdb('5f 00 00 00 00 00 10 00 00 00'), 1 << 20, 1 << 24);
  assert.equal(list.kind, 'refuse', 'a 1 MiB PERSISTENT RESERVE OUT parameter list');
  const unknown = lu.planDataOut(cdb('c0 00 00 00 00 00'), 512, 1 << 24);
  assert.equal(unknown.kind === 'refuse' && outcome(unknown.result), '5/2000');
});

test('short data-out (EDTL below the CDB): only what arrived is written, the command succeeds and says what it wanted', async () => {
  const { lu, disk } = unit();
  disk.data.fill(0x61, 0, 2048);
  const r = await cmd(lu, '2a 00 00000000 00 0002 00', { data: Buffer.alloc(512, 0x62) });
  assert.equal(outcome(r), 'GOOD');
  assert.equal(r.dataOutWanted, 1024);
  assert.equal(disk.data.subarray(0, 512).every((b) => b === 0x62), true);
  assert.equal(disk.data.subarray(512, 1024).every((b) => b === 0x61), true, 'nothing beyond what was sent');
  const r200 = await cmd(lu, `2e 02 ${hex(2, 4)} 00 0001 00`, { data: Buffer.alloc(200, 0x63) });
  assert.equal(outcome(r200), 'GOOD');
  assert.equal(disk.data[1024 + 199], 0x63);
  assert.equal(disk.data[1024 + 200], 0x61);
  assert.equal(outcome(await cmd(lu, '2a 00 00000000 00 0001 00')), 'GOOD', 'no data at all: nothing written');
});

test('VERIFY: BYTCHK 0 checks the range, 1 compares the data-out (MISCOMPARE with the offset), 3 compares one block against each', async () => {
  const { lu } = unit();
  const data = pattern(4, 9);
  await cmd(lu, `2a 00 ${hex(10, 4)} 00 0004 00`, { data });
  assert.equal(outcome(await cmd(lu, `2f 00 ${hex(10, 4)} 00 0004 00`)), 'GOOD');
  assert.equal(outcome(await cmd(lu, `2f 00 ${hex(2046, 4)} 00 0004 00`)), '5/2100');
  assert.equal(outcome(await cmd(lu, `2f 02 ${hex(10, 4)} 00 0004 00`, { data })), 'GOOD');
  const bad = Buffer.from(data);
  bad.writeUInt8(bad.readUInt8(1500) ^ 0xff, 1500);
  const mis = await cmd(lu, `8f 02 ${hex(10, 8)} ${hex(4, 4)} 00 00`, { data: bad });
  assert.equal(outcome(mis), 'e/1d00');
  assert.equal(mis.sense![0], 0xf0, 'INFORMATION valid');
  assert.equal(mis.sense!.readUInt32BE(3), 1500);
  await cmd(lu, `41 00 ${hex(20, 4)} 00 0003 00`, { data: Buffer.alloc(512, 0x5a) });
  assert.equal(outcome(await cmd(lu, `2f 06 ${hex(20, 4)} 00 0003 00`, { data: Buffer.alloc(512, 0x5a) })), 'GOOD');
  assert.equal(outcome(await cmd(lu, `2f 04 ${hex(20, 4)} 00 0003 00`)), '5/2400', 'BYTCHK 2 is reserved');
});

test('COMPARE AND WRITE: writes when equal, MISCOMPARE with the offset when not, and is atomic against concurrent writes', async () => {
  const { lu, disk } = unit();
  const old = pattern(2, 3);
  const next = pattern(2, 4);
  await cmd(lu, `2a 00 ${hex(64, 4)} 00 0002 00`, { data: old });
  const caw = (cmpWith: Buffer, write: Buffer): Promise<import('../../src/scsi/task.js').ScsiResult> =>
    cmd(lu, `89 00 ${hex(64, 8)} 00 00 00 02 00 00`, { data: Buffer.concat([cmpWith, write]) });
  assert.equal(outcome(await caw(old, next)), 'GOOD');
  assert.deepEqual(disk.data.subarray(64 * 512, 66 * 512), next);
  const wrong = Buffer.from(next);
  wrong.writeUInt8(wrong.readUInt8(700) ^ 1, 700);
  const mis = await caw(wrong, old);
  assert.equal(outcome(mis), 'e/1d00');
  assert.equal(mis.sense!.readUInt32BE(3), 700);
  assert.deepEqual(disk.data.subarray(64 * 512, 66 * 512), next, 'nothing written on a miscompare');

  // Hold the backend's writes: a WRITE to the same blocks arrives first and is held; the
  // COMPARE AND WRITE must compare only after that write landed (it read `third`).
  let open!: () => void;
  const readsBefore = disk.counts.read;
  disk.gate = new Promise((r) => { open = r; });
  const third = pattern(2, 5);
  const w = cmd(lu, `2a 00 ${hex(64, 4)} 00 0002 00`, { data: third });
  const c = caw(third, old);
  await new Promise((r) => setImmediate(r));
  assert.equal(disk.counts.read, readsBefore, 'the compare waits for the overlapping write');
  disk.gate = null;
  open();
  assert.equal(outcome(await w), 'GOOD');
  assert.equal(outcome(await c), 'GOOD');
  assert.deepEqual(disk.data.subarray(64 * 512, 66 * 512), old);
  assert.equal(lu.medium.lock.size, 0);
  assert.equal(outcome(await cmd(lu, `89 00 ${hex(0, 8)} 00 00 00 ff 00 00`, { data: Buffer.alloc(0) })), '5/2400', 'over the advertised length');
  assert.equal(outcome(await cmd(lu, `89 00 ${hex(64, 8)} 00 00 00 01 00 00`, { data: Buffer.alloc(2048) })), '5/2400', 'data-out not twice the blocks');
  assert.equal(outcome(await cmd(lu, `89 00 ${hex(64, 8)} 00 00 00 00 00 00`, { data: Buffer.alloc(1024) })), '5/2400', 'data-out with zero blocks');
  assert.equal(outcome(await cmd(lu, `89 00 ${hex(64, 8)} 00 00 00 00 00 00`)), 'GOOD', 'zero blocks, no data');
});

test('UNMAP and WRITE SAME with UNMAP on a thin unit deallocate and read back zeros; GET LBA STATUS reports them', async () => {
  const { lu, disk } = unit('thin', 2048);
  await cmd(lu, `2a 00 ${hex(0, 4)} 00 0100 00`, { data: pattern(256, 1) });
  const list = Buffer.from(`0018 0010 00000000 ${hex(16, 8)} ${hex(16, 4)} 00000000`.replace(/ /g, ''), 'hex');
  assert.equal(outcome(await cmd(lu, '42 00 00 00 00 00 00 0018 00', { data: list })), 'GOOD');
  assert.equal(disk.counts.trim, 1);
  assert.deepEqual((await cmd(lu, `28 00 ${hex(16, 4)} 00 0010 00`)).dataIn, Buffer.alloc(16 * 512));
  assert.equal(outcome(await cmd(lu, `93 08 ${hex(64, 8)} ${hex(32, 4)} 00 00`, { data: Buffer.alloc(512) })), 'GOOD');
  assert.equal(disk.counts.zeroMayTrim, 1, 'a zero block with UNMAP: zeroed with deallocation allowed');
  assert.deepEqual((await cmd(lu, `28 00 ${hex(64, 4)} 00 0020 00`)).dataIn, Buffer.alloc(32 * 512));
  const st = await cmd(lu, `9e 12 ${hex(0, 8)} ${hex(8 + 5 * 16, 4)} 00 00`);
  assert.deepEqual(st.dataIn, Buffer.from([
    '00000054 00000000',
    `${hex(0, 8)} ${hex(16, 4)} 00 000000`,
    `${hex(16, 8)} ${hex(16, 4)} 01 000000`,
    `${hex(32, 8)} ${hex(32, 4)} 00 000000`,
    `${hex(64, 8)} ${hex(32, 4)} 01 000000`,
    `${hex(96, 8)} ${hex(160, 4)} 00 000000`,
  ].join('').replace(/ /g, ''), 'hex'));
  // A descriptor past the end refuses the whole list before anything is deallocated.
  const past = Buffer.from(`0028 0020 00000000 ${hex(200, 8)} ${hex(8, 4)} 00000000 ${hex(2047, 8)} ${hex(2, 4)} 00000000`.replace(/ /g, ''), 'hex');
  assert.equal(outcome(await cmd(lu, '42 00 00 00 00 00 00 0028 00', { data: past })), '5/2100');
  assert.equal(disk.counts.trim, 1);
  assert.equal(outcome(await cmd(lu, '42 00 00 00 00 00 00 0004 00', { data: Buffer.alloc(4) })), '5/1a00');
  assert.equal(outcome(await cmd(lu, `9e 12 ${hex(2048, 8)} ${hex(24, 4)} 00 00`)), '5/2100');
});

test('WRITE SAME writes a pattern in bounded chunks; zero blocks and ANCHOR are refused; NDOB zeroes without data', async () => {
  const { lu, disk } = unit('thick', 8192);
  const block = pattern(1, 7);
  assert.equal(outcome(await cmd(lu, `93 00 ${hex(10, 8)} ${hex(3000, 4)} 00 00`, { data: block })), 'GOOD');
  for (const lba of [10, 1000, 3009]) assert.deepEqual(disk.data.subarray(lba * 512, lba * 512 + 512), block, `LBA ${lba}`);
  assert.equal(disk.data[3010 * 512], 0);
  assert.ok(disk.counts.write >= 2, 'more than one chunk');
  assert.equal(outcome(await cmd(lu, `41 00 ${hex(0, 4)} 00 0000 00`, { data: block })), '5/2400', 'WSNZ');
  assert.equal(outcome(await cmd(lu, `41 10 ${hex(0, 4)} 00 0001 00`, { data: block })), '5/2400');
  assert.equal(outcome(await cmd(lu, `41 00 ${hex(0, 4)} 00 0001 00`, { data: Buffer.alloc(1024) })), '5/0e03', 'more than one block of data-out');
  assert.equal(outcome(await cmd(lu, `41 00 ${hex(0, 4)} 00 0001 00`, { data: Buffer.alloc(256) })), '5/0e03', 'less than one block');
  assert.equal(outcome(await cmd(lu, `93 01 ${hex(10, 8)} ${hex(2, 4)} 00 00`)), 'GOOD');
  assert.deepEqual(disk.data.subarray(10 * 512, 12 * 512), Buffer.alloc(1024));
});

test('ORWRITE ORs the data into the blocks (FUA honoured); PRE-FETCH reaches the backend\'s cache hint; READ DEFECT DATA reports empty lists', async () => {
  const { lu, disk } = unit();
  await cmd(lu, `2a 00 ${hex(5, 4)} 00 0002 00`, { data: Buffer.alloc(1024, 0xa5) });
  assert.equal(outcome(await cmd(lu, `8b 08 ${hex(5, 8)} ${hex(2, 4)} 00 00`, { data: Buffer.alloc(1024, 0x5a) })), 'GOOD');
  assert.deepEqual((await cmd(lu, `28 00 ${hex(5, 4)} 00 0002 00`)).dataIn, Buffer.alloc(1024, 0xff));
  assert.equal(disk.counts.fuaWrite, 1);
  assert.equal(outcome(await cmd(lu, `8b 20 ${hex(5, 8)} ${hex(1, 4)} 00 00`, { data: Buffer.alloc(512) })), '5/2400', 'ORPROTECT');
  assert.equal(outcome(await cmd(lu, `8b 00 ${hex(2048, 8)} ${hex(1, 4)} 00 00`, { data: Buffer.alloc(512) })), '5/2100');
  assert.equal(outcome(await cmd(lu, `34 02 ${hex(0, 4)} 03 0010 00`)), 'GOOD');
  assert.equal(outcome(await cmd(lu, `90 00 ${hex(2040, 8)} ${hex(8, 4)} 00 00`)), 'GOOD');
  assert.equal(disk.counts.cache, 2);
  assert.equal(outcome(await cmd(lu, `90 00 ${hex(2041, 8)} ${hex(8, 4)} 00 00`)), '5/2100');
  assert.deepEqual((await cmd(lu, '37 00 18 00 00 00 00 00 20 00')).dataIn, Buffer.from('00180000', 'hex'));
  assert.deepEqual((await cmd(lu, 'b7 0d 00000000 00000020 00 00')).dataIn, Buffer.from('000d000000000000', 'hex'));
});
