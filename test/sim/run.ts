// Runs a seeded simulation outside node:test (whose async hooks cost 10x):
//   node dist/test/sim/run.js [--sim journal|replication|group] [--seeds N] [--from S] [--seed S]
// Prints one summary line; on a failure prints the seed, how to replay it, and exits 1.
import { runSeed } from './journal-sim.js';
import { runReplicationSeed } from './replication-sim.js';
import { runGroupSeed } from './group-sim.js';
import { MUTATIONS } from './mutations.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const mutate = opt('mutate');
if (mutate !== undefined) {
  const m = MUTATIONS[mutate];
  if (!m) {
    console.log(`unknown mutation "${mutate}": ${Object.keys(MUTATIONS).join(', ')}`);
    process.exit(2);
  }
  m.plant();
  console.log(`planted: ${m.what}`);
}
const sim = opt('sim') ?? (mutate !== undefined ? MUTATIONS[mutate]!.sim : 'journal');
if (sim !== 'journal' && sim !== 'replication' && sim !== 'group') {
  console.log(`unknown simulation "${sim}": journal, replication or group`);
  process.exit(2);
}
const one = opt('seed');
const from = Number(opt('from') ?? 1);
const count = Number(opt('seeds') ?? 2000);
const seeds = one !== undefined ? [Number(one)] : Array.from({ length: count }, (_, i) => from + i);
const totals: Record<string, number> = {};
const add = (k: string, v: number | boolean): void => {
  totals[k] = (totals[k] ?? 0) + Number(v);
};
const t0 = Date.now();
for (const seed of seeds) {
  try {
    if (sim === 'group') {
      const r = await runGroupSeed(seed);
      add('members', r.members);
      add('group points', r.points);
      add('applied', r.applied);
      add('group checkpoints', r.checkpoints);
      add('crashes', r.crashes);
      add('cuts', r.cuts);
      add('converged', r.converged);
      add('history points opened', r.historyChecks);
      add('group failovers', r.failovers);
    } else if (sim === 'journal') {
      const r = await runSeed(seed);
      add('crashes', r.crashes);
      add('overflows', r.overflows);
      add('volume writes that followed their record', r.followed);
      add('bitmap region sizes changed', r.regionChanges);
    } else {
      const r = await runReplicationSeed(seed);
      add('crashes', r.crashes);
      add('cuts', r.cuts);
      add('flips', r.flips);
      add('volumes paired again on a link that stayed up', r.rehellos);
      add('converged', r.converged);
      add('overflowed', r.overflowed);
      add('power-lost', r.powerLost);
      add('applied', r.applied);
      add('checkpoints', r.checkpoints);
      add('pauses', r.pauses);
      add('packed', r.packed);
      add('coalesced', r.coalesced);
      add('mapped', r.mapped);
      add('history points opened', r.historyChecks);
      add('history turned off or on', r.historyToggles);
      add('of them kept across a follow', r.keptAcrossFollow);
      add('history segments compacted', r.historyCompactions);
      add('with two secondaries', r.threeSites);
      add('detached', r.detached);
      add('rounds of one peer', r.ownRounds);
      add('first syncs of one peer', r.ownFirstSyncs);
      add('secondaries taken away and put back', r.peersRemoved);
      add('primary starts with its peers changed', r.peersChangedAtRestart);
      add('of them during a round of their own', r.ownRoundsAbandoned);
      add('volumes grown', r.grown);
      add('Hellos with the sizes apart', r.unpairedBySize);
      add('crashes mid-grow', r.growsCrashed);
      add('failovers', r.failovers);
      add('promotes to a past point', r.pastPromotes);
      add('promotes cut by a power loss', r.promoteCrashes);
      add('frame rooms reused', r.roomsReused);
      add('frames gathered', r.framesGathered);
      add('promotes failed on a full disk, then done', r.promotesOnFullDisk);
      add('verifies', r.verifies);
      add('corruptions a verify found and repaired', r.verifyRepairs);
    }
  } catch (e) {
    console.log(`FAIL seed ${seed}: ${(e as Error).message}`);
    console.log(`replay: node dist/test/sim/run.js --sim ${sim} --seed ${seed}${mutate !== undefined ? ` --mutate ${mutate}` : ''}   (add ` +
      `OFFSITE_SIM_DEBUG=1 for a trace)`);
    if (process.env.OFFSITE_SIM_DEBUG) console.log((e as Error).stack);
    process.exit(1);
  }
}
console.log(`ok ${seeds.length} seeds, ${Object.entries(totals).map(([k, v]) => `${v} ${k}`).join(', ')}, ${Date.now() - t0} ms`);
