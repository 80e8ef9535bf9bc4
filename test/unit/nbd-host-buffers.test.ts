// A large NBD write payload that arrives in several socket reads is gathered into one of
// the node's host buffers (src/nbd/connection.ts, limits.ts HOST_BUFFERS_KEPT_BYTES),
// not a fresh one each write, and the buffer goes back once the write succeeded: never
// while the backend may still hold it (a failed write keeps it). A large read is read
// into one too, back once the socket has written the reply. In-process NbdServer on
// loopback with a memory disk; the pool poisons what it gets back, so a buffer given
// back too early shows as wrong bytes on the disk or in a reply.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import type { Logger } from '../../src/log/log.js';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import { NbdServer } from '../../src/nbd/server.js';
import { ExportRegistry } from '../../src/export/registry.js';
import * as P from '../../src/nbd/protocol.js';
import { OwnedBuffers, hostBuffers } from '../../src/memory/owned-buffers.js';
import { RawClient } from '../helpers/raw-client.js';

const MiB = 1024 * 1024;

/** A disk in memory over `bytes`; `write` as the test has it (default: copied in). */
function memoryDisk(bytes: Buffer, write?: (offset: number, data: Buffer) => Promise<void>): unknown {
  return {
    name: 'disk', size: bytes.length, readOnly: false, description: 'memory',
    capabilities: () => ({ readOnly: false, flush: true, fua: true, trim: true, zero: true, fastZero: false, multiConn: true, extents: false, cache: true,
      blockSize: { minimum: 1, preferred: 4096, maximum: 32 * MiB } }),
    read: async (offset: number, into: Buffer, at: number, length: number) => { bytes.copy(into, at, offset, offset + length); },
    write: write ?? (async (offset: number, data: Buffer) => { data.copy(bytes, offset); }),
    writeZeroes: async () => undefined,
    trim: async () => undefined,
    flush: async () => undefined,
    cache: async () => undefined,
    extents: async (_o: number, length: number) => [{ length, hole: false }],
  };
}

/** An in-process NBD server of `disk` on loopback: it, and its port. */
async function serve(disk: unknown): Promise<{ server: NbdServer; port: number }> {
  const log = { warn: () => undefined, debug: () => undefined, info: () => undefined, error: () => undefined } as unknown as Logger;
  const exports = new ExportRegistry();
  exports.add(disk as Parameters<ExportRegistry['add']>[0]);
  const server = new NbdServer({ exports, log });
  const a = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  return { server, port: (a as { port: number }).port };
}

test('a byte queue takes bytes that span chunks into the buffer given, and a view of one chunk as it is', () => {
  const q = new ByteQueue();
  q.push(Buffer.from('abcd'));
  q.push(Buffer.from('efgh'));
  assert.equal(q.inOneChunk(3), true);
  assert.equal(q.inOneChunk(5), false);
  const into = Buffer.alloc(6);
  assert.throws(() => q.take(5, into), RangeError, 'a buffer of another length is refused');
  const got = q.take(6, into);
  assert.equal(got, into, 'spanning two chunks: copied into the buffer given');
  assert.equal(got.toString(), 'abcdef');
  assert.equal(q.inOneChunk(2), true);
  const view = q.take(2, Buffer.alloc(2));
  assert.equal(view.toString(), 'gh');
  assert.equal(q.length, 0);
});

test('large NBD writes are gathered into the node\'s host buffers, back once written, kept by a write that failed', async (t) => {
  OwnedBuffers.poison = true;
  t.after(() => {
    OwnedBuffers.poison = false;
  });
  const size = 16 * MiB;
  const bytes = Buffer.alloc(size);
  let failNext = false;
  let failed: { data: Buffer; copy: Buffer } | null = null;
  const seen: ArrayBufferLike[] = [];
  // (Written a turn later, as a disk does: a buffer given back before the write settles would be caught.)
  const { server, port } = await serve(memoryDisk(bytes, async (offset: number, data: Buffer) => {
    seen.push(data.buffer);
    if (failNext) {
      failNext = false;
      failed = { data, copy: Buffer.from(data) };
      throw Object.assign(new Error('EIO: the test\'s disk failed'), { code: 'EIO' });
    }
    await new Promise((r) => setImmediate(r));
    data.copy(bytes, offset);
  }));
  const c = await RawClient.connect({ host: '127.0.0.1', port });
  t.after(async () => {
    c.close();
    await server.close();
  });
  await c.go('disk');
  const before = { made: hostBuffers.made, reused: hostBuffers.reused, out: hostBuffers.out };
  const payloads = [0, 1, 2, 3].map(() => crypto.randomBytes(MiB));
  for (let i = 0; i < payloads.length; i++) {
    c.request(P.NBD_CMD_WRITE, BigInt(i * MiB), MiB, { handle: BigInt(i + 1), data: payloads[i] });
    assert.deepEqual(await c.simpleReply(), { error: 0, handle: BigInt(i + 1) });
  }
  assert.equal(hostBuffers.made + hostBuffers.reused - before.made - before.reused, payloads.length, 'every 1 MiB payload came from the pool');
  assert.ok(hostBuffers.reused - before.reused >= payloads.length - 1, 'written one after another, they reuse one buffer');
  assert.equal(new Set(seen).size, 1, 'the disk was handed the same memory each time');
  assert.equal(hostBuffers.out, before.out, 'every buffer went back');
  for (let i = 0; i < payloads.length; i++) assert.ok(bytes.subarray(i * MiB, (i + 1) * MiB).equals(payloads[i]!), `write ${i} on the disk`);
  // A write the disk fails: its buffer is not given back (the backend may still hold it).
  failNext = true;
  c.request(P.NBD_CMD_WRITE, BigInt(8 * MiB), MiB, { handle: 9n, data: crypto.randomBytes(MiB) });
  assert.equal((await c.simpleReply()).error, P.NBD_EIO);
  assert.equal(hostBuffers.out, before.out + 1, 'the failed write\'s buffer stays out');
  c.request(P.NBD_CMD_WRITE, BigInt(9 * MiB), MiB, { handle: 10n, data: payloads[0] });
  assert.deepEqual(await c.simpleReply(), { error: 0, handle: 10n });
  const f = failed as { data: Buffer; copy: Buffer } | null;
  assert.ok(f && f.data.equals(f.copy), 'the failed write\'s bytes were not reused by the next write');
  assert.ok(bytes.subarray(9 * MiB, 10 * MiB).equals(payloads[0]!));
});

test('large NBD reads go into the node\'s host buffers, back once the socket wrote each reply, also while the client reads slowly', async (t) => {
  OwnedBuffers.poison = true;
  t.after(() => {
    OwnedBuffers.poison = false;
  });
  const size = 64 * MiB;
  const bytes = crypto.randomBytes(size);
  // Half of one megabyte zeros: a structured reply sends it as data and hole chunks.
  bytes.fill(0, 5 * MiB + 4096, 5 * MiB + MiB / 2);
  const { server, port } = await serve(memoryDisk(bytes));
  const simple = await RawClient.connect({ host: '127.0.0.1', port });
  const structured = await RawClient.connect({ host: '127.0.0.1', port });
  t.after(async () => {
    simple.close();
    structured.close();
    await server.close();
  });
  await simple.go('disk');
  await structured.go('disk', { structured: true });
  const before = { taken: hostBuffers.made + hostBuffers.reused, out: hostBuffers.out };
  // Sixteen 1 MiB reads asked at once while the client does not read: the replies wait in
  // the server's socket, so the buffers stay out until the socket has written them.
  simple.socket.pause();
  for (let i = 0; i < 16; i++) simple.request(P.NBD_CMD_READ, BigInt(i * MiB), MiB, { handle: BigInt(i + 1) });
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(hostBuffers.out > before.out, 'replies waiting in the socket hold their buffers');
  simple.socket.resume();
  for (let i = 0; i < 16; i++) {
    assert.deepEqual(await simple.simpleReply(), { error: 0, handle: BigInt(i + 1) });
    assert.ok((await simple.read(MiB)).equals(bytes.subarray(i * MiB, (i + 1) * MiB)), `read ${i}: the bytes read, not the pool's poison`);
  }
  // Structured: a megabyte of data and zeros goes as several chunks; its buffer comes back after the last.
  structured.request(P.NBD_CMD_READ, BigInt(5 * MiB), MiB, { handle: 99n });
  const got = Buffer.alloc(MiB, 0xee);
  for (let done = false; !done;) {
    const c = await structured.anyReply();
    assert.equal(c.kind, 'chunk');
    if (c.kind !== 'chunk') break;
    const at = Number(c.payload.readBigUInt64BE(0)) - 5 * MiB;
    if (c.type === P.NBD_REPLY_TYPE_OFFSET_DATA) c.payload.copy(got, at, 8);
    else got.fill(0, at, at + c.payload.readUInt32BE(8));
    done = (c.flags & P.NBD_REPLY_FLAG_DONE) !== 0;
  }
  assert.ok(got.equals(bytes.subarray(5 * MiB, 6 * MiB)), 'the structured reply\'s chunks hold the bytes read');
  for (let i = 0; i < 50 && hostBuffers.out !== before.out; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(hostBuffers.out, before.out, 'every read\'s buffer went back');
  assert.equal(hostBuffers.made + hostBuffers.reused - before.taken, 17, 'each 1 MiB read took a buffer of the pool');
});
