// npm run bench:fleet: one appliance, a hundred servers (issue 18). A pair on this
// machine (test/helpers/fleet.ts) shares FLEET_VOLUMES volumes (default 100) of 64 MiB:
//   1. time to first sync (both daemons started until every replica is consistent);
//   2. a burst: FLEET_BURST_MIB (4) MiB on every volume at once, in 1 MiB writes of random
//      data through NBD (24 writers), its drain time, the peak RSS of both daemons
//      through it (VmRSS sampled every 100 ms) and the RSS settled 10 s after;
//   3. fairness: the link capped at FLEET_RATE (32mbit) with compression off by a
//      reload, every volume given FLEET_FAIR_MIB (4) MiB in 128 KiB writes while the
//      link is down (site-b stopped), then site-b started again, and Jain's index of their wire
//      bytes over FLEET_WINDOW (20) s windows in which all still had data.
// Then a second pair with one sparse volume of FLEET_BIG_SIZE (1TiB): its first sync,
// then FLEET_BIG_BACKLOG_MIB (10240) MiB of host writes spread over it while its
// shipping is paused, then resumed; the peak RSS of both daemons while the backlog
// builds and while it drains (FLEET_ONLY=big: this case alone, nothing written to the
// docs; FLEET_TRACE=1: the daemon's heap and Buffers every 2 s; FLEET_MEMORY=32MiB: both
// nodes' `memory:` budget in this case; FLEET_PEER_KEYS="compression: off": more keys of
// site-a's peer in this case).
// FLEET_WRITE=1 writes the tables into docs/BENCHMARKS.md.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { burst, jain, rssOf, sampleRss, sampleShares, startFleet } from '../test/helpers/fleet.js';
import { statusOf } from '../test/helpers/daemon.js';
import { cli } from '../test/helpers/cli.js';
import { must, sleep } from '../test/helpers/run.js';
import { machineLine, writeSection } from './report.js';
import { MEMORY_BUDGET_BYTES } from '../src/limits/limits.js';

const VOLUMES = Number(process.env.FLEET_VOLUMES ?? 100);
const BURST_MIB = Number(process.env.FLEET_BURST_MIB ?? 4);
const FAIR_MIB = Number(process.env.FLEET_FAIR_MIB ?? 4);
const RATE = process.env.FLEET_RATE ?? '32mbit';
/** Fairness windows (s): at 100 volumes a volume's share of 10 s is about three of its 128 KiB writes, the grain. */
const WINDOW = Number(process.env.FLEET_WINDOW ?? 20);
const BIG_SIZE = process.env.FLEET_BIG_SIZE ?? '1TiB';
const BIG_BACKLOG_MIB = Number(process.env.FLEET_BIG_BACKLOG_MIB ?? 10240);
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
      {
        skipSeconds: 2, windowSeconds: WINDOW, maxSeconds: 900, tailBytes: 256 * 1024,
        linkDown: { down: async () => void (await p.b.stop()), up: () => p.b.start() },
      });
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
      `| fairness: ${FAIR_MIB} MiB each, written while the link was down, then all shipped at once on a link capped at ${RATE}, compression off ` +
        `| Jain ${jainText} ` +
        `| ${mib(fairRss.a)} | ${mib(fairRss.b)} | Jain ≥ 0.95 |`,
    ];
  } finally {
    await p.stop();
  }
}

/** The daemon's memory as its metrics break it down (heap, Buffers outside it, RSS), for FLEET_TRACE=1. */
async function memoryOf(d: { apiPort: number }): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${d.apiPort}/metrics`)).text();
  const of = (name: string): string => {
    const m = new RegExp(`^offsite_${name} (\\S+)`, 'm').exec(text);
    return m ? mib(Number(m[1])) : '?';
  };
  return `rss ${of('process_resident_memory_bytes')} heap ${of('nodejs_heap_size_used_bytes')}/${of('nodejs_heap_size_total_bytes')} ` +
    `external ${of('nodejs_external_memory_bytes')} MiB`;
}

/** "1TiB", "64GiB": bytes. */
function bytesOf(size: string): number {
  const m = /^(\d+)(GiB|TiB)$/.exec(size);
  if (!m) throw new Error(`FLEET_BIG_SIZE ${size}: give GiB or TiB`);
  return Number(m[1]) * (m[2] === 'TiB' ? 2 ** 40 : 2 ** 30);
}

/**
 * The memory case: one sparse volume of BIG_SIZE, first-synced, then
 * BIG_BACKLOG_MIB of host writes spread over all of it while its shipping is paused
 * (a link down for a while), then resumed: the peak RSS of both daemons while the
 * backlog builds and while it drains.
 */
async function big(): Promise<string> {
  const size = bytesOf(BIG_SIZE);
  const journalGiB = Math.max(2, Math.ceil((BIG_BACKLOG_MIB * 1.25) / 1024));
  const p = await startFleet({
    volumes: [{ name: 'big' }], size: BIG_SIZE, journal: `${journalGiB}GiB`, memory: process.env.FLEET_MEMORY, peerKeysA: process.env.FLEET_PEER_KEYS,
  });
  try {
    const t0 = Date.now();
    await p.drained(900_000);
    const firstSync = (Date.now() - t0) / 1000;
    const paused = await cli(p.a, 'pause', 'big');
    if (paused.code !== 0) throw new Error(`pause: ${paused.stderr}`);
    const source = `${p.a.dir}/random.bin`;
    fs.writeFileSync(source, crypto.randomBytes(4 * MiB));
    // 64 MiB (in 4 MiB writes) at a time, spread evenly over the volume, then flushed.
    const chunks = Math.ceil(BIG_BACKLOG_MIB / 64);
    const step = Math.floor(size / chunks / (4 * MiB)) * 4 * MiB;
    const writing = sampleRss(p);
    const t1 = Date.now();
    for (let k = 0; k < chunks; k++) {
      const cmds: string[] = [];
      for (let off = 0; off < 64 * MiB; off += 4 * MiB) cmds.push('-c', `write -q -s ${source} ${k * step + off} ${4 * MiB}`);
      await must('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', p.a.uri('big')], { timeoutMs: 600_000 });
      if (process.env.FLEET_TRACE === '1' && k % 16 === 0) console.error(`writing ${k * 64} MiB: ${await memoryOf(p.a)}`);
    }
    const wrote = (Date.now() - t1) / 1000;
    const peakWriting = await writing.stop();
    const backlog = ((await statusOf(p.a)).volumes[0] as unknown as { backlogBytes: number }).backlogBytes;
    const draining = sampleRss(p);
    const t2 = Date.now();
    const resumed = await cli(p.a, 'resume', 'big');
    if (resumed.code !== 0) throw new Error(`resume: ${resumed.stderr}`);
    const trace = process.env.FLEET_TRACE === '1'
      ? setInterval(() => void Promise.all([memoryOf(p.a), memoryOf(p.b)]).then(([a, b]) =>
        console.error(`draining ${((Date.now() - t2) / 1000).toFixed(0)} s: site-a ${a}; site-b ${b}`)), 2000) : null;
    try {
      await p.drained(1_800_000);
    } finally {
      if (trace) clearInterval(trace);
    }
    const drain = (Date.now() - t2) / 1000;
    const peakDraining = await draining.stop();
    console.error(`${BIG_SIZE}: first sync ${firstSync.toFixed(1)} s; ${mib(backlog)} MiB of backlog written in ${wrote.toFixed(0)} s ` +
      `(peak RSS ${mib(peakWriting.a)} / ${mib(peakWriting.b)} MiB), drained in ${drain.toFixed(1)} s ` +
      `(peak RSS ${mib(peakDraining.a)} / ${mib(peakDraining.b)} MiB)`);
    return `| one sparse volume of ${BIG_SIZE}: first sync, then ${mib(backlog)} MiB of host writes (4 MiB each, spread over the volume) ` +
      `while its shipping is paused, then resumed | first sync ${firstSync.toFixed(1)} s; backlog drained in ${drain.toFixed(1)} s ` +
      `(${(backlog / MiB / drain).toFixed(0)} MB/s) ` +
      `| ${mib(peakWriting.a)} peak writing, ${mib(peakDraining.a)} peak draining | ${mib(peakWriting.b)}, ${mib(peakDraining.b)} | ≤ 150 MiB each |`;
  } finally {
    await p.stop();
  }
}

async function main(): Promise<void> {
  // (FLEET_ONLY=big: the 1 TiB case alone, for memory work; nothing is written to the docs.)
  const only = process.env.FLEET_ONLY ?? '';
  const rows = only === 'big' ? [] : await fleet();
  const bigRow = process.env.FLEET_BIG === '0' ? null : await big();
  const md = [
    '## A hundred volumes: memory, first sync, burst, fairness',
    '',
    `\`npm run bench:fleet\` (FLEET_VOLUMES=${VOLUMES} FLEET_BURST_MIB=${BURST_MIB} FLEET_RATE=${RATE} FLEET_FAIR_MIB=${FAIR_MIB} ` +
      `FLEET_WINDOW=${WINDOW} FLEET_BIG_SIZE=${BIG_SIZE} FLEET_BIG_BACKLOG_MIB=${BIG_BACKLOG_MIB}; ${machineLine()}): ` +
      `both daemons of a pair on this machine with the default \`memory: ${MEMORY_BUDGET_BYTES / 2 ** 20}MiB\`; ` +
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
  if (process.env.FLEET_WRITE === '1' && only === '') writeSection('fleet', md);
}

await main();
