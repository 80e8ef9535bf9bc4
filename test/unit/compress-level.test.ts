// `compression: auto` below its fastest level: raw where a try shows it ships more
// (src/compress/level.ts), never tried on a line that data waits for, back to zstd
// when a recheck finds compressing ships as much or the line gets busy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTO_RAW, LevelController, type LevelSample } from '../../src/compress/level.js';
import { AUTO_RAW_RECHECK_SECONDS, AUTO_RAW_TRY_AFTER_SECONDS, AUTO_TRY_SECONDS } from '../../src/limits/limits.js';
import { AUTO_MAX_LEVEL, AUTO_MIN_LEVEL, AUTO_START_LEVEL } from '../../src/compress/setting.js';

const MB = 1_000_000;
/** Seconds from the start level to a try of raw: the level steps down to 1 (the CPU is needed, the bytes are not), then waits there. */
const TO_TRY = AUTO_RAW_TRY_AFTER_SECONDS + AUTO_START_LEVEL - AUTO_MIN_LEVEL - 1;

interface Pipeline {
  /** Busy fraction of the link while compressing, and while raw (the same when not given). */
  linkBusy: number;
  rawLinkBusy?: number;
  workersBusy: number;
  /** Record bytes a second shipped while compressing, and while raw. */
  zstd: number;
  raw: number;
  /** Cores of CPU the node uses (1 when not given: a node working hard). */
  cpu?: number;
}

/** Runs `c` for `seconds` on `p`; returns the levels it chose. */
function run(c: LevelController, seconds: number, p: Pipeline): number[] {
  const levels: number[] = [];
  for (let i = 0; i < seconds; i++) {
    const raw = c.level === AUTO_RAW;
    const sample: LevelSample = { linkBusy: raw ? (p.rawLinkBusy ?? p.linkBusy) : p.linkBusy, workersBusy: raw ? 0 : p.workersBusy,
      recordBytes: raw ? p.raw : p.zstd, cpuBusy: p.cpu ?? 1 };
    levels.push(c.observe(sample));
  }
  return levels;
}

/** The seconds at which a try of raw began. */
const triesOf = (levels: number[]): number[] => levels.flatMap((l, i) => (l === AUTO_RAW && levels[i - 1] !== AUTO_RAW ? [i] : []));

const LAN = { linkBusy: 0, workersBusy: 0.4, zstd: 37 * MB, raw: 50 * MB };

test('auto on a fast line: the link idle while shipping, it tries raw, keeps it when it ships more, and says so once', () => {
  const c = new LevelController();
  const levels = run(c, TO_TRY, LAN);
  assert.equal(levels.at(-1), AUTO_RAW, `levels ${levels}`);
  assert.deepEqual(levels.slice(0, 2), [2, 1], 'the link idle and the node busy: down to level 1 first');
  assert.ok(levels.slice(2, -1).every((l) => l === AUTO_MIN_LEVEL), `compressing at level 1 until the try: ${levels}`);
  assert.equal(c.state, 'try-raw');
  assert.equal(c.changed, null, 'a try is not a change yet');
  run(c, AUTO_TRY_SECONDS, LAN);
  assert.equal(c.state, 'raw');
  assert.equal(c.level, AUTO_RAW);
  assert.deepEqual(c.changed, { raw: true, rawRate: 50 * MB, zstdRate: 37 * MB });
  c.changed = null;
  // Raw holds while the line stays idle, until the recheck.
  assert.ok(run(c, AUTO_RAW_RECHECK_SECONDS - 1, LAN).every((l) => l === AUTO_RAW));
  assert.equal(c.changed, null);
  // The recheck tries level 1; raw still ships more: raw again, and nothing said.
  const recheck = run(c, 1 + AUTO_TRY_SECONDS, LAN);
  assert.equal(recheck[0], AUTO_MIN_LEVEL, `recheck ${recheck}`);
  assert.equal(c.state, 'raw');
  assert.equal(c.changed, null);
});

test('auto: a try of raw that ships no more goes back to the level it left, and each next try waits twice as long', () => {
  const c = new LevelController();
  // The peer's disk bounds both ways: raw ships 1.2x, under AUTO_RAW_GAIN.
  const levels = run(c, 200, { linkBusy: 0, workersBusy: 0.4, zstd: 40 * MB, raw: 48 * MB });
  const tries = triesOf(levels);
  assert.ok(tries.length >= 3, `tries at ${tries}`);
  const gaps = tries.slice(1).map((t, i) => t - tries[i]! - AUTO_TRY_SECONDS);
  assert.deepEqual(gaps.slice(0, 3), [2, 4, 8].map((k) => k * AUTO_RAW_TRY_AFTER_SECONDS), `tries at ${tries}`);
  const t = tries[0]!;
  assert.deepEqual(levels.slice(t, t + AUTO_TRY_SECONDS), new Array(AUTO_TRY_SECONDS).fill(AUTO_RAW));
  assert.equal(levels[t + AUTO_TRY_SECONDS], AUTO_MIN_LEVEL, 'back at the level it left');
  assert.equal(c.changed, null, 'raw never won: nothing to say');
});

test('auto: raw compresses again on a tie at the recheck, and at once when the line gets busy and compressing ships more', () => {
  const c = new LevelController();
  run(c, TO_TRY + AUTO_TRY_SECONDS, LAN);
  assert.equal(c.state, 'raw');
  c.changed = null;
  // The host now writes less than either way ships: the recheck finds a tie, and a tie compresses.
  run(c, AUTO_RAW_RECHECK_SECONDS + AUTO_TRY_SECONDS + 1, { linkBusy: 0, workersBusy: 0.1, zstd: 20 * MB, raw: 20 * MB });
  assert.equal(c.state, 'zstd');
  assert.deepEqual(c.changed, { raw: false, rawRate: 20 * MB, zstdRate: 20 * MB });
  // Raw again on the LAN...
  c.changed = null;
  run(c, 40, LAN);
  assert.equal(c.state, 'raw');
  // ...then a rate cap: raw batches wait for the line, compressed ones ship three times as much.
  // (Two seconds for the smoothed busy fraction to pass 0.8.)
  const capped = run(c, 2 + AUTO_RAW_TRY_AFTER_SECONDS + AUTO_TRY_SECONDS, { linkBusy: 0.9, rawLinkBusy: 1, workersBusy: 0.3, zstd: 3 * MB, raw: 1 * MB });
  assert.ok(capped.at(-1)! >= AUTO_MIN_LEVEL, `levels ${capped}`);
  assert.equal(c.state, 'zstd');
  const said = c.changed as LevelController['changed'];
  assert.equal(said?.raw, false);
  assert.equal(said?.zstdRate, 3 * MB);
  assert.ok(said!.rawRate < 3 * MB, String(said!.rawRate));
});

test('auto on a thin line: data waits for the link, so raw is never tried, whatever the workers do; nor while nothing ships', () => {
  const c = new LevelController();
  const climbing = run(c, 30, { linkBusy: 1, workersBusy: 0.1, zstd: 2 * MB, raw: 1 * MB });
  assert.equal(climbing.at(-1), AUTO_MAX_LEVEL);
  // A slow CPU on a thin line: the workers are busy, the level falls to 1, the link still waits.
  const busy = run(c, 300, { linkBusy: 0.9, workersBusy: 0.95, zstd: 2 * MB, raw: 1 * MB });
  assert.ok(!busy.includes(AUTO_RAW), `levels ${busy}`);
  assert.equal(busy.at(-1), AUTO_MIN_LEVEL);
  // A link busy a quarter of the time is not idle either.
  assert.ok(!run(c, 300, { linkBusy: 0.25, workersBusy: 0.95, zstd: 2 * MB, raw: 1 * MB }).includes(AUTO_RAW));
  // A line whose data waits in the kernel's buffer now and then (the link busy half the
  // time) with the node busy compressing at a high level: never down to 1, never tried.
  const flicker = new LevelController();
  run(flicker, 30, { linkBusy: 1, workersBusy: 0.1, zstd: 2 * MB, raw: 1 * MB });
  const flickering: number[] = [];
  for (let i = 0; i < 300; i++) flickering.push(flicker.observe({ linkBusy: i % 4 < 2 ? 1 : 0, workersBusy: 0.3, recordBytes: 2 * MB, cpuBusy: 0.8 }));
  assert.ok(!flickering.includes(AUTO_RAW) && Math.min(...flickering) > AUTO_MIN_LEVEL, `levels ${flickering}`);
  // Nothing shipped: nothing to compare, no try.
  assert.ok(!run(c, 300, { linkBusy: 0, workersBusy: 0, zstd: 0, raw: 0 }).includes(AUTO_RAW));
});

test('auto: however long raw has held, a busy link tries level 1 within seconds; raw losing at a recheck makes the next try of raw wait longer', () => {
  const c = new LevelController();
  run(c, TO_TRY + AUTO_TRY_SECONDS, LAN);
  assert.equal(c.state, 'raw');
  // Ten rechecks that raw wins.
  run(c, 10 * (AUTO_RAW_RECHECK_SECONDS + AUTO_TRY_SECONDS), LAN);
  assert.equal(c.state, 'raw');
  // A rate cap starts: level 1 is tried after the busy seconds (two to pass the smoothing), not at the next recheck.
  const cap = { linkBusy: 0.9, rawLinkBusy: 1, workersBusy: 0.3, zstd: 3 * MB, raw: 1 * MB };
  const levels = run(c, 2 + AUTO_RAW_TRY_AFTER_SECONDS, cap);
  assert.equal(levels.at(-1), AUTO_MIN_LEVEL, `levels ${levels}`);
  assert.equal(c.state, 'try-zstd');
  run(c, AUTO_TRY_SECONDS, cap);
  assert.equal(c.state, 'zstd');
  // The cap lifts: raw lost its last comparison, so its next try waits twice as long as the first did.
  const lifted = run(c, 4 * AUTO_RAW_TRY_AFTER_SECONDS, LAN);
  const first = lifted.indexOf(AUTO_RAW);
  assert.ok(first >= 2 * AUTO_RAW_TRY_AFTER_SECONDS - 1, `first try of raw at ${first} (levels ${lifted})`);
  assert.equal(c.state === 'raw' || c.state === 'try-raw', true, c.state);
});

test('auto on a thin line between bursts: a calm node never tries raw; a try a burst meets (data waits for the link) is lost, whatever it shipped', () => {
  const c = new LevelController();
  // A trickle the line carries with room to spare, the node calm: nothing to gain, no try.
  const trickle = { linkBusy: 0, workersBusy: 0.05, zstd: 20_000, raw: 20_000, cpu: 0.05 };
  assert.ok(!run(c, 600, trickle).includes(AUTO_RAW));
  // The node busy with other work: the link idle while shipping, so raw is tried...
  const quiet = run(c, TO_TRY, { ...trickle, cpu: 0.9 });
  assert.equal(quiet.at(-1), AUTO_RAW, `levels ${quiet}`);
  // A burst comes during the try: raw fills the line (250 kB/s) and data waits; it ships
  // ten times the trickle, but that is the burst, not raw.
  run(c, AUTO_TRY_SECONDS, { linkBusy: 1, workersBusy: 0.3, zstd: 500_000, raw: 250_000 });
  assert.equal(c.state, 'zstd');
  assert.ok(c.level >= AUTO_MIN_LEVEL);
  assert.equal(c.changed, null, 'nothing changed: nothing said');
});

test('auto with CPU to spare climbs three levels a second on a busy line and holds its level while the line idles; without, one a second and back', () => {
  // A thin line with a burst on it: the workers near idle, the node calm.
  const spare = new LevelController();
  const thin = { workersBusy: 0.02, zstd: 2 * MB, raw: 2 * MB, cpu: 0.1 };
  // (The link's busy fraction is smoothed: over 0.8 from the third second.)
  assert.deepEqual(run(spare, 6, { ...thin, linkBusy: 1 }), [3, 3, 6, 9, 12, AUTO_MAX_LEVEL]);
  assert.ok(run(spare, 60, { ...thin, linkBusy: 0 }).every((l) => l === AUTO_MAX_LEVEL), 'held between bursts');
  // The same level costs the workers more (the host writes faster, the line idle): back to the start level.
  assert.equal(run(spare, 30, { ...thin, linkBusy: 0, workersBusy: 0.3 }).at(-1), AUTO_START_LEVEL);
  // The node busy: one level a second on a busy line, and down to the fastest on an idle one.
  const busy = new LevelController();
  assert.deepEqual(run(busy, 6, { ...thin, linkBusy: 1, cpu: 1 }), [3, 3, 4, 5, 6, 7]);
  assert.equal(run(busy, 10, { ...thin, linkBusy: 0, cpu: 1 }).at(-1), AUTO_MIN_LEVEL);
  // Workers busier than AUTO_IDLE_WORKERS: one level a second.
  assert.deepEqual(run(new LevelController(), 6, { ...thin, linkBusy: 1, workersBusy: 0.3 }), [3, 3, 4, 5, 6, 7]);
});
