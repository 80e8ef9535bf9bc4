// Thousands of seeded schedules of the journal and write path per run: kill -9,
// power loss, torn writes, disk-full spells, overflow, peer acks at random points.
// The simulation runs in a child process (node:test's async hooks slow it 10x).
// A failure prints its seed; replay with: node dist/test/sim/run.js --seed <seed>
// Soak: OFFSITE_SIM_SEEDS=200000 npm test (or run.js --seeds 200000).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

test('journal + write path simulation: invariants 1, 2 and 7 over thousands of seeds', () => {
  const seeds = process.env.OFFSITE_SIM_SEEDS ?? '3000';
  let out: string;
  try {
    out = execFileSync(process.execPath, [new URL('./run.js', import.meta.url).pathname, '--seeds', seeds], { encoding: 'utf8', timeout: 600_000 });
  } catch (e) {
    assert.fail(String((e as { stdout?: string }).stdout ?? e));
  }
  const m = /^ok (\d+) seeds, (\d+) crashes, (\d+) overflows, (\d+) volume writes that followed their record, (\d+) bitmap region sizes changed/m
    .exec(out);
  assert.ok(m, out);
  assert.equal(Number(m[1]), Number(seeds));
  // The schedules must exercise what they claim to.
  assert.ok(Number(m[2]) > Number(seeds), `only ${m[2]} crashes`);
  assert.ok(Number(m[3]) > 0, 'no schedule overflowed the journal');
  assert.ok(Number(m[4]) > 0, 'no volume write followed its record in the record\'s job');
  assert.ok(Number(m[5]) > Number(seeds) / 10, `only ${m[5]} restarts with another bitmap_region`);
});
