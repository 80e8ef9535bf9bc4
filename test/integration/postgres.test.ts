// PostgreSQL as the oracle of crash consistency. A database that completes crash
// recovery on an image and keeps its invariants is the strongest check there is that
// the image is one the primary's disk really held at a flush point.
//
// site-a's export carries ext4 (nbdfuse + losetup + mount, as the ext4 tests do) and
// a PostgreSQL cluster under `pgbench -c 4`; a marker row is committed every 200 ms
// (synchronous_commit on) and the test keeps the time each was acknowledged.
//
// 1. Three checkpoints on site-b while the load runs. Each checkpoint's image is
//    copied (nbdcopy of db@checkpoint) and PostgreSQL is started on the copy: it must
//    complete crash recovery, pgbench's balance invariant must hold (accounts,
//    tellers and branches each sum to the history's deltas), history grows from one
//    checkpoint to the next, the marker committed before the checkpoint was asked for
//    is there, and the markers there are a prefix of those acknowledged (a point in
//    time, no holes).
// 2. Failover under load: site-a's daemon is killed (-9) with site-a's PostgreSQL
//    (the site is lost), site-b is promoted, PostgreSQL starts on the promoted export:
//    crash recovery, the invariant, and the loss is what site-a's lagSeconds said just
//    before the kill, within 2 s: every marker acknowledged more than lag + 2 s
//    before the kill is there, and the newest marker there is at most lag + 2 s older
//    than the newest acknowledged before the kill (and not much newer than the lag
//    says, either). Promote's answer counts only the records it discarded from its
//    own receive log (after the last flush point), not what never reached site-b, so
//    the loss is measured with the markers; its answer is printed beside them.
//
// Root only: skipped, saying so, otherwise. The copies' postmaster.pid is removed
// before starting: it names site-a's postmaster, which on this one machine is alive
// (on a real DR host it would not exist, and PostgreSQL would take over the stale file).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { FuseLoop } from '../helpers/ext4.js';
import { freePort, statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep, tempDir } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';
import { Cleanups, PgInstance, initdb, loopAttach, requirePg, teardownFuse, within } from '../helpers/postgres.js';

const NOT_ROOT = process.getuid?.() !== 0 ? 'needs root (losetup, mount, postgres run as its own user); CI runs as root' : false;
const SCALE = 4;
const CHECKPOINTS = 3;

interface Tick { id: number; atMs: number; sentAt: number; ackAt: number }
interface Bank { accounts: bigint; tellers: bigint; branches: bigint; history: bigint; historyRows: number; accountRows: number }

/** pgbench's invariant on an image: each transaction moved one delta through accounts, tellers, branches and history. */
async function bank(pg: PgInstance, where: string): Promise<Bank> {
  const row = await pg.sql(`SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
    (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts)`);
  const f = row.split('|');
  assert.equal(f.length, 6, `${where}: the balance query answered ${JSON.stringify(row)}`);
  const b: Bank = {
    accounts: BigInt(f[0]!), tellers: BigInt(f[1]!), branches: BigInt(f[2]!), history: BigInt(f[3]!),
    historyRows: Number(f[4]), accountRows: Number(f[5]),
  };
  const seen = `sum(abalance) ${b.accounts}, sum(tbalance) ${b.tellers}, sum(bbalance) ${b.branches}, ` +
    `sum(delta) ${b.history} over ${b.historyRows} history rows`;
  assert.equal(b.accountRows, SCALE * 100_000, `${where}: pgbench_accounts has ${b.accountRows} rows, not ${SCALE * 100_000}`);
  assert.equal(b.accounts, b.history, `${where}: balance invariant broken: accounts do not sum to the history (${seen})`);
  assert.equal(b.tellers, b.history, `${where}: balance invariant broken: tellers do not sum to the history (${seen})`);
  assert.equal(b.branches, b.history, `${where}: balance invariant broken: branches do not sum to the history (${seen})`);
  return b;
}

/** pg_amcheck: heap pages and btree indexes are what PostgreSQL wrote (no torn or stale page). */
async function amcheck(pg: PgInstance, where: string): Promise<void> {
  const r = await run(path.join(requirePg(), 'pg_amcheck'), [...pg.conn(), '-d', 'postgres', '--install-missing'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `${where}: pg_amcheck found corruption (exit ${r.code}):\n${(r.stdout + r.stderr).slice(0, 4000)}`);
}

/** The marker rows on an image: the ticks (id order) and the notes. */
async function markersOn(pg: PgInstance): Promise<{ ticks: Map<number, number>; notes: Set<string> }> {
  const out = await pg.sql("SELECT id, (extract(epoch FROM at) * 1000)::bigint, note FROM markers ORDER BY id");
  const ticks = new Map<number, number>();
  const notes = new Set<string>();
  for (const line of out.split('\n').filter(Boolean)) {
    const [id, at, note] = line.split('|');
    if (note === 'tick') ticks.set(Number(id), Number(at));
    else notes.add(note!);
  }
  return { ticks, notes };
}

/**
 * The ticks on an image are a prefix of those acknowledged: each tick began after the
 * one before it was acknowledged (durable), so an image with tick n and without an
 * earlier one is no point of the primary's history. Returns the newest one there.
 */
function prefixOf(present: Map<number, number>, acked: readonly Tick[], where: string): Tick | null {
  const newestId = Math.max(0, ...present.keys());
  const holes = acked.filter((t) => t.id < newestId && !present.has(t.id));
  assert.equal(holes.length, 0, `${where}: markers ${holes.slice(0, 10).map((t) => t.id).join(', ')} are missing ` +
    `while the later marker ${newestId} is there: the image is no point in time`);
  return [...acked].reverse().find((t) => present.has(t.id)) ?? null;
}

/** Waits until site-a's lag says every write up to `ackAt` is one a promote at site-b would keep. */
async function pastLag(a: TestDaemon, ackAt: number, what: string): Promise<string> {
  const seen: string[] = [];
  const deadline = Date.now() + 60_000;
  for (;;) {
    const t0 = Date.now();
    const v = (await statusOf(a)).volumes[0]!;
    // (lagSeconds is rounded to 0.1 s.)
    if (v.link === 'connected' && t0 - v.lagSeconds * 1000 - 100 > ackAt) return `lag ${v.lagSeconds} s ${t0 - ackAt} ms after ${what}`;
    seen.push(`${t0 - ackAt} ms after: link ${v.link}, lag ${v.lagSeconds} s, backlog ${v.backlogBytes} B`);
    if (Date.now() > deadline) {
      throw new Error(`${what}: site-a never showed a lag that puts it behind the replica's reach within 60 s: ${seen.slice(-8).join('; ')}`);
    }
    await sleep(100);
  }
}

test('PostgreSQL under pgbench: checkpoint images and the promoted replica recover, keep the balance invariant, ' +
  'and lose no more than the lag showed', { skip: NOT_ROOT, timeout: 300_000 }, async (t: TestContext) => {
  const bin = requirePg();
  const t0 = Date.now();
  const note = (s: string): void => t.diagnostic(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);
  // Mount points and socket folders postgres can reach (the pair's folders are root's, 0700).
  const work = tempDir('pg');
  fs.chmodSync(work, 0o755);
  const clean = new Cleanups();
  const p = await startPair({ size: '512MiB' });
  let ticking = false;
  let load: ChildProcess | null = null;
  let loadOut = '';
  try {
    await p.drained(120_000);

    // --- site-a: ext4, a cluster, pgbench's tables, the load and the ticks -----------
    const mntA = path.join(work, 'mnt-a');
    fs.mkdirSync(mntA);
    const fa = await FuseLoop.attach(p.a.uri('db'), p.a.dir);
    const unmountA = clean.push('site-a mount', () => teardownFuse(fa, p.a.dir, mntA));
    await must('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', fa.loop]);
    await must('mount', [fa.loop, mntA]);
    const dataA = path.join(mntA, 'pgdata');
    await initdb(dataA);
    const pgA = await PgInstance.start({ dataDir: dataA, port: await freePort(), socketDir: path.join(work, 'sock-a') });
    clean.push('site-a postgres', () => pgA.kill9());
    await pgA.sql('CREATE TABLE markers (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text NOT NULL)');
    const init = await run(path.join(bin, 'pgbench'), [...pgA.conn(), '-i', '-q', '-s', String(SCALE), 'postgres'], { timeoutMs: 180_000 });
    assert.equal(init.code, 0, `pgbench -i -s ${SCALE} on site-a exited ${init.code}: ${init.stderr.slice(-2000)}`);
    note(`site-a: cluster made, pgbench -i -s ${SCALE} done`);

    load = spawn(path.join(bin, 'pgbench'), [...pgA.conn(), '-n', '-c', '4', '-j', '2', '-T', '900', '-P', '2', 'postgres'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    load.stdout!.on('data', (b: Buffer) => (loadOut += b.toString()));
    load.stderr!.on('data', (b: Buffer) => (loadOut += b.toString()));
    const loadExited = new Promise<void>((r) => load!.once('exit', () => r()));
    clean.push('pgbench', async () => {
      load!.kill('SIGKILL');
      await within(loadExited, 5000);
    });

    const ticks: Tick[] = [];
    let tickError = '';
    ticking = true;
    const ticker = (async () => {
      while (ticking) {
        const sentAt = Date.now();
        try {
          const out = await pgA.sql('SET synchronous_commit TO on',
            "INSERT INTO markers (note) VALUES ('tick') RETURNING id, (extract(epoch FROM at) * 1000)::bigint");
          const ackAt = Date.now();
          const [id, at] = out.split('|').map(Number);
          ticks.push({ id: id!, atMs: at!, sentAt, ackAt });
        } catch (e) {
          tickError = (e as Error).message;
          return;
        }
        await sleep(Math.max(0, 200 - (Date.now() - sentAt)));
      }
    })();
    clean.push('ticker', async () => {
      ticking = false;
      await ticker;
    });

    // The load runs before the first checkpoint.
    for (let i = 0; i < 100 && Number(await pgA.sql('SELECT count(*) FROM pgbench_history')) < 500; i++) await sleep(200);
    assert.ok(load.exitCode === null, `pgbench exited early: ${loadOut.slice(-2000)}`);

    // --- checkpoints under the load ----------------------------------------------
    let lastHistory = -1;
    for (let k = 1; k <= CHECKPOINTS; k++) {
      const where = `checkpoint ${k}`;
      const marker = `before-checkpoint-${k}`;
      await pgA.sql('SET synchronous_commit TO on', `INSERT INTO markers (note) VALUES ('${marker}')`);
      const ackAt = Date.now();
      const reach = await pastLag(p.a, ackAt, `marker ${marker}`);
      const made = await cli(p.b, 'checkpoint', 'create', 'db', '--label', `pg-${k}`);
      assert.equal(made.code, 0, `${where}: checkpoint create refused under load: ${made.stderr.trim()} ${made.stdout.trim()}`);
      const ackedThen = ticks.slice();
      const copy = path.join(work, `checkpoint-${k}.img`);
      const copied = await run('nbdcopy', [p.b.uri('db@checkpoint'), copy]);
      const rel = await cli(p.b, 'checkpoint', 'release', 'db');
      assert.equal(copied.code, 0, `${where}: nbdcopy of db@checkpoint failed: ${copied.stderr.trim()}`);
      assert.equal(rel.code, 0, `${where}: checkpoint release failed under load: ${rel.stderr.trim()}`);
      note(`${where}: ${made.stdout.trim()} (marker acknowledged, then ${reach}); copied and released`);

      // PostgreSQL on the copy.
      const mnt = path.join(work, `mnt-${k}`);
      fs.mkdirSync(mnt);
      const loop = await loopAttach(copy);
      const detachLoop = clean.push(`${where} loop`, async () => {
        await run('umount', [mnt]);
        await run('losetup', ['-d', loop]);
        fs.rmSync(copy, { force: true });
      });
      const m = await run('mount', [loop, mnt]);
      assert.equal(m.code, 0, `${where}: the copy's ext4 does not mount (its journal should replay): ${m.stderr.trim()}\n` +
        `${(await run('dmesg', [])).stdout.split('\n').slice(-15).join('\n')}`);
      const data = path.join(mnt, 'pgdata');
      fs.rmSync(path.join(data, 'postmaster.pid'), { force: true });
      const pg = await PgInstance.start({ dataDir: data, port: await freePort(), socketDir: path.join(work, `sock-${k}`) });
      const stopPg = clean.push(`${where} postgres`, () => pg.stop());
      assert.match(pg.log, /automatic recovery in progress/,
        `${where}: PostgreSQL on the image did no crash recovery (the image should be of a running cluster):\n${pg.log.slice(-3000)}`);
      assert.match(pg.log, /redo done at|redo is not required/, `${where}: crash recovery did not finish its redo:\n${pg.log.slice(-3000)}`);
      const b = await bank(pg, where);
      const marks = await markersOn(pg);
      assert.ok(marks.notes.has(marker), `${where}: marker ${marker}, committed and past the lag before the checkpoint was asked for, ` +
        `is not in the image (markers there: ${[...marks.notes].join(', ') || 'none'}; ${marks.ticks.size} ticks)`);
      for (let j = 1; j < k; j++) assert.ok(marks.notes.has(`before-checkpoint-${j}`), `${where}: the earlier marker before-checkpoint-${j} is missing`);
      const newest = prefixOf(marks.ticks, ackedThen, where);
      assert.ok(b.historyRows > lastHistory,
        `${where}: pgbench_history has ${b.historyRows} rows, not more than the ${lastHistory} of the checkpoint before: the image did not move forward`);
      await amcheck(pg, where);
      note(`${where}: recovered; ${b.historyRows} history rows, balances all ${b.history}; ${marks.ticks.size} ticks there, ` +
        `a prefix (newest id ${newest?.id ?? '-'}; ${ackedThen.length} acknowledged when the create returned)`);
      lastHistory = b.historyRows;
      await stopPg();
      await detachLoop();
    }

    // --- failover under load -------------------------------------------------------
    assert.equal(load.exitCode, null, `pgbench stopped before the failover: ${loadOut.slice(-2000)}`);
    assert.equal(tickError, '', `a marker insert failed before the failover: ${tickError}`);
    const lags: string[] = [];
    let lastLag = { lagSeconds: NaN, backlogBytes: NaN, link: '' };
    let asked = 0;
    for (let i = 0; i < 8; i++) {
      await sleep(300);
      asked = Date.now();
      const st = await cli(p.a, 'status', '--json');
      assert.equal(st.code, 0, `offsite status --json on site-a: ${st.stderr}`);
      lastLag = (JSON.parse(st.stdout) as { volumes: Array<{ lagSeconds: number; backlogBytes: number; link: string }> }).volumes[0]!;
      lags.push(`${lastLag.lagSeconds} s (${Date.now() - asked} ms, ${ticks.length} ticks)`);
    }
    const killAt = Date.now();
    await p.a.kill9();
    await pgA.kill9(); // the whole site is lost
    ticking = false;
    await ticker;
    await within(loadExited, 10_000);
    const lag = lastLag.lagSeconds;
    assert.equal(lastLag.link, 'connected', `site-a's link was ${lastLag.link} just before the kill`);
    note(`site-a killed ${killAt - asked} ms after offsite status --json said lagSeconds ${lag} (backlog ${lastLag.backlogBytes} B); ` +
      `lag samples before: ${lags.join(', ')}; ${ticks.length} ticks acknowledged`);
    for (const n of await unmountA()) note(n);

    for (let i = 0; i < 300 && (await statusOf(p.b)).volumes[0]!.link === 'connected'; i++) await sleep(100);
    const linkB = (await statusOf(p.b)).volumes[0]!.link;
    const promoted = await (linkB === 'connected' ? cli(p.b, 'promote', 'db', '--force') : cli(p.b, 'promote', 'db'));
    assert.equal(promoted.code, 0, `promote on site-b (link ${linkB}) refused: ${promoted.stderr.trim()}`);
    assert.match(promoted.stdout, /volume db promoted: primary on this node, read-write, .*applied up to record \d+/, `promote's answer: ${promoted.stdout}`);
    const discarded = Number(/(\d+) records after the last flush point discarded/.exec(promoted.stdout)?.[1] ?? 0);
    note(`promote (link ${linkB}): ${promoted.stdout.trim()}`);

    // PostgreSQL on the promoted export.
    const mntB = path.join(work, 'mnt-b');
    fs.mkdirSync(mntB);
    const fb = await FuseLoop.attach(p.b.uri('db'), p.b.dir);
    const unmountB = clean.push('site-b mount', () => teardownFuse(fb, p.b.dir, mntB));
    const m = await run('mount', [fb.loop, mntB]);
    assert.equal(m.code, 0, `the promoted export's ext4 does not mount (its journal should replay): ${m.stderr.trim()}`);
    const dataB = path.join(mntB, 'pgdata');
    fs.rmSync(path.join(dataB, 'postmaster.pid'), { force: true });
    const pgB = await PgInstance.start({ dataDir: dataB, port: await freePort(), socketDir: path.join(work, 'sock-b') });
    const stopPgB = clean.push('site-b postgres', () => pgB.stop());
    assert.match(pgB.log, /automatic recovery in progress/, `promoted: PostgreSQL did no crash recovery:\n${pgB.log.slice(-3000)}`);
    assert.match(pgB.log, /redo done at|redo is not required/, `promoted: crash recovery did not finish its redo:\n${pgB.log.slice(-3000)}`);
    const b = await bank(pgB, 'promoted');
    assert.ok(b.historyRows > lastHistory, `promoted: pgbench_history has ${b.historyRows} rows, not more than the ${lastHistory} of the last checkpoint`);
    const marks = await markersOn(pgB);
    for (let k = 1; k <= CHECKPOINTS; k++) assert.ok(marks.notes.has(`before-checkpoint-${k}`), `promoted: marker before-checkpoint-${k} is missing`);
    const acked = ticks.filter((x) => x.ackAt <= killAt);
    assert.ok(acked.length > 20, `only ${acked.length} ticks were acknowledged before the kill`);
    const newestThere = prefixOf(marks.ticks, acked, 'promoted');
    const newestAcked = acked[acked.length - 1]!;
    // Every tick acknowledged more than lag + 2 s before the kill is there.
    const due = acked.filter((x) => x.ackAt < killAt - (lag + 2) * 1000);
    const lost = due.filter((x) => !marks.ticks.has(x.id));
    assert.equal(lost.length, 0, `promoted: ${lost.length} markers acknowledged more than lag ${lag} s + 2 s before the kill are missing ` +
      `(the oldest ${lost.length > 0 ? killAt - lost[0]!.ackAt : 0} ms before it; ` +
      `newest there: ${newestThere?.id ?? 'none'}, ${newestThere ? killAt - newestThere.ackAt : '-'} ms before the kill)`);
    // What the promote lost, in time: between the newest tick acknowledged and the newest there.
    const lossMs = newestThere ? newestAcked.atMs - newestThere.atMs : Infinity;
    const missing = acked.length - acked.findIndex((x) => x === newestThere) - 1;
    note(`promoted: recovered; ${b.historyRows} history rows; newest marker there ${newestThere?.id ?? '-'}, ` +
      `${lossMs} ms older than the newest acknowledged before the kill (${newestAcked.id}); ${missing} acknowledged markers lost; ` +
      `lag shown ${lag} s; promote discarded ${discarded} records of its receive log`);
    assert.ok(lossMs <= (lag + 2) * 1000,
      `promoted: the newest marker is ${lossMs} ms older than the newest acknowledged before the kill, more than the lag shown (${lag} s) + 2 s`);
    // And the lag did not overstate the loss either (the replica may catch up between the status and the kill).
    assert.ok(lossMs >= (lag - 2) * 1000 - (killAt - asked),
      `promoted: only ${lossMs} ms of markers lost, while site-a showed a lag of ${lag} s ${killAt - asked} ms before the kill`);
    await amcheck(pgB, 'promoted');
    // The promoted database takes writes.
    await pgB.sql("INSERT INTO markers (note) VALUES ('after-promote')");
    await stopPgB();
    for (const n of await unmountB()) note(n);
    note(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    ticking = false;
    const lines = loadOut.split('\n');
    note(`pgbench: ${[...lines.filter((l) => /^progress/.test(l)).slice(-3), ...lines.filter((l) => /error|abort/i.test(l)).slice(0, 3)].join(' | ')}`);
    for (const [site, d] of [['site-a', p.a], ['site-b', p.b]] as const) {
      const warnings = d.log.split('\n').filter((l) => /"level":(40|50|60)/.test(l));
      if (warnings.length > 0) note(`${site}: ${warnings.length} warnings/errors logged, the last: ${warnings.slice(-6).join('\n')}`);
    }
    const problems = await clean.runAll();
    for (const pr of problems) note(`cleanup: ${pr}`);
    await p.stop();
    // Never rm -r through a mount that cleanup could not remove.
    const stillMounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(work));
    if (stillMounted.length === 0) fs.rmSync(work, { recursive: true, force: true });
    else note(`left ${work}: still mounted: ${stillMounted.join('; ')}`);
  }
});
