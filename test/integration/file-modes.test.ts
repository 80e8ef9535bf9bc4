// File modes (issue 15, item 13): volume images, journal segments, the bitmap, the
// receive log, history, checkpoint and every other file a daemon makes hold host data
// or the node's state, so they are created 0600 and their folders 0700, whatever the
// umask lets through. A file or block device the operator made keeps its mode.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { cli } from '../helpers/cli.js';
import { must } from '../helpers/run.js';

/** Every file and folder under `dir` (and `dir` itself) with its permission bits. */
function modes(dir: string): Array<{ file: string; mode: number; folder: boolean }> {
  const out = [{ file: dir, mode: fs.statSync(dir).mode & 0o777, folder: true }];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...modes(file));
    else out.push({ file, mode: fs.statSync(file).mode & 0o777, folder: false });
  }
  return out;
}

function assertPrivate(where: string[], what: string): void {
  const wrong = where.flatMap((w) => (fs.statSync(w).isDirectory() ? modes(w) : [{ file: w, mode: fs.statSync(w).mode & 0o777, folder: false }]))
    .filter((m) => m.mode !== (m.folder ? 0o700 : 0o600))
    .map((m) => `${m.file} ${m.mode.toString(8)}`);
  assert.deepEqual(wrong, [], `${what}: not private`);
}

test('every file a daemon with a replicated volume makes is 0600, every folder 0700', async () => {
  // The usual umask, which would let 0644 and 0755 through (children inherit it).
  const umask = process.umask(0o022);
  const p = await startPair({ size: '32MiB', journal: '64MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 8M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    // Pause (its marker file) and resume; a checkpoint (its file) and a drill (its overlay).
    assert.equal((await cli(p.a, 'pause', 'db')).code, 0);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 8M 4M', '-c', 'flush', p.a.uri('db')]);
    assertPrivate([path.join(p.a.dir, 'state'), path.join(p.a.dir, 'db.img')], 'site-a while paused');
    assert.equal((await cli(p.a, 'resume', 'db')).code, 0);
    await p.drained();
    assert.equal((await cli(p.b, 'checkpoint', 'create', 'db', '--hold', '1h')).code, 0);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'db')).code, 0);
    const drill = await cli(p.b, 'drill', 'start', 'db');
    assert.equal(drill.code, 0, drill.stderr);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0xd1 0 1M', '-c', 'flush', p.b.uri('db@drill')]);
    assert.ok(fs.readdirSync(path.join(p.b.dir, 'state', 'volumes', 'db')).includes('drill.overlay'));
    assertPrivate([path.join(p.b.dir, 'state'), path.join(p.b.dir, 'db.img')], 'site-b during a drill');
    assert.equal((await cli(p.b, 'drill', 'stop', 'db')).code, 0);
    await p.drained();
    // A checkpoint kept across a restart, and a clean stop (what a stop writes too).
    assert.equal((await cli(p.b, 'checkpoint', 'create', 'db')).code, 0);
    await p.a.stop();
    await p.b.stop();
    for (const [d, site] of [[p.a, 'site-a'], [p.b, 'site-b']] as const) {
      const files = modes(path.join(d.dir, 'state')).filter((m) => !m.folder).map((m) => path.relative(d.dir, m.file));
      assert.ok(files.length > 8, `${site} made its files: ${files.join(' ')}`);
      assertPrivate([path.join(d.dir, 'state'), path.join(d.dir, 'db.img')], site);
    }
    const a = modes(path.join(p.a.dir, 'state')).map((m) => path.basename(m.file));
    for (const f of ['identity.json', 'history.csv', 'daemon.lock', 'node.key', 'node.crt', 'api.token', 'journal.lock']) {
      assert.ok(a.includes(f), `site-a has ${f}`);
    }
    assert.ok(a.some((f) => f.endsWith('.seg')), 'site-a has journal segments');
    const b = modes(path.join(p.b.dir, 'state')).map((m) => path.basename(m.file));
    for (const f of ['checkpoint', 'receive']) assert.ok(b.includes(f), `site-b has ${f}`);
    await p.b.start();
    await p.a.start();
  } finally {
    process.umask(umask);
    await p.stop();
  }
});

test('an image the operator made keeps its mode', async () => {
  const d = await TestDaemon.create({ noStart: true, volumes: { disk: { size: '4MiB' } } });
  const image = path.join(d.dir, 'disk.img');
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, 4 << 20);
  fs.chmodSync(image, 0o640);
  await d.start();
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', d.uri('disk')]);
  } finally {
    await d.stop();
  }
  assert.equal(fs.statSync(image).mode & 0o777, 0o640);
});
