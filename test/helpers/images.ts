// Comparing disk images in tests: qemu-img compare (a real client reading both, by
// path or nbd:// URI) and sha256 digests.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { run } from './run.js';

/** Fails unless qemu-img compare finds the two raw images (paths or NBD URIs) identical. */
export async function assertIdentical(a: string, b: string, opts: { timeoutMs?: number; message?: string } = {}): Promise<void> {
  const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', a, b], opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
  assert.equal((cmp.stdout + cmp.stderr).trim(), 'Images are identical.', opts.message);
}

/** sha256 of bytes, in hex. */
export function sha(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** sha256 of a whole file, in hex. */
export function fileSha(file: string): string {
  return sha(fs.readFileSync(file));
}
