// V8's old generation gets room past what is live (src/memory/collector.ts
// boundOldGeneration): under a stream of objects that live long enough to be promoted
// (a drain's records and frames), V8's own limit made a full collection every few tens
// of milliseconds. The percent is sized from the live heap. (Its effect is measured by
// bench:catchup, docs/BENCHMARKS.md: a synthetic stream here did not make V8 pick the
// small room a drain's did, so a test here could not tell the two apart.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { oldGenerationPercent } from '../../src/memory/collector.js';
import { OLD_GENERATION_HEADROOM_BYTES, OLD_GENERATION_MAX_GROWTH_PERCENT } from '../../src/limits/limits.js';

const MiB = 2 ** 20;

test('the percent gives the headroom in bytes, within its bounds', () => {
  assert.equal(oldGenerationPercent(10 * MiB), OLD_GENERATION_MAX_GROWTH_PERCENT, 'a small heap: at most the cap');
  assert.equal(oldGenerationPercent(OLD_GENERATION_HEADROOM_BYTES / 2), 200);
  assert.equal(oldGenerationPercent(OLD_GENERATION_HEADROOM_BYTES * 0.8), 125, 'a larger heap: the same bytes, a smaller percent');
  assert.equal(oldGenerationPercent(OLD_GENERATION_HEADROOM_BYTES), 0, 'as large as the room: V8 sizes it');
  assert.equal(oldGenerationPercent(0), OLD_GENERATION_MAX_GROWTH_PERCENT);
});
