// A real ext4 filesystem on the export: mkfs, mount, copy files in, delete some,
// fstrim, unmount; restart the daemon; e2fsck -fn is clean and every file is intact.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { FuseLoop, requireRoot } from '../helpers/ext4.js';
import { must, run } from '../helpers/run.js';
import { fileSha } from '../helpers/images.js';


test('ext4 on an Offsite export survives a daemon restart byte for byte', async () => {
  requireRoot();
  const d = await TestDaemon.create({ volumes: { disk: { size: '256MiB' } } });
  const mnt = path.join(d.dir, 'mnt');
  fs.mkdirSync(mnt);
  const files = new Map<string, string>();
  try {
    let fl = await FuseLoop.attach(d.uri('disk'), d.dir);
    await must('mkfs.ext4', ['-q', '-F', '-E', 'discard', fl.loop]);
    await must('mount', [fl.loop, mnt]);
    // A tree of real files plus random data, some of which is deleted before fstrim.
    fs.mkdirSync(path.join(mnt, 'tree'));
    for (let i = 0; i < 40; i++) {
      const f = path.join(mnt, 'tree', `f${i}.bin`);
      fs.writeFileSync(f, crypto.randomBytes(1024 + i * 37 * 1024));
    }
    await must('cp', ['-a', '/usr/share/doc/fio', path.join(mnt, 'doc')]);
    fs.writeFileSync(path.join(mnt, 'big.bin'), crypto.randomBytes(48 * 1024 * 1024));
    for (let i = 0; i < 40; i += 3) fs.rmSync(path.join(mnt, 'tree', `f${i}.bin`));
    await must('sync', []);
    const trim = await run('fstrim', ['-v', mnt]);
    assert.equal(trim.code, 0, trim.stderr);
    for (const f of (await must('find', [mnt, '-type', 'f'])).trim().split('\n')) {
      files.set(path.relative(mnt, f), fileSha(f));
    }
    assert.ok(files.size > 30);
    await must('umount', [mnt]);
    await fl.detach();

    assert.equal(await d.stop(), 0, 'clean stop');
    await d.start();

    fl = await FuseLoop.attach(d.uri('disk'), d.dir);
    const fsck = await run('e2fsck', ['-fn', fl.loop]);
    assert.equal(fsck.code, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
    await must('mount', ['-o', 'ro', fl.loop, mnt]);
    for (const [rel, hash] of files) assert.equal(fileSha(path.join(mnt, rel)), hash, rel);
    assert.ok(!fs.existsSync(path.join(mnt, 'tree', 'f0.bin')), 'deleted files stay deleted');
    await must('umount', [mnt]);
    await fl.detach();
    // fstrim gave space back: the volume file is sparser than what was ever written.
    const used = fs.statSync(path.join(d.dir, 'disk.img')).blocks * 512;
    assert.ok(used < 200 * 1024 * 1024, `volume uses ${used} bytes after fstrim`);
  } finally {
    await run('umount', [mnt]);
    await d.stop();
  }
});
