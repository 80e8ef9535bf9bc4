// The NBD codec against fixed byte strings written out by hand from the spec.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as C from '../../src/nbd/codec.js';
import * as P from '../../src/nbd/protocol.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES', () => {
  assert.deepEqual(C.encodeGreeting(), hex('4e42444d41474943 49484156454f5054 0003'));
});

test('option header decodes magic, option and length', () => {
  const h = C.decodeOptionHeader(hex('49484156454f5054 00000007 0000000a'));
  assert.equal(h.magic, P.IHAVEOPT);
  assert.equal(h.option, P.NBD_OPT_GO);
  assert.equal(h.length, 10);
});

test('option reply: magic 0x3e889045565a9, option, type, length, data', () => {
  assert.deepEqual(C.encodeOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ACK), hex('0003e889045565a9 00000003 00000001 00000000'));
  assert.deepEqual(
    C.encodeOptionError(99, P.NBD_REP_ERR_UNSUP, 'no'),
    hex('0003e889045565a9 00000063 80000001 00000002 6e6f'),
  );
});

test('export name reply: size, flags, and 124 zeros unless NO_ZEROES', () => {
  assert.deepEqual(C.encodeExportNameReply(0x40000000n, 0x0d0d, true), hex('0000000040000000 0d0d'));
  const padded = C.encodeExportNameReply(1n, 1, false);
  assert.equal(padded.length, 134);
  assert.ok(padded.subarray(10).every((b) => b === 0));
});

test('INFO/GO request: name and information requests', () => {
  const r = C.decodeInfoRequest(hex('00000002 6462 0002 0001 0003'));
  assert.deepEqual(r, { name: 'db', infos: [P.NBD_INFO_NAME, P.NBD_INFO_BLOCK_SIZE] });
  assert.deepEqual(C.decodeInfoRequest(hex('00000000 0000')), { name: '', infos: [] });
});

test('INFO/GO request: malformed payloads are DecodeErrors, never crashes', () => {
  for (const bad of ['', '000000', '00000005 6462', '00000002 6462', '00000002 6462 0002 0001', '00000002 6462 0000 ff', '00000001 00 0000']) {
    assert.throws(() => C.decodeInfoRequest(hex(bad)), C.DecodeError, bad);
  }
  assert.throws(() => C.decodeInfoRequest(hex('00001001')), /longer than 4096/);
});

test('NBD_INFO_EXPORT, NAME, BLOCK_SIZE payloads', () => {
  assert.deepEqual(C.encodeInfoExport(0x100000n, 0x0101), hex('0000 0000000000100000 0101'));
  assert.deepEqual(C.encodeInfoString(P.NBD_INFO_NAME, 'db'), hex('0001 6462'));
  assert.deepEqual(C.encodeInfoBlockSize(1, 4096, 32 << 20), hex('0003 00000001 00001000 02000000'));
});

test('NBD_REP_SERVER entry: u32 name length, name, description', () => {
  assert.deepEqual(C.encodeServerEntry('db', 'x'), hex('00000002 6462 78'));
});

test('meta context request and reply', () => {
  const req = C.decodeMetaContextRequest(hex('00000002 6462 00000001 0000000f 626173653a616c6c6f636174696f6e'));
  assert.deepEqual(req, { exportName: 'db', queries: ['base:allocation'] });
  assert.throws(() => C.decodeMetaContextRequest(hex('00000002 6462 00000002 00000001 61')), C.DecodeError);
  assert.throws(() => C.decodeMetaContextRequest(hex('00000002 6462 00000000 ff')), /stray/);
  assert.deepEqual(C.encodeMetaContext(1, 'base:allocation'), hex('00000001 626173653a616c6c6f636174696f6e'));
});

test('request: 28 bytes, 64-bit offset and handle', () => {
  const r = C.decodeRequest(hex('25609513 0001 0001 0102030405060708 fffffffffffff000 00001000'));
  assert.deepEqual(r, {
    magic: P.REQUEST_MAGIC, flags: P.NBD_CMD_FLAG_FUA, type: P.NBD_CMD_WRITE,
    handle: 0x0102030405060708n, offset: 0xfffffffffffff000n, length: 4096,
  });
  assert.deepEqual(C.encodeRequest({ flags: r.flags, type: r.type, handle: r.handle, offset: r.offset, length: r.length }),
    hex('25609513 0001 0001 0102030405060708 fffffffffffff000 00001000'));
});

test('simple reply and structured chunks', () => {
  assert.deepEqual(C.encodeSimpleReply(P.NBD_ENOSPC, 7n), hex('67446698 0000001c 0000000000000007'));
  assert.deepEqual(C.encodeChunk(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_NONE, 2n),
    hex('668e33ef 0001 0000 0000000000000002 00000000'));
  assert.deepEqual(C.encodeOffsetHole(0, 3n, 0x2000n, 0x1000),
    hex('668e33ef 0000 0002 0000000000000003 0000000c 0000000000002000 00001000'));
  assert.deepEqual(C.encodeBlockStatus(1, 4n, 1, [{ length: 0x10000, flags: 3 }, { length: 0x1000, flags: 0 }]),
    hex('668e33ef 0001 0005 0000000000000004 00000014 00000001 00010000 00000003 00001000 00000000'));
  assert.deepEqual(C.encodeErrorChunk(5n, P.NBD_EINVAL, 'bad'),
    hex('668e33ef 0001 8001 0000000000000005 00000009 00000016 0003 626164'));
});
