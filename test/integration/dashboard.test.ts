// The web dashboard in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core; no browser is ever downloaded): the page of each node loads with
// no console error and no failed request, shows db with its role, charts the host's
// write rate live while writes flow, creates a checkpoint with the token, asks before
// a promote (and Cancel changes nothing), and says plainly when the token is missing;
// a secondary keeping history shows its window, and takes a checkpoint and starts a
// drill at a time picked on the page; a promote at a time picked there says which
// restore point it goes to and leaves the volume primary with that point's data, and on
// a member of a consistency group promotes the group at one group point. Screenshots go
// to test-artifacts/dashboard-*.png.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { HistoryInfo } from '../../src/contract/actions.js';
import type { NodeStatus, VolumeStatus } from '../../src/contract/status.js';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep, waitFor } from '../helpers/run.js';

const ARTIFACTS = new URL('../../../test-artifacts/', import.meta.url).pathname;

function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Console errors, page errors, failed requests and HTTP errors seen by a page. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return problems;
}

async function shot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${name}.png`), fullPage: true });
}

const url = (d: TestDaemon): string => `http://127.0.0.1:${d.apiPort}/`;

async function roleOf(d: TestDaemon): Promise<string> {
  return ((await statusOf(d)).volumes[0] as unknown as { role: string }).role;
}

test('dashboard: live status and chart, checkpoint with the token, promote asks first, 401 said plainly', async () => {
  const p = await startPair({ size: '32MiB' });
  let browser: Browser | null = null;
  let writing = true;
  let writer: Promise<void> = Promise.resolve();
  try {
    browser = await launch();
    await p.drained();
    const token = fs.readFileSync(path.join(p.b.dir, 'state', 'api.token'), 'utf8').trim();

    // The page and its files are the daemon's own, under a self-only CSP.
    const res = await fetch(url(p.a));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    const html = await res.text();
    assert.doesNotMatch(html, /https?:\/\//, 'nothing is loaded from elsewhere');
    assert.equal((await fetch(`${url(p.a)}assets/uPlot.iife.min.js`)).status, 200);
    assert.equal((await fetch(`${url(p.a)}assets/nope.js`)).status, 404);

    // The stream: a status at once, the same JSON as GET /api/v1/status.
    const ac = new AbortController();
    const stream = await fetch(`${url(p.a)}api/v1/stream`, { signal: ac.signal });
    assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = stream.body!.getReader();
    let text = '';
    while (!/event: status\ndata: .*\n\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    const first = JSON.parse(/event: status\ndata: (.*)\n\n/.exec(text)![1]!) as { node: string; volumes: Array<{ name: string; role: string }> };
    assert.equal(first.node, 'site-a');
    assert.deepEqual(first.volumes.map((v) => [v.name, v.role]), [['db', 'primary']]);
    ac.abort();

    // site-a: db as primary, and the chart moves while the host writes.
    const ctxA = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const pageA = await ctxA.newPage();
    const problemsA = watch(pageA);
    await pageA.goto(url(p.a));
    await pageA.getByTestId('node-name').filter({ hasText: 'site-a' }).waitFor();
    const volA = pageA.getByTestId('volume-db');
    await volA.getByRole('heading', { name: 'db' }).waitFor();
    await pageA.getByTestId('role-db').filter({ hasText: /^primary/ }).waitFor();
    await pageA.getByTestId('connection').filter({ hasText: /^live/ }).waitFor();
    // A pattern (compresses to nothing on the link) and random data (does not), in turn.
    const random = path.join(p.a.dir, 'random-8M.bin');
    fs.writeFileSync(random, crypto.randomBytes(8 << 20));
    writer = (async () => {
      for (let i = 0; writing; i++) {
        await must('qemu-io', ['-f', 'raw', '-c', i % 2 === 0 ? 'write -P 0x5a 0 8M' : `write -s ${random} 8M 8M`, '-c', 'flush', p.a.uri('db')]);
      }
    })();
    await pageA.waitForFunction(() => {
      const s = (globalThis as unknown as { __offsite?: { series(n: string): { host: Array<number | null>; link: number[] } | null } }).__offsite?.series('db');
      return Boolean(s && s.host.some((x) => (x ?? 0) > 0) && s.link.some((x) => x > 0));
    }, null, { timeout: 90_000, polling: 250 });
    const samples = Number(await pageA.getByTestId('chart-db').getAttribute('data-samples'));
    assert.ok(samples > 0, `data-samples ${samples}`);
    assert.ok(Number(await pageA.getByTestId('chart-db').getAttribute('data-link-peak')) > 0, 'the link peak line is drawn');
    assert.equal(await pageA.locator('[data-testid="chart-db"] canvas').count(), 1, 'uPlot drew the chart');
    await sleep(4000); // a few more points for the screenshot
    writing = false;
    await writer;
    await shot(pageA, 'primary');
    assert.deepEqual(problemsA, [], 'site-a page: no console error, no failed request');

    // site-b: db as secondary; enter the token once, take a checkpoint from the page.
    await p.drained();
    const ctxB = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const pageB = await ctxB.newPage();
    const problemsB = watch(pageB);
    await pageB.goto(url(p.b));
    await pageB.getByTestId('role-db').filter({ hasText: /^secondary/ }).waitFor();
    await pageB.getByLabel('API token').fill(token);
    await pageB.getByRole('button', { name: 'Save token' }).click();
    await pageB.getByTestId('token-state').filter({ hasText: 'a token is saved' }).waitFor();
    await pageB.getByLabel('Checkpoint label').fill('dash');
    await pageB.getByRole('button', { name: 'Create checkpoint' }).click();
    await pageB.getByRole('alert').filter({ hasText: 'checkpoint "dash" of db held' }).waitFor();
    await pageB.getByTestId('checkpoint-db').filter({ hasText: '"dash"' }).waitFor();
    await pageB.getByRole('button', { name: 'Release checkpoint' }).waitFor();
    const list = (await (await fetch(`${url(p.b)}api/v1/checkpoints`)).json()) as { checkpoints: Array<{ volume: string; label: string }> };
    assert.deepEqual(list.checkpoints.map((c) => [c.volume, c.label]), [['db', 'dash']]);
    await pageB.getByTestId('events').filter({ hasText: 'checkpoint "dash" held' }).waitFor();
    await shot(pageB, 'secondary-checkpoint');

    // Promote asks first, in plain words; Cancel does nothing.
    await pageB.getByRole('button', { name: 'Promote db here…' }).click();
    const dialog = pageB.getByRole('dialog');
    await dialog.waitFor();
    const said = await dialog.textContent();
    assert.match(said ?? '', /site-b will take over db/);
    assert.match(said ?? '', /records received after that flush point are discarded/);
    assert.match(said ?? '', /site-a is still connected/);
    await shot(pageB, 'promote-confirm');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await sleep(1500);
    assert.equal(await roleOf(p.b), 'secondary', 'cancelled: still secondary');
    assert.equal(await roleOf(p.a), 'primary');
    assert.match((await pageB.getByTestId('role-db').textContent()) ?? '', /^secondary/);
    assert.deepEqual(problemsB, [], 'site-b page: no console error, no failed request');

    // A browser without the token: the 401 is said plainly and nothing changes.
    const ctxC = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const pageC = await ctxC.newPage();
    const problemsC = watch(pageC);
    await pageC.goto(url(p.b));
    await pageC.getByTestId('token-state').filter({ hasText: 'no token saved' }).waitFor();
    await pageC.getByRole('button', { name: 'Release checkpoint' }).click();
    const alert = pageC.getByRole('alert');
    await alert.filter({ hasText: /Not authorized/ }).waitFor();
    assert.match((await alert.textContent()) ?? '', /offsite token -c/);
    await shot(pageC, 'unauthorized');
    const held = (await (await fetch(`${url(p.b)}api/v1/checkpoints`)).json()) as { checkpoints: unknown[] };
    assert.equal(held.checkpoints.length, 1, 'the refused release changed nothing');
    // The only problems are the refusal itself (the 401 response and Chromium's console line for it).
    assert.ok(problemsC.length > 0 && problemsC.every((x) => /401/.test(x)), problemsC.join('\n'));

    // The daemons stop with dashboards still open (the streams do not hold the API's close).
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('hung'), 30_000)));
    const stopped = await Promise.race([p.a.stop().then(() => p.b.stop()).then(() => 'stopped'), hung]);
    clearTimeout(timer);
    assert.equal(stopped, 'stopped', `a daemon did not stop while a dashboard was open:\n${p.a.log.slice(-1500)}\n${p.b.log.slice(-1500)}`);
  } finally {
    writing = false;
    await writer.catch(() => undefined);
    await browser?.close();
    await p.stop();
  }
});

test('dashboard: a consistency group has its line on both sites, consistent once its members are first-synced', async () => {
  const wal = (peer: string, role: string): string =>
    `  wal: { path: ./wal.img, size: 16MiB, role: ${role}, peer: ${peer}, journal: 64MiB }\ngroups:\n  erp: [db, wal]\n`;
  const p = await startPair({ size: '16MiB', nodeKeysA: wal('site-b', 'primary'), nodeKeysB: wal('site-a', 'secondary') });
  let browser: Browser | null = null;
  try {
    browser = await launch();
    await p.drained();
    // A flushed write makes group points (the group's cadence follows host flushes).
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 0 64k', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    for (const [d, role] of [[p.a, 'primary'], [p.b, 'secondary']] as const) {
      const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
      const problems = watch(page);
      await page.goto(url(d));
      const line = page.getByTestId('groups').locator('li[data-group="erp"]');
      await line.filter({ hasText: `erp (db, wal), ${role}: consistent` }).waitFor({ timeout: 60_000 });
      assert.match((await line.textContent()) ?? '', /group point \d+/, 'the group point is shown');
      await shot(page, `group-${role}`);
      assert.deepEqual(problems, [], `${role} page: no console error, no failed request`);
    }
  } finally {
    await browser?.close();
    await p.stop();
  }
});

/**
 * On a pair whose db keeps history at site-b: 0x11 written and a restore point of it, a
 * second, the time picked (whole seconds: what the picker holds), a second, then 0x22
 * over it (the "damage") and a later point. The restore point the time opens is `expected`.
 */
async function pastPoint(p: Awaited<ReturnType<typeof startPair>>): Promise<{
  token: string; write: (pattern: string) => Promise<string>; dbAtB: () => Promise<VolumeStatus>; t1: number; listed: HistoryInfo;
  expected: HistoryInfo['points'][number];
}> {
  await p.drained();
  const token = fs.readFileSync(path.join(p.b.dir, 'state', 'api.token'), 'utf8').trim();
  const write = (pattern: string): Promise<string> => must('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} 0 1M`, '-c', 'flush', p.a.uri('db')]);
  const dbAtB = async (): Promise<VolumeStatus> => ((await (await fetch(`${url(p.b)}api/v1/status`)).json()) as NodeStatus).volumes[0]!;
  await write('0x11');
  await p.drained();
  await sleep(1100);
  const t1 = Math.floor(Date.now() / 1000) * 1000;
  await sleep(1100);
  await write('0x22');
  await p.drained();
  await waitFor('a restore point after the time picked', async () => ((await dbAtB()).history?.newest?.time ?? 0) > t1);
  const listed = (await (await fetch(`${url(p.b)}api/v1/volumes/db/restore-points`)).json()) as HistoryInfo;
  const expected = listed.points.filter((x) => x.time <= t1).at(-1)!;
  assert.ok(expected && expected.seq < listed.points.at(-1)!.seq, `a past point at or before ${t1}: ${JSON.stringify(listed.points)}`);
  return { token, write, dbAtB, t1, listed, expected };
}

test('dashboard: a secondary\'s history window; a checkpoint and a drill at a time picked on the page', async () => {
  const p = await startPair({ size: '16MiB', volumeKeysB: 'history: { keep: 24h, max: 1GiB }' });
  let browser: Browser | null = null;
  try {
    browser = await launch();
    const { token, write, dbAtB, t1, listed, expected } = await pastPoint(p);
    const h = (await dbAtB()).history!;

    // The page in UTC, so that the picker's local time is the ISO time here.
    const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 19);
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 1100 }, timezoneId: 'UTC' });
    const page = await ctx.newPage();
    const problems = watch(page);
    await page.goto(url(p.b));
    await page.getByTestId('role-db').filter({ hasText: /^secondary/ }).waitFor();

    // The window: from the oldest point (time and age) to the newest, how many, bytes of the max, drops.
    const fact = page.getByTestId('history-db');
    await fact.filter({ hasText: / restore points, from / }).waitFor();
    assert.ok(Number(await fact.getAttribute('data-points')) > 0, `points: ${await fact.getAttribute('data-points')}`);
    const said = (await fact.textContent()) ?? '';
    assert.ok(said.includes(`from ${iso(h.oldest!.time).replace('T', ' ')} (`), said);
    assert.match(said, / ago\) to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \([\d a-z]+ ago\);/);
    assert.match(said, /[\d.]+ \S*B of history of 1\.0 GiB max \((<1|\d+)%\); keeps 1 d 0 h; no point dropped at the max/);
    assert.equal(await fact.locator('meter').count(), 1, 'the bytes of the max as a meter');

    // The picker: prefilled (15 min ago, or the oldest point when the history is younger: here),
    // quick choices before the history disabled, and what a time opens said before acting.
    const at = page.getByLabel('Point in time (local)');
    // (Its value, in UTC here; Chromium leaves out ":00" seconds.)
    const picked = async (): Promise<number> => Date.parse(`${await at.inputValue()}Z`);
    assert.equal(await picked(), Math.ceil(h.oldest!.time / 1000) * 1000);
    assert.equal(await page.getByRole('button', { name: '1 h ago' }).isDisabled(), true);
    await at.fill(iso(t1));
    await page.getByRole('button', { name: 'Oldest point' }).click();
    assert.equal(await picked(), Math.ceil(h.oldest!.time / 1000) * 1000, 'a quick choice sets the time');
    await at.fill(iso(t1));
    const hint = page.getByTestId('pick-hint-db');
    await hint.filter({ hasText: `Opens the restore point of ${iso(expected.time).replace('T', ' ')} (record ${expected.seq},` }).waitFor();
    await shot(page, 'history-picker');

    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Save token' }).click();
    await page.getByLabel('Checkpoint label').fill('before');
    await page.getByRole('button', { name: 'Checkpoint at this time' }).click();
    await page.getByRole('alert').filter({ hasText: `checkpoint "before" of db holds the restore point of ${new Date(expected.time).toISOString()}` })
      .waitFor();
    const cpText = page.getByTestId('checkpoint-db');
    await cpText.filter({ hasText: `"before" holds the restore point of ${iso(expected.time).replace('T', ' ')} (record ${expected.seq},` }).waitFor();
    assert.match((await cpText.textContent()) ?? '', /held until released; export db@checkpoint \(the replica stays current\)/);
    const held = (await dbAtB()).checkpoint!;
    assert.equal(held.label, 'before');
    assert.deepEqual(held.point, { seq: expected.seq, time: expected.time }, 'the checkpoint holds the past point picked');
    await page.getByTestId('pick-held-db').filter({ hasText: 'Checkpoint "before" is held' }).waitFor();
    assert.equal(await page.getByTestId('pick-db').isHidden(), true);
    await shot(page, 'history-checkpoint');

    // Released: the picker is back with the same time; a drill there.
    await page.getByRole('button', { name: 'Release checkpoint' }).click();
    await page.getByRole('button', { name: 'Start drill at this time' }).waitFor();
    assert.equal(await picked(), t1);
    await page.getByRole('button', { name: 'Start drill at this time' }).click();
    await page.getByTestId('drill-db').filter({ hasText: `running over the restore point of ${iso(expected.time).replace('T', ' ')}` }).waitFor();
    const drilled = await dbAtB();
    assert.ok(drilled.drill, 'a drill runs');
    assert.deepEqual(drilled.checkpoint?.point, { seq: expected.seq, time: expected.time });
    await page.getByRole('button', { name: 'Stop drill' }).click();
    await page.getByTestId('drill-db').filter({ hasText: /^none$/ }).waitFor();
    await page.getByTestId('checkpoint-db').filter({ hasText: /^none$/ }).waitFor();
    assert.deepEqual(problems, [], 'no console error, no failed request');

    // A time before the history: said before acting, and the node's refusal shown; nothing held.
    await at.fill('2020-01-01T00:00:00');
    await hint.filter({ hasText: 'Before the oldest restore point' }).waitFor();
    await page.getByRole('button', { name: 'Checkpoint at this time' }).click();
    await page.getByRole('alert').filter({ hasText: 'no restore point at or before 2020-01-01T00:00:00.000Z' }).waitFor();
    assert.equal((await dbAtB()).checkpoint, null);
    assert.ok(problems.length > 0 && problems.every((x) => /409/.test(x)), problems.join('\n'));
  } finally {
    await browser?.close();
    await p.stop();
  }
});

test('dashboard: promote at a time picked in the history view: the restore point named, refused while the primary is linked, then forced', async () => {
  const p = await startPair({ size: '16MiB', volumeKeysB: 'history: { keep: 24h, max: 1GiB }' });
  let browser: Browser | null = null;
  try {
    browser = await launch();
    const { token, write, dbAtB, t1, listed, expected } = await pastPoint(p);

    const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 19);
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 1100 }, timezoneId: 'UTC' });
    const page = await ctx.newPage();
    const problems = watch(page);
    await page.goto(url(p.b));
    await page.getByTestId('role-db').filter({ hasText: /^secondary/ }).waitFor();
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Save token' }).click();
    const promoteAt = page.getByRole('button', { name: 'Promote at this time…' });
    const at = page.getByLabel('Point in time (local)');
    // Before the history: said, and nothing is sent (the page cannot name a point to go to).
    await at.fill('2020-01-01T00:00:00');
    await promoteAt.click();
    await page.getByRole('alert').filter({ hasText: 'No restore point of db is at or before 2020-01-01 00:00:00 (the oldest is the restore point of ' })
      .waitFor();
    assert.equal(await page.getByRole('dialog').isVisible(), false, 'no dialog for a time before the history');
    await at.fill(iso(t1));
    await page.getByTestId('pick-hint-db').filter({ hasText: `Opens the restore point of ${iso(expected.time).replace('T', ' ')} (record ${expected.seq},` })
      .waitFor();

    // The dialog names the point, says what is undone, what becomes of db here and of site-a,
    // and that site-b will refuse while site-a is linked (force offered, as for a promote to now).
    await promoteAt.click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    const said = (await dialog.textContent()) ?? '';
    assert.ok(said.includes(`site-b will roll db back to the restore point of ${iso(expected.time).replace('T', ' ')} (record ${expected.seq},`), said);
    assert.ok(said.includes(`the newest restore point at or before the time picked (${iso(t1).replace('T', ' ')})`), said);
    assert.match(said, /Every change after that point is undone on the replica/);
    assert.match(said, /the replica becomes the primary, with a new generation, and export db is served read-write here/);
    assert.match(said, /The link to site-a closes\. site-a still holds the changes undone here .*demote db on site-a; it then resyncs from site-b/);
    assert.match(said, /site-a is still connected, so site-b will refuse/);
    const force = page.getByLabel('Promote anyway (force): I accept the risks above');
    assert.equal(await force.isVisible(), true, 'force is offered while site-a is linked');
    await shot(page, 'promote-at-confirm');

    // Unforced: the node's refusal is shown and nothing changes.
    await dialog.getByRole('button', { name: 'Roll back and promote db' }).click();
    await page.getByRole('alert').filter({ hasText: 'refused to promote db: its primary on site-a is still connected' }).waitFor();
    assert.equal((await dbAtB()).role, 'secondary', 'refused: still secondary');

    // Forced: db is primary here, read-write, with the data of the point picked.
    await promoteAt.click();
    await dialog.waitFor();
    await force.check();
    await dialog.getByRole('button', { name: 'Roll back and promote db' }).click();
    await page.getByRole('alert').filter({ hasText: 'volume db promoted: primary on this node, read-write, generation ' }).waitFor({ timeout: 60_000 });
    assert.match((await page.getByRole('alert').textContent()) ?? '',
      new RegExp(`rolled back to the restore point of ${new Date(expected.time).toISOString()} \\(record ${expected.seq}\\).*\\(forced: `));
    await page.getByTestId('role-db').filter({ hasText: /^primary/ }).waitFor();
    assert.equal((await dbAtB()).role, 'primary');
    const read = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x11 0 1M', p.b.uri('db')]);
    assert.equal(read.code, 0, read.stdout + read.stderr);
    assert.doesNotMatch(read.stdout, /Pattern verification failed/, 'db at site-b holds what was written before the time picked');
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 64k', '-c', 'flush', p.b.uri('db')]);
    await shot(page, 'promote-at-done');
    // The only problems are the refusal (a 409 and Chromium's console line for it).
    assert.ok(problems.length > 0 && problems.every((x) => /409/.test(x)), problems.join('\n'));
  } finally {
    await browser?.close();
    await p.stop();
  }
});

test('dashboard: promote at a time picked on a member of a consistency group promotes the group at one group point', async () => {
  const history = 'history: { keep: 24h, max: 1GiB }';
  const wal = (peer: string, role: string, keys = ''): string =>
    `  wal: { path: ./wal.img, size: 16MiB, role: ${role}, peer: ${peer}, journal: 64MiB${keys} }\ngroups:\n  erp: [db, wal]\n`;
  const p = await startPair({
    size: '16MiB', volumeKeysB: history, nodeKeysA: wal('site-b', 'primary'), nodeKeysB: wal('site-a', 'secondary', `, ${history}`),
  });
  let browser: Browser | null = null;
  try {
    browser = await launch();
    await p.drained();
    const token = fs.readFileSync(path.join(p.b.dir, 'state', 'api.token'), 'utf8').trim();
    const write = (v: string, pattern: string): Promise<string> => must('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} 0 1M`, '-c', 'flush', p.a.uri(v)]);
    await write('db', '0x11');
    await write('wal', '0x12');
    await p.drained();
    await sleep(2500); // (a group point after both flushes: the cadence makes one at least every second)
    const t1 = Math.floor(Date.now() / 1000) * 1000;
    await sleep(1100);
    await write('db', '0x21');
    await write('wal', '0x22');
    await p.drained();
    await sleep(2500);
    // The group point at or before t1 in both histories, and each member's record of it.
    const held = async (v: string): Promise<Map<number, { seq: number; time: number }>> => {
      const h = (await (await fetch(`${url(p.b)}api/v1/volumes/${v}/restore-points`)).json()) as
        { points: Array<{ seq: number; time: number; groupPoint?: number }> };
      return new Map(h.points.filter((x) => x.groupPoint !== undefined && x.time <= t1).map((x) => [x.groupPoint!, x]));
    };
    const [dbPoints, walPoints] = [await held('db'), await held('wal')];
    const gp = Math.max(...[...dbPoints.keys()].filter((k) => walPoints.has(k)));
    assert.ok(Number.isFinite(gp), 'a group point at or before t1 in both histories');
    // site-a is lost.
    await p.a.stop();

    const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 19);
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 1400 }, timezoneId: 'UTC' });
    const page = await ctx.newPage();
    const problems = watch(page);
    await page.goto(url(p.b));
    await page.getByTestId('link-db').filter({ hasText: /^down/ }).waitFor();
    await page.getByTestId('link-wal').filter({ hasText: /^down/ }).waitFor();
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Save token' }).click();
    const card = page.getByTestId('volume-db');
    // A member's checkpoint (at a time, too) and its release act on its group: the node refuses them for one member.
    await card.getByRole('button', { name: 'Promote group erp here…' }).waitFor();
    await card.getByLabel('Point in time (local)').fill(iso(t1));
    await card.getByRole('button', { name: 'Checkpoint at this time' }).click();
    await page.getByRole('alert').filter({ hasText: new RegExp(`of group erp held at group point ${gp}, a past point`) }).waitFor({ timeout: 30_000 });
    const held1 = (await (await fetch(`${url(p.b)}api/v1/status`)).json()) as NodeStatus;
    assert.deepEqual(held1.volumes.map((v) => [v.name, v.checkpoint !== null]), [['db', true], ['wal', true]], 'both members hold the checkpoint');
    await card.getByRole('button', { name: 'Release checkpoint' }).click();
    for (let i = 0; ; i++) {
      const st = (await (await fetch(`${url(p.b)}api/v1/status`)).json()) as NodeStatus;
      if (st.volumes.every((v) => v.checkpoint === null)) break;
      assert.ok(i < 100, 'the group checkpoint released');
      await sleep(100);
    }
    await card.getByLabel('Point in time (local)').fill(iso(t1));
    await card.getByRole('button', { name: 'Promote at this time…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    const said = (await dialog.textContent()) ?? '';
    assert.match(said, /db is in consistency group erp with wal: the whole group is promoted, every member at one moment/);
    assert.ok(said.includes(`site-b will roll db and wal back to group point ${gp} of `), said);
    assert.ok(said.includes(`: db to record ${dbPoints.get(gp)!.seq}, wal to record ${walPoints.get(gp)!.seq}; and take over each there: ` +
      'each replica becomes the primary, with a new generation, and exports db and wal are served read-write here'), said);
    assert.match(said, /demote group erp on site-a; it then resyncs from site-b/);
    assert.doesNotMatch(said, /will refuse/, 'site-a is down: nothing to refuse');
    assert.equal(await page.getByLabel('Promote anyway (force): I accept the risks above').isVisible(), false, 'no force where nothing refuses');
    await shot(page, 'promote-at-group-confirm');
    await dialog.getByRole('button', { name: 'Roll back and promote group erp' }).click();
    await page.getByRole('alert').filter({ hasText: `group erp promoted: db, wal primary on this node, read-write, rolled back to group point ${gp} of ` })
      .waitFor({ timeout: 60_000 });
    const st = (await (await fetch(`${url(p.b)}api/v1/status`)).json()) as NodeStatus;
    assert.deepEqual(st.volumes.map((v) => [v.name, v.role]), [['db', 'primary'], ['wal', 'primary']]);
    for (const [v, pattern] of [['db', '0x11'], ['wal', '0x12']] as const) {
      const r = await run('qemu-io', ['-f', 'raw', '-r', '-c', `read -P ${pattern} 0 1M`, p.b.uri(v)]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /Pattern verification failed/, `${v} at site-b holds what was written before the time picked`);
    }
    assert.deepEqual(problems, [], 'no console error, no failed request');
  } finally {
    await browser?.close();
    await p.stop();
  }
});
