// The SCSI logical unit's identification and description (src/scsi/): standard INQUIRY
// and the VPD pages, READ CAPACITY, REPORT LUNS, MODE SENSE/SELECT and the sense data
// layout, each answer checked byte by byte against SPC-4/SBC-3, from literal CDBs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cmd, outcome, unit } from '../helpers/scsi-unit.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const txt = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
const zeros = (n: number): string => '00'.repeat(n);

test('standard INQUIRY: SPC-4, HISUP, CMDQUE, vendor OFFSITE, product, revision and the SAM-5/iSCSI/SPC-4/SBC-3 version descriptors', async () => {
  const { lu } = unit();
  const r36 = await cmd(lu, '12 00 00 00 24 00');
  assert.equal(outcome(r36), 'GOOD');
  assert.deepEqual(r36.dataIn, h(`00 00 06 12 5b 00 00 02 ${txt('OFFSITE ')} ${txt('Offsite volume  ')} ${txt('0017')}`));
  const full = await cmd(lu, '12 00 00 00 ff 00');
  assert.equal(full.dataIn!.length, 96);
  assert.deepEqual(full.dataIn!.subarray(36), h(`${zeros(22)} 00a0 0960 0460 04c0 ${zeros(30)}`));
  // A LUN that does not exist: qualifier 3, type 0x1F; other commands refused there.
  const absent = await cmd(lu, '12 00 00 00 24 00', { lun: 3 });
  assert.equal(absent.dataIn![0], 0x7f);
  assert.equal(outcome(await cmd(lu, '00 00 00 00 00 00', { lun: 3 })), '5/2500');
});

test('VPD pages 0x00, 0x80, 0x83 (NAA, T10 vendor id, relative target port, target port group), 0xB1', async () => {
  const { lu } = unit();
  assert.deepEqual((await cmd(lu, '12 01 00 00 ff 00')).dataIn, h('00 00 00 06 00 80 83 b0 b1 b2'));
  assert.deepEqual((await cmd(lu, '12 01 80 00 ff 00')).dataIn, h(`00 80 00 08 ${txt('vol-0001')}`));
  assert.deepEqual((await cmd(lu, '12 01 83 00 ff 00')).dataIn, h(`00 83 00 30
    01 03 00 08 3a1b2c3d4e5f6071
    02 01 00 10 ${txt('OFFSITE vol-0001')}
    51 94 00 04 00 00 00 01
    51 95 00 04 00 00 00 01`));
  assert.deepEqual((await cmd(lu, '12 01 b1 00 ff 00')).dataIn, h(`00 b1 00 3c 00 01 ${zeros(58)}`));
  // The allocation length cuts the page; a page not served is an invalid field at byte 2.
  assert.deepEqual((await cmd(lu, '12 01 83 00 06 00')).dataIn, h('00 83 00 30 01 03'));
  const bad = await cmd(lu, '12 01 c0 00 ff 00');
  assert.deepEqual(bad.sense, h('70 00 05 00000000 0a 00000000 24 00 00 c0 0002'));
});

test('VPD 0xB0 block limits and 0xB2 provisioning: thin units advertise UNMAP limits, LBPU/LBPWS/LBPWS10/LBPRZ; thick ones none', async () => {
  const thin = unit('thin').lu;
  assert.deepEqual((await cmd(thin, '12 01 b0 00 ff 00')).dataIn, h(`00 b0 00 3c 01 80 0008 00004000 00004000 00000000
    00100000 00000100 00000008 80000000 0000000000008000 ${zeros(20)}`));
  assert.deepEqual((await cmd(thin, '12 01 b2 00 ff 00')).dataIn, h('00 b2 00 04 00 e4 02 00'));
  const thick = unit('thick').lu;
  assert.deepEqual((await cmd(thick, '12 01 b0 00 ff 00')).dataIn!.subarray(20, 36), Buffer.alloc(16));
  assert.deepEqual((await cmd(thick, '12 01 b2 00 ff 00')).dataIn, h('00 b2 00 04 00 00 00 00'));
});

test('READ CAPACITY 10 and 16: last LBA, 512-byte blocks, 8 per physical block, LBPME/LBPRZ only when thin', async () => {
  const { lu } = unit('thin', 2048);
  assert.deepEqual((await cmd(lu, '25 00 00000000 00 00 00 00')).dataIn, h('000007ff 00000200'));
  assert.deepEqual((await cmd(lu, '9e 10 0000000000000000 00000020 00 00')).dataIn, h(`00000000000007ff 00000200 00 03 c000 ${zeros(16)}`));
  assert.deepEqual((await cmd(unit('thick').lu, '9e 10 0000000000000000 00000020 00 00')).dataIn, h(`00000000000007ff 00000200 00 03 0000 ${zeros(16)}`));
  // PMI=0 with an LBA: invalid field at byte 2. A short allocation length cuts the data.
  assert.equal(outcome(await cmd(lu, '25 00 00000001 00 00 00 00')), '5/2400');
  assert.deepEqual((await cmd(lu, '9e 10 0000000000000000 00000008 00 00')).dataIn, h('00000000000007ff'));
});

test('REPORT LUNS lists LUN 0 whatever LUN it arrives on', async () => {
  const { lu } = unit();
  const want = h('00000008 00000000 0000000000000000');
  assert.deepEqual((await cmd(lu, 'a0 00 00 000000 00000010 00 00')).dataIn, want);
  assert.deepEqual((await cmd(lu, 'a0 00 00 000000 00000010 00 00', { lun: 7 })).dataIn, want);
  assert.equal(outcome(await cmd(lu, 'a0 00 05 000000 00000010 00 00')), '5/2400');
});

test('MODE SENSE(6): all pages with a block descriptor, caching WCE=1, control, informational exceptions; WP on read-only; DBD', async () => {
  const { lu } = unit();
  const caching = `08 12 04 ${zeros(17)}`;
  const control = '0a 0a 02 10 00 00 00 00 ff ff 00 00';
  const ie = `1c 0a 08 ${zeros(9)}`;
  assert.deepEqual((await cmd(lu, '1a 00 3f 00 ff 00')).dataIn, h(`37 00 10 08 00000800 00 000200 ${caching} ${control} ${ie}`));
  assert.deepEqual((await cmd(lu, '1a 08 08 00 ff 00')).dataIn, h(`17 00 10 00 ${caching}`));
  assert.deepEqual((await cmd(lu, '1a 08 48 00 ff 00')).dataIn, h(`17 00 10 00 08 12 04 ${zeros(17)}`), 'changeable: WCE only');
  assert.deepEqual((await cmd(lu, '1a 08 4a 00 ff 00')).dataIn, h(`0f 00 10 00 0a 0a ${zeros(10)}`), 'control: nothing changeable');
  const ro = unit('readonly').lu;
  assert.equal((await cmd(ro, '1a 08 3f 00 ff 00')).dataIn![2], 0x90, 'WP and DPOFUA');
  assert.equal(outcome(await cmd(lu, '1a 00 19 00 ff 00')), '5/2400');
  assert.deepEqual((await cmd(lu, '1a 00 3f 00 04 00')).dataIn, h('37 00 10 08'), 'allocation length cuts');
});

test('MODE SENSE(10) with LLBAA gives the 16-byte block descriptor; MODE SELECT turns WCE off (writes become FUA) and refuses unchangeable bits', async () => {
  const { lu, disk } = unit();
  assert.deepEqual((await cmd(lu, '5a 10 08 00 00 00 00 00 ff 00')).dataIn,
    h(`00 2a 00 10 01 00 00 10 0000000000000800 00000000 00000200 08 12 04 ${zeros(17)}`));
  const off = h(`00 00 00 00 08 12 00 ${zeros(17)}`);
  assert.equal(outcome(await cmd(lu, '15 10 00 00 18 00', { data: off })), 'GOOD');
  assert.equal((await cmd(lu, '1a 08 08 00 ff 00')).dataIn![6], 0x00);
  assert.equal(disk.counts.flush, 1, 'turning the cache off writes it back');
  await cmd(lu, '2a 00 00000000 00 0001 00', { data: Buffer.alloc(512, 1) });
  assert.equal(disk.counts.fuaWrite, 1, 'WCE=0: every write is durable before it completes');
  const bad = h(`00 00 00 00 08 12 05 ${zeros(17)}`); // RCD is not changeable
  assert.deepEqual((await cmd(lu, '15 10 00 00 18 00', { data: bad })).sense, h('70 00 05 00000000 0a 00000000 26 00 00 88 0006'));
  assert.equal(outcome(await cmd(lu, '15 11 00 00 18 00', { data: off })), '5/3900', 'SP: nothing is savable');
});

test('sense data: fixed format, field pointers with bit positions, LBA out of range, REQUEST SENSE in both formats', async () => {
  const { lu } = unit('thin', 2048);
  // A reserved bit (byte 1 bit 2 of INQUIRY): SKSV, C/D, BPV, bit 2, byte 1.
  assert.deepEqual((await cmd(lu, '12 04 00 00 24 00')).sense, h('70 00 05 00000000 0a 00000000 24 00 00 ca 0001'));
  assert.deepEqual((await cmd(lu, '28 00 00000800 00 0001 00')).sense, h('70 00 05 00000000 0a 00000000 21 00 00 000000'));
  assert.deepEqual((await cmd(lu, 'ff 00 00 00 00 00')).sense, h('70 00 05 00000000 0a 00000000 20 00 00 000000'));
  assert.deepEqual((await cmd(lu, '03 00 00 00 12 00')).dataIn, h('70 00 00 00000000 0a 00000000 00 00 00 000000'));
  assert.deepEqual((await cmd(lu, '03 01 00 00 12 00')).dataIn, h('72 00 00 00 00000000'));
});
