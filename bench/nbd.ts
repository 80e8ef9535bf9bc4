// npm run bench:nbd: fio's nbd engine against offsite, qemu-nbd (writeback; none+native
// aio) and nbdkit's file plugin, on the same backing file, interleaved in one run.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fio, median, settleImage, waitPort, type FioJob } from './fio.js';
import { machineLine, writeSection } from './report.js';

const RUNTIME = Number(process.env.BENCH_RUNTIME ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const root = path.resolve(new URL('../..', import.meta.url).pathname);
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-'));
const image = path.join(dir, 'disk.img');
const SIZE = 1024 ** 3;

interface Server {
  name: string;
  start(port: number): ChildProcess;
}

const servers: Server[] = [
  {
    name: 'offsite',
    start(port) {
      const cfg = path.join(dir, 'offsite.yaml');
      fs.writeFileSync(cfg, `node: bench\nstate: ./state\nnbd: 127.0.0.1:${port}\nvolumes:\n  disk:\n    path: ${image}\n    role: primary\n`);
      return spawn(process.execPath, [path.join(root, 'bin/offsite.js'), 'daemon', '-c', cfg], {
        stdio: 'ignore', env: { ...process.env, OFFSITE_LOG_LEVEL: 'warn' },
      });
    },
  },
  {
    name: 'qemu-nbd writeback',
    start: (port) => spawn('qemu-nbd', [
      '-f', 'raw', '-x', 'disk', '-b', '127.0.0.1', '-p', String(port), '--cache=writeback', '-e', '8', '--persistent', image,
    ], { stdio: 'ignore' }),
  },
  {
    name: 'qemu-nbd none+native',
    start: (port) => spawn('qemu-nbd', [
      '-f', 'raw', '-x', 'disk', '-b', '127.0.0.1', '-p', String(port), '--cache=none', '--aio=native', '-e', '8', '--persistent', image,
    ], { stdio: 'ignore' }),
  },
  {
    name: 'nbdkit file',
    start: (port) => spawn('nbdkit', ['-f', '-i', '127.0.0.1', '-p', String(port), '-e', 'disk', 'file', image], { stdio: 'ignore' }),
  },
];

const jobs: Array<FioJob & { label: string; unit: 'iops' | 'mbps' }> = [
  { label: '4k randwrite QD32 (IOPS)', unit: 'iops', name: 'rw4k', rw: 'randwrite', bs: '4k', iodepth: 32, size: '1G' },
  { label: '1M seqwrite QD8 (MB/s)', unit: 'mbps', name: 'seq1m', rw: 'write', bs: '1M', iodepth: 8, size: '1G' },
  { label: '4k randread QD32 (IOPS)', unit: 'iops', name: 'rr4k', rw: 'randread', bs: '4k', iodepth: 32, size: '1G' },
  { label: '1M seqread QD8 (MB/s)', unit: 'mbps', name: 'seqr1m', rw: 'read', bs: '1M', iodepth: 8, size: '1G' },
];

async function main(): Promise<void> {
  // A fully written backing file, so reads hit real data and writes overwrite.
  execFileSync('dd', ['if=/dev/urandom', `of=${image}`, 'bs=1M', `count=${SIZE >> 20}`, 'status=none']);
  const results = new Map<string, number[]>();
  let port = 20000 + Math.floor(Math.random() * 20000);
  for (let round = 0; round < ROUNDS; round++) {
    for (const job of jobs) {
      for (const s of servers) {
        const p = port++;
        settleImage(image, SIZE);
        const child = s.start(p);
        await waitPort(p);
        const uri = `nbd://127.0.0.1:${p}/disk`;
        const r = fio(uri, job, RUNTIME);
        child.kill('SIGTERM');
        await new Promise((res) => child.once('exit', res));
        const v = job.unit === 'iops' ? r.iops : r.mbps;
        const key = `${job.label}|${s.name}`;
        results.set(key, [...(results.get(key) ?? []), v]);
        console.log(`round ${round + 1} ${job.label} ${s.name}: ${v.toFixed(0)}`);
      }
    }
  }
  const head = `| workload | ${servers.map((s) => s.name).join(' | ')} | offsite / qemu-nbd wb | offsite / nbdkit |`;
  const sep = `| --- | ${servers.map(() => '---:').join(' | ')} | ---: | ---: |`;
  const rows = jobs.map((j) => {
    const v = servers.map((s) => median(results.get(`${j.label}|${s.name}`)!));
    return `| ${j.label} | ${v.map((x) => x.toFixed(0)).join(' | ')} | ${(v[0]! / v[1]!).toFixed(2)}x | ${(v[0]! / v[3]!).toFixed(2)}x |`;
  });
  const md = `## NBD export: offsite beside qemu-nbd and nbdkit

\`npm run bench:nbd\` (BENCH_RUNTIME=${RUNTIME} s per run, BENCH_ROUNDS=${ROUNDS}, median shown; servers interleaved per workload)

${machineLine()}. fio ${execFileSync('fio', ['--version'], { encoding: 'utf8' }).trim()} with its nbd engine, one connection, ` +
  `on a 1 GiB fully written file on the same ext4 filesystem, ` +
  `written back and read whole into the page cache before every run (each server starts from the same cache).

${head}
${sep}
${rows.join('\n')}
`;
  writeSection('nbd', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
