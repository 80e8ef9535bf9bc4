// Runs the journal simulation outside node:test (whose async hooks cost 10x):
//   node dist/test/sim/run.js [--seeds N] [--from S] [--seed S]
// Prints one summary line; on a failure prints the seed and exits 1.
import { runSeed } from './journal-sim.js';

const args = process.argv.slice(2);
const opt = (name: string): number | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : undefined;
};
const one = opt('seed');
const from = opt('from') ?? 1;
const count = opt('seeds') ?? 2000;
const seeds = one !== undefined ? [one] : Array.from({ length: count }, (_, i) => from + i);
let crashes = 0;
let overflows = 0;
const t0 = Date.now();
for (const seed of seeds) {
  try {
    const r = await runSeed(seed);
    crashes += r.crashes;
    overflows += r.overflows;
  } catch (e) {
    console.log(`FAIL seed ${seed}: ${(e as Error).message}`);
    console.log(`replay: node dist/test/sim/run.js --seed ${seed}   (add OFFSITE_SIM_DEBUG=1 for a trace)`);
    if (process.env.OFFSITE_SIM_DEBUG) console.log((e as Error).stack);
    process.exit(1);
  }
}
console.log(`ok ${seeds.length} seeds, ${crashes} crashes, ${overflows} overflows, ${Date.now() - t0} ms`);
