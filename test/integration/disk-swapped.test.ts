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
