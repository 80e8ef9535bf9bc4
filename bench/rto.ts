// npm run bench:rto: recovery time. The primary is killed (-9); the clock starts when
// `promote` is asked of the secondary and stops at the first NBD write the promoted
// export acknowledges (qemu-io, started right after the answer). Beside it, in the
// same run, the time from starting a qemu-nbd on a copy of the same image to its
// first acknowledged write (qemu-io retried until the server listens). Median of runs;
// between runs the killed node comes back, is demoted and resyncs, and the roles swap.
import { spawn, execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, waitPort } from './fio.js';
import { machineLine, writeSection } from './report.js';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const bin = path.join(root, 'bin/offsite.js');
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-rto-'));
const base = 22000 + Math.floor(Math.random() * 20000);
const RUNS = Number(process.env.RTO_RUNS ?? 5);

interface Site { name: string; cfg: string; nbd: number; api: number; proc: ChildProcess | null }
const sites: Site[] = ['site-a', 'site-b'].map((name, i) => ({ name, cfg: path.join(dir, `${name}.yaml`), nbd: base + i, api: base + 4 + i, proc: null }));

function config(me: number): string {
  const s = sites[me]!;
  const peer = sites[1 - me]!;
  return `node: ${s.name}\nstate: ./state-${s.name}\nnbd: 127.0.0.1:${s.nbd}\nlink: 127.0.0.1:${base + 2 + me}\napi: 127.0.0.1:${s.api}\n` +
    `peers:\n  ${peer.name}: { address: "127.0.0.1:${base + 3 - me}", fingerprint: "FP", timeout: 2s }\n` +
    `volumes:\n  db: { path: ./${s.name}.img, size: 256MiB, role: ${me === 0 ? 'primary' : 'secondary'}, peer: ${peer.name}, journal: 64MiB }\n`;
}

function start(s: Site): void {
  const out = fs.openSync(`${s.cfg}.log`, 'a');
  s.proc = spawn(process.execPath, [bin, 'daemon', '-c', s.cfg], { stdio: ['ignore', out, out] });
}

async function kill9(s: Site): Promise<void> {
  const p = s.proc!;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await done;
  s.proc = null;
}

interface Vol { link: string; role: string; backlogBytes: number; resyncing: boolean; consistent: boolean }
async function vol(s: Site): Promise<Vol | null> {
  try {
    return ((await (await fetch(`http://127.0.0.1:${s.api}/api/v1/status`)).json()) as { volumes: Vol[] }).volumes[0]!;
  } catch {
    return null;
  }
}

async function until(f: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 6000 && !(await f()); i++) await new Promise((r) => setTimeout(r, 50));
}

async function action(s: Site, act: string, body: object = {}): Promise<string> {
  const token = fs.readFileSync(path.join(dir, `state-${s.name}`, 'api.token'), 'utf8').trim();
  const r = await fetch(`http://127.0.0.1:${s.api}/api/v1/volumes/db/${act}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  const j = (await r.json()) as { message?: string; error?: string };
  if (!r.ok) throw new Error(`${act} on ${s.name}: ${j.error}`);
  return j.message!;
}

/** One 4 KiB write through qemu-io; true when acknowledged. */
function write(port: number): boolean {
  return spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 4k', `nbd://127.0.0.1:${port}/db`], { stdio: 'ignore' }).status === 0;
}

async function main(): Promise<void> {
  sites.forEach((s, i) => fs.writeFileSync(s.cfg, config(i)));
  const fp = (s: Site): string => execFileSync(process.execPath, [bin, 'init', '-c', s.cfg], { encoding: 'utf8' }).trim().split('\n').pop()!;
  const [fa, fb] = [fp(sites[0]!), fp(sites[1]!)];
  fs.writeFileSync(sites[0]!.cfg, fs.readFileSync(sites[0]!.cfg, 'utf8').replace('"FP"', `"${fb}"`));
  fs.writeFileSync(sites[1]!.cfg, fs.readFileSync(sites[1]!.cfg, 'utf8').replace('"FP"', `"${fa}"`));
  execFileSync('truncate', ['-s', '256M', path.join(dir, 'site-a.img')]);
  execFileSync('dd', ['if=/dev/urandom', `of=${path.join(dir, 'site-a.img')}`, 'bs=1M', 'count=64', 'conv=notrunc', 'status=none']);
  for (const s of sites) start(s);
  await Promise.all(sites.map((s) => waitPort(s.api)));

  const offsite: number[] = [];
  const answered: number[] = [];
  let primary = 0;
  for (let run = 0; run < RUNS; run++) {
    const [p, s] = [sites[primary]!, sites[1 - primary]!];
    await until(async () => {
      const [a, b] = [await vol(p), await vol(s)];
      return Boolean(a && b && a.role === 'primary' && a.link === 'connected' && a.backlogBytes === 0 && !a.resyncing && b.consistent && !b.resyncing);
    });
    await kill9(p);
    await until(async () => (await vol(s))?.link === 'disconnected');
    const t0 = performance.now();
    await action(s, 'promote');
    answered.push(performance.now() - t0);
    while (!write(s.nbd)) { /* retried until acknowledged */ }
    offsite.push(performance.now() - t0);
    // The old primary returns and fails back as the secondary.
    start(p);
    await waitPort(p.api);
    await action(p, 'demote');
    primary = 1 - primary;
  }

  // The peer: qemu-nbd started on a copy of the same image, to its first acknowledged write.
  const copy = path.join(dir, 'qemu.img');
  execFileSync('cp', ['--sparse=always', path.join(dir, 'site-a.img'), copy]);
  const qemu: number[] = [];
  const qport = base + 9;
  for (let run = 0; run < RUNS; run++) {
    const t0 = performance.now();
    const q = spawn('qemu-nbd', ['-f', 'raw', '-x', 'db', '-b', '127.0.0.1', '-p', String(qport), '-t', copy], { stdio: 'ignore' });
    while (!write(qport)) { /* retried until qemu-nbd listens */ }
    qemu.push(performance.now() - t0);
    const done = new Promise((r) => q.once('exit', r));
    q.kill('SIGTERM');
    await done;
  }
  for (const s of sites) if (s.proc) await kill9(s);

  const ms = (x: number): string => `${Math.round(x)} ms`;
  const md = `## Recovery time: promote to the first acknowledged write

\`npm run bench:rto\`

${machineLine()}. A 256 MiB volume with 64 MiB of data, both sites on this machine.
Each run kills the primary (-9), waits for the secondary to see the link down, then
times \`POST /api/v1/volumes/db/promote\` and a qemu-io 4 KiB write on the promoted
export, started as soon as the promote answers. Between runs the killed node
restarts, is demoted, resyncs by hash, and the roles swap. Beside it: starting a
qemu-nbd on a copy of the image and retrying the same qemu-io write until it is
acknowledged. Median of ${RUNS} runs (qemu-io's own start, about 20 ms, is in both columns).

| | median | runs |
| --- | ---: | --- |
| offsite promote answered | ${ms(median(answered))} | ${answered.map(ms).join(', ')} |
| offsite promote to first acknowledged write | ${ms(median(offsite))} | ${offsite.map(ms).join(', ')} |
| qemu-nbd start to first acknowledged write | ${ms(median(qemu))} | ${qemu.map(ms).join(', ')} |

The target was under 1 s from the command to the first served write.
`;
  writeSection('rto', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
