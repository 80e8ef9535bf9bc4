// Two sites on this machine sharing several volumes over one link: site-a holds
// them as primaries, site-b as replicas (test/helpers/pair.ts pairs one volume, db).
import fs from 'node:fs';
import path from 'node:path';
import { OFFSITE_BIN, TestDaemon, freePort, statusOf } from './daemon.js';
import { must, sleep, tempDir } from './run.js';
import type { Pair } from './pair.js';

export interface FleetVolume {
  name: string;
  /** More keys for site-a's entry of this volume (inline YAML, e.g. "weight: 2"). */
  keysA?: string;
}

export interface FleetOptions {
  volumes: FleetVolume[];
  /** Every volume's size (default 32MiB) and journal (default 256MiB). */
  size?: string;
  journal?: string;
  /** More keys for site-a's entry of peer site-b (inline YAML, e.g. "rate: 16mbit, compression: off"). */
  peerKeysA?: string;
  /** Both nodes' memory budget (`memory:`, e.g. "32MiB"; default the node's). */
  memory?: string;
}

export async function startFleet(opts: FleetOptions): Promise<Pair> {
  const root = tempDir('fleet');
  const [linkA, linkB] = [await freePort(), await freePort()];
  const size = opts.size ?? '32MiB';
  const journal = opts.journal ?? '256MiB';
  const mk = (node: string, peer: string, myLink: number, peerLink: number, role: string, peerExtra: string, primary: boolean) =>
    (ports: { nbd: number; api: number }): string => `node: ${node}
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${myLink}
api: 127.0.0.1:${ports.api}
${opts.memory ? `memory: ${opts.memory}\n` : ''}peers:
  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FINGERPRINT"${peerExtra ? `, ${peerExtra}` : ''} }
volumes:
${opts.volumes.map((v) => `  ${v.name}: { path: ./${v.name}.img, size: ${size}, role: ${role}, peer: ${peer}, journal: ${journal}` +
  `${primary && v.keysA ? `, ${v.keysA}` : ''} }`).join('\n')}
`;
  fs.mkdirSync(path.join(root, 'a'));
  fs.mkdirSync(path.join(root, 'b'));
  const a = await TestDaemon.create({
    dir: path.join(root, 'a'), node: 'site-a', noStart: true, yaml: mk('site-a', 'site-b', linkA, linkB, 'primary', opts.peerKeysA ?? '', true),
  });
  const b = await TestDaemon.create({
    dir: path.join(root, 'b'), node: 'site-b', noStart: true, yaml: mk('site-b', 'site-a', linkB, linkA, 'secondary', '', false),
  });
  const fp = async (d: TestDaemon): Promise<string> => (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!;
  const [fa, fb] = [await fp(a), await fp(b)];
  fs.writeFileSync(a.configFile, fs.readFileSync(a.configFile, 'utf8').replace('FINGERPRINT', fb));
  fs.writeFileSync(b.configFile, fs.readFileSync(b.configFile, 'utf8').replace('FINGERPRINT', fa));
  await b.start();
  await a.start();
  return {
    a, b,
    async stop() {
      await a.stop();
      await b.stop();
      if (!process.env.OFFSITE_KEEP_DIRS && !process.env.OFFSITE_DEBUG_DIRS) fs.rmSync(root, { recursive: true, force: true });
    },
    async drained(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await statusOf(a).catch(() => null);
        const t = await statusOf(b).catch(() => null);
        const quiet = (v: { backlogBytes: number; resyncing?: boolean }): boolean => v.backlogBytes === 0 && v.resyncing !== true;
        if (s && t && s.volumes.every((v) => v.link === 'connected' && quiet(v)) && t.volumes.every((v) => quiet(v) && v.consistent)) return;
        if (Date.now() > deadline) {
          throw new Error(`not drained after ${timeoutMs} ms: ${JSON.stringify(s)} ${JSON.stringify(t)}\n${a.log.slice(-2000)}\n${b.log.slice(-2000)}`);
        }
        await sleep(200);
      }
    },
  };
}

/** Each volume's frame bytes on the link so far (`wireBytes` in /api/v1/status), by name. */
export async function wireBytes(d: TestDaemon): Promise<Map<string, number>> {
  const r = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`);
  const s = (await r.json()) as { volumes: Array<{ name: string; wireBytes: number }> };
  return new Map(s.volumes.map((v) => [v.name, v.wireBytes]));
}

/**
 * Writes `bytes` to `volume` at site-a through its NBD export, in writes of `writeBytes`
 * from the start of `source` (a file of random data at least that long), then flushes.
 * Host writes are the link's grain too: a write is one record, and a record one frame
 * at least, so writes much larger than a batch would share the link by whole writes.
 */
export async function writeVolume(d: TestDaemon, volume: string, bytes: number, source: string, writeBytes = 128 * 1024): Promise<void> {
  const cmds: string[] = [];
  for (let off = 0; off < bytes; off += writeBytes) cmds.push('-c', `write -q -s ${source} ${off} ${Math.min(writeBytes, bytes - off)}`);
  await must('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', d.uri(volume)], { timeoutMs: 300_000 });
}

/** Volumes written at once by sampleShares. */
const WRITERS = 24;

export interface ShareWindow {
  /** Seconds from the start of the writes. */
  from: number;
  to: number;
  /** Bytes each volume sent in the window. */
  sent: Map<string, number>;
}

/**
 * Starts writing `bytes[name]` to each volume at once and samples their wire bytes
 * twice a second until one of them has less than `tailBytes` left to send (or
 * `maxSeconds` passed). Returns the windows of `windowSeconds`, from `skipSeconds`
 * after every volume had begun sending, in which every volume still had more than
 * `tailBytes` to send: a volume that ran out of data no longer wants its share. The
 * writes are awaited before returning.
 */
export async function sampleShares(
  d: TestDaemon,
  bytes: Map<string, number>,
  source: string,
  opts: {
    skipSeconds: number; windowSeconds: number; maxSeconds: number; tailBytes: number;
    /** Takes the link down while every volume is written, and up again after (`linkDown`, below). */
    linkDown?: { down(): Promise<void>; up(): Promise<void> };
  },
): Promise<{ windows: ShareWindow[]; said: string }> {
  // (At most WRITERS at once: the daemon takes 32 NBD connections from one address.
  // Writing to the journal is much faster than the link, so all have a backlog soon.)
  const queue = [...bytes];
  const writer = async (): Promise<void> => {
    for (let next = queue.shift(); next; next = queue.shift()) await writeVolume(d, next[0], next[1], source);
  };
  const writeAll = (): Promise<unknown> => Promise.all(Array.from({ length: Math.min(WRITERS, queue.length) }, writer));
  // `linkDown`: the link is down while all are written, and every volume's backlog
  // meets the link at once when it comes back (a link back after an outage). With a
  // hundred volumes the writers reach them in turn, and the first written would
  // otherwise have shipped part of theirs before the last began (and run out first).
  // (Not a pause of each volume: resumed one after another, the first resumed has the
  // link alone, and sizes its first batch so.)
  if (opts.linkDown) {
    await opts.linkDown.down();
    await writeAll();
  }
  const w0 = await wireBytes(d);
  const t0 = Date.now();
  if (opts.linkDown) await opts.linkDown.up();
  const writes = opts.linkDown ? Promise.resolve() : writeAll();
  let failed: unknown = null;
  writes.catch((e: unknown) => (failed = e));
  const samples: Array<{ t: number; w: Map<string, number> }> = [];
  for (;;) {
    await sleep(500);
    if (failed) throw failed;
    const w = await wireBytes(d);
    const t = (Date.now() - t0) / 1000;
    samples.push({ t, w });
    if (process.env.FLEET_DEBUG) console.error(t.toFixed(1), [...bytes.keys()].map((k) => ((w.get(k)! - w0.get(k)!) / 2 ** 20).toFixed(2)).join(' '));
    const short = [...bytes].some(([name, n]) => n - (w.get(name)! - w0.get(name)!) < opts.tailBytes);
    if (short || t > opts.maxSeconds) break;
  }
  await writes;
  // (The last sample is the first with a volume short of data: windows end before it.)
  const usable = samples.slice(0, -1);
  const windows: ShareWindow[] = [];
  // (Counted from the first sample in which every volume had sent something: on a
  // loaded machine the writers start apart, and the first ones have the link alone.)
  const allSending = usable.find((s) => [...bytes.keys()].every((n) => s.w.get(n)! > w0.get(n)!));
  let start = allSending ? usable.findIndex((s) => s.t >= allSending.t + opts.skipSeconds) : -1;
  while (start >= 0 && start < usable.length) {
    const a = usable[start]!;
    const endAt = usable.findIndex((s) => s.t >= a.t + opts.windowSeconds);
    if (endAt < 0) break;
    const b = usable[endAt]!;
    windows.push({ from: a.t, to: b.t, sent: new Map([...bytes.keys()].map((n) => [n, b.w.get(n)! - a.w.get(n)!])) });
    start = endAt;
  }
  // What each volume had sent when sampling stopped (for a test's message).
  const last = samples[samples.length - 1];
  const said = last
    ? `after ${last.t.toFixed(1)} s: ${[...bytes.keys()].map((n) => `${n} ${((last.w.get(n)! - w0.get(n)!) / 2 ** 20).toFixed(2)} MiB`).join(', ')}`
    : 'no sample';
  return { windows, said };
}

/** Jain's fairness index of `xs`: 1 when all are equal, 1/n when one has everything. */
export function jain(xs: number[]): number {
  const s = xs.reduce((a, b) => a + b, 0);
  const q = xs.reduce((a, b) => a + b * b, 0);
  return q === 0 ? 1 : (s * s) / (xs.length * q);
}

/** The resident set of a daemon's process now (VmRSS of /proc/PID/status), in bytes. */
export function rssOf(d: TestDaemon): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${d.pid!}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${d.pid}`);
  return Number(m[1]) * 1024;
}

/** Samples both daemons' RSS every `everyMs` until stopped: the peaks, for a burst. */
export function sampleRss(p: Pair, everyMs = 100): { stop(): Promise<{ a: number; b: number }> } {
  let a = rssOf(p.a);
  let b = rssOf(p.b);
  let going = true;
  const loop = (async () => {
    while (going) {
      try {
        a = Math.max(a, rssOf(p.a));
        b = Math.max(b, rssOf(p.b));
      } catch {
        // (a daemon that stopped: its last figure stands)
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      going = false;
      await loop;
      return { a, b };
    },
  };
}

/**
 * Writes `bytes` to every volume at once (at most WRITERS at a time), in writes of
 * `writeBytes` of `source`: a burst.
 */
export async function burst(d: TestDaemon, names: string[], bytes: number, source: string, writeBytes = 1 << 20): Promise<void> {
  const queue = [...names];
  await Promise.all(Array.from({ length: Math.min(WRITERS, queue.length) }, async () => {
    for (let n = queue.shift(); n; n = queue.shift()) await writeVolume(d, n, bytes, source, writeBytes);
  }));
}
