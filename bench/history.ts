// npm run bench:history: what keeping history (docs/HISTORY.md) costs the secondary,
// side by side in one run. Two pairs on this machine over loopback TLS, the same but
// for `history:` on site-b's volume (off, on). For each: the apply alone, timed (a
// checkpoint held at site-b while the primary's writes are received into its receive
// log, then released: the clock runs until the replica has applied all of it), for a
// fresh-write workload (the sparse volume written once) and for an overwrite-heavy one
// (random 64 KiB..1 MiB writes over the whole written volume), with the history's
// growth per host byte. Then, on the pair with history, a stretch of small flushed
// writes (many restore points), and the time to open a point from before all of it:
// `offsite checkpoint create db --at` timed with the page cache of the history and
// replica dropped and again warm, and reads of db@checkpoint (qemu-io, nbdcopy).
//
// HISTORY_VOLUME_GIB (1): the volume; HISTORY_GIB (2): bytes written per overwrite run;
// HISTORY_RUNS (2): overwrite runs per pair, alternated; HISTORY_POINTS_SECONDS (15):
// the stretch of 4 KiB writes each followed by a flush; HISTORY_PROF=DIR runs the
// daemons under --cpu-prof into DIR; HISTORY_KEEP=1 keeps the pairs' folders (and the
// daemons' logs) after a run that passed.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { waitPort } from './fio.js';
import { machineLine, writeSection } from './report.js';
import { bin, makeSites, start, stop, type Site } from './sites.js';
import { scanSegment } from '../src/history/scan.js';
import { EntryKind, HEADS_HEADER_SIZE, historyFileIndex, type EntryHead } from '../src/history/format.js';
import { forEachHead, readHeads } from '../src/history/heads.js';
import { DirStore } from '../src/journal/store.js';
import type { StoreFile } from '../src/store/store.js';

const VOLUME_GIB = Number(process.env.HISTORY_VOLUME_GIB ?? 1);
const GIB = Number(process.env.HISTORY_GIB ?? 2);
const VOLUME_MIB = Math.round(VOLUME_GIB * 1024);
const RUNS = Number(process.env.HISTORY_RUNS ?? 2);
const POINTS_SECONDS = Number(process.env.HISTORY_POINTS_SECONDS ?? 15);
const PROF = process.env.HISTORY_PROF ?? '';
const root = process.env.BENCH_DIR ?? os.tmpdir();
const MB = 1e6;
const MiB = 2 ** 20;

interface HistoryStatus { points: number; bytes: number; oldest: { seq: number; time: number } | null }
interface VolStatus {
  link: string; backlogBytes: number; consistent: boolean; resyncing: boolean; applying: object | null;
  history: HistoryStatus | null; checkpoint: object | null;
}
interface Pair { name: 'off' | 'on'; a: Site; b: Site; dir: string }
interface Disk { readBytes: number; writtenBytes: number; flushes: number }
interface Run {
  pair: Pair['name']; workload: 'fresh' | 'overwrite'; hostBytes: number; hostMBs: number; queued: number; appliedS: number;
  historyBytes: number; points: number; cpu: number; disk: Disk;
}

/**
 * One call to a daemon's API on a connection of its own (no keep-alive: a pooled
 * connection the API closed after its 5 s idle can be picked for the next call while
 * this bench waits for fio or nbdcopy). Actions with the site's token.
 */
function api<T>(s: Site, method: 'GET' | 'POST', url: string, body?: object): Promise<T> {
  const headers: Record<string, string> = {};
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    headers.authorization = `Bearer ${fs.readFileSync(path.join(s.dir, `state-${s.name}`, 'api.token'), 'utf8').trim()}`;
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.api, method, path: url, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        const j = JSON.parse(text) as T & { error?: string };
        if ((res.statusCode ?? 500) >= 400) reject(new Error(`${method} ${url} on ${s.name}: ${j.error ?? res.statusCode}`));
        else resolve(j);
      });
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

async function status(s: Site): Promise<VolStatus> {
  return (await api<{ volumes: VolStatus[] }>(s, 'GET', '/api/v1/status')).volumes[0]!;
}

function action(s: Site, act: string, body: object = {}): Promise<unknown> {
  return api(s, 'POST', `/api/v1/volumes/db/${act}`, body);
}

/** primary linked, nothing pending on either side, the secondary consistent. */
function drained(p: Pair): Promise<void> {
  return waitFor('the pair drained', async () => {
    const [a, b] = [await status(p.a), await status(p.b)];
    return a.link === 'connected' && a.backlogBytes === 0 && !a.resyncing && b.consistent && !b.resyncing && b.backlogBytes === 0;
  });
}

async function waitFor(what: string, f: () => Promise<boolean>, seconds = 900): Promise<void> {
  const end = performance.now() + seconds * 1000;
  for (;;) {
    try {
      if (await f()) return;
    } catch {
      // (the daemon not answering yet)
    }
    if (performance.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU seconds a process has used so far (user + system, from /proc). */
function cpuSeconds(s: Site): number {
  const f = fs.readFileSync(`/proc/${s.proc?.pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The disk under the bench's directory, as /proc/diskstats counts it (the whole machine's traffic to it). */
const device = path.basename(execFileSync('findmnt', ['-no', 'SOURCE', '-T', root], { encoding: 'utf8' }).trim());
function disk(): Disk {
  const line = fs.readFileSync('/proc/diskstats', 'utf8').split('\n').find((l) => l.trim().split(/\s+/)[2] === device);
  const f = (line ?? '').trim().split(/\s+/).slice(3).map(Number);
  return { readBytes: (f[2] ?? NaN) * 512, writtenBytes: (f[6] ?? NaN) * 512, flushes: f[15] ?? NaN };
}

function fio(uri: string, args: string[]): number {
  const out = execFileSync('fio', ['--name=job', '--ioengine=nbd', `--uri=${uri}`, '--refill_buffers', '--randrepeat=0', '--output-format=json', ...args],
    { encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ write: { io_bytes: number } }> }).jobs[0]!.write.io_bytes;
}

// Each job ends with a flush, as a host's burst would: the last epoch closes there. (Without it the
// primary is to close the open epoch itself after a second; in one run it did not, when a sync
// without a barrier had made the epoch's last records durable, and the apply waited for ever.)
const FRESH = ['--rw=write', '--bs=1M', '--iodepth=8', `--size=${VOLUME_MIB}m`, '--end_fsync=1'];
const OVERWRITE = ['--rw=randwrite', '--bsrange=64k-1m', '--iodepth=8', `--size=${VOLUME_MIB}m`, `--io_size=${Math.round(GIB * 1024)}m`, '--end_fsync=1'];

async function pair(name: Pair['name']): Promise<Pair> {
  const dir = fs.mkdtempSync(path.join(root, `offsite-bench-history-${name}-`));
  const base = 22000 + Math.floor(Math.random() * 20000);
  const journal = Math.ceil(Math.max(GIB, VOLUME_GIB)) + 2;
  const sites = makeSites(dir, base, `size: ${VOLUME_MIB}MiB, journal: ${journal}GiB`);
  for (const s of sites) {
    let cfg = fs.readFileSync(s.cfg, 'utf8').replace('timeout: 2s }', 'timeout: 2s, compression: off, coalesce: false }');
    if (name === 'on' && s.name === 'site-b') cfg = cfg.replace(`journal: ${journal}GiB }`, `journal: ${journal}GiB, history: { keep: 24h, max: 50GiB } }`);
    fs.writeFileSync(s.cfg, cfg);
    if (PROF) s.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${path.join(PROF, `${name}-${s.name}`)}`];
  }
  execFileSync('truncate', ['-s', `${VOLUME_MIB}M`, path.join(dir, 'site-a.img')]);
  for (const s of sites) start(s);
  await Promise.all(sites.map((s) => waitPort(s.api)));
  const [a, b] = sites as [Site, Site];
  const p: Pair = { name, a, b, dir };
  await drained(p);
  return p;
}

/**
 * The apply alone: a checkpoint held at site-b while fio writes at site-a, until the
 * primary's backlog is acked (site-b holds it all in its receive log); then the release,
 * and the clock runs until site-b has applied everything and no unit is open.
 */
async function applyRun(p: Pair, workload: Run['workload'], n: number): Promise<Run> {
  const { a, b } = p;
  await drained(p);
  const h0 = (await status(b)).history;
  await action(b, 'checkpoint', { label: `bench-${workload}-${n}` });
  const w0 = performance.now();
  const hostBytes = fio(`nbd://127.0.0.1:${a.nbd}/db`, workload === 'fresh' ? FRESH : OVERWRITE);
  const hostMBs = hostBytes / MB / ((performance.now() - w0) / 1000);
  await waitFor('the backlog acked', async () => {
    const x = await status(a);
    return x.link === 'connected' && x.backlogBytes === 0;
  });
  const queued = (await status(b)).backlogBytes;
  // (Dirty pages written out first: no run pays for the writeback of the one before.)
  execFileSync('sync');
  const [cpu0, d0] = [cpuSeconds(b), disk()];
  const t0 = performance.now();
  const mono0 = process.hrtime.bigint() / 1000n;
  await action(b, 'checkpoint-release');
  await waitFor('the apply (site-b applying everything it holds)', async () => {
    const y = await status(b);
    return y.backlogBytes === 0 && y.applying === null;
  });
  const appliedS = (performance.now() - t0) / 1000;
  const [cpu1, d1] = [cpuSeconds(b), disk()];
  const h1 = (await status(b)).history;
  const run: Run = {
    pair: p.name, workload, hostBytes, hostMBs, queued, appliedS,
    historyBytes: (h1?.bytes ?? 0) - (h0?.bytes ?? 0), points: (h1?.points ?? 0) - (h0?.points ?? 0), cpu: (cpu1 - cpu0) / appliedS,
    disk: { readBytes: d1.readBytes - d0.readBytes, writtenBytes: d1.writtenBytes - d0.writtenBytes, flushes: d1.flushes - d0.flushes },
  };
  console.log(`history ${p.name}, ${workload}: ${(hostBytes / MB).toFixed(0)} MB written at ${hostMBs.toFixed(0)} MB/s, ` +
    `${(queued / MB).toFixed(0)} MB applied in ${appliedS.toFixed(1)} s (${(queued / MB / appliedS).toFixed(1)} MB/s), ` +
    `history +${(run.historyBytes / MB).toFixed(1)} MB (${(run.historyBytes / hostBytes).toFixed(4)} per host byte), +${run.points} points, ` +
    `site-b CPU ${(100 * run.cpu).toFixed(0)}%, disk read ${(run.disk.readBytes / MB).toFixed(0)} MB, written ${(run.disk.writtenBytes / MB).toFixed(0)} MB, ` +
    `${run.disk.flushes} flushes${PROF ? ` (monotonic ${mono0}..${process.hrtime.bigint() / 1000n} µs, for the profiles)` : ''}`);
  return run;
}

function historyFiles(b: Site): string[] {
  const d = path.join(b.dir, `state-${b.name}`, 'volumes', 'db');
  return fs.readdirSync(d).filter((f) => historyFileIndex(f) !== null).sort().map((f) => path.join(d, f));
}

/** Drops the page cache of the history and the replica (posix_fadvise DONTNEED through dd; these files only). */
function dropCache(b: Site): void {
  const d = path.join(b.dir, `state-${b.name}`, 'volumes', 'db');
  // (The segments and their heads files.)
  const history = fs.readdirSync(d).filter((f) => f.startsWith('history.') && !f.endsWith('.csv')).map((f) => path.join(d, f));
  for (const f of [...history, path.join(b.dir, `${b.name}.img`)]) execFileSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
}

function timed(cmd: string, args: string[]): { ms: number; out: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, out: r.stdout };
}

/**
 * The entry heads an open of point `seq` goes over from its marker to the end, and the
 * bytes its reads take, as the daemon reads them: a sealed segment's heads file where
 * it has one (heads.ts), else a scan of the segment (scan.ts).
 */
async function scanFrom(b: Site, seq: number): Promise<{ heads: number; readBytes: number; ms: number }> {
  let heads = 0;
  let readBytes = 0;
  let counting = false;
  const t0 = performance.now();
  const dir = path.join(b.dir, `state-${b.name}`, 'volumes', 'db');
  const store = new DirStore(dir);
  const onEntry = (head: EntryHead): void => {
    if (head.kind === EntryKind.Point && head.point === seq) counting = true;
    else if (counting) heads++;
  };
  for (const f of historyFiles(b)) {
    const index = historyFileIndex(path.basename(f))!;
    if (fs.existsSync(`${f}.heads`)) {
      const h = await readHeads(store, index, fs.statSync(f).size);
      if (h && forEachHead(h, fs.statSync(f).size, onEntry)) {
        readBytes += h.length + HEADS_HEADER_SIZE;
        continue;
      }
    }
    const fd = fs.openSync(f, 'r');
    const size = fs.fstatSync(fd).size;
    const file = {
      name: f, size: () => size,
      read: async (position: number, length: number): Promise<Buffer> => {
        const buf = Buffer.alloc(length);
        const got = await new Promise<number>((res, rej) => fs.read(fd, buf, 0, length, position, (e, n) => (e ? rej(e) : res(n))));
        readBytes += got;
        return buf.subarray(0, got);
      },
    } as unknown as StoreFile;
    await scanSegment(file, onEntry);
    fs.closeSync(fd);
  }
  return { heads, readBytes, ms: performance.now() - t0 };
}

interface Open {
  at: number; seq: number; pointsAfter: number; pointsTotal: number; bytesAfter: number; heads: number; scanReadBytes: number; scanMs: number;
  cliColdMs: number; cliWarmMs: number; cliStartMs: number; apiWarmMs: number; apiNowMs: number;
  read4Ms: number; read4QemuMs: number; pointReadS: number; replicaReadS: number; message: string;
}

async function openFarPoint(p: Pair, at: number, bytesAt: number): Promise<Open> {
  const { b } = p;
  const cfg = ['-c', b.cfg];
  const rp = await api<{ points: Array<{ seq: number; time: number }> }>(b, 'GET', '/api/v1/volumes/db/restore-points');
  const before = rp.points.filter((x) => x.time <= at);
  const point = before[before.length - 1]!;
  const h = (await status(b)).history!;
  const uri = `nbd://127.0.0.1:${b.nbd}/db@checkpoint`;
  // Cold: the history and the replica out of the page cache, then the command as an operator types it.
  dropCache(b);
  const cold = timed(process.execPath, [bin, 'checkpoint', 'create', 'db', '--at', new Date(at).toISOString(), '--label', 'far', ...cfg]);
  const read4 = timed('qemu-io', ['-f', 'raw', '-r', '-c', 'read 0 4M', uri]);
  const q = /; ([\d.]+) sec/.exec(read4.out);
  dropCache(b);
  const whole = timed('nbdcopy', [uri, 'null:']);
  timed(process.execPath, [bin, 'checkpoint', 'release', 'db', ...cfg]);
  dropCache(b);
  const replica = timed('nbdcopy', [`nbd://127.0.0.1:${b.nbd}/db`, 'null:']);
  // Warm: the same again, then the API call alone (no Node.js start), and a point of now (nothing to scan).
  const warm = timed(process.execPath, [bin, 'checkpoint', 'create', 'db', '--at', new Date(at).toISOString(), '--label', 'far', ...cfg]);
  await action(b, 'checkpoint-release');
  let t0 = performance.now();
  const mono0 = process.hrtime.bigint() / 1000n;
  await action(b, 'checkpoint', { label: 'far', at });
  const apiWarmMs = performance.now() - t0;
  if (PROF) console.log(`the API call with at: monotonic ${mono0}..${process.hrtime.bigint() / 1000n} µs, for the profiles`);
  await action(b, 'checkpoint-release');
  t0 = performance.now();
  await action(b, 'checkpoint', { label: 'now', at: 'now' });
  const apiNowMs = performance.now() - t0;
  await action(b, 'checkpoint-release');
  const start = timed(process.execPath, [bin, '--version']);
  const scan = await scanFrom(b, point.seq);
  return {
    at, seq: point.seq, pointsAfter: rp.points.length - before.length, pointsTotal: rp.points.length, bytesAfter: h.bytes - bytesAt,
    heads: scan.heads, scanReadBytes: scan.readBytes, scanMs: scan.ms,
    cliColdMs: cold.ms, cliWarmMs: warm.ms, cliStartMs: start.ms, apiWarmMs, apiNowMs,
    read4Ms: read4.ms, read4QemuMs: q ? Number(q[1]) * 1000 : NaN, pointReadS: whole.ms / 1000, replicaReadS: replica.ms / 1000,
    message: cold.out.trim(),
  };
}

async function main(): Promise<void> {
  const began = performance.now();
  const load0 = os.loadavg()[0]!;
  const pairs: Pair[] = [];
  let ok = false;
  try {
    pairs.push(await pair('off'));
    pairs.push(await pair('on'));
    const on = pairs[1]!;
    const runs: Run[] = [];
    for (const p of pairs) runs.push(await applyRun(p, 'fresh', 0));
    const prefillAt = Date.now();
    const prefillBytes = (await status(on.b)).history!.bytes;
    for (let i = 1; i <= RUNS; i++) for (const p of pairs) runs.push(await applyRun(p, 'overwrite', i));
    // Many restore points: 4 KiB random writes, each followed by a flush (a barrier each), applied as they come.
    let flushed = 0;
    if (POINTS_SECONDS > 0) {
      await drained(on);
      const p0 = (await status(on.b)).history!.points;
      fio(`nbd://127.0.0.1:${on.a.nbd}/db`, ['--rw=randwrite', '--bs=4k', '--iodepth=1', '--fsync=1', `--size=${VOLUME_MIB}m`,
        '--time_based', `--runtime=${POINTS_SECONDS}`]);
      await drained(on);
      flushed = (await status(on.b)).history!.points - p0;
      console.log(`${flushed} restore points from ${POINTS_SECONDS} s of flushed 4 KiB writes`);
    }
    const open = await openFarPoint(on, prefillAt, prefillBytes);
    console.log(JSON.stringify(open));
    const minutes = (performance.now() - began) / 60000;
    writeSection('history', report(runs, open, flushed, minutes, [load0, os.loadavg()[0]!]));
    ok = true;
  } finally {
    for (const p of pairs) {
      const exits = [p.a, p.b].map((s) => s.proc?.exitCode ?? s.proc?.signalCode ?? null);
      // (A daemon that has exited is not waited for.)
      for (const s of [p.a, p.b]) if (s.proc && (s.proc.exitCode !== null || s.proc.signalCode !== null)) s.proc = null;
      await stop(p.a);
      await stop(p.b);
      // (Kept after a failure, with the daemons' logs: site-a.yaml.log, site-b.yaml.log.)
      if (ok && !process.env.HISTORY_KEEP) fs.rmSync(p.dir, { recursive: true, force: true });
      else console.error(`history ${p.name}: ${p.dir} kept (daemons' exit codes before the stop: ${exits.join(', ')})`);
    }
  }
}

function report(runs: Run[], o: Open, flushed: number, minutes: number, load: number[]): string {
  const rate = (rs: Run[]): number => rs.reduce((n, r) => n + r.queued, 0) / MB / rs.reduce((n, r) => n + r.appliedS, 0);
  const of = (pair: Run['pair'], w: Run['workload']): Run[] => runs.filter((r) => r.pair === pair && r.workload === w);
  const mb = (x: number): string => `${(x / MB).toFixed(0)} MB`;
  const rows = runs.map((r) => `| ${r.workload} | ${r.pair} | ${mb(r.hostBytes)} | ${mb(r.queued)} | ${r.appliedS.toFixed(1)} s ` +
    `| **${(r.queued / MB / r.appliedS).toFixed(0)} MB/s** | ${r.pair === 'on' ? `${mb(r.historyBytes)} (${r.points} points)` : '-'} ` +
    `| ${r.pair === 'on' ? (r.historyBytes / r.hostBytes).toFixed(r.workload === 'fresh' ? 5 : 3) : '-'} | ${(100 * r.cpu).toFixed(0)}% ` +
    `| ${mb(r.disk.readBytes)} / ${mb(r.disk.writtenBytes)} / ${r.disk.flushes} |`);
  const ratio = (w: Run['workload']): string => (rate(of('on', w)) / rate(of('off', w))).toFixed(2);
  const ms = (x: number): string => `${x.toFixed(0)} ms`;
  const three = [o.cliColdMs, o.cliWarmMs, o.apiWarmMs].map((x) => (x / 1000).toFixed(1)).join(', ');
  const readRate = (s: number): string => `${s.toFixed(1)} s (${(VOLUME_MIB * MiB / MB / s).toFixed(0)} MB/s)`;
  return `## History at the secondary: the apply with history off and on, its size, opening a point far back

\`npm run bench:history\` (HISTORY_VOLUME_GIB=${VOLUME_GIB}, HISTORY_GIB=${GIB}, HISTORY_RUNS=${RUNS}, HISTORY_POINTS_SECONDS=${POINTS_SECONDS}; ` +
  `the whole bench: ${minutes.toFixed(1)} min)

${machineLine()}; load average (1 min) ${load.map((x) => x.toFixed(1)).join(' at the start, ')} at the end
(other work shares the machine). Two pairs on this machine over loopback TLS, compression
and coalescing off (every record is applied), the same but for
\`history: { keep: 24h, max: 50GiB }\` on site-b's volume of ${VOLUME_GIB} GiB; all four daemons,
the journals, the receive logs, the replicas and the history on the one disk. The apply
is timed alone: a checkpoint held at site-b while fio writes at site-a (nbd engine,
random data, a flush at the end of the job: \`--end_fsync=1\`) until site-a's backlog is
acked (site-b holds it all in its receive log); then the release, and the clock runs
until site-b's backlog is applied and no unit is open. **fresh**: the sparse volume
written once (1 MiB sequential writes); **overwrite**: ${GIB} GiB of random 64 KiB..1 MiB
writes over the whole written volume (each pass of fio's random map overwrites every
block); runs alternated between the pairs. The primary closed an epoch about each
second, each a restore point. Disk: what the kernel counted for the disk during the
apply (read / written / flushes; the whole machine's traffic to it).

| workload | history | host wrote | applied (records) | applied in | apply rate | history grew by | history bytes per host byte ` +
  `| CPU site-b | disk read / written / flushes |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Apply rate with history on against off (all runs of a workload, bytes over seconds):
overwrite **${ratio('overwrite')}x** (${rate(of('on', 'overwrite')).toFixed(0)} against ${rate(of('off', 'overwrite')).toFixed(0)} MB/s; ` +
  `the target of issue 20 is at least 0.7x), fresh ${ratio('fresh')}x (fresh writes save heads alone; one run
each, and the fresh run with history off varies most: 320 to 600 MB/s in the eight runs of the
comparison below, 0.37 to 0.86x before the change and 0.30 to 0.59x after it, with history on
191 to 277 MB/s before and 155 to 252 after; 1.01x in a run of the same day on a quieter machine).

Opening a point far back. A day back cannot be waited for in a bench; what an open
costs is the history after the point (its entry heads are read from the point's
marker to the end), so the point is one with much history after it: the last point of
the fresh writes (record ${o.seq}), with ${o.pointsAfter} of the ${o.pointsTotal} restore points after it (${flushed} of them
from ${POINTS_SECONDS} s of 4 KiB writes each followed by a flush) and ${mb(o.bytesAfter)} of history written
after it, ${o.heads} entry heads (${mb(o.heads * 40)} of heads). The same reads the daemon makes (heads
files, src/history/heads.ts; a scan of the newest segment, scan.ts), made by the bench over the same
files afterwards, read ${mb(o.scanReadBytes)} (${ms(o.scanMs)}, warm).

| | time |
| --- | ---: |
| \`offsite checkpoint create db --at <that point>\`, the history and the replica dropped from the page cache | **${ms(o.cliColdMs)}** |
| the same, warm | ${ms(o.cliWarmMs)} |
| of which Node.js starting the CLI (\`offsite --version\`) | ${ms(o.cliStartMs)} |
| the API call alone (\`POST …/checkpoint\` with \`at\`), warm | ${ms(o.apiWarmMs)} |
| the API call for a point of now (\`at: "now"\`: nothing to scan), warm | ${ms(o.apiNowMs)} |
| the first 4 MiB of db@checkpoint (qemu-io \`read 0 4M\`, cold; the process / qemu-io's own figure) | ${ms(o.read4Ms)} / ${ms(o.read4QemuMs)} |
| the whole ${VOLUME_GIB} GiB of db@checkpoint, nbdcopy to null, cold | ${readRate(o.pointReadS)} |
| the whole replica (db at site-b now), nbdcopy to null, cold | ${readRate(o.replicaReadS)} |

What bounds each figure. This two-core machine runs fio, both daemons of the pair
being measured (and the two idle ones of the other), and whatever else runs on it; the
one disk (virtio: "cold" is this VM's page cache dropped, the host's may still hold the
bytes) takes every byte the primary journals and the secondary receives and applies.
**Apply rate**: with history off, the apply writes the replica through the page cache
and syncs once per unit (up to 64 MiB), in reads of 1 MiB of the receive log; with history on,
in reads of 4 MiB (HISTORY_APPLY_READ_BYTES), each first has what it overwrites read from
the replica (from the page cache here: the volume is small next to the RAM) and appended
to the history, then fsynced, then written to the replica; three reads run at once (one
written, the next's history sync, the one after read and saved; docs/HISTORY.md): twice
the bytes written (the disk column) and one history flush per 4 MiB applied. So the apply
with history is bound by the one disk taking both streams and by the main thread (the
history's appends are synchronous writes into the page cache, and the receive log's
reads and CRC checks, which both runs pay, are on it too). Before this bench's changes
of 2026-12-03 (the same bench, a history sync per 1 MiB and one read after the other, a
zero-filled buffer allocated per range saved, two file-system calls per saved piece to
find holes) it was 0.32-0.46x; with one read written while the next was saved and
synced, 0.66x. Where that went (a run of the same day with the apply's steps timed, the
profile agreeing): of each second of the apply with history on, about 0.55-0.7 s was
the next read's saving (the main thread reading the replica's page cache, the CRC,
the appends) and its fsync, one after the other, while the write of the read before
ended early and waited; the fsync was 40-50% of it. Now that fsync runs while the next
read is read and saved. Same-run comparisons, interleaved (the build before this change
and this one, four runs each of this bench with HISTORY_RUNS=2 on a shared machine):
0.72, 0.67, 0.80, 0.64x before; 0.89, 0.66 (another job read 1 GB from the disk
during it), 0.97, 0.95x after. Appending on the thread pool instead (so the next
piece is read while the last is written) was tried and was slower here (7.9 and 9.9 s
against 6.8 and 6.5 s, two runs each): its buffers stay out until their writes land,
and the collector came back. The dirty pages of the run before are written out (\`sync\`) before each timed apply.
**History bytes per host byte**:
about 1 for overwrites (a range is saved once per restore point; with points a second
apart nearly every overwrite is the first since its point), about 0 for fresh writes
(a hole is saved as a 40-byte head per MiB at most; the rest is point markers).
**Opening a point** reads the heads from its marker to the end and builds a map of the
ranges saved since (at most HISTORY_VIEW_EXTENTS_MAX; a point further back is refused).
Its time follows the bytes read to find the heads: each sealed segment's heads are in a
heads file of their own (40 bytes per saved range), and only the newest segment is
scanned (in chunks of HISTORY_SCAN_BYTES while entries are small, the next head alone
after a large entry), so the open reads ${mb(o.scanReadBytes)} for ${mb(o.heads * 40)} of heads, not the
saved bytes; the map is kept in blocks of 512 ranges, so a range put anywhere moves one
block. (The same day, before the heads files, the same open took 2.0 s cold: the scan
read 318 MB among 4.4 GB of history; before the chunked scan and the block map, 9.5 s.)
The same point opened three times in a row (the two
CLI rows, then the API call) took ${three} s: Node.js's start is ${ms(o.cliStartMs)} of it,
the rest varies from one open to the next (the last was the fastest in every run of
the day). **Reading a past point** reads each range from the history where it
was overwritten since the point, else from the replica.
`;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
