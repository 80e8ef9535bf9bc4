// Starts `offsite daemon` as a real child process on a temp config.
import type { PeerStatus } from '../../src/contract/status.js';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { tempDir } from './run.js';

export const OFFSITE_BIN = new URL('../../../bin/offsite.js', import.meta.url).pathname;

export interface DaemonOptions {
  dir?: string;
  /** Extra YAML for the volumes: map, already indented by four spaces per key. */
  volumes?: Record<string, { size?: string; role?: string; path?: string; default?: boolean; peer?: string; journal?: string; on_full?: string }>;
  unix?: boolean;
  node?: string;
  /** The whole config, given the NBD and API ports (replaces the generated one). */
  yaml?: (ports: { nbd: number; api: number }) => string;
  /** Do not start the daemon yet. */
  noStart?: boolean;
}

export class TestDaemon {
  child: ChildProcess | null = null;
  log = '';
  readonly dir: string;
  readonly configFile: string;
  readonly port: number;
  apiPort = 0;
  readonly socketPath: string;
  readonly unix: boolean;

  private constructor(dir: string, configFile: string, port: number, unix: boolean) {
    this.dir = dir;
    this.configFile = configFile;
    this.port = port;
    this.unix = unix;
    this.socketPath = path.join(dir, 'nbd.sock');
  }

  static async create(opts: DaemonOptions = {}): Promise<TestDaemon> {
    const dir = opts.dir ?? tempDir('daemon');
    const port = await freePort();
    const apiPort = await freePort();
    const unix = opts.unix ?? false;
    const volumes = opts.volumes ?? { disk: { size: '64MiB' } };
    const lines = [
      `node: ${opts.node ?? 'site-a'}`,
      'state: ./state',
      `nbd: ${unix ? 'unix:./nbd.sock' : `127.0.0.1:${port}`}`,
      `api: 127.0.0.1:${apiPort}`,
      'peers:',
      '  site-b: { address: "127.0.0.1:7701" }',
      'volumes:',
    ];
    for (const [name, v] of Object.entries(volumes)) {
      lines.push(`  ${name}:`, `    path: ${v.path ?? `./${name}.img`}`, `    role: ${v.role ?? 'primary'}`);
      if (v.size) lines.push(`    size: ${v.size}`);
      if (v.default) lines.push('    default: true');
      if (v.peer) lines.push(`    peer: ${v.peer}`);
      if (v.journal) lines.push(`    journal: ${v.journal}`);
      if (v.on_full) lines.push(`    on_full: ${v.on_full}`);
    }
    const configFile = path.join(dir, 'offsite.yaml');
    fs.writeFileSync(configFile, opts.yaml ? opts.yaml({ nbd: port, api: apiPort }) : lines.join('\n') + '\n');
    const d = new TestDaemon(dir, configFile, port, unix);
    d.apiPort = apiPort;
    if (!opts.noStart) await d.start();
    return d;
  }

  uri(name = 'disk'): string {
    return this.unix ? `nbd+unix:///${name}?socket=${this.socketPath}` : `nbd://127.0.0.1:${this.port}/${name}`;
  }

  /** For qemu-io/qemu-img --image-opts style: a json: or nbd: filename. */
  qemuTarget(name = 'disk'): string {
    return this.unix ? `nbd+unix:///${name}?socket=${this.socketPath}` : `nbd://127.0.0.1:${this.port}/${name}`;
  }

  connectOptions(): net.NetConnectOpts {
    return this.unix ? { path: this.socketPath } : { host: '127.0.0.1', port: this.port };
  }

  async start(): Promise<void> {
    this.log = '';
    const child = spawn(process.execPath, [OFFSITE_BIN, 'daemon', '-c', this.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OFFSITE_LOG: 'json', OFFSITE_LOG_LEVEL: process.env.OFFSITE_LOG_LEVEL ?? 'info' },
    });
    this.child = child;
    const onOut = (b: Buffer): void => {
      this.log += b.toString();
    };
    child.stdout!.on('data', onOut);
    child.stderr!.on('data', onOut);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon did not start within 15 s:\n${this.log}`)), 15_000);
      const check = (): void => {
        if (this.log.includes('ready: ')) {
          clearTimeout(timer);
          child.stderr!.off('data', check);
          resolve();
        }
      };
      child.stderr!.on('data', check);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited with ${code} before it was ready:\n${this.log}`));
      });
    });
  }

  /** The daemon's process id (while it runs). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM and wait; resolves the exit code. */
  async stop(): Promise<number | null> {
    return this.signal('SIGTERM');
  }

  async kill9(): Promise<void> {
    await this.signal('SIGKILL');
  }

  private async signal(sig: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(sig);
    const code = await exited;
    this.child = null;
    return code;
  }
}

/**
 * Ports handed out by any test process of this machine, as files named after them: two
 * test files run at once (scripts/test.js), and a port one hands out stays that test's
 * while its daemon restarts on it, though nothing listens on it between. The kernel may
 * offer a closed port again, to this process or another; a port with a file is not
 * handed out again. scripts/test.js clears the folder before a run (never during one:
 * two processes taking over one old file could both end up holding its port).
 */
const RESERVED = path.join(os.tmpdir(), 'offsite-test-ports');
/** Ports tried before giving up (the folder full of another day's runs: clear it). */
const PORT_TRIES = 2000;

function reserve(kind: 'tcp' | 'udp', port: number): boolean {
  fs.mkdirSync(RESERVED, { recursive: true });
  try {
    fs.closeSync(fs.openSync(path.join(RESERVED, `${kind}-${port}`), 'wx'));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return false;
  }
}

function noPort(kind: string): Error {
  return new Error(`no free ${kind} port in ${PORT_TRIES} tries that no test holds: clear ${RESERVED} (scripts/test.js does before a run)`);
}

/** A UDP port on 127.0.0.1 free now and handed out to no other test (SNMP agents and trap receivers). */
export async function freeUdpPort(): Promise<number> {
  for (let tries = 0; tries < PORT_TRIES; tries++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => {
        const { port: p } = s.address();
        s.close(() => resolve(p));
      });
    });
    if (reserve('udp', port)) return port;
  }
  throw noPort('UDP');
}

/** A TCP port on 127.0.0.1 free now and handed out to no other test, in this process or another. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < PORT_TRIES; tries++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (reserve('tcp', port)) return port;
  }
  throw noPort('TCP');
}

/** One volume of statusOf's answer: the fields the tests read. */
type VolumeStatusRow = {
  name: string; link: string; backlogBytes: number; lagSeconds: number; consistent: boolean; tracking: string; peers: PeerStatus[];
  resyncing: boolean; overflows: number; role: string; peer: string | null; resyncBytes: number; resyncSeededBytes: number;
  verify: { state: string; elapsedMs: number; rateBytesPerSecond: number } | null;
  journalUsedBytes: number; journalCapacityBytes: number; shipping: { recordBytes: number };
};

/** Status of a running daemon through its API. */
export async function statusOf(d: TestDaemon): Promise<{ volumes: VolumeStatusRow[] }> {
  const r = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`);
  return (await r.json()) as { volumes: VolumeStatusRow[] };
}
