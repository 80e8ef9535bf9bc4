// A promote on a full disk (docs/FAILOVER.md): site-b's whole folder (volume, receive log,
// state files) is a small tmpfs; site-a is killed -9 after its writes were flushed and
// replicated; the tmpfs is filled to the last byte. The promote must fail with the disk's
// error, said to the operator, and leave site-b a secondary serving the same image; once
// room is made the same promote succeeds and the promoted export is site-a's flushed
// image. The same daemon throughout: no restart needed. Root only (mount).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { requireRoot } from '../helpers/ext4.js';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, sleep } from '../helpers/run.js';
import { cli, exportHash } from '../helpers/cli.js';

async function volumeOf(d: TestDaemon): Promise<{ role: string; link: string; consistent: boolean }> {
  return (await statusOf(d)).volumes[0] as unknown as { role: string; link: string; consistent: boolean };
}

/** Fills the filesystem holding `dir` until a write fails with ENOSPC; returns the filler's path. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  const chunk = Buffer.alloc(1024 * 1024, 0x77);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    fs.closeSync(fd);
  }
  // (What is left is less than a page: smaller writes fill it too.)
  const small = fs.openSync(filler, 'a');
  try {
    for (;;) fs.writeSync(small, chunk.subarray(0, 512));
  } catch {
    // full
  } finally {
    fs.closeSync(small);
  }
  return filler;
}

test('a promote on a full disk fails with the disk\'s error and changes nothing; with room made, the same promote succeeds', async () => {
  requireRoot();
  let mounted = '';
  const p = await startPair({
    size: '64MiB', journal: '64MiB',
    prepare: (_dirA, dirB) => {
      // site-b's folder, as `offsite init` left it, moved onto a tmpfs of its own.
      const held = `${dirB}.init`;
      fs.renameSync(dirB, held);
      fs.mkdirSync(dirB);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=160m', 'tmpfs', dirB]);
      mounted = dirB;
      execFileSync('cp', ['-a', `${held}/.`, dirB]);
    },
  });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 8M', '-c', 'write -P 0xa5 16M 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(120_000);
    const flushed = await exportHash(p.a.uri('db'), p.a.dir);
    for (let i = 0; i < 200 && !(await volumeOf(p.b)).consistent; i++) await sleep(100);
    await p.a.kill9();
    for (let i = 0; i < 300 && (await volumeOf(p.b)).link === 'connected'; i++) await sleep(100);

    const filler = fill(mounted);
    const refused = await cli(p.b, 'promote', 'db');
    assert.notEqual(refused.code, 0, `the promote succeeded on a full disk: ${refused.stdout}`);
    // It says which disk, what to do, and where the volume stands.
    assert.match(refused.stderr, new RegExp(String.raw`promote failed: the disk holding .*/b/\S* is full \(ENOSPC: no space left on device.*\): ` +
      String.raw`make room there and run 'offsite promote db' again; ` +
      String.raw`(nothing changed, db is still a secondary|the promote is recorded and completes then \(or at the next start\))`),
      refused.stderr);
    const still = await volumeOf(p.b);
    assert.equal(still.role, 'secondary', 'a secondary until a promote completes');

    fs.rmSync(filler);
    const promoted = await cli(p.b, 'promote', 'db');
    assert.equal(promoted.code, 0, `${promoted.stderr}\n${p.b.log.slice(-3000)}`);
    assert.match(promoted.stdout, /volume db promoted: primary on this node/);
    assert.equal((await volumeOf(p.b)).role, 'primary');
    assert.equal(await exportHash(p.b.uri('db'), p.a.dir), flushed, 'the promoted export is site-a\'s flushed image');
  } finally {
    // (Detached at once, even while site-b still has files open there; its folder is then empty to remove.)
    if (mounted) execFileSync('umount', ['-l', mounted]);
    await p.stop();
  }
});
