// V8's young generation stays at its first size in a daemon (src/memory/collector.ts
// boundYoungGeneration, docs/LINK.md "Memory"), zstd workers or not: a worker's start
// puts V8's flags back to their defaults, and the pool bounds it again once the worker
// runs. Without that, a stream of short-lived objects grows the space to 32 MiB.
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { test } from 'node:test';
import { boundYoungGeneration } from '../../src/memory/collector.js';
import { CompressionPool } from '../../src/compress/pool.js';

const MiB = 2 ** 20;
const newSpace = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;

/** Short-lived objects, half of them surviving a scavenge or two: what makes V8 grow the space. */
function churn(): void {
  let keep: Array<{ i: number; s: string }> = [];
  for (let i = 0; i < 3_000_000; i++) {
    keep.push({ i, s: `record ${i}` });
    if (keep.length > 200_000) keep = keep.slice(100_000);
  }
}

test('the young generation keeps its first size, after a zstd worker started too', async () => {
  assert.equal(boundYoungGeneration(), true, 'V8 takes the flag');
  const pool = new CompressionPool(1);
  try {
    // (A job done: the worker is online, and the pool's handler for that has run.)
    await pool.compress(Buffer.alloc(64 * 1024, 7), 1);
    churn();
    assert.ok(newSpace() <= 4 * MiB, `young generation ${newSpace() / MiB} MiB after a worker started`);
  } finally {
    await pool.close();
  }
});
