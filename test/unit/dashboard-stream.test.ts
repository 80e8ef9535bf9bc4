// The dashboard's live stream is bounded: a client that does not read is dropped
// once its unsent bytes pass the limit (never buffered without end), a reading
// client gets status and operator events, and closing the API ends every stream
// and every connection a browser left open.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import Fastify from 'fastify';
import type { NodeStatus } from '../../src/contract/status.js';
import { StatusStream } from '../../src/dashboard/stream.js';
import { CONTENT_SECURITY_POLICY, registerDashboard } from '../../src/dashboard/dashboard.js';
import { operatorEvents } from '../../src/log/events.js';
import { silentLogger, type Logger } from '../../src/log/log.js';
import { waitFor } from '../helpers/run.js';

/** A status whose JSON is about `bytes` long. */
function bigStatus(bytes: number): NodeStatus {
  return { node: 'site-a', version: 'test', uptimeSeconds: 1, volumes: [{ name: 'x'.repeat(bytes) } as unknown as NodeStatus['volumes'][number]] };
}

async function serve(stream: StatusStream): Promise<{ port: number; close: () => Promise<void> }> {
  const app = Fastify();
  app.get('/api/v1/stream', (req, reply) => stream.open(req, reply));
  app.addHook('preClose', (done) => {
    stream.close();
    done();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { port: (app.server.address() as net.AddressInfo).port, close: () => app.close() };
}

test('a stream client that does not read is dropped at the limit; the others keep theirs', async () => {
  let size = 256 * 1024;
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m) } as unknown as Logger;
  const stream = new StatusStream({ status: () => bigStatus(size), log, maxBufferedBytes: 512 * 1024, intervalMs: 5 });
  const api = await serve(stream);
  const stuck = net.connect(api.port, '127.0.0.1');
  stuck.write('GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n');
  stuck.pause(); // never reads: the kernel's buffers fill, then the server's
  const stuckClosed = new Promise<void>((resolve) => stuck.once('close', () => resolve()));
  stuck.on('error', () => undefined);
  await waitFor('the stuck client was dropped', () => warnings.length > 0, 20_000, 20);
  assert.match(warnings[0]!, /^dashboard: dropped the live stream of 127\.0\.0\.1: \d+ bytes unread \(at most 524288\)/);
  assert.equal(stream.size, 0);
  stuck.resume(); // let the socket see the end
  await stuckClosed;
  size = 10;

  // A client that reads gets status events and, as they happen, operator events.
  const ac = new AbortController();
  const res = await fetch(`http://127.0.0.1:${api.port}/api/v1/stream`, { signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.getReader();
  let text = '';
  let logged = false;
  while (!text.includes('"msg":"dashboard stream test event"')) {
    text += new TextDecoder().decode((await reader.read()).value);
    if (!logged && text.includes('event: status')) {
      operatorEvents.record(30, [{ volume: 'db' }, 'dashboard stream test event']);
      logged = true;
    }
  }
  assert.match(text, /event: event\ndata: \{"time":\d+,"level":"info","msg":"dashboard stream test event","volume":"db"\}\n\n/);
  assert.equal(stream.size, 1);

  // Closing the API ends the open stream instead of waiting for it.
  await api.close();
  assert.equal(stream.size, 0);
  await assert.rejects(async () => {
    for (;;) if ((await reader.read()).done) throw new Error('ended');
  }, /ended|terminated|aborted/);
  ac.abort();
});

test('streams are limited in number: one more gets 503 with the reason', async () => {
  const stream = new StatusStream({ status: () => bigStatus(10), log: silentLogger, maxClients: 1 });
  const api = await serve(stream);
  const ac = new AbortController();
  const first = await fetch(`http://127.0.0.1:${api.port}/api/v1/stream`, { signal: ac.signal });
  assert.equal(first.status, 200);
  const second = await fetch(`http://127.0.0.1:${api.port}/api/v1/stream`);
  assert.equal(second.status, 503);
  assert.match(((await second.json()) as { error: string }).error, /too many live streams open on this node \(at most 1\)/);
  await api.close();
  ac.abort();
});

/** Opens a stream from `from` (loopback has many addresses): its status and, on 200, a way to close it. */
function openFrom(port: number, from: string): Promise<{ status: number; body: string; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/v1/stream', localAddress: from }, (res) => {
      if (res.statusCode === 200) {
        resolve({ status: 200, body: '', close: () => req.destroy() });
        res.on('error', () => undefined);
        return;
      }
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, close: () => undefined }));
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
  });
}

test('one address cannot hold every stream: past its share it gets 429, other addresses still get theirs', async () => {
  const stream = new StatusStream({ status: () => bigStatus(10), log: silentLogger, maxClients: 10, maxClientsPerAddress: 2 });
  const api = await serve(stream);
  const mine = [await openFrom(api.port, '127.0.0.1'), await openFrom(api.port, '127.0.0.1')];
  assert.deepEqual(mine.map((x) => x.status), [200, 200]);
  const third = await openFrom(api.port, '127.0.0.1');
  assert.equal(third.status, 429);
  assert.equal((JSON.parse(third.body) as { error: string }).error,
    'too many live streams open from 127.0.0.1 (at most 2 from one address); close a dashboard tab and retry');
  const other = await openFrom(api.port, '127.0.0.2');
  assert.equal(other.status, 200, 'another address is not held back');
  assert.equal(stream.size, 3);
  // A stream that ends gives its address the room back.
  mine[0]!.close();
  await waitFor('the closed stream seen', () => stream.size === 2, 20_000, 20);
  const again = await openFrom(api.port, '127.0.0.1');
  assert.equal(again.status, 200);
  for (const x of [mine[1]!, other, again]) x.close();
  await api.close();
});

test('the API closes at once with a dashboard stream and a preconnected socket open', { timeout: 20_000 }, async () => {
  const app = Fastify();
  registerDashboard(app, { status: () => bigStatus(10), log: silentLogger });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  // The page and its files come from the package (also when run from dist/).
  const page = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  assert.match(await page.text(), /<script type="module" src="\/assets\/app.js"><\/script>/);
  const uplot = await fetch(`http://127.0.0.1:${port}/assets/uPlot.iife.min.js`);
  assert.match(uplot.headers.get('content-type') ?? '', /^text\/javascript/);
  assert.ok((await uplot.text()).length > 10_000);
  // A browser's preconnect: a connection that never sends a request.
  const pre = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => pre.once('connect', resolve));
  const preClosed = new Promise<void>((resolve) => pre.once('close', () => resolve()));
  pre.on('error', () => undefined);
  const ac = new AbortController();
  const stream = await fetch(`http://127.0.0.1:${port}/api/v1/stream`, { signal: ac.signal });
  assert.equal(stream.status, 200);
  await app.close(); // would wait for the preconnected socket (and the stream) without the dashboard's close
  await preClosed;
  ac.abort();
});
