// A consistency group under PostgreSQL (docs/GROUPS.md): the data directory on volume
// db, pg_wal on volume wal (a symlink, initdb --waldir), both in group erp, pgbench
// running at site-a.
//
// 1. With the group: `offsite checkpoint create erp` at site-b freezes both members at
//    one group point; both images are copied (nbdcopy of db@checkpoint and
//    wal@checkpoint), pg_wal on the db copy is pointed at the wal copy, and PostgreSQL
//    starts on them: it must complete crash recovery, keep pgbench's balance invariant
//    and pass pg_amcheck. A checkpoint of one member alone is refused, naming the group.
// 2. Without the group (site-b restarted with no `groups:`, as a node without the feature
//    would run): a checkpoint of wal, then a PostgreSQL CHECKPOINT at site-a, then a
//    checkpoint of db, as an operator would take them one after the other. The two
//    images come from different moments: the test prints how far apart (the checkpoints'
//    times and records, and PostgreSQL's own view: the db image's control file names a
//    checkpoint the wal image does not hold), and PostgreSQL cannot recover from them.
// 3. Failover of the group: site-b with the group again, site-a killed (-9) with its
//    PostgreSQL, `offsite promote erp` (a member alone is refused): both members are
//    promoted at one group point, and PostgreSQL recovers on them with the invariant.
//
// Root only: skipped, saying so, otherwise.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { FuseLoop } from '../helpers/ext4.js';
import { freePort, statusOf } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep, tempDir } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';
import { PgInstance, initdb, loopAttach, requirePg, teardownFuse, within } from '../helpers/postgres.js';

const NOT_ROOT = process.getuid?.() !== 0 ? 'needs root (losetup, mount, postgres run as its own user); CI runs as root' : false;
const SCALE = 2;

/** pgbench's invariant: each transaction moved one delta through accounts, tellers, branches and history. */
async function bank(pg: PgInstance, where: string): Promise<{ history: bigint; rows: number }> {
  const row = await pg.sql(`SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)`);
  const f = row.split('|');
  assert.equal(f.length, 5, `${where}: the balance query answered ${JSON.stringify(row)}`);
  const [a, t, b, h] = f.slice(0, 4).map((x) => BigInt(x));
  const seen = `sum(abalance) ${a}, sum(tbalance) ${t}, sum(bbalance) ${b}, sum(delta) ${h} over ${f[4]} history rows`;
  assert.equal(a, h, `${where}: balance invariant broken (${seen})`);
  assert.equal(t, h, `${where}: balance invariant broken (${seen})`);
  assert.equal(b, h, `${where}: balance invariant broken (${seen})`);
  return { history: h!, rows: Number(f[4]) };
}

/** The copies of both members mounted, pg_wal pointed at the wal copy, PostgreSQL started (or its failure). */
async function startOnCopies(
  work: string,
  tag: string,
  dbCopy: string,
  walCopy: string,
  undo: Array<() => Promise<unknown>>,
): Promise<{ pg: PgInstance | null; error: string }> {
  const mdb = path.join(work, `mnt-${tag}-db`);
  const mwal = path.join(work, `mnt-${tag}-wal`);
  fs.mkdirSync(mdb);
  fs.mkdirSync(mwal);
  for (const [copy, mnt] of [[dbCopy, mdb], [walCopy, mwal]] as const) {
    const loop = await loopAttach(copy);
    undo.push(async () => {
      await run('umount', [mnt]);
      await run('losetup', ['-d', loop]);
      fs.rmSync(copy, { force: true });
    });
    const m = await run('mount', [loop, mnt]);
    assert.equal(m.code, 0, `${tag}: the copy's ext4 (${path.basename(copy)}) does not mount: ${m.stderr.trim()}`);
  }
  const data = path.join(mdb, 'pgdata');
  // pg_wal is a symlink to the log volume's mount: on the DR host it names where that copy is mounted.
  fs.rmSync(path.join(data, 'pg_wal'));
  fs.symlinkSync(path.join(mwal, 'pg_wal'), path.join(data, 'pg_wal'));
  fs.rmSync(path.join(data, 'postmaster.pid'), { force: true });
  try {
    const pg = await PgInstance.start({ dataDir: data, port: await freePort(), socketDir: path.join(work, `sock-${tag}`), readyTimeoutMs: 120_000 });
    undo.push(() => pg.stop());
    return { pg, error: '' };
  } catch (e) {
    return { pg: null, error: (e as Error).message };
  }
}

test('PostgreSQL with PGDATA and pg_wal on two volumes: a group checkpoint recovers and keeps the balance invariant; ' +
  'checkpoints one after the other do not', { skip: NOT_ROOT, timeout: 420_000 }, async (t: TestContext) => {
  const bin = requirePg();
  const t0 = Date.now();
  const note = (s: string): void => t.diagnostic(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);
  const work = tempDir('pg-group');
  fs.chmodSync(work, 0o755);
  const wal = (peer: string, role: string): string =>
    `  wal: { path: ./wal.img, size: 256MiB, role: ${role}, peer: ${peer}, journal: 1GiB }\ngroups:\n  erp: [db, wal]\n`;
  const p = await startPair({ size: '384MiB', nodeKeysA: wal('site-b', 'primary'), nodeKeysB: wal('site-a', 'secondary') });
  const undo: Array<() => Promise<unknown>> = [];
  let load: ChildProcess | null = null;
  let loadOut = '';
  let pgA: PgInstance | null = null;
  const fuses: Array<{ fl: FuseLoop; dir: string; mnt: string }> = [];
  try {
    await p.drained(180_000);
    note('pair drained: db and wal first-synced');

    // --- site-a: ext4 on both members, the cluster with pg_wal on wal, pgbench ---------
    const mounts: Record<string, string> = {};
    for (const v of ['db', 'wal']) {
      const dir = path.join(p.a.dir, `fuse-${v}`);
      fs.mkdirSync(dir);
      const mnt = path.join(work, `mnt-a-${v}`);
      fs.mkdirSync(mnt);
      const fl = await FuseLoop.attach(p.a.uri(v), dir);
      fuses.push({ fl, dir, mnt });
      await must('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', fl.loop]);
      await must('mount', [fl.loop, mnt]);
      mounts[v] = mnt;
    }
    const dataA = path.join(mounts.db!, 'pgdata');
    await initdb(dataA, { waldir: path.join(mounts.wal!, 'pg_wal') });
    assert.ok(fs.lstatSync(path.join(dataA, 'pg_wal')).isSymbolicLink(), 'initdb --waldir made no pg_wal symlink');
    pgA = await PgInstance.start({ dataDir: dataA, port: await freePort(), socketDir: path.join(work, 'sock-a') });
    const init = await run(path.join(bin, 'pgbench'), [...pgA.conn(), '-i', '-q', '-s', String(SCALE), 'postgres'], { timeoutMs: 180_000 });
    assert.equal(init.code, 0, `pgbench -i on site-a exited ${init.code}: ${init.stderr.slice(-2000)}`);
    load = spawn(path.join(bin, 'pgbench'), [...pgA.conn(), '-n', '-c', '4', '-j', '2', '-T', '900', '-P', '5', 'postgres'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    load.stdout!.on('data', (b: Buffer) => (loadOut += b.toString()));
    load.stderr!.on('data', (b: Buffer) => (loadOut += b.toString()));
    for (let i = 0; i < 150 && Number(await pgA.sql('SELECT count(*) FROM pgbench_history')) < 2000; i++) await sleep(200);
    assert.equal(load.exitCode, null, `pgbench exited early: ${loadOut.slice(-2000)}`);
    note(`site-a: PGDATA on db, pg_wal on wal; pgbench -s ${SCALE} -c 4 running`);

    // --- 1. with the group ---------------------------------------------------------------
    const one = await cli(p.b, 'checkpoint', 'create', 'db');
    assert.notEqual(one.code, 0, `a checkpoint of one member of a group was taken: ${one.stdout}`);
    assert.match(one.stderr + one.stdout, /volume db is in consistency group erp .*offsite checkpoint create erp/,
      `the refusal does not name the group: ${one.stderr}${one.stdout}`);
    const groupSt = (await cli(p.b, 'status')).stdout.split('\n').find((l) => l.startsWith('group erp'));
    note(`site-b before the group checkpoint: ${groupSt ?? '(no group line)'}`);
    const made = await cli(p.b, 'checkpoint', 'create', 'erp', '--label', 'group');
    assert.equal(made.code, 0, `checkpoint create erp refused under load: ${made.stderr.trim()} ${made.stdout.trim()}`);
    assert.match(made.stdout, /checkpoint "group" of group erp held at group point \d+ \(db at record \d+, wal at record \d+\)/, made.stdout);
    note(`group checkpoint: ${made.stdout.trim()}`);
    const g1 = { db: path.join(work, 'g-db.img'), wal: path.join(work, 'g-wal.img') };
    for (const v of ['db', 'wal'] as const) {
      const c = await run('nbdcopy', [p.b.uri(`${v}@checkpoint`), g1[v]]);
      assert.equal(c.code, 0, `nbdcopy of ${v}@checkpoint: ${c.stderr.trim()}`);
    }
    const rel = await cli(p.b, 'checkpoint', 'release', 'erp');
    assert.equal(rel.code, 0, `checkpoint release erp: ${rel.stderr.trim()}`);
    const grouped = await startOnCopies(work, 'group', g1.db, g1.wal, undo);
    assert.ok(grouped.pg, `PostgreSQL did not start on the group checkpoint's images:\n${grouped.error}`);
    assert.match(grouped.pg.log, /automatic recovery in progress/, `no crash recovery on the group checkpoint:\n${grouped.pg.log.slice(-3000)}`);
    assert.match(grouped.pg.log, /redo done at|redo is not required/, `crash recovery did not finish:\n${grouped.pg.log.slice(-3000)}`);
    const b1 = await bank(grouped.pg, 'group checkpoint');
    const am = await run(path.join(bin, 'pg_amcheck'), [...grouped.pg.conn(), '-d', 'postgres', '--install-missing'], { timeoutMs: 120_000 });
    assert.equal(am.code, 0, `pg_amcheck on the group checkpoint: ${(am.stdout + am.stderr).slice(0, 3000)}`);
    note(`group checkpoint: PostgreSQL recovered; ${b1.rows} history rows, balances all ${b1.history}; pg_amcheck clean`);
    await grouped.pg.stop();

    // --- 2. without the group: site-b restarted with no groups: -------------------------
    await p.b.stop();
    fs.writeFileSync(p.b.configFile, fs.readFileSync(p.b.configFile, 'utf8').replace(/groups:\n {2}erp: \[db, wal\]\n/, ''));
    await p.b.start();
    for (let i = 0; i < 300; i++) {
      const s = await statusOf(p.b);
      if (s.volumes.every((v) => v.link === 'connected' && v.consistent)) break;
      await sleep(100);
    }
    await sleep(2000);
    const walCp = await cli(p.b, 'checkpoint', 'create', 'wal', '--label', 'alone');
    assert.equal(walCp.code, 0, `checkpoint create wal (no group): ${walCp.stderr}`);
    const walAt = Date.now();
    // What an operator's two commands leave between them: here, PostgreSQL checkpoints.
    await pgA.sql('CHECKPOINT');
    await sleep(3000);
    const dbCp = await cli(p.b, 'checkpoint', 'create', 'db', '--label', 'alone');
    assert.equal(dbCp.code, 0, `checkpoint create db (no group): ${dbCp.stderr}`);
    const dbAt = Date.now();
    const g2 = { db: path.join(work, 'a-db.img'), wal: path.join(work, 'a-wal.img') };
    for (const v of ['db', 'wal'] as const) {
      const c = await run('nbdcopy', [p.b.uri(`${v}@checkpoint`), g2[v]]);
      assert.equal(c.code, 0, `nbdcopy of ${v}@checkpoint: ${c.stderr.trim()}`);
    }
    for (const v of ['db', 'wal']) await cli(p.b, 'checkpoint', 'release', v);
    note(`without the group: ${walCp.stdout.trim()}; ${dbCp.stdout.trim()}; taken ${dbAt - walAt} ms apart`);
    // PostgreSQL's own view of the two moments: the db image's control file and the wal image's end.
    const alone = await startOnCopies(work, 'alone', g2.db, g2.wal, undo);
    const controlData = await run(path.join(bin, 'pg_controldata'), [path.join(work, 'mnt-alone-db', 'pgdata')]);
    const redo = /Latest checkpoint's REDO location:\s*(\S+)/.exec(controlData.stdout)?.[1] ?? '?';
    const walFiles = fs.readdirSync(path.join(work, 'mnt-alone-wal', 'pg_wal')).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort();
    if (alone.pg) {
      let outcome: string;
      try {
        const b2 = await bank(alone.pg, 'members from different moments');
        outcome = `started, and the balance invariant held by chance (${b2.rows} history rows): the images still came from moments ${dbAt - walAt} ms apart`;
      } catch (e) {
        outcome = `started, but ${(e as Error).message}`;
      }
      note(`without the group: PostgreSQL ${outcome}; db image's checkpoint REDO at ${redo}, wal image's newest segment ${walFiles.at(-1)}`);
    } else {
      note("without the group: PostgreSQL did not recover (db image's checkpoint REDO at " +
        `${redo}, newer than the wal image holds: its newest segment is ${walFiles.at(-1)}): ` +
        `${alone.error.split('\n').filter((l) => /PANIC|FATAL|LOG: {2}invalid|could not/.test(l)).slice(0, 4).join(' | ')}`);
      assert.match(alone.error, /checkpoint record|invalid|could not/i,
        `PostgreSQL failed on the mixed images, but not as expected:\n${alone.error.slice(-2000)}`);
    }
    await alone.pg?.stop().catch(() => undefined);

    // --- 3. failover of the group: site-b with the group again, site-a lost, promote erp --
    await p.b.stop();
    fs.writeFileSync(p.b.configFile, `${fs.readFileSync(p.b.configFile, 'utf8')}groups:\n  erp: [db, wal]\n`);
    await p.b.start();
    let together = '';
    for (let i = 0; i < 300; i++) {
      const st = await cli(p.b, 'status', '--json');
      const g = (JSON.parse(st.stdout) as {
        groups?: Array<{ name: string; consistent: boolean; together: boolean; groupPoint: number | null }>;
      }).groups?.find((x) => x.name === 'erp');
      if (g?.consistent) {
        together = JSON.stringify(g);
        break;
      }
      await sleep(100);
    }
    assert.ok(together, 'site-b never showed group erp consistent after its restart');
    await sleep(2000);
    await p.a.kill9();
    await pgA.kill9(); // the whole site is lost
    pgA = null;
    load?.kill('SIGKILL');
    for (let i = 0; i < 300 && (await statusOf(p.b)).volumes.some((v) => v.link === 'connected'); i++) await sleep(100);
    const single = await cli(p.b, 'promote', 'wal');
    assert.notEqual(single.code, 0, `a member of a group was promoted alone: ${single.stdout}`);
    const promoted = await cli(p.b, 'promote', 'erp');
    assert.equal(promoted.code, 0, `promote erp refused: ${promoted.stderr.trim()} ${promoted.stdout.trim()}`);
    assert.match(promoted.stdout,
      /group erp promoted: db, wal primary on this node, read-write, at group point \d+: db up to record \d+.*, wal up to record \d+/, promoted.stdout);
    note(`site-a lost; ${promoted.stdout.trim()}`);
    const mountsB: Record<string, string> = {};
    for (const v of ['db', 'wal']) {
      const dir = path.join(p.b.dir, `fuse-${v}`);
      fs.mkdirSync(dir);
      const mnt = path.join(work, `mnt-b-${v}`);
      fs.mkdirSync(mnt);
      const fl = await FuseLoop.attach(p.b.uri(v), dir);
      fuses.push({ fl, dir, mnt });
      const m = await run('mount', [fl.loop, mnt]);
      assert.equal(m.code, 0, `the promoted ${v}'s ext4 does not mount: ${m.stderr.trim()}`);
      mountsB[v] = mnt;
    }
    const dataB = path.join(mountsB.db!, 'pgdata');
    fs.rmSync(path.join(dataB, 'pg_wal'));
    fs.symlinkSync(path.join(mountsB.wal!, 'pg_wal'), path.join(dataB, 'pg_wal'));
    fs.rmSync(path.join(dataB, 'postmaster.pid'), { force: true });
    const pgB = await PgInstance.start({ dataDir: dataB, port: await freePort(), socketDir: path.join(work, 'sock-b') });
    undo.push(() => pgB.stop());
    assert.match(pgB.log, /redo done at|redo is not required/, `promoted: crash recovery did not finish:\n${pgB.log.slice(-3000)}`);
    const b3 = await bank(pgB, 'promoted group');
    assert.ok(b3.rows >= b1.rows, `promoted: ${b3.rows} history rows, fewer than the group checkpoint's ${b1.rows}`);
    await pgB.sql("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now())");
    note(`promoted group: PostgreSQL recovered on db and wal at site-b; ${b3.rows} history rows, balances all ${b3.history}; it takes writes`);
    await pgB.stop();
    note(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    const lines = loadOut.split('\n');
    note(`pgbench: ${[...lines.filter((l) => /^progress/.test(l)).slice(-2), ...lines.filter((l) => /error|abort/i.test(l)).slice(0, 3)].join(' | ')}`);
    if (load && load.exitCode === null && load.signalCode === null) {
      load.kill('SIGKILL');
      await within(new Promise((r) => load!.once('exit', r)), 5000);
    }
    for (const u of undo.reverse()) await u().catch(() => undefined);
    await pgA?.kill9().catch(() => undefined);
    for (const f of fuses.reverse()) for (const n of await teardownFuse(f.fl, f.dir, f.mnt)) note(`cleanup: ${n}`);
    for (const [site, d] of [['site-a', p.a], ['site-b', p.b]] as const) {
      const warnings = d.log.split('\n').filter((l) => /"level":(40|50|60)/.test(l));
      if (warnings.length > 0) note(`${site}: ${warnings.length} warnings/errors logged, the last: ${warnings.slice(-4).join('\n')}`);
    }
    await p.stop();
    const stillMounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(work));
    if (stillMounted.length === 0) fs.rmSync(work, { recursive: true, force: true });
    else note(`left ${work}: still mounted: ${stillMounted.join('; ')}`);
  }
});
