// A daemon with its default NBD limits against raw sockets (issue 15, item 7): writes
// that stop one byte short cannot pin more than the node's request budget, a real
// client still gets through, handshakes that stall are cut at 30 s, and one address
// cannot take more than its share of the connections.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { RawClient } from '../helpers/raw-client.js';
import { must, run, sleep } from '../helpers/run.js';
import * as P from '../../src/nbd/protocol.js';
import { NBD_REQUEST_BUDGET_BYTES } from '../../src/nbd/budget.js';
import { NBD_MAX_CONNECTIONS_PER_ADDRESS } from '../../src/nbd/server.js';
import { OLD_GENERATION_HEADROOM_BYTES } from '../../src/limits/limits.js';

const MiB = 1024 * 1024;
/**
 * What the daemon's RSS may grow by while writes are held: the request budget, 64 MiB
 * for the rest, and the room V8's old generation has past what is live (collector.ts):
 * 360 MiB, against the 518 MiB that 16 stalled 32 MiB writes took before the budget.
 */
const BOUND = NBD_REQUEST_BUDGET_BYTES + 64 * MiB + OLD_GENERATION_HEADROOM_BYTES;

async function rss(pid: number): Promise<number> {
  return Number(/VmRSS:\s+(\d+)/.exec(await must('cat', [`/proc/${pid}/status`]))![1]) * 1024;
}

test('writes stopped one byte short pin at most the request budget; real clients get through; stalled handshakes are cut; one address is capped', async () => {
  const d = await TestDaemon.create({ volumes: { disk: { size: '64MiB' } } });
  const connect = (): Promise<RawClient> => RawClient.connect(d.connectOptions());
  const all: RawClient[] = [];
  try {
    const t0 = Date.now();
    // Callers that connect and never finish the handshake (nothing sent, or the flags only).
    const parked = [await connect(), await connect(), await connect()];
    await parked[2]!.greeting();
    all.push(...parked);

    await sleep(500);
    const before = await rss(d.pid!);
    // 16 clients each send a 32 MiB write header and all but one byte of its payload.
    // Before: 16 x 32 MiB held by the daemon for as long as they liked.
    const payload = Buffer.alloc(32 * MiB, 0xee);
    const attackers: RawClient[] = [];
    for (let i = 0; i < 16; i++) {
      const c = await connect();
      await c.go('disk');
      c.request(P.NBD_CMD_WRITE, 0n, 32 * MiB, { handle: BigInt(i), data: payload.subarray(0, 32 * MiB - 1) });
      attackers.push(c);
    }
    all.push(...attackers);
    await sleep(3000);
    const grown = (await rss(d.pid!)) - before;
    assert.ok(grown < BOUND,
      `daemon RSS grew ${Math.round(grown / MiB)} MiB under 512 MiB of stalled writes (budget ${NBD_REQUEST_BUDGET_BYTES / MiB} MiB)`);

    // A real client: nbdinfo at once (no write), qemu-io's write once the stalled
    // writers are cut (10 s of no bytes while others wait, twice: 8 wait behind the first 8).
    assert.equal((await must('nbdinfo', ['--size', d.uri('disk')])).trim(), String(64 * MiB));
    const q = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 1M', '-c', 'read -P 0x5a 1M 1M', d.uri('disk')], { timeoutMs: 90_000 });
    assert.equal(q.code, 0, q.stderr);
    assert.doesNotMatch(q.stdout, /Pattern verification failed/);
    assert.match(d.log, /NBD client 127\.0\.0\.1:\d+ disconnected: stopped sending in the middle of a 33554432-byte write for 1\d s while \d+ other requests waited for the NBD request budget \(256 MiB/);
    const after = (await rss(d.pid!)) - before;
    assert.ok(after < BOUND, `daemon RSS ${Math.round(after / MiB)} MiB over its start once the stalled writers were cut`);
    for (const c of attackers) c.close();

    // The parked handshakes are cut at 30 s from their accept.
    await sleep(Math.max(0, 31_000 - (Date.now() - t0)));
    for (const c of parked) assert.ok(await c.waitClosed(2000), 'a stalled handshake is cut');
    assert.match(d.log, /NBD client 127\.0\.0\.1:\d+ disconnected: did not finish the handshake within 30 s/);

    // One address gets at most 32 connections; the rest are closed at once and logged.
    await sleep(300);
    const many = await Promise.all(Array.from({ length: NBD_MAX_CONNECTIONS_PER_ADDRESS + 8 }, () => connect()));
    all.push(...many);
    await sleep(500);
    assert.equal(many.filter((c) => c.closed).length, 8);
    assert.match(d.log, /NBD: refused a connection from 127\.0\.0\.1: 32 connections from this address open already \(at most 32 from one address/);
    assert.equal(d.log.split('\n').filter((l) => l.includes('NBD: refused a connection from 127.0.0.1')).length, 1, 'said once, then counted');
    for (const c of many) c.close();
    await sleep(300);
    assert.equal((await must('nbdinfo', ['--size', d.uri('disk')])).trim(), String(64 * MiB));
    assert.ok(d.alive);
  } finally {
    for (const c of all) c.close();
    assert.equal(await d.stop(), 0);
  }
});
