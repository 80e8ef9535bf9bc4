// A volume's file replaced while its daemon was stopped (src/volume/file-identity.ts,
// docs/CONFIG.md "A volume's file replaced"): the state folder (journal, receive log)
// describes changes to the other file, and used as it is it would leave the secondary
// different from the primary without a word. With a real pair and qemu-io:
// - at the primary, a backup restored over the file (an older copy, another inode), with
//   a write in the journal its peer had not received: the start says so and drops the
//   journal; the secondary follows the new journal and is compared by hash: it ends
//   equal to the restored file (before the check it kept the newer writes, and took the
//   journal's one on top);
// - at the secondary, the replica replaced by a copy that differs in one block (a bad
//   copy): the start says so, the replica starts over as a new one and is compared by
//   hash: the block is put right (before the check it stayed wrong);
// - a file renamed or the state folder copied with it is not a replacement (the reopen
//   and bench:wire tests move them so).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPair } from '../helpers/pair.js';
import { must, waitFor } from '../helpers/run.js';

const MiB = 1024 * 1024;

/** 64 KiB of `byte` written into `file` at `at` by another than the daemon (as dd would), synced. */
function poke(file: string, at: number, byte: number): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(64 * 1024, byte), 0, 64 * 1024, at);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function blockOf(file: string, at: number): number {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    return b[0]!;
  } finally {
    fs.closeSync(fd);
  }
}

test('a volume file replaced while stopped, at the primary (a backup restored) and at the secondary (a bad copy): found, compared by hash, made equal',
  async () => {
    const p = await startPair({ size: '64MiB', journal: '256MiB' });
    const imgA = path.join(p.a.dir, 'db.img');
    const imgB = path.join(p.b.dir, 'db.img');
    const backup = path.join(p.a.dir, 'db.backup');
    try {
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.qemuTarget('db')]);
      await p.drained();
      // A backup of the primary's file, taken while it was stopped.
      assert.equal(await p.a.stop(), 0);
      fs.copyFileSync(imgA, backup);
      await p.a.start();
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 1M 1M', '-c', 'write -P 0x23 8M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      await p.drained();
      // site-b away: a write only the journal holds.
      assert.equal(await p.b.stop(), 0);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x24 16M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      assert.equal(await p.a.stop(), 0);

      // The backup restored in the file's place: another file, older content.
      fs.rmSync(imgA);
      fs.copyFileSync(backup, imgA);
      await p.a.start();
      assert.match(p.a.log, new RegExp('volume db: \\S+/db\\.img is not the file this volume\'s state was kept for \\(that was inode ' +
        '\\d+, made [^;]+; this is inode \\d+, made [^)]+: a copy, or a backup restored\\): its journal describes changes to the other file, ' +
        'so it is dropped'));
      await p.b.start();
      await waitFor('site-b follows the new journal', () => /volume db: site-a began a new journal/.test(p.b.log), 30_000);
      await p.drained();
      assert.equal(await p.a.stop(), 0);
      assert.equal(await p.b.stop(), 0);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', imgA, imgB]);
      assert.deepEqual([blockOf(imgB, MiB), blockOf(imgB, 8 * MiB), blockOf(imgB, 16 * MiB)], [0x11, 0, 0]);

      // The replica replaced by a copy that differs in one block.
      const copy = path.join(p.b.dir, 'db.copy');
      fs.copyFileSync(imgB, copy);
      const fd = fs.openSync(copy, 'r+');
      fs.writeSync(fd, Buffer.alloc(64 * 1024, 0x99), 0, 64 * 1024, 20 * MiB);
      fs.closeSync(fd);
      fs.renameSync(copy, imgB);
      await p.a.start();
      await p.b.start();
      assert.match(p.b.log, new RegExp('volume db: \\S+/db\\.img is not the file this volume\'s state was kept for .*: its receive log, ' +
        'round, checkpoint and restore points describe the other file, so they go'));
      await p.drained();
      assert.equal(await p.a.stop(), 0);
      assert.equal(await p.b.stop(), 0);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', imgA, imgB]);
      assert.equal(blockOf(imgB, 20 * MiB), 0);
      // Started again as they are: the same files, nothing said.
      await p.a.start();
      assert.doesNotMatch(p.a.log, /is not the file/);
    } finally {
      await p.stop();
    }
  });

// The same file written while its daemon was stopped (dd of a backup into it at the
// primary; the replica mounted and fsck'd at the secondary): no journal saw those
// writes, and the receive log builds on an image that is no longer there. The clean
// stop wrote down the file's times; the start finds them moved and starts the pair over
// by hash. Before, the pair said drained and current with the blocks different. A start
// after kill -9 has nothing written down and takes the file; one after a clean stop with
// the file untouched but renamed (its path changed in the config) says nothing and
// resyncs nothing: a rename moves the file's change time, not its modification time.
test('a volume file written while stopped, at the primary and at the secondary: found by its times, compared by hash, made equal', async () => {
  const p = await startPair({ size: '64MiB', journal: '64MiB' });
  const imgA = path.join(p.a.dir, 'db2.img');
  const imgB = path.join(p.b.dir, 'db.img');
  const stopBoth = async (): Promise<void> => {
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
  };
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.qemuTarget('db')]);
    await p.drained();
    await stopBoth();
    // Untouched between a clean stop and a start, but moved (renamed, the config's path with it): nothing said, nothing compared.
    fs.renameSync(path.join(p.a.dir, 'db.img'), imgA);
    fs.writeFileSync(p.a.configFile, fs.readFileSync(p.a.configFile, 'utf8').replace('db: { path: ./db.img,', 'db: { path: ./db2.img,'));
    await p.a.start();
    await p.b.start();
    await p.drained();
    assert.doesNotMatch(p.a.log + p.b.log, /written while the daemon was stopped|first sync|resync round/);
    await stopBoth();

    // At the primary, 64 KiB written into the file with the daemon stopped.
    poke(imgA, 2 * MiB, 0x55);
    await p.a.start();
    assert.match(p.a.log, new RegExp('volume db: \\S+/db2\\.img was written while the daemon was stopped \\(modified [^;]+; the ' +
      'daemon\'s clean stop left it modified [^)]+\\), so the regions written then are in no journal: each peer\'s replica is compared'));
    await p.b.start();
    await p.drained();
    await stopBoth();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', imgA, imgB]);
    assert.equal(blockOf(imgB, 2 * MiB), 0x55);

    // At the secondary, its replica written with the daemon stopped.
    poke(imgB, 30 * MiB, 0x66);
    await p.a.start();
    await p.b.start();
    assert.match(p.b.log, /volume db: \S+\/db\.img was written while the daemon was stopped \(modified [^)]+\): it is no longer the flush-point image/);
    await p.drained();
    await stopBoth();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', imgA, imgB]);
    assert.equal(blockOf(imgB, 30 * MiB), 0);

    // After kill -9 nothing was written down: the start takes the file as it is, and says nothing.
    await p.a.start();
    await p.a.kill9();
    await p.a.start();
    assert.doesNotMatch(p.a.log, /written while the daemon was stopped/);
  } finally {
    await p.stop();
  }
});

// After kill -9 no clean stop wrote down how the file was left, but the daemon's alive
// mark (src/node/alive-mark.ts) says when it was last alive: a file modified well after
// it was written by something else once the daemon was gone (the replica mounted and
// fsck'd after the DR site's daemon died). The test moves the daemon's end back in time,
// as a crash ten minutes ago would have left it: the mark and the file's own last write
// set back (the daemon's writes come before its end), then the file written now.
test('a volume file written after kill -9, at the secondary and at the primary: found by the alive mark, compared by hash, made equal', async () => {
  const p = await startPair({ size: '64MiB', journal: '64MiB' });
  const imgA = path.join(p.a.dir, 'db.img');
  const imgB = path.join(p.b.dir, 'db.img');
  // The daemon's end moved back: its last mark ten minutes ago, the file's last write a minute before that.
  const endedLongAgo = (dir: string, file: string): void => {
    const mark = path.join(dir, 'state', 'alive');
    const kept = JSON.parse(fs.readFileSync(mark, 'utf8')) as { version: number; time: string };
    assert.equal(kept.version, 1);
    const ago = BigInt(Date.now() - 600_000) * 1_000_000n;
    assert.ok(BigInt(kept.time) > ago, 'the mark was written in this run');
    fs.writeFileSync(mark, `${JSON.stringify({ version: 1, time: ago.toString() })}\n`);
    const before = new Date(Date.now() - 660_000);
    fs.utimesSync(file, before, before);
  };
  const after = /was written after the daemon ended/;
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.qemuTarget('db')]);
    await p.drained();

    // kill -9 of the secondary, its end moved back, the replica untouched since: nothing said.
    await p.b.kill9();
    endedLongAgo(p.b.dir, imgB);
    await p.b.start();
    await p.drained();
    assert.doesNotMatch(p.b.log, after); // (the log of this run: the helper begins it anew at each start)

    // Again, and the replica written after the end (64 KiB, the replica mounted and fsck'd).
    await p.b.kill9();
    endedLongAgo(p.b.dir, imgB);
    poke(imgB, 30 * MiB, 0x66);
    await p.b.start();
    assert.match(p.b.log, new RegExp('volume db: \\S+/db\\.img was written after the daemon ended \\(modified [^;]+; the daemon ' +
      'was last alive at [^,]+, and did not stop cleanly\\): it is no longer the flush-point image'));
    await p.drained();

    // At the primary: kill -9, its end moved back, 64 KiB written into the file.
    await p.a.kill9();
    endedLongAgo(p.a.dir, imgA);
    poke(imgA, 2 * MiB, 0x55);
    await p.a.start();
    assert.match(p.a.log, new RegExp('volume db: \\S+/db\\.img was written after the daemon ended \\(modified [^)]+\\), so the ' +
      'regions written then are in no journal: each peer\'s replica is compared'));
    await p.drained();
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', imgA, imgB]);
    assert.equal(blockOf(imgB, 2 * MiB), 0x55, 'the primary\'s write after its end reached the secondary');
    assert.equal(blockOf(imgB, 30 * MiB), 0, 'the secondary\'s write after its end was put right');
  } finally {
    await p.stop();
  }
});
