// npm run bench:replication: the host write path with replication on (to a second
// site over loopback TLS) beside qemu-nbd --cache=writeback on the same kind of file,
// interleaved in one run.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fio, median, waitPort, type FioJob } from './fio.js';
import { machineLine, writeSection } from './report.js';

const RUNTIME = Number(process.env.BENCH_RUNTIME ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const root = path.resolve(new URL('../..', import.meta.url).pathname);
const bin = path.join(root, 'bin/offsite.js');
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-repl-'));
const base = 22000 + Math.floor(Math.random() * 20000);
const P = { nbdA: base, nbdB: base + 1, linkA: base + 2, linkB: base + 3, qemu: base + 4, apiA: base + 5, apiB: base + 6 };

const jobs: Array<FioJob & { label: string; unit: 'iops' | 'mbps' }> = [
  { label: '4k randwrite QD32 (IOPS)', unit: 'iops', name: 'rw4k', rw: 'randwrite', bs: '4k', iodepth: 32, size: '1G' },
  { label: '1M seqwrite QD8 (MB/s)', unit: 'mbps', name: 'seq1m', rw: 'write', bs: '1M', iodepth: 8, size: '1G' },
];

function site(me: string, peer: string, nbd: number, link: number, peerLink: number, role: string, api: number): string {
  return `node: ${me}\nstate: ./state-${me}\nnbd: 127.0.0.1:${nbd}\nlink: 127.0.0.1:${link}\napi: 127.0.0.1:${api}\n` +
    `peers:\n  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FP" }\n` +
    `volumes:\n  db: { path: ./${me}.img, size: 1GiB, role: ${role}, peer: ${peer}, journal: 16GiB }\n`;
}

interface Row { backlogBytes: number; applying: unknown }

/** A volume's row, or null when the request failed (an idle kept-alive connection the daemon closed as it was reused: asked again). */
async function status(api: number): Promise<Row | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${api}/api/v1/status`, { headers: { connection: 'close' } });
    return ((await r.json()) as { volumes: Row[] }).volumes[0]!;
  } catch {
    return null;
  }
}

/**
 * Seconds from the end of a fio run at site-a until the pair holds it all: site-a's
 * backlog shipped and site-b's receive log applied (polled every 100 ms through the
 * API). The next run (qemu-nbd's too) starts only then, so no run shares the machine
 * with the replication of the one before it.
 */
async function drained(): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const a = await status(P.apiA);
    const b = await status(P.apiB);
    if (a && b && a.backlogBytes === 0 && b.backlogBytes === 0 && b.applying === null) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > 600_000) throw new Error(`the pair did not drain in 600 s: ${JSON.stringify({ a, b })}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const cfgA = path.join(dir, 'a.yaml');
  const cfgB = path.join(dir, 'b.yaml');
  fs.writeFileSync(cfgA, site('site-a', 'site-b', P.nbdA, P.linkA, P.linkB, 'primary', P.apiA));
  fs.writeFileSync(cfgB, site('site-b', 'site-a', P.nbdB, P.linkB, P.linkA, 'secondary', P.apiB));
  const fp = (cfg: string): string => execFileSync(process.execPath, [bin, 'init', '-c', cfg], { encoding: 'utf8' }).trim().split('\n').pop()!;
  const [fa, fb] = [fp(cfgA), fp(cfgB)];
  fs.writeFileSync(cfgA, fs.readFileSync(cfgA, 'utf8').replace('"FP"', `"${fb}"`));
  fs.writeFileSync(cfgB, fs.readFileSync(cfgB, 'utf8').replace('"FP"', `"${fa}"`));
  const env = { ...process.env, OFFSITE_LOG_LEVEL: 'warn' };
  const procs: ChildProcess[] = [
    spawn(process.execPath, [bin, 'daemon', '-c', cfgB], { stdio: 'ignore', env }),
    spawn(process.execPath, [bin, 'daemon', '-c', cfgA], { stdio: 'ignore', env }),
  ];
  const qemuImg = path.join(dir, 'qemu.img');
  execFileSync('truncate', ['-s', '1G', qemuImg]);
  procs.push(spawn('qemu-nbd', [
    '-f', 'raw', '-x', 'db', '-b', '127.0.0.1', '-p', String(P.qemu), '--cache=writeback', '-e', '8', '--persistent', qemuImg,
  ], { stdio: 'ignore' }));
  await Promise.all([waitPort(P.nbdA), waitPort(P.qemu)]);
  const targets = [
    { name: 'offsite, replicating', uri: `nbd://127.0.0.1:${P.nbdA}/db` },
    { name: 'qemu-nbd writeback', uri: `nbd://127.0.0.1:${P.qemu}/db` },
  ];
  const results = new Map<string, number[]>();
  /** Per job, the seconds each offsite run took to drain after fio ended. */
  const drains = new Map<string, number[]>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const job of jobs) {
        for (const t of targets) {
          const r = fio(t.uri, job, RUNTIME);
          const v = job.unit === 'iops' ? r.iops : r.mbps;
          const key = `${job.label}|${t.name}`;
          results.set(key, [...(results.get(key) ?? []), v]);
          const after = t === targets[0] ? await drained() : null;
          if (after !== null) drains.set(job.label, [...(drains.get(job.label) ?? []), after]);
          console.log(`round ${round + 1} ${job.label} ${t.name}: ${v.toFixed(0)}${after !== null ? ` (drained ${after.toFixed(1)} s after)` : ''}`);
        }
      }
    }
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
  }
  const rows = jobs.map((j) => {
    const on = median(results.get(`${j.label}|${targets[0]!.name}`)!);
    const q = median(results.get(`${j.label}|${targets[1]!.name}`)!);
    return `| ${j.label} | ${on.toFixed(0)} | ${q.toFixed(0)} | ${(on / q).toFixed(2)}x | ${median(drains.get(j.label)!).toFixed(1)} s |`;
  });
  const md = `## Host writes with replication on, beside qemu-nbd

\`npm run bench:replication\` (BENCH_RUNTIME=${RUNTIME} s per run, BENCH_ROUNDS=${ROUNDS}, median; interleaved)

${machineLine()}. fio nbd engine, one connection, a \`sync\` before every run. "offsite, replicating": site-a journals every write and ships it to site-b ` +
  `over loopback TLS while fio runs (both daemons on this 2-core machine, the journal and both volumes on one disk); qemu-nbd serves a plain file. ` +
  `After each offsite run the bench waits until site-a's backlog is shipped and site-b has applied it ("drained after": seconds from fio's end), so no run ` +
  `pays for the replication of the one before it.

| workload | offsite, replicating | qemu-nbd writeback | ratio | offsite drained after |
| --- | ---: | ---: | ---: | ---: |
${rows.join('\n')}

What bounds it here: each host byte is written four times on the one disk (site-a's
volume and journal, site-b's receive log and replica), and two daemons and fio share two
cores. With the sites on separate machines and the journal on its own disk
(\`journal_dir\`), the primary writes each byte twice, on two disks. Large writes: since
2026-12-06 the journal's and the receive log's appends of 256 KiB or more go
\`O_DIRECT\` (docs/JOURNAL.md, "Direct appends"), which took this row from 178 MB/s
(0.30x of qemu-nbd, 2026-12-05) to 386 MB/s (0.52x, 2026-12-07, while the bench did not
yet wait for the drain): the records no longer pass through page-cache pages made for
them, on either site. The "offsite, replicating" column is the rate the host wrote at,
not the rate the pair replicated at: for 1 MiB writes the backlog drains long after fio
ends (the last column), a rate this page's prose says is open. Small writes: qemu-nbd writeback only
puts them in the page cache; offsite journals each at site-a (one ordered writer, a
thread-pool job per batch of records, and the epoch syncs that let records be released),
ships and acks it, and site-b writes it twice, with both daemons and fio on two cores
(docs/BENCHMARKS.md, "Journal on the write path", says what bounds the journal's writer).
`;
  writeSection('replication', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
