// Thousands of seeded schedules of the whole replication core: the primary's
// journal and write path, the shipper, real frames with checksums, the receiver,
// the receive log and apply, with kill -9 and power loss of either side, link
// cuts, stalls, flipped bytes and full disks (docs/INVARIANTS.md, invariant 2, 3, 4, 5, 7, 8).
// Runs in a child process (node:test's async hooks slow it 10x). A failure prints
// its seed; replay with: node dist/test/sim/run.js --sim replication --seed <seed>
// Soak: OFFSITE_SIM_SEEDS=100000 npm test (or run.js --sim replication --seeds 100000).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

test('replication simulation: invariants 2, 3, 4, 5, 7 and 8 over a thousand seeds ' +
  '(checkpoints held through faults, a third with two secondaries, failovers), ' +
  'every one converging', () => {
  const seeds = process.env.OFFSITE_SIM_SEEDS ?? '1000';
  let out: string;
  try {
    out = execFileSync(process.execPath, [new URL('./run.js', import.meta.url).pathname, '--sim', 'replication', '--seeds', seeds],
      { encoding: 'utf8', timeout: 900_000 });
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
  // The schedules must exercise what they claim to.
  assert.ok(figure('crashes') > n, out);
  assert.ok(figure('cuts') > n, out);
  assert.ok(figure('flips') > n / 10, out);
  assert.ok(figure('volumes paired again on a link that stayed up') > n / 4, out); // a VolumeHello under every other fault
  // Every seed converges, power loss at the primary included (the activity log covers it).
  assert.equal(figure('converged'), n, out);
  assert.ok(figure('power-lost') > 0, out);
  assert.ok(figure('overflowed') > n / 10, out);
  assert.ok(figure('applied') > n * 10, out);
  assert.ok(figure('checkpoints') > n / 4, out);
  assert.ok(figure('pauses') > 0, out); // a checkpoint held until the receive log filled
  assert.ok(figure('packed') > n, out); // batches went as PackedRecords frames (half the seeds)
  assert.ok(figure('coalesced') > n / 4, out); // records went as Skip records in coalesced units (half the seeds; none while a round is open)
  assert.ok(figure('mapped') > n / 4, out);
  // Half the seeds keep history: its restore points were opened and compared (invariant 8).
  assert.ok(figure('history points opened') > n, out); // first syncs mapped the secondary's holes (new pairs at protocol version 2)
  // ... some of them points the replica held before it followed a new primary (the other secondary, after a failover).
  assert.ok(figure('of them kept across a follow') > 0, out);
  // ... and a third of them age fast: thinning hides most points and compaction rewrites segments without what those alone needed.
  assert.ok(figure('history segments compacted') > n / 20, out);
  // A third of the seeds run two secondaries, and the far one is detached from the journal (docs/PEERS.md).
  assert.ok(figure('with two secondaries') > n / 5, out);
  assert.ok(figure('detached') > n / 10, out);
  // ... and some come back by a round of their own while site-b streams on (a handful per thousand seeds).
  assert.ok(figure('rounds of one peer') > 0, out);
  // ... and new secondaries get a first sync of their own, compared by hash (the odd seeds of those).
  assert.ok(figure('first syncs of one peer') > n / 20, out);
  // ... and site-c is taken away from the peers by a reload and put back by another (docs/PEERS.md,
  // "Adding and removing a secondary"), now and then during a round of its own.
  assert.ok(figure('secondaries taken away and put back') > n / 20, out);
  assert.ok(figure('primary starts with its peers changed') > n / 100, out);
  assert.ok(figure('of them during a round of their own') > 0, out);
  // A third of the seeds grow the volume (docs/CONFIG.md, "Growing a volume"): the secondaries, then the
  // primary, crashes of either side mid-grow among them, and links whose Hello found the sizes apart meanwhile.
  assert.ok(figure('volumes grown') > n / 5, out);
  assert.ok(figure('crashes mid-grow') > n / 100, out);
  assert.ok(figure('Hellos with the sizes apart') > n / 50, out);
  // A quarter of the seeds lose the primary part-way: a secondary is promoted, the other follows, the old primary returns demoted.
  assert.ok(figure('failovers') > n / 10, out);
  // ... half of them after a calm spell, so promotes apply what their receive logs hold, go to
  // restore points of the history, and some fail on a full disk and are done again with room.
  assert.ok(figure('promotes to a past point') > n / 200, out);
  assert.ok(figure('promotes failed on a full disk, then done') > n / 500, out);
  // Batches were read into frame rooms given back by frames written before them (poisoned when given back).
  assert.ok(figure('frame rooms reused') > n * 10, out);
  // ... and the secondaries gathered frames that came in pieces into buffers given back once logged.
  assert.ok(figure('frames gathered') > n, out);
  // Online verifies ran to their end while the host wrote and faults went on, and at the end of
  // half the seeds: each found nothing on pairs that never diverged, and each corrupted block
  // of a replica (behind the replication's back) was found in its region and repaired.
  assert.ok(figure('verifies') > n / 2, out);
  assert.ok(figure('corruptions a verify found and repaired') > n / 4, out);
});
