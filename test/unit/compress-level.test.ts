// `compression: auto` below its fastest level: raw where a try shows it ships more
// (src/compress/level.ts), never on a line that data waits for, and back to zstd when
// a recheck finds compressing ships as much.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTO_RAW, LevelController, type LevelSample } from '../../src/compress/level.js';
import { AUTO_RAW_RECHECK_SECONDS, AUTO_RAW_TRY_AFTER_SECONDS, AUTO_TRY_SECONDS } from '../../src/limits/limits.js';
import { AUTO_MAX_LEVEL, AUTO_MIN_LEVEL } from '../../src/compress/setting.js';

const MB = 1_000_000;

/**
 * Runs `c` for `seconds` on a pipeline that ships `zstd` bytes a second while compressing
 * and `raw` while sending raw, the link as given, the workers as busy as given at level 1
 * (`above`: at higher levels, which cost more; the same when not given); returns the levels seen.
 */
function run(c: LevelController, seconds: number, s: { linkBusy: number; workersBusy: number; above?: number; zstd: number; raw: number }): number[] {
  const levels: number[] = [];
  for (let i = 0; i < seconds; i++) {
    const raw = c.level === AUTO_RAW;
    const workersBusy = raw ? 0 : c.level > AUTO_MIN_LEVEL ? (s.above ?? s.workersBusy) : s.workersBusy;
    const sample: LevelSample = { linkBusy: s.linkBusy, workersBusy, recordBytes: raw ? s.raw : s.zstd };
    levels.push(c.observe(sample));
  }
  return levels;
}

test('auto on a fast link: at level 1 with the workers busy and the link idle it tries raw, keeps it when it ships more, says so once', () => {
  const c = new LevelController();
  const levels = run(c, 4 + AUTO_RAW_TRY_AFTER_SECONDS, { linkBusy: 0, workersBusy: 0.7, above: 0.95, zstd: 35 * MB, raw: 110 * MB });
  assert.equal(levels.indexOf(AUTO_RAW) > 0, true, `levels ${levels}`);
  assert.ok(levels.slice(0, levels.indexOf(AUTO_RAW)).every((l) => l >= AUTO_MIN_LEVEL), 'compressing until the try');
  assert.equal(c.state, 'try-raw');
  assert.equal(c.changed, null, 'a try is not a change yet');
  run(c, AUTO_TRY_SECONDS, { linkBusy: 0, workersBusy: 0.7, above: 0.95, zstd: 35 * MB, raw: 110 * MB });
  assert.equal(c.state, 'raw');
  assert.equal(c.level, AUTO_RAW);
  assert.deepEqual(c.changed, { raw: true, rawRate: 110 * MB, zstdRate: 35 * MB });
  c.changed = null;
  // Raw holds while it ships (a link that stays idle says nothing new).
  run(c, AUTO_RAW_RECHECK_SECONDS - 5, { linkBusy: 0, workersBusy: 0, zstd: 35 * MB, raw: 110 * MB });
  assert.equal(c.level, AUTO_RAW);
  assert.equal(c.changed, null);
});

test('auto: a try of raw that ships no more goes back to level 1, and the next try waits twice as long', () => {
  const c = new LevelController();
  // Compression costs the workers, but raw is no faster (the peer's disk bounds both ways).
  const same = { linkBusy: 0, workersBusy: 0.7, above: 0.95, zstd: 40 * MB, raw: 45 * MB };
  const first = run(c, 60, same);
  const tries = first.map((l, i) => (l === AUTO_RAW && first[i - 1] !== AUTO_RAW ? i : -1)).filter((i) => i >= 0);
  assert.ok(tries.length >= 2, `tries at ${tries} (levels ${first})`);
  assert.ok(tries[1]! - tries[0]! > AUTO_RAW_TRY_AFTER_SECONDS + AUTO_TRY_SECONDS, `the second try waits longer: ${tries}`);
  if (tries.length >= 3) assert.ok(tries[2]! - tries[1]! > tries[1]! - tries[0]!, `and the third longer again: ${tries}`);
  assert.equal(c.changed, null, 'raw never won: nothing to say');
  // Each try lasted AUTO_TRY_SECONDS, then level 1 again.
  const t = tries[0]!;
  assert.deepEqual(first.slice(t, t + AUTO_TRY_SECONDS), new Array(AUTO_TRY_SECONDS).fill(AUTO_RAW));
  assert.equal(first[t + AUTO_TRY_SECONDS], AUTO_MIN_LEVEL);
});

test('auto: raw rechecks level 1 after a while, and compresses again when compressing ships as much (a tie keeps the bytes small)', () => {
  const c = new LevelController();
  run(c, 4 + AUTO_RAW_TRY_AFTER_SECONDS + AUTO_TRY_SECONDS, { linkBusy: 0, workersBusy: 0.7, above: 0.95, zstd: 35 * MB, raw: 110 * MB });
  assert.equal(c.state, 'raw');
  c.changed = null;
  // Still far faster raw at the recheck: raw again, and nothing said.
  run(c, AUTO_RAW_RECHECK_SECONDS + AUTO_TRY_SECONDS, { linkBusy: 0, workersBusy: 0.7, above: 0.95, zstd: 35 * MB, raw: 110 * MB });
  assert.equal(c.state, 'raw', 'raw after the first recheck');
  assert.equal(c.changed, null);
  // Then the host writes less than either way ships: the recheck finds a tie.
  run(c, AUTO_RAW_RECHECK_SECONDS + AUTO_TRY_SECONDS, { linkBusy: 0, workersBusy: 0.2, zstd: 20 * MB, raw: 20 * MB });
  assert.equal(c.state, 'zstd');
  assert.ok(c.level >= AUTO_MIN_LEVEL);
  assert.deepEqual(c.changed, { raw: false, rawRate: 20 * MB, zstdRate: 20 * MB });
});

test('auto on a thin line: data waits for the link, so raw is never tried, whatever the workers do', () => {
  const c = new LevelController();
  const climbing = run(c, 30, { linkBusy: 1, workersBusy: 0.1, zstd: 2 * MB, raw: 1 * MB });
  assert.equal(climbing.at(-1), AUTO_MAX_LEVEL);
  // A slow CPU on a thin line: the workers are busy, the level falls to 1, the link still waits.
  const busy = run(c, 300, { linkBusy: 0.9, workersBusy: 0.95, zstd: 2 * MB, raw: 1 * MB });
  assert.ok(!busy.includes(AUTO_RAW), `levels ${busy}`);
  assert.equal(busy.at(-1), AUTO_MIN_LEVEL);
  // A link busy a quarter of the time is not idle either.
  assert.ok(!run(c, 300, { linkBusy: 0.25, workersBusy: 0.95, zstd: 2 * MB, raw: 1 * MB }).includes(AUTO_RAW));
  // Nothing shipped: nothing to compare, no try.
  assert.ok(!run(c, 300, { linkBusy: 0, workersBusy: 0.95, zstd: 0, raw: 0 }).includes(AUTO_RAW));
});
