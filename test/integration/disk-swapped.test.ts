// Another disk at a block device's path (src/volume/device-identity.ts, docs/CONFIG.md
// "A volume's file replaced"): after a reboot /dev/sdb may be the disk that was /dev/sdc.
// Here site-a's volume is a loop device, reached through the path its config names (a
// link, as /dev/disk/by-path would be); the daemon is stopped and the path pointed at
// another loop device holding another disk's data. The start refuses it, reads and
// writes nothing there, and writes down the disk it found; renamed to device-accepted
// (the operator says the disk is the volume's now), the volume opens on it as on a
// replaced file: the journal goes, and the secondary is compared by hash and ends equal
// to it. Before the check, the primary served the other disk to its hosts and shipped
// its journal on, leaving the secondary different without a word. Root only (losetup).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPair } from '../helpers/pair.js';
import { must, run, tempDir } from '../helpers/run.js';

const MiB = 1024 * 1024;

test('another disk at a block device volume\'s path is refused, untouched; accepted by the operator, its peer is compared by hash', async () => {
  const dir = tempDir('disk-swapped');
  const [mine, other] = [path.join(dir, 'mine.raw'), path.join(dir, 'other.raw')];
  fs.writeFileSync(mine, Buffer.alloc(64 * MiB));
  fs.writeFileSync(other, Buffer.alloc(64 * MiB, 0x77));
  const devMine = (await must('losetup', ['--find', '--show', mine])).trim();
  const devOther = (await must('losetup', ['--find', '--show', other])).trim();
  const p = await startPair({ size: '64MiB', journal: '64MiB', prepare: (a) => fs.symlinkSync(devMine, path.join(a, 'db.img')) });
  const link = path.join(p.a.dir, 'db.img');
  const state = path.join(p.a.dir, 'state', 'volumes', 'db');
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 2M', '-c', 'flush', p.a.qemuTarget('db')]);
    await p.drained();
    assert.match(fs.readFileSync(path.join(state, 'file-id'), 'utf8'), new RegExp(`"device":"loop ${mine} offset 0"`));
    assert.equal(await p.a.stop(), 0);

    // The path now reaches the other disk: refused at the start, nothing read or written there.
    fs.rmSync(link);
    fs.symlinkSync(devOther, link);
    await assert.rejects(p.a.start(), new RegExp(`volume db: \\S+/db\\.img is not the disk this volume's state was kept for \\(that was ` +
      `disk loop ${mine} offset 0; this is disk loop ${other} offset 0: disks renamed at boot\\?\\); not opened, nothing read or written`));
    assert.deepEqual(fs.readFileSync(other), Buffer.alloc(64 * MiB, 0x77), 'the other disk is untouched');
    assert.ok(fs.existsSync(path.join(state, 'device-refused')));

    // The operator says it is the volume's disk now: it opens as over a replaced file, and the secondary is compared with it.
    fs.renameSync(path.join(state, 'device-refused'), path.join(state, 'device-accepted'));
    await p.a.start();
    assert.match(p.a.log, new RegExp('volume db: \\S+/db\\.img is not the disk this volume\'s state was kept for .*: a disk replaced, ' +
      'taken as the volume\'s by device-accepted\\): its journal describes changes to the other file, so it is dropped'));
    assert.ok(!fs.existsSync(path.join(state, 'device-accepted')), 'the acceptance is spent');
    await p.drained();
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', devOther, path.join(p.b.dir, 'db.img')]);
    // Started again on it: the same disk, nothing said.
    await p.a.start();
    assert.doesNotMatch(p.a.log, /is not the disk/);
  } finally {
    await p.stop();
    await run('losetup', ['-d', devMine]);
    await run('losetup', ['-d', devOther]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The same disk written while the daemon was stopped (a backup restored with dd, the
// replica mounted and fsck'd): a device keeps no modification time, so the clean stop
// writes down what the kernel counted written to it, and the start compares. At the
// primary, 1 MiB written with dd through the device node: found, and the secondary is
// compared by hash and ends equal. At the secondary, its replica disk written: found,
// and it is compared as a new replica. Started again with nothing written: nothing said.
// Before, a block device's volume was not checked at all. Root only (losetup).
test('a block device written while the daemon was stopped is found by the kernel\'s count of its writes, at either site', async () => {
  const dir = tempDir('disk-written');
  const [a, b] = [path.join(dir, 'a.raw'), path.join(dir, 'b.raw')];
  fs.writeFileSync(a, Buffer.alloc(64 * MiB));
  fs.writeFileSync(b, Buffer.alloc(64 * MiB));
  const devA = (await must('losetup', ['--find', '--show', a])).trim();
  const devB = (await must('losetup', ['--find', '--show', b])).trim();
  const p = await startPair({
    size: '64MiB', journal: '64MiB',
    prepare: (da, db) => {
      fs.symlinkSync(devA, path.join(da, 'db.img'));
      fs.symlinkSync(devB, path.join(db, 'db.img'));
    },
  });
  const dd = (dev: string, pattern: string, seekMiB: number): Promise<string> =>
    must('sh', ['-c', `head -c ${MiB} /dev/zero | tr '\\0' '${pattern}' | dd of=${dev} bs=64k seek=${seekMiB * 16} oflag=direct status=none`]);
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 2M', '-c', 'flush', p.a.qemuTarget('db')]);
    await p.drained();
    assert.equal(await p.a.stop(), 0);
    assert.match(fs.readFileSync(path.join(p.a.dir, 'state', 'volumes', 'db', 'file-id'), 'utf8'),
      /"stoppedWrites":\{"boot":"[0-9a-f-]+","written":"\d+","discarded":"\d+"\}/);

    // At the primary: 1 MiB written through the device node while stopped.
    await dd(devA, '\\125', 8);
    await p.a.start();
    assert.match(p.a.log, new RegExp('volume db: \\S+/db\\.img was written while the daemon was stopped \\(the kernel counted 1\\.0 MiB ' +
      'written to the disk since the daemon\'s clean stop\\), so the regions written then are in no journal: each peer\'s replica is compared'));
    await p.drained();

    // At the secondary: its replica disk written while stopped.
    assert.equal(await p.b.stop(), 0);
    await dd(devB, '\\146', 20);
    await p.b.start();
    assert.match(p.b.log,
      /volume db: \S+\/db\.img was written while the daemon was stopped \(the kernel counted 1\.0 MiB written to the disk[^)]*\): it is no longer/);
    await p.drained();
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', devA, devB]);
    assert.equal(fs.readFileSync(b).subarray(8 * MiB, 8 * MiB + 4).toString('latin1'), 'UUUU', 'site-a\'s write while stopped reached site-b');
    assert.ok(fs.readFileSync(b).subarray(20 * MiB, 21 * MiB).every((x) => x === 0), 'site-b\'s own write was replaced');

    // Stopped and started with nothing written: nothing said.
    const [fromA, fromB] = [p.a.log.length, p.b.log.length];
    await p.a.start();
    await p.b.start();
    await p.drained();
    assert.doesNotMatch(p.a.log.slice(fromA) + p.b.log.slice(fromB), /written while the daemon was stopped/);
  } finally {
    await p.stop();
    await run('losetup', ['-d', devA]);
    await run('losetup', ['-d', devB]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
