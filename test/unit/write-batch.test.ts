// Volume writes several to a thread-pool job (src/volume/write-batch.ts): the writes of
// one turn go together; under a queue, at most WRITE_BATCHES_IN_FLIGHT jobs run and the writes
// that wait go together in the next; each write gets its own result. And the real
// native call writes every buffer whole at its position.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { WriteBatcher } from '../../src/volume/write-batch.js';
import { IN_ORDER_WRITES_PER_JOB, WRITE_BATCHES_IN_FLIGHT, WRITE_BATCH_MAX_WRITES } from '../../src/limits/limits.js';
import { Volume } from '../../src/volume/volume.js';
import { nativeFs } from '../../src/volume/native.js';
import { tempDir } from '../helpers/run.js';

test('the writes of one turn go in one job; a queue never takes more than the bound of jobs at once; each write answered', async () => {
  const jobs: Array<{ positions: number[]; finish: (errs: number[]) => void }> = [];
  const b = new WriteBatcher((_bufs, positions) => new Promise((resolve) => jobs.push({ positions, finish: resolve })),
    (errno) => Object.assign(new Error(`errno ${errno}`), { code: `E${errno}` }));
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  const lone = b.write(Buffer.alloc(1), 0);
  assert.equal(jobs.length, 0, 'submitted at the end of the turn, with whatever else the turn writes');
  await turn();
  assert.equal(jobs.length, 1, 'a lone write is a job of its own');
  jobs[0]!.finish([0]);
  await lone;
  // Three writes of one turn: one job.
  const three = [0, 1, 2].map((i) => b.write(Buffer.alloc(1), i));
  await turn();
  assert.equal(jobs.length, 2);
  assert.deepEqual(jobs[1]!.positions, [0, 1, 2]);
  jobs[1]!.finish([0, 0, 0]);
  await Promise.all(three);
  // More writes in one turn than the jobs in flight can take: WRITE_BATCHES_IN_FLIGHT full jobs start; the rest wait.
  const n = WRITE_BATCH_MAX_WRITES * WRITE_BATCHES_IN_FLIGHT + 200;
  const results = Array.from({ length: n }, (_, i) => b.write(Buffer.alloc(1), i).then(() => 'ok', (e: Error) => e.message));
  await turn();
  assert.equal(jobs.length, 2 + WRITE_BATCHES_IN_FLIGHT);
  assert.equal(b.running, WRITE_BATCHES_IN_FLIGHT);
  assert.ok(jobs.slice(2).every((j) => j.positions.length === WRITE_BATCH_MAX_WRITES));
  // A write of a later turn, every job busy: it waits for a job to end (no job of its own).
  const late = b.write(Buffer.alloc(1), 99_999).then(() => 'ok');
  await turn();
  assert.equal(jobs.length, 2 + WRITE_BATCHES_IN_FLIGHT, 'no job past the bound');
  // One job ends: the next takes what waits, up to WRITE_BATCH_MAX_WRITES.
  jobs[2]!.finish(jobs[2]!.positions.map(() => 0));
  await turn();
  assert.equal(jobs.length, 3 + WRITE_BATCHES_IN_FLIGHT);
  assert.equal(jobs.at(-1)!.positions.length, WRITE_BATCH_MAX_WRITES);
  assert.ok(b.running <= WRITE_BATCHES_IN_FLIGHT);
  // Finish everything; one write of the big job fails with its own errno.
  for (let i = 3; i < jobs.length; i++) {
    const j = jobs[i]!;
    j.finish(j.positions.map((p) => (p === 700 ? 28 : 0)));
    await turn();
  }
  let idle = false;
  const whenIdle = b.idle().then(() => { idle = true; });
  await turn();
  const out = await Promise.all(results);
  await whenIdle;
  assert.ok(idle, 'idle once every write is answered');
  assert.equal(await late, 'ok');
  assert.ok(jobs.some((j) => j.positions.includes(99_999)), 'the late write went in a job once one ended');
  assert.equal(out.filter((x) => x === 'ok').length, n - 1);
  assert.equal(out[700], 'errno 28');
  assert.equal(jobs.length - 2, Math.ceil((n + 1) / WRITE_BATCH_MAX_WRITES), 'every job full but the last');
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

test('writeInOrder: a run of writes lands in its order (a later one over an earlier), across jobs; a failed write fails the run', async () => {
  const file = path.join(tempDir('write-in-order'), 'v.img');
  const v = Volume.open({ name: 'v', path: file, size: 4 << 20, readOnly: false });
  // More writes than one job takes (three jobs, one after the other), each 4 KiB at one of 8 places: the last to each must win.
  const n = IN_ORDER_WRITES_PER_JOB * 2 + 100;
  const offsets = Array.from({ length: n }, (_, i) => (i % 8) * 4096);
  const data = Array.from({ length: n }, (_, i) => Buffer.alloc(4096, i % 251));
  await v.writeInOrder(offsets, data);
  const back = fs.readFileSync(file);
  for (let k = 0; k < 8; k++) {
    let last = -1;
    offsets.forEach((o, i) => {
      if (o === k * 4096) last = i;
    });
    assert.equal(back[k * 4096], last % 251, `place ${k} holds the last write to it (${last}), written in the third job`);
  }
  // A write the file cannot take (past the largest file size): the run fails with its error.
  await assert.rejects(v.writeInOrder([0, 2 ** 62], [Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)]),
    (e: NodeJS.ErrnoException) => e.code === 'EFBIG' || e.code === 'EINVAL');
  await v.close();
});

test('a close while a run of several jobs is written waits for its last job (the descriptor stays until then)', async () => {
  // (On tmpfs where there is one: the close's sync is then quick, and a close that did not wait would end mid-run.)
  const file = path.join(tempDir('write-in-order-close', fs.existsSync('/dev/shm') ? '/dev/shm' : undefined), 'v.img');
  const v = Volume.open({ name: 'v', path: file, size: 16 << 20, readOnly: false });
  const n = IN_ORDER_WRITES_PER_JOB * 3;
  const offsets = Array.from({ length: n }, (_, i) => (i % 4096) * 4096);
  const data = Array.from({ length: n }, (_, i) => Buffer.alloc(4096, (i % 250) + 1));
  const order: string[] = [];
  const run = v.writeInOrder(offsets, data).then(() => 'written', (e: Error) => e.message).finally(() => order.push('run'));
  const closed = v.close().finally(() => order.push('close'));
  assert.equal(await run, 'written', 'every job of the run wrote through the open descriptor');
  await closed;
  assert.deepEqual(order, ['run', 'close'], 'the close ended after the run\'s last job');
  const back = fs.readFileSync(file);
  assert.equal(back[(n - 1) * 4096], ((n - 1) % 250) + 1, 'the last job\'s write landed');
});
