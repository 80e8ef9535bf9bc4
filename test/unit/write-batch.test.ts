// Volume writes several to a thread-pool job (src/volume/write-batch.ts): a lone write
// goes at once; under a queue, at most WRITE_BATCHES_IN_FLIGHT jobs run and the writes
// that wait go together in the next; each write gets its own result. And the real
// native call writes every buffer whole at its position.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { WriteBatcher } from '../../src/volume/write-batch.js';
import { WRITE_BATCHES_IN_FLIGHT, WRITE_BATCH_MAX_WRITES } from '../../src/limits/limits.js';
import { nativeFs } from '../../src/volume/native.js';
import { tempDir } from '../helpers/run.js';

test('a lone write is a job of its own; a queue goes in few jobs, never more than the bound at once, each write answered', async () => {
  const jobs: Array<{ positions: number[]; finish: (errs: number[]) => void }> = [];
  const b = new WriteBatcher((_bufs, positions) => new Promise((resolve) => jobs.push({ positions, finish: resolve })),
    (errno) => Object.assign(new Error(`errno ${errno}`), { code: `E${errno}` }));
  const lone = b.write(Buffer.alloc(1), 0);
  assert.equal(jobs.length, 1, 'a lone write goes at once');
  jobs[0]!.finish([0]);
  await lone;
  // 200 writes at once: WRITE_BATCHES_IN_FLIGHT jobs of one start; the rest wait.
  const results = Array.from({ length: 200 }, (_, i) => b.write(Buffer.alloc(1), i).then(() => 'ok', (e: Error) => e.message));
  assert.equal(jobs.length, 1 + WRITE_BATCHES_IN_FLIGHT);
  assert.equal(b.running, WRITE_BATCHES_IN_FLIGHT);
  // One job ends: the next takes what waits, up to WRITE_BATCH_MAX_WRITES.
  jobs[1]!.finish([0]);
  await new Promise((r) => setImmediate(r));
  assert.equal(jobs.length, 2 + WRITE_BATCHES_IN_FLIGHT);
  assert.equal(jobs.at(-1)!.positions.length, WRITE_BATCH_MAX_WRITES);
  assert.ok(b.running <= WRITE_BATCHES_IN_FLIGHT);
  // Finish everything; one write of the big job fails with its own errno.
  for (let i = 2; i < jobs.length; i++) {
    const j = jobs[i]!;
    j.finish(j.positions.map((p) => (p === 42 ? 28 : 0)));
    await new Promise((r) => setImmediate(r));
  }
  let idle = false;
  const whenIdle = b.idle().then(() => { idle = true; });
  await new Promise((r) => setImmediate(r));
  const out = await Promise.all(results);
  await whenIdle;
  assert.ok(idle, 'idle once every write is answered');
  assert.equal(out.filter((x) => x === 'ok').length, 199);
  assert.equal(out[42], 'errno 28');
  assert.ok(jobs.length < 1 + 200 / 2, `${jobs.length - 1} jobs for 200 writes`);
  assert.equal(b.running, 0);
});

test('pwriteBatch writes each buffer whole at its position and reports each failure by errno', async () => {
  const file = path.join(tempDir('pwrite-batch'), 'v.img');
  const fd = fs.openSync(file, 'w+');
  try {
    const big = Buffer.alloc(3 << 20, 0x5a);
    const r = await nativeFs.pwriteBatch!(fd, [Buffer.alloc(4096, 1), big, Buffer.from('end')], [8192, 1 << 20, 5 << 20]);
    assert.deepEqual(r, [0, 0, 0]);
    const back = fs.readFileSync(file);
    assert.equal(back.length, (5 << 20) + 3);
    assert.ok(back.subarray(8192, 12288).every((x) => x === 1));
    assert.ok(back.subarray(1 << 20, (1 << 20) + big.length).equals(big));
    assert.equal(back.subarray(5 << 20).toString(), 'end');
  } finally {
    fs.closeSync(fd);
  }
  const ro = fs.openSync(file, 'r');
  try {
    assert.deepEqual(await nativeFs.pwriteBatch!(ro, [Buffer.alloc(1)], [0]), [9], 'EBADF on a read-only descriptor');
  } finally {
    fs.closeSync(ro);
  }
  assert.throws(() => nativeFs.pwriteBatch!(0, [], []), /at least one/);
});

test('idle waits for the writes in the thread pool (a volume closes its descriptor only then)', async () => {
  let finish: ((errs: number[]) => void) | null = null;
  const b = new WriteBatcher(() => new Promise((resolve) => { finish = resolve; }), () => new Error('x'));
  const w = b.write(Buffer.alloc(1), 0);
  let idle = false;
  const whenIdle = b.idle().then(() => { idle = true; });
  await new Promise((r) => setImmediate(r));
  assert.equal(idle, false, 'a write is still in the pool');
  finish!([0]);
  await w;
  await whenIdle;
  assert.equal(idle, true);
});
