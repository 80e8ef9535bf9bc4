// Three sites, a set of three (docs/PEERS.md): site-b promoted with --force while site-a
// still runs db as primary, and site-c follows site-a. site-b's link to site-c then
// brings a second primary of db to a secondary that follows another. site-c does not pair
// with it, says why, and tells site-b by a VolumeHello (protocol 3) on the link that stays
// up, rather than closing that link over and over (docs/LINK.md, "Conflicts of one volume").
// Once site-a is demoted, site-c's primary is paired no more: it asks site-b again and
// follows it; all three converge.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OFFSITE_BIN, statusOf } from '../helpers/daemon.js';
import { assertIdentical } from '../helpers/images.js';
import { must, sleep, waitFor } from '../helpers/run.js';
import { startTrio } from '../helpers/trio.js';

test('three sites: a secondary reached by a second primary does not pair with it and says why, the link staying up; follows it once its own is demoted',
  async () => {
  const t = await startTrio({ set: true, size: '64MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 8M', '-c', 'flush', t.a.uri('db')]);
    await t.drained(120_000);
    const ups = (): number => t.c.log.match(/link to site-b up/g)?.length ?? 0;
    assert.equal(ups(), 1);

    // site-b taken over while site-a runs: two primaries of db, and site-c follows site-a.
    const forced = await must(process.execPath, [OFFSITE_BIN, 'promote', 'db', '--force', '-c', t.b.configFile]);
    assert.match(forced, /volume db promoted: primary on this node/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 16M 4M', '-c', 'flush', t.b.uri('db')]);
    const refusal = new RegExp('volume db: site-b is primary, and so is site-a, which this node follows; two primaries take writes apart: ' +
      'demote one of them \\(offsite demote db\\); nothing of db flows from site-b meanwhile');
    await waitFor('site-c to say it does not pair with site-b', () => refusal.test(t.c.log), 60_000);
    await waitFor('site-b to hear it', () => /volume db: not paired with site-c now \(volume db: site-b is primary, and so is site-a/.test(t.b.log), 30_000);
    // site-a's writes still reach site-c; the link from site-b stays up.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 32M 4M', '-c', 'flush', t.a.uri('db')]);
    await t.drained(120_000, 'site-a', ['site-c']);
    await assertIdentical(t.a.uri('db'), t.c.uri('db'), { message: 'site-c still follows site-a' });
    await sleep(2000);
    assert.equal(ups(), 1, 'the link site-b–site-c was not closed');
    assert.doesNotMatch(t.c.log, /link to site-b closed/);

    // site-a demoted: site-c's primary is paired no more; it asks site-b again and follows it.
    await must(process.execPath, [OFFSITE_BIN, 'demote', 'db', '-c', t.a.configFile]);
    await waitFor('site-c to follow site-b', () => /volume db: site-b is primary with a journal this replica never followed/.test(t.c.log), 60_000);
    await t.drained(180_000, 'site-b', ['site-a', 'site-c']);
    await assertIdentical(t.b.uri('db'), t.c.uri('db'), { message: 'site-c follows site-b' });
    await assertIdentical(t.b.uri('db'), t.a.uri('db'), { message: 'site-a demoted follows site-b' });
    const sc = (await statusOf(t.c)).volumes[0]!;
    assert.deepEqual([sc.role, sc.peer, sc.link], ['secondary', 'site-b', 'connected']);
    assert.equal(ups(), 1, 'all on the link that came up first');
  } finally {
    await t.stop();
  }
});
