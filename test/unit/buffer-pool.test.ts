// The node's reused buffers (src/memory/buffer-pool.ts): a buffer given back is the one
// taken next, at most `keep` idle ones stay, and a buffer given back twice, or of
// another size, stops the daemon (it would be handed to two readers at once).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/memory/buffer-pool.js';

test('a buffer given back is taken again; at most `keep` stay idle; a second give is refused', () => {
  const pool = new BufferPool(4096, 1);
  const a = pool.take();
  const b = pool.take();
  assert.notEqual(a, b);
  assert.equal(pool.out, 2);
  pool.give(a);
  pool.give(b); // (only one is kept)
  assert.equal(pool.out, 0);
  const c = pool.take();
  assert.equal(c, a, 'the kept one is reused');
  assert.notEqual(pool.take(), b, 'the one past `keep` was let go');
  assert.throws(() => pool.give(Buffer.alloc(100)), /given back/);
  pool.give(c);
  assert.throws(() => pool.give(c), /given back/);
});
