// npm run bench:fleet: one appliance, a hundred servers (issue 18). A pair on this
// machine (test/helpers/fleet.ts) shares FLEET_VOLUMES volumes (default 100) of 64 MiB:
//   1. time to first sync (both daemons started until every replica is consistent);
//   2. a burst: FLEET_BURST_MIB (4) MiB on every volume at once, in 1 MiB writes of random
//      data through NBD (24 writers), its drain time, the peak RSS of both daemons
//      through it (VmRSS sampled every 100 ms) and the RSS settled 10 s after;
//   3. fairness: the link capped at FLEET_RATE (32mbit) with compression off by a
//      reload, every volume given FLEET_FAIR_MIB (4) MiB at once in 128 KiB writes, and
//      Jain's index of their wire bytes over FLEET_WINDOW (20) s windows in which all
//      still had data.
// Then a second pair with one sparse volume of FLEET_BIG_SIZE (1TiB): its first sync
// (every region read and sent, sparse ones as Zeroes records) drains for
// FLEET_BIG_SECONDS (90) while FLEET_BIG_BACKLOG_MIB (1024) MiB of host writes join the
// backlog; the peak RSS of both daemons meanwhile and what was drained.
// FLEET_WRITE=1 writes the tables into docs/BENCHMARKS.md.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { burst, jain, rssOf, sampleRss, sampleShares, startFleet } from '../test/helpers/fleet.js';
import { statusOf } from '../test/helpers/daemon.js';
import { must, sleep } from '../test/helpers/run.js';
import { machineLine, writeSection } from './report.js';

const VOLUMES = Number(process.env.FLEET_VOLUMES ?? 100);
const BURST_MIB = Number(process.env.FLEET_BURST_MIB ?? 4);
const FAIR_MIB = Number(process.env.FLEET_FAIR_MIB ?? 4);
const RATE = process.env.FLEET_RATE ?? '32mbit';
/** Fairness windows (s): at 100 volumes a volume's share of 10 s is about three of its 128 KiB writes, the grain. */
const WINDOW = Number(process.env.FLEET_WINDOW ?? 20);
const BIG_SIZE = process.env.FLEET_BIG_SIZE ?? '1TiB';
const BIG_SECONDS = Number(process.env.FLEET_BIG_SECONDS ?? 90);
const BIG_BACKLOG_MIB = Number(process.env.FLEET_BIG_BACKLOG_MIB ?? 1024);
const MiB = 1 << 20;
const mib = (n: number): string => (n / MiB).toFixed(0);

async function fleet(): Promise<string[]> {
  const names = Array.from({ length: VOLUMES }, (_, i) => `v${i + 1}`);
  const t0 = Date.now();
  const p = await startFleet({ volumes: names.map((name) => ({ name })), size: '64MiB', journal: '256MiB' });
  try {
    await p.drained(900_000);
    const firstSync = (Date.now() - t0) / 1000;
    const afterSync = { a: rssOf(p.a), b: rssOf(p.b) };
    console.error(`first sync of ${VOLUMES} volumes: ${firstSync.toFixed(1)} s; RSS site-a ${mib(afterSync.a)} MiB, site-b ${mib(afterSync.b)} MiB`);

    const source = `${p.a.dir}/random.bin`;
    fs.writeFileSync(source, crypto.randomBytes(Math.max(BURST_MIB, FAIR_MIB) * MiB));
    const rss = sampleRss(p);
    const t1 = Date.now();
    await burst(p.a, names, BURST_MIB * MiB, source);
    await p.drained(900_000);
    const drain = (Date.now() - t1) / 1000;
    const peak = await rss.stop();
    await sleep(10_000);
    const settled = { a: rssOf(p.a), b: rssOf(p.b) };
    console.error(`burst of ${BURST_MIB} MiB x ${VOLUMES}: drained in ${drain.toFixed(1)} s; ` +
      `peak RSS ${mib(peak.a)} / ${mib(peak.b)} MiB, settled ${mib(settled.a)} / ${mib(settled.b)} MiB`);

    // Fairness on a capped link: the cap and compression off by a reload, on the same link.
    const yaml = fs.readFileSync(p.a.configFile, 'utf8').replace(/(site-b: \{ address: "[^"]+", fingerprint: "[^"]+")/, `$1, rate: ${RATE}, compression: off`);
    fs.writeFileSync(p.a.configFile, yaml);
    process.kill(p.a.pid!, 'SIGHUP');
    for (let i = 0; i < 100 && !/config reloaded/.test(p.a.log); i++) await sleep(100);
    const { windows, said } = await sampleShares(p.a, new Map(names.map((n) => [n, FAIR_MIB * MiB])), source,
      { skipSeconds: 2, windowSeconds: WINDOW, maxSeconds: 900, tailBytes: 256 * 1024 });
    const jains = windows.map((w) => jain(names.map((n) => w.sent.get(n)!)));
    const fairRss = { a: rssOf(p.a), b: rssOf(p.b) };
    console.error(`fairness: ${windows.length} windows, Jain ${jains.map((j) => j.toFixed(3)).join(' ')} (${said})`);
    await p.drained(900_000);

    const jainText = jains.length === 0 ? `no ${WINDOW} s window in which every volume still had data (${said})`
      : `${Math.min(...jains).toFixed(3)} .. ${Math.max(...jains).toFixed(3)} over ${jains.length} windows of ${WINDOW} s`;
    return [
      `| first sync of ${VOLUMES} volumes of 64 MiB | ${firstSync.toFixed(1)} s | ${mib(afterSync.a)} | ${mib(afterSync.b)} | after it |`,
      `| burst: ${BURST_MIB} MiB on each at once (1 MiB writes) | drained in ${drain.toFixed(1)} s ` +
        `| ${mib(peak.a)} peak, ${mib(settled.a)} settled | ${mib(peak.b)} peak, ${mib(settled.b)} settled | ≤ 256 MiB each |`,
      `| fairness: ${FAIR_MIB} MiB each at once, link capped at ${RATE}, compression off | Jain ${jainText} ` +
        `| ${mib(fairRss.a)} | ${mib(fairRss.b)} | Jain ≥ 0.95 |`,
    ];
  } finally {
    await p.stop();
  }
}

async function big(): Promise<string> {
  const p = await startFleet({ volumes: [{ name: 'big' }], size: BIG_SIZE, journal: '16GiB' });
  try {
    const rss = sampleRss(p);
    const t0 = Date.now();
    const source = `${p.a.dir}/random.bin`;
    fs.writeFileSync(source, crypto.randomBytes(4 * MiB));
    // Host writes spread over the volume while its first sync drains: 64 MiB (in 4 MiB
    // writes) every 16 GiB, then flushed, until the backlog is given.
    const writes = (async () => {
      for (let k = 0; k * 64 < BIG_BACKLOG_MIB; k++) {
        const base = (k * 16 * 1024 * MiB) % (1024 * 1024 * MiB);
        const cmds: string[] = [];
        for (let off = 0; off < 64 * MiB; off += 4 * MiB) cmds.push('-c', `write -q -s ${source} ${base + off} ${4 * MiB}`);
        await must('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', p.a.uri('big')], { timeoutMs: 600_000 });
      }
    })();
    while ((Date.now() - t0) / 1000 < BIG_SECONDS) await sleep(2000);
    await writes;
    const peak = await rss.stop();
    const v = (await statusOf(p.a)).volumes[0] as unknown as { backlogBytes: number; resyncLeftBytes: number; resyncTotalBytes: number };
    const drained = v.resyncTotalBytes - v.resyncLeftBytes;
    console.error(`${BIG_SIZE}: ${BIG_SECONDS} s of its first sync with ${BIG_BACKLOG_MIB} MiB written; peak RSS ${mib(peak.a)} / ${mib(peak.b)} MiB; ` +
      `${mib(drained)} MiB of regions sent, backlog ${mib(v.backlogBytes)} MiB`);
    return `| one sparse volume of ${BIG_SIZE}: ${((Date.now() - t0) / 1000).toFixed(0)} s of its first sync draining ` +
      '(a backlog of all 1 TiB of regions: read, holes sent as Zeroes records) ' +
      `with ${BIG_BACKLOG_MIB} MiB of host writes (4 MiB each, spread) joining it ` +
      `| ${(drained / 2 ** 30).toFixed(1)} GiB of regions sent, ${mib(v.backlogBytes)} MiB of journal backlog left ` +
      `| ${mib(peak.a)} peak | ${mib(peak.b)} peak | ≤ 150 MiB each |`;
  } finally {
    await p.stop();
  }
}

async function main(): Promise<void> {
  const rows = await fleet();
  const bigRow = process.env.FLEET_BIG === '0' ? null : await big();
  const md = [
    '## A hundred volumes: memory, first sync, burst, fairness',
    '',
    `\`npm run bench:fleet\` (FLEET_VOLUMES=${VOLUMES} FLEET_BURST_MIB=${BURST_MIB} FLEET_RATE=${RATE} FLEET_FAIR_MIB=${FAIR_MIB} ` +
      `FLEET_WINDOW=${WINDOW} FLEET_BIG_SIZE=${BIG_SIZE} FLEET_BIG_SECONDS=${BIG_SECONDS} FLEET_BIG_BACKLOG_MIB=${BIG_BACKLOG_MIB}; ${machineLine()}): ` +
      'both daemons of a pair on this machine with the default `memory: 64MiB`; ' +
      "RSS is VmRSS of each daemon's process, the peak sampled every 100 ms. " +
      "What bounds each figure: the RSS, the node's memory budget (batches in flight, frames buffered, applies: docs/LINK.md \"Memory\") " +
      'plus the NBD write budget while hosts write, plus the fixed part (code, heaps, zstd workers); ' +
      'the first sync, the link and the disks (every region of every volume read and sent); ' +
      "the burst's drain, the journal writes and the link; Jain's index, the link's deficit round robin and the 128 KiB write as grain.",
    '',
    '| what | figure | site-a RSS (MiB) | site-b RSS (MiB) | target |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    ...(bigRow ? [bigRow] : []),
  ].join('\n');
  console.log(md);
  if (process.env.FLEET_WRITE === '1') writeSection('fleet', md);
}

await main();
