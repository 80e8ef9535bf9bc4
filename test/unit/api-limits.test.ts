// The API is bounded (issue 15): headers, bodies and idle connections have timeouts,
// connections are capped, action names are looked up safely, and a flood of bad
// tokens is logged once and counted instead of pushing every other event out of
// the ring. The dashboard's stream outlives the request timeout on purpose.
// Real sockets on loopback against startApi with a stand-in for the node.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import type { NodeStatus } from '../../src/contract/status.js';
import { startApi, type ApiLimits } from '../../src/api/server.js';
import type { NodeActions } from '../../src/contract/actions.js';
import { operatorEvents } from '../../src/log/events.js';
import { createLogger } from '../../src/log/log.js';

const TOKEN = 'the-token';

function capture(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const write = (s: string): boolean => {
    lines.push(String((JSON.parse(s) as { msg: string }).msg));
    return true;
  };
  const log = createLogger({ format: 'json', destination: { write } as unknown as NodeJS.WritableStream });
  return { log, lines };
}

async function api(limits: Partial<ApiLimits>, actionMs = 0): Promise<{ port: number; lines: string[]; close: () => Promise<void> }> {
  const { log, lines } = capture();
  const status: NodeStatus = { node: 'site-a', version: 'test', uptimeSeconds: 1, volumes: [] };
  const actions = {
    checkpoints: () => [],
    pause: async (volume: string) => {
      await new Promise((r) => setTimeout(r, actionMs));
      return { volume, message: `shipping of ${volume} paused` };
    },
  } as unknown as NodeActions;
  const { app, address } = await startApi({ kind: 'tcp', host: '127.0.0.1', port: 0 }, {
    status: () => status, actions, token: () => TOKEN, history: () => null, reload: () => 'nothing changed', log, limits,
  });
  return { port: (address as { port: number }).port, lines, close: () => app.close() };
}

function post(port: number, route: string, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return fetch(`http://127.0.0.1:${port}${route}`, { method: 'POST', headers, body: '{}' });
}

/** A raw connection: what the server sent, and whether (and when) it closed. */
function raw(port: number): Promise<{ socket: net.Socket; got: () => string; closed: Promise<number> }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    const t0 = Date.now();
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now() - t0)));
    socket.on('data', (c: Buffer) => (got += c.toString()));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, got: () => got, closed }));
  });
}

/** Writes `text` a few bytes at a time until the socket closes. */
function trickle(socket: net.Socket, text: string, everyMs: number): () => number {
  let at = 0;
  const t = setInterval(() => {
    if (socket.destroyed || at >= text.length) return clearInterval(t);
    socket.write(text.slice(at, at + 4));
    at += 4;
  }, everyMs);
  socket.once('close', () => clearInterval(t));
  return () => at;
}

/** Bounds a wait: a guard against hanging, not a measure of speed. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`still waiting after ${ms} ms: ${what}`)), ms).unref())]);
}

test('unknown actions, prototype names included, get 404 with the list of actions', async () => {
  const a = await api({});
  try {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'explode']) {
      const r = await post(a.port, `/api/v1/volumes/db/${name}`, TOKEN);
      assert.equal(r.status, 404, name);
      const { error } = (await r.json()) as { error: string };
      assert.equal(error, `no action ${name}; actions are: checkpoint, checkpoint-release, drill-start, drill-stop, verify, pause, resume, promote, demote`);
    }
    const ok = await post(a.port, '/api/v1/volumes/db/pause', TOKEN);
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { message: string }).message, 'shipping of db paused');
  } finally {
    await a.close();
  }
});

test('slow clients are cut: headers trickled, a body trickled, a connection that sends nothing, an idle keep-alive', async () => {
  const a = await api({ headersTimeoutMs: 500, requestTimeoutMs: 1000, keepAliveTimeoutMs: 500, timeoutCheckMs: 100 });
  try {
    const silent = await raw(a.port);
    const slowHeaders = await raw(a.port);
    trickle(slowHeaders.socket, `POST /api/v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-Padding: 0123456789\r\n'.repeat(100)}\r\n`, 50);
    const slowBody = await raw(a.port);
    slowBody.socket.write(`POST /api/v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ` +
      `application/json\r\nContent-Length: 4000\r\n\r\n`);
    const bodySent = trickle(slowBody.socket, `{"x":"${'y'.repeat(3990)}"}`, 50);
    const keptAlive = await raw(a.port);
    keptAlive.socket.write('GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');

    // The bounds are guards only: the timeouts are 0.5 s and 1 s.
    await within(Promise.all([silent.closed, slowHeaders.closed, slowBody.closed, keptAlive.closed]), 20_000, 'every slow client closed');
    assert.match(slowHeaders.got(), /^HTTP\/1\.1 408 /);
    assert.match(slowBody.got(), /^HTTP\/1\.1 408 /);
    assert.ok(bodySent() < 4000, 'the body was cut before it was all in');
    assert.match(keptAlive.got(), /^HTTP\/1\.1 200 /, 'the request was answered, then the idle connection closed');
    // The API answers as before.
    assert.equal((await fetch(`http://127.0.0.1:${a.port}/api/v1/status`)).status, 200);
  } finally {
    await a.close();
  }
});

test('an action slower than the request timeout is answered; a dashboard stream outlives the request timeout', async () => {
  const a = await api({ headersTimeoutMs: 300, requestTimeoutMs: 500, timeoutCheckMs: 100 }, 1500);
  try {
    const r = await post(a.port, '/api/v1/volumes/db/pause', TOKEN);
    assert.equal(r.status, 200, 'the request was in long before its answer');

    const ac = new AbortController();
    const res = await fetch(`http://127.0.0.1:${a.port}/api/v1/stream`, { signal: ac.signal });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const t0 = Date.now();
    let statusAfter = 0; // status events that arrived after four request timeouts
    while (statusAfter < 2) {
      const { value, done } = await within(reader.read(), 10_000, 'the stream goes on');
      assert.equal(done, false, 'the stream ended');
      const text = new TextDecoder().decode(value);
      if (Date.now() - t0 > 2000) statusAfter += text.split('event: status').length - 1;
    }
    ac.abort();
  } finally {
    await a.close();
  }
});

test('connections past the cap are closed on accept and logged once', async () => {
  const a = await api({ maxConnections: 4, refusalLogWindowMs: 60_000 });
  try {
    const held = await Promise.all(Array.from({ length: 4 }, () => raw(a.port)));
    await new Promise((r) => setTimeout(r, 100)); // the server has accepted them
    const extra = await Promise.all(Array.from({ length: 5 }, () => raw(a.port)));
    await within(Promise.all(extra.map((x) => x.closed)), 10_000, 'the connections past the cap closed');
    assert.ok(extra.every((x) => x.got() === ''));
    for (const h of held) h.socket.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await fetch(`http://127.0.0.1:${a.port}/api/v1/status`)).status, 200, 'room again once they are gone');
    assert.deepEqual(a.lines.filter((l) => l.includes('refused a connection')), [
      'API: refused a connection from 127.0.0.1: 4 connections open already (at most 4, so that the API cannot take the file descriptors the ' +
        'volumes, journals and NBD need)',
    ]);
    await a.close();
    assert.ok(a.lines.includes('API: refused 4 more connections in the last minute: 4 open already'), a.lines.join('\n'));
  } finally {
    await a.close();
  }
});

test('a bad-token flood leaves the earlier events in place: one line, then one count; its text cannot reach a terminal raw', async () => {
  const a = await api({});
  const { log } = capture();
  try {
    for (let i = 0; i < 50; i++) log.info(`event ${i} before the flood`);
    // The first refused call names an "action" that is an escape sequence (clear the screen).
    const first = await post(a.port, `/api/v1/volumes/db/${encodeURIComponent('\x1b[2J\x1b[Hpwned')}`, 'wrong');
    assert.equal(first.status, 401);
    let sent = 1;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (sent < 1200) {
        sent++;
        const r = await post(a.port, '/api/v1/volumes/db/promote', 'wrong');
        assert.equal(r.status, 401);
        await r.arrayBuffer();
      }
    }));
    await a.close(); // says what was counted and not yet said
    const recent = operatorEvents.recent(1000).map((e) => e.msg);
    for (let i = 0; i < 50; i++) assert.ok(recent.includes(`event ${i} before the flood`), `event ${i} is still there`);
    const refused = recent.slice(recent.indexOf('event 49 before the flood') + 1).filter((m) => m.startsWith('API: refused'));
    assert.deepEqual(refused, [
      'API: refused \\x1b[2J\\x1b[Hpwned on db from 127.0.0.1: wrong token',
      'API: refused 1199 more requests with a wrong token from 127.0.0.1 in the last minute',
    ]);
    assert.ok(recent.every((m) => !/[\x00-\x1f\x7f]/.test(m)), 'no control character in any event');
  } finally {
    await a.close();
  }
});
