// A link's capacity (src/rate/capacity.ts): measured only over seconds the link was
// the bottleneck, held while it idles, bounded by the cap; the batch and the socket
// allowance that follow from it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LinkCapacity, MAX_SOCKET_BYTES, batchFor, socketAllowance } from '../../src/rate/capacity.js';

test('capacity: busy seconds measure it, idle or half-busy seconds do not, the cap bounds it', () => {
  const c = new LinkCapacity();
  assert.equal(c.estimate(null), null);
  assert.equal(c.estimate(500_000), 500_000, 'capped, not measured: the cap');
  let total = 0;
  let t = 0;
  const second = (bytes: number, busy: number, cap: number | null = null): void => {
    total += bytes;
    t += 1000;
    c.observe(t, total, busy, cap);
  };
  second(0, 0); // the first sample only starts the count
  second(10_000, 0.5); // the host wrote little: says nothing of the link
  assert.equal(c.estimate(null), null);
  second(125_000, 1);
  assert.equal(c.estimate(null), 125_000);
  second(135_000, 1);
  assert.equal(c.estimate(null), 128_000, 'smoothed over busy seconds (0.3 of each)');
  for (let i = 0; i < 30; i++) second(100, 0); // idle: the estimate holds
  assert.equal(c.estimate(null), 128_000);
  assert.equal(c.estimate(100_000), 100_000, 'never above the cap');
  for (let i = 0; i < 30; i++) second(1_250_000, 1); // the link got faster
  assert.ok(Math.abs(c.estimate(null)! - 1_250_000) < 1000);
  // A busy second in which the socket passed nothing (the line stalled) counts.
  const before = c.estimate(null)!;
  second(0, 1);
  assert.ok(c.estimate(null)! < before * 0.75);
});

test('capacity: a new cap, or none, starts the measurement again', () => {
  const c = new LinkCapacity();
  let total = 0;
  let t = 0;
  const second = (bytes: number, cap: number | null): void => {
    total += bytes;
    t += 1000;
    c.observe(t, total, 1, cap);
  };
  second(0, 125_000);
  for (let i = 0; i < 5; i++) second(125_000, 125_000); // busy at the cap
  assert.equal(c.estimate(125_000), 125_000);
  second(0, null); // the cap removed by a reload: what was measured under it goes
  assert.equal(c.estimate(null), null);
  second(1_000_000, null);
  assert.equal(c.estimate(null), 1_000_000);
});

test('batch and socket allowance follow the capacity, within their bounds', () => {
  assert.equal(batchFor(null, 4 << 20), 4 << 20);
  assert.equal(batchFor(125_000, 4 << 20), 500_000);
  assert.equal(batchFor(1000, 4 << 20), 64 * 1024);
  assert.equal(batchFor(1000, 16 * 1024), 16 * 1024, 'a configured batch under the floor stays');
  assert.equal(batchFor(1e9, 4 << 20), 4 << 20);
  assert.equal(socketAllowance(null), MAX_SOCKET_BYTES);
  assert.equal(socketAllowance(7_000), 16 * 1024);
  assert.equal(socketAllowance(125_000), 31_250);
  assert.equal(socketAllowance(1e9), MAX_SOCKET_BYTES);
});
