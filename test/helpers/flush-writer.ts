// A writer whose every flush point can be read back from an image (checkpoints under
// load, history after kill -9): it writes 64 KiB block i % N with the value of its pass
// over the volume, two writes then a FLUSH. So the image after k writes is determined
// by k, and k can be read back from any image: the first j blocks hold pass c's value
// and the rest pass c-1's. Every flush point has k even; an image with k odd (or a block
// that is not all one value) is no flush point of the primary.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Pair } from './pair.js';
import { must } from './run.js';
import { sha } from './images.js';

export const BLOCK = 64 * 1024;
export const BLOCKS = 256; // a 16 MiB volume
export const PAIRS_PER_RUN = 24;

const valueOf = (pass: number): number => (pass % 255) + 1;

/** The writer: qemu-io runs of (write, write, flush) until stopped; counts the writes issued. */
export function startWriter(p: Pair): { stop: () => Promise<number> } {
  let stopped = false;
  let i = 0;
  const loop = (async () => {
    while (!stopped) {
      // (-t writeback: qemu-io's default is writethrough, a FUA or flush after every write.)
      const args: string[] = ['-f', 'raw', '-t', 'writeback'];
      for (let n = 0; n < PAIRS_PER_RUN; n++) {
        for (let w = 0; w < 2; w++, i++) args.push('-c', `write -P ${valueOf(Math.floor(i / BLOCKS))} ${(i % BLOCKS) * BLOCK} ${BLOCK}`);
        args.push('-c', 'flush');
      }
      args.push(p.a.uri('db'));
      await must('qemu-io', args);
    }
  })();
  return { stop: async () => { stopped = true; await loop; return i; } };
}

/**
 * Reads an export and says which prefix of the writer's stream it is: throws if a
 * block is not one value or the blocks are no prefix. Returns k (writes in the image) mod 2.
 */
export async function prefixParity(uri: string, dir: string): Promise<{ parity: number; hash: string; where: string; writes: number }> {
  const file = path.join(dir, `copy-${crypto.randomBytes(4).toString('hex')}.img`);
  await must('nbdcopy', [uri, file]);
  const img = fs.readFileSync(file);
  fs.rmSync(file);
  assert.equal(img.length, BLOCK * BLOCKS);
  const vals: number[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const blk = img.subarray(b * BLOCK, (b + 1) * BLOCK);
    const v = blk[0]!;
    assert.ok(blk.every((x) => x === v), `block ${b} of ${uri} is not one value: a write is torn in the image`);
    vals.push(v);
  }
  const v = vals[0]!;
  let j = 0;
  while (j < BLOCKS && vals[j] === v) j++;
  const before = v === 1 ? [0, 255] : [v - 1];
  for (let b = j; b < BLOCKS; b++) {
    assert.ok(before.includes(vals[b]!), `${uri}: block ${b} holds ${vals[b]} after ${j} blocks of ${v}: no prefix of the primary's writes`);
  }
  // (Writes in the image, while the writer has made fewer than 255 passes.)
  return { parity: j % 2, hash: sha(img), where: `${j} blocks of ${v}, then ${vals[j] ?? '-'}`, writes: (v - 1) * BLOCKS + j };
}

