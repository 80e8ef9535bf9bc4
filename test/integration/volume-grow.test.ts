// A served volume grown (src/node/volume-size.ts, docs/CONFIG.md "Growing a volume"),
// two real daemons on loopback, while hosts keep one NBD and one iSCSI session open
// (qemu-io each) and write through it all:
// - the secondary first, at a reload: it grows between two units and stays paired;
//   then the primary, at a reload: it grows, its link is made again and pairs at once;
//   a new NBD connection (nbdinfo) and iSCSI login (iscsi-readcapacity16) see the new
//   size, the hosts write past the old end, and nothing of the grown part is resynced
//   (the bytes shipped are the hosts' writes, not the volume); the images compare equal;
// - the primary first this time: its Hello finds site-b smaller, so db waits unpaired
//   (the log says which side to grow, and how), its writes kept in the journal; a start
//   of site-b with a raised size: and no grow under way refuses the volume (a typo
//   would), its file untouched; one with a grow a crash cut part-way (its file written
//   down) finishes it at the open, pairs again, drains, and the images compare equal;
// - a checkpoint taken before keeps its size; a smaller size: is refused at a reload;
// - a volume on a block device (a loop device) is refused a grow until the device has
//   grown (losetup --set-capacity, as lvextend would), then grows, its data kept.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TestDaemon, freePort, statusOf } from '../helpers/daemon.js';
import { cli } from '../helpers/cli.js';
import { startPair } from '../helpers/pair.js';
import { must, run, tempDir, waitFor } from '../helpers/run.js';
import { HostSession } from '../helpers/host-session.js';

const MiB = 1024 * 1024;
const HOST = 'iqn.2026-12.com.example:grow-host';

/** Sets volume db's size in a config file. */
function setSize(file: string, size: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const next = text.replace(/^( {2}db: \{ path: \S+, size: )\S+,/m, `$1${size},`);
  assert.notEqual(next, text, `no db size in ${file}`);
  fs.writeFileSync(file, next);
}

test('a volume grown at reloads, secondary then primary and primary then secondary (by a restart): hosts keep their sessions, nothing resynced', async () => {
  const iscsiPort = await freePort();
  const p = await startPair({
    size: '32MiB', journal: '256MiB',
    nodeKeysA: `iscsi:\n  listen: 127.0.0.1:${iscsiPort}\n  iqn: iqn.2026-12.com.example:site-a\n`,
  });
  const target = `iscsi://127.0.0.1:${iscsiPort}/iqn.2026-12.com.example:site-a:db/0`;
  const hosts: HostSession[] = [];
  try {
    const nbd = new HostSession('-f', 'raw', p.a.uri('db'));
    const iscsi = new HostSession('--image-opts', ['driver=raw', 'file.driver=iscsi', 'file.transport=tcp', `file.portal=127.0.0.1:${iscsiPort}`,
      'file.target=iqn.2026-12.com.example:site-a:db', 'file.lun=0', `file.initiator-name=${HOST}`].join(','));
    hosts.push(nbd, iscsi);
    await nbd.write(0x11, '0', '4M');
    await iscsi.write(0x12, '8M', '1M');
    await p.drained();
    const mark = p.a.log.length;
    const cp = await cli(p.b, 'checkpoint', 'create', 'db');
    assert.equal(cp.code, 0, cp.stderr);
    const shipped = async (): Promise<number> => (await statusOf(p.a)).volumes.find((v) => v.name === 'db')!.shipping.recordBytes;
    const sizeOf = async (uri: string): Promise<number> => Number((await must('nbdinfo', ['--size', uri])).trim());

    // The secondary first: it grows and stays paired (the link is not made again).
    setSize(p.b.configFile, '64MiB');
    const atB = await cli(p.b, 'reload');
    assert.equal(atB.code, 0, atB.stderr);
    assert.match(atB.stdout, /volume db: growing from 32 MiB to 64 MiB/);
    await waitFor('site-b grown', () => /volume db: grown from 32 MiB to 64 MiB in \d+ ms .*raise its size: at site-a next/.test(p.b.log), 15_000);
    assert.doesNotMatch(p.b.log, /grew at a reload here/, 'site-b, paired, made no link again');
    // The checkpoint taken before keeps its size; the replica's export has the new one.
    assert.equal(await sizeOf(p.b.uri('db@checkpoint')), 32 * MiB);
    assert.equal(await sizeOf(p.b.uri('db')), 64 * MiB);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'db')).code, 0);
    await nbd.write(0x13, '1M', '1M');
    await p.drained();
    // Then the primary: it grows, and its link is made again and pairs at once.
    const before = await shipped();
    setSize(p.a.configFile, '64MiB');
    const atA = await cli(p.a, 'reload');
    assert.equal(atA.code, 0, atA.stderr);
    assert.match(atA.stdout, /volume db: growing from 32 MiB to 64 MiB/);
    const grownA = /volume db: grown from 32 MiB to 64 MiB in \d+ ms \(the new part reads zeros; nothing of it is resynced\); each of site-b/;
    await waitFor('site-a grown', () => grownA.test(p.a.log), 15_000);
    assert.equal(await sizeOf(p.a.uri('db')), 64 * MiB, 'a new NBD connection sees the new size');
    assert.match(await must('iscsi-readcapacity16', ['-i', HOST, target]), /Total size:67108864/);
    // The hosts write past the old end on sessions opened before (qemu-io reads the size once; past it, a new one writes).
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 40M 2M', '-c', 'flush', p.a.uri('db')]);
    await nbd.write(0x22, '2M', '1M');
    await iscsi.write(0x23, '9M', '1M');
    await p.drained();
    const sent = (await shipped()) - before;
    assert.ok(sent >= 4 * MiB && sent < 12 * MiB, `site-b was sent ${sent} bytes of records: the 4 MiB written, not the 32 MiB grown`);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
    assert.doesNotMatch(p.a.log.slice(mark), /first sync|resync round/i);

    // Shrinking is refused.
    setSize(p.a.configFile, '48MiB');
    const shrink = await cli(p.a, 'reload');
    assert.match(shrink.stdout, /volume db: size 48 MiB is less than its 64 MiB: a volume does not shrink under its hosts; it stays 64 MiB/);

    // The primary first this time: db waits unpaired, said with what to do; its writes stay in the journal.
    setSize(p.a.configFile, '96MiB');
    await cli(p.a, 'reload');
    const unpaired = new RegExp('volume db: it is 96 MiB \\(100663296 bytes\\) here and 64 MiB \\(67108864 bytes\\) on site-b; ' +
      'the sizes must match: raise its size: on site-b and reload there');
    await waitFor('site-a says db waits for site-b\'s size', () => unpaired.test(p.a.log), 20_000);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x31 80M 4M', '-c', 'flush', p.a.uri('db')]);
    await nbd.write(0x32, '3M', '1M');
    await waitFor('backlog kept', async () => (await statusOf(p.a)).volumes.find((v) => v.name === 'db')!.backlogBytes >= 5 * MiB, 10_000);
    // A start with a raised size: and no grow under way is refused, as a typo would be: the file is untouched.
    // (Its only volume: the start fails, with the volume's reason.)
    await p.b.stop();
    setSize(p.b.configFile, '96MiB');
    await assert.rejects(p.b.start(), new RegExp('\\S+db\\.img is 64 MiB \\(67108864 bytes\\) but the config says 96 MiB \\(100663296 bytes\\); ' +
      'fix size:, or to grow the volume, start it at the size it has and raise size: at a reload'));
    assert.equal(fs.statSync(path.join(p.b.dir, 'db.img')).size, 64 * MiB);
    // A grow a crash cut part-way (written down, the file not extended yet): the start finishes it, and the pair forms.
    fs.writeFileSync(path.join(p.b.dir, 'state', 'volumes', 'db', 'grow'), '{"version":1,"size":100663296}\n');
    await p.b.start();
    await waitFor('site-b finishes the grow at its start',
      () => /volume db: \S+ grown from 64 MiB to 96 MiB, finishing the grow a stop cut/.test(p.b.log), 15_000);
    assert.ok(!fs.existsSync(path.join(p.b.dir, 'state', 'volumes', 'db', 'grow')), 'the grow file goes once the volume is open');
    await p.drained(60_000);
    await iscsi.write(0x33, '10M', '1M');
    await p.drained();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
    await must('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x31 80M 4M', '-c', 'read -P 0x21 40M 2M', '-c', 'read -P 0 90M 6M', p.b.uri('db')]);
    assert.doesNotMatch(p.a.log.slice(mark), /first sync|resync round/i);
    // The hosts wrote through it all on their first sessions.
    for (const h of hosts) await h.close();
    hosts.length = 0;
  } finally {
    for (const h of hosts) h.kill();
    await p.stop();
  }
});

test('a volume on a block device (a loop device) grows at a reload once the device has: refused before, its data kept after', async () => {
  const dir = tempDir('grow-device');
  const backing = path.join(dir, 'disk.raw');
  fs.writeFileSync(backing, Buffer.alloc(16 * MiB, 0x5e));
  const dev = (await must('losetup', ['--find', '--show', backing])).trim();
  let d: TestDaemon | null = null;
  try {
    d = await TestDaemon.create({ dir, volumes: { db: { path: dev, size: '16MiB' } } });
    const daemon = d;
    const reload = async (size: string, said: RegExp): Promise<void> => {
      fs.writeFileSync(daemon.configFile, fs.readFileSync(daemon.configFile, 'utf8').replace(/size: \d+MiB/, `size: ${size}`));
      const mark = daemon.log.length;
      // (No identity, so no API token: SIGHUP, as an init script sends it.)
      process.kill(daemon.pid!, 'SIGHUP');
      await waitFor(`the reload to ${size}`, () => said.test(daemon.log.slice(mark)), 15_000);
    };
    // The device is still 16 MiB: the grow is refused, said, and nothing changes.
    await reload('32MiB', /volume db: growing to 32 MiB failed \(volume db: \/dev\/loop\d+ is 16 MiB; grow the device to 32 MiB first/);
    assert.equal(Number((await must('nbdinfo', ['--size', d.uri('db')])).trim()), 16 * MiB);
    assert.ok(!fs.existsSync(path.join(dir, 'state', 'volumes', 'db', 'grow')), 'nothing written down for a grow refused before it began');
    // The device grows (as lvextend would); the same reload now grows the volume.
    fs.truncateSync(backing, 32 * MiB);
    await must('losetup', ['--set-capacity', dev]);
    await reload('32MiB', /volume db: grown from 16 MiB to 32 MiB in \d+ ms/);
    assert.equal(Number((await must('nbdinfo', ['--size', d.uri('db')])).trim()), 32 * MiB);
    await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5e 0 16M', '-c', 'write -P 0x6f 20M 4M', '-c', 'read -P 0x6f 20M 4M', '-c', 'flush', d.uri('db')]);
  } finally {
    await d?.stop();
    await run('losetup', ['-d', dev]);
  }
});
