// A volume added to a running pair (src/node/reloaded-volumes.ts, docs/CONFIG.md "Reloading"):
// - site-a's file gains `wal`; `offsite reload` there opens and serves it (qemu-io
//   writes it) while db goes on; site-b does not have wal yet, and the link is not
//   refused for it: db still replicates (qemu-img compare), wal waits, and both the
//   status JSON and `offsite status` say where it is missing;
// - site-b's file gains wal too; its reload opens it, the link is made again with it,
//   and wal's first sync and backlog reach site-b: both volumes compare equal;
// - site-b's db gains a checkpoint schedule at a reload, and takes its checkpoint;
// - a new site: site-a's file gains peer site-c and a volume paired with it; the reload
//   pins site-c, serves the volume and links to site-c, which gets its replica; site-c
//   re-keyed is refused until site-a's file pins its new fingerprint, and a reload does;
//   dropped with its volume, site-c's link goes and is not dialed again;
// - site-a's db journal filling while site-b is down is told past three quarters, with what to
//   do; grown at a reload: what would have overflowed
//   into the dirty bitmap stays journaled, in order; shrinking below what it holds is
//   refused and said; site-b back, it drains and compares equal;
// - a reload that moves a volume's file, or adds one on a served volume's file, says what waits
//   (one that drops a volume lets it go: test/integration/volume-remove.test.ts).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { OFFSITE_BIN, TestDaemon, freePort, statusOf } from '../helpers/daemon.js';
import { cli } from '../helpers/cli.js';
import { startPair } from '../helpers/pair.js';
import { must, tempDir, waitFor } from '../helpers/run.js';

/** Adds keys to volume db's inline entry in a config file. */
function dbKeys(file: string, keys: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const next = text.replace(/^( {2}db: \{.*)( \})$/m, `$1, ${keys}$2`);
  assert.notEqual(next, text, `no db line in ${file}`);
  fs.writeFileSync(file, next);
}

/** Adds a line under `volumes:` of a config file (after the db line the pair helper wrote). */
function addVolume(file: string, line: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const next = text.replace(/^( {2}db: .*)$/m, `$1\n  ${line}`);
  assert.notEqual(next, text, `no db line in ${file}`);
  fs.writeFileSync(file, next);
}

test('a volume added at a reload is served at once, waits for the peer that lacks it without stopping the others, then replicates', async () => {
  const p = await startPair({ size: '32MiB', journal: '128MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();

    // (The link comes up once and stays: each site's new volume pairs by a VolumeHello, protocol 3, db never stopping.)
    const linkUps = (): number[] => [p.a.log.match(/link to site-b up/g)?.length ?? 0, p.b.log.match(/link to site-a up/g)?.length ?? 0];
    assert.deepEqual(linkUps(), [1, 1]);
    addVolume(p.a.configFile, 'wal: { path: ./wal.img, size: 32MiB, role: primary, peer: site-b, journal: 128MiB }');
    const said = await cli(p.a, 'reload');
    assert.equal(said.code, 0, said.stderr);
    assert.match(said.stdout, /config reloaded: .*volume wal: added; opening it/);
    await waitFor('wal served at site-a', async () => (await statusOf(p.a)).volumes.some((v) => v.name === 'wal'), 30_000);
    assert.match(p.a.log, /volume wal: added at a reload; served as primary \(32 MiB\)/);
    assert.match(p.a.log, /volume wal: 32 MiB read-write at nbd:\/\/127\.0\.0\.1:\d+\/wal/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 8M', '-c', 'write -P 0x23 16M 1M', '-c', 'flush', p.a.uri('wal')]);
    // site-b lacks wal: the link comes up for db (not refused), wal is listed as missing there.
    await waitFor('site-b named as lacking wal', async () => {
      const wal = (await statusOf(p.a)).volumes.find((v) => v.name === 'wal') as { peers: Array<{ unavailable?: string | null }> } | undefined;
      return /not in site-b's config/.test(wal?.peers[0]?.unavailable ?? '');
    }, 30_000);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x12 4M 4M', '-c', 'flush', p.a.uri('db')]);
    await waitFor('db drained while wal waits', async () => {
      const db = (await statusOf(p.a)).volumes.find((v) => v.name === 'db')!;
      return db.link === 'connected' && db.backlogBytes === 0;
    }, 60_000);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
    const wal = (await statusOf(p.a)).volumes.find((v) => v.name === 'wal')!;
    assert.ok(wal.backlogBytes > 0, 'wal keeps its backlog for site-b');
    const text = await cli(p.a, 'status');
    assert.match(text.stdout,
      /volume wal NOT OPEN ON site-b: not in site-b's config as a volume paired with this node \(add it there, then `offsite reload` on site-b\)/);
    assert.match(p.a.log, /volume wal: not in site-b's config [^\n]*; the link serves the other volumes, and nothing of wal flows until site-b has it/);

    addVolume(p.b.configFile, 'wal: { path: ./wal.img, size: 32MiB, role: secondary, peer: site-a, journal: 128MiB }');
    const atB = await cli(p.b, 'reload');
    assert.equal(atB.code, 0, atB.stderr);
    assert.match(atB.stdout, /volume wal: added; opening it/);
    await p.drained();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('wal'), p.b.uri('wal')]);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
    assert.deepEqual(linkUps(), [1, 1], 'wal paired on the link that stayed up');
    assert.match(p.a.log, /volume wal: paired with site-b again/);
    const walAtA = (await statusOf(p.a)).volumes.find((v) => v.name === 'wal') as { peers: Array<{ unavailable?: string | null }> };
    assert.equal(walAtA.peers[0]!.unavailable ?? null, null);

    // A served volume's checkpoint schedule changes in place: site-b's db takes its first scheduled checkpoint, no restart.
    dbKeys(p.b.configFile, 'checkpoints: [{ cron: "*/2 * * * * *", hold: 1h, label: live }]');
    const sched = await cli(p.b, 'reload');
    assert.equal(sched.code, 0, sched.stderr);
    assert.match(sched.stdout, /volume db: checkpoint schedule now "live" \(\*\/2 \* \* \* \* \*\)/);
    assert.doesNotMatch(sched.stdout, /takes a restart/);
    await waitFor('the scheduled checkpoint at site-b', async () => {
      const db = (await statusOf(p.b)).volumes.find((v) => v.name === 'db') as { checkpoint: { label: string } | null } | undefined;
      return db?.checkpoint?.label === 'live';
    }, 30_000);

    // What is refused is said: a served volume's new file that does not exist, a new one on a served volume's file.
    const before = fs.readFileSync(p.a.configFile, 'utf8');
    // (db moved to a file that is not there, so it stays where it is; the new one names db's file, which db still serves from.)
    fs.writeFileSync(p.a.configFile, before.replace(/^ {2}wal: .*$/m, '  logs: { path: ./db.img, size: 32MiB, role: primary }')
      .replace('path: ./db.img, size: 32MiB, role: primary, peer', 'path: ./db2.img, size: 32MiB, role: primary, peer'));
    const third = await cli(p.a, 'reload');
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stdout, /volume wal: gone from the config; letting it go/);
    assert.match(third.stdout, /volume logs: \S+db\.img is the file of volume db, served here: not added/);
    assert.match(third.stdout, /volume db: \S+db2\.img: no such file: not reopened \(it is served from \S+db\.img as it was\)/);
    await waitFor('wal let go', async () => (await statusOf(p.a)).volumes.map((v) => v.name).join() === 'db', 30_000);
    // A file that does not parse is refused, and says where.
    fs.writeFileSync(p.a.configFile, `${before}\n  bad: [\n`);
    const broken = await cli(p.a, 'reload');
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /offsite\.yaml:\d+/);
  } finally {
    await p.stop();
  }
});

test('a new site at a reload: its peer entry and a volume paired with it are added at site-a, which links to it without a restart', async () => {
  const p = await startPair({ size: '32MiB', journal: '128MiB' });
  let c: TestDaemon | null = null;
  try {
    const textA = fs.readFileSync(p.a.configFile, 'utf8');
    const linkA = /^link: (\S+)$/m.exec(textA)![1]!;
    const fingerprintOf = async (d: TestDaemon): Promise<string> =>
      (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!;
    const linkC = await freePort();
    const dirC = tempDir('site-c');
    const fa = await fingerprintOf(p.a);
    const site = await TestDaemon.create({
      dir: dirC, node: 'site-c', noStart: true,
      yaml: (ports) => `node: site-c
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${linkC}
api: 127.0.0.1:${ports.api}
peers:
  site-a: { address: "${linkA}", fingerprint: "${fa}" }
volumes:
  logs: { path: ./logs.img, size: 32MiB, role: secondary, peer: site-a, journal: 128MiB }
`,
    });
    c = site;
    const fc = await fingerprintOf(site);
    await site.start();
    fs.writeFileSync(p.a.configFile, textA
      .replace(/^peers:\n/m, `peers:\n  site-c: { address: "127.0.0.1:${linkC}", fingerprint: "${fc}" }\n`)
      .replace(/^( {2}db: .*)$/m, '$1\n  logs: { path: ./logs.img, size: 32MiB, role: primary, peer: site-c, journal: 128MiB }'));
    const r = await cli(p.a, 'reload');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /peer site-c: added \(at 127\.0\.0\.1:\d+\)/);
    assert.match(r.stdout, /volume logs: added; opening it/);
    assert.doesNotMatch(r.stdout, /takes a restart/);
    await waitFor('logs served at site-a', async () => (await statusOf(p.a)).volumes.some((v) => v.name === 'logs'), 30_000);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x71 0 6M', '-c', 'flush', p.a.uri('logs')]);
    await waitFor('logs replicated to site-c', async () => {
      const logs = (await statusOf(p.a)).volumes.find((v) => v.name === 'logs')!;
      const atC = (await statusOf(site)).volumes.find((v) => v.name === 'logs')!;
      return logs.link === 'connected' && logs.backlogBytes === 0 && !logs.resyncing && atC.consistent;
    }, 60_000);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('logs'), site.uri('logs')]);
    // site-c re-keyed (`offsite init` after its key was lost): site-a refuses it until its file pins the new fingerprint; a reload does.
    await site.stop();
    for (const f of ['node.key', 'node.crt']) fs.rmSync(path.join(dirC, 'state', f));
    const fc2 = await fingerprintOf(site);
    assert.notEqual(fc2, fc);
    await site.start();
    await waitFor('site-a refuses the new key', () => /is not site-c: its certificate is \S+, the config pins/.test(p.a.log), 30_000);
    fs.writeFileSync(p.a.configFile, fs.readFileSync(p.a.configFile, 'utf8').replace(fc, fc2));
    const rekeyed = await cli(p.a, 'reload');
    assert.equal(rekeyed.code, 0, rekeyed.stderr);
    assert.match(rekeyed.stdout, /peer site-c: fingerprint; its link is made again/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x73 8M 2M', '-c', 'flush', p.a.uri('logs')]);
    await waitFor('logs replicated to site-c again', async () => {
      const logs = (await statusOf(p.a)).volumes.find((v) => v.name === 'logs')!;
      return logs.link === 'connected' && logs.backlogBytes === 0 && !logs.resyncing;
    }, 60_000);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('logs'), site.uri('logs')]);
    // site-c retired: dropped from site-a's file with its volume; the link goes, and is not dialed again.
    fs.writeFileSync(p.a.configFile, textA);
    const dropped = await cli(p.a, 'reload');
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.match(dropped.stdout, /peer site-c: dropped \(its link closes once no volume here pairs with it\)/);
    assert.match(dropped.stdout, /volume logs: gone from the config; letting it go/);
    await waitFor('site-c dropped at site-a', () => /peer site-c: removed from the config; no link to it any more/.test(p.a.log), 30_000);
    const mark = p.a.log.length;
    await new Promise((r) => setTimeout(r, 3000));
    assert.doesNotMatch(p.a.log.slice(mark), /link to site-c (up|at )/, 'site-a dials site-c no more');
    assert.deepEqual((await statusOf(p.a)).volumes.map((v) => v.name), ['db']);
    // The pair's link went on: db still replicates.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x72 0 2M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
  } finally {
    await c?.stop();
    await p.stop();
  }
});

test('history turned on and off at a reload of the secondary: points from then on, a checkpoint at one; off, its files go', async () => {
  const p = await startPair({ size: '32MiB', journal: '128MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    const plain = fs.readFileSync(p.b.configFile, 'utf8');
    dbKeys(p.b.configFile, 'history: { keep: 1h, max: 256MiB }');
    const on = await cli(p.b, 'reload');
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stdout, /volume db: history turned on/);
    assert.doesNotMatch(on.stdout, /takes a restart|next start/);
    await waitFor('history on', () => /volume db: history on; its restore points begin/.test(p.b.log), 15_000);
    // Flush points from here on are restore points; the one before the "damage" opens to the image then.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    await new Promise((r) => setTimeout(r, 1100));
    const before = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1100));
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    const listed = await cli(p.b, 'history', 'db');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^db: \d+ restore points/m);
    const cp = await cli(p.b, 'checkpoint', 'create', 'db', '--at', before);
    assert.equal(cp.code, 0, cp.stderr);
    await must('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x22 0 4M', p.b.uri('db@checkpoint')]);
    // Off while that checkpoint reads from the history: it stays, and the reload says why.
    fs.writeFileSync(p.b.configFile, plain);
    const held = await cli(p.b, 'reload');
    assert.match(held.stdout, /volume db: history stays on: checkpoint "\S+" holds a past point; release it, then reload/);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'db')).code, 0);
    const off = await cli(p.b, 'reload');
    assert.match(off.stdout, /volume db: history turned off \(its restore points go\)/);
    await waitFor('history off', () => /volume db: history off; its restore points and files are removed/.test(p.b.log), 15_000);
    const gone = await cli(p.b, 'history', 'db');
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /keeps no history/);
    assert.deepEqual(fs.readdirSync(path.join(p.b.dir, 'state', 'volumes', 'db')).filter((f) => /^history\.\d/.test(f)), []);
    // The replica went on through both: it is the primary's image.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x44 4M 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
  } finally {
    await p.stop();
  }
});

test('the journal grown at a reload during an outage: writes that would have overflowed stay journaled; shrunk below what it holds, it stays', async () => {
  const p = await startPair({ size: '64MiB', journal: '16MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 2M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    await p.b.stop();
    const db = async () => (await statusOf(p.a)).volumes.find((v) => v.name === 'db')!;
    const writes = (from: number, count: number, pattern: number): string[] =>
      Array.from({ length: count }, (_, i) => ['-c', `write -P ${pattern} ${from + i}M 1M`]).flat().concat(['-c', 'flush']);
    await must('qemu-io', ['-f', 'raw', ...writes(4, 13, 0x42), p.a.uri('db')]);
    assert.equal((await db()).tracking, 'journal');
    // Past three quarters of it, the log says so before it overflows, and what to do.
    const told = /volume db: journal \d+(\.\d)? MiB of 16 MiB \(\d+%\); site-b: link down, \d+ s behind\. Full, it overflows/;
    await waitFor('the journal\'s filling told', () => told.test(p.a.log), 10_000)
      .catch((e: Error) => assert.fail(`${e.message}: ${p.a.log.split('\n').filter((l) => /journal/.test(l)).join('\n')}`));
    const text = fs.readFileSync(p.a.configFile, 'utf8');
    fs.writeFileSync(p.a.configFile, text.replace('journal: 16MiB', 'journal: 64MiB'));
    const grown = await cli(p.a, 'reload');
    assert.equal(grown.code, 0, grown.stderr);
    assert.match(grown.stdout, /volume db: journal 64 MiB \(was 16 MiB\)/);
    assert.doesNotMatch(grown.stdout, /takes a restart/);
    // 37 MiB journaled in all: more than the 16 MiB the journal had.
    await must('qemu-io', ['-f', 'raw', ...writes(20, 24, 0x43), p.a.uri('db')]);
    const after = await db();
    assert.deepEqual([after.tracking, after.journalCapacityBytes], ['journal', 64 * 1024 * 1024], 'still journaled, in order');
    assert.ok(after.journalUsedBytes > 37 * 1024 * 1024, `${after.journalUsedBytes} bytes journaled`);
    // Smaller than what it holds: it stays, and the reload says so.
    fs.writeFileSync(p.a.configFile, text.replace('journal: 16MiB', 'journal: 8MiB'));
    const shrunk = await cli(p.a, 'reload');
    assert.match(shrunk.stdout, /volume db: journal stays 64 MiB: it holds \S+ MiB now; one of 8\.0 MiB is taken once it holds less/);
    assert.equal((await db()).journalCapacityBytes, 64 * 1024 * 1024);
    await p.b.start();
    await p.drained();
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
    assert.doesNotMatch(p.a.log, /journal full/);
  } finally {
    await p.stop();
  }
});
