// The action API over HTTP: every mutating call needs the bearer token (missing or
// wrong: 401 and nothing happens); each action answers with what it did, or a
// refusal (404 unknown volume or action, 409 wrong node or state, 400 bad input).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must } from '../helpers/run.js';

async function post(d: TestDaemon, route: string, body: unknown, token: string | null): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`http://127.0.0.1:${d.apiPort}${route}`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

test('API actions: 401 without the token, then checkpoint, release, promote and demote over HTTP', async () => {
  const p = await startPair({ size: '16MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    const token = fs.readFileSync(path.join(p.b.dir, 'state', 'api.token'), 'utf8').trim();

    for (const t of [null, 'wrong', `${token}x`]) {
      const r = await post(p.b, '/api/v1/volumes/db/checkpoint', {}, t);
      assert.equal(r.status, 401, `token ${t}`);
      assert.match(String(r.json.error), /bearer token is needed/);
    }
    assert.equal((await statusOf(p.b)).volumes[0]!.consistent, true);
    assert.equal(((await statusOf(p.b)).volumes[0] as unknown as { checkpoint: unknown }).checkpoint, null, 'a refused call changed nothing');
    const r401 = await post(p.b, '/api/v1/volumes/db/promote', { force: true }, null);
    assert.equal(r401.status, 401);
    assert.equal(((await statusOf(p.b)).volumes[0] as unknown as { role: string }).role, 'secondary');

    assert.equal((await post(p.b, '/api/v1/volumes/nope/checkpoint', {}, token)).status, 404);
    assert.equal((await post(p.b, '/api/v1/volumes/db/explode', {}, token)).status, 404);
    assert.equal((await post(p.b, '/api/v1/volumes/db/checkpoint', { hold: 'forever' }, token)).status, 400);
    assert.equal((await post(p.b, '/api/v1/volumes/db/checkpoint-release', {}, token)).status, 409, 'nothing to release');

    const cp = await post(p.b, '/api/v1/volumes/db/checkpoint', { label: 'api', hold: '1h' }, token);
    assert.equal(cp.status, 200, JSON.stringify(cp.json));
    assert.match(String(cp.json.message), /checkpoint "api" of db held/);
    const list = (await (await fetch(`http://127.0.0.1:${p.b.apiPort}/api/v1/checkpoints`)).json()) as {
      checkpoints: Array<{ label: string; export: string }>;
    };
    assert.deepEqual(list.checkpoints.map((c) => [c.label, c.export]), [['api', 'db@checkpoint']]);
    assert.equal((await post(p.b, '/api/v1/volumes/db/checkpoint', {}, token)).status, 409, 'one checkpoint at a time');
    assert.equal((await post(p.b, '/api/v1/volumes/db/checkpoint-release', {}, token)).status, 200);

    // The operator events carry what the actions did; the OpenAPI document names every action.
    const ev = (await (await fetch(`http://127.0.0.1:${p.b.apiPort}/api/v1/events?limit=50`)).json()) as {
      events: Array<{ level: string; msg: string; volume?: string }>;
    };
    assert.ok(ev.events.some((e) => e.volume === 'db' && /checkpoint "api" held at record/.test(e.msg)), JSON.stringify(ev.events.slice(-5)));
    assert.ok(ev.events.some((e) => e.level === 'warn' && /API: refused checkpoint on db/.test(e.msg)), 'the 401s are in the events');
    const doc = (await (await fetch(`http://127.0.0.1:${p.b.apiPort}/api/v1/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, { post?: { parameters: Array<{ name: string; schema: { enum?: string[] } }> } }>;
    };
    assert.equal(doc.openapi, '3.1.0');
    const actions = doc.paths['/api/v1/volumes/{name}/{action}']!.post!.parameters.find((x) => x.name === 'action')!.schema.enum!;
    for (const a of ['checkpoint', 'checkpoint-release', 'drill-start', 'drill-stop', 'promote', 'demote', 'pause', 'resume', 'verify']) {
      assert.ok(actions.includes(a), a);
    }
    const hist = await fetch(`http://127.0.0.1:${p.a.apiPort}/api/v1/volumes/db/history`);
    assert.equal(hist.status, 200);
    assert.ok(Array.isArray(((await hist.json()) as { history: unknown[] }).history));
    assert.equal((await fetch(`http://127.0.0.1:${p.a.apiPort}/api/v1/volumes/nope/history`)).status, 404);

    const tokenA = fs.readFileSync(path.join(p.a.dir, 'state', 'api.token'), 'utf8').trim();
    const refused = await post(p.b, '/api/v1/volumes/db/promote', {}, token);
    assert.equal(refused.status, 409);
    assert.match(String(refused.json.error), /still connected/);
    const dem = await post(p.a, '/api/v1/volumes/db/demote', {}, tokenA);
    assert.equal(dem.status, 200, JSON.stringify(dem.json));
    const pro = await post(p.b, '/api/v1/volumes/db/promote', {}, token);
    assert.equal(pro.status, 200, JSON.stringify(pro.json));
    assert.equal(((await statusOf(p.b)).volumes[0] as unknown as { role: string }).role, 'primary');
    assert.equal(((await statusOf(p.a)).volumes[0] as unknown as { role: string }).role, 'secondary');
    assert.equal((await post(p.b, '/api/v1/volumes/db/promote', {}, token)).status, 409, 'already primary');
  } finally {
    await p.stop();
  }
});
