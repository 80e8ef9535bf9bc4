// A kernel-shaped link for the benches (needs root): site-a and site-b in network
// namespaces of their own, joined through a third namespace that routes between
// them, with tbf on the router's two egress veths (the bottleneck is a router on
// the path, as on a real line, not the sender's own qdisc). Each site's NBD and API
// listen on a second, unshaped veth to the root namespace, so the bench writes and
// samples status from here without touching the shaped path.
//
//   root ──mgmt──> ns A ──(A→R)── ns R (tbf both ways) ──(R→B)── ns B <──mgmt── root
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RawClient } from '../test/helpers/raw-client.js';
import * as P from '../src/nbd/protocol.js';
import { bin } from './sites.js';

export interface Net {
  tag: string;
  nsA: string; nsB: string; nsR: string;
  /** Addresses of the link (A's and B's ends), and of the unshaped management side. */
  linkA: string; linkB: string; mgmtA: string; mgmtB: string;
  /** The router's egress veths: toward B (carries A→B) and toward A (carries B→A). */
  toB: string; toA: string;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function inNs(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Whether this kernel has a queueing discipline (tbf, netem) built in or loadable. */
export function hasQdisc(kind: string): boolean {
  try {
    execFileSync('modprobe', [`sch_${kind}`], { stdio: 'ignore' });
  } catch {
    // built in, or absent: the probe below tells
  }
  const ns = `ofs-probe-${process.pid}`;
  try {
    ip('netns', 'add', ns);
    inNs(ns, 'ip', ['link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
    inNs(ns, 'tc', [
      'qdisc', 'add', 'dev', 'p0', 'root', kind, ...(kind === 'tbf' ? ['rate', '1mbit', 'burst', '32kbit', 'latency', '400ms'] : ['delay', '20ms']),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    try { ip('netns', 'del', ns); } catch { /* gone */ }
  }
}

/** Builds the three namespaces and four veth pairs; unshaped until shape() is called. */
export function makeNet(): Net {
  const tag = randomBytes(2).toString('hex');
  const o = 200 + Math.floor(Math.random() * 50);
  const n: Net = {
    tag, nsA: `ofs-${tag}-a`, nsB: `ofs-${tag}-b`, nsR: `ofs-${tag}-r`,
    linkA: `10.${o}.1.2`, linkB: `10.${o}.2.2`, mgmtA: `10.${o}.3.2`, mgmtB: `10.${o}.4.2`,
    toB: `o${tag}rb`, toA: `o${tag}ra`,
  };
  try {
    for (const ns of [n.nsA, n.nsB, n.nsR]) {
      ip('netns', 'add', ns);
      inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    }
    const pair = (a: string, nsa: string | null, addrA: string, b: string, nsb: string, addrB: string): void => {
      ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
      if (nsa) ip('link', 'set', a, 'netns', nsa);
      ip('link', 'set', b, 'netns', nsb);
      const run = (ns: string | null, args: string[]): void => (ns ? void inNs(ns, 'ip', args) : ip(...args));
      run(nsa, ['addr', 'add', `${addrA}/24`, 'dev', a]);
      run(nsa, ['link', 'set', a, 'up']);
      run(nsb, ['addr', 'add', `${addrB}/24`, 'dev', b]);
      run(nsb, ['link', 'set', b, 'up']);
    };
    pair(`o${tag}la`, n.nsA, n.linkA, n.toA, n.nsR, `10.${o}.1.1`);
    pair(`o${tag}lb`, n.nsB, n.linkB, n.toB, n.nsR, `10.${o}.2.1`);
    pair(`o${tag}ma`, null, `10.${o}.3.1`, `o${tag}na`, n.nsA, n.mgmtA);
    pair(`o${tag}mb`, null, `10.${o}.4.1`, `o${tag}nb`, n.nsB, n.mgmtB);
    inNs(n.nsR, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    inNs(n.nsA, 'ip', ['route', 'add', `10.${o}.2.0/24`, 'via', `10.${o}.1.1`]);
    inNs(n.nsB, 'ip', ['route', 'add', `10.${o}.1.0/24`, 'via', `10.${o}.2.1`]);
  } catch (e) {
    dropNet(n);
    throw e;
  }
  return n;
}

/**
 * tbf's burst: 32 kbit (the brief's setting at 1 Mbit/s), or 32 ms of the line at higher
 * rates. A fixed 32 kbit is 3.2 ms at 10 Mbit/s, under tc's rule of at least rate/HZ
 * (HZ 250 here: 5 kB), and on a busy VM the qdisc's timer then wakes too late to keep
 * the line busy: a plain TCP stream got 97-98% of a 10 Mbit/s line with it, 99.7% with
 * 320 kbit.
 */
export function burstBits(bitsPerSecond: number): number {
  return Math.max(32_000, Math.round(bitsPerSecond * 0.032));
}

/** tbf at `bitsPerSecond` on both directions of the link (null: unshaped). */
export function shape(n: Net, bitsPerSecond: number | null): void {
  for (const dev of [n.toB, n.toA]) {
    try { inNs(n.nsR, 'tc', ['qdisc', 'del', 'dev', dev, 'root']); } catch { /* none yet */ }
    if (bitsPerSecond !== null) {
      inNs(n.nsR, 'tc', [
        'qdisc', 'add', 'dev', dev, 'root', 'tbf',
        'rate', `${Math.round(bitsPerSecond / 1000)}kbit`, 'burst', `${Math.round(burstBits(bitsPerSecond) / 1000)}kbit`, 'latency', '400ms',
      ]);
    }
  }
}

export function tbfCommand(bitsPerSecond: number): string {
  return `tc qdisc add dev <veth> root tbf rate ${Math.round(bitsPerSecond / 1000)}kbit burst ${Math.round(burstBits(bitsPerSecond) / 1000)}kbit latency 400ms`;
}

/** The router's qdisc counters toward B (what the line carried A→B: Ethernet frames). */
export function qdiscStats(n: Net, dev = n.toB): { bytes: number; packets: number; dropped: number } {
  const out = inNs(n.nsR, 'tc', ['-s', 'qdisc', 'show', 'dev', dev]);
  const m = /Sent (\d+) bytes (\d+) pkt \(dropped (\d+)/.exec(out);
  return { bytes: Number(m?.[1] ?? 0), packets: Number(m?.[2] ?? 0), dropped: Number(m?.[3] ?? 0) };
}

export interface TcpInfo { bytesSent: number; bytesRetrans: number; bytesAcked: number; rttMs: number; minRttMs: number; mss: number }

/** TCP counters of the connection from `ns` to dst:port (ss -ti). */
export function tcpInfo(ns: string, dst: string, port: number): TcpInfo | null {
  const out = inNs(ns, 'ss', ['-tinH', 'dst', `${dst}:${port}`]);
  if (!out.trim()) return null;
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  return {
    bytesSent: num(/bytes_sent:(\d+)/), bytesRetrans: num(/bytes_retrans:(\d+)/), bytesAcked: num(/bytes_acked:(\d+)/),
    rttMs: num(/\brtt:([\d.]+)/), minRttMs: num(/minrtt:([\d.]+)/), mss: num(/\bmss:(\d+)/),
  };
}

export function dropNet(n: Net): void {
  for (const ns of [n.nsA, n.nsB, n.nsR]) {
    try { ip('netns', 'del', ns); } catch { /* not made */ }
  }
}

// --- the two sites, one in each namespace --------------------------------------

export interface NsSite {
  name: string; ns: string; cfg: string; dir: string; host: string; nbd: number; api: number; linkPort: number; proc: ChildProcess | null;
}

/**
 * site-a (primary) and site-b (secondary) of volume `db`, paired (init, fingerprints
 * pinned). `volume` is the rest of the volume's flow map; `peer` extra peer keys.
 */
export function makeNsSites(dir: string, n: Net, base: number, volume: string, peer = ''): [NsSite, NsSite] {
  const sites: NsSite[] = [
    { name: 'site-a', ns: n.nsA, cfg: path.join(dir, 'site-a.yaml'), dir, host: n.mgmtA, nbd: base, api: base + 1, linkPort: base + 2, proc: null },
    { name: 'site-b', ns: n.nsB, cfg: path.join(dir, 'site-b.yaml'), dir, host: n.mgmtB, nbd: base + 3, api: base + 4, linkPort: base + 5, proc: null },
  ];
  const linkHost = [n.linkA, n.linkB];
  sites.forEach((s, me) => {
    const other = sites[1 - me]!;
    fs.writeFileSync(s.cfg, `node: ${s.name}\nstate: ./state-${s.name}\nnbd: ${s.host}:${s.nbd}\n` +
      `link: ${linkHost[me]}:${s.linkPort}\napi: ${s.host}:${s.api}\n` +
      `peers:\n  ${other.name}: { address: "${linkHost[1 - me]}:${other.linkPort}", fingerprint: "FP", timeout: 5s${peer ? `, ${peer}` : ''} }\n` +
      `volumes:\n  db: { path: ./${s.name}.img, role: ${me === 0 ? 'primary' : 'secondary'}, peer: ${other.name}, ${volume} }\n`);
  });
  const fp = (s: NsSite): string => execFileSync(process.execPath, [bin, 'init', '-c', s.cfg], { encoding: 'utf8' }).trim().split('\n').pop()!;
  const [fa, fb] = [fp(sites[0]!), fp(sites[1]!)];
  fs.writeFileSync(sites[0]!.cfg, fs.readFileSync(sites[0]!.cfg, 'utf8').replace('"FP"', `"${fb}"`));
  fs.writeFileSync(sites[1]!.cfg, fs.readFileSync(sites[1]!.cfg, 'utf8').replace('"FP"', `"${fa}"`));
  return sites as [NsSite, NsSite];
}

export function startIn(s: NsSite): void {
  const out = fs.openSync(`${s.cfg}.log`, 'a');
  // (`ip netns exec` execs the command: the child's pid is the daemon's.)
  s.proc = spawn('ip', ['netns', 'exec', s.ns, process.execPath, bin, 'daemon', '-c', s.cfg], { stdio: ['ignore', out, out] });
}

export async function stopIn(s: NsSite): Promise<void> {
  const p = s.proc;
  if (!p || p.exitCode !== null || p.signalCode !== null) { s.proc = null; return; }
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await done;
  s.proc = null;
}

/** Edits site `s`'s peer line (e.g. adds `rate: 1mbit`) and reloads it with SIGHUP. */
export function reloadPeer(s: NsSite, extra: string): void {
  const text = fs.readFileSync(s.cfg, 'utf8').replace(/(timeout: 5s)(, [^}]*)? \}/, `$1${extra ? `, ${extra}` : ''} }`);
  fs.writeFileSync(s.cfg, text);
  s.proc?.kill('SIGHUP');
}

export interface VolStatus {
  link: string; role: string; backlogBytes: number; lagSeconds: number; hostBytes: number; wireBytes: number; resyncing: boolean; consistent: boolean;
  linkRateBytesPerSecond: number | null;
  shipping: {
    recordBytes: number; compressionRatio: number; level: number | null; compressedInBytes: number; compressedOutBytes: number; wireRateBytesPerSecond: number;
    /** (Newer daemons) the shipper's window now and the link's measured round trip. */
    windowBytes?: number | null; rttMs?: number | null; batchBytes?: number | null; capacityBytesPerSecond?: number | null; coalescedBytes?: number;
  } | null;
}

export async function status(s: NsSite): Promise<VolStatus | null> {
  try {
    const r = await fetch(`http://${s.host}:${s.api}/api/v1/status`);
    return ((await r.json()) as { volumes: VolStatus[] }).volumes[0] ?? null;
  } catch {
    return null;
  }
}

export async function waitFor(f: () => Promise<boolean>, timeoutMs = 300_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Primary linked and nothing pending on either side, the secondary consistent. */
export function drainedNs(a: NsSite, b: NsSite, timeoutMs = 300_000): Promise<void> {
  return waitFor(async () => {
    const [x, y] = [await status(a), await status(b)];
    return Boolean(x && y && x.link === 'connected' && x.backlogBytes === 0 && !x.resyncing && y.consistent && !y.resyncing && y.backlogBytes === 0);
  }, timeoutMs, 'the pair to drain');
}

// --- an NBD writer: pipelined writes and flushes through the primary's export -----

export class NbdWriter {
  private handle = 0n;
  private readonly pending = new Map<bigint, { resolve: () => void; reject: (e: Error) => void }>();
  private pumping = false;

  private constructor(private readonly c: RawClient) {}

  static async open(host: string, port: number, name = 'db'): Promise<NbdWriter> {
    const c = await RawClient.connect({ host, port });
    await c.go(name);
    return new NbdWriter(c);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.cmd(P.NBD_CMD_WRITE, offset, data.length, data);
  }

  flush(): Promise<void> {
    return this.cmd(P.NBD_CMD_FLUSH, 0, 0);
  }

  private cmd(type: number, offset: number, length: number, data?: Buffer): Promise<void> {
    const h = ++this.handle;
    const done = new Promise<void>((resolve, reject) => this.pending.set(h, { resolve, reject }));
    this.c.request(type, BigInt(offset), length, { handle: h, ...(data ? { data } : {}) });
    void this.pump();
    return done;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.pending.size > 0) {
        const r = await this.c.simpleReply();
        const p = this.pending.get(r.handle);
        this.pending.delete(r.handle);
        if (r.error !== 0) p?.reject(new Error(`NBD error ${r.error}`));
        else p?.resolve();
      }
    } catch (e) {
      for (const p of this.pending.values()) p.reject(e as Error);
      this.pending.clear();
    } finally {
      this.pumping = false;
    }
  }

  close(): void {
    this.c.close();
  }
}

/**
 * Cleans up on Ctrl-C too: the daemons are killed and the namespaces deleted (the
 * veth pairs go with them).
 */
export function cleanupOnSignal(f: () => Promise<void>): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void f().finally(() => process.exit(130));
    });
  }
}

// --- a plain TCP or TLS 1.3 stream over the same path, for the ceiling ------------

const STREAM_SCRIPT = `
const [mode, role, host, port, secs, key, cert] = process.argv.slice(1);
const net = await import('node:net'); const tls = await import('node:tls'); const crypto = await import('node:crypto'); const fs = await import('node:fs');
if (role === 'sink') {
  let bytes = 0;
  const onConn = (s) => { s.on('data', (d) => { bytes += d.length; }); s.on('error', () => {}); };
  const srv = mode === 'tls' ? tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert), minVersion: 'TLSv1.3' }, onConn) ` +
  `: net.createServer(onConn);
  srv.listen(Number(port), host, () => console.log('listening'));
  setInterval(() => console.log(Date.now() + ' ' + bytes), 50);
} else {
  const s = mode === 'tls' ? tls.connect({ host, port: Number(port), rejectUnauthorized: false, minVersion: 'TLSv1.3' }) : net.connect(Number(port), host);
  const end = Date.now() + Number(secs) * 1000;
  const chunk = () => crypto.randomBytes(64 * 1024);
  const go = () => { while (Date.now() < end) { if (!s.write(chunk())) return; } s.end(); setTimeout(() => process.exit(0), 200); };
  s.on(mode === 'tls' ? 'secureConnect' : 'connect', go); s.on('drain', go); s.on('error', (e) => { console.error(e.message); process.exit(1); });
}
`;

/**
 * Streams random bytes from A to B for `secs` over the shaped path (plain TCP, or TLS
 * 1.3 with site-b's key) and returns the receiver's byte count every 50 ms.
 */
export async function stream(n: Net, mode: 'tcp' | 'tls', port: number, secs: number, keyDir: string): Promise<Array<{ t: number; bytes: number }>> {
  const key = path.join(keyDir, 'node.key');
  const cert = path.join(keyDir, 'node.crt');
  const node = (ns: string, args: string[]): ChildProcess =>
    spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', STREAM_SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const sink = node(n.nsB, [mode, 'sink', n.linkB, String(port), '0', key, cert]);
  const samples: Array<{ t: number; bytes: number }> = [];
  let buf = '';
  const listening = new Promise<void>((resolve) => {
    sink.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        if (l === 'listening') resolve();
        const [t, b] = l.split(' ');
        if (b !== undefined) samples.push({ t: Number(t), bytes: Number(b) });
      }
    });
  });
  try {
    await listening;
    const src = node(n.nsA, [mode, 'source', n.linkB, String(port), String(secs)]);
    await new Promise((r) => src.once('exit', r));
    await sleep(200);
  } finally {
    sink.kill('SIGKILL');
  }
  return samples;
}
