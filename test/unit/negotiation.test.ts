// The option phase as a state machine, branch by branch.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as C from '../../src/nbd/codec.js';
import { diskCapabilities, readOnlyCapabilities, type Capabilities, type ExportBackend } from '../../src/export/backend.js';
import { Negotiation } from '../../src/nbd/negotiation.js';
import * as P from '../../src/nbd/protocol.js';
import { ExportRegistry } from '../../src/export/registry.js';

function fake(name: string, readOnly = false, caps: Capabilities = readOnly ? readOnlyCapabilities(true) : diskCapabilities(false)): ExportBackend {
  const nope = (): Promise<never> => Promise.reject(new Error('not used'));
  return { name, size: 1 << 20, readOnly, description: `desc ${name}`, capabilities: () => caps, read: nope, write: nope, writeZeroes: nope, trim: nope,
    flush: nope, cache: nope, extents: nope };
}

function table(...b: ExportBackend[]): ExportRegistry {
  const r = new ExportRegistry();
  for (const x of b) r.add(x);
  return r;
}

const replyType = (b: Buffer): number => b.readUInt32BE(12);
const info = (name: string, infos: number[] = []): Buffer => {
  const n = Buffer.from(name);
  const b = Buffer.alloc(6 + n.length + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((x, i) => b.writeUInt16BE(x, 6 + n.length + 2 * i));
  return b;
};
const meta = (name: string, qs: string[]): Buffer => {
  const parts: Buffer[] = [];
  const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
  parts.push(u32(name.length), Buffer.from(name), u32(qs.length));
  for (const q of qs) parts.push(u32(q.length), Buffer.from(q));
  return Buffer.concat(parts);
};

test('unknown options get ERR_UNSUP and negotiation continues', () => {
  const n = new Negotiation(table(fake('db')), true);
  const s = n.handle(42, Buffer.from('junk'));
  assert.equal(s.kind, 'continue');
  assert.equal(replyType(s.replies[0]!), P.NBD_REP_ERR_UNSUP);
  assert.equal(n.handle(P.NBD_OPT_STARTTLS, Buffer.alloc(0)).replies.length, 1);
});

test('LIST sends one SERVER per export then ACK; data is refused', () => {
  const n = new Negotiation(table(fake('a'), fake('b')), true);
  const s = n.handle(P.NBD_OPT_LIST, Buffer.alloc(0));
  assert.deepEqual(s.replies.map(replyType), [P.NBD_REP_SERVER, P.NBD_REP_SERVER, P.NBD_REP_ACK]);
  assert.equal(replyType(n.handle(P.NBD_OPT_LIST, Buffer.from('x')).replies[0]!), P.NBD_REP_ERR_INVALID);
});

test('GO: INFO_EXPORT, requested NAME, BLOCK_SIZE, ACK, then transmission', () => {
  const n = new Negotiation(table(fake('db')), true);
  const s = n.handle(P.NBD_OPT_GO, info('db', [P.NBD_INFO_NAME]));
  assert.equal(s.kind, 'transmission');
  assert.deepEqual(s.replies.map(replyType), [P.NBD_REP_INFO, P.NBD_REP_INFO, P.NBD_REP_INFO, P.NBD_REP_ACK]);
  const exp = s.replies[0]!.subarray(20);
  assert.equal(exp.readUInt16BE(0), P.NBD_INFO_EXPORT);
  assert.equal(exp.readBigUInt64BE(2), 1n << 20n);
  const flags = exp.readUInt16BE(10);
  assert.ok(flags & P.NBD_FLAG_CAN_MULTI_CONN);
  assert.equal(flags & P.NBD_FLAG_SEND_DF, 0, 'DF only with structured replies');
});

test('GO on the empty name picks the only export; unknown names get ERR_UNKNOWN', () => {
  const n = new Negotiation(table(fake('db')), true);
  assert.equal(n.handle(P.NBD_OPT_INFO, info('')).kind, 'continue');
  const s = n.handle(P.NBD_OPT_GO, info('nope'));
  assert.equal(s.kind, 'continue');
  assert.equal(replyType(s.replies[0]!), P.NBD_REP_ERR_UNKNOWN);
  const two = new Negotiation(table(fake('a'), fake('b')), true);
  assert.equal(replyType(two.handle(P.NBD_OPT_GO, info('')).replies[0]!), P.NBD_REP_ERR_UNKNOWN);
});

test('GO with a malformed payload gets ERR_INVALID', () => {
  const n = new Negotiation(table(fake('db')), true);
  assert.equal(replyType(n.handle(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1])).replies[0]!), P.NBD_REP_ERR_INVALID);
});

test('read-only exports advertise READ_ONLY and no TRIM/WRITE_ZEROES', () => {
  const n = new Negotiation(table(fake('r', true)), true);
  const s = n.handle(P.NBD_OPT_GO, info('r'));
  const flags = s.replies[0]!.subarray(20).readUInt16BE(10);
  assert.ok(flags & P.NBD_FLAG_READ_ONLY);
  assert.equal(flags & (P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_FAST_ZERO), 0);
});

test('EXPORT_NAME: unknown name closes, known name enters transmission', () => {
  const n = new Negotiation(table(fake('db')), false);
  assert.equal(n.handle(P.NBD_OPT_EXPORT_NAME, Buffer.from('x')).kind, 'close');
  const s = n.handle(P.NBD_OPT_EXPORT_NAME, Buffer.from('db'));
  assert.equal(s.kind, 'transmission');
  assert.equal(s.replies[0]!.length, 134);
});

test('meta contexts need structured replies; SET selects base:allocation for GO', () => {
  const n = new Negotiation(table(fake('db')), true);
  assert.equal(replyType(n.handle(P.NBD_OPT_SET_META_CONTEXT, meta('db', [P.BASE_ALLOCATION])).replies[0]!), P.NBD_REP_ERR_INVALID);
  assert.equal(replyType(n.handle(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)).replies[0]!), P.NBD_REP_ACK);
  assert.equal(replyType(n.handle(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)).replies[0]!), P.NBD_REP_ERR_INVALID);
  const list = n.handle(P.NBD_OPT_LIST_META_CONTEXT, meta('db', []));
  assert.deepEqual(list.replies.map(replyType), [P.NBD_REP_META_CONTEXT, P.NBD_REP_ACK]);
  const other = n.handle(P.NBD_OPT_SET_META_CONTEXT, meta('db', ['qemu:dirty-bitmap:x']));
  assert.deepEqual(other.replies.map(replyType), [P.NBD_REP_ACK]);
  const set = n.handle(P.NBD_OPT_SET_META_CONTEXT, meta('db', [P.BASE_ALLOCATION]));
  assert.deepEqual(set.replies.map(replyType), [P.NBD_REP_META_CONTEXT, P.NBD_REP_ACK]);
  assert.equal(set.replies[0]!.readUInt32BE(20), P.BASE_ALLOCATION_ID);
  const go = n.handle(P.NBD_OPT_GO, info('db'));
  assert.equal(go.kind, 'transmission');
  if (go.kind === 'transmission') {
    assert.equal(go.session.allocationContext, true);
    assert.equal(go.session.structured, true);
  }
});

test('contexts chosen for another export do not apply', () => {
  const n = new Negotiation(table(fake('a'), fake('b')), true);
  n.handle(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
  n.handle(P.NBD_OPT_SET_META_CONTEXT, meta('a', [P.BASE_ALLOCATION]));
  const go = n.handle(P.NBD_OPT_GO, info('b'));
  assert.ok(go.kind === 'transmission' && !go.session.allocationContext);
});

test('ABORT is acknowledged and closes', () => {
  const s = new Negotiation(table(fake('db')), true).handle(P.NBD_OPT_ABORT, Buffer.alloc(0));
  assert.equal(s.kind, 'close');
  assert.deepEqual(s.replies[0], C.encodeOptionReply(P.NBD_OPT_ABORT, P.NBD_REP_ACK));
});

test('transmission flags follow the backend\'s capabilities: a drill-like export without fast zero, cache or FUA advertises none of them', async () => {
  const { transmissionFlags } = await import('../../src/nbd/negotiation.js');
  const caps: Capabilities = { ...diskCapabilities(false), fua: false, fastZero: false, cache: false, multiConn: false };
  const f = transmissionFlags(fake('d', false, caps), true);
  assert.equal(f & P.NBD_FLAG_SEND_FAST_ZERO, 0);
  assert.equal(f & P.NBD_FLAG_SEND_FUA, 0);
  assert.equal(f & P.NBD_FLAG_SEND_CACHE, 0);
  assert.equal(f & P.NBD_FLAG_CAN_MULTI_CONN, 0);
  assert.ok(f & P.NBD_FLAG_SEND_WRITE_ZEROES && f & P.NBD_FLAG_SEND_TRIM && f & P.NBD_FLAG_SEND_FLUSH);
  const full = transmissionFlags(fake('v'), true);
  for (const flag of [P.NBD_FLAG_SEND_FAST_ZERO, P.NBD_FLAG_SEND_FUA, P.NBD_FLAG_SEND_CACHE, P.NBD_FLAG_CAN_MULTI_CONN]) assert.ok(full & flag);
});
