// A primary's journal filling is told before it overflows (src/node/journal-fill.ts): once
// past each threshold, again after it fell below half; the message names the fill, each
// peer's link and lag, and what to do.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FillNotices, fillMessage, tellJournalFill } from '../../src/node/journal-fill.js';
import { createLogger } from '../../src/log/log.js';

const GiB = 1024 ** 3;

test('journal fill: told once past 75% and once past 90%, again after it fell below half', () => {
  const n = new FillNotices();
  const at = (pct: number): number | null => n.check('db', (pct / 100) * 8 * GiB, 8 * GiB);
  assert.deepEqual([at(10), at(60), at(74)], [null, null, null]);
  assert.deepEqual([at(75), at(80), at(89)], [0.75, null, null]);
  assert.deepEqual([at(91), at(99), at(60)], [0.9, null, null], 'between half and the threshold: not told again');
  assert.deepEqual([at(49), at(76)], [null, 0.75], 'below half, then past 75% again: told again');
  // A jump past both at once: one notice, at the higher.
  assert.deepEqual([n.check('wal', 0.95 * GiB, GiB), n.check('wal', 0.96 * GiB, GiB)], [0.9, null]);
  assert.equal(at(10), null);
});

test('journal fill: the message says how full, who it waits for, and what to do', () => {
  const msg = fillMessage({
    volume: 'db', used: 6.1 * GiB, capacity: 8 * GiB,
    peers: [{ name: 'site-b', link: 'disconnected', lagMs: (3 * 3600 + 12 * 60) * 1000 }, { name: 'site-c', link: 'connected', lagMs: 0 }],
  });
  assert.equal(msg, 'volume db: journal 6.1 GiB of 8.0 GiB (76%); site-b: link down, 3 h 12 min behind; site-c: linked. ' +
    'Full, it overflows into the dirty bitmap and the order of the writes is kept no more until a resync: raise its journal: ' +
    'in the config and `offsite reload` (no restart), or bring the link back');
  // A link that is up but does not carry the volume (a conflict of its roles) is no reason to wait for the link.
  const unpaired = [{ name: 'site-b', link: 'connected', lagMs: 60_000, conflict: 'split-brain' }];
  assert.match(fillMessage({ volume: 'db', used: 6.1 * GiB, capacity: 8 * GiB, peers: unpaired }),
    /; site-b: linked, but the volume not paired \(split-brain: the status says what to do\), 1 min 0 s behind\. Full/);
  const lines: string[] = [];
  const log = createLogger({ format: 'json', destination: { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream });
  const n = new FillNotices();
  const figures = { volume: 'db', used: 7.3 * GiB, capacity: 8 * GiB, peers: [] };
  tellJournalFill(n, [figures], log);
  tellJournalFill(n, [figures], log);
  assert.equal(lines.length, 1, 'told once');
  assert.match(lines[0]!, /"level":"?(40|warn)"?.*journal 7\.3 GiB of 8\.0 GiB \(91%\)\. Full/);
});
