#!/usr/bin/env node
// Runs libiscsi's conformance suite (iscsi-test-cu, Debian's libiscsi-bin) against a
// daemon (bin/offsite.js) serving a replicated volume over iSCSI: the journaled write
// path, as a primary whose peer is away (every write journaled), and prints the
// pass/skip/fail table. CUnit counts a skipped test as passed: a test whose output says
// [SKIPPED] is counted apart.
//
//   npm run build && node scripts/iscsi-conformance.js [--test FAMILY[.SUITE[.TEST]] (default ALL)] [--json FILE] [--max-failures N] [--write-docs]
//   --write-docs puts the table into docs/ISCSI.md (between its conformance markers).
//   ISCSI_CONFORMANCE_RAW=FILE keeps iscsi-test-cu's own output.
//
// Exit status: 0, or 1 when more tests fail than --max-failures (CI keeps the
// documented count there), 2 when iscsi-test-cu is missing.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
// ALL is the suite the issue's bar counts (230 tests); without --test iscsi-test-cu also runs its SCSI/LINUX/iSCSI families again.
const family = opt('--test', 'ALL');
const jsonOut = opt('--json', null);
const maxFailures = opt('--max-failures', null);

if (spawnSync('iscsi-test-cu', ['--help']).error) {
  console.error('iscsi-test-cu is not installed (apt-get install libiscsi-bin)');
  process.exit(2);
}

const root = path.resolve(new URL('..', import.meta.url).pathname);
const freePort = () => new Promise((resolve) => {
  const srv = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = srv.address();
    srv.close(() => resolve(port));
  });
});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offsite-conformance-'));
const [iscsiPort, nbdPort] = [await freePort(), await freePort()];
fs.writeFileSync(path.join(dir, 'offsite.yaml'), `node: conformance
state: ./state
nbd: 127.0.0.1:${nbdPort}
iscsi: { listen: "127.0.0.1:${iscsiPort}", iqn: iqn.2026-12.com.example:conformance }
peers:
  away: { address: "127.0.0.1:1" }
volumes:
  conformance: { path: ./conformance.img, size: 256MiB, role: primary, peer: away }
`);
const daemon = spawn(process.execPath, [path.join(root, 'bin/offsite.js'), 'daemon', '-c', path.join(dir, 'offsite.yaml')], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let daemonLog = '';
daemon.stdout.on('data', (d) => (daemonLog += d));
daemon.stderr.on('data', (d) => (daemonLog += d));
await new Promise((resolve, reject) => {
  const t0 = Date.now();
  const look = setInterval(() => {
    if (/ready: node conformance/.test(daemonLog)) { clearInterval(look); resolve(); }
    else if (daemon.exitCode !== null || Date.now() - t0 > 30_000) { clearInterval(look); reject(new Error(`the daemon did not start:\n${daemonLog}`)); }
  }, 50);
});
const url = `iscsi://127.0.0.1:${iscsiPort}/iqn.2026-12.com.example:conformance:conformance/0`;
const cuArgs = ['--dataloss', '-v', '--initiator-name', 'iqn.2026-12.com.example:conformance-1', '--initiator-name-2', 'iqn.2026-12.com.example:conformance-2'];
if (family) cuArgs.push('--test', family);
// The same target again as the second path: the multipath tests then run over two sessions.
cuArgs.push(url, url);

const output = await new Promise((resolve) => {
  const child = spawn('iscsi-test-cu', cuArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  child.on('close', () => resolve(out));
});
daemon.kill('SIGTERM');
const exitCode = await new Promise((resolve) => daemon.once('exit', (code) => resolve(code)));
fs.rmSync(dir, { recursive: true, force: true });
if (exitCode !== 0) {
  console.error(`the daemon stopped with ${exitCode} after the suite:\n${daemonLog.slice(-3000)}`);
  process.exit(1);
}

// Verbose CUnit output: "Suite: NAME" then, per test, "  Test: NAME ...<its output>passed" or "...FAILED"
// followed by the failed assertions.
const results = [];
let suite = '';
let current = null;
for (const line of output.split('\n')) {
  const s = /^Suite: (.+)$/.exec(line);
  if (s) {
    suite = s[1].trim();
    continue;
  }
  const m = /^\s+Test: (.+?) \.\.\.(.*)$/.exec(line);
  if (m) {
    current = { suite, test: m[1].trim(), text: m[2], result: null, reasons: [] };
    results.push(current);
  } else if (current) {
    current.text += `\n${line}`;
  }
}
const raw = process.env.ISCSI_CONFORMANCE_RAW;
if (raw) fs.writeFileSync(raw, output);
for (const r of results) {
  // CUnit ends a test's output with "passed" or "FAILED" (then the failed assertions).
  const verdict = /(passed|FAILED)\s*$/m.exec(r.text.split(/\n\s+\d+\. /)[0]);
  if (verdict?.[1] === 'FAILED' || !verdict) r.result = 'failed';
  else r.result = /\[SKIPPED\]/.test(r.text) ? 'skipped' : 'passed';
  if (r.result === 'failed') {
    r.reasons = r.text.split('\n').filter((l) => /\[FAILED\]|CU_ASSERT|CU_FAIL|\d+\. .*\.c:\d+/.test(l)).map((l) => l.trim()).slice(0, 4);
  }
  delete r.text;
}
const count = (k) => results.filter((r) => r.result === k).length;
const summary = { total: results.length, passed: count('passed'), skipped: count('skipped'), failed: count('failed') };
console.log(`iscsi-test-cu${family ? ` --test ${family}` : ''}: ` +
  `${summary.total} tests, ${summary.passed} passed, ${summary.skipped} skipped, ${summary.failed} failed`);
for (const r of results.filter((x) => x.result === 'failed')) console.log(`  FAILED ${r.suite}.${r.test}: ${r.reasons[0] ?? ''}`);
if (args.includes('--write-docs') && summary.total > 0) {
  const doc = path.join(root, 'docs/ISCSI.md');
  const why = {
    'Reserve6.LUNReset':
      'passes when run alone; in the suite, the second initiator\'s new session still has the unit attention of the previous test\'s ' +
      'TARGET WARM RESET queued behind the one libiscsi clears at login (SPC-4 5.15 lets a target report queued unit attentions one ' +
      'command at a time); the RESERVE(6) itself is released by the LUN reset',
    'GetLBAStatus.UnmapSingle':
      'the test expects the first descriptor at the asked LBA plus one physical block, which holds only when LOGICAL BLOCKS PER ' +
      'PHYSICAL BLOCK EXPONENT is 0; we report 3 (4 KiB physical blocks), and SBC-3 says the first descriptor contains the LBA asked for',
  };
  const rows = results.filter((r) => r.result === 'failed').map((r) => `| ${r.suite}.${r.test} | ${why[`${r.suite}.${r.test}`] ?? r.reasons[0] ?? ''} |`);
  const skipped = new Map();
  for (const r of results.filter((x) => x.result === 'skipped')) skipped.set(r.suite, (skipped.get(r.suite) ?? 0) + 1);
  const libiscsiVersion = spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'libiscsi-bin'], { encoding: 'utf8' }).stdout || '';
  const table = [
    `\`iscsi-test-cu --test ${family}\` (Debian's libiscsi-bin ${libiscsiVersion}), ${new Date().toISOString().slice(0, 10)}, ` +
      `against a daemon's replicated volume (journaled), as \`node scripts/iscsi-conformance.js --write-docs\` wrote it:`,
    '',
    '| tests | passed | skipped | failed |',
    '| ---: | ---: | ---: | ---: |',
    `| ${summary.total} | ${summary.passed} | ${summary.skipped} | ${summary.failed} |`,
    '',
    ...(rows.length > 0 ? ['| failed | why |', '| --- | --- |', ...rows, ''] : []),
    `Skipped (not implemented, or not applicable to a fixed writable disk): ${[...skipped].map(([k, n]) => `${k} ${n}`).join(', ')}.`,
  ].join('\n');
  const text = fs.readFileSync(doc, 'utf8');
  const a = text.indexOf('<!-- conformance:begin -->');
  const b = text.indexOf('<!-- conformance:end -->');
  if (a < 0 || b < a) throw new Error('docs/ISCSI.md has no conformance markers');
  fs.writeFileSync(doc, `${text.slice(0, a)}<!-- conformance:begin -->\n${table}\n${text.slice(b)}`);
}
if (jsonOut) fs.writeFileSync(jsonOut, `${JSON.stringify({ summary, results }, null, 2)}\n`);
if (summary.total === 0) {
  console.error(output.slice(-2000));
  process.exit(1);
}
if (maxFailures !== null && summary.failed > Number(maxFailures)) {
  console.error(`more failures (${summary.failed}) than the documented ${maxFailures}`);
  process.exit(1);
}
