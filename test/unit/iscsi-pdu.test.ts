// iSCSI PDUs from and to fixed bytes (RFC 7143 section 11), text keys and their bounds,
// CHAP with known vectors, the framing reader with digests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as P from '../../src/iscsi/pdu.js';
import { PduReader, digestOf, framePdu } from '../../src/iscsi/framing.js';
import { TextAccumulator, TextError, encodeText, parseText, splitText } from '../../src/iscsi/text.js';
import { chapResponse, decodeBinary, encodeBinary, verifyResponse } from '../../src/iscsi/chap.js';
import { nexusOf, snLess, IscsiSession } from '../../src/iscsi/session.js';
import { defaultParams } from '../../src/iscsi/keys.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('a SCSI Command BHS decodes field by field (RFC 7143 11.3)', () => {
  const bhs = hex(`
    01 e1 00 00  00 000200  00 01 00 00 00 00 00 00
    12345678  00000200  00000007  0000002a
    28 00 00 00 00 10 00 00 01 00 00 00 00 00 00 00`);
  const c = P.decodeScsiCommand({ bhs, ahs: null, data: Buffer.alloc(0) });
  assert.ok(typeof c !== 'string');
  assert.equal(P.opcodeOf(bhs), P.Op.SCSI_COMMAND);
  assert.equal(c.final, true);
  assert.equal(c.read, true);
  assert.equal(c.write, true);
  assert.equal(c.attr, 1);
  assert.equal(c.lun, 1);
  assert.equal(c.itt, 0x12345678);
  assert.equal(c.expectedLength, 512);
  assert.equal(c.cmdSN, 7);
  assert.equal(c.expStatSN, 42);
  assert.equal(c.cdb[0], 0x28);
  assert.equal(c.cdb.length, 16);
  assert.equal(P.dataLengthOf(bhs), 512);
});

test('an extended CDB and a bidirectional read length come from the AHS', () => {
  const bhs = Buffer.alloc(48);
  bhs[0] = 0x01;
  bhs[4] = 5; // 20 bytes of AHS
  bhs.fill(0xaa, 32, 48);
  const ahs = hex(`0009 01 00 bbbbbbbbbbbbbbbb  0005 02 00 00001000`);
  assert.equal(ahs.length, 20);
  const c = P.decodeScsiCommand({ bhs, ahs, data: Buffer.alloc(0) });
  assert.ok(typeof c !== 'string');
  assert.equal(c.cdb.length, 24);
  assert.equal(c.cdb[16], 0xbb);
  assert.equal(c.bidiReadLength, 4096);
  const bad = P.decodeScsiCommand({ bhs, ahs: hex('00ff0100'), data: Buffer.alloc(0) });
  assert.equal(typeof bad, 'string');
  assert.equal(typeof P.decodeScsiCommand({ bhs, ahs: hex('00030900 00000000'), data: Buffer.alloc(0) }), 'string');
});

test('LUN fields: peripheral and flat addressing, anything else is no LUN', () => {
  const b = Buffer.alloc(48);
  b[9] = 3;
  assert.equal(P.lunOf(b), 3);
  b[8] = 0x41;
  assert.equal(P.lunOf(b), 0x103);
  b[8] = 0x80;
  assert.equal(P.lunOf(b), -1);
  b[8] = 0;
  b[12] = 1;
  assert.equal(P.lunOf(b), -1);
});

test('a Login Request decodes, a Login Response encodes to the RFC layout (11.12, 11.13)', () => {
  const req = P.decodeLoginRequest(hex(`
    43 87 00 00  00 000010  400001370000 0000
    00000001  0000 0000  00000005  00000009
    00000000 00000000 00000000 00000000`));
  assert.equal(req.transit, true);
  assert.equal(req.cont, false);
  assert.equal(req.csg, 1);
  assert.equal(req.nsg, 3);
  assert.equal(req.isid.toString('hex'), '400001370000');
  assert.equal(req.cmdSN, 5);
  assert.equal(req.expStatSN, 9);
  const rsp = P.encodeLoginResponse({
    transit: true, cont: false, csg: 1, nsg: 3, versionMax: 0, versionActive: 0, isid: req.isid, tsih: 0x1234, itt: 1,
    statSN: 9, expCmdSN: 5, maxCmdSN: 68, statusClass: 2, statusDetail: 1,
  }, 0x10);
  assert.equal(rsp.toString('hex'), hex(`
    23 87 00 00  00 000010  400001370000 1234
    00000001 00000000  00000009 00000005 00000044  0201 0000  00000000 00000000`).toString('hex'));
});

test('Data-In with status, SCSI Response with residuals, R2T, Reject: fixed bytes', () => {
  const lun = Buffer.alloc(8);
  const seq = { statSN: 1, expCmdSN: 2, maxCmdSN: 3 };
  const din = P.encodeDataIn({
    final: true, withStatus: true, status: 0, overflow: false, underflow: true, residual: 512, lunBytes: lun, itt: 7, ...seq, dataSN: 4, bufferOffset: 8192,
  }, 1024);
  assert.equal(din.toString('hex'),
    hex(`25 83 00 00 00 000400 0000000000000000 00000007 ffffffff 00000001 00000002 00000003 00000004 00002000 00000200`).toString('hex'));
  const noStatus = P.encodeDataIn({
    final: false, withStatus: false, status: 2, overflow: true, underflow: false, residual: 9, lunBytes: lun, itt: 7, ...seq, dataSN: 0, bufferOffset: 0,
  }, 4);
  assert.equal(noStatus[1], 0x00);
  assert.equal(noStatus.readUInt32BE(24), 0, 'StatSN only with the S bit');
  assert.equal(noStatus.readUInt32BE(44), 0);
  const rsp = P.encodeScsiResponse({
    ...seq, itt: 7, response: 0, status: 2, overflow: true, underflow: false, residual: 100,
    bidiOverflow: false, bidiUnderflow: false, bidiResidual: 0, expDataSN: 3,
  }, 20);
  assert.equal(rsp.toString('hex'),
    hex(`21 84 00 02 00 000014 0000000000000000 00000007 00000000 00000001 00000002 00000003 00000003 00000000 00000064`).toString('hex'));
  const r2t = P.encodeR2T({ ...seq, lunBytes: lun, itt: 7, ttt: 0x55, r2tSN: 1, bufferOffset: 65536, length: 262144 });
  assert.equal(r2t.toString('hex'),
    hex(`31 80 00 00 00 000000 0000000000000000 00000007 00000055 00000001 00000002 00000003 00000001 00010000 00040000`).toString('hex'));
  const rej = P.encodeReject({ ...seq, reason: P.RejectReason.PROTOCOL_ERROR });
  assert.equal(rej.subarray(0, 8).toString('hex'), '3f80040000000030');
  assert.equal(rej.readUInt32BE(16), 0xffffffff);
});

test('CRC32C digests are the RFC 7143 B.4 values, little-endian on the wire', () => {
  // RFC 7143 appendix B.4: 32 bytes of zeros -> 0x8a9136aa; 32 bytes of 0xff -> 0x62a8ab43.
  assert.equal(digestOf(Buffer.alloc(32)).readUInt32LE(0), 0x8a9136aa);
  assert.equal(digestOf(Buffer.alloc(32, 0xff)).readUInt32LE(0), 0x62a8ab43);
  assert.deepEqual(digestOf(Buffer.alloc(16), Buffer.alloc(16)), digestOf(Buffer.alloc(32)));
});

test('framing: PDUs split over chunks, padding and digests checked, oversized data skipped', () => {
  const r = new PduReader(8192);
  r.headerDigest = true;
  r.dataDigest = true;
  const bhs = Buffer.alloc(48);
  bhs[0] = 0x00;
  bhs[7] = 5;
  const wire = Buffer.concat(framePdu(bhs, Buffer.from('hello'), true, true));
  assert.equal(wire.length, 48 + 4 + 8 + 4);
  for (const byte of wire) r.push(Buffer.from([byte]));
  const f = r.next();
  assert.equal(f?.kind, 'pdu');
  assert.equal(f?.kind === 'pdu' && f.pdu.data.toString(), 'hello');
  assert.equal(r.next(), null);
  const bad = Buffer.from(wire);
  bad[60] = bad[60]! ^ 1; // inside the data digest
  r.push(bad);
  assert.equal(r.next()?.kind, 'data-digest');
  const badHeader = Buffer.from(wire);
  badHeader[3] = badHeader[3]! ^ 1;
  r.push(badHeader);
  assert.equal(r.next()?.kind, 'header-digest');
  const small = new PduReader(16);
  const big = Buffer.alloc(48);
  big[7] = 100;
  small.push(Buffer.concat([big, Buffer.alloc(100), bhs, Buffer.from('hello\0\0\0')]));
  const tooLong = small.next();
  assert.equal(tooLong?.kind, 'too-long');
  const after = small.next();
  assert.equal(after?.kind === 'pdu' && after.pdu.data.toString(), 'hello', 'the PDU after a skipped one is read');
});

test('text: pairs parsed with bounds; continuation accumulated under a limit', () => {
  assert.deepEqual(parseText(Buffer.from('A=1\0B=two\0\0\0')), [['A', '1'], ['B', 'two']]);
  assert.deepEqual(parseText(Buffer.from('A=\0')), [['A', '']]);
  assert.throws(() => parseText(Buffer.from('novalue\0')), TextError);
  assert.throws(() => parseText(Buffer.from(`${'K'.repeat(64)}=1\0`)), TextError);
  assert.doesNotThrow(() => parseText(Buffer.from(`${'K'.repeat(63)}=1\0`)));
  assert.throws(() => parseText(Buffer.from(`TargetName=${'x'.repeat(256)}\0`)), TextError);
  assert.doesNotThrow(() => parseText(Buffer.from(`CHAP_C=0x${'a'.repeat(2000)}\0`)));
  assert.throws(() => parseText(Buffer.from(`CHAP_C=0x${'a'.repeat(8200)}\0`)), TextError);
  const acc = new TextAccumulator(20);
  assert.equal(acc.add(Buffer.from('Key=va')), true);
  assert.equal(acc.add(Buffer.from('lue\0')), true);
  assert.deepEqual(acc.finish(), [['Key', 'value']]);
  assert.equal(acc.add(Buffer.alloc(21)), false);
  assert.equal(encodeText([['A', 'b']]).toString(), 'A=b\0');
  assert.deepEqual(splitText(Buffer.alloc(10), 4).map((b) => b.length), [4, 4, 2]);
});

test('CHAP: MD5(id || secret || challenge) known vectors, hex and base64', () => {
  const challenge = hex('0102030405060708090a0b0c0d0e0f10');
  // printf '\x01secret\x01...\x10' | md5sum
  assert.equal(chapResponse(1, 'secret', challenge).toString('hex'), 'bb84a7f2e418de521cf8e784e3597d7e');
  assert.equal(chapResponse(7, 'mutualsecret', hex('aabbccdd')).toString('hex'), '09b62bd347875738a909ff932ea57ef0');
  assert.deepEqual(decodeBinary('0xAABB'), hex('aabb'));
  assert.deepEqual(decodeBinary('0X0aBb'), hex('0abb'));
  assert.deepEqual(decodeBinary('0b' + hex('aabbcc').toString('base64')), hex('aabbcc'));
  assert.equal(decodeBinary('aabb'), null);
  assert.equal(decodeBinary('0xzz'), null);
  assert.equal(decodeBinary('0x'), null);
  assert.equal(encodeBinary(hex('00ff')), '0x00ff');
  const ours = { id: 1, challenge };
  assert.equal(verifyResponse(ours, 'secret', hex('bb84a7f2e418de521cf8e784e3597d7e')), true);
  assert.equal(verifyResponse(ours, 'secreT', hex('bb84a7f2e418de521cf8e784e3597d7e')), false);
  assert.equal(verifyResponse(ours, 'secret', hex('bb84')), false);
});

test('the nexus: name,i,0xISID and an iSCSI TransportID padded to 4', () => {
  const n = nexusOf('iqn.a', hex('400001370000'));
  assert.equal(n.initiator, 'iqn.a,i,0x400001370000');
  assert.equal(n.transportId[0], 0x45);
  assert.equal(n.transportId.length % 4, 0);
  assert.equal(n.transportId.readUInt16BE(2), n.transportId.length - 4);
  assert.equal(n.transportId.toString('utf8', 4, 4 + n.initiator.length), n.initiator);
  assert.equal(n.transportId[4 + n.initiator.length], 0);
});

test('the CmdSN window: in order only, bounded by the queue depth, MaxCmdSN never goes back', () => {
  assert.equal(snLess(0xffffffff, 0), true);
  assert.equal(snLess(0, 0xffffffff), false);
  const s = new IscsiSession(1, Buffer.alloc(6), 'i', null, defaultParams(), '127.0.0.1', 0xfffffffe, 4);
  assert.equal(s.maxCmdSN, 1);
  assert.equal(s.admit(0xfffffffe, false), 'ok');
  assert.equal(s.admit(0xffffffff, false), 'ok');
  assert.equal(s.maxCmdSN, 1, 'commands taken do not move MaxCmdSN');
  assert.equal(s.admit(5, false), 'outside-window');
  assert.equal(s.admit(0xffffffff, false), 'outside-window', 'a CmdSN already taken is ignored');
  assert.equal(s.admit(0, false), 'ok');
  assert.equal(s.admit(1, false), 'ok');
  assert.equal(s.admit(2, false), 'outside-window', 'past MaxCmdSN');
  s.done(false);
  assert.equal(s.maxCmdSN, 2);
  assert.equal(s.admit(2, false), 'ok');
  for (let i = 0; i < 8; i++) assert.equal(s.admit(0, true), 'ok');
  assert.equal(s.admit(0, true), 'too-many-immediate');
});
