// npm run bench:goodput (needs root): goodput of incompressible data on a link shaped
// by the kernel. site-a and site-b run in network namespaces of their own, joined
// through a router namespace with tbf on both directions (bench/netns.ts). A writer
// sends random bytes through the primary's NBD export a little faster than the line
// (so the link never idles), with a FLUSH every 0.5 s, for 45 s. Goodput is host bytes
// delivered per second: in a steady window (the secondary's received host bytes, at
// the arrivals of whole batches), and end to end (all the host bytes, from the first
// byte on the link to the primary's backlog back at 0, i.e. every byte acked). Beside
// it, in the same run, plain TCP and TLS 1.3 streams over the same path: the ceiling.
// The bytes of every layer over the whole transfer say where the rest went.
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median } from './fio.js';
import { machineLine, writeSection } from './report.js';
import {
  NbdWriter, cleanupOnSignal, drainedNs, dropNet, hasQdisc, makeNet, makeNsSites, qdiscStats, reloadPeer, shape, sleep, startIn, status, stopIn,
  stream, tbfCommand, tcpInfo, waitFor, type Net, type NsSite, type TcpInfo, type VolStatus,
} from './netns.js';

const RATES = (process.env.GOODPUT_RATES ?? '1000000,10000000').split(',').map(Number);
/** Seconds of writing per run, and where the steady window begins. */
const SECONDS = Number(process.env.GOODPUT_SECONDS ?? 60);
const WINDOW_FROM = 8;
const STREAM_SECONDS = 20;
/** The plain streams' window: after slow start's overshoot into the router's queue has settled. */
const STREAM_WINDOW: [number, number] = [8, 19];
/** Host writes at this multiple of the line's rate: the link never waits for data. */
const OVERDRIVE = 1.15;
/** Host write sizes: large writes, and 4 KiB ones (each journal record has a 56-byte header). */
const WRITES = [128 * 1024, 4096];
const FLUSH_MS = 500;
const TARGET = 0.95;

const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-goodput-'));
const base = 22000 + Math.floor(Math.random() * 20000);

interface Counters { t: number; a: VolStatus; b: VolStatus; l2: number; drops: number; tcp: TcpInfo | null }

async function counters(net: Net, a: NsSite, b: NsSite): Promise<Counters> {
  const [x, y] = [await status(a), await status(b)];
  if (!x || !y) throw new Error('a daemon does not answer');
  const q = qdiscStats(net);
  return { t: performance.now(), a: x, b: y, l2: q.bytes, drops: q.dropped, tcp: tcpInfo(net.nsA, net.linkB, b.linkPort) };
}

interface StreamResult { goodput: number }

function medianOf(xs: Array<number | null>): number | null {
  const v = xs.filter((x): x is number => x !== null && x !== undefined);
  return v.length > 0 ? median(v) : null;
}

/** A plain stream's payload rate over STREAM_WINDOW of its run. */
async function baseline(net: Net, mode: 'tcp' | 'tls', port: number, keyDir: string): Promise<StreamResult> {
  const t0 = Date.now();
  const s = await stream(net, mode, port, STREAM_SECONDS, keyDir);
  const at = (t: number): { t: number; bytes: number } => s.find((x) => x.t >= t) ?? s[s.length - 1]!;
  const [x, y] = [at(t0 + STREAM_WINDOW[0] * 1000), at(t0 + STREAM_WINDOW[1] * 1000)];
  return { goodput: (y.bytes - x.bytes) / ((y.t - x.t) / 1000) };
}

interface RunResult {
  steady: number; whole: number; hostBytes: number; seconds: number;
  /** Over the whole transfer: bytes at each layer. */
  records: number; wire: number; tcpPayload: number; retrans: number; l2: number; drops: number;
  /** The line's use in the steady window (L2 bytes per second over the rate). */
  utilization: number;
  rttMs: number; minRttMs: number; level: number | null; batches: number;
  /** The shipper's window and the daemon's own round-trip figure (status), medians over the steady window (null: not reported). */
  windowBytes: number | null; linkRttMs: number | null; batchBytes: number | null;
}

/** One offsite transfer at line rate `bps`; `peerExtra` is added to site-a's peer (a rate cap). */
async function offsite(net: Net, a: NsSite, b: NsSite, bps: number, peerExtra: string, size: number): Promise<RunResult> {
  reloadPeer(a, peerExtra);
  await sleep(1000);
  await drainedNs(a, b);
  const line = bps / 8;
  const c0 = await counters(net, a, b);
  const w = await NbdWriter.open(a.host, a.nbd);
  const samples: Array<{ t: number; aWire: number; aBacklog: number; bHost: number; window: number | null; rtt: number | null; batch: number | null }> = [];
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const t = performance.now();
      const [x, y] = [await status(a), await status(b)];
      if (x && y) {
        samples.push({
          t: (t + performance.now()) / 2, aWire: x.wireBytes, aBacklog: x.backlogBytes, bHost: y.hostBytes,
          window: x.shipping?.windowBytes ?? null, rtt: x.shipping?.rttMs ?? null, batch: x.shipping?.batchBytes ?? null,
        });
      }
      await sleep(Math.max(0, 50 - (performance.now() - t)));
    }
  })();

  const t0 = performance.now();
  let written = 0;
  let lastFlush = t0;
  let c1: Counters | null = null;
  const rtts: number[] = [];
  let lastRtt = t0;
  const volumeBytes = 1 << 30;
  const ops: Array<Promise<void>> = [];
  for (;;) {
    const now = performance.now();
    const el = (now - t0) / 1000;
    if (el >= SECONDS) break;
    if (!c1 && el >= WINDOW_FROM) c1 = await counters(net, a, b);
    if (c1 && now - lastRtt >= 2000) {
      lastRtt = now;
      const i = tcpInfo(net.nsA, net.linkB, b.linkPort);
      if (i) rtts.push(i.rttMs);
    }
    while (written < OVERDRIVE * line * el && w.inFlight < 64) {
      const buf = randomFillSync(Buffer.allocUnsafe(size));
      ops.push(w.write(written % volumeBytes, buf));
      written += size;
    }
    if (now - lastFlush >= FLUSH_MS) {
      lastFlush = now;
      ops.push(w.flush());
    }
    await sleep(5);
  }
  const c2 = await counters(net, a, b);
  ops.push(w.flush());
  await Promise.all(ops);
  w.close();
  await waitFor(async () => (await status(a))?.backlogBytes === 0, 600_000, 'the backlog to drain');
  const tEnd = performance.now();
  polling = false;
  await poll;
  const c3 = await counters(net, a, b);

  // Steady: whole batches that reached the secondary between c1 and c2 (the instants
  // at which its received host bytes stepped).
  const inWin = samples.filter((s) => s.t >= c1!.t && s.t <= c2.t);
  const steps = inWin.filter((s, i) => i > 0 && s.bHost !== inWin[i - 1]!.bHost);
  const [first, last] = [steps[0]!, steps[steps.length - 1]!];
  const steady = (last.bHost - first.bHost) / ((last.t - first.t) / 1000);
  // End to end: all of it, from the first wire byte to the backlog's return to 0.
  const started = samples.find((s) => s.aWire > c0.a.wireBytes)?.t ?? t0;
  const hostBytes = c3.a.hostBytes - c0.a.hostBytes;
  const seconds = (tEnd - started) / 1000;
  if (!c0.tcp || !c3.tcp || c3.tcp.bytesAcked < c0.tcp.bytesAcked) throw new Error('the link reconnected during the run: its TCP counters restarted');
  return {
    steady, whole: hostBytes / seconds, hostBytes, seconds,
    records: c3.a.shipping!.recordBytes - c0.a.shipping!.recordBytes,
    wire: c3.a.wireBytes - c0.a.wireBytes,
    tcpPayload: c3.tcp.bytesAcked - c0.tcp.bytesAcked,
    retrans: c3.tcp.bytesRetrans - c0.tcp.bytesRetrans,
    l2: c3.l2 - c0.l2, drops: c3.drops - c0.drops,
    utilization: (c2.l2 - c1!.l2) / ((c2.t - c1!.t) / 1000) / line,
    windowBytes: medianOf(inWin.map((s) => s.window)), linkRttMs: medianOf(inWin.map((s) => s.rtt)), batchBytes: medianOf(inWin.map((s) => s.batch)),
    rttMs: rtts.length > 0 ? median(rtts) : 0, minRttMs: c3.tcp.minRttMs, level: c2.a.shipping?.level ?? null, batches: steps.length,
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:goodput needs root (network namespaces and tc)');
  if (!hasQdisc('tbf')) throw new Error('this kernel has no tbf qdisc (sch_tbf): the link cannot be shaped');
  const netem = hasQdisc('netem');
  const net = makeNet();
  let sites: [NsSite, NsSite] | null = null;
  const cleanup = async (): Promise<void> => {
    if (sites) for (const s of sites) await stopIn(s);
    dropNet(net);
  };
  cleanupOnSignal(cleanup);
  try {
    sites = makeNsSites(dir, net, base, 'size: 1GiB, journal: 256MiB');
    const [a, b] = sites;
    for (const s of sites) startIn(s);
    await waitFor(async () => Boolean(await status(a)) && Boolean(await status(b)), 30_000, 'the daemons to answer');
    // The first sync (an empty volume: Zeroes records) runs unshaped.
    await drainedNs(a, b);

    const loadStart = os.loadavg()[0]!;
    const rows: string[] = [];
    const layers: string[] = [];
    const verdicts: string[] = [];
    const tcpCeil: number[] = [];
    const capNote: string[] = [];
    let port = base + 10;
    const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
    const kb = (x: number): string => `${(x / 1000).toFixed(1)} kB/s`;
    const size = (n: number): string => `${n / 1024} KiB writes`;
    for (const bps of RATES) {
      shape(net, bps);
      const line = bps / 8;
      const mbit = `${bps / 1e6} Mbit/s`;
      const tcp = await baseline(net, 'tcp', port++, path.join(dir, 'state-site-b'));
      const tls = await baseline(net, 'tls', port++, path.join(dir, 'state-site-b'));
      tcpCeil.push(tcp.goodput / line);
      const runs: Array<[string, RunResult]> = [];
      for (const w of WRITES) runs.push([`offsite, ${size(w)}`, await offsite(net, a, b, bps, '', w)]);
      runs.push([`offsite, ${size(WRITES[0]!)}, \`rate: ${bps / 1000}kbit\``, await offsite(net, a, b, bps, `rate: ${bps / 1000}kbit`, WRITES[0]!)]);
      reloadPeer(a, '');
      const cap = runs[runs.length - 1]![1];
      capNote.push(`${(cap.l2 / cap.wire).toFixed(3)} (${mbit})`);
      rows.push(`| ${mbit} | plain TCP stream (the ceiling) | ${kb(tcp.goodput)} | **${(tcp.goodput / line).toFixed(3)}** | 1.000 | | | | | | |`);
      rows.push(`| ${mbit} | plain TLS 1.3 stream | ${kb(tls.goodput)} | **${(tls.goodput / line).toFixed(3)}** ` +
        `| ${(tls.goodput / tcp.goodput).toFixed(3)} | | | | | | |`);
      for (const [name, r] of runs) {
        rows.push(`| ${mbit} | ${name} | ${kb(r.steady)} | **${(r.steady / line).toFixed(3)}** | ${(r.steady / tcp.goodput).toFixed(3)} ` +
          `| ${(r.whole / line).toFixed(3)} (${(r.hostBytes / 1e6).toFixed(1)} MB in ${r.seconds.toFixed(1)} s) | ${pct(r.utilization)} ` +
          `| ${r.rttMs.toFixed(0)} ms | ${r.linkRttMs === null ? '—' : `${r.linkRttMs.toFixed(0)} ms`} ` +
          `| ${r.windowBytes === null ? '—' : `${(r.windowBytes / 2 ** 20).toFixed(1)} MiB`} ` +
          `| ${r.batchBytes === null ? '—' : `${(r.batchBytes / 1024).toFixed(0)} KiB`} |`);
        // Bytes per host byte at each layer, over the whole transfer.
        const per = (x: number): string => (x / r.hostBytes).toFixed(4);
        layers.push(`| ${mbit} | ${name} | ${per(r.records)} | ${per(r.wire)} | ${per(r.tcpPayload)} | ${per(r.l2)} ` +
          `| **${(r.hostBytes / r.l2).toFixed(4)}** | ${pct(r.retrans / r.tcpPayload)} (${r.drops} drops) |`);
      }
      for (const [name, r] of runs) {
        verdicts.push(`${mbit}, ${name}: ${(r.steady / line).toFixed(4)} of the line steady, ${(r.whole / line).toFixed(4)} end to end: ` +
          `the target of ${TARGET} is ${r.steady / line >= TARGET ? 'met' : '**missed**'} (the plain TCP stream: ${(tcp.goodput / line).toFixed(4)}); ` +
          `window ${r.windowBytes === null ? 'not reported' : `${(r.windowBytes / 2 ** 20).toFixed(1)} MiB`} ` +
          `against a bandwidth-delay product (line × TCP RTT) of ${((line * r.rttMs) / 1000 / 1000).toFixed(0)} kB`);
      }
      console.log(verdicts.slice(-runs.length).join('\n'), JSON.stringify(runs));
    }
    shape(net, null);
    const mss = (await counters(net, a, b)).tcp?.mss ?? 0;
    const minRtt = (await counters(net, a, b)).tcp?.minRttMs ?? 0;

    const load = `${loadStart.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end`;
    const md = `## Goodput of incompressible data on a shaped link

\`sudo npm run bench:goodput\` (root: network namespaces and tc; GOODPUT_RATES, GOODPUT_SECONDS)

${machineLine()}. site-a and site-b in network namespaces of their own, joined through
a third that routes between them, with ${RATES.map((r) => `\`${tbfCommand(r)}\``).join(' and ')}
on both of its egress veths: the bottleneck is a router on the path, as on a real line
(the burst is 32 ms of the line at 10 Mbit/s: a fixed 32 kbit is under tc's rule of rate/HZ there,
and on a busy VM the line then idles while the qdisc's timer is late). 1500-byte MTU, TCP MSS ${mss}, cubic. Round trip: ${netem
  ? 'netem adds delay'
  : `**no delay added: this kernel has no sch_netem**, so the RTT is the idle path's (${minRtt.toFixed(3)} ms) ` +
    "plus the queue TCP builds in the router's tbf (at most the 400 ms latency setting): " +
    "the TCP RTT column is the kernel's smoothed RTT of the link's connection, median of samples every 2 s (ss); " +
    "the link RTT and the window are the daemon's own figures in `shipping` (median over the steady window)"}.
Load average (1 min) during the run: ${load} on ${os.cpus().length} CPUs (other work shares this VM: compare rows of this table, not runs).
NBD and the API are on separate, unshaped veths to the root namespace, where the bench runs.
A writer sends random bytes (incompressible: with \`compression: auto\` zstd tries each
batch and sends it raw) through the primary's export at ${OVERDRIVE}x the line's rate, with a
FLUSH every ${FLUSH_MS} ms, for ${SECONDS} s, so the link never waits for data.

Goodput is host bytes delivered per second, over the line's rate (${RATES.map((r) => `${r / 1e6} Mbit/s = ${r / 8000} kB/s`).join(', ')} of
Ethernet frames, as tbf counts them). "Steady": host bytes the secondary received between the
first and the last whole batch to arrive in [${WINDOW_FROM} s, ${SECONDS} s] (status sampled every 50 ms).
"End to end": all host bytes written, over the time from the first byte on the link to the
primary's backlog at 0 (every byte acked durable). The plain streams are node's \`net\`
and \`tls\` (TLS 1.3, site-b's key) writing random bytes over the same path for ${STREAM_SECONDS} s ` +
  `(rate over [${STREAM_WINDOW[0]} s, ${STREAM_WINDOW[1]} s], after slow start's overshoot).

| line | sender | goodput | / line (steady) | / TCP stream | / line (end to end) | line busy (steady) | TCP RTT (ss) | ` +
  `link RTT (status) | window (status) | batch (status) |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Where the bytes go, per host byte, over each whole transfer: journal records (56-byte header +
payload), frames (what the pacer writes, before TLS), TCP payload (bytes the peer's TCP acked:
frames in TLS records, and the control frames), the line (Ethernet frames the router's tbf
sent toward site-b). Resent: TCP retransmissions; the router drops at its queue, before the
line, so they cost the line little.

| line | sender | journal records | frames | TCP payload | line | host / line | resent |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
${layers.join('\n')}

${verdicts.map((v) => `- ${v}`).join('\n')}

The daemon's link RTT comes from heartbeat echoes (the least of the last 16). A heartbeat still waits
for the record frame being written (a batch: about 4 s of the link's measured capacity, 64 KiB to
4 MiB) and the socket's buffers (a quarter second of the link in node's, 16 to 256 KiB, then the
kernel's), so on a slow line it measures part of the sender's queue, not the path (the TCP RTT
column), and the window's 2 × rate × RTT term follows it.

What bounds it: the line counts Ethernet frames, and a full-size frame of 1514 bytes carries
${mss} bytes of TCP payload (14 Ethernet + 20 IP + 20 TCP + 12 TCP timestamp option), so no
TCP sender can pass ${(mss / 1514).toFixed(4)} of the line (the plain TCP stream: ${tcpCeil.map((x) => x.toFixed(3)).join(', ')}). The target of
${TARGET} leaves ${((mss / 1514 - TARGET) * 100).toFixed(2)} percentage points for everything above TCP: TLS (22 bytes per record of
at most 16 KiB, ${(22 / 16384 * 100).toFixed(2)}%), frame headers and heartbeats (a few dozen bytes a second), and the journal
record header, 56 bytes per host write: ${(56 / (128 * 1024) * 100).toFixed(2)}% of a 128 KiB write, ` +
  `but ${(56 / 4096 * 100).toFixed(2)}% of a 4 KiB one, sent as
it is in a Records frame. A batch of random payloads does not compress: the payloads go raw and the
headers are compressed apart as columns, each field as its change from the record before
(PackedRecords codec 2), which leaves about 8 of a header's 56 bytes for writes at random offsets.
The \`rate:\` cap counts frame bytes, before TLS and TCP/IP: at the line's nominal rate it asks
${capNote.join(', ')} line bytes per frame byte, more than the line has, so the line stays the bottleneck.
`;
    writeSection('goodput', md);
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
