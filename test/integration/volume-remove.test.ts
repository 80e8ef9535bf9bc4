// A volume dropped from the config of a running pair (src/node/volume-removal.ts,
// docs/CONFIG.md "Reloading"), with real clients:
// - at the primary, in the middle of its first sync over a capped link, with an NBD
//   client (qemu-io) and an iSCSI session (qemu's iscsi driver) open on it: `offsite
//   reload` lets it go; the daemon goes on serving db (fio writes it all along, without
//   an error; qemu-img compare), nbdinfo and iscsi-ls no longer list it, site-b says it is missing at
//   site-a, and its file and state stay as they were; added back, it is served again,
//   its first sync runs to the end and the replica compares equal;
// - at the secondary, with a checkpoint held and a drill over it, while the primary
//   writes: site-a journals it and says it is missing at site-b; added back at site-b,
//   its checkpoint is served again, and once released the backlog drains and it
//   compares equal.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, statusOf, type TestDaemon } from '../helpers/daemon.js';
import { cli } from '../helpers/cli.js';
import { startPair } from '../helpers/pair.js';
import { must, waitFor } from '../helpers/run.js';

const MiB = 1024 * 1024;
const HOST = 'iqn.2026-12.com.example:host';

interface Row { name: string; link: string; backlogBytes: number; resyncing: boolean; resyncBytes: number; peers: Array<{ unavailable?: string | null }> }

async function rows(d: TestDaemon): Promise<Row[]> {
  return (await statusOf(d)).volumes as unknown as Row[];
}

/** Drops the `wal:` line from a config file; returns the line, to put back. */
function dropWal(file: string): string {
  const text = fs.readFileSync(file, 'utf8');
  const line = /^ {2}wal: .*$/m.exec(text)?.[0];
  assert.ok(line, `no wal line in ${file}`);
  fs.writeFileSync(file, text.replace(`${line}\n`, ''));
  return line;
}

function putBack(file: string, line: string): void {
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, text.replace(/^( {2}db: .*)$/m, `$1\n${line}`));
}

function sha(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** A client that opens its session and then holds it (qemu-io sleeping between commands). */
function holdOpen(args: string[]): ChildProcess {
  return spawn('qemu-io', [...args.slice(0, -1), '-c', 'read 0 4k', '-c', 'sleep 60000', args[args.length - 1]!], { stdio: 'ignore' });
}

test('a volume dropped from the config is let go at a reload, mid first sync and with host sessions open; the others go on; added back, it resumes',
  async () => {
    const iscsiPort = await freePort();
    const seed = crypto.randomBytes(24 * MiB);
    const p = await startPair({
      size: '64MiB', journal: '256MiB',
      // 24 MiB of data the first sync must send, at 16 Mbit/s: some 12 s.
      peerKeysA: 'rate: 16mbit, compression: off',
      volumesA: '  wal: { path: ./wal.img, size: 64MiB, role: primary, peer: site-b, journal: 256MiB }',
      volumesB: '  wal: { path: ./wal.img, size: 64MiB, role: secondary, peer: site-a, journal: 256MiB }',
      nodeKeysA: `iscsi:\n  listen: 127.0.0.1:${iscsiPort}\n  iqn: iqn.2026-12.com.example:site-a\n`,
      prepare: (dirA) => {
        const f = path.join(dirA, 'wal.img');
        fs.writeFileSync(f, seed);
        fs.truncateSync(f, 64 * MiB);
      },
    });
    const held: ChildProcess[] = [];
    try {
      const walA = path.join(path.dirname(p.a.configFile), 'wal.img');
      await waitFor('wal\'s first sync under way', async () => {
        const wal = (await rows(p.a)).find((v) => v.name === 'wal');
        return wal !== undefined && wal.resyncing && wal.resyncBytes > 0;
      }, 60_000);
      held.push(holdOpen(['-f', 'raw', p.a.uri('wal')]));
      held.push(holdOpen(['--image-opts', ['driver=raw', 'file.driver=iscsi', 'file.transport=tcp', `file.portal=127.0.0.1:${iscsiPort}`,
        'file.target=iqn.2026-12.com.example:site-a:wal', 'file.lun=0', `file.initiator-name=${HOST}`].join(',')]));
      await waitFor('the NBD and iSCSI sessions on wal', async () => {
        const s = await statusOf(p.a) as unknown as { volumes: Array<{ name: string; iscsi: { sessions: unknown[] } | null }> };
        return (s.volumes.find((v) => v.name === 'wal')?.iscsi?.sessions.length ?? 0) > 0;
      }, 15_000);

      // A host keeps writing db all along (fio's nbd engine): its writes never fail while wal goes.
      const fio = spawn('fio', ['--name=db', '--ioengine=nbd', `--uri=${p.a.uri('db')}`, '--rw=randwrite', '--bs=64k', '--iodepth=8',
        '--size=64M', '--rate=1m', '--time_based', '--runtime=5'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let fioErr = '';
      fio.stderr!.on('data', (b: Buffer) => { fioErr += b.toString(); });
      const fioDone = new Promise<number | null>((resolve) => fio.once('exit', (code) => resolve(code)));
      const line = dropWal(p.a.configFile);
      const said = await cli(p.a, 'reload');
      assert.equal(said.code, 0, said.stderr);
      assert.match(said.stdout, /volume wal: gone from the config; letting it go \(its file, journal and state are kept\)/);
      await waitFor('wal let go at site-a', async () => /volume wal: removed from the config and let go/.test(p.a.log), 30_000);
      assert.match(p.a.log, new RegExp('volume wal: removed from the config and let go in \\d+ ms \\(64 MiB primary, 2 host sessions closed\\); ' +
        '\\S+wal\\.img, its journal and its state in \\S+ are kept'));
      assert.doesNotMatch(p.a.log, /letting it go: .* failed/);
      assert.deepEqual((await rows(p.a)).map((v) => v.name), ['db']);
      assert.equal(await fioDone, 0, `fio on db failed while wal was let go: ${fioErr}`);
      // Not listed any more, by NBD or iSCSI; the other volume still is.
      const list = await must('nbdinfo', ['--list', `nbd://127.0.0.1:${p.a.port}`]);
      assert.match(list, /export="db"/);
      assert.doesNotMatch(list, /export="wal"/);
      const targets = await must('iscsi-ls', ['-i', HOST, `iscsi://127.0.0.1:${iscsiPort}`]);
      assert.match(targets, /site-a:db/);
      assert.doesNotMatch(targets, /site-a:wal/);
      // The daemon goes on: db takes writes and replicates.
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x31 0 8M', '-c', 'flush', p.a.uri('db')]);
      // (Not p.drained(): site-b's wal stays short of its first sync while site-a does not serve it.)
      await waitFor('db drained', async () => {
        const db = (await rows(p.a)).find((v) => v.name === 'db')!;
        return db.link === 'connected' && db.backlogBytes === 0;
      }, 60_000);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
      // site-b says where wal is missing; its replica is not promoted or touched.
      await waitFor('site-b names wal as missing at site-a', async () => {
        const wal = (await rows(p.b)).find((v) => v.name === 'wal');
        return /not in site-a's config/.test(wal?.peers[0]?.unavailable ?? '');
      }, 30_000);
      // The file is as the host left it; its state stays for a return.
      const expected = crypto.createHash('sha256').update(Buffer.concat([seed, Buffer.alloc(40 * MiB)])).digest('hex');
      assert.equal(sha(walA), expected);
      assert.ok(fs.existsSync(path.join(path.dirname(p.a.configFile), 'state', 'volumes', 'wal')));

      // Added back: served again, the first sync runs to its end, the replica is the primary's image.
      putBack(p.a.configFile, line);
      const back = await cli(p.a, 'reload');
      assert.equal(back.code, 0, back.stderr);
      assert.match(back.stdout, /volume wal: added; opening it/);
      await waitFor('wal served again', async () => (await rows(p.a)).some((v) => v.name === 'wal'), 30_000);
      // (It was let go mid first sync: the round resumes where it was.)
      assert.match(p.a.log, /volume wal: resync round from record \d+ resumes; [\d.]+ MiB left to send/);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x44 60M 1M', '-c', 'flush', p.a.uri('wal')]);
      await p.drained(120_000);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('wal'), p.b.uri('wal')]);

      // At the secondary, with a checkpoint held and a drill over it, while the primary writes:
      // site-a journals wal and says where it is missing.
      assert.equal((await cli(p.b, 'checkpoint', 'create', 'wal', '--hold', '1h')).code, 0);
      const drill = await cli(p.b, 'drill', 'start', 'wal');
      assert.equal(drill.code, 0, drill.stderr);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0xd1 0 1M', '-c', 'flush', p.b.uri('wal@drill')]);
      const lineB = dropWal(p.b.configFile);
      const atB = await cli(p.b, 'reload');
      assert.equal(atB.code, 0, atB.stderr);
      await waitFor('wal let go at site-b', async () => /volume wal: removed from the config and let go/.test(p.b.log), 30_000);
      assert.match(p.b.log, /\(64 MiB secondary\); \S+wal\.img, its receive log and its state in \S+ are kept/);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 4M 4M', '-c', 'flush', p.a.uri('wal')]);
      await waitFor('site-a names wal as missing at site-b', async () => {
        const wal = (await rows(p.a)).find((v) => v.name === 'wal');
        return /not in site-b's config/.test(wal?.peers[0]?.unavailable ?? '') && wal!.backlogBytes > 0;
      }, 30_000);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x32 8M 4M', '-c', 'flush', p.a.uri('db')]);
      await waitFor('db drained while wal waits', async () => {
        const db = (await rows(p.a)).find((v) => v.name === 'db')!;
        return db.link === 'connected' && db.backlogBytes === 0;
      }, 60_000);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
      assert.doesNotMatch((await must('nbdinfo', ['--list', `nbd://127.0.0.1:${p.b.port}`])), /export="wal/);
      putBack(p.b.configFile, lineB);
      assert.equal((await cli(p.b, 'reload')).code, 0);
      // Back: its checkpoint is held and served again (as after a restart); the drill ended with the let-go, as at a stop.
      await waitFor('wal served again at site-b', async () => (await rows(p.b)).some((v) => v.name === 'wal'), 30_000);
      const listB = await must('nbdinfo', ['--list', `nbd://127.0.0.1:${p.b.port}`]);
      assert.match(listB, /export="wal@checkpoint"/);
      assert.doesNotMatch(listB, /export="wal@drill"/);
      assert.equal((await cli(p.b, 'checkpoint', 'release', 'wal')).code, 0);
      await p.drained(120_000);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('wal'), p.b.uri('wal')]);
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
      assert.doesNotMatch(p.a.log + p.b.log, /unhandled|assertion/i);
    } finally {
      for (const c of held) c.kill();
      await p.stop();
    }
  });

interface Group { name: string; members: string[]; groupPoint: number | null; consistent: boolean }

async function groups(d: TestDaemon): Promise<Group[]> {
  return ((await statusOf(d)) as unknown as { groups?: Group[] }).groups ?? [];
}

/** Adds lines to a config file: volumes after the db line, and a groups: section at the end. */
function addGroup(file: string, volumes: string[], group: string): void {
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, `${text.replace(/^( {2}db: .*)$/m, `$1\n${volumes.join('\n')}`)}\ngroups:\n  ${group}\n`);
}

test('a consistency group comes with its new members at a reload and acts as one; dropped with them, it goes', async () => {
  const p = await startPair({ size: '32MiB', journal: '128MiB' });
  try {
    const before = { a: fs.readFileSync(p.a.configFile, 'utf8'), b: fs.readFileSync(p.b.configFile, 'utf8') };
    const member = (name: string, role: string, peer: string): string =>
      `  ${name}: { path: ./${name}.img, size: 32MiB, role: ${role}, peer: ${peer}, journal: 128MiB }`;
    addGroup(p.b.configFile, [member('logs', 'secondary', 'site-a'), member('idx', 'secondary', 'site-a')], 'erp: [logs, idx]');
    addGroup(p.a.configFile, [member('logs', 'primary', 'site-b'), member('idx', 'primary', 'site-b')], 'erp: [logs, idx]');
    for (const d of [p.b, p.a]) {
      const r = await cli(d, 'reload');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /consistency group erp: added with logs, idx/);
      assert.match(r.stdout, /volume logs: added; opening it/);
      assert.doesNotMatch(r.stdout, /takes a restart/);
    }
    await waitFor('both members served at both sites', async () =>
      (await rows(p.a)).length === 3 && (await rows(p.b)).length === 3, 30_000);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x61 0 4M', '-c', 'flush', p.a.uri('logs')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x62 0 4M', '-c', 'flush', p.a.uri('idx')]);
    await p.drained();
    // The group makes its points at site-a and stands at one at site-b; its actions act on both members.
    await waitFor('group points at both sites', async () => {
      const [ga, gb] = [(await groups(p.a))[0], (await groups(p.b))[0]];
      return (ga?.groupPoint ?? 0) > 0 && (gb?.groupPoint ?? 0) > 0 && gb!.consistent;
    }, 30_000);
    const alone = await cli(p.b, 'checkpoint', 'create', 'logs');
    assert.notEqual(alone.code, 0);
    assert.match(alone.stderr, /volume logs is in consistency group erp/);
    const cp = await cli(p.b, 'checkpoint', 'create', 'erp');
    assert.equal(cp.code, 0, cp.stderr);
    await must('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x61 0 4M', p.b.uri('logs@checkpoint')]);
    await must('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x62 0 4M', p.b.uri('idx@checkpoint')]);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'erp')).code, 0);

    // Dropped with its members: both let go, then the group.
    for (const [d, text] of [[p.a, before.a], [p.b, before.b]] as const) {
      fs.writeFileSync(d.configFile, text);
      const r = await cli(d, 'reload');
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /takes a restart/);
      await waitFor('the group gone', () => /group erp: removed from the config with its members/.test(d.log), 30_000);
      assert.deepEqual((await rows(d)).map((v) => v.name), ['db']);
      assert.deepEqual(await groups(d), []);
    }
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x63 0 1M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
  } finally {
    await p.stop();
  }
});
