// Malformed and hostile input: the daemon answers per spec or drops that one
// connection, and keeps serving everyone else.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { RawClient } from '../helpers/raw-client.js';
import { must, run } from '../helpers/run.js';
import * as P from '../../src/nbd/protocol.js';

const SIZE = 16n * 1024n * 1024n;

describe('bad input', () => {
  let d: TestDaemon;
  let healthy: RawClient;

  before(async () => {
    d = await TestDaemon.create({ volumes: { disk: { size: '16MiB' }, ro: { size: '1MiB', role: 'secondary' } } });
    // One well-behaved client stays connected through all the abuse.
    healthy = await RawClient.connect(d.connectOptions());
    await healthy.go('disk');
  });

  after(async () => {
    // The healthy connection still works after everything below.
    healthy.request(P.NBD_CMD_WRITE, 4096n, 4, { data: Buffer.from('live'), handle: 77n });
    assert.deepEqual(await healthy.simpleReply(), { error: 0, handle: 77n });
    healthy.close();
    assert.ok(d.alive, 'daemon still running');
    assert.doesNotMatch(d.log, /TypeError|RangeError|uncaught|stack/i);
    assert.equal(await d.stop(), 0);
  });

  const connect = (): Promise<RawClient> => RawClient.connect(d.connectOptions());

  test('truncated handshakes at every length are dropped quietly', async () => {
    for (let n = 0; n < 4; n++) {
      const c = await connect();
      await c.read(18);
      c.write(Buffer.alloc(n));
      c.close();
    }
    // A GO header promising 100 bytes of payload, cut at every length; then one that
    // sends 10 of the 100 bytes and hangs up.
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(P.IHAVEOPT, 0);
    h.writeUInt32BE(P.NBD_OPT_GO, 8);
    h.writeUInt32BE(100, 12);
    for (const bytes of [...Array.from({ length: 16 }, (_, n) => h.subarray(0, n)), Buffer.concat([h, Buffer.alloc(10)])]) {
      const c = await connect();
      await c.greeting();
      c.write(bytes);
      c.close();
    }
    assert.equal((await run('nbdinfo', ['--size', d.uri('disk')])).stdout.trim(), String(SIZE));
  });

  test('bad client flags, missing fixed newstyle, bad option magic: connection dropped', async () => {
    for (const flags of [0x80, 0]) {
      const c = await connect();
      await c.greeting(flags);
      assert.ok(await c.waitClosed(), `flags 0x${flags.toString(16)} should close`);
    }
    const c = await connect();
    await c.greeting();
    c.write(Buffer.alloc(16, 0xee));
    assert.ok(await c.waitClosed());
  });

  test('unknown options are ERR_UNSUP and the handshake goes on', async () => {
    const c = await connect();
    await c.greeting();
    for (const opt of [0, 4, 11, 99, 0xffffffff]) {
      c.sendOption(opt, Buffer.from('whatever'));
      const r = await c.optionReply();
      assert.equal(r.type, P.NBD_REP_ERR_UNSUP, `option ${opt}`);
    }
    c.sendOption(P.NBD_OPT_GO, RawClient.infoRequest('nope'));
    assert.equal((await c.optionReply()).type, P.NBD_REP_ERR_UNKNOWN);
    c.sendOption(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 50, 1, 2]));
    assert.equal((await c.optionReply()).type, P.NBD_REP_ERR_INVALID);
    // An oversized option payload is read and discarded, then refused.
    c.sendOption(P.NBD_OPT_INFO, Buffer.alloc(200_000));
    assert.equal((await c.optionReply()).type, P.NBD_REP_ERR_TOO_BIG);
    c.sendOption(P.NBD_OPT_GO, RawClient.infoRequest('disk'));
    const replies = await c.optionReplies();
    assert.equal(replies[replies.length - 1]!.type, P.NBD_REP_ACK);
    c.close();
  });

  test('out-of-range requests get EINVAL or ENOSPC; offsets near 2^64 do not wrap', async () => {
    const c = await connect();
    await c.go('disk');
    const cases: Array<[number, bigint, number, number]> = [
      [P.NBD_CMD_READ, SIZE, 1, P.NBD_EINVAL],
      [P.NBD_CMD_READ, SIZE - 4096n, 8192, P.NBD_EINVAL],
      [P.NBD_CMD_READ, 0xfffffffffffff000n, 0x2000, P.NBD_EINVAL], // wraps to 0x1000 in 64 bits
      [P.NBD_CMD_TRIM, SIZE, 4096, P.NBD_EINVAL],
      [P.NBD_CMD_TRIM, 0xffffffffffffffffn, 2, P.NBD_EINVAL],
      [P.NBD_CMD_CACHE, SIZE + 1n, 1, P.NBD_EINVAL],
      [P.NBD_CMD_WRITE_ZEROES, SIZE - 1n, 2, P.NBD_ENOSPC],
      [P.NBD_CMD_WRITE_ZEROES, 0xfffffffffffffffen, 4, P.NBD_ENOSPC],
      [P.NBD_CMD_BLOCK_STATUS, 0n, 4096, P.NBD_EINVAL], // no meta context negotiated
      [P.NBD_CMD_READ, 0n, 64 * 1024 * 1024, P.NBD_EINVAL], // over the 32 MiB maximum
      [99, 0n, 0, P.NBD_EINVAL],
      [P.NBD_CMD_FLUSH, 0n, 0, 0],
    ];
    let h = 1000n;
    for (const [type, offset, length, want] of cases) {
      c.request(type, offset, length, { handle: ++h });
      const r = await c.simpleReply();
      assert.deepEqual(r, { error: want, handle: h }, `cmd ${type} at ${offset} len ${length}`);
    }
    // Writes out of range still have their payload consumed: the stream stays in sync.
    c.request(P.NBD_CMD_WRITE, 0xfffffffffffff000n, 0x2000, { handle: 1n, data: Buffer.alloc(0x2000, 7) });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_ENOSPC, handle: 1n });
    c.request(P.NBD_CMD_WRITE, SIZE - 1n, 2, { handle: 2n, data: Buffer.alloc(2, 7) });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_ENOSPC, handle: 2n });
    c.request(P.NBD_CMD_WRITE, 0n, 4, { handle: 3n, flags: 0x8000, data: Buffer.alloc(4) });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_EINVAL, handle: 3n });
    // A write bigger than the maximum is read through and refused, and the stream survives.
    const big = 33 * 1024 * 1024;
    c.request(P.NBD_CMD_WRITE, 0n, big, { handle: 4n, data: Buffer.alloc(big, 1) });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_EINVAL, handle: 4n });
    c.request(P.NBD_CMD_READ, 0n, 4, { handle: 5n });
    assert.deepEqual(await c.simpleReply(), { error: 0, handle: 5n });
    assert.notDeepEqual(await c.read(4), Buffer.alloc(4, 1), 'the refused write changed nothing');
    c.close();
  });

  test('structured replies: errors as ERROR chunks, holes as OFFSET_HOLE', async () => {
    const c = await connect();
    await c.go('disk', { structured: true, allocation: true });
    c.request(P.NBD_CMD_READ, SIZE, 1, { handle: 9n });
    const e = await c.anyReply();
    assert.ok(e.kind === 'chunk' && e.type === P.NBD_REPLY_TYPE_ERROR && e.flags === P.NBD_REPLY_FLAG_DONE);
    assert.equal(e.payload.readUInt32BE(0), P.NBD_EINVAL);
    // Data at 1 MiB, zeros before it: a HOLE chunk then a DATA chunk.
    c.request(P.NBD_CMD_WRITE_ZEROES, 1024n * 1024n - 8192n, 8192, { handle: 10n });
    await c.anyReply();
    c.request(P.NBD_CMD_WRITE, 1024n * 1024n, 4096, { handle: 11n, data: Buffer.alloc(4096, 0x42) });
    await c.anyReply();
    c.request(P.NBD_CMD_READ, 1024n * 1024n - 8192n, 12288, { handle: 12n });
    const first = await c.anyReply();
    const second = await c.anyReply();
    assert.ok(first.kind === 'chunk' && first.type === P.NBD_REPLY_TYPE_OFFSET_HOLE && first.flags === 0);
    assert.equal(first.payload.readBigUInt64BE(0), 1024n * 1024n - 8192n);
    assert.equal(first.payload.readUInt32BE(8), 8192);
    assert.ok(second.kind === 'chunk' && second.type === P.NBD_REPLY_TYPE_OFFSET_DATA && second.flags === P.NBD_REPLY_FLAG_DONE);
    assert.ok(second.payload.subarray(8).equals(Buffer.alloc(4096, 0x42)));
    // With DF the same read is one data chunk.
    c.request(P.NBD_CMD_READ, 1024n * 1024n - 8192n, 12288, { handle: 13n, flags: P.NBD_CMD_FLAG_DF });
    const df = await c.anyReply();
    assert.ok(df.kind === 'chunk' && df.type === P.NBD_REPLY_TYPE_OFFSET_DATA && df.flags === P.NBD_REPLY_FLAG_DONE);
    assert.equal(df.payload.length, 8 + 12288);
    // BLOCK_STATUS with REQ_ONE returns one extent no longer than asked.
    c.request(P.NBD_CMD_BLOCK_STATUS, 0n, 4096, { handle: 14n, flags: P.NBD_CMD_FLAG_REQ_ONE });
    const bs = await c.anyReply();
    assert.ok(bs.kind === 'chunk' && bs.type === P.NBD_REPLY_TYPE_BLOCK_STATUS);
    assert.equal(bs.payload.length, 12);
    assert.ok(bs.payload.readUInt32BE(4) <= 4096);
    c.close();
  });

  test('read-only export: writes, trims and zeroes get EPERM, payload consumed', async () => {
    const c = await connect();
    const { flags } = await c.go('ro');
    assert.ok(flags & P.NBD_FLAG_READ_ONLY);
    c.request(P.NBD_CMD_WRITE, 0n, 512, { handle: 1n, data: Buffer.alloc(512, 9) });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_EPERM, handle: 1n });
    c.request(P.NBD_CMD_TRIM, 0n, 512, { handle: 2n });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_EPERM, handle: 2n });
    c.request(P.NBD_CMD_WRITE_ZEROES, 0n, 512, { handle: 3n });
    assert.deepEqual(await c.simpleReply(), { error: P.NBD_EPERM, handle: 3n });
    c.request(P.NBD_CMD_READ, 0n, 512, { handle: 4n });
    assert.deepEqual(await c.simpleReply(), { error: 0, handle: 4n });
    assert.deepEqual(await c.read(512), Buffer.alloc(512));
    c.close();
  });

  test('bad request magic closes that connection only', async () => {
    const c = await connect();
    await c.go('disk');
    c.write(Buffer.alloc(28, 0x41));
    assert.ok(await c.waitClosed());
  });

  test('a client that disconnects mid-payload or with requests in flight', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await connect();
      await c.go('disk');
      for (let k = 0; k < 8; k++) c.request(P.NBD_CMD_READ, BigInt(k * 65536), 65536, { handle: BigInt(k) });
      c.request(P.NBD_CMD_WRITE, 0n, 1 << 20, { handle: 99n, data: Buffer.alloc(1000 + i * 997, 3) });
      c.close();
    }
    // Garbage after the greeting, thousands of connections' worth in one.
    const g = await connect();
    await g.go('disk');
    g.request(P.NBD_CMD_DISC, 0n, 0);
    assert.ok(await g.waitClosed(), 'DISC closes the connection');
    assert.equal((await must('nbdinfo', ['--size', d.uri('disk')])).trim(), String(SIZE));
  });

  test('a flood of requests without reading replies is held back, not buffered without limit', async () => {
    const c = await connect();
    await c.go('disk');
    c.socket.pause(); // stop reading replies
    const req = Buffer.alloc(28);
    for (let i = 0; i < 3000; i++) {
      req.writeUInt32BE(P.REQUEST_MAGIC, 0);
      req.writeUInt16BE(P.NBD_CMD_READ, 6);
      req.writeBigUInt64BE(BigInt(i), 8);
      req.writeBigUInt64BE(0n, 16);
      req.writeUInt32BE(1 << 20, 24);
      c.socket.write(Buffer.from(req));
    }
    await new Promise((r) => setTimeout(r, 1500));
    const rss = Number(/VmRSS:\s+(\d+)/.exec(await must('cat', [`/proc/${d.child!.pid}/status`]))![1]) * 1024;
    assert.ok(rss < 600 * 1024 * 1024, `daemon RSS ${rss} bytes with 3 GiB of unread replies requested`);
    c.close();
  });
});
