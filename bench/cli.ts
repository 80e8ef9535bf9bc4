// npm run bench:cli: how fast an operator's command answers. `offsite status` and
// `offsite checkpoint list` against a running daemon (one idle node on this machine),
// beside `node -e 0` (Node's own start, the floor) and `offsite --version` (the CLI's
// start without a config or a call). Median of runs; each is a whole process, start to exit.
import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, waitPort } from './fio.js';
import { machineLine, writeSection } from './report.js';
import { bin } from './sites.js';

const RUNS = Number(process.env.CLI_RUNS ?? 21);
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-cli-'));
const base = 22000 + Math.floor(Math.random() * 20000);

function time(args: string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    out.push(performance.now() - t0);
  }
  return out;
}

async function main(): Promise<void> {
  const cfg = path.join(dir, 'offsite.yaml');
  fs.writeFileSync(cfg, `node: site-a\nstate: ./state\nnbd: 127.0.0.1:${base}\napi: 127.0.0.1:${base + 1}\n` +
    'volumes:\n  db: { path: ./db.img, size: 64MiB, role: primary }\n');
  spawnSync(process.execPath, [bin, 'init', '-c', cfg]);
  const daemon = spawn(process.execPath, [bin, 'daemon', '-c', cfg], { stdio: 'ignore' });
  try {
    await waitPort(base + 1);
    const rows: Array<[string, number[]]> = [
      ['`node -e 0` (Node.js start, the floor)', time(['-e', '0'])],
      ['`offsite --version`', time([bin, '--version'])],
      ['`offsite status`', time([bin, 'status', '-c', cfg])],
      ['`offsite status --json`', time([bin, 'status', '--json', '-c', cfg])],
      ['`offsite checkpoint list`', time([bin, 'checkpoint', 'list', '-c', cfg])],
    ];
    const ms = (x: number): string => `${Math.round(x)} ms`;
    const md = `## Operator commands: start to answer

\`npm run bench:cli\`

${machineLine()}. One idle node on this machine (one 64 MiB volume, no peer). Each
command is a whole process, from spawn to exit, against the running daemon's API;
median of ${RUNS} runs. \`node -e 0\` is the floor: Node.js itself. What a command adds
is loading commander, the config (yaml, zod) and one HTTP call; the daemon's modules
(fastify, net-snmp, zstd workers) load only for \`offsite daemon\`. The target is 150 ms
on an idle machine.

| command | median | min | max |
| --- | ---: | ---: | ---: |
${rows.map(([name, t]) => `| ${name} | ${ms(median(t))} | ${ms(Math.min(...t))} | ${ms(Math.max(...t))} |`).join('\n')}
`;
    writeSection('cli', md);
    console.log(md);
  } finally {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const gone = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await gone;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
