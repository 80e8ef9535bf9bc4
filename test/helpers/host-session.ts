// A host that never reconnects: qemu-io on one connection (NBD or iSCSI) for a whole
// test, each command typed into it (test/integration/volume-peers.test.ts, volume-grow.test.ts).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { waitFor } from './run.js';

/** qemu-io on one connection, kept open: each command is typed into it, as a host that never reconnects. */
export class HostSession {
  private out = '';
  private readonly proc: ChildProcessWithoutNullStreams;

  /** `args`: qemu-io's, up to the image (`['-f', 'raw', uri]`, or `--image-opts` for iSCSI). */
  constructor(...args: string[]) {
    // (Line-buffered: its replies come as each command is done, not at its exit.)
    this.proc = spawn('stdbuf', ['-oL', 'qemu-io', ...args]);
    this.proc.stdout.on('data', (b: Buffer) => (this.out += b.toString()));
    this.proc.stderr.on('data', (b: Buffer) => (this.out += b.toString()));
  }

  /** Writes `pattern` over [offset, offset+length), flushes and reads it back, on the same connection; fails on any error. */
  async write(pattern: number, offset: string, length: string): Promise<void> {
    if (!this.ready) await this.prompt(0);
    this.ready = true;
    for (const c of [`write -P ${pattern} ${offset} ${length}`, 'flush', `read -P ${pattern} ${offset} ${length}`]) {
      const mark = this.out.length;
      this.proc.stdin.write(`${c}\n`);
      await this.prompt(mark);
      assert.doesNotMatch(this.out.slice(mark), /failed|error|Pattern verification/i, `qemu-io ${c}: ${this.out.slice(mark)}`);
    }
  }

  private ready = false;

  /** Waits for qemu-io's next prompt after `mark` (one command a time: it reads no further line before it is done). */
  private async prompt(mark: number): Promise<void> {
    await waitFor('qemu-io\'s prompt', () => this.out.includes('qemu-io> ', mark) || this.proc.exitCode !== null, 60_000, 20)
      .catch((e: Error) => assert.fail(`${e.message}; qemu-io said: ${this.out}`));
    assert.equal(this.proc.exitCode, null, `qemu-io exited: ${this.out}`);
  }

  async close(): Promise<string> {
    this.proc.stdin.end('quit\n');
    if (this.proc.exitCode === null) await new Promise((r) => this.proc.once('exit', r));
    assert.equal(this.proc.exitCode, 0, this.out);
    return this.out;
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill();
  }
}
