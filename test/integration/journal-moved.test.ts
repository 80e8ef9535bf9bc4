// A journal the config moved, or lost with its disk (src/journal/placement.ts, docs/
// JOURNAL.md "A journal that moved or was lost"). A start that found `journal_dir`
// pointing at an empty folder used to begin a new journal numbered from 1 in the same
// stream, so the unshipped records of the old one never reached the secondary.
// With a real pair and qemu-io:
// - journal_dir changed with the files left behind: the start moves the journal to the
//   new folder, its unshipped records with it, and the pair drains equal;
// - the journal's folder gone: the start refuses it (a disk not mounted?) and makes
//   nothing; made again empty (a disk replaced), the start says the journal is lost,
//   begins a new one, and the secondary is compared by hash and brought equal, the
//   writes that were only in the lost journal included.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPair } from '../helpers/pair.js';
import { must, waitFor } from '../helpers/run.js';

const MiB = 1024 * 1024;

async function sameImages(a: string, b: string): Promise<void> {
  await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', a, b]);
}

test('a journal_dir changed at a stop: the start moves the journal and its unshipped writes ship; lost, the secondary is compared and brought equal',
  async () => {
    const p = await startPair({ size: '64MiB', journal: '256MiB', volumeKeysA: 'journal_dir: ./j1' });
    const imgA = path.join(p.a.dir, 'db.img');
    const imgB = path.join(p.b.dir, 'db.img');
    const j1 = path.join(p.a.dir, 'j1');
    const j2 = path.join(p.a.dir, 'j2');
    try {
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      await p.drained();
      // site-b away: a write only the journal holds.
      assert.equal(await p.b.stop(), 0);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 1M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      assert.equal(await p.a.stop(), 0);

      // The key moved, the files not: the start moves the journal, its unshipped records with it.
      fs.writeFileSync(p.a.configFile, fs.readFileSync(p.a.configFile, 'utf8').replace('journal_dir: ./j1', 'journal_dir: ./j2'));
      await p.a.start();
      assert.match(p.a.log, new RegExp(`volume db: journal_dir is now ${j2}: moving its journal there from ${j1} \\(1 segment, [^)]+\\)`));
      assert.match(p.a.log, /volume db: journal moved to \S+ in \d+ ms \([1-9] files, [^,]+, linked: the same filesystem\)/);
      assert.match(p.a.log, /volume db: journal [^,]+, [1-9]\d* records unreleased/);
      assert.deepEqual(fs.readdirSync(j1).filter((n) => n !== 'journal.lock'), []);
      await p.b.start();
      await p.drained();
      await must('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x22 1M 1M', p.b.qemuTarget('db')]);

      // The journal's disk lost while site-b was away.
      assert.equal(await p.b.stop(), 0);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 2M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      assert.equal(await p.a.stop(), 0);
      fs.rmSync(j2, { recursive: true });
      // A folder that is not there at all looks like a disk not mounted: refused, nothing made.
      await assert.rejects(p.a.start(), /volume db: its journal folder \S+\/j2 does not exist \(its disk not mounted\?\): nothing was opened/);
      assert.equal(fs.existsSync(j2), false);
      // The disk replaced: its folder made by hand.
      fs.mkdirSync(j2);
      await p.a.start();
      assert.match(p.a.log, /volume db: its journal is lost: \S+ holds no segments of it \(a journal disk replaced, or its files removed\)/);
      await p.b.start();
      await waitFor('site-b follows the new journal', async () => /volume db: site-a began a new journal/.test(p.b.log), 30_000);
      await p.drained();
      await must('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x33 2M 1M', p.b.qemuTarget('db')]);
      assert.equal(await p.a.stop(), 0);
      assert.equal(await p.b.stop(), 0);
      await sameImages(imgA, imgB);
      assert.equal(fs.statSync(imgA).size, 64 * MiB);
    } finally {
      await p.stop();
    }
  });
