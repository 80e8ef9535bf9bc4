// libiscsi's conformance suite (iscsi-test-cu, the ALL family of 230 tests) against a
// daemon's replicated volume over iSCSI. The bar (docs/ISCSI.md, "Conformance"): at
// least 190 passed and no more failures than the two documented there, each explained.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { run, tempDir } from '../helpers/run.js';

const SCRIPT = new URL('../../../scripts/iscsi-conformance.js', import.meta.url).pathname;
/** The failures docs/ISCSI.md records and explains. */
const DOCUMENTED_FAILURES = ['GetLBAStatus.UnmapSingle', 'Reserve6.LUNReset'];

test('iscsi-test-cu: at least 190 passed, no failure beyond the documented ones', async () => {
  const json = path.join(tempDir('conformance'), 'result.json');
  const r = await run(process.execPath, [SCRIPT, '--json', json, '--max-failures', String(DOCUMENTED_FAILURES.length)], { timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { summary, results } = JSON.parse(fs.readFileSync(json, 'utf8')) as {
    summary: { total: number; passed: number; skipped: number; failed: number };
    results: Array<{ suite: string; test: string; result: string }>;
  };
  assert.equal(summary.total, 230, 'the ALL family ran whole');
  assert.ok(summary.passed >= 190, `${summary.passed} passed`);
  const failed = results.filter((x) => x.result === 'failed').map((x) => `${x.suite}.${x.test}`);
  for (const f of failed) assert.ok(DOCUMENTED_FAILURES.includes(f), `${f} failed and is not one of the documented failures`);
});
