// A served volume's secondaries changed at reloads (src/node/volume-peers.ts, docs/PEERS.md
// "Adding and removing a secondary"), three real daemons on loopback, while one host
// (qemu-io, one NBD connection for the whole test) writes the volume:
// - site-c is lost: site-a's journal keeps what it lacks; a reload of site-a's file
//   without it (db paired with site-b alone, site-c's peer entry gone) lets that go, and
//   db replicates to site-b alone; the host's session is never cut;
// - site-c comes back and a reload puts it back: its replica, behind what the journal
//   holds, is compared by hash, and only what differs is sent (far less than the volume);
//   the three images compare equal, and the host wrote through it all on its one session.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { assertIdentical } from '../helpers/images.js';
import { cli } from '../helpers/cli.js';
import { must, tempDir, waitFor } from '../helpers/run.js';
import { startTrio } from '../helpers/trio.js';
import { HostSession } from '../helpers/host-session.js';

const MiB = 1024 * 1024;

/** site-a's status of db as seen by its peer `name` (undefined: not one of db's peers). */
async function peerOf(d: TestDaemon, name: string): Promise<{ name: string; link: string; backlogBytes: number } | undefined> {
  return (await statusOf(d)).volumes.find((v) => v.name === 'db')!.peers.find((p) => p.name === name);
}

test('a secondary taken away at a reload and put back at another: the host keeps its session, the journal lets go, it is compared by hash', async () => {
  const t = await startTrio({ size: '64MiB', journal: '256MiB' });
  let host: HostSession | null = null;
  try {
    // Data over the whole volume (random: a resend of all of it would show in the bytes shipped).
    const seed = path.join(tempDir('peers-seed'), 'random.img');
    fs.writeFileSync(seed, randomBytes(64 * MiB));
    await must('nbdcopy', [seed, t.a.uri('db')]);
    await t.drained();
    host = new HostSession('-f', 'raw', t.a.uri('db'));
    await host.write(0x31, '0', '1M');

    // site-c is lost: site-a's journal keeps what it lacks.
    await t.c.stop();
    await host.write(0x32, '8M', '8M');
    await waitFor('site-a keeps site-c\'s backlog', async () => ((await peerOf(t.a, 'site-c'))?.backlogBytes ?? 0) >= 8 * MiB);

    // Retired: db pairs with site-b alone, and site-c's peer entry is gone.
    const textA = fs.readFileSync(t.a.configFile, 'utf8');
    const without = textA.replace('peers: [site-b, site-c]', 'peer: site-b').replace(/^ {2}site-c: \{.*\}\n/m, '');
    assert.notEqual(without, textA);
    fs.writeFileSync(t.a.configFile, without);
    const retired = await cli(t.a, 'reload');
    assert.equal(retired.code, 0, retired.stderr);
    assert.match(retired.stdout, /volume db: peers now site-b \(site-c taken away\)/);
    assert.match(retired.stdout, /peer site-c: dropped/);
    assert.doesNotMatch(retired.stdout, /takes a restart/);
    await waitFor('db paired with site-b alone', () => /volume db: its peers are site-b now; site-c no longer sent its changes/.test(t.a.log), 30_000);
    await waitFor('site-c retired', () => /peer site-c: removed from the config; no link to it any more/.test(t.a.log), 30_000);
    await waitFor('the journal let go of what site-c lacked', async () => {
      const db = (await statusOf(t.a)).volumes.find((v) => v.name === 'db')!;
      return db.peers.length === 1 && db.peers[0]!.name === 'site-b' && db.backlogBytes === 0 && db.peers[0]!.backlogBytes === 0;
    }, 30_000);
    await host.write(0x33, '20M', '2M');
    await t.drained(90_000, 'site-a', ['site-b']);
    await assertIdentical(t.a.uri('db'), t.b.uri('db'), { message: 'site-b, with site-c taken away' });

    // site-c comes back, and a reload puts it back: compared by hash, only what differs is sent.
    await t.c.start();
    const shipped = async (): Promise<number> => (await statusOf(t.a)).volumes.find((v) => v.name === 'db')!.shipping.recordBytes;
    const before = await shipped();
    fs.writeFileSync(t.a.configFile, textA);
    const back = await cli(t.a, 'reload');
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /peer site-c: added/);
    assert.match(back.stdout, /volume db: peers now site-b, site-c \(site-c added/);
    await t.drained();
    assert.equal(t.a.log.match(/volume db: first sync of site-c alone from record \d+: the volume \(64(\.0)? MiB\) will be compared with its replica by hash/g)
      ?.length, 2, 'site-c\'s first sync at the start, and its round when put back');
    const sent = (await shipped()) - before;
    assert.ok(sent >= 10 * MiB && sent < 24 * MiB, `site-c was sent ${sent} bytes of records: what differs (about 11 MiB), not the volume (64 MiB)`);
    await host.write(0x34, '40M', '1M');
    await t.drained();
    await assertIdentical(t.a.uri('db'), t.b.uri('db'), { message: 'site-b' });
    await assertIdentical(t.a.uri('db'), t.c.uri('db'), { message: 'site-c, put back' });
    // One session all along: nothing of db's hosts was closed at site-a.
    await host.close();
    host = null;
    assert.doesNotMatch(t.a.log, /host sessions? closed/);
  } finally {
    host?.kill();
    await t.stop();
  }
});
