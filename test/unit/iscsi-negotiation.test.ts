// The iSCSI login machine and the operational keys of RFC 7143 section 13, key by key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoginNegotiation, LoginStatus, type LoginStep } from '../../src/iscsi/negotiation.js';
import { answerKey, defaultParams, applyKey, settleParams } from '../../src/iscsi/keys.js';
import { chapResponse, decodeBinary, encodeBinary } from '../../src/iscsi/chap.js';
import type { LoginRequest } from '../../src/iscsi/pdu.js';
import type { IscsiAuth, IscsiTarget, IscsiTargetTable } from '../../src/iscsi/targets.js';
import type { TextPair } from '../../src/iscsi/text.js';
import { ISCSI_FIRST_BURST_BYTES, ISCSI_MAX_BURST_BYTES, ISCSI_MAX_OUTSTANDING_R2T, ISCSI_MAX_RECV_DATA_SEGMENT } from '../../src/limits/limits.js';

const none: IscsiAuth = { chap: null, mutual: null, initiators: null };
const lu = {
  planDataOut: () => ({ kind: 'none' as const }),
  execute: () => Promise.reject(new Error('unused')),
  reset: () => {},
  nexusLost: () => {},
  nexusAdded: () => {},
};

function table(auth: Partial<IscsiAuth> = {}, discovery: Partial<IscsiAuth> = {}): IscsiTargetTable {
  const t: IscsiTarget = { iqn: 'iqn.t:db', exportName: 'db', lu, auth: { ...none, ...auth } };
  return { lookup: (n) => (n === t.iqn ? t : undefined), list: () => [t], discoveryAuth: { ...none, ...discovery } };
}

function req(csg: number, nsg: number, transit = true, extra: Partial<LoginRequest> = {}): LoginRequest {
  return { transit, cont: false, csg, nsg, versionMax: 0, versionMin: 0, isid: Buffer.alloc(6), tsih: 0, itt: 1, cid: 0, cmdSN: 1, expStatSN: 0, ...extra };
}

const FIRST: TextPair[] = [['InitiatorName', 'iqn.i'], ['TargetName', 'iqn.t:db'], ['SessionType', 'Normal']];

function reply(s: LoginStep): Extract<LoginStep, { kind: 'reply' }> {
  assert.equal(s.kind, 'reply', s.kind === 'refuse' ? s.why : '');
  return s as Extract<LoginStep, { kind: 'reply' }>;
}
const get = (pairs: readonly TextPair[], k: string): string | undefined => pairs.find(([x]) => x === k)?.[1];

test('a login without authentication: security then operational then full feature', () => {
  const n = new LoginNegotiation(table());
  const a = reply(n.step(req(0, 1), [...FIRST, ['AuthMethod', 'CHAP,None']]));
  assert.equal(get(a.pairs, 'AuthMethod'), 'None');
  assert.equal(get(a.pairs, 'TargetPortalGroupTag'), '1');
  assert.equal(a.transit, true);
  assert.equal(a.nsg, 1);
  const b = reply(n.step(req(1, 3), [['HeaderDigest', 'None,CRC32C'], ['MaxRecvDataSegmentLength', '65536']]));
  assert.equal(b.done, true);
  assert.equal(get(b.pairs, 'HeaderDigest'), 'None');
  assert.equal(get(b.pairs, 'MaxRecvDataSegmentLength'), String(ISCSI_MAX_RECV_DATA_SEGMENT), 'we declare ours');
  assert.equal(n.params.initiatorMaxRecv, 65536);
});

test('refusals carry their Status-Class and Detail', () => {
  const code = (s: LoginStep): number => (s.kind === 'refuse' ? s.status : -1);
  assert.equal(code(new LoginNegotiation(table()).step(req(0, 1), [['TargetName', 'iqn.t:db']])), LoginStatus.MISSING_PARAMETER);
  assert.equal(code(new LoginNegotiation(table()).step(req(0, 1), [['InitiatorName', 'iqn.i']])), LoginStatus.MISSING_PARAMETER);
  assert.equal(code(new LoginNegotiation(table()).step(req(0, 1), [['InitiatorName', 'iqn.i'], ['TargetName', 'iqn.nope']])), LoginStatus.TARGET_NOT_FOUND);
  assert.equal(code(new LoginNegotiation(table({ initiators: ['iqn.other'] })).step(req(0, 1), FIRST)), LoginStatus.AUTHORIZATION_FAILURE);
  assert.equal(code(new LoginNegotiation(table({}, { initiators: ['iqn.other'] })).step(req(0, 1), [['InitiatorName', 'iqn.i'], ['SessionType', 'Discovery']])),
    LoginStatus.AUTHORIZATION_FAILURE);
  assert.equal(code(new LoginNegotiation(table()).step(req(0, 1, true, { versionMin: 1 }), FIRST)), LoginStatus.UNSUPPORTED_VERSION);
  assert.equal(code(new LoginNegotiation(table()).step(req(0, 1), [...FIRST.slice(0, 2), ['SessionType', 'Weird']])), LoginStatus.SESSION_TYPE_NOT_SUPPORTED);
  assert.equal(code(new LoginNegotiation(table()).step(req(3, 3), FIRST)), LoginStatus.INITIATOR_ERROR);
  assert.equal(code(new LoginNegotiation(table()).step(req(1, 0), FIRST)), LoginStatus.INITIATOR_ERROR, 'going back a stage');
  assert.equal(code(new LoginNegotiation(table()).step(req(0, 2), FIRST)), LoginStatus.INITIATOR_ERROR, 'stage 2 is reserved');
  const twice = new LoginNegotiation(table());
  reply(twice.step(req(1, 1, false), [...FIRST, ['MaxBurstLength', '65536']]));
  assert.equal(code(twice.step(req(1, 3), [['MaxBurstLength', '65536']])), LoginStatus.INITIATOR_ERROR, 'a key negotiated twice');
  // CHAP required: offering None only, or skipping the security stage, is an authentication failure.
  const chap = { chap: { user: 'u', secret: 'sssssssssssss' } };
  assert.equal(code(new LoginNegotiation(table(chap)).step(req(0, 1), [...FIRST, ['AuthMethod', 'None']])), LoginStatus.AUTH_FAILURE);
  assert.equal(code(new LoginNegotiation(table(chap)).step(req(1, 3), FIRST)), LoginStatus.AUTH_FAILURE);
  assert.equal(code(new LoginNegotiation(table(chap)).step(req(0, 3), FIRST)), LoginStatus.AUTH_FAILURE);
});

test('identity keys may come again at a later stage (libiscsi repeats them)', () => {
  const n = new LoginNegotiation(table());
  reply(n.step(req(0, 1), [...FIRST, ['AuthMethod', 'None']]));
  assert.equal(reply(n.step(req(1, 3), [...FIRST, ['ErrorRecoveryLevel', '0']])).done, true);
});

test('one-way CHAP: the challenge, a right and a wrong response', () => {
  const secret = 'the-secret-12';
  const run = (answer: (id: number, c: Buffer) => TextPair[]): LoginStep => {
    const n = new LoginNegotiation(table({ chap: { user: 'u', secret } }));
    const a = reply(n.step(req(0, 1), [...FIRST, ['AuthMethod', 'None,CHAP']]));
    assert.equal(get(a.pairs, 'AuthMethod'), 'CHAP');
    assert.equal(a.transit, false, 'no transit before CHAP is done');
    const b = reply(n.step(req(0, 1, false), [['CHAP_A', '7,5']]));
    assert.equal(get(b.pairs, 'CHAP_A'), '5');
    const id = Number(get(b.pairs, 'CHAP_I'));
    const c = decodeBinary(get(b.pairs, 'CHAP_C')!)!;
    assert.ok(c.length >= 16, 'a challenge of at least 16 bytes');
    return n.step(req(0, 1), answer(id, c));
  };
  const ok = reply(run((id, c) => [['CHAP_N', 'u'], ['CHAP_R', encodeBinary(chapResponse(id, secret, c))]]));
  assert.equal(ok.transit, true);
  assert.equal(ok.nsg, 1);
  const b64 = reply(run((id, c) => [['CHAP_N', 'u'], ['CHAP_R', `0b${chapResponse(id, secret, c).toString('base64')}`]]));
  assert.equal(b64.transit, true);
  assert.equal(run((id, c) => [['CHAP_N', 'u'], ['CHAP_R', encodeBinary(chapResponse(id, 'wrong', c))]]).kind, 'refuse');
  assert.equal(run((id, c) => [['CHAP_N', 'v'], ['CHAP_R', encodeBinary(chapResponse(id, secret, c))]]).kind, 'refuse');
  assert.equal(run((id, c) => [['CHAP_N', 'u'], ['CHAP_R', encodeBinary(chapResponse(id + 1, secret, c))]]).kind, 'refuse');
  assert.equal(run(() => [['CHAP_N', 'u']]).kind, 'refuse');
  // An algorithm we do not have.
  const n = new LoginNegotiation(table({ chap: { user: 'u', secret } }));
  reply(n.step(req(0, 1), [...FIRST, ['AuthMethod', 'CHAP']]));
  const s = n.step(req(0, 1, false), [['CHAP_A', '6,7']]);
  assert.equal(s.kind === 'refuse' && s.status, LoginStatus.AUTH_FAILURE);
});

test('mutual CHAP: our answer to the initiator\'s challenge; a reflected challenge refused', () => {
  const secret = 'the-secret-12';
  const mutual = { user: 'tgt', secret: 'mutual-secret-9' };
  const start = (): { n: LoginNegotiation; id: number; c: Buffer } => {
    const n = new LoginNegotiation(table({ chap: { user: 'u', secret }, mutual }));
    reply(n.step(req(0, 1), [...FIRST, ['AuthMethod', 'CHAP']]));
    const b = reply(n.step(req(0, 1, false), [['CHAP_A', '5']]));
    return { n, id: Number(get(b.pairs, 'CHAP_I')), c: decodeBinary(get(b.pairs, 'CHAP_C')!)! };
  };
  const { n, id, c } = start();
  const mine = Buffer.from('0123456789abcdef');
  const r = reply(n.step(req(0, 1), [
    ['CHAP_N', 'u'], ['CHAP_R', encodeBinary(chapResponse(id, secret, c))], ['CHAP_I', '77'], ['CHAP_C', encodeBinary(mine)],
  ]));
  assert.equal(get(r.pairs, 'CHAP_N'), 'tgt');
  assert.equal(get(r.pairs, 'CHAP_R'), encodeBinary(chapResponse(77, mutual.secret, mine)));
  const x = start();
  const refl = x.n.step(req(0, 1), [
    ['CHAP_N', 'u'], ['CHAP_R', encodeBinary(chapResponse(x.id, secret, x.c))], ['CHAP_I', String(x.id)], ['CHAP_C', encodeBinary(x.c)],
  ]);
  assert.equal(refl.kind, 'refuse');
  // Mutual asked of a target without a mutual secret.
  const n2 = new LoginNegotiation(table({ chap: { user: 'u', secret } }));
  reply(n2.step(req(0, 1), [...FIRST, ['AuthMethod', 'CHAP']]));
  const b2 = reply(n2.step(req(0, 1, false), [['CHAP_A', '5']]));
  const s2 = n2.step(req(0, 1), [
    ['CHAP_N', 'u'],
    ['CHAP_R', encodeBinary(chapResponse(Number(get(b2.pairs, 'CHAP_I')), secret, decodeBinary(get(b2.pairs, 'CHAP_C')!)!))],
    ['CHAP_I', '1'],
    ['CHAP_C', '0x0102'],
  ]);
  assert.equal(s2.kind, 'refuse');
});

test('operational keys, one by one: type, default, range and our answer', () => {
  const a = (k: string, v: string, discovery = false): string | undefined => {
    const r = answerKey(k, v, discovery);
    return r.kind === 'answer' ? r.value : `noted:${r.result}`;
  };
  // Lists: the first value offered that we support.
  assert.equal(a('HeaderDigest', 'CRC32C,None'), 'CRC32C');
  assert.equal(a('HeaderDigest', 'None,CRC32C'), 'None');
  assert.equal(a('DataDigest', 'CRC32C'), 'CRC32C');
  assert.equal(a('HeaderDigest', 'MD5'), 'Reject');
  assert.equal(a('TaskReporting', 'FastAbort,RFC3720'), 'RFC3720');
  // Booleans: OR for InitialR2T and the in-order keys, AND for ImmediateData and markers.
  assert.equal(a('InitialR2T', 'No'), 'No');
  assert.equal(a('InitialR2T', 'Yes'), 'Yes');
  assert.equal(a('ImmediateData', 'Yes'), 'Yes');
  assert.equal(a('ImmediateData', 'No'), 'No');
  assert.equal(a('DataPDUInOrder', 'No'), 'Yes');
  assert.equal(a('DataSequenceInOrder', 'No'), 'Yes');
  assert.equal(a('OFMarker', 'Yes'), 'No');
  assert.equal(a('IFMarker', 'No'), 'No');
  assert.equal(a('ImmediateData', 'maybe'), 'Reject');
  assert.equal(a('OFMarkInt', '2048'), 'Irrelevant');
  // Numbers: min or max with ours, in range.
  assert.equal(a('MaxConnections', '8'), '1');
  assert.equal(a('MaxConnections', '0'), 'Reject');
  assert.equal(a('MaxBurstLength', '16776192'), String(ISCSI_MAX_BURST_BYTES));
  assert.equal(a('MaxBurstLength', '4096'), '4096');
  assert.equal(a('MaxBurstLength', '511'), 'Reject');
  assert.equal(a('MaxBurstLength', '16777216'), 'Reject');
  assert.equal(a('FirstBurstLength', '16776192'), String(ISCSI_FIRST_BURST_BYTES));
  assert.equal(a('DefaultTime2Wait', '0'), '2');
  assert.equal(a('DefaultTime2Wait', '10'), '10');
  assert.equal(a('DefaultTime2Wait', '3601'), 'Reject');
  assert.equal(a('DefaultTime2Retain', '60'), '20');
  assert.equal(a('MaxOutstandingR2T', '64'), String(ISCSI_MAX_OUTSTANDING_R2T));
  assert.equal(a('MaxOutstandingR2T', '1'), '1');
  assert.equal(a('ErrorRecoveryLevel', '2'), '0');
  assert.equal(a('ErrorRecoveryLevel', '3'), 'Reject');
  assert.equal(a('iSCSIProtocolLevel', '2'), '1');
  assert.equal(a('MaxBurstLength', '0x100'), 'Reject', 'numbers are decimal here');
  // Declarative.
  assert.equal(a('MaxRecvDataSegmentLength', '262144'), 'noted:262144');
  assert.equal(a('MaxRecvDataSegmentLength', '100'), 'Reject');
  // Unknown, X- and target-only keys.
  assert.equal(a('X-com.example.foo', 'bar'), 'NotUnderstood');
  assert.equal(a('X#private', '1'), 'NotUnderstood');
  assert.equal(a('NoSuchKey', '1'), 'NotUnderstood');
  assert.equal(a('TargetAddress', '1.2.3.4'), 'Reject');
  // Discovery sessions: the normal-only keys are Irrelevant.
  for (const k of [
    'MaxBurstLength', 'FirstBurstLength', 'InitialR2T', 'ImmediateData', 'MaxOutstandingR2T', 'DataPDUInOrder', 'DataSequenceInOrder', 'MaxConnections',
  ]) {
    assert.equal(a(k, k.endsWith('Length') ? '65536' : k === 'MaxOutstandingR2T' || k === 'MaxConnections' ? '1' : 'Yes', true), 'Irrelevant', k);
  }
  assert.equal(a('HeaderDigest', 'None', true), 'None');
});

test('defaults hold for keys nobody offered; results apply; FirstBurstLength never above MaxBurstLength', () => {
  const p = defaultParams();
  assert.equal(p.initialR2T, true);
  assert.equal(p.immediateData, true);
  assert.equal(p.maxBurstLength, 262144);
  assert.equal(p.firstBurstLength, 65536);
  assert.equal(p.initiatorMaxRecv, 8192);
  assert.equal(p.maxOutstandingR2T, 1);
  applyKey(p, 'MaxBurstLength', '4096');
  applyKey(p, 'HeaderDigest', 'CRC32C');
  settleParams(p);
  assert.equal(p.firstBurstLength, 4096);
  assert.equal(p.headerDigest, true);
});

test('a discovery session: no TargetName needed, TargetPortalGroupTag not sent, unknown keys NotUnderstood', () => {
  const n = new LoginNegotiation(table());
  const r = reply(n.step(req(1, 3), [['InitiatorName', 'iqn.i'], ['SessionType', 'Discovery'], ['X-foo', '1'], ['MaxBurstLength', '65536']]));
  assert.equal(r.done, true);
  assert.equal(get(r.pairs, 'X-foo'), 'NotUnderstood');
  assert.equal(get(r.pairs, 'MaxBurstLength'), 'Irrelevant');
  assert.equal(get(r.pairs, 'TargetPortalGroupTag'), undefined);
  assert.equal(n.identity?.sessionType, 'Discovery');
});
