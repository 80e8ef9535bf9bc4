// A primary's dirty bitmap removed while its daemon was stopped (docs/VERSIONING.md,
// what losing each state file costs), after the journal overflowed into it: the regions
// it marked were nowhere else, and a start made a clean bitmap and never sent them,
// while the pair said it was drained and consistent. Now the start finds the bitmap
// gone and every secondary is compared by hash. Real pair, qemu-io, qemu-img compare.
// While the secondary cannot start again yet (a checkpoint it holds), the primary's
// status must not call the pair current: its link is up and its backlog empty, but the
// peer holds the old stream and is still to be compared (CI once read "drained" there).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPair } from '../helpers/pair.js';
import { must, waitFor } from '../helpers/run.js';
import { statusOf } from '../helpers/daemon.js';
import { cli } from '../helpers/cli.js';

test('a dirty bitmap removed after an overflow: the start says so, the secondary is compared by hash and ends equal', async () => {
  const p = await startPair({ size: '64MiB', journal: '8MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', p.a.qemuTarget('db')]);
    await p.drained();
    assert.equal((await cli(p.b, 'checkpoint', 'create', 'db', '--label', 'before')).code, 0);
    assert.equal(await p.b.stop(), 0);
    // More than the journal holds: it overflows, and the bitmap marks what was written.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 4M 24M', '-c', 'flush', p.a.qemuTarget('db')]);
    await waitFor('the journal overflowed into the bitmap', () => /switched to dirty-bitmap tracking/.test(p.a.log), 30_000);
    assert.equal(await p.a.stop(), 0);
    fs.rmSync(path.join(p.a.dir, 'state', 'volumes', 'db', 'dirty.bitmap'));
    await p.a.start();
    assert.match(p.a.log, /volume db: its dirty bitmap \(\S+dirty\.bitmap\) is gone, so the regions it marked are not known: each peer's replica is compared/);
    await p.b.start();
    // site-b keeps its checkpoint's image and follows the new stream once it is released.
    const waits = /site-a began a new journal .*; it follows site-a once checkpoint .{1,2}before.{1,2} is released/;
    await waitFor('site-b waits for its checkpoint to start again', () => waits.test(p.b.log), 30_000);
    const held = (await statusOf(p.a)).volumes[0]!;
    assert.equal(held.link, 'connected');
    assert.equal(held.backlogBytes, 0);
    assert.equal(held.resyncing, true, 'the primary says the peer is still to be compared, not current');
    assert.equal(held.peers[0]!.resyncing, true);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'db')).code, 0);
    await p.drained();
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(p.a.dir, 'db.img'), path.join(p.b.dir, 'db.img')]);
  } finally {
    await p.stop();
  }
});
