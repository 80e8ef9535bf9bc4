// A burst on many volumes of one pair stays within the node's memory budget (issue 18
// item 2, src/memory/budget.ts): 24 volumes each given 8 MiB at once. Before the
// budget every volume read its whole backlog into the window at once (up to 32 MiB a
// volume), the secondary buffered every frame the link brought, and each volume's
// history held 30 days of empty rows: site-a peaked at 443 MiB RSS (site-b 177) on
// this machine. Now the batches in flight, the frames buffered and the applies draw
// from one 64 MiB budget, and freed batches leave the RSS: 193 and 177 (235-248 and 195-200 with
// the catch-up's reads of a whole batch at once; 301-305 on site-a while a read whose
// batch ended early stayed alive whole behind its few records). The bound is generous (a
// loaded machine slows the drain, it does not add memory); no timing is asserted.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { test } from 'node:test';
import { burst, sampleRss, startFleet } from '../helpers/fleet.js';
import { must } from '../helpers/run.js';

const MiB = 1 << 20;
const NAMES = Array.from({ length: 24 }, (_, i) => `v${i + 1}`);
/** Each daemon's peak RSS through the burst must stay under this. */
const BOUND = 300 * MiB;

test('24 volumes given a burst at once: each daemon stays under 300 MiB RSS, and every replica is identical', { timeout: 240_000 }, async () => {
  const p = await startFleet({ volumes: NAMES.map((name) => ({ name })), size: '64MiB', journal: '256MiB' });
  try {
    await p.drained(120_000);
    const source = `${p.a.dir}/random.bin`;
    fs.writeFileSync(source, crypto.randomBytes(8 * MiB));
    const rss = sampleRss(p);
    await burst(p.a, NAMES, 8 * MiB, source);
    await p.drained(180_000);
    const peak = await rss.stop();
    const said = `peak RSS site-a ${(peak.a / MiB).toFixed(0)} MiB, site-b ${(peak.b / MiB).toFixed(0)} MiB`;
    assert.ok(peak.a < BOUND, `site-a: ${said}`);
    assert.ok(peak.b < BOUND, `site-b: ${said}`);
    for (const n of NAMES.slice(0, 3)) {
      await must('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', `${p.a.dir}/${n}.img`, `${p.b.dir}/${n}.img`]);
    }
    console.log(said);
  } finally {
    await p.stop();
  }
});
