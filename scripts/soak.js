#!/usr/bin/env node
// The soaks: what `npm test` runs, longer. The seeded simulations over 5000 seeds each
// (OFFSITE_SIM_SEEDS), the iSCSI PDU fuzz over 600 rounds, 50 checkpoints and 50 drills
// under load, and 60 kill -9 cycles of either side (OFFSITE_SOAK=1; npm test runs fewer
// of each, so CI stays under half an hour). Run after `npm run build`.
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const files = [
  'sim/journal-sim.test.js', 'sim/replication-sim.test.js', 'sim/group-sim.test.js',
  'integration/iscsi-fuzz.test.js', 'integration/checkpoint-under-load.test.js', 'integration/replication-crash.test.js',
].map((f) => root + f);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env: { OFFSITE_SIM_SEEDS: '5000', ...process.env, OFFSITE_SOAK: '1', UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' },
});
process.exit(r.status ?? 1);
