// One volume's failover does not stop the others' replication (docs/LINK.md, "Conflicts
// of one volume"). Two volumes on one pair: db is promoted at site-b with --force while
// site-a still runs it as primary (a DR drill gone wrong, or a failover that found the
// old primary alive). db is then primary on both sites, a conflict of db's alone: both
// sides say so for db, with the way out, while logs keeps replicating over the same
// link (the status, the CLI's and the dashboard's words, the metric). The demote of db
// at site-a ends it: db converges to site-b's content.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { cli } from '../helpers/cli.js';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { assertIdentical } from '../helpers/images.js';
import { startPair } from '../helpers/pair.js';
import { must, sleep } from '../helpers/run.js';

type View = { name: string; link: string; backlogBytes: number; resyncing: boolean; consistent: boolean; peers: Array<{ conflict?: { code: string } | null }> };

async function volume(d: TestDaemon, name: string): Promise<View> {
  return (await statusOf(d)).volumes.find((v) => v.name === name) as unknown as View;
}

async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

test('a volume primary on both sites waits unpaired with its way out; the other volume replicates over the same link meanwhile', async () => {
  const logs = (peer: string, role: string): string => `  logs: { path: ./logs.img, size: 32MiB, role: ${role}, peer: ${peer}, journal: 64MiB }`;
  const p = await startPair({ size: '32MiB', journal: '64MiB', volumesA: logs('site-b', 'primary'), volumesB: logs('site-a', 'secondary') });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(60_000);
    // (The link comes up once and stays: db's promote, conflict and demote each pair db again by a VolumeHello, protocol 3.)
    const linkUps = (): number[] => [p.a.log.match(/link to site-b up/g)?.length ?? 0, p.b.log.match(/link to site-a up/g)?.length ?? 0];
    assert.deepEqual(linkUps(), [1, 1]);

    // db taken over at site-b while site-a still serves it: refused without --force, done with it.
    const refused = await cli(p.b, 'promote', 'db');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /its primary on site-a is still connected/);
    const forced = await cli(p.b, 'promote', 'db', '--force');
    assert.equal(forced.code, 0, forced.stderr);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 1M 1M', '-c', 'flush', p.b.uri('db')]);

    // Both sides find db's conflict and say what to do; the link stays up.
    await until('db in conflict on both sides', async () =>
      (await volume(p.a, 'db')).peers[0]?.conflict?.code !== undefined && (await volume(p.b, 'db')).peers[0]?.conflict?.code !== undefined);
    assert.equal((await volume(p.a, 'db')).peers[0]!.conflict!.code, 'peer-promoted');
    assert.equal((await volume(p.b, 'db')).peers[0]!.conflict!.code, 'two-primaries');
    assert.match(p.a.log, new RegExp('volume db is primary on both nodes: site-b was promoted after this node\'s last write \\(failover\\); ' +
      'fail back with `offsite demote db` here.*; nothing of db flows between this node and site-b until then \\(the link serves the other volumes\\)'));
    assert.equal((await volume(p.a, 'logs')).link, 'connected');
    const metrics = await (await fetch(`http://127.0.0.1:${p.a.apiPort}/metrics`)).text();
    assert.match(metrics, /^offsite_peer_volume_conflict\{volume="db",peer="site-b"\} 1$/m);
    assert.match(metrics, /^offsite_peer_volume_conflict\{volume="logs",peer="site-b"\} 0$/m);
    const text = await cli(p.a, 'status');
    assert.match(text.stdout, /volume db NOT PAIRED WITH site-b \(peer-promoted\): volume db is primary on both nodes/);
    // The dashboard says it on db's card, in headless Chromium: a badge whose title is the way out.
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${p.a.apiPort}/`);
      const badge = page.getByText('not paired with site-b', { exact: true });
      await badge.waitFor({ timeout: 15_000 });
      assert.match(await badge.getAttribute('title') ?? '', /fail back with `offsite demote db` here/);
    } finally {
      await browser.close();
    }

    // logs replicates meanwhile: written at site-a, identical at site-b.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 8M', '-c', 'flush', p.a.uri('logs')]);
    await until('logs drained', async () => {
      const v = await volume(p.a, 'logs');
      return v.link === 'connected' && v.backlogBytes === 0 && !v.resyncing;
    });
    await assertIdentical(p.a.uri('logs'), p.b.uri('logs'));
    // Nothing of db crossed: site-a's db still holds its own data (0x11 at 1 MiB, not site-b's 0x22).
    await must('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x11 1M 1M', p.a.uri('db')]);

    // The way out: demote db at site-a; it becomes site-b's secondary and converges.
    const demoted = await cli(p.a, 'demote', 'db');
    assert.equal(demoted.code, 0, demoted.stderr);
    await until('db converged to site-b', async () => {
      const [pr, se] = [await volume(p.b, 'db'), await volume(p.a, 'db')];
      return pr.link === 'connected' && pr.backlogBytes === 0 && !pr.resyncing && se.consistent && !se.resyncing && !pr.peers[0]?.conflict;
    }, 120_000);
    await assertIdentical(p.b.uri('db'), p.a.uri('db'));
    assert.equal((await volume(p.a, 'db')).peers[0]!.conflict ?? null, null);
    assert.deepEqual(linkUps(), [1, 1], 'the link never closed: logs never stopped');
    assert.doesNotMatch(p.a.log + p.b.log, /link to site-[ab] closed/);
    assert.match(p.a.log, /volume db: paired with site-b again/);
  } finally {
    await p.stop();
  }
});
