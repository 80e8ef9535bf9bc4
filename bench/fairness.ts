// npm run bench:fairness: how a capped link is shared between volumes. A pair on this
// machine (test/helpers/fleet.ts) shares FAIR_VOLUMES volumes over one link capped at
// FAIR_RATE with compression off; every volume gets FAIR_MIB MiB of random data at
// once (qemu-img through its NBD export), and each volume's wire bytes
// (`wireBytes` in /api/v1/status) are sampled once a second. Printed per 10 s window:
// each volume's bytes, their spread around the mean, and Jain's fairness index
// ((sum x)^2 / (n * sum x^2): 1 when all are equal, 1/n when one takes everything).
// A second run gives three volumes weights 1, 2 and 4: their shares against 1/7, 2/7, 4/7.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { startFleet, type FleetVolume } from '../test/helpers/fleet.js';
import { must, sleep } from '../test/helpers/run.js';
import type { TestDaemon } from '../test/helpers/daemon.js';
import { machineLine, writeSection } from './report.js';

const VOLUMES = Number(process.env.FAIR_VOLUMES ?? 8);
const MIB = Number(process.env.FAIR_MIB ?? 16);
const RATE = process.env.FAIR_RATE ?? '16mbit';
const SECONDS = Number(process.env.FAIR_SECONDS ?? 30);
const WINDOW = 10;

export function jain(xs: number[]): number {
  const s = xs.reduce((a, b) => a + b, 0);
  const q = xs.reduce((a, b) => a + b * b, 0);
  return q === 0 ? 1 : (s * s) / (xs.length * q);
}

async function wire(d: TestDaemon): Promise<Map<string, number>> {
  const r = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`);
  const s = (await r.json()) as { volumes: Array<{ name: string; wireBytes: number }> };
  return new Map(s.volumes.map((v) => [v.name, v.wireBytes]));
}

interface Run { names: string[]; windows: Array<Map<string, number>> }

async function run(volumes: FleetVolume[], mib: number): Promise<Run> {
  const p = await startFleet({ volumes, size: `${Math.max(32, mib * 2)}MiB`, peerKeysA: `rate: ${RATE}, compression: off` });
  try {
    await p.drained(120_000);
    const file = `${p.a.dir}/random.bin`;
    fs.writeFileSync(file, crypto.randomBytes(mib << 20));
    const names = volumes.map((v) => v.name);
    const w0 = await wire(p.a);
    const writes = Promise.all(names.map((n) => must('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', file, p.a.uri(n)], { timeoutMs: 600_000 })));
    const samples: Array<Map<string, number>> = [w0];
    for (let t = 0; t < SECONDS; t++) {
      await sleep(1000);
      samples.push(await wire(p.a));
    }
    await writes;
    const windows: Array<Map<string, number>> = [];
    for (let t = 0; t + WINDOW < samples.length; t += WINDOW) {
      windows.push(new Map(names.map((n) => [n, samples[t + WINDOW]!.get(n)! - samples[t]!.get(n)!])));
    }
    return { names, windows };
  } finally {
    await p.stop();
  }
}

function describe(r: Run, weights: number[]): string[] {
  const lines: string[] = [];
  r.windows.forEach((w, i) => {
    const xs = r.names.map((n) => w.get(n)!);
    const norm = xs.map((x, k) => x / weights[k]!);
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
    const spread = mean === 0 ? 0 : Math.max(...norm.map((x) => Math.abs(x - mean) / mean));
    const total = xs.reduce((a, b) => a + b, 0);
    lines.push(`| ${i * WINDOW}-${(i + 1) * WINDOW} s | ${xs.map((x) => (x / 2 ** 20).toFixed(2)).join(' / ')} | ${total === 0 ? '-' : xs.map((x) => (x / total * 100).toFixed(1)).join(' / ')} | ${(spread * 100).toFixed(0)}% | ${jain(norm).toFixed(3)} |`);
  });
  return lines;
}

async function main(): Promise<void> {
  const equal = Array.from({ length: VOLUMES }, (_, i) => ({ name: `v${i + 1}` }));
  const r1 = await run(equal, MIB);
  const weighted = [1, 2, 4].map((w) => ({ name: `w${w}`, keysA: `weight: ${w}` }));
  const r2 = await run(weighted, MIB);
  const head = '| window | MiB sent per volume | share % | largest deviation from the mean (per weight) | Jain |\n| --- | --- | --- | --- | --- |';
  const md = [
    `\`npm run bench:fairness\`: ${VOLUMES} volumes of equal weight, then weights 1:2:4, each given ${MIB} MiB of random data at once, on a link capped at ${RATE} with compression off (${machineLine()}).`,
    '',
    `${VOLUMES} equal volumes:`,
    '',
    head, ...describe(r1, equal.map(() => 1)),
    '',
    'Weights 1, 2, 4 (shares against 14.3 / 28.6 / 57.1 %; the deviation and Jain index are of bytes per weight):',
    '',
    head, ...describe(r2, [1, 2, 4]),
  ].join('\n');
  console.log(md);
  if (process.env.FAIR_WRITE === '1') writeSection('fairness', md);
}

await main();
