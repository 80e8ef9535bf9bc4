// npm run bench:figure2 (needs root): the design's claim that the link needs the
// average write rate, not the peak. A bursty trace (peak 3.6x its average) is replayed
// through the primary's NBD export, time compressed, over a link shaped by the kernel
// (bench/netns.ts: tbf on a router between two namespaces) to 1.0x the trace's average
// raw rate, and then to lower rates, to find the lowest one that still drains in every
// cycle with compression on. Status is sampled from the root namespace every 250 ms.
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machineLine, writeSection } from './report.js';
import {
  NbdWriter, cleanupOnSignal, drainedNs, dropNet, hasQdisc, makeNet, makeNsSites, qdiscStats, reloadPeer, shape, sleep, startIn, status, stopIn,
  tbfCommand, waitFor, type Net, type NsSite,
} from './netns.js';

/** The trace's average raw write rate (bits per second): 2 Mbit/s = 250 kB/s. */
const AVG_BPS = Number(process.env.FIG2_AVG_BITS ?? 2_000_000);
const AVG = AVG_BPS / 8;
const PEAK = 3.6;
/** The quiet phase still writes a little (background), at this multiple of the average. */
const QUIET = 0.2;
/** One cycle of the trace: a minute of the original, replayed 3x faster. */
const ORIGINAL_CYCLE_S = 60;
const SPEEDUP = 3;
const CYCLE_S = ORIGINAL_CYCLE_S / SPEEDUP;
/** The burst's share of a cycle, so that the average is AVG: f*PEAK + (1-f)*QUIET = 1. */
const BURST_S = CYCLE_S * ((1 - QUIET) / (PEAK - QUIET));
const WRITE = 32 * 1024;
const BLOCK = 4096;
const FLUSH_MS = 250;
const SAMPLE_MS = 250;
/** A cycle has drained when a sample after its burst, before the next burst, shows a lag of at most this. */
const DRAINED_LAG_S = 1;
const MAIN_CYCLES = Number(process.env.FIG2_MAIN_CYCLES ?? 5);
const CYCLES = Number(process.env.FIG2_CYCLES ?? 3);
/** Bisection steps (to 0.05x) between the lowest rate that drained and the highest that did not. */
const REFINE = Number(process.env.FIG2_REFINE ?? 2);
const MULTIPLES = (process.env.FIG2_MULTIPLES ?? '1,0.7,0.5,0.35').split(',').map(Number);

const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-figure2-'));
const base = 22000 + Math.floor(Math.random() * 20000);
const VOLUME = 1 << 30;

/** Text from real files (this checkout's node_modules): the compressible half of the data. */
function corpus(bytes: number): Buffer {
  const root = new URL('../../node_modules', import.meta.url).pathname;
  const parts: Buffer[] = [];
  let n = 0;
  const names = (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => /\.(js|ts|md|json)$/.test(f)).sort();
  for (const f of names) {
    if (n >= bytes) break;
    try {
      const b = fs.readFileSync(path.join(root, f));
      if (b.length < BLOCK) continue;
      parts.push(b);
      n += b.length;
    } catch {
      // (a directory named like a file, a broken link)
    }
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/** A write of WRITE bytes: each 4 KiB block random or a slice of real text, half and half. */
function makeData(text: Buffer): Buffer {
  const b = Buffer.allocUnsafe(WRITE);
  for (let at = 0; at < WRITE; at += BLOCK) {
    if (Math.random() < 0.5) randomFillSync(b, at, BLOCK);
    else {
      const from = Math.floor(Math.random() * (text.length - BLOCK));
      text.copy(b, at, from, from + BLOCK);
    }
  }
  return b;
}

/** Bytes the trace has written by `t` seconds after its start. */
function traceBytes(t: number): number {
  const k = Math.floor(t / CYCLE_S);
  const u = t - k * CYCLE_S;
  const perCycle = AVG * CYCLE_S;
  const inCycle = u < BURST_S ? u * PEAK * AVG : BURST_S * PEAK * AVG + (u - BURST_S) * QUIET * AVG;
  return k * perCycle + inCycle;
}

interface Sample { t: number; backlog: number; lag: number }
interface Cycle { peakBacklog: number; maxLag: number; drainedAfter: number | null }
interface Run {
  multiple: number; bps: number; compression: string; cycles: Cycle[]; hostBytes: number; recordBytes: number; wireBytes: number; lineBytes: number;
  level: number | null;
}

async function replay(net: Net, a: NsSite, b: NsSite, text: Buffer, multiple: number, cycles: number, compression: 'auto' | 'off'): Promise<Run> {
  // Unshaped while the last run's backlog drains and the setting changes.
  shape(net, null);
  reloadPeer(a, compression === 'off' ? 'compression: off' : '');
  await sleep(500);
  await drainedNs(a, b);
  const bps = Math.round((AVG_BPS * multiple) / 1000) * 1000;
  shape(net, bps);
  await sleep(500);
  const s0 = await status(a);
  const q0 = qdiscStats(net);
  const w = await NbdWriter.open(a.host, a.nbd);
  const samples: Sample[] = [];
  const t0 = performance.now();
  const end = cycles * CYCLE_S;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const t = performance.now();
      const v = await status(a);
      if (v) samples.push({ t: ((t + performance.now()) / 2 - t0) / 1000, backlog: v.backlogBytes, lag: v.lagSeconds });
      await sleep(Math.max(0, SAMPLE_MS - (performance.now() - t)));
    }
  })();
  let written = 0;
  let lastFlush = 0;
  const ops: Array<Promise<void>> = [];
  for (;;) {
    const el = (performance.now() - t0) / 1000;
    if (el >= end) break;
    while (written + WRITE <= traceBytes(el) && w.inFlight < 64) {
      ops.push(w.write(Math.floor(Math.random() * (VOLUME / WRITE)) * WRITE, makeData(text)));
      written += WRITE;
    }
    if (el - lastFlush >= FLUSH_MS / 1000) {
      lastFlush = el;
      ops.push(w.flush());
    }
    await sleep(5);
  }
  ops.push(w.flush());
  await Promise.all(ops);
  w.close();
  polling = false;
  await poll;
  const s1 = await status(a);
  const q1 = qdiscStats(net);
  const out: Cycle[] = [];
  for (let k = 0; k < cycles; k++) {
    const from = k * CYCLE_S;
    const burstEnd = from + BURST_S;
    const next = (k + 1) * CYCLE_S;
    const mine = samples.filter((s) => s.t >= from && s.t < next);
    const drained = mine.find((s) => s.t >= burstEnd && s.lag <= DRAINED_LAG_S);
    out.push({
      peakBacklog: Math.max(...mine.map((s) => s.backlog)),
      maxLag: Math.max(...mine.map((s) => s.lag)),
      drainedAfter: drained ? drained.t - burstEnd : null,
    });
  }
  return {
    multiple, bps, compression, cycles: out, level: s1?.shipping?.level ?? null,
    hostBytes: (s1?.hostBytes ?? 0) - (s0?.hostBytes ?? 0),
    recordBytes: (s1?.shipping?.recordBytes ?? 0) - (s0?.shipping?.recordBytes ?? 0),
    wireBytes: (s1?.wireBytes ?? 0) - (s0?.wireBytes ?? 0),
    lineBytes: q1.bytes - q0.bytes,
  };
}

const drainsAll = (r: Run): boolean => r.cycles.every((c) => c.drainedAfter !== null);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:figure2 needs root (network namespaces and tc)');
  if (!hasQdisc('tbf')) throw new Error('this kernel has no tbf qdisc (sch_tbf): the link cannot be shaped');
  const text = corpus(16 << 20);
  const net = makeNet();
  let sites: [NsSite, NsSite] | null = null;
  const cleanup = async (): Promise<void> => {
    if (sites) for (const s of sites) await stopIn(s);
    dropNet(net);
  };
  cleanupOnSignal(cleanup);
  const began = performance.now();
  try {
    sites = makeNsSites(dir, net, base, 'size: 1GiB, journal: 512MiB');
    const [a, b] = sites;
    for (const s of sites) startIn(s);
    await waitFor(async () => Boolean(await status(a)) && Boolean(await status(b)), 30_000, 'the daemons to answer');
    await drainedNs(a, b);

    const runs: Run[] = [];
    for (const m of MULTIPLES) {
      const r = await replay(net, a, b, text, m, m === MULTIPLES[0] ? MAIN_CYCLES : CYCLES, 'auto');
      runs.push(r);
      console.log(JSON.stringify(r));
    }
    // Between the lowest rate that drained every cycle and the highest below it that did not.
    for (let step = 0; step < REFINE; step++) {
      const passed = runs.filter(drainsAll).map((r) => r.multiple);
      if (passed.length === 0) break;
      const hi = Math.min(...passed);
      const below = runs.filter((r) => !drainsAll(r) && r.multiple < hi).map((r) => r.multiple);
      if (below.length === 0) break;
      const lo = Math.max(...below);
      const mid = Math.round(((lo + hi) / 2) * 20) / 20;
      if (!(mid > lo && mid < hi)) break;
      const r = await replay(net, a, b, text, mid, CYCLES, 'auto');
      runs.push(r);
      console.log(JSON.stringify(r));
    }
    // The same trace at 1.0x with compression off: what compression buys.
    const off = await replay(net, a, b, text, 1, Math.min(2, CYCLES), 'off');
    runs.push(off);
    console.log(JSON.stringify(off));
    shape(net, null);
    reloadPeer(a, '');
    const minutes = (performance.now() - began) / 60_000;

    const mb = (x: number): string => `${(x / 1e6).toFixed(2)} MB`;
    const lag = (x: number): string => `${x.toFixed(1)} s`;
    const rate = (bps: number): string => (bps >= 1e6 ? `${bps / 1e6} Mbit/s` : `${bps / 1000} kbit/s`);
    const main0 = runs[0]!;
    const perCycle = main0.cycles.map((c, k) =>
      `| ${k + 1} | ${mb(c.peakBacklog)} | ${lag(c.maxLag)} | ${c.drainedAfter === null ? '**not drained**' : `${c.drainedAfter.toFixed(1)} s`} |`).join('\n');
    const auto = runs.filter((r) => r.compression === 'auto').sort((x, y) => y.multiple - x.multiple);
    const summary = [...auto, off].map((r) => {
      const n = r.cycles.filter((c) => c.drainedAfter !== null).length;
      return `| ${rate(r.bps)} | ${r.multiple.toFixed(2)}x ` +
        `| ${r.compression}${r.level !== null && r.compression === 'auto' ? ` (level ${r.level} at the end)` : ''} ` +
        `| ${(r.hostBytes / r.wireBytes).toFixed(2)} | ${drainsAll(r) ? (r.lineBytes / r.hostBytes).toFixed(3) : '—'} | ${n} of ${r.cycles.length} ` +
        `| ${r.cycles.map((c) => (c.drainedAfter === null ? '—' : `${c.drainedAfter.toFixed(1)} s`)).join(', ')} ` +
        `| ${r.cycles.map((c) => mb(c.peakBacklog)).join(', ')} | ${r.cycles.map((c) => lag(c.maxLag)).join(', ')} |`;
    }).join('\n');
    const lowest = auto.filter(drainsAll).sort((x, y) => x.multiple - y.multiple)[0];
    const highestFail = auto.filter((r) => !drainsAll(r)).sort((x, y) => y.multiple - x.multiple)[0];
    const needed = (main0.lineBytes / main0.hostBytes);
    // Whether the worst lag of a cycle stopped growing: the last cycle's within a second of the first's.
    const trend = auto.filter((r) => !drainsAll(r)).map((r) => {
      const [f, l] = [r.cycles[0]!.maxLag, r.cycles[r.cycles.length - 1]!.maxLag];
      return `at ${r.multiple.toFixed(2)}x the worst lag ${l <= f + 1 ? 'stayed bounded' : 'grew every cycle'} ` +
        `(${lag(f)} in the first cycle, ${lag(l)} in the last)`;
    });
    const md = `## Figure 2: a bursty trace over a link at its average rate

\`sudo npm run bench:figure2\` (root: network namespaces and tc; FIG2_AVG_BITS, FIG2_MULTIPLES, FIG2_CYCLES)

${machineLine()}. The link of bench:goodput: site-a and site-b in namespaces of their own,
a router namespace between them with \`${tbfCommand(main0.bps)}\` on both egress veths (no
added delay: ${hasQdisc('netem') ? 'netem is present but not used here' : 'this kernel has no sch_netem'}). ` +
  `The trace: cycles of a minute, replayed ${SPEEDUP}x faster (${CYCLE_S} s each):
a burst of ${BURST_S.toFixed(2)} s at ${PEAK}x the average, then ${(CYCLE_S - BURST_S).toFixed(2)} s at ${QUIET}x (background writes), so the
average raw rate is ${rate(AVG_BPS)} (${AVG / 1000} kB/s) and the peak ${rate(AVG_BPS * PEAK)}. Writes of ${WRITE / 1024} KiB at random
offsets of a 1 GiB volume through the primary's NBD export, a FLUSH every ${FLUSH_MS} ms; each 4 KiB block of a
write is random bytes or a slice of real text (this checkout's node_modules), half and half.
\`compression: auto\` unless said. Status (\`lagSeconds\`, \`backlogBytes\`) sampled every ${SAMPLE_MS} ms from the root namespace.

**Drained**: a cycle drains when, after its burst ends and before the next cycle's burst
begins, a sample shows \`lagSeconds\` ≤ ${DRAINED_LAG_S} s: every write older than a second is durable at the
secondary. (With a FLUSH every ${FLUSH_MS} ms, a caught-up link shows a lag well under a second in the quiet
phase; a link still carrying the burst shows the age of the burst's oldest unacked write.)
"Drained after" is the time from the burst's end to that sample.

At ${rate(main0.bps)} (${main0.multiple.toFixed(1)}x the average raw rate), ${main0.cycles.length} cycles:

| cycle | peak backlog (journal bytes) | max lag | drained after |
| --- | ---: | ---: | ---: |
${perCycle}

Every rate, same trace (the last row: compression off):

| link | of the average | compression | host bytes per wire byte | line bytes per host byte | cycles drained | drained after | ` +
  `peak backlog per cycle | max lag per cycle |
| --- | ---: | --- | ---: | ---: | ---: | --- | --- | --- |
${summary}

${trend.length > 0 ? `Where cycles did not drain: ${trend.join('; ')}.\n` : ''}${lowest
  ? `Lowest link rate that drained every cycle with compression on: **${rate(lowest.bps)}, ${lowest.multiple.toFixed(2)}x the average raw rate**` +
    `${highestFail ? ` (${rate(highestFail.bps)}, ${highestFail.multiple.toFixed(2)}x, did not)` : ''}.`
  : '**No rate tried drained every cycle.**'}
${drainsAll(main0) ? `At ${main0.multiple.toFixed(1)}x the line carried ${needed.toFixed(3)} bytes per host byte (compression, then TLS and TCP/IP
headers; "—": a run that did not drain, whose bytes were still queued at its end): on average the trace
needs ${needed.toFixed(2)}x its raw rate of line, so no link below that can drain every cycle, and one just above it
drains only late in the quiet phase. Coalescing cannot lower that here: the trace writes 32 KiB at random
offsets of 1 GiB, so hardly a block is written twice within a backlog; a workload that rewrites its
blocks (bench:wire) is where it pays.` : ''} With compression off, every host byte costs a journal record header, TLS and TCP/IP headers
on the line (host bytes per wire byte ${(off.hostBytes / off.wireBytes).toFixed(3)}, and about 1514/1448 more on the line): more than a
1.0x link gives, so ${drainsAll(off)
  ? 'it drained every cycle here all the same.'
  : 'the backlog is never drained (the last row): the link needs the average rate of the line bytes, not of the host bytes.'}
Whole bench: ${minutes.toFixed(1)} min.
`;
    writeSection('figure2', md);
    console.log(md);
  } finally {
    await cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
