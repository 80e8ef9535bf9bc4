// The intent ring (src/journal/intent.ts) written a turn at a time: one write per run
// of neighbouring slots, split where the ring wraps or a seq is skipped (a barrier
// has no intent), and every intent read back where recovery looks for it.
import { crc32c } from '@node-rs/crc32';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { IntentRing } from '../../src/journal/intent.js';
import { DirStore } from '../../src/journal/store.js';
import type { Store, StoreFile } from '../../src/store/store.js';
import { tempDir } from '../helpers/run.js';

/** A folder whose files count their synchronous writes (slot index and length). */
function counting(dir: string): { store: Store; writes: Array<[number, number]> } {
  const inner = new DirStore(dir);
  const writes: Array<[number, number]> = [];
  const wrap = (f: StoreFile): StoreFile => Object.assign(Object.create(f) as StoreFile, {
    writeSync(position: number, data: Buffer): void {
      writes.push([position / 32, data.length / 32]);
      f.writeSync(position, data);
    },
  });
  const store = Object.assign(Object.create(inner) as Store, {
    open: (name: string) => wrap(inner.open(name)),
    create: (name: string) => wrap(inner.create(name)),
  });
  return { store, writes };
}

test('a turn of intents is one write per run of slots, split at the wrap and at a skipped seq; all read back', async () => {
  const dir = tempDir('intent-batch');
  const { store, writes } = counting(dir);
  const ring = IntentRing.open(store, 8)!;
  writes.length = 0; // (the ring's creation)
  // Seqs 6..9 wrap (slots 6, 7, then 0, 1); 10 is a barrier (no intent); 11 is slot 3.
  ring.recordAll([6, 7, 8, 9, 11].map((seq) => ({ seq, offset: seq * 4096, length: 4096 })));
  assert.deepEqual(writes, [[6, 2], [0, 2], [3, 1]]);
  ring.close();
  const reopened = IntentRing.open(new DirStore(dir), 8)!;
  const back = await reopened.after(5);
  reopened.close();
  assert.deepEqual(back.map((i) => [i.seq, i.offset, i.length]), [6, 7, 8, 9, 11].map((s) => [s, s * 4096, 4096]));
  assert.throws(() => ring.recordAll([]), /empty batch/);
});

test('each slot holds the bytes docs/JOURNAL.md gives, written in a batch that wraps', async () => {
  const dir = tempDir('intent-bytes');
  const ring = IntentRing.open(new DirStore(dir), 4)!;
  ring.recordAll([{ seq: 3, offset: 0x12345678000, length: 4096 }, { seq: 4, offset: 512, length: 0x10000 }]);
  ring.close();
  // Slot: "OFIN", CRC32C of bytes 8..32, u64 seq, u64 offset, u32 length, u32 version 1 (little-endian).
  const slot = (seq: number, offset: number, length: number): Buffer => {
    const body = Buffer.alloc(24);
    body.writeBigUInt64LE(BigInt(seq), 0);
    body.writeBigUInt64LE(BigInt(offset), 8);
    body.writeUInt32LE(length, 16);
    body.writeUInt32LE(1, 20);
    const head = Buffer.from('OFIN\0\0\0\0', 'latin1');
    head.writeUInt32LE(crc32c(body), 4);
    return Buffer.concat([head, body]);
  };
  const file = fs.readFileSync(path.join(dir, 'intent'));
  assert.equal(file.length, 4 * 32);
  assert.ok(file.subarray(3 * 32, 4 * 32).equals(slot(3, 0x12345678000, 4096)), 'seq 3 in slot 3');
  assert.ok(file.subarray(0, 32).equals(slot(4, 512, 0x10000)), 'seq 4 wrapped to slot 0');
  assert.ok(file.subarray(32, 3 * 32).equals(Buffer.alloc(64)), 'slots 1 and 2 untouched');
});
