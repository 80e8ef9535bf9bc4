// npm run bench:iscsi: offsite's iSCSI target beside tgt (Debian's user-space target)
// serving the same backing file, interleaved in one run, with libiscsi initiators:
// - 4 KiB random writes at queue depth 32: fio's nbd engine through qemu-nbd over
//   qemu's iscsi driver (fio has no libiscsi engine; the chain is the same for both);
// - 1 MiB sequential writes, 8 in flight: qemu-img bench over iscsi:// (libiscsi direct);
// - 4 KiB random reads at queue depth 32: libiscsi's iscsi-perf (direct).
// Needs root (tgtd) and the packages tgt, libiscsi-bin, qemu-block-extra, fio.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fio, median, settleImage, waitPort } from './fio.js';
import { machineLine, writeSection } from './report.js';

const RUNTIME = Number(process.env.BENCH_RUNTIME ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const root = path.resolve(new URL('../..', import.meta.url).pathname);
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-iscsi-'));
const image = path.join(dir, 'disk.img');
const SIZE = 1024 ** 3;
const INITIATOR = 'iqn.2026-12.bench:initiator';

interface Target {
  name: string;
  /** Starts the target on `port`; returns the process and the target name and LUN to use. */
  start(port: number): Promise<{ child: ChildProcess; iqn: string; lun: number }>;
}

const targets: Target[] = [
  {
    name: 'offsite',
    async start(port) {
      const cfg = path.join(dir, 'offsite.yaml');
      fs.writeFileSync(cfg, `node: bench\nstate: ./state\nnbd: 127.0.0.1:${port + 1}\n` +
        `iscsi: { listen: "127.0.0.1:${port}", iqn: iqn.2026-12.bench:offsite }\nvolumes:\n  disk:\n    path: ${image}\n    role: primary\n`);
      const child = spawn(process.execPath, [path.join(root, 'bin/offsite.js'), 'daemon', '-c', cfg], {
        stdio: 'ignore', env: { ...process.env, OFFSITE_LOG_LEVEL: 'warn' },
      });
      await waitPort(port);
      return { child, iqn: 'iqn.2026-12.bench:offsite:disk', lun: 0 };
    },
  },
  {
    name: 'tgt',
    async start(port) {
      const control = String(port % 10000);
      const child = spawn('tgtd', ['-f', '-C', control, '--iscsi', `portal=127.0.0.1:${port}`], { stdio: 'ignore' });
      await waitPort(port);
      const adm = (...args: string[]): void => { execFileSync('tgtadm', ['-C', control, '--lld', 'iscsi', ...args]); };
      adm('--op', 'new', '--mode', 'target', '--tid', '1', '-T', 'iqn.2026-12.bench:tgt');
      adm('--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', image);
      adm('--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL');
      return { child, iqn: 'iqn.2026-12.bench:tgt', lun: 1 };
    },
  },
];

function imageOpts(port: number, iqn: string, lun: number): string {
  return `driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:${port},file.target=${iqn},file.lun=${lun},file.initiator-name=${INITIATOR}`;
}

interface Job { label: string; run(port: number, iqn: string, lun: number, nbdPort: number): Promise<number> }

const jobs: Job[] = [
  {
    label: '4k randwrite QD32, fio via qemu-nbd (IOPS)',
    async run(port, iqn, lun, nbdPort) {
      const q = spawn('qemu-nbd', [
        '--image-opts', '-x', 'disk', '-b', '127.0.0.1', '-p', String(nbdPort), '--cache=none', '-e', '8', '--persistent', imageOpts(port, iqn, lun),
      ], { stdio: 'ignore' });
      try {
        await waitPort(nbdPort);
        return fio(`nbd://127.0.0.1:${nbdPort}/disk`, { name: 'rw4k', rw: 'randwrite', bs: '4k', iodepth: 32, size: '1G' }, RUNTIME).iops;
      } finally {
        q.kill('SIGTERM');
        await new Promise((r) => q.once('exit', r));
      }
    },
  },
  {
    label: '1M seqwrite QD8, qemu-img bench (MB/s)',
    async run(port, iqn, lun) {
      const count = 1024;
      const t0 = process.hrtime.bigint();
      execFileSync('qemu-img', [
        'bench', '-w', '-t', 'none', '-c', String(count), '-d', '8', '-s', '1M', '--image-opts', imageOpts(port, iqn, lun),
      ], { stdio: 'ignore' });
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      return (count * 1024 * 1024) / s / 1e6;
    },
  },
  {
    label: '4k randread QD32, iscsi-perf (IOPS)',
    async run(port, iqn, lun) {
      const out = execFileSync('iscsi-perf', [
        '-i', INITIATOR, '-m', '32', '-b', '8', '-r', '-t', String(RUNTIME), `iscsi://127.0.0.1:${port}/${iqn}/${lun}`,
      ], { encoding: 'utf8' });
      const m = /iops average (\d+)[^\n]*\n*\s*finished/.exec(out) ?? [...out.matchAll(/iops average (\d+)/g)].pop();
      if (!m) throw new Error(`iscsi-perf printed no average: ${out.slice(-300)}`);
      return Number(m[1]);
    },
  },
];

async function main(): Promise<void> {
  execFileSync('dd', ['if=/dev/urandom', `of=${image}`, 'bs=1M', `count=${SIZE >> 20}`, 'status=none']);
  const results = new Map<string, number[]>();
  let port = 20000 + Math.floor(Math.random() * 20000);
  for (let round = 0; round < ROUNDS; round++) {
    for (const job of jobs) {
      for (const t of targets) {
        const p = port;
        port += 3;
        settleImage(image, SIZE);
        const { child, iqn, lun } = await t.start(p);
        try {
          const v = await job.run(p, iqn, lun, p + 2);
          results.set(`${job.label}|${t.name}`, [...(results.get(`${job.label}|${t.name}`) ?? []), v]);
          console.log(`round ${round + 1} ${job.label} ${t.name}: ${v.toFixed(0)}`);
        } finally {
          // tgtd does not leave on SIGTERM while it has targets (tgtadm would have to take them down first).
          child.kill(t.name === 'tgt' ? 'SIGKILL' : 'SIGTERM');
          await new Promise((r) => child.once('exit', r));
        }
      }
    }
  }
  const rows = jobs.map((j) => {
    const v = targets.map((t) => median(results.get(`${j.label}|${t.name}`)!));
    return `| ${j.label} | ${v.map((x) => x.toFixed(0)).join(' | ')} | ${(v[0]! / v[1]!).toFixed(2)}x |`;
  });
  const md = `## iSCSI target: offsite beside tgt

\`npm run bench:iscsi\` (as root; BENCH_RUNTIME=${RUNTIME} s per run, ${ROUNDS} rounds, median shown). ${machineLine()}.
Both targets serve the same 1 GiB file of random data on this machine's disk, over loopback,
to the same libiscsi initiators in the same run. offsite serves a plain volume (no peer, so
no journal): the figure bounds the iSCSI front end and the logical unit, not replication.
tgt runs with its defaults (rdwr backing store, write cache on). Before every run the file
is written back and read whole, so each target starts from the same page cache.

| workload | offsite | tgt | offsite / tgt |
| --- | ---: | ---: | ---: |
${rows.join('\n')}

What bounds each figure: the 4 KiB random-write chain is fio → qemu-nbd → libiscsi → target,
the same for both, so the ratio is the targets' difference under a common ceiling; the
sequential writes and random reads are libiscsi straight to the target. Everything shares 2 cores.
`;
  writeSection('iscsi', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
