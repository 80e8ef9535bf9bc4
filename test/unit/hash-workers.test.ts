// The hashing workers (src/sync/hash-workers.ts): what is read into the node's shared
// hashing buffers is hashed on a worker thread, the same hashes as on the event loop;
// a worker that dies mid-hash leaves the bytes to be hashed on the event loop, and is
// replaced by the next hash; idle workers stop; a closed pool refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { HashWorkers } from '../../src/sync/hash-workers.js';
import { HashBuffers, hashRegions, regionHash, type HashedDisk } from '../../src/sync/region-hashes.js';
import { HASH_BUFFERS, HASH_READ_BYTES, HASH_WORKER_DEATHS } from '../../src/limits/limits.js';

const KiB = 1024;

function shared(bytes: Buffer): Buffer {
  const b = Buffer.from(new SharedArrayBuffer(bytes.length));
  bytes.copy(b);
  return b;
}

const here = (alg: 'sha256' | 'blake3', b: Buffer, rs: number): Buffer[] =>
  Array.from({ length: Math.ceil(b.length / rs) }, (_, i) => regionHash(alg, b.subarray(i * rs, Math.min(b.length, (i + 1) * rs))));

test('a worker\'s hashes are the event loop\'s, for both algorithms and a short last region; two workers at most', async () => {
  const w = new HashWorkers(2);
  try {
    const data = shared(randomBytes(1024 * KiB + 100));
    for (const alg of ['sha256', 'blake3'] as const) {
      const all = await Promise.all([0, 1, 2, 3].map((k) => w.hash(alg, data.subarray(k * 1000), 64 * KiB)));
      all.forEach((hashes, k) => assert.deepEqual(hashes, here(alg, data.subarray(k * 1000), 64 * KiB), `${alg}, from ${k * 1000}`));
    }
    assert.equal(w.workers, 2);
    assert.equal(w.started, 2);
    assert.throws(() => w.hash('blake3', randomBytes(10), 4096), /shared memory only/);
  } finally {
    await w.close();
  }
  await assert.rejects(w.hash('blake3', shared(Buffer.alloc(10)), 4096), /closed/);
});

test('a worker that dies mid-hash: that hash is done on the event loop, the next starts a new worker', async () => {
  const w = new HashWorkers(1);
  const buffers = new HashBuffers(w);
  try {
    const b = await buffers.take();
    assert.ok(b.buffer instanceof SharedArrayBuffer, 'with workers, the node\'s buffers are shared memory');
    randomBytes(HASH_READ_BYTES).copy(b);
    const pending = buffers.hash('sha256', b, 64 * KiB);
    await w.killWorker(0);
    assert.deepEqual(await pending, here('sha256', b, 64 * KiB));
    assert.equal(buffers.hashedHere, 1);
    assert.equal(w.deaths, 1);
    assert.deepEqual(await buffers.hash('blake3', b.subarray(0, 200 * KiB), 64 * KiB), here('blake3', b.subarray(0, 200 * KiB), 64 * KiB));
    assert.equal(w.started, 2, 'a new worker for the next hash');
    assert.equal(buffers.hashedHere, 1);
    buffers.give(b);
  } finally {
    await w.close();
  }
});

test('idle workers stop; hashRegions through the node\'s buffers and workers reads and hashes as without them', async () => {
  const w = new HashWorkers(2, 50);
  try {
    const rs = 64 * KiB;
    const bytes = randomBytes(40 * rs);
    const disk: HashedDisk = {
      size: bytes.length,
      read: (o, into, at, n) => { bytes.copy(into, at, o, o + n); return Promise.resolve(); },
      extents: (_o, length) => Promise.resolve([{ length, hole: false }]),
    };
    const buffers = new HashBuffers(w);
    const got = await Promise.all([0, 10, 20, 30].map((first) => hashRegions('blake3', disk, rs, first, 10, () => true, buffers)));
    assert.deepEqual(got.flat(), here('blake3', bytes, rs));
    assert.ok(buffers.made <= HASH_BUFFERS);
    assert.ok(w.workers > 0);
    await new Promise((r) => setTimeout(r, 60));
    w.retireIdle();
    assert.equal(w.workers, 0, 'idle past the limit: stopped');
    assert.deepEqual(await hashRegions('sha256', disk, rs, 0, 3, () => true, buffers), here('sha256', bytes.subarray(0, 3 * rs), rs));
  } finally {
    await w.close();
  }
});

test('workers that keep dying are paused, said once: every hash is made on the event loop meanwhile, none is lost', async () => {
  const warned: string[] = [];
  const w = new HashWorkers(1, 30_000, (m) => warned.push(m));
  const buffers = new HashBuffers(w);
  try {
    const b = await buffers.take();
    randomBytes(256 * KiB).copy(b);
    const data = b.subarray(0, 256 * KiB);
    for (let i = 0; i < HASH_WORKER_DEATHS; i++) {
      const pending = buffers.hash('blake3', data, 64 * KiB);
      await w.killWorker(0);
      assert.deepEqual(await pending, here('blake3', data, 64 * KiB), `hash ${i}: made on the event loop`);
    }
    assert.equal(w.deaths, HASH_WORKER_DEATHS);
    assert.equal(warned.length, 1);
    assert.match(warned[0]!, /^hashing workers died 5 times within 10 s \(last: .*\); region hashes are made on the event loop for the next 60 s/);
    const started = w.started;
    assert.deepEqual(await buffers.hash('sha256', data, 64 * KiB), here('sha256', data, 64 * KiB));
    assert.equal(w.started, started, 'paused: no worker started');
    await assert.rejects(w.hash('blake3', data, 64 * KiB), /paused/);
    assert.equal(buffers.hashedHere, HASH_WORKER_DEATHS + 1);
    buffers.give(b);
  } finally {
    await w.close();
  }
});
