// A served volume reopened alone at a reload (src/node/volume-reopen.ts, docs/CONFIG.md
// "Reloading"): its file renamed (`path`), its journal's folder moved (`journal_dir`)
// and its bitmap's granularity changed (`bitmap_region`) in one `offsite reload`, with
// writes its secondary has not received in the journal. The volume is let go and
// opened again: its journal moves with those writes, its bitmap's marks carry over, no
// resync round runs, and the pair drains equal. The node's other volume goes on: a
// qemu-io session on it writes before and after the reload without a break.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cli } from '../helpers/cli.js';
import { startPair } from '../helpers/pair.js';
import { must, waitFor } from '../helpers/run.js';

test('a reload reopens one volume with its new file, journal folder and bitmap granularity; its unshipped writes ship; the other volume goes on',
  async () => {
    const p = await startPair({
      size: '64MiB', journal: '256MiB',
      volumesA: '  wal: { path: ./wal.img, size: 64MiB, role: primary, peer: site-b, journal: 256MiB }',
      volumesB: '  wal: { path: ./wal.img, size: 64MiB, role: secondary, peer: site-a, journal: 256MiB }',
    });
    const jdb = path.join(p.a.dir, 'jdb');
    try {
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      await p.drained();
      // site-b away: writes only site-a's journal holds.
      assert.equal(await p.b.stop(), 0);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 2M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      // wal's host: one session across the reload (a write, a pause the reload falls in, a write).
      let walErr = '';
      const wal = spawn('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 1M', '-c', 'flush', '-c', 'sleep 6000', '-c', 'write -P 0x22 1M 1M',
        '-c', 'flush', p.a.qemuTarget('wal')], { stdio: ['ignore', 'ignore', 'pipe'] });
      wal.stderr!.on('data', (b: Buffer) => { walErr += b.toString(); });
      const walDone = new Promise<number | null>((resolve) => wal.on('exit', resolve));

      // The file renamed under the running daemon (the same file), and the config says so with the other two keys.
      fs.renameSync(path.join(p.a.dir, 'db.img'), path.join(p.a.dir, 'db2.img'));
      fs.writeFileSync(p.a.configFile, fs.readFileSync(p.a.configFile, 'utf8')
        .replace('db: { path: ./db.img,', 'db: { path: ./db2.img, journal_dir: ./jdb, bitmap_region: 256KiB,'));
      const from = p.a.log.length;
      const said = await cli(p.a, 'reload');
      assert.equal(said.code, 0, said.stderr);
      assert.match(said.stdout, new RegExp('volume db: path \\S+/db\\.img → \\S+/db2\\.img, bitmap_region 64 KiB → 256 KiB, ' +
        'journal_dir \\(default\\) → \\S+/jdb: reopening it alone \\(its NBD connections and iSCSI sessions close'));
      await waitFor('db reopened at site-a', () => /volume db: opened at a reload; served as primary/.test(p.a.log.slice(from)), 30_000);
      const after = p.a.log.slice(from);
      assert.match(after, /volume db: let go in \d+ ms to be reopened with its new path, journal_dir, bitmap_region/);
      assert.match(after, new RegExp(`volume db: journal_dir is now ${jdb}: moving its journal there from \\S+/state/volumes/db/journal`));
      assert.match(after, /volume db: journal moved to \S+ in \d+ ms \([1-9] files, [^,]+, linked: the same filesystem\)/);
      assert.match(after, /volume db: journal [^,]+, [1-9]\d* records unreleased/);
      assert.match(after, /dirty bitmap: its region size was 65536 bytes and bitmap_region is now 262144/);
      assert.doesNotMatch(after, /letting it go: .* failed|every region will be resynced/);
      // A new host session reads what the journal holds, and writes.
      await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x33 2M 1M', '-c', 'write -P 0x44 3M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
      assert.equal(await walDone, 0, `wal's session broke at the reload: ${walErr}`);

      await p.b.start();
      await p.drained();
      assert.doesNotMatch(p.a.log.slice(from), /volume db: resync round/);
      assert.equal(await p.a.stop(), 0);
      assert.equal(await p.b.stop(), 0);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(p.a.dir, 'db2.img'), path.join(p.b.dir, 'db.img')]);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(p.a.dir, 'wal.img'), path.join(p.b.dir, 'wal.img')]);
      // The old journal folder holds no journal; the new one does.
      assert.deepEqual(fs.readdirSync(path.join(p.a.dir, 'state', 'volumes', 'db', 'journal')).filter((n) => n.endsWith('.seg')), []);
      assert.ok(fs.readdirSync(jdb).some((n) => n.endsWith('.seg')));
    } finally {
      await p.stop();
    }
  });
