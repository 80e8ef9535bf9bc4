// What one NBD caller can hold is bounded node-wide (issue 15, item 7): the bytes of
// write payloads buffered, connections per address, the handshake's duration, and,
// when configured, idle time. In-process NbdServer on loopback with a memory disk and
// short limits; test/integration/nbd-limits.test.ts runs the daemon's defaults.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Logger } from '../../src/log/log.js';
import { parseConfig } from '../../src/config/config.js';
import { RequestBudget } from '../../src/nbd/budget.js';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.js';
import { ExportRegistry } from '../../src/export/registry.js';
import * as P from '../../src/nbd/protocol.js';
import { RawClient } from '../helpers/raw-client.js';

const MiB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function memoryDisk(size: number): unknown {
  const bytes = Buffer.alloc(size);
  return {
    name: 'disk', size, readOnly: false, description: 'memory',
    capabilities: () => ({ readOnly: false, flush: true, fua: true, trim: true, zero: true, fastZero: false, multiConn: true, extents: false, cache: true,
      blockSize: { minimum: 1, preferred: 4096, maximum: 32 * MiB } }),
    read: async (offset: number, into: Buffer, at: number, length: number) => { bytes.copy(into, at, offset, offset + length); },
    write: async (offset: number, data: Buffer) => { data.copy(bytes, offset); },
    writeZeroes: async (offset: number, length: number) => { bytes.fill(0, offset, offset + length); },
    trim: async () => undefined,
    flush: async () => undefined,
    cache: async () => undefined,
    extents: async (_o: number, length: number) => [{ length, hole: false }],
  };
}

async function serve(opts: Partial<NbdServerOptions>): Promise<{ server: NbdServer; port: number; said: string[]; connect: () =>
  Promise<RawClient>; close: () => Promise<void> }> {
  const said: string[] = [];
  const log = { warn: (m: unknown, s?: string) => said.push(typeof m === 'string' ? m : s!), debug: () => undefined, info: () => undefined,
    error: (m: unknown, s?: string) => said.push(typeof m === 'string' ? m : s!) } as unknown as Logger;
  const exports = new ExportRegistry();
  exports.add(memoryDisk(64 * MiB) as Parameters<ExportRegistry['add']>[0]);
  const server = new NbdServer({ exports, log, sweepMs: 50, refusalLogWindowMs: 60_000, ...opts });
  const a = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const port = (a as { port: number }).port;
  const clients: RawClient[] = [];
  return {
    server, port, said,
    connect: async () => {
      const c = await RawClient.connect({ host: '127.0.0.1', port });
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) c.close();
      await server.close();
    },
  };
}

/** A write header promising `length` bytes, and `send` of them. */
function partialWrite(c: RawClient, handle: bigint, length: number, send: number): void {
  c.request(P.NBD_CMD_WRITE, 0n, length, { handle, data: Buffer.alloc(send, 1) });
}

test('the request budget: fits, waits in order, one request past it when nothing is held, cancel', () => {
  const b = new RequestBudget(10);
  const granted: string[] = [];
  assert.equal(b.take(6, () => granted.push('a')), null);
  const w1 = b.take(6, () => granted.push('b'));
  assert.ok(w1, 'waits: 12 > 10');
  const w2 = b.take(1, () => granted.push('c'));
  assert.ok(w2, 'waits behind b (in order), though it would fit');
  b.release(6);
  assert.deepEqual(granted, ['b', 'c']);
  assert.equal(b.used, 7);
  b.release(7);
  // Larger than the whole budget: admitted alone, never a deadlock.
  assert.equal(b.take(25, () => undefined), null);
  const w3 = b.take(1, () => granted.push('d'));
  assert.ok(w3);
  b.cancel(w3);
  b.release(25);
  assert.deepEqual(granted, ['b', 'c'], 'a cancelled waiter is never granted');
  assert.equal(b.used, 0);
});

test('writes past the node budget wait unread; a payload stalled while others wait is cut; a request larger than the budget still goes alone', async () => {
  const s = await serve({ requestBudgetBytes: 4 * MiB, stalledPayloadMs: 400 });
  try {
    // Two clients each hold 2 MiB and stop one byte short: the budget is full.
    const stallers = [await s.connect(), await s.connect()];
    for (const [i, c] of stallers.entries()) {
      await c.go('disk');
      partialWrite(c, BigInt(i), 2 * MiB, 2 * MiB - 1);
    }
    await sleep(100);
    assert.equal(s.server.budget.used, 4 * MiB);
    // A real write waits (nothing read of its payload), and is answered once the stallers are cut.
    // It takes the whole budget, so both must go: a smaller one would be let in after the
    // first cut, and the second staller, with nobody waiting any more, rightly left alone
    // (on a loaded machine its stall may reach the limit a sweep later than the first's).
    const real = await s.connect();
    await real.go('disk');
    const t0 = Date.now();
    real.request(P.NBD_CMD_WRITE, 4096n, 4 * MiB, { handle: 7n, data: Buffer.alloc(4 * MiB, 0x5a) });
    assert.deepEqual(await real.simpleReply(), { error: 0, handle: 7n });
    assert.ok(Date.now() - t0 >= 300, 'it waited for the stalled ones to be cut');
    for (const c of stallers) assert.ok(await c.waitClosed(1000), 'the stalled writer is cut');
    const cut =
      /disconnected: stopped sending in the middle of a 2097152-byte write for \d+ s while 1 other requests waited for the NBD request budget \(4 MiB/;
    assert.ok(s.said.some((l) => cut.test(l)), s.said.join('\n'));
    assert.equal(s.said.filter((l) => /stopped sending in the middle/.test(l)).length, 1, 'the second cut from the same address is counted, not said');
    await sleep(50);
    assert.equal(s.server.budget.used, 0, 'every byte given back');
    // 8 MiB in one request, twice the budget: served (alone).
    real.request(P.NBD_CMD_WRITE, 0n, 8 * MiB, { handle: 8n, data: Buffer.alloc(8 * MiB, 0x11) });
    assert.deepEqual(await real.simpleReply(), { error: 0, handle: 8n });
    real.request(P.NBD_CMD_READ, 8n * BigInt(MiB) - 4n, 4, { handle: 9n });
    assert.deepEqual(await real.simpleReply(), { error: 0, handle: 9n });
    assert.deepEqual(await real.read(4), Buffer.alloc(4, 0x11));
  } finally {
    await s.close();
  }
});

test('a stalled payload is left alone while nobody waits for the budget', async () => {
  const s = await serve({ requestBudgetBytes: 4 * MiB, stalledPayloadMs: 200 });
  try {
    const c = await s.connect();
    await c.go('disk');
    partialWrite(c, 1n, 1 * MiB, 1000);
    await sleep(600);
    assert.ok(!c.closed);
    c.write(Buffer.alloc(1 * MiB - 1000, 2));
    assert.deepEqual(await c.simpleReply(), { error: 0, handle: 1n });
  } finally {
    await s.close();
  }
});

test('connections per address are capped: the excess is closed at once, logged once, then counted', async () => {
  const s = await serve({ maxConnectionsPerAddress: 3, refusalLogWindowMs: 300 });
  try {
    const ok = [await s.connect(), await s.connect(), await s.connect()];
    const excess = [await s.connect(), await s.connect()];
    for (const c of excess) assert.ok(await c.waitClosed(1000));
    await ok[0]!.go('disk'); // the three keep working
    const refused = /NBD: refused a connection from 127\.0\.0\.1: 3 connections from this address open already \(at most 3 from one address/;
    assert.deepEqual(s.said.filter((l) => refused.test(l)).length, 1, s.said.join('\n'));
    await sleep(450);
    assert.ok(s.said.some((l) => /NBD: refused 1 more connections from 127\.0\.0\.1 in the last 0\.3 s: 3 from it open already/.test(l)), s.said.join('\n'));
    // A slot that frees is taken again.
    ok[1]!.close();
    await sleep(100);
    const again = await s.connect();
    await again.go('disk');
  } finally {
    await s.close();
  }
});

test('the handshake has a deadline; idle connections are closed only when nbd_idle_timeout is set', async () => {
  const s = await serve({ handshakeTimeoutMs: 300 });
  try {
    const silent = await s.connect();
    const half = await s.connect();
    await half.greeting(); // flags sent, then no option
    const idle = await s.connect();
    await idle.go('disk');
    assert.ok(await silent.waitClosed(2000));
    assert.ok(await half.waitClosed(2000));
    assert.ok(s.said.some((l) => /disconnected: did not finish the handshake within 0\.3 s/.test(l)), s.said.join('\n'));
    await sleep(700);
    assert.ok(!idle.closed, 'no idle timeout by default: an idle host connection stays');
  } finally {
    await s.close();
  }
  const t = await serve({ idleTimeoutMs: 400 });
  try {
    const busy = await t.connect();
    await busy.go('disk');
    const idle = await t.connect();
    await idle.go('disk');
    for (let i = 0; i < 8; i++) {
      busy.request(P.NBD_CMD_FLUSH, 0n, 0, { handle: BigInt(i) });
      await busy.simpleReply();
      await sleep(100);
    }
    assert.ok(idle.closed, 'idle past nbd_idle_timeout: closed');
    assert.ok(!busy.closed, 'a connection in use stays');
    assert.ok(t.said.some((l) => /disconnected: idle for \d+ s \(nbd_idle_timeout: 0\.4 s\)/.test(l)), t.said.join('\n'));
  } finally {
    await t.close();
  }
});

test('nbd_idle_timeout: off unless given; a duration of at least 1 s', () => {
  const yaml = (extra: string): string => `node: a\nstate: ./s\nnbd: 127.0.0.1:10809\n${extra}volumes:\n  v: { path: ./v.img, size: 1MiB, role: primary }\n`;
  assert.equal(parseConfig(yaml(''), '/tmp/offsite.yaml').nbdIdleTimeout, undefined);
  assert.equal(parseConfig(yaml('nbd_idle_timeout: 10m\n'), '/tmp/offsite.yaml').nbdIdleTimeout, 600);
  assert.throws(() => parseConfig(yaml('nbd_idle_timeout: 0.5s\n'), '/tmp/offsite.yaml'), /offsite\.yaml:4: nbd_idle_timeout: must be at least 1s/);
});
