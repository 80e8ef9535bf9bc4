// A real ext4 filesystem on an Offsite export: nbdfuse presents the export as a
// file, losetup makes it a block device, the kernel's ext4 mounts it. Needs root.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { run, sleep } from './run.js';

export class FuseLoop {
  private constructor(
    readonly mountDir: string,
    readonly file: string,
    readonly loop: string,
    private readonly fuse: ChildProcess,
  ) {}

  /** nbdfuse URI at dir/fuse/disk, then a loop device over that file (both read-only with readOnly). */
  static async attach(uri: string, dir: string, opts: { readOnly?: boolean } = {}): Promise<FuseLoop> {
    const mountDir = path.join(dir, 'fuse');
    fs.mkdirSync(mountDir, { recursive: true });
    const pidFile = path.join(dir, 'nbdfuse.pid');
    fs.rmSync(pidFile, { force: true });
    const ro = opts.readOnly ? ['-r'] : [];
    const fuse = spawn('nbdfuse', [...ro, '-P', pidFile, path.join(mountDir, 'disk'), uri], { stdio: ['ignore', 'inherit', 'inherit'] });
    for (let i = 0; i < 200 && !fs.existsSync(pidFile); i++) {
      if (fuse.exitCode !== null) throw new Error(`nbdfuse exited with ${fuse.exitCode}`);
      await sleep(50);
    }
    if (!fs.existsSync(pidFile)) {
      fuse.kill('SIGTERM');
      throw new Error('nbdfuse did not become ready');
    }
    const file = path.join(mountDir, 'disk');
    const lo = await run('losetup', [...ro, '--find', '--show', file]);
    if (lo.code !== 0) {
      // Nothing is left behind: the FUSE mount goes with its nbdfuse.
      await run('fusermount3', ['-u', mountDir]);
      fuse.kill('SIGTERM');
      throw new Error(`losetup ${ro.join(' ')} --find --show ${file} exited ${lo.code}: ${lo.stderr.trim()}`);
    }
    const loop = lo.stdout.trim();
    return new FuseLoop(mountDir, file, loop, fuse);
  }

  async detach(): Promise<void> {
    await run('losetup', ['-d', this.loop]);
    for (let i = 0; i < 50; i++) {
      const r = await run('fusermount3', ['-u', this.mountDir]);
      if (r.code === 0) break;
      await sleep(100); // the loop device lets go asynchronously
    }
    if (this.fuse.exitCode === null) await new Promise((r) => this.fuse.once('exit', r));
  }
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (losetup, mount); CI runs as root');
}
