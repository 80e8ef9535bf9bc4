// History through kill -9 of the secondary while it applies and saves (docs/HISTORY.md,
// invariant 8): the primary writes and flushes in a loop (test/helpers/flush-writer.ts:
// any image says how many of the writer's writes it holds), the secondary is killed
// three times mid-stream and started again, and afterwards every restore point sampled
// from `offsite history` opens (as db@checkpoint --at its time) to a flush point of the
// primary (an even number of writes, no torn block), later points to later images, and
// the newest to the replica itself.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startPair } from '../helpers/pair.js';
import { sleep } from '../helpers/run.js';
import { cli, exportHash } from '../helpers/cli.js';
import { BLOCK, BLOCKS, prefixParity, startWriter } from '../helpers/flush-writer.js';
import type { HistoryInfo } from '../../src/contract/actions.js';

test('every listed point opens to a flush point of the primary after kill -9 of the secondary mid-apply', async () => {
  const p = await startPair({ size: `${(BLOCK * BLOCKS) >> 20}MiB`, volumeKeysB: 'history: { keep: 24h, max: 1GiB }' });
  try {
    await p.drained(120_000);
    const writer = startWriter(p);
    for (let k = 0; k < 3; k++) {
      await sleep(1500 + 700 * k);
      await p.b.kill9();
      await sleep(300);
      await p.b.start();
    }
    await sleep(1500);
    const writes = await writer.stop();
    assert.ok(writes > 100, `the writer kept the primary busy (${writes} writes)`);
    await p.drained(120_000);

    const listed = await cli(p.b, 'history', 'db', '--json');
    assert.equal(listed.code, 0, listed.stderr);
    const h = JSON.parse(listed.stdout) as HistoryInfo;
    assert.ok(h.points.length >= 10, `${h.points.length} restore points`);
    // Up to 12 points spread over the history, oldest to newest; distinct times only
    // (--at opens the newest point at or before a time).
    const times = [...new Set(h.points.map((x) => x.time))];
    const step = Math.max(1, Math.floor(times.length / 12));
    const sample = times.filter((_, i) => i % step === 0 || i === times.length - 1);
    let last = -1;
    for (const t of sample) {
      const made = await cli(p.b, 'checkpoint', 'create', 'db', '--at', new Date(t).toISOString());
      assert.equal(made.code, 0, made.stderr);
      const img = await prefixParity(p.b.uri('db@checkpoint'), p.b.dir);
      assert.equal(img.parity, 0, `the point of ${new Date(t).toISOString()} is between two flushes of the primary (${img.where})`);
      assert.ok(img.writes >= last, `the point of ${new Date(t).toISOString()} holds ${img.writes} writes, an earlier point ${last}`);
      last = img.writes;
      if (t === times[times.length - 1]) assert.equal(img.hash, await exportHash(p.b.uri('db'), p.b.dir), 'the newest point is the replica');
      assert.equal((await cli(p.b, 'checkpoint', 'release', 'db')).code, 0);
    }
    assert.equal(last, writes, 'the newest point holds every write');
  } finally {
    await p.stop();
  }
});
