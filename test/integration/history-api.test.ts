// GET /api/v1/volumes/{v}/history answers from the rows the daemon keeps in memory
// (read from history.csv once, at start), and is limited per address (issue 15,
// item 6): re-reading 30 days of CSV per request took over a second of the event
// loop each, and four clients polling it stalled NBD.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { HISTORY_HEADER } from '../../src/journal/history.js';

const DAYS_30 = 30 * 24 * 60;

interface Row { minute: string; hostBytes: number; records: number; journalUsed: number; journalCapacity: number; backlogBytes: number; mode: string }

function csv(rows: Row[]): string {
  const lines = rows.map((r) => [r.minute, r.hostBytes, r.records, r.journalUsed, r.journalCapacity, r.backlogBytes, r.mode].join(','));
  return [HISTORY_HEADER, ...lines].join('\n') + '\n';
}

test('the history is answered from memory, read once at start, and a burst from one address is refused with 429', async () => {
  const d = await TestDaemon.create({ noStart: true, volumes: { db: { size: '16MiB', peer: 'site-b' } } });
  const start = Date.UTC(2026, 0, 1);
  const seeded: Row[] = Array.from({ length: DAYS_30 }, (_, i) => ({
    minute: new Date(start + i * 60_000).toISOString(), hostBytes: i * 4096, records: i, journalUsed: 64 + i,
    journalCapacity: 8 * 1024 ** 3, backlogBytes: i % 7, mode: i % 1000 === 0 ? 'bitmap' : 'journal',
  }));
  const file = path.join(d.dir, 'state', 'volumes', 'db', 'history.csv');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, csv(seeded));
  await d.start();
  try {
    const url = (q: string): string => `http://127.0.0.1:${d.apiPort}/api/v1/volumes/db/history${q}`;
    const get = async (q: string): Promise<{ status: number; body: { history?: Row[]; error?: string }; retryAfter: string | null }> => {
      const r = await fetch(url(q));
      return { status: r.status, body: (await r.json()) as { history?: Row[] }, retryAfter: r.headers.get('retry-after') };
    };
    const all = await get('?minutes=43200');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.history, seeded, '30 days of rows, as the file had them');
    const day = await get('');
    assert.deepEqual(day.body.history, seeded.slice(-1440), 'the last day by default');

    // The file changes under the daemon (or goes): the answer stays what the daemon
    // read and recorded. Before, every request parsed the file again.
    fs.writeFileSync(file, csv(seeded.slice(0, 10).map((r) => ({ ...r, hostBytes: 1 }))));
    assert.deepEqual((await get('?minutes=43200')).body.history, seeded);
    fs.rmSync(file);
    assert.deepEqual((await get('?minutes=5')).body.history, seeded.slice(-5));

    // Over the burst from one address: 429, with when to come back, logged once.
    await new Promise((r) => setTimeout(r, 3500)); // the allowance refills
    const burst = await Promise.all(Array.from({ length: 20 }, () => get('?minutes=60')));
    const ok = burst.filter((r) => r.status === 200).length;
    const refused = burst.filter((r) => r.status === 429);
    assert.ok(ok >= 6 && ok <= 8, `${ok} of 20 answered`);
    assert.equal(refused.length, 20 - ok);
    assert.match(refused[0]!.body.error!, /too many history requests from 127\.0\.0\.1: at most 2 a second/);
    assert.ok(Number(refused[0]!.retryAfter) >= 1);
    await new Promise((r) => setTimeout(r, 300));
    const lines = d.log.split('\n').filter((l) => l.includes('refused GET /api/v1/volumes/db/history from 127.0.0.1'));
    assert.equal(lines.length, 1, 'said once, then counted');
    // The limit is per address and refills: a second later the same client is answered.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await get('?minutes=1')).status, 200);
    // Other routes are not limited by it.
    assert.equal((await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`)).status, 200);
  } finally {
    await d.stop();
  }
});
