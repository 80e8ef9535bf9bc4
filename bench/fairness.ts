// npm run bench:fairness: how a capped link is shared between volumes. A pair on this
// machine (test/helpers/fleet.ts) shares FAIR_VOLUMES volumes (default 8) over one link
// capped at FAIR_RATE (16mbit) with compression off. First half of them ship a quarter
// of FAIR_MIB each while the rest are idle (history, as in issue 18's report); then
// every volume gets FAIR_MIB MiB (16) at once, in 128 KiB writes through its NBD
// export, and each volume's wire bytes (`wireBytes` in /api/v1/status) are sampled
// twice a second. Printed per 10 s window in which every volume still had data to
// send: each volume's bytes, the largest deviation from the mean, and Jain's fairness
// index ((sum x)^2 / (n * sum x^2): 1 when all are equal, 1/n when one takes all).
// Then v1..v3 get weights 1, 2 and 4 by a reload and data in proportion: their shares
// against 1/7, 2/7, 4/7. FAIR_WRITE=1 writes the table into docs/BENCHMARKS.md.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { jain, sampleShares, startFleet, writeVolume, type ShareWindow } from '../test/helpers/fleet.js';
import { sleep } from '../test/helpers/run.js';
import { machineLine, writeSection } from './report.js';

const VOLUMES = Number(process.env.FAIR_VOLUMES ?? 8);
const MIB = Number(process.env.FAIR_MIB ?? 16);
const RATE = process.env.FAIR_RATE ?? '16mbit';
const WINDOW = 10;
const MiB = 1 << 20;

function rows(windows: ShareWindow[], names: string[], weights: number[]): string[] {
  return windows.map((w) => {
    const xs = names.map((n) => w.sent.get(n)!);
    const norm = xs.map((x, k) => x / weights[k]!);
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
    const spread = mean === 0 ? 0 : Math.max(...norm.map((x) => Math.abs(x - mean) / mean));
    const total = xs.reduce((a, b) => a + b, 0);
    const shares = names.length <= 8 ? ` | ${xs.map((x) => (x / total * 100).toFixed(1)).join(' / ')}` : '';
    const sent = names.length <= 8
      ? xs.map((x) => (x / MiB).toFixed(2)).join(' / ')
      : `${(Math.min(...xs) / MiB).toFixed(2)} .. ${(Math.max(...xs) / MiB).toFixed(2)}`;
    return `| ${w.from.toFixed(0)}-${w.to.toFixed(0)} s | ${sent}${shares} | ${(spread * 100).toFixed(0)}% | ${jain(norm).toFixed(3)} |`;
  });
}

async function main(): Promise<void> {
  const names = Array.from({ length: VOLUMES }, (_, i) => `v${i + 1}`);
  const p = await startFleet({
    volumes: names.map((name) => ({ name })), size: `${Math.max(32, MIB * 4)}MiB`, journal: `${Math.max(128, MIB * 8)}MiB`,
    peerKeysA: `rate: ${RATE}, compression: off`,
  });
  try {
    await p.drained(300_000);
    const source = `${p.a.dir}/random.bin`;
    fs.writeFileSync(source, crypto.randomBytes(128 * 1024));
    await Promise.all(names.slice(0, Math.ceil(VOLUMES / 2)).map((n) => writeVolume(p.a, n, (MIB / 4) * MiB, source)));
    await p.drained(300_000);
    const opts = { skipSeconds: 2, windowSeconds: WINDOW, maxSeconds: 600, tailBytes: 512 * 1024 };
    const { windows: equal } = await sampleShares(p.a, new Map(names.map((n) => [n, MIB * MiB])), source, opts);
    await p.drained(300_000);
    const weights = [1, 2, 4];
    let yaml = fs.readFileSync(p.a.configFile, 'utf8');
    weights.forEach((w, i) => (yaml = yaml.replace(`  v${i + 1}: { path:`, `  v${i + 1}: { weight: ${w}, path:`)));
    fs.writeFileSync(p.a.configFile, yaml);
    process.kill(p.a.pid!, 'SIGHUP');
    for (let i = 0; i < 100 && !/config reloaded: .*weight 4/.test(p.a.log); i++) await sleep(100);
    const three = names.slice(0, 3);
    const { windows: weighted } = await sampleShares(p.a, new Map(three.map((n, i) => [n, (MIB / 2) * weights[i]! * MiB])), source, opts);
    const head = (many: boolean): string => many
      ? '| window | MiB sent per volume (least .. most) | largest deviation from the mean | Jain |\n| --- | --- | --- | --- |'
      : '| window | MiB sent per volume | share % | largest deviation from the mean (per weight) | Jain |\n| --- | --- | --- | --- | --- |';
    const md = [
      '## Sharing a capped link between volumes',
      '',
      `\`npm run bench:fairness\` (FAIR_VOLUMES=${VOLUMES} FAIR_MIB=${MIB} FAIR_RATE=${RATE}): ` +
        `${VOLUMES} volumes of equal weight, half of which shipped ${MIB / 4} MiB each before, ` +
        `given ${MIB} MiB each at once (128 KiB writes of random data), on a link capped at ${RATE}, compression off; ` +
        `then weights 1:2:4 (${machineLine()}). Windows in which every volume still had data to send.`,
      '',
      `${VOLUMES} equal volumes:`,
      '',
      head(VOLUMES > 8), ...rows(equal, names, names.map(() => 1)),
      '',
      'Weights 1, 2, 4 (shares against 14.3 / 28.6 / 57.1 %; deviation and Jain index of bytes per weight):',
      '',
      head(false), ...rows(weighted, three, weights),
    ].join('\n');
    console.log(md);
    if (process.env.FAIR_WRITE === '1') writeSection('fairness', md);
  } finally {
    await p.stop();
  }
}

await main();
