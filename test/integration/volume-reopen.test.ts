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
import { must, qemuWrite, waitFor } from '../helpers/run.js';

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

// A consistency group's member reopened at a reload: its members open together (as at a
// start: the group's points and the secondary's limit are formed over all of them), so
// the other members are let go and opened with it. At the primary, db's granularity and
// wal's journal folder changed in one reload; at the secondary, db's granularity. The
// group goes on: its points advance, a group checkpoint is taken at the secondary, and
// both pairs drain equal. Before, a member's path, journal_dir or bitmap_region took a
// restart of the whole node.
test('a reload reopens a consistency group\'s members together when one member\'s keys change; the group checkpoints and drains equal', async () => {
  const groups = 'groups:\n  erp: [db, wal]\n';
  const p = await startPair({
    size: '64MiB', journal: '64MiB',
    volumesA: '  wal: { path: ./wal.img, size: 64MiB, role: primary, peer: site-b, journal: 64MiB }',
    volumesB: '  wal: { path: ./wal.img, size: 64MiB, role: secondary, peer: site-a, journal: 64MiB }',
    nodeKeysA: groups, nodeKeysB: groups,
  });
  try {
    const write = (v: string, pattern: number, at: string): Promise<string> => qemuWrite(p.a.qemuTarget(v), pattern, at);
    await write('db', 0x11, '0');
    await write('wal', 0x12, '0');
    await p.drained();

    fs.writeFileSync(p.a.configFile, fs.readFileSync(p.a.configFile, 'utf8')
      .replace('db: { path: ./db.img,', 'db: { path: ./db.img, bitmap_region: 128KiB,')
      .replace('wal: { path: ./wal.img,', 'wal: { path: ./wal.img, journal_dir: ./jwal,'));
    const from = p.a.log.length;
    const said = await cli(p.a, 'reload');
    assert.equal(said.code, 0, said.stderr);
    assert.match(said.stdout, /volume db: bitmap_region 64 KiB → 128 KiB: reopening it with the other members of consistency group erp \(wal\)/);
    assert.doesNotMatch(said.stdout, /takes a restart/);
    await waitFor('both members reopened at site-a', () =>
      ['db', 'wal'].every((v) => new RegExp(`volume ${v}: opened at a reload; served as primary`).test(p.a.log.slice(from))), 30_000);
    assert.match(p.a.log.slice(from),
      /volumes db, wal: let go in \d+ ms to be reopened together \(consistency group erp: db's bitmap_region; wal's journal_dir\)/);
    assert.match(p.a.log.slice(from), /volume wal: journal moved to \S+jwal in \d+ ms/);

    // At the secondary: db's granularity, at a reload there.
    fs.writeFileSync(p.b.configFile, fs.readFileSync(p.b.configFile, 'utf8').replace('db: { path: ./db.img,', 'db: { path: ./db.img, bitmap_region: 256KiB,'));
    const fromB = p.b.log.length;
    assert.equal((await cli(p.b, 'reload')).code, 0);
    await waitFor('both members reopened at site-b', () =>
      ['db', 'wal'].every((v) => new RegExp(`volume ${v}: opened at a reload; served as secondary`).test(p.b.log.slice(fromB))), 30_000);

    await write('db', 0x21, '2M');
    await write('wal', 0x22, '2M');
    await p.drained();
    const made = await cli(p.b, 'checkpoint', 'create', 'erp', '--label', 'after-reopen');
    assert.equal(made.code, 0, `checkpoint create erp: ${made.stderr} ${made.stdout}`);
    assert.match(made.stdout, /checkpoint "after-reopen" of group erp held at group point \d+/);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'erp')).code, 0);
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    for (const v of ['db', 'wal']) {
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(p.a.dir, `${v}.img`), path.join(p.b.dir, `${v}.img`)]);
    }
  } finally {
    await p.stop();
  }
});
