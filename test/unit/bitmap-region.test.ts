// bitmap_region changed (docs/CONFIG.md): a dirty bitmap of another region size opens
// with its marks carried over to the new size, not thrown away for a resync of every
// region; the file is replaced whole (a crash leaves the old or the new).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { DirStore } from '../../src/journal/store.js';
import { tempDir } from '../helpers/run.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 64 * MiB;

const marked = (b: DirtyBitmap): number[] => [...Array(b.regions).keys()].filter((r) => b.isSet(r));

test('a bitmap of 64 KiB regions opens at 4 KiB and at 1 MiB with every mark carried, and its file rewritten at the new size', async () => {
  const dir = tempDir('bitmap-region');
  try {
    const store = new DirStore(dir);
    const { bitmap } = await DirtyBitmap.open(store, SIZE, 64 * KiB);
    bitmap.mark(0, 1); // region 0
    bitmap.mark(5 * MiB + 100, 70 * KiB); // regions 80, 81
    bitmap.mark(SIZE - 1, 1); // the last region
    await bitmap.sync();
    bitmap.close();

    const small = await DirtyBitmap.open(store, SIZE, 4 * KiB);
    assert.equal(small.bitmap.count, 4 * 16);
    assert.ok(small.bitmap.isSet(0) && small.bitmap.isSet(15) && !small.bitmap.isSet(16));
    assert.ok(small.bitmap.isSet((5 * MiB) / (4 * KiB)) && small.bitmap.isSet((5 * MiB + 128 * KiB) / (4 * KiB) - 1));
    assert.ok(small.bitmap.isSet(SIZE / (4 * KiB) - 1));
    assert.match(small.notes.join(), /region size was 65536 bytes and bitmap_region is now 4096: its 4 marked regions carried over as 64/);
    small.bitmap.close();
    assert.deepEqual(fs.readdirSync(dir).sort(), ['dirty.bitmap']);
    // Its header says 4 KiB now: opened at 4 KiB again, nothing is converted.
    const again = await DirtyBitmap.open(store, SIZE, 4 * KiB);
    assert.equal(again.bitmap.count, 64);
    assert.deepEqual(again.notes, []);
    again.bitmap.close();

    const big = await DirtyBitmap.open(store, SIZE, MiB);
    assert.deepEqual(marked(big.bitmap), [0, 5, 63]);
    big.bitmap.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('converted while the volume grew; a damaged page of the old bitmap carries as all marked', async () => {
  const dir = tempDir('bitmap-region');
  try {
    const store = new DirStore(dir);
    const { bitmap } = await DirtyBitmap.open(store, SIZE, 4 * KiB);
    bitmap.mark(MiB, 4 * KiB);
    await bitmap.sync();
    bitmap.close();
    // Page 0 of the bits (4092 bytes of bits: the first 32736 regions of 4 KiB) torn.
    const f = path.join(dir, 'dirty.bitmap');
    const fd = fs.openSync(f, 'r+');
    fs.writeSync(fd, Buffer.alloc(16, 0xaa), 0, 16, 4096 + 100);
    fs.closeSync(fd);
    const { bitmap: grown, notes } = await DirtyBitmap.open(store, 2 * SIZE, 64 * KiB);
    assert.match(notes.join(), /page 0 was damaged/);
    // 32736 regions of 4 KiB (127.9 MiB, past the old 64 MiB end: all of it) → the 1024 regions of 64 KiB of the old size.
    assert.equal(grown.count, SIZE / (64 * KiB));
    assert.ok(!grown.isSet(SIZE / (64 * KiB)));
    assert.equal(grown.regions, (2 * SIZE) / (64 * KiB));
    grown.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a crash before the rename leaves the old bitmap and a leftover, which the next open writes over', async () => {
  const dir = tempDir('bitmap-region');
  try {
    const store = new DirStore(dir);
    const { bitmap } = await DirtyBitmap.open(store, SIZE, 64 * KiB);
    bitmap.mark(3 * MiB, 1);
    await bitmap.sync();
    bitmap.close();
    fs.writeFileSync(path.join(dir, 'dirty.bitmap.converting'), Buffer.alloc(8192, 0x11));
    const { bitmap: bm } = await DirtyBitmap.open(store, SIZE, 128 * KiB);
    assert.deepEqual(marked(bm), [24]);
    bm.close();
    assert.deepEqual(fs.readdirSync(dir).sort(), ['dirty.bitmap']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('clearing many regions writes each page of the file they touch once, and the clears survive a reopen', async () => {
  const dir = tempDir('bitmap-clear-all');
  try {
    const inner = new DirStore(dir);
    const writes: number[] = [];
    // (The bitmap's file, its page writes noted by position.)
    const store = new Proxy(inner, {
      get(target, key) {
        const v = Reflect.get(target, key) as unknown;
        if (key !== 'open' && key !== 'create') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        return (name: string) => {
          const f = (v as (n: string) => ReturnType<DirStore['open']>).call(target, name);
          const writeSync = f.writeSync.bind(f);
          f.writeSync = (position: number, data: Buffer) => {
            writes.push(position);
            writeSync(position, data);
          };
          return f;
        };
      },
    });
    const { bitmap } = await DirtyBitmap.open(store, SIZE, 4 * KiB); // 16384 regions: one page holds 32736
    bitmap.markAll();
    writes.length = 0;
    const regions = [...Array(4096).keys()].map((i) => i * 2); // every other region of the first 8192
    bitmap.clearAll(regions);
    assert.equal(bitmap.count, 16384 - 4096);
    assert.equal(writes.length, 1, `4096 regions of one page: one write (${writes.length} made)`);
    bitmap.clearAll([1, 1, 3]);
    assert.equal(bitmap.count, 16384 - 4098, 'a region named twice is cleared once');
    await bitmap.sync();
    bitmap.close();
    const again = await DirtyBitmap.open(inner, SIZE, 4 * KiB);
    assert.equal(again.bitmap.count, 16384 - 4098);
    assert.ok(!again.bitmap.isSet(0) && !again.bitmap.isSet(1) && again.bitmap.isSet(5) && !again.bitmap.isSet(8190) && again.bitmap.isSet(8191));
    again.bitmap.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
