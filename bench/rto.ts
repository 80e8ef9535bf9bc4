// npm run bench:rto: recovery time. The primary is killed (-9); the clock starts when
// `promote` is asked of the secondary (through the API, or through the CLI as an
// operator types it, on alternate runs) and stops at the first NBD write the promoted
// export acknowledges (qemu-io, started right after the answer). Beside it, in the
// same run, the time from starting a qemu-nbd on a copy of the same image to its
// first acknowledged write (qemu-io retried until the server listens). Median of runs;
// between runs the killed node comes back, is demoted and resyncs, and the roles swap.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, waitPort } from './fio.js';
import { machineLine, writeSection } from './report.js';
import { action, bin, drained, kill9, makeSites, start, until, vol } from './sites.js';

const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-rto-'));
const base = 22000 + Math.floor(Math.random() * 20000);
const RUNS = Number(process.env.RTO_RUNS ?? 5);

/** One 4 KiB write through qemu-io; true when acknowledged. */
function write(port: number): boolean {
  return spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 4k', `nbd://127.0.0.1:${port}/db`], { stdio: 'ignore' }).status === 0;
}

async function main(): Promise<void> {
  const sites = makeSites(dir, base, 'size: 256MiB, journal: 64MiB');
  execFileSync('truncate', ['-s', '256M', path.join(dir, 'site-a.img')]);
  execFileSync('dd', ['if=/dev/urandom', `of=${path.join(dir, 'site-a.img')}`, 'bs=1M', 'count=64', 'conv=notrunc', 'status=none']);
  for (const s of sites) start(s);
  await Promise.all(sites.map((s) => waitPort(s.api)));

  const offsite: number[] = [];
  const answered: number[] = [];
  const cliWrite: number[] = [];
  const cliAnswered: number[] = [];
  let primary = 0;
  for (let run = 0; run < 2 * RUNS; run++) {
    const [p, s] = [sites[primary]!, sites[1 - primary]!];
    const viaCli = run % 2 === 1;
    await drained(p, s);
    await kill9(p);
    await until(async () => (await vol(s))?.link === 'disconnected');
    const t0 = performance.now();
    if (viaCli) {
      // What the operator types: the command's own start is part of the recovery time.
      const r = spawnSync(process.execPath, [bin, 'promote', 'db', '-c', s.cfg], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`offsite promote on ${s.name}: ${r.stderr}`);
      cliAnswered.push(performance.now() - t0);
    } else {
      await action(s, 'promote');
      answered.push(performance.now() - t0);
    }
    while (!write(s.nbd)) { /* retried until acknowledged */ }
    (viaCli ? cliWrite : offsite).push(performance.now() - t0);
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
times the promote and a qemu-io 4 KiB write on the promoted export, started as soon
as the promote answers. The promote goes through \`POST /api/v1/volumes/db/promote\`
and, on alternate runs, through \`offsite promote db\` as an operator types it (the
command's start, config load and API call included). Between runs the killed node
restarts, is demoted, resyncs by hash, and the roles swap. Beside it: starting a
qemu-nbd on a copy of the image and retrying the same qemu-io write until it is
acknowledged. Median of ${RUNS} runs (qemu-io's own start, about 20 ms, is in both columns).

| | median | runs |
| --- | ---: | --- |
| API: promote answered | ${ms(median(answered))} | ${answered.map(ms).join(', ')} |
| API: promote to first acknowledged write | ${ms(median(offsite))} | ${offsite.map(ms).join(', ')} |
| CLI: \`offsite promote db\` answered | ${ms(median(cliAnswered))} | ${cliAnswered.map(ms).join(', ')} |
| CLI: \`offsite promote db\` to first acknowledged write | ${ms(median(cliWrite))} | ${cliWrite.map(ms).join(', ')} |
| qemu-nbd start to first acknowledged write | ${ms(median(qemu))} | ${qemu.map(ms).join(', ')} |

The target is under 0.3 s from the operator's command to the first served write.
`;
  writeSection('rto', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
