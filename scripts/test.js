#!/usr/bin/env node
// Runs the compiled tests (dist/test) with node:test: the unit tests, the simulations
// and the integration tests that only wait two files at a time, the others one at a time.
// `node scripts/test.js unit` runs only test/unit; `... integration` only that.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { spawn } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const only = process.argv[2];
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.js')) files.push(p);
  }
};
walk(only ? join(root, only) : root);
if (files.length === 0) {
  console.error(`no tests found under ${root}${only ?? ''}`);
  process.exit(1);
}
// The unit tests, each in a process of its own and touching nothing shared, two at a
// time; the simulations (each a child process on a core of its own, no clock read) two
// at a time; the integration tests whose daemons mostly wait (reloads, restarts, refusals,
// kill -9 and compare: nothing they assert depends on the machine's pace, and their waits
// have tens of seconds of room) two at a time; the others one at a time, alone on the
// machine: those that pace or measure (rate caps, lag, fairness, memory, a load the test
// wants), drive heavy clients (PostgreSQL, Chromium, the iSCSI conformance suite, tmux),
// or take the machine's loop devices and mounts.
const ALONE = new Set([
  'checkpoint-under-load', 'compression', 'consistency-group', 'dashboard', 'failover', 'first-sync', 'history-postgres',
  'disk-swapped', 'history-ransomware', 'iscsi-conformance', 'iscsi', 'lag-vs-loss', 'link-fairness', 'link-faults', 'memory-fleet', 'metrics',
  'nbd-ext4', 'nbd-limits', 'postgres', 'promote-full-disk', 'rate', 'replication-crash', 'replication-ext4', 'three-sites-group',
  'three-sites', 'three-sites-second-primary', 'top', 'volume-grow',
].map((n) => `${n}.test.js`));
if (!only) {
  const missing = [...ALONE].filter((n) => !files.some((f) => basename(f) === n));
  if (missing.length > 0) {
    console.error(`scripts/test.js: ALONE names files that are not there: ${missing.join(', ')}`);
    process.exit(1);
  }
}
const unit = files.filter((f) => f.startsWith(join(root, 'unit')));
const sim = files.filter((f) => f.startsWith(join(root, 'sim')));
const rest = files.filter((f) => !unit.includes(f) && !sim.includes(f));
const paired = rest.filter((f) => !ALONE.has(basename(f)));
const alone = rest.filter((f) => ALONE.has(basename(f)));
// The ports the tests hand out are reserved by files (test/helpers/daemon.ts): none is held before a run.
rmSync(join(tmpdir(), 'offsite-test-ports'), { recursive: true, force: true });
const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' };
let status = 0;
// Each group's "failing tests" section (the spec reporter prints it at the group's end) is
// printed again after the last group, so the tail of a long run (what CI shows) names the
// failure and its error, not only the slow tests that ran after it.
const failures = [];
const FAILURES_KEPT = 64 * 1024;
const run = (group, concurrency) => new Promise((resolve) => {
  const child = spawn(process.execPath, ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...group],
    { stdio: ['ignore', 'pipe', 'inherit'], env });
  let tail = '';
  let failing = null;
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    if (failing !== null) {
      if (failing.length < FAILURES_KEPT) failing += chunk.toString();
      return;
    }
    tail = (tail + chunk.toString()).slice(-4096);
    const at = tail.indexOf('✖ failing tests:');
    if (at >= 0) failing = tail.slice(at);
  });
  child.on('close', (code) => {
    if (failing !== null) failures.push(failing.slice(0, FAILURES_KEPT));
    resolve(code ?? 1);
  });
});
for (const [group, concurrency] of [[unit, 2], [sim, 2], [paired, 2], [alone, 1]]) {
  if (group.length === 0) continue;
  const code = await run(group, concurrency);
  if (code !== 0) status = code;
}
if (failures.length > 0) {
  console.log('\n=== the failures of this run, again ===');
  for (const f of failures) console.log(f);
}
process.exit(status);
