// Running real tools (qemu-io, nbdinfo, fio, ...) from tests.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; never throws on a non-zero exit (the test decides). */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, {
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
      env: opts.env ?? process.env,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a command and throws with its output when it fails. */
export async function must(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Folders tempDir made in this process: removed when it exits (OFFSITE_KEEP_DIRS=1 keeps them, to debug). */
const made: string[] = [];

/**
 * A new folder under the system's temporary folder, removed when this test process
 * exits, whatever the test did with it: a test that forgets its cleanup, or stops
 * half-way, leaves nothing behind (tests run often; their folders filled the disk).
 */
export function tempDir(prefix: string, under = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(under, `offsite-${prefix}-`));
  if (made.length === 0) process.once('exit', removeMade);
  made.push(dir);
  return dir;
}

function removeMade(): void {
  if (process.env.OFFSITE_KEEP_DIRS || process.env.OFFSITE_DEBUG_DIRS) return;
  const mounts = mountPoints();
  for (const dir of made.splice(0)) {
    // A filesystem still mounted in it (a test's unmount failed, and it said so): left
    // whole for the operator. rmSync would cross into the mount and delete its files.
    if (mounts.some((m) => m === dir || m.startsWith(`${dir}/`))) {
      process.stderr.write(`left ${dir}: a filesystem is still mounted in it\n`);
      continue;
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // (Not ours to remove after all, or gone: nothing to do at exit.)
    }
  }
}

/** Where filesystems are mounted now (/proc/mounts; none known without it). */
function mountPoints(): string[] {
  try {
    return fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((p) => p.length > 0)
      .map((p) => p.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
  } catch {
    return [];
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `f` every `everyMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, f: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export { spawn, type ChildProcess };

/** qemu-io writes `length` bytes of `pattern` at `at` (qemu-io's units: "4M") to `target` and flushes: one host write, a flush point after it. */
export function qemuWrite(target: string, pattern: number, at: string, length = '1M'): Promise<string> {
  return must('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${at} ${length}`, '-c', 'flush', target]);
}
