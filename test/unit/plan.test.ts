// offsite plan on synthetic traces with known answers: the seed's picture (a peak
// far above the average), and the CLI reading a CSV trace.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { parseTrace, planLink, worstLag, type Interval } from '../../src/plan/plan.js';
import { tempDir } from '../helpers/run.js';

const OFFSITE = new URL('../../../bin/offsite.js', import.meta.url).pathname;

/** 20-minute cycles: 60 MB in one minute, nothing the other 19. */
function bursts(cycles: number): Interval[] {
  const out: Interval[] = [];
  for (let m = 0; m < cycles * 20; m++) out.push({ end: (m + 1) * 60, seconds: 60, bytes: m % 20 === 10 ? 60e6 : 0 });
  return out;
}

test('a burst of 60 MB a minute every 20 minutes, RPO 5 min: 166,667 B/s (60 MB over 6 minutes)', () => {
  const p = planLink(bursts(6), 300);
  assert.equal(p.peakBytesPerSecond, 1e6);
  assert.equal(Math.round(p.averageBytesPerSecond), 50_000);
  // The backlog peaks at the burst minute's end: 60e6 - 60 R; its lag (60e6 - 60 R) / R <= 300.
  assert.ok(Math.abs(p.neededBytesPerSecond - 60e6 / 360) / (60e6 / 360) < 0.001, String(p.neededBytesPerSecond));
  assert.ok(Math.abs(p.worstLagSeconds - 300) < 1);
  // Just below it the RPO is missed; at the average the backlog never drains in time.
  assert.ok(worstLag(bursts(6), p.neededBytesPerSecond * 0.99).lag > 300);
  // An RPO longer than the cycle still needs the average: the backlog must drain between bursts.
  const loose = planLink(bursts(6), 3600);
  assert.ok(loose.neededBytesPerSecond >= 50_000 * 0.99, String(loose.neededBytesPerSecond));
});

test('a steady writer needs its own rate, whatever the RPO', () => {
  const steady: Interval[] = Array.from({ length: 100 }, (_, m) => ({ end: (m + 1) * 60, seconds: 60, bytes: 6e6 }));
  const p = planLink(steady, 900);
  assert.ok(p.neededBytesPerSecond >= 100_000 * 0.99 && p.neededBytesPerSecond <= 100_000 * 1.01, String(p.neededBytesPerSecond));
});

test('offsite plan --trace reads a CSV and prints peak, average and the rate needed', () => {
  const dir = tempDir('plan');
  try {
    const lines = ['time,bytes', '0,0'];
    for (let m = 1; m <= 120; m++) lines.push(`${m * 60},${m % 20 === 11 ? 60e6 : 0}`);
    const file = path.join(dir, 'trace.csv');
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const out = execFileSync(process.execPath, [OFFSITE, 'plan', '--trace', file, '--rpo', '5m'], { encoding: 'utf8' });
    assert.match(out, /peak write rate +8\.0 Mbit\/s/);
    assert.match(out, /average write rate +400 kbit\/s/);
    assert.match(out, /link needed for an RPO of 5 min 0 s: 1\.3 Mbit\/s \(3\.33x the average; worst lag 5 min 0 s/);
    fs.writeFileSync(file, 'time,bytes\n0,0\n60,abc\n');
    assert.throws(() => execFileSync(process.execPath, [OFFSITE, 'plan', '--trace', file, '--rpo', '5m'], { encoding: 'utf8', stdio: 'pipe' }),
      /trace\.csv:3: "60,abc" is not time,bytes/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('trace parsing: header skipped, ISO times, order checked', () => {
  const iv = parseTrace('time,bytes\n2026-11-26T10:00:00Z,0\n2026-11-26T10:01:00Z,600\n', 't');
  assert.deepEqual(iv, [{ end: 60, seconds: 60, bytes: 600 }]);
  assert.throws(() => parseTrace('0,0\n60,1\n30,1\n', 't'), /t:3: time 30 does not come after/);
});
