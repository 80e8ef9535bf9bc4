// The node's memory budget (src/memory/budget.ts, docs/INVARIANTS.md invariant 10):
// acquire and release, waiters served in order, the classes' shares, cancel, and the
// invariant asserted (never negative, a lease released once).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLASS_SHARE, MemoryBudget, type Lease } from '../../src/memory/budget.js';
import { InvariantError } from '../../src/invariants/assert.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('leases are taken and given back; shrink and grow are counted', () => {
  const b = new MemoryBudget(1000);
  const l = b.tryAcquire(300, 'send')!;
  assert.ok(l);
  assert.equal(b.used, 300);
  assert.equal(b.heldBy('send'), 300);
  l.shrink(100);
  assert.equal(b.used, 100);
  assert.equal(l.bytes, 100);
  l.grow(50);
  assert.equal(b.used, 150);
  l.release();
  assert.equal(b.used, 0);
  assert.equal(b.leases, 0);
  assert.equal(b.peak, 300);
});

test('a class holds at most its share, so the others always have room', () => {
  const b = new MemoryBudget(1000);
  assert.equal(b.classLimit, 1000 * CLASS_SHARE);
  const a = b.tryAcquire(400, 'send')!;
  assert.equal(b.tryAcquire(1, 'send'), null, 'send is at its share');
  const r = b.tryAcquire(400, 'receive')!;
  assert.ok(r, 'receive has its own share');
  const p = b.tryAcquire(200, 'apply')!;
  assert.ok(p, 'and apply what is left');
  assert.equal(b.tryAcquire(1, 'apply'), null, 'the budget is full');
  for (const l of [a, r, p]) l.release();
  assert.equal(b.used, 0);
});

test('waiters are served in the order they asked, a large one before smaller ones behind it', async () => {
  const b = new MemoryBudget(1000);
  const held = b.tryAcquire(400, 'send')!;
  const order: string[] = [];
  const big = b.acquire(300, 'send');
  const small = b.acquire(10, 'send');
  void big.granted.then(() => order.push('big'));
  void small.granted.then(() => order.push('small'));
  assert.equal(b.tryAcquire(10, 'send'), null, 'nobody jumps the queue');
  await tick();
  assert.deepEqual(order, []);
  assert.equal(b.waiting('send'), 2);
  held.release();
  await tick();
  assert.deepEqual(order, ['big', 'small']);
  (await big.granted).release();
  (await small.granted).release();
  assert.equal(b.used, 0);
});

test('a cancelled claim is never granted; one cancelled after its grant gives the bytes back', async () => {
  const b = new MemoryBudget(1000);
  const held = b.tryAcquire(400, 'receive')!;
  const gone = b.acquire(100, 'receive');
  let granted = false;
  void gone.granted.then(() => (granted = true));
  gone.cancel();
  const next = b.acquire(100, 'receive');
  held.release();
  await tick();
  assert.equal(granted, false);
  assert.equal(b.used, 100, 'only the claim behind it was granted');
  next.cancel();
  assert.equal(b.used, 0, 'a cancel after the grant releases');
  next.cancel();
  assert.equal(b.used, 0, 'a second cancel is harmless');
});

test('a request larger than its share is granted when its class holds nothing (no deadlock below the largest record)', async () => {
  const b = new MemoryBudget(1000);
  const huge = b.tryAcquire(5000, 'apply');
  assert.ok(huge, 'alone, it goes');
  const again = b.acquire(5000, 'apply');
  let ok = false;
  void again.granted.then(() => (ok = true));
  await tick();
  assert.equal(ok, false, 'one at a time past the share');
  huge.release();
  await tick();
  assert.equal(ok, true);
  (await again.granted).release();
});

test('the budget never goes negative: a lease released twice is a broken invariant', () => {
  const b = new MemoryBudget(1000);
  const l: Lease = b.tryAcquire(10, 'send')!;
  l.release();
  assert.throws(() => l.release(), InvariantError);
  assert.equal(b.used, 0);
});

test('under pressure (Buffers past the threshold) a collection is asked for; below it none', async () => {
  const { collectUnderPressure } = await import('../../src/memory/collector.js');
  const quiet = collectUnderPressure({ thresholdBytes: Number.MAX_SAFE_INTEGER, everyMs: 5, minIntervalMs: 0 });
  const busy = collectUnderPressure({ thresholdBytes: 0, everyMs: 5, minIntervalMs: 0 });
  await new Promise((r) => setTimeout(r, 60));
  quiet.stop();
  busy.stop();
  assert.equal(quiet.collections, 0);
  assert.ok(busy.collections > 0, 'collections asked for past the threshold');
});

test('config: memory is a size, 40MiB by default, at least 32MiB', async () => {
  const { parseConfig } = await import('../../src/config/config.js');
  const yaml = (extra: string): string =>
    `node: site-a\nstate: ./state\nnbd: 127.0.0.1:10809\n${extra}volumes:\n  db: { path: ./db.img, size: 1GiB, role: primary }\n`;
  assert.equal(parseConfig(yaml(''), '/x/o.yaml').memory, 40 * 2 ** 20);
  assert.equal(parseConfig(yaml('memory: 256MiB\n'), '/x/o.yaml').memory, 256 * 2 ** 20);
  assert.throws(() => parseConfig(yaml('memory: 8MiB\n'), '/x/o.yaml'), /memory: must be at least 32MiB/);
});
