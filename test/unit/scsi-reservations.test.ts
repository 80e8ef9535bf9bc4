// Reservations and unit attentions of the SCSI logical unit (src/scsi/): persistent
// reservations between two nexuses (register, reserve, conflicts per SPC-4 table 47,
// release, preempt, clear, the registrants-only and all-registrants types), SPC-2
// RESERVE/RELEASE, and the unit attentions a new nexus, a reset and a preemption raise.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckedBackend } from '../../src/export/contract.js';
import { LogicalUnit } from '../../src/scsi/logical-unit.js';
import type { ScsiNexus } from '../../src/scsi/task.js';
import { A, B, IDENTITY, cmd, hex, outcome, unit } from '../helpers/scsi-unit.js';

const C: ScsiNexus = { initiator: 'iqn.2026-12.org.example:c,i,0x1', transportId: Buffer.from('iqn.2026-12.org.example:c'), relativePort: 1 };

/** PERSISTENT RESERVE OUT: action, type, key and service action key. */
function prout(lu: LogicalUnit, nexus: ScsiNexus, action: number, type: number, key: bigint, saKey: bigint, flags = 0): ReturnType<typeof cmd> {
  const list = Buffer.alloc(24);
  list.writeBigUInt64BE(key, 0);
  list.writeBigUInt64BE(saKey, 8);
  list[20] = flags;
  return cmd(lu, `5f ${hex(action, 1)} ${hex(type, 1)} 00 00 00000018 00`, { nexus, data: list });
}

const read = (lu: LogicalUnit, nexus: ScsiNexus): ReturnType<typeof cmd> => cmd(lu, '28 00 00000000 00 0001 00', { nexus });
const write = (lu: LogicalUnit, nexus: ScsiNexus): ReturnType<typeof cmd> => cmd(lu, '2a 00 00000000 00 0001 00', { nexus, data: Buffer.alloc(512) });
const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('PR: register, reserve WRITE EXCLUSIVE, the other nexus reads but conflicts on writes; READ KEYS/RESERVATION report it', async () => {
  const { lu } = unit();
  assert.equal(outcome(await prout(lu, A, 0, 0, 0n, 0xaan)), 'GOOD');
  assert.equal(outcome(await prout(lu, B, 0, 0, 0n, 0xbbn)), 'GOOD');
  assert.equal(outcome(await prout(lu, A, 0, 0, 0x11n, 0xacn)), 'RESERVATION CONFLICT', 'REGISTER with a wrong key');
  assert.equal(outcome(await prout(lu, A, 1, 1, 0xaan, 0n)), 'GOOD');
  assert.equal(outcome(await prout(lu, B, 1, 1, 0xbbn, 0n)), 'RESERVATION CONFLICT', 'reserved by another');
  assert.equal(outcome(await read(lu, B)), 'GOOD');
  assert.equal(outcome(await write(lu, B)), 'RESERVATION CONFLICT');
  assert.equal(outcome(await cmd(lu, '35 00 00000000 00 0000 00', { nexus: B })), 'RESERVATION CONFLICT');
  assert.equal(outcome(await write(lu, A)), 'GOOD');
  assert.equal(outcome(await cmd(lu, '12 00 00 00 24 00', { nexus: B })), 'GOOD');
  assert.equal(outcome(await cmd(lu, '25 00 00000000 00 00 00 00', { nexus: B })), 'GOOD');
  assert.deepEqual((await cmd(lu, '5e 00 00 00 00 00 00 00 ff 00', { nexus: B })).dataIn, h('00000002 00000010 00000000000000aa 00000000000000bb'));
  assert.deepEqual((await cmd(lu, '5e 01 00 00 00 00 00 00 ff 00', { nexus: B })).dataIn, h('00000002 00000010 00000000000000aa 00000000 00 01 0000'));
  assert.deepEqual((await cmd(lu, '5e 02 00 00 00 00 00 00 ff 00')).dataIn, h('0008 04 80 ea 01 0000'));
  const full = (await cmd(lu, '5e 03 00 00 00 00 00 00 ff 00')).dataIn!;
  assert.equal(full.readUInt32BE(4), full.length - 8);
  assert.equal(full[8 + 12], 0x01, 'A holds it');
  assert.equal(full[8 + 13], 0x01);
  assert.equal(full.subarray(8 + 24, 8 + 24 + A.transportId.length).toString(), A.transportId.toString());
  assert.deepEqual((await cmd(lu, '5e 00 00 00 00 00 00 00 0c 00')).dataIn, h('00000002 00000010 00000000'), 'allocation length cuts');
  // RELEASE with the wrong type is refused; with the right one it ends the reservation.
  assert.equal(outcome(await prout(lu, A, 2, 3, 0xaan, 0n)), '5/2604');
  assert.equal(outcome(await prout(lu, A, 2, 1, 0xaan, 0n)), 'GOOD');
  assert.equal(outcome(await write(lu, B)), 'GOOD');
});

test('PR: EXCLUSIVE ACCESS conflicts reads too; registrants-only lets every registrant in; PREEMPT takes it over and tells the preempted', async () => {
  const { lu } = unit();
  lu.nexusAdded(A); lu.nexusAdded(B); lu.nexusAdded(C);
  for (const n of [A, B, C]) await cmd(lu, '03 00 00 00 12 00', { nexus: n }); // clear POWER ON
  await prout(lu, A, 0, 0, 0n, 0xaan);
  await prout(lu, B, 0, 0, 0n, 0xbbn);
  assert.equal(outcome(await prout(lu, A, 1, 3, 0xaan, 0n)), 'GOOD');
  assert.equal(outcome(await read(lu, B)), 'RESERVATION CONFLICT');
  assert.equal(outcome(await cmd(lu, '1a 00 3f 00 ff 00', { nexus: B })), 'RESERVATION CONFLICT');
  assert.equal(outcome(await cmd(lu, '00 00 00 00 00 00', { nexus: B })), 'GOOD', 'TEST UNIT READY passes');
  // B preempts A: A's registration is gone, B holds EXCLUSIVE ACCESS REGISTRANTS ONLY.
  assert.equal(outcome(await prout(lu, B, 4, 6, 0xbbn, 0xaan)), 'GOOD');
  const ua = await read(lu, A);
  assert.equal(outcome(ua), '6/2a05', 'REGISTRATIONS PREEMPTED');
  assert.equal(outcome(await read(lu, A)), 'RESERVATION CONFLICT', 'A is no longer registered');
  assert.equal(outcome(await prout(lu, C, 0, 0, 0n, 0xccn)), 'GOOD');
  assert.equal(outcome(await write(lu, C)), 'GOOD', 'a registrant passes a registrants-only reservation');
  assert.deepEqual((await cmd(lu, '5e 01 00 00 00 00 00 00 ff 00')).dataIn, h('00000004 00000010 00000000000000bb 00000000 00 06 0000'));
  // Releasing a registrants-only reservation tells the other registrants.
  assert.equal(outcome(await prout(lu, B, 2, 6, 0xbbn, 0n)), 'GOOD');
  assert.equal(outcome(await read(lu, C)), '6/2a04', 'RESERVATIONS RELEASED');
  // CLEAR drops every registration and tells the others.
  assert.equal(outcome(await prout(lu, C, 3, 0, 0xccn, 0n)), 'GOOD');
  assert.equal(outcome(await read(lu, B)), '6/2a03', 'RESERVATIONS PREEMPTED');
  assert.deepEqual((await cmd(lu, '5e 00 00 00 00 00 00 00 ff 00')).dataIn, h('00000005 00000000'));
});

test('PR: all-registrants types: every registrant holds it; unregistering the last ends it; APTPL and unknown types are refused', async () => {
  const { lu } = unit();
  await prout(lu, A, 0, 0, 0n, 1n);
  await prout(lu, B, 6, 0, 0x999n, 2n); // REGISTER AND IGNORE EXISTING KEY
  assert.equal(outcome(await prout(lu, A, 1, 8, 1n, 0n)), 'GOOD');
  assert.equal(outcome(await write(lu, B)), 'GOOD');
  assert.equal(outcome(await read(lu, C)), 'RESERVATION CONFLICT');
  assert.deepEqual((await cmd(lu, '5e 01 00 00 00 00 00 00 ff 00')).dataIn, h('00000002 00000010 0000000000000000 00000000 00 08 0000'),
    'key 0 for all-registrants');
  await prout(lu, A, 0, 0, 1n, 0n);
  await prout(lu, B, 0, 0, 2n, 0n);
  assert.equal(outcome(await read(lu, C)), 'GOOD', 'no registrant left: no reservation');
  assert.equal(outcome(await prout(lu, A, 0, 0, 0n, 5n, 0x01)), '5/2600', 'APTPL: PTPL_C=0');
  await prout(lu, A, 0, 0, 0n, 5n);
  assert.equal(outcome(await prout(lu, A, 1, 2, 5n, 0n)), '5/2400', 'type 2 is obsolete');
  assert.equal(outcome(await prout(lu, A, 7, 1, 5n, 0n)), '5/2400', 'REGISTER AND MOVE is not supported');
  assert.equal(outcome(await cmd(lu, '5f 00 00 00 00 00000010 00', { data: Buffer.alloc(16) })), '5/1a00');
});

test('SPC-2 RESERVE/RELEASE(6): the other nexus conflicts, its RELEASE is a no-op; a LUN reset or the nexus leaving ends it', async () => {
  const { lu } = unit();
  assert.equal(outcome(await cmd(lu, '16 00 00 00 00 00', { nexus: A })), 'GOOD');
  assert.equal(outcome(await cmd(lu, '16 00 00 00 00 00', { nexus: A })), 'GOOD', 'again from the holder');
  assert.equal(outcome(await cmd(lu, '16 00 00 00 00 00', { nexus: B })), 'RESERVATION CONFLICT');
  assert.equal(outcome(await cmd(lu, '17 00 00 00 00 00', { nexus: B })), 'GOOD');
  assert.equal(outcome(await cmd(lu, '1a 00 3f 00 ff 00', { nexus: B })), 'RESERVATION CONFLICT');
  assert.equal(outcome(await cmd(lu, '1a 00 3f 00 ff 00', { nexus: A })), 'GOOD');
  assert.equal(outcome(await cmd(lu, '12 00 00 00 24 00', { nexus: B })), 'GOOD');
  lu.reset('lun', B);
  assert.equal(outcome(await cmd(lu, '16 00 00 00 00 00', { nexus: B })), '6/2903', 'the reset is reported first');
  assert.equal(outcome(await cmd(lu, '16 00 00 00 00 00', { nexus: B })), 'GOOD');
  lu.nexusLost(B);
  assert.equal(outcome(await write(lu, A)), '6/2903');
  assert.equal(outcome(await write(lu, A)), 'GOOD');
  // With a persistent registration, RESERVE(6) conflicts.
  await prout(lu, A, 0, 0, 0n, 7n);
  assert.equal(outcome(await cmd(lu, '16 00 00 00 00 00', { nexus: A })), 'RESERVATION CONFLICT');
});

test('unit attentions: POWER ON once per new nexus, a reset for every nexus; ' +
  'INQUIRY and REPORT LUNS pass through, REQUEST SENSE returns and clears it', async () => {
  const { lu } = unit();
  lu.nexusAdded(A);
  assert.equal(outcome(await cmd(lu, '12 00 00 00 24 00')), 'GOOD');
  assert.equal(outcome(await cmd(lu, 'a0 00 00 000000 00000010 00 00')), 'GOOD');
  const ua = await cmd(lu, '00 00 00 00 00 00');
  assert.deepEqual(ua.sense, h('70 00 06 00000000 0a 00000000 29 00 00 000000'));
  assert.equal(outcome(await cmd(lu, '00 00 00 00 00 00')), 'GOOD', 'reported once');
  lu.nexusAdded(B);
  lu.reset('target-warm', A);
  assert.deepEqual((await cmd(lu, '03 00 00 00 12 00', { nexus: B })).dataIn, h('70 00 06 00000000 0a 00000000 29 02 00 000000'),
    'the reset supersedes POWER ON');
  assert.equal(outcome(await cmd(lu, '00 00 00 00 00 00', { nexus: B })), 'GOOD');
  assert.equal(outcome(await cmd(lu, 'c5 00 00 00 00 00', { nexus: A })), '6/2902', 'before an unknown opcode');
  assert.equal(outcome(await cmd(lu, 'c5 00 00 00 00 00', { nexus: A })), '5/2000');
  // MODE SELECT changing WCE tells the other nexuses.
  await cmd(lu, '15 10 00 00 18 00', { nexus: A, data: h(`00 00 00 00 08 12 00 ${'00'.repeat(17)}`) });
  assert.equal(outcome(await cmd(lu, '00 00 00 00 00 00', { nexus: B })), '6/2a01');
  assert.equal(outcome(await cmd(lu, '00 00 00 00 00 00', { nexus: A })), 'GOOD');
});

test('PREEMPT AND ABORT hands the preempted nexuses to the transport to abort their tasks; PREEMPT does not', async () => {
  const aborted: string[][] = [];
  const disk = unit().disk;
  const lu = new LogicalUnit({ backend: new CheckedBackend(disk), identity: IDENTITY, abortTasksOf: (n) => aborted.push([...n]) });
  await prout(lu, A, 0, 0, 0n, 0xaan);
  await prout(lu, B, 0, 0, 0n, 0xbbn);
  await prout(lu, C, 0, 0, 0n, 0xccn);
  await prout(lu, A, 1, 1, 0xaan, 0n);
  assert.equal(outcome(await prout(lu, B, 4, 1, 0xbbn, 0xccn)), 'GOOD', 'PREEMPT of a registration only');
  assert.deepEqual(aborted, []);
  assert.equal(outcome(await prout(lu, B, 5, 3, 0xbbn, 0xaan)), 'GOOD', 'PREEMPT AND ABORT of the holder');
  assert.deepEqual(aborted, [[A.initiator]]);
  assert.deepEqual((await cmd(lu, '5e 01 00 00 00 00 00 00 ff 00', { nexus: B })).dataIn, h('00000005 00000010 00000000000000bb 00000000 00 03 0000'));
  assert.equal(outcome(await prout(lu, B, 4, 3, 0xbbn, 0x77n)), 'RESERVATION CONFLICT', 'no registration with that key');
});
