// Seeded schedules of a consistency group (docs/GROUPS.md, docs/INVARIANTS.md invariant
// 9): two or three members over one link, group points on the primary, the group's
// limit on the secondary, dependent writes, crashes of the secondary, group checkpoints.
// Runs in a child process. A failure prints its seed; replay with:
//   node dist/test/sim/run.js --sim group --seed <seed>
// Soak: OFFSITE_GROUP_SIM_SEEDS=100000 npm test (or run.js --sim group --seeds 100000).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

test('group simulation: invariants 8 and 10 over 300 seeds, every member converging to the last group point or promoted at one', () => {
  const seeds = process.env.OFFSITE_GROUP_SIM_SEEDS ?? '300';
  let out: string;
  try {
    out = execFileSync(process.execPath, [new URL('./run.js', import.meta.url).pathname, '--sim', 'group', '--seeds', seeds], {
      encoding: 'utf8',
      timeout: 900_000,
    });
  } catch (e) {
    assert.fail(String((e as { stdout?: string }).stdout ?? e));
  }
  const figure = (name: string): number => {
    const m = new RegExp(`(\\d+) ${name}`).exec(out);
    assert.ok(m, `no "${name}" in: ${out}`);
    return Number(m[1]);
  };
  assert.match(out, new RegExp(`^ok ${seeds} seeds`, 'm'), out);
  const n = Number(seeds);
  // A quarter of the seeds end in a promote of the group when it can be (else they converge).
  assert.equal(figure('converged') + figure('group failovers'), n, out);
  assert.ok(figure('group failovers') > n / 30, out);
  assert.ok(figure('members') > 2 * n, out); // two or three members a seed
  assert.ok(figure('group points') > 20 * n, out);
  assert.ok(figure('crashes') > n, out);
  assert.ok(figure('group checkpoints') > n / 10, out);
  // Half the seeds keep history on every member: its points (group points) opened and compared (invariant 8).
  assert.ok(figure('history points opened') > n, out);
});
