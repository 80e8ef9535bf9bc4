// The intent ring (src/journal/intent.ts) written a turn at a time: one write per run
// of neighbouring slots, split where the ring wraps or a seq is skipped (a barrier
// has no intent), and every intent read back where recovery looks for it.
import assert from 'node:assert/strict';
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
  const back = await IntentRing.open(new DirStore(dir), 8)!.after(5);
  assert.deepEqual(back.map((i) => [i.seq, i.offset, i.length]), [6, 7, 8, 9, 11].map((s) => [s, s * 4096, 4096]));
  assert.throws(() => ring.recordAll([]), /empty batch/);
});

test('an intent written alone is the same slot as written in a batch', async () => {
  const a = tempDir('intent-one');
  const b = tempDir('intent-many');
  const one = IntentRing.open(new DirStore(a), 16)!;
  for (const seq of [3, 4, 5]) one.record(seq, seq << 20, 512 * seq);
  one.close();
  const many = IntentRing.open(new DirStore(b), 16)!;
  many.recordAll([3, 4, 5].map((seq) => ({ seq, offset: seq << 20, length: 512 * seq })));
  many.close();
  const fs = await import('node:fs');
  assert.ok(fs.readFileSync(`${a}/intent`).equals(fs.readFileSync(`${b}/intent`)));
});
