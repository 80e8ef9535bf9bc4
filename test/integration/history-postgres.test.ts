// PostgreSQL at past points of the history (docs/HISTORY.md): site-a's export carries
// ext4 and a cluster (as test/integration/postgres.test.ts sets it up) under pgbench
// (scale 2, two clients) and a ledger: one client inserting ids 1, 2, 3, ... one row
// per commit (synchronous_commit on), the time each insert was sent and the time its
// COMMIT returned kept. While both run, three moments T1 < T2 < T3 a few seconds apart
// are noted; the load goes on a few seconds after T3, stops, and replication drains.
//
// Then each moment is opened at site-b, with history kept: T1 and T3 with `checkpoint
// create --at Ti` (db@checkpoint copied with nbdcopy, released; PostgreSQL on the copy),
// T2 with `drill start --at T2` (PostgreSQL on the writable db@drill itself, through
// nbdfuse + losetup; drill stop after). Each time:
// - the point served is the newest restore point `offsite history` lists at or before
//   Ti, and `checkpoint list --json` names it (point.time, the primary's clock);
// - PostgreSQL completes crash recovery on it, and pgbench's balance invariant holds
//   (accounts, tellers and branches each sum to the history's deltas);
// - the ledger is a gapless prefix 1..k, with every id whose COMMIT returned before the
//   point's time (less 1 s of slack) in it, and no id sent after the point's time (plus
//   1 s) or after Ti: the image is that point, not an earlier or a later one (the
//   replica itself holds every id, well past T3);
// - k and pgbench's history rows do not go back from one point to the next.
//
// Root only: skipped, saying so, otherwise. No timing is asserted.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { FuseLoop } from '../helpers/ext4.js';
import { freePort } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep, tempDir } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';
import { Cleanups, PgInstance, initdb, loopAttach, requirePg, teardownFuse, within } from '../helpers/postgres.js';
import type { CheckpointInfo, HistoryInfo } from '../../src/contract/actions.js';

const NOT_ROOT = process.getuid?.() !== 0 ? 'needs root (losetup, mount, postgres run as its own user); CI runs as root' : false;
const SCALE = 2;
/** Slack for the two clocks' readings around a barrier (the same clock here: only their granularity and scheduling). */
const SLACK_MS = 1000;

/** One ledger insert: its id, when psql was started for it, and when its COMMIT had returned (null: not yet, or failed). */
interface Entry { id: number; sentAt: number; ackAt: number | null }
interface Bank { sum: bigint; historyRows: number }

/** pgbench's invariant: each transaction moved one delta through accounts, tellers, branches and history. */
async function bank(pg: PgInstance, where: string): Promise<Bank> {
  const row = await pg.sql(`SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
    (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts)`);
  const f = row.split('|');
  assert.equal(f.length, 6, `${where}: the balance query answered ${JSON.stringify(row)}`);
  const [accounts, tellers, branches, history] = f.slice(0, 4).map((x) => BigInt(x));
  const seen = `sum(abalance) ${accounts}, sum(tbalance) ${tellers}, sum(bbalance) ${branches}, sum(delta) ${history} over ${f[4]} history rows`;
  assert.equal(Number(f[5]), SCALE * 100_000, `${where}: pgbench_accounts has ${f[5]} rows, not ${SCALE * 100_000}`);
  assert.equal(accounts, history, `${where}: balance invariant broken: accounts do not sum to the history (${seen})`);
  assert.equal(tellers, history, `${where}: balance invariant broken: tellers do not sum to the history (${seen})`);
  assert.equal(branches, history, `${where}: balance invariant broken: branches do not sum to the history (${seen})`);
  return { sum: history!, historyRows: Number(f[4]) };
}

/**
 * The ledger on an image against what the client saw: ids 1..k with no gap; every id
 * acknowledged before `point.time - SLACK_MS` there; none sent after `limit` there.
 * Returns k.
 */
async function checkLedger(pg: PgInstance, ledger: readonly Entry[], pointTime: number, limit: number, where: string): Promise<number> {
  const ids = (await pg.sql('SELECT id FROM ledger ORDER BY id')).split('\n').filter(Boolean).map(Number);
  const k = ids.length;
  const gap = ids.findIndex((id, i) => id !== i + 1);
  assert.equal(gap, -1, `${where}: the ledger is no prefix: it holds ${k} ids, and the ${gap + 1}th is ${ids[gap]} ` +
    `(the ids around it: ${ids.slice(Math.max(0, gap - 3), gap + 3).join(', ')}): the image is no point in time`);
  const due = ledger.filter((e) => e.ackAt !== null && e.ackAt < pointTime - SLACK_MS);
  const dueK = due.length === 0 ? 0 : due[due.length - 1]!.id;
  if (k < dueK) {
    assert.fail(`${where}: the ledger stops at id ${k}, but id ${dueK} had committed (its COMMIT returned) ` +
      `${pointTime - due[due.length - 1]!.ackAt!} ms before the restore point's time: the image is older than its point`);
  }
  const sent = ledger.filter((e) => e.sentAt <= limit);
  const sentK = sent.length === 0 ? 0 : sent[sent.length - 1]!.id;
  assert.ok(k <= sentK, `${where}: the ledger holds id ${k}, but only ${sentK} ids had been sent by ` +
    `${new Date(limit).toISOString()} (the point's time + ${SLACK_MS} ms, or Ti): the image is newer than its point`);
  return k;
}

test('PostgreSQL at three past points of the history: recovers, keeps the balance invariant, and holds the ledger to that point',
  { skip: NOT_ROOT, timeout: 420_000 }, async (t: TestContext) => {
    const bin = requirePg();
    const t0 = Date.now();
    const note = (s: string): void => t.diagnostic(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);
    // Mount points and socket folders postgres can reach (the pair's folders are root's, 0700).
    const work = tempDir('pg-history');
    fs.chmodSync(work, 0o755);
    const clean = new Cleanups();
    const p = await startPair({ size: '512MiB', volumeKeysB: 'history: { keep: 24h, max: 2GiB }' });
    let ledgerOn = false;
    let load: ChildProcess | null = null;
    let loadOut = '';
    try {
      await p.drained(120_000);

      // --- site-a: ext4, a cluster, pgbench's tables and the ledger -------------------
      const mntA = path.join(work, 'mnt-a');
      fs.mkdirSync(mntA);
      const fa = await FuseLoop.attach(p.a.uri('db'), p.a.dir);
      const unmountA = clean.push('site-a mount', () => teardownFuse(fa, p.a.dir, mntA));
      await must('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', fa.loop]);
      await must('mount', [fa.loop, mntA]);
      const dataA = path.join(mntA, 'pgdata');
      await initdb(dataA);
      const pgA = await PgInstance.start({ dataDir: dataA, port: await freePort(), socketDir: path.join(work, 'sock-a') });
      const stopPgA = clean.push('site-a postgres', () => pgA.kill9());
      await pgA.sql('CREATE TABLE ledger (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
      const init = await run(path.join(bin, 'pgbench'), [...pgA.conn(), '-i', '-q', '-s', String(SCALE), 'postgres'], { timeoutMs: 180_000 });
      assert.equal(init.code, 0, `pgbench -i -s ${SCALE} on site-a exited ${init.code}: ${init.stderr.slice(-2000)}`);
      note(`site-a: cluster made, pgbench -i -s ${SCALE} done`);

      load = spawn(path.join(bin, 'pgbench'), [...pgA.conn(), '-n', '-c', '2', '-j', '2', '-T', '600', 'postgres'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      load.stdout!.on('data', (b: Buffer) => (loadOut += b.toString()));
      load.stderr!.on('data', (b: Buffer) => (loadOut += b.toString()));
      const loadExited = new Promise<void>((r) => load!.once('exit', () => r()));
      const stopLoad = clean.push('pgbench', async () => {
        load!.kill('SIGKILL');
        await within(loadExited, 5000);
      });

      // The ledger: one id per commit, in order, each sent only after the one before returned.
      const ledger: Entry[] = [];
      let ledgerError = '';
      ledgerOn = true;
      const client = (async () => {
        while (ledgerOn) {
          const e: Entry = { id: ledger.length + 1, sentAt: Date.now(), ackAt: null };
          ledger.push(e);
          try {
            await pgA.sql(`INSERT INTO ledger (id) VALUES (${e.id})`);
          } catch (err) {
            ledgerError = (err as Error).message;
            return;
          }
          e.ackAt = Date.now();
        }
      })();
      const stopLedger = clean.push('ledger', async () => {
        ledgerOn = false;
        await client;
      });
      const acked = (): number => ledger.filter((e) => e.ackAt !== null).length;
      // Before T1: ids committed more than the slack before it, so that T1 requires some.
      const ledgerRunsFor = (): number => Date.now() - (ledger[0]?.ackAt ?? Date.now());
      for (let i = 0; i < 150; i++) {
        if (acked() >= 20 && ledgerRunsFor() > 2 * SLACK_MS && Number(await pgA.sql('SELECT count(*) FROM pgbench_history')) >= 200) break;
        await sleep(200);
      }
      assert.equal(load.exitCode, null, `pgbench exited early: ${loadOut.slice(-2000)}`);
      assert.equal(ledgerError, '', `a ledger insert failed: ${ledgerError}`);

      const moments: number[] = [];
      for (let i = 0; i < 3; i++) {
        if (i > 0) await sleep(3000);
        moments.push(Date.now());
        note(`T${i + 1} = ${new Date(moments[i]!).toISOString()}: ${acked()} ledger ids committed`);
      }
      await sleep(3000);
      await stopLedger();
      assert.equal(ledgerError, '', `a ledger insert failed: ${ledgerError}`);
      assert.equal(load.exitCode, null, `pgbench stopped before the end: ${loadOut.slice(-2000)}`);
      await stopLoad();
      await pgA.stop();
      await stopPgA();
      for (const n of await unmountA()) note(`site-a: ${n}`);
      await p.drained(120_000);
      const total = ledger.filter((e) => e.ackAt !== null).length;
      assert.equal(total, ledger.length, 'every ledger insert returned');
      note(`load stopped: ${total} ledger ids committed, the last ${Date.now() - ledger[total - 1]!.ackAt!} ms ago; site-a unmounted; drained`);

      const hist = await cli(p.b, 'history', 'db', '--json');
      assert.equal(hist.code, 0, hist.stderr);
      const points = (JSON.parse(hist.stdout) as HistoryInfo).points;

      // --- each moment at site-b -------------------------------------------------------
      let lastK = 0;
      let lastRows = -1;
      for (let i = 0; i < 3; i++) {
        const Ti = moments[i]!;
        const at = new Date(Ti).toISOString();
        const where = `T${i + 1} (${at})`;
        const viaDrill = i === 1;
        const opened = viaDrill ? await cli(p.b, 'drill', 'start', 'db', '--at', at)
          : await cli(p.b, 'checkpoint', 'create', 'db', '--at', at, '--label', `pg-t${i + 1}`);
        assert.equal(opened.code, 0, `${where}: ${viaDrill ? 'drill start' : 'checkpoint create'} --at refused: ${opened.stderr.trim()}`);
        const closeOpened = clean.push(`${where} ${viaDrill ? 'drill' : 'checkpoint'}`, () =>
          viaDrill ? cli(p.b, 'drill', 'stop', 'db') : cli(p.b, 'checkpoint', 'release', 'db'));
        const listed = await cli(p.b, 'checkpoint', 'list', '--json');
        assert.equal(listed.code, 0, listed.stderr);
        const point = (JSON.parse(listed.stdout) as CheckpointInfo[])[0]?.point;
        assert.ok(point, `${where}: checkpoint list names no restore point: ${listed.stdout}`);
        const expected = points.filter((x) => x.time <= Ti).pop();
        assert.deepEqual(point, expected && { seq: expected.seq, time: expected.time },
          `${where}: the point served is not the newest restore point the history lists at or before Ti`);
        assert.ok(point.time <= Ti);

        const mnt = path.join(work, `mnt-t${i + 1}`);
        fs.mkdirSync(mnt);
        let detach: () => Promise<unknown>;
        if (viaDrill) {
          // PostgreSQL on the drill itself: its recovery writes stay in the drill.
          const fd = await FuseLoop.attach(p.b.uri('db@drill'), p.b.dir);
          detach = clean.push(`${where} drill mount`, () => teardownFuse(fd, p.b.dir, mnt));
          const m = await run('mount', [fd.loop, mnt]);
          assert.equal(m.code, 0, `${where}: db@drill's ext4 does not mount (its journal should replay): ${m.stderr.trim()}`);
        } else {
          const copy = path.join(work, `t${i + 1}.img`);
          const copied = await run('nbdcopy', [p.b.uri('db@checkpoint'), copy]);
          assert.equal(copied.code, 0, `${where}: nbdcopy of db@checkpoint failed: ${copied.stderr.trim()}`);
          const rel = await closeOpened();
          assert.equal(rel.code, 0, `${where}: checkpoint release: ${rel.stderr.trim()}`);
          const loop = await loopAttach(copy);
          detach = clean.push(`${where} copy`, async () => {
            await run('umount', [mnt]);
            await run('losetup', ['-d', loop]);
            fs.rmSync(copy, { force: true });
          });
          const m = await run('mount', [loop, mnt]);
          assert.equal(m.code, 0, `${where}: the copy's ext4 does not mount (its journal should replay): ${m.stderr.trim()}`);
        }
        const data = path.join(mnt, 'pgdata');
        // (It names site-a's postmaster, gone by now; on a real DR host it would be stale too.)
        fs.rmSync(path.join(data, 'postmaster.pid'), { force: true });
        const pg = await PgInstance.start({ dataDir: data, port: await freePort(), socketDir: path.join(work, `sock-t${i + 1}`) });
        const stopPg = clean.push(`${where} postgres`, () => pg.stop());
        assert.match(pg.log, /automatic recovery in progress/,
          `${where}: PostgreSQL did no crash recovery (the image should be of a running cluster):\n${pg.log.slice(-3000)}`);
        assert.match(pg.log, /redo done at|redo is not required/, `${where}: crash recovery did not finish its redo:\n${pg.log.slice(-3000)}`);
        const b = await bank(pg, where);
        const k = await checkLedger(pg, ledger, point.time, Math.min(Ti, point.time + SLACK_MS), where);
        assert.ok(k >= lastK, `${where}: the ledger holds ${k} ids, fewer than the ${lastK} of the moment before`);
        assert.ok(b.historyRows >= lastRows, `${where}: ${b.historyRows} pgbench history rows, fewer than the ${lastRows} of the moment before`);
        note(`${where} via ${viaDrill ? 'drill' : 'checkpoint + copy'}: restore point of ${new Date(point.time).toISOString()} ` +
          `(record ${point.seq}, ${Ti - point.time} ms before Ti); recovered; ${b.historyRows} pgbench history rows, balances all ${b.sum}; ` +
          `ledger 1..${k} (${ledger.filter((e) => e.ackAt! < point.time).length} had committed by the point's time, ` +
          `${ledger.filter((e) => e.sentAt <= point.time).length} sent)`);
        lastK = k;
        lastRows = b.historyRows;
        await stopPg();
        await detach();
        if (viaDrill) {
          const stopped = await closeOpened();
          assert.equal(stopped.code, 0, `${where}: drill stop: ${stopped.stderr.trim()}`);
        }
      }
      assert.ok(lastK < total, `the newest moment's ledger holds every id (${lastK}), though ${total - lastK} were committed after T3: ` +
        'the past point is the replica now');
      note(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      ledgerOn = false;
      for (const [site, d] of [['site-a', p.a], ['site-b', p.b]] as const) {
        const errors = d.log.split('\n').filter((l) => /"level":(50|60)/.test(l));
        if (errors.length > 0) note(`${site}: ${errors.length} errors logged, the last: ${errors.slice(-4).join('\n')}`);
      }
      for (const pr of await clean.runAll()) note(`cleanup: ${pr}`);
      const mounts = (): string[] => fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '');
      if (mounts().some((m) => m.startsWith(p.a.dir) || m.startsWith(p.b.dir))) {
        note('a FUSE mount is left in the pair\'s folders: they are kept');
        process.env.OFFSITE_KEEP_DIRS = '1';
      }
      await p.stop();
      // Never rm -r through a mount that cleanup could not remove.
      const stillMounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(work));
      if (stillMounted.length === 0) fs.rmSync(work, { recursive: true, force: true });
      else note(`left ${work}: still mounted: ${stillMounted.join('; ')}`);
    }
  });
