// PostgreSQL for crash-consistency tests: a cluster made with initdb on a mounted
// export, postgres started as the `postgres` user (it refuses root) in its own
// process group, queries through psql over a unix socket in /tmp, pgbench. A
// database that completes crash recovery on an image and keeps its invariants is
// the strongest check of a flush-point image there is. Root only (the tests mount).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { run, sleep } from './run.js';
import type { FuseLoop } from './ext4.js';

/** The newest /usr/lib/postgresql/N/bin with a postgres in it, or null. */
export function pgBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!fs.existsSync(base)) return null;
  const versions = fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, 'bin', 'postgres'))).sort((x, y) => Number(y) - Number(x));
  return versions[0] ? path.join(base, versions[0], 'bin') : null;
}

/** PostgreSQL's binaries, or an error that says how to get them. */
export function requirePg(): string {
  const bin = pgBin();
  if (!bin) throw new Error('PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): install the Debian package postgresql (.ci/run does)');
  return bin;
}

/** The uid and gid postgres runs as: the `postgres` user the Debian package creates. */
export function pgUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error('no user named postgres on this machine (the postgresql package creates it)');
  }
}

/** A directory postgres may use: owned by it, mode 0700 (what a data directory needs). */
export function pgOwnedDir(dir: string): string {
  const { uid, gid } = pgUser();
  fs.mkdirSync(dir, { recursive: true });
  fs.chownSync(dir, uid, gid);
  fs.chmodSync(dir, 0o700);
  return dir;
}

/** initdb as the postgres user; throws with its output. */
export async function initdb(dataDir: string, opts: { waldir?: string } = {}): Promise<void> {
  const bin = requirePg();
  pgOwnedDir(dataDir);
  // --waldir: pg_wal is a symlink to it (a log volume of its own).
  if (opts.waldir) pgOwnedDir(opts.waldir);
  const r = await runAsPg(path.join(bin, 'initdb'), [
    '-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', ...(opts.waldir ? ['--waldir', opts.waldir] : []),
  ]);
  if (r.code !== 0) throw new Error(`initdb -D ${dataDir} exited ${r.code}:\n${r.out}`);
}

function runAsPg(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const { uid, gid } = pgUser();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      uid, gid, cwd: '/tmp', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', HOME: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('error', (e) => resolve({ code: -1, out: out + String(e) }));
    child.once('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

export interface PgStartOptions {
  dataDir: string;
  port: number;
  /** The unix socket's directory (made, owned by postgres). */
  socketDir: string;
  /** Waits this long for "ready to accept connections" (crash recovery included). */
  readyTimeoutMs?: number;
}

/** One running postmaster (its own process group) and its log. */
export class PgInstance {
  log = '';
  private constructor(readonly opts: PgStartOptions, private readonly child: ChildProcess) {}

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts postgres and waits until it accepts connections: after crash recovery on an
   * image that was not shut down cleanly. Throws with its log if it exits first.
   */
  static async start(opts: PgStartOptions): Promise<PgInstance> {
    const bin = requirePg();
    const { uid, gid } = pgUser();
    pgOwnedDir(opts.socketDir);
    const settings = [
      'listen_addresses=', `unix_socket_directories=${opts.socketDir}`, `port=${opts.port}`,
      'shared_buffers=32MB', 'max_connections=30', 'max_wal_size=128MB', 'min_wal_size=32MB', 'checkpoint_timeout=30s',
      // The defaults, said out loud: what makes a commit durable and a page whole after a crash.
      'fsync=on', 'synchronous_commit=on', 'full_page_writes=on', 'wal_sync_method=fdatasync',
      'log_checkpoints=on', 'logging_collector=off',
    ];
    const args = ['-D', opts.dataDir];
    for (const s of settings) args.push('-c', s);
    const child = spawn(path.join(bin, 'postgres'), args, {
      uid, gid, cwd: '/tmp', detached: true, stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', HOME: '/tmp' },
    });
    const pg = new PgInstance(opts, child);
    const onOut = (b: Buffer): void => {
      pg.log += b.toString();
    };
    child.stdout!.on('data', onOut);
    child.stderr!.on('data', onOut);
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
    for (;;) {
      if (pg.log.includes('database system is ready to accept connections')) return pg;
      if (!pg.alive) {
        throw new Error(`postgres -D ${opts.dataDir} exited (${child.exitCode ?? child.signalCode}) before it accepted connections:\n${pg.log.slice(-4000)}`);
      }
      if (Date.now() > deadline) {
        await pg.kill9();
        throw new Error(`postgres -D ${opts.dataDir} did not accept connections within ${opts.readyTimeoutMs ?? 120_000} ms:\n${pg.log.slice(-4000)}`);
      }
      await sleep(100);
    }
  }

  /** psql's connection arguments (as the postgres role, trust over the socket). */
  conn(): string[] {
    return ['-h', this.opts.socketDir, '-p', String(this.opts.port), '-U', 'postgres'];
  }

  /** One or more statements; the last one's rows, unaligned, '|'-separated. Throws with what psql said. */
  async sql(...statements: string[]): Promise<string> {
    const args = ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', ...this.conn(), '-d', 'postgres'];
    for (const s of statements) args.push('-c', s);
    const r = await run(path.join(requirePg(), 'psql'), args, { timeoutMs: 60_000 });
    if (r.code !== 0) {
      throw new Error(`psql on port ${this.opts.port} (${statements.join('; ')}) exited ${r.code}: ` +
        `${r.stderr.trim()}${r.stdout.trim() ? ` / ${r.stdout.trim()}` : ''}`);
    }
    return r.stdout.trim();
  }

  /** A fast shutdown (SIGINT); the whole group is killed if it takes longer than timeoutMs. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (!this.alive) return this.reap();
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    try {
      process.kill(this.pid, 'SIGINT');
    } catch { /* gone */ }
    await within(exited, timeoutMs);
    await this.kill9();
  }

  /**
   * kill -9 of the postmaster and every process it started (a site lost); waits until
   * all are gone. Backends are their own process groups (PostgreSQL calls setsid), and
   * once the postmaster dies they belong to init: so the tree is collected first.
   */
  async kill9(): Promise<void> {
    const pids = new Set<number>([this.pid, ...descendants(this.pid)]);
    for (let i = 0; i < 300; i++) {
      for (const d of descendants(this.pid)) pids.add(d);
      const alive = [...pids].filter((pid) => isAlive(pid));
      if (alive.length === 0) return;
      for (const pid of alive) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch { /* gone */ }
      }
      await sleep(100);
    }
    throw new Error(`processes of postgres ${this.pid} still alive after 30 s: ${[...pids].filter(isAlive).join(', ')} (stuck in I/O?)`);
  }

  private async reap(): Promise<void> {
    await this.kill9();
  }
}

function isAlive(pid: number): boolean {
  // (A zombie is gone for this purpose: it holds no files.)
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Every process below pid (from /proc). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    for (const c of children.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

/**
 * Unmounts (lazily if it is busy or its device is dead) and detaches a FuseLoop
 * without ever waiting forever: after timeoutMs the nbdfuse of dir/nbdfuse.pid is
 * killed and the FUSE mount torn down lazily. Never throws (cleanup).
 */
export async function teardownFuse(fl: FuseLoop | null, dir: string, mnt: string | null, timeoutMs = 20_000): Promise<string[]> {
  const notes: string[] = [];
  if (mnt) {
    const u = await run('umount', [mnt], { timeoutMs });
    if (u.code !== 0 && !/not mounted/.test(u.stderr)) {
      notes.push(`umount ${mnt}: ${u.stderr.trim()}; unmounting lazily`);
      await run('umount', ['-l', mnt], { timeoutMs });
    }
  }
  if (!fl) return notes;
  const detached = fl.detach().then(() => 'done' as const, (e: Error) => e.message);
  const first = await within(detached, timeoutMs);
  if (first !== 'done') {
    notes.push(`detaching ${fl.loop}: ${first}; killing nbdfuse`);
    const pidFile = path.join(dir, 'nbdfuse.pid');
    const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').trim()) : NaN;
    if (Number.isInteger(pid) && pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    await run('fusermount3', ['-uz', fl.mountDir]);
    await within(detached, timeoutMs);
  }
  return notes;
}

/** p, or 'timeout' after ms (the timer does not outlive p: no process kept alive by it). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)));
  try {
    return await Promise.race([p, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** A loop device over an image file (no FUSE: a plain copy). */
export async function loopAttach(file: string): Promise<string> {
  const r = await run('losetup', ['--find', '--show', file]);
  if (r.code !== 0) throw new Error(`losetup --find --show ${file} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** A cleanup stack: run in reverse, every step even when one fails; what failed is returned. */
export class Cleanups {
  private steps: Array<{ what: string; f: () => Promise<unknown> }> = [];
  push<T>(what: string, f: () => Promise<T>): () => Promise<T> {
    const step = { what, f };
    this.steps.push(step);
    // Running a step early removes it from the stack.
    return async () => {
      this.steps = this.steps.filter((s) => s !== step);
      return f();
    };
  }
  async runAll(): Promise<string[]> {
    const errors: string[] = [];
    for (const s of this.steps.splice(0).reverse()) {
      try {
        const notes = await s.f();
        if (Array.isArray(notes) && notes.length > 0) errors.push(`${s.what}: ${notes.join('; ')}`);
      } catch (e) {
        errors.push(`${s.what}: ${(e as Error).message}`);
      }
    }
    return errors;
  }
}
