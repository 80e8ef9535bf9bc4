// Group commit: a caller never rides a sync that started before it asked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupSync } from '../../src/volume/group-sync.js';

test('concurrent callers share syncs, and late callers get a later one', async () => {
  const started: number[] = [];
  const finish: Array<() => void> = [];
  const g = new GroupSync(() => new Promise<void>((resolve) => {
    started.push(Date.now());
    finish.push(resolve);
  }));
  const order: string[] = [];
  const a = g.sync().then(() => order.push('a'));
  const b = g.sync().then(() => order.push('b')); // sync 1 is running: b must wait for sync 2
  const c = g.sync().then(() => order.push('c')); // shares sync 2 with b
  assert.equal(finish.length, 1);
  finish[0]!();
  await a;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['a']);
  assert.equal(finish.length, 2, 'a second sync started for b and c');
  finish[1]!();
  await Promise.all([b, c]);
  assert.deepEqual(order, ['a', 'b', 'c']);
  assert.equal(g.syncs, 2);
});

test('a failed sync fails its callers and the next one still runs', async () => {
  let n = 0;
  const g = new GroupSync(async () => {
    n++;
    if (n === 1) throw new Error('EIO');
  });
  await assert.rejects(g.sync(), /EIO/);
  await g.sync();
  assert.equal(n, 2);
});
