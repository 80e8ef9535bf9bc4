// The named limits (src/limits/limits.ts): how epochs and windows follow the journal and
// the peer's receive log, and what the daemon warns about at startup.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EPOCH_MAX_BYTES, MIN_RECEIVE_LOG_BYTES, MIN_WINDOW_BYTES, epochBytesFor, volumeLimitWarnings, windowCapFor } from '../../src/limits/limits.js';

const MiB = 1 << 20;
const fmt = (b: number): string => `${b / MiB} MiB`;

test('an epoch is at most an eighth of the journal, a quarter of the peer log, and 256 MiB', () => {
  assert.equal(epochBytesFor(1024 * MiB), 128 * MiB);
  assert.equal(epochBytesFor(64 * 1024 * MiB), EPOCH_MAX_BYTES);
  assert.equal(epochBytesFor(1024 * MiB, 64 * MiB), 16 * MiB);
  assert.equal(epochBytesFor(Infinity, 2 * MiB), MIN_WINDOW_BYTES, 'never below the smallest window');
});

test('the window is half the peer log, at least the smallest window', () => {
  assert.equal(windowCapFor(64 * MiB), 32 * MiB);
  assert.equal(windowCapFor(512 * 1024), MIN_WINDOW_BYTES);
});

test('startup warnings: a journal too small to be a receive log, a region too large to verify', () => {
  assert.deepEqual(volumeLimitWarnings({ name: 'db', journal: MIN_RECEIVE_LOG_BYTES, bitmapRegion: MiB, maxHashRegion: 4 * MiB }, fmt), []);
  const w = volumeLimitWarnings({ name: 'db', journal: 16 * MiB, bitmapRegion: 8 * MiB, maxHashRegion: 4 * MiB }, fmt);
  assert.equal(w.length, 2);
  assert.match(w[0]!, /^volume db: journal 16 MiB is less than twice the largest host write \(32 MiB\); .* give it at least 64 MiB$/);
  assert.match(w[1]!, /^volume db: bitmap_region 8 MiB is larger than a hash request may name \(4 MiB\); .* use at most 4 MiB$/);
});
