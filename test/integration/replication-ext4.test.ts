// A real ext4 filesystem built and filled on the primary (nbdfuse + losetup +
// mkfs.ext4 + mount): after unmount and drain, the secondary's read-only export is
// byte-identical (qemu-img compare), passes e2fsck, and mounts read-only with every
// file's sha256 intact. Also checks the volume identity the pair agreed on. Root only.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FuseLoop, requireRoot } from '../helpers/ext4.js';
import { statusOf } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run } from '../helpers/run.js';
import { assertIdentical, fileSha } from '../helpers/images.js';


test('ext4 on the primary: the replica is the same filesystem, file for file', async () => {
  requireRoot();
  const p = await startPair({ size: '256MiB' });
  const mnt = path.join(p.a.dir, 'mnt');
  fs.mkdirSync(mnt);
  const files = new Map<string, string>();
  try {
    const fa = await FuseLoop.attach(p.a.uri('db'), p.a.dir);
    try {
      await must('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', fa.loop]);
      await must('mount', [fa.loop, mnt]);
      try {
        // A small source tree, some binaries, and an overwrite-heavy file with fsyncs.
        fs.mkdirSync(path.join(mnt, 'src/lib'), { recursive: true });
        for (let i = 0; i < 200; i++) {
          const f = path.join(mnt, 'src/lib', `mod${i}.ts`);
          fs.writeFileSync(f, `// module ${i}\nexport const v${i} = ${i};\n`.repeat(1 + (i % 40)));
        }
        for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(mnt, `blob${i}.bin`), crypto.randomBytes(3 * 1024 * 1024 + i * 4096));
        const fd = fs.openSync(path.join(mnt, 'db.dat'), 'w+');
        const page = Buffer.alloc(8192);
        for (let i = 0; i < 400; i++) {
          page.fill(i & 0xff);
          fs.writeSync(fd, page, 0, page.length, ((i * 7919) % 256) * 8192);
          if (i % 20 === 19) fs.fsyncSync(fd);
        }
        fs.closeSync(fd);
        fs.rmSync(path.join(mnt, 'blob3.bin'));
        for (const rel of walk(mnt)) files.set(rel, fileSha(path.join(mnt, rel)));
      } finally {
        await must('umount', [mnt]);
      }
    } finally {
      await fa.detach();
    }
    await p.drained(120_000);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));

    // The replica, read-only: fsck clean, and every file as written.
    const fb = await FuseLoop.attach(p.b.uri('db'), p.b.dir);
    const rmnt = path.join(p.b.dir, 'mnt');
    fs.mkdirSync(rmnt);
    try {
      const fsck = await run('e2fsck', ['-fn', fb.loop]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      await must('mount', ['-o', 'ro,noload', fb.loop, rmnt]);
      try {
        const seen = walk(rmnt);
        assert.equal(seen.length, files.size);
        for (const rel of seen) assert.equal(fileSha(path.join(rmnt, rel)), files.get(rel), rel);
        assert.ok(!fs.existsSync(path.join(rmnt, 'blob3.bin')), 'the deleted file is gone on the replica too');
      } finally {
        await must('umount', [rmnt]);
      }
    } finally {
      await fb.detach();
    }

    // Both sides name the volume by the primary's UUID and generations.
    const [sa, sb] = [await statusOf(p.a), await statusOf(p.b)];
    const va = sa.volumes[0] as unknown as { uuid: string; generation: string[] };
    const vb = sb.volumes[0] as unknown as { uuid: string; generation: string[] };
    assert.match(va.uuid, /^[0-9a-f-]{36}$/);
    assert.equal(vb.uuid, va.uuid);
    assert.deepEqual(vb.generation, va.generation);
    assert.equal(va.generation.length, 1);
  } finally {
    await p.stop();
  }
});

function walk(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    if (e.name === 'lost+found') continue;
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...walk(root, r));
    else out.push(r);
  }
  return out.sort();
}
