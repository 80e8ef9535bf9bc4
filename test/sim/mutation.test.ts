// The checks can fail: each planted bug (test/sim/mutations.ts) breaks one relation the
// core relies on, and the simulation, run with it, must stop on "invariant broken" (an
// assertion in src/ caught it) within a few hundred seeds, printing the seed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { MUTATIONS } from './mutations.js';

for (const [name, m] of Object.entries(MUTATIONS)) {
  test(`mutation ${name} (${m.what}) is caught by ${m.caughtBy === 'check' ? 'a check' : 'an assertion'} in the ${m.sim} simulation`, () => {
    const r = spawnSync(process.execPath, [new URL('./run.js', import.meta.url).pathname, '--mutate', name, '--seeds', '500'],
      { encoding: 'utf8', timeout: 600_000 });
    assert.equal(r.status, 1, `the simulation passed with ${name} planted:\n${r.stdout}${r.stderr}`);
    // (The simulation's own checks: a restore point that opens to the wrong image, a verify that finds a difference no one
    // made, a volume block after kill -9 that no journal record accounts for or whose newest record holds another write, a
    // replica that converged to, or was brought to, another image.)
    const caught = new RegExp('^FAIL seed \\d+: seed \\d+ step \\d+: ' +
      "(restore point \\d+ .* opens to an image that is not the primary's|an online verify of \\S+ found regions|the verify of \\S+ at the end found regions|" +
      'after kill -9, block \\d+ holds write \\d+(, which no record in the journal| but journal record \\d+ holds \\d+)|' +
      'converged to record \\d+, but block \\d+ differs at|' +
      "the replica at \\S+ was brought to record \\d+, but its image is not the primary's flush-point image there)", 'm');
    if (m.caughtBy === 'check') assert.match(r.stdout, caught, r.stdout);
    else assert.match(r.stdout, /^FAIL seed \d+: seed \d+: invariant broken: /m, r.stdout);
    assert.match(r.stdout, /^replay: node dist\/test\/sim\/run\.js --sim \w+ --seed \d+/m);
  });
}
