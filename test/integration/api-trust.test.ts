// The trust model, said and enforced (issue 15, item 8): a listener the network
// reaches is warned about at start; the API answers only host names the node is
// known by (DNS rebinding reached its open read routes); and with api_tls: true it
// speaks HTTPS with the node's certificate, which the CLI pins.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { OFFSITE_BIN, TestDaemon } from '../helpers/daemon.js';
import { must, run } from '../helpers/run.js';

const VOLUME = 'volumes:\n  disk: { path: ./disk.img, size: 16MiB, role: primary }\n';

function get(
  port: number,
  route: string,
  host: string,
  opts: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: route, method: opts.method ?? 'GET', headers: { host, ...opts.headers } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(opts.method === 'POST' ? '{}' : undefined);
  });
}

test('listeners the network reaches are warned about at start; loopback ones are not', async () => {
  const open = await TestDaemon.create({ yaml: ({ nbd, api }) => `node: site-a\nstate: ./state\nnbd: 0.0.0.0:${nbd}\napi: ":${api}"\n${VOLUME}` });
  const local = await TestDaemon.create({ yaml: ({ nbd, api }) => `node: site-a\nstate: ./state\nnbd: 127.0.0.1:${nbd}\napi: 127.0.0.1:${api}\n${VOLUME}` });
  try {
    assert.match(open.log, new RegExp(`NBD listens on 0\\.0\\.0\\.0:${open.port}, which the network reaches: ` +
      'NBD has no authentication, so whoever reaches this port can read and write the volumes served here'));
    assert.match(open.log, new RegExp(`the API listens on 0\\.0\\.0\\.0:${open.apiPort}, which the network reaches, over plain HTTP: ` +
      'the token of every action crosses the network in clear.*set api_tls: true'));
    assert.doesNotMatch(local.log, /which the network reaches/);
  } finally {
    await open.stop();
    await local.stop();
  }
});

test('the API answers IP literals, localhost and api_hosts names only: another Host (DNS rebinding) gets 421, logged once', async () => {
  const d = await TestDaemon.create({
    yaml: ({ nbd, api }) => `node: site-a\nstate: ./state\nnbd: 127.0.0.1:${nbd}\napi: 127.0.0.1:${api}\napi_hosts: [offsite-a.example]\n${VOLUME}`,
  });
  try {
    const p = d.apiPort;
    for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `[::1]:${p}`, `offsite-a.example:${p}`, 'OFFSITE-A.example.', '10.1.2.3']) {
      assert.equal((await get(p, '/api/v1/status', host)).status, 200, host);
    }
    for (const route of ['/api/v1/status', '/api/v1/events', '/', '/metrics']) {
      const r = await get(p, route, `rebound.evil.example:${p}`);
      assert.equal(r.status, 421, route);
      assert.match(JSON.parse(r.body).error, /this API does not answer to the host name "rebound\.evil\.example": a page on another site can point its name at this address \(DNS rebinding\)\. Use the address, localhost, or add the name to api_hosts/);
    }
    // Before the token is looked at.
    const action = await get(p, '/api/v1/volumes/disk/pause', 'evil.example', { method: 'POST', headers: { 'content-type': 'application/json' } });
    assert.equal(action.status, 421);
    await new Promise((r) => setTimeout(r, 200));
    const lines = d.log.split('\n').filter((l) => l.includes('is not a name of this node'));
    assert.equal(lines.length, 1, 'said once, then counted');
    assert.match(lines[0]!, /API: refused GET \/api\/v1\/status from 127\.0\.0\.1: Host \\"rebound\.evil\.example\\" is not a name of this node \(it answers to IP addresses and localhost, offsite-a\.example; more go in api_hosts\)/);
  } finally {
    await d.stop();
  }
});

test('api_tls: the API speaks HTTPS with the node certificate, offsite status pins it, plain HTTP is refused', async () => {
  const yaml = (state: string) => ({ nbd, api }: { nbd: number; api: number }): string =>
    `node: site-a\nstate: ${state}\nnbd: 127.0.0.1:${nbd}\napi: 127.0.0.1:${api}\napi_tls: true\n${VOLUME}`;
  const d = await TestDaemon.create({ noStart: true, yaml: yaml('./state') });
  // No certificate yet: the daemon says what to do and does not start.
  const early = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', d.configFile], { timeoutMs: 20_000 });
  assert.notEqual(early.code, 0);
  assert.match(early.stderr, /api_tls: true serves the API with this node's certificate: no node identity in .*: run `offsite init -c <config>` first/);
  await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile]);
  await d.start();
  try {
    assert.match(d.log, new RegExp(`API at https://127\\.0\\.0\\.1:${d.apiPort}/api/v1/status`));
    // The CLI: HTTPS, pinned to state/node.crt.
    const st = await run(process.execPath, [OFFSITE_BIN, 'status', '-c', d.configFile]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /disk/);
    const paused = await run(process.execPath, [OFFSITE_BIN, 'pause', 'disk', '-c', d.configFile]);
    assert.doesNotMatch(paused.stderr, /certificate|TLS|cannot reach/, 'an action goes over the pinned connection too');
    // The certificate served is the node's.
    const served = await new Promise<string>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: d.apiPort, path: '/api/v1/status', rejectUnauthorized: false }, (res) => {
        resolve((res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256);
        res.resume();
      });
      req.on('error', reject);
    });
    const init = (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!;
    assert.equal(served, init);
    // Plain HTTP is refused (no answer), and said once.
    await assert.rejects(get(d.apiPort, '/api/v1/status', '127.0.0.1'));
    await assert.rejects(get(d.apiPort, '/api/v1/status', '127.0.0.1'));
    await new Promise((r) => setTimeout(r, 200));
    const refusedTls = /API: refused a connection from 127\.0\.0\.1: no TLS handshake .*this API speaks HTTPS only \(api_tls: true\)/;
    assert.equal(d.log.split('\n').filter((l) => refusedTls.test(l)).length, 1);
    // A CLI whose state holds another certificate refuses to talk (nothing sent).
    const other = path.join(d.dir, 'other.yaml');
    fs.writeFileSync(other, fs.readFileSync(d.configFile, 'utf8').replace('state: ./state', 'state: ./other-state'));
    await must(process.execPath, [OFFSITE_BIN, 'init', '-c', other]);
    const wrong = await run(process.execPath, [OFFSITE_BIN, 'status', '-c', other]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, new RegExp(`the API at 127\\.0\\.0\\.1:${d.apiPort} presented certificate ${served}, ` +
      `not this node's own \\(.*other-state/node\\.crt: [0-9A-F:]{95}\\); another program may be listening there: nothing was sent`));
    // A CLI config without api_tls is told what to set.
    const plain = path.join(d.dir, 'plain.yaml');
    fs.writeFileSync(plain, fs.readFileSync(d.configFile, 'utf8').replace('api_tls: true\n', ''));
    const told = await run(process.execPath, [OFFSITE_BIN, 'status', '-c', plain]);
    assert.notEqual(told.code, 0);
    assert.match(told.stderr, /did not answer plain HTTP .*set api_tls: true in/);
  } finally {
    await d.stop();
  }
});
