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
import { must, qemuWrite, tempDir, waitFor } from '../helpers/run.js';
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

// A consistency group's secondaries changed at reloads: both members' peers are changed
// alike in the file, and each member's change is made (before, a group member's peers
// took a restart). site-c is taken away from erp (db, wal) at site-a, then put back; the
// group stays whole: a group checkpoint at site-b while site-c is away, and at site-c
// once it is back and first-synced; every image of both members compares equal.
test('a consistency group\'s peers changed at reloads: site-c taken away and put back for both members; group checkpoints; all equal', async () => {
  const t = await startTrio({ size: '32MiB', journal: '64MiB', group: true });
  try {
    const write = (v: string, pattern: number, at: string): Promise<string> => qemuWrite(t.a.uri(v), pattern, at);
    await write('db', 0x41, '0');
    await write('wal', 0x42, '0');
    await t.drained();
    const textA = fs.readFileSync(t.a.configFile, 'utf8');
    const onlyB = textA.replaceAll('peers: [site-b, site-c]', 'peers: [site-b]');
    assert.notEqual(onlyB, textA);
    fs.writeFileSync(t.a.configFile, onlyB);
    const away = await cli(t.a, 'reload');
    assert.equal(away.code, 0, away.stderr);
    for (const v of ['db', 'wal']) assert.match(away.stdout, new RegExp(`volume ${v}: peers now site-b \\(site-c taken away\\)`));
    assert.doesNotMatch(away.stdout, /takes a restart/);
    await waitFor('both members paired with site-b alone', () =>
      ['db', 'wal'].every((v) => new RegExp(`volume ${v}: its peers are site-b now; site-c no longer sent its changes`).test(t.a.log)), 30_000);
    await write('db', 0x43, '4M');
    await write('wal', 0x44, '4M');
    await t.drained(90_000, 'site-a', ['site-b']);
    const atB = await cli(t.b, 'checkpoint', 'create', 'erp', '--label', 'without-c');
    assert.equal(atB.code, 0, `${atB.stderr} ${atB.stdout}`);
    assert.equal((await cli(t.b, 'checkpoint', 'release', 'erp')).code, 0);

    fs.writeFileSync(t.a.configFile, textA);
    const back = await cli(t.a, 'reload');
    assert.equal(back.code, 0, back.stderr);
    for (const v of ['db', 'wal']) assert.match(back.stdout, new RegExp(`volume ${v}: peers now site-b, site-c \\(site-c added`));
    await t.drained();
    // (Writes to both after site-c's first syncs: group points it then holds for both members.)
    await write('db', 0x45, '8M');
    await write('wal', 0x46, '8M');
    await t.drained();
    const atC = await cli(t.c, 'checkpoint', 'create', 'erp', '--label', 'back');
    assert.equal(atC.code, 0, `${atC.stderr} ${atC.stdout}`);
    assert.match(atC.stdout, /checkpoint "back" of group erp held at group point \d+/);
    assert.equal((await cli(t.c, 'checkpoint', 'release', 'erp')).code, 0);
    for (const v of ['db', 'wal']) {
      await assertIdentical(t.a.uri(v), t.b.uri(v), { message: `${v} at site-b` });
      await assertIdentical(t.a.uri(v), t.c.uri(v), { message: `${v} at site-c` });
    }
  } finally {
    await t.stop();
  }
});
