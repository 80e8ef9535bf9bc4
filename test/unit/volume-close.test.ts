// A volume closes only once nothing of it runs in the thread pool (src/volume/volume.ts
// `close`): a read still queued there when the descriptor is closed would run on a
// number the kernel may already have given to another file (a volume a reload opens
// as it lets this one go), and read that file's bytes. Writes were waited for; reads,
// seeks and hole punches are now too (counted alike: a deferred read stands for them),
// and what is asked after the close is refused.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Volume } from '../../src/volume/volume.js';
import { tempDir } from '../helpers/run.js';

const MiB = 1024 * 1024;

/** Thread-pool reads that start only after `ms` (as reads queued behind others do); the real fs.read runs then. */
function deferReads(ms: number): () => void {
  const real = fs.read;
  (fs as { read: unknown }).read = (...args: unknown[]) => {
    setTimeout(() => (real as (...a: unknown[]) => void)(...args), ms);
  };
  return () => {
    (fs as { read: unknown }).read = real;
  };
}

test('close waits for reads still in the thread pool; the bytes read are the volume\'s, and a read after the close is refused', async () => {
  const dir = tempDir('volume-close');
  const file = path.join(dir, 'v.img');
  const pattern = Buffer.alloc(4 * MiB, 0x5a);
  fs.writeFileSync(file, pattern);
  const v = Volume.open({ name: 'v', path: file, readOnly: false });
  // (A page-cache hit is read on the event loop and never reaches the pool: this test is about the pool.)
  (v as unknown as { nowaitRead: boolean }).nowaitRead = false;
  const restore = deferReads(100);
  const order: string[] = [];
  try {
    const into = Buffer.alloc(MiB);
    const reads = [0, 1, 2, 3].map((i) => v.read(i * MiB, into, 0, MiB).then(() => order.push(`read ${i}`)));
    const closed = v.close().then(() => order.push('closed'));
    // Another file opened meanwhile: without the wait it may take the volume's descriptor number.
    const other = path.join(dir, 'other.img');
    fs.writeFileSync(other, Buffer.alloc(4 * MiB, 0xa5));
    const fd = fs.openSync(other, 'r');
    try {
      await Promise.all([...reads, closed]);
    } finally {
      fs.closeSync(fd);
    }
    assert.equal(order[order.length - 1], 'closed', `the close ended before reads in the pool: ${order.join(', ')}`);
    assert.ok(into.equals(pattern.subarray(0, MiB)), 'a read returned bytes that are not the volume\'s');
  } finally {
    restore();
  }
  await assert.rejects(async () => v.read(0, Buffer.alloc(4096), 0, 4096), /volume v is closed/);
  // A second close is harmless.
  await v.close();
});
