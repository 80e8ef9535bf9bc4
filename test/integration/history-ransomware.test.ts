// The ransomware drill (docs/HISTORY.md): ext4 on the primary's volume (nbdfuse +
// losetup + mkfs.ext4 + mount, as the ext4 tests do) holds 50 files of random content,
// their sha256 recorded; once they are durable and replicated, time T is noted; then a
// process overwrites every file in place with random bytes and syncs (the
// "encryption"), and that replicates too: the replica now holds only encrypted files
// (checked, so the test cannot pass on a replica that never saw the damage).
//
// At site-b, with history kept:
// 1. `checkpoint create db --at T` serves db@checkpoint: mounted read-only (nbdfuse -r,
//    losetup -r, mount -o ro,noload), every file is there with its original sha256,
//    and nothing else is; the point is at or before T. Released.
// 2. site-a is lost (kill -9); `promote db --at T` rolls the replica back to the same
//    point and makes it primary: mounted read-write, every file has its original
//    sha256; a new file is written; after unmount, e2fsck -fn is clean, and the new
//    file reads back.
//
// Why a freeze before T: noload (a read-only device cannot replay a journal) reads
// only the metadata's home locations, and ext4 writes those back from its journal
// lazily. fsfreeze checkpoints the journal, so the image at T is whole without replay
// (the filesystem stays mounted, as on a real server). Root only: skipped otherwise.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { FuseLoop } from '../helpers/ext4.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';
import { fileSha } from '../helpers/images.js';
import { teardownFuse } from '../helpers/postgres.js';
import type { CheckpointInfo } from '../../src/contract/actions.js';

const NOT_ROOT = process.getuid?.() !== 0 ? 'needs root (losetup, mount); CI runs as root' : false;
const FILES = 50;

/** Overwrites every file under argv[1] in place with random bytes of its length, each fsynced: the "encryption". */
const ENCRYPT = `
const fs = require('node:fs'), path = require('node:path'), crypto = require('node:crypto');
const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
  e.name === 'lost+found' ? [] : e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
let n = 0;
for (const f of walk(process.argv[1])) {
  const size = fs.statSync(f).size;
  const fd = fs.openSync(f, 'r+');
  fs.writeSync(fd, crypto.randomBytes(size), 0, size, 0);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  n++;
}
console.log(n);
`;

/** Every regular file under root (lost+found aside), relative, sorted. */
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

/** The files under mnt and their sha256. */
function hashes(mnt: string): Map<string, string> {
  return new Map(walk(mnt).map((rel) => [rel, fileSha(path.join(mnt, rel))]));
}

/** Fails unless `seen` is exactly `want`, file for file, naming the first few that differ. */
function assertSameFiles(seen: Map<string, string>, want: Map<string, string>, where: string): void {
  const missing = [...want.keys()].filter((f) => !seen.has(f));
  const extra = [...seen.keys()].filter((f) => !want.has(f));
  const changed = [...want.keys()].filter((f) => seen.has(f) && seen.get(f) !== want.get(f));
  assert.deepEqual({ missing: missing.length, extra: extra.length, changed: changed.length }, { missing: 0, extra: 0, changed: 0 },
    `${where}: ${changed.length} of ${want.size} files differ from what was written before T (${changed.slice(0, 5).join(', ')}), ` +
    `${missing.length} missing (${missing.slice(0, 5).join(', ')}), ${extra.length} not expected (${extra.slice(0, 5).join(', ')})`);
}

test('the ransomware drill: the checkpoint and the promote at T, before the encryption, hold every file as written',
  { skip: NOT_ROOT, timeout: 300_000 }, async (t: TestContext) => {
    const t0 = Date.now();
    const note = (s: string): void => t.diagnostic(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);
    const p = await startPair({ size: '128MiB', volumeKeysB: 'history: { keep: 24h, max: 2GiB }' });
    const mntA = path.join(p.a.dir, 'mnt');
    const mntB = path.join(p.b.dir, 'mnt');
    fs.mkdirSync(mntA);
    fs.mkdirSync(mntB);
    // What is attached or mounted now, for the finally block.
    let fa: FuseLoop | null = null;
    let fb: FuseLoop | null = null;
    const detachA = async (): Promise<void> => {
      const f = fa;
      fa = null;
      for (const n of await teardownFuse(f, p.a.dir, mntA)) note(`site-a: ${n}`);
    };
    const detachB = async (): Promise<void> => {
      const f = fb;
      fb = null;
      for (const n of await teardownFuse(f, p.b.dir, mntB)) note(`site-b: ${n}`);
    };
    try {
      await p.drained(120_000);

      // --- site-a: ext4 and the files ------------------------------------------------
      fa = await FuseLoop.attach(p.a.uri('db'), p.a.dir);
      await must('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', fa.loop]);
      await must('mount', [fa.loop, mntA]);
      fs.mkdirSync(path.join(mntA, 'finance/2026'), { recursive: true });
      fs.mkdirSync(path.join(mntA, 'photos'));
      for (let i = 0; i < FILES; i++) {
        const dir = i % 3 === 0 ? 'photos' : i % 3 === 1 ? 'finance/2026' : '';
        // Sizes from a few bytes to ~300 KiB, most not a whole number of blocks.
        const size = i === 0 ? 7 : 1 + ((i * 104_729) % (300 * 1024));
        fs.writeFileSync(path.join(mntA, dir, `file-${String(i).padStart(2, '0')}.dat`), crypto.randomBytes(size));
      }
      const original = hashes(mntA);
      assert.equal(original.size, FILES);
      await must('sync', []);
      await must('fsfreeze', ['-f', mntA]);
      await must('fsfreeze', ['-u', mntA]);
      await p.drained();
      await sleep(1100);
      const T = new Date().toISOString();
      await sleep(1100);
      note(`${FILES} files written, synced, frozen and replicated; T = ${T}`);

      // --- the "encryption": another process, in place, fsynced ------------------------
      const encrypted = await must(process.execPath, ['-e', ENCRYPT, mntA]);
      assert.equal(Number(encrypted.trim()), FILES, `the encryption overwrote ${encrypted.trim()} files`);
      await must('sync', []);
      const damaged = hashes(mntA);
      assert.equal([...original].filter(([f, h]) => damaged.get(f) === h).length, 0, 'every file at site-a is encrypted');
      await detachA();
      await p.drained();
      note('every file overwritten with random bytes at site-a; unmounted; replicated');

      // The replica itself holds the damage (so a past point that were the replica would fail below).
      fb = await FuseLoop.attach(p.b.uri('db'), p.b.dir, { readOnly: true });
      await must('mount', ['-o', 'ro,noload', fb.loop, mntB]);
      const onReplica = hashes(mntB);
      assert.equal(onReplica.size, FILES, `the replica lists ${onReplica.size} files`);
      assert.equal([...original].filter(([f, h]) => onReplica.get(f) === h).length, 0, 'every file on the replica is encrypted');
      await detachB();

      // --- 1. checkpoint at T: read-only, every file as it was ---------------------------
      const made = await cli(p.b, 'checkpoint', 'create', 'db', '--at', T, '--label', 'before-encryption');
      assert.equal(made.code, 0, `checkpoint create --at ${T}: ${made.stderr.trim()}`);
      const said = /holds the restore point of (\S+) \(record (\d+)\); read it at export db@checkpoint/.exec(made.stdout);
      assert.ok(said, `checkpoint create's answer: ${made.stdout.trim()}`);
      const listed = await cli(p.b, 'checkpoint', 'list', '--json');
      assert.equal(listed.code, 0, listed.stderr);
      const cps = JSON.parse(listed.stdout) as CheckpointInfo[];
      const point = cps.find((c) => c.label === 'before-encryption')?.point;
      assert.ok(point, `checkpoint list names no restore point: ${listed.stdout}`);
      assert.equal(new Date(point.time).toISOString(), said[1]);
      assert.equal(point.seq, Number(said[2]));
      assert.ok(point.time <= Date.parse(T), `the restore point of ${said[1]} is after T = ${T}`);
      note(`checkpoint: ${made.stdout.trim()}`);

      fb = await FuseLoop.attach(p.b.uri('db@checkpoint'), p.b.dir, { readOnly: true });
      const m = await run('mount', ['-o', 'ro,noload', fb.loop, mntB]);
      assert.equal(m.code, 0, `db@checkpoint does not mount read-only: ${m.stderr.trim()}`);
      assertSameFiles(hashes(mntB), original, 'db@checkpoint at T');
      await detachB();
      const rel = await cli(p.b, 'checkpoint', 'release', 'db');
      assert.equal(rel.code, 0, rel.stderr);
      note('db@checkpoint: every file has its original sha256; released');

      // --- 2. site-a is lost; promote at T ----------------------------------------------
      await p.a.kill9();
      const promoted = await cli(p.b, 'promote', 'db', '--at', T);
      assert.equal(promoted.code, 0, `promote --at ${T}: ${promoted.stderr.trim()}`);
      assert.match(promoted.stdout, /volume db promoted: primary on this node, read-write, .*rolled back to the restore point of (\S+) \(record (\d+)\)/);
      const back = /rolled back to the restore point of (\S+) \(record (\d+)\)/.exec(promoted.stdout)!;
      assert.equal(back[1], said[1], 'promote --at T rolls back to the point the checkpoint at T held');
      assert.equal(Number(back[2]), point.seq);
      note(`promote: ${promoted.stdout.trim()}`);

      fb = await FuseLoop.attach(p.b.uri('db'), p.b.dir);
      const mp = await run('mount', [fb.loop, mntB]);
      assert.equal(mp.code, 0, `the promoted volume does not mount read-write: ${mp.stderr.trim()}`);
      assertSameFiles(hashes(mntB), original, 'the promoted volume');
      const fresh = crypto.randomBytes(123_457);
      fs.writeFileSync(path.join(mntB, 'after-recovery.dat'), fresh);
      await must('sync', []);
      await must('umount', [mntB]);
      const fsck = await run('e2fsck', ['-fn', fb.loop]);
      assert.equal(fsck.code, 0, `e2fsck -fn of the promoted volume (exit ${fsck.code}):\n${fsck.stdout}${fsck.stderr}`);
      await must('mount', ['-o', 'ro', fb.loop, mntB]);
      assert.ok(fs.readFileSync(path.join(mntB, 'after-recovery.dat')).equals(fresh), 'the file written after the promote reads back');
      await detachB();
      note(`promoted volume: every file intact, a new file written, e2fsck -fn clean; done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await detachB();
      await detachA();
      for (const [site, d] of [['site-a', p.a], ['site-b', p.b]] as const) {
        const warnings = d.log.split('\n').filter((l) => /"level":(50|60)/.test(l));
        if (warnings.length > 0) note(`${site}: ${warnings.length} errors logged, the last: ${warnings.slice(-4).join('\n')}`);
      }
      // Never remove the pair's folders through a mount that could not be undone.
      const mounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => [mntA, mntB].includes(l.split(' ')[1] ?? ''));
      if (mounted.length > 0) {
        note(`still mounted, pair folders kept: ${mounted.join('; ')}`);
        process.env.OFFSITE_KEEP_DIRS = '1';
      }
      await p.stop();
    }
  });
