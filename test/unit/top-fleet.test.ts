// `offsite top` at a hundred volumes: a compact list, worst first, the selected volume's panel.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeStatus } from '../../src/contract/status.js';
import { volumeStatus } from '../helpers/status.js';
import { nextSelection, renderTop } from '../../src/cli/top.js';

const vol = volumeStatus;

const fleet: NodeStatus = {
  node: 'site-a', version: '0.1.0', uptimeSeconds: 60,
  volumes: [...Array.from({ length: 98 }, (_, i) => vol(`srv${i}`)), vol('erp', { lagSeconds: 400 }), vol('mail', { link: 'disconnected', lagSeconds: 90 })],
};

test('a few volumes: a panel each', () => {
  const lines = renderTop({ ...fleet, volumes: fleet.volumes.slice(0, 2) }, new Map(), 0, 200, 50);
  assert.equal(lines.filter((l) => /^srv\d+ {2}1\.0 GiB/.test(l)).length, 2);
});

test('a hundred volumes on 40 rows: the worst volume\'s panel, then one line each, worst first, within the screen', () => {
  const lines = renderTop(fleet, new Map(), 0, 200, 40);
  assert.ok(lines.length <= 40, `${lines.length} lines`);
  assert.match(lines[1]!, /^100 volumes/);
  assert.match(lines[3]!, /^erp {2}1\.0 GiB/);
  const list = lines.filter((l) => /^[> ] \S+ +primary/.test(l));
  assert.match(list[0]!, /^> erp /);
  assert.match(list[1]!, /^ {2}mail /);
  assert.match(lines.at(-1)!, /… \d+ more/);
});

test('the selection moves through the worst-first order and wraps', () => {
  assert.equal(nextSelection(fleet, 'erp', 1), 'mail');
  assert.equal(nextSelection(fleet, 'erp', -1), 'srv97');
  const lines = renderTop(fleet, new Map(), 0, 200, 40, 'mail');
  assert.match(lines[3]!, /^mail {2}1\.0 GiB/);
  assert.ok(lines.some((l) => /^> mail /.test(l)));
});

test('consistency groups: a line each under the summary, saying whether the members come from one moment and why not', () => {
  const s: NodeStatus = {
    ...fleet, volumes: [vol('db', { role: 'secondary' }), vol('wal', { role: 'secondary', resyncing: true })],
    groups: [{
      name: 'erp', members: ['db', 'wal'], role: 'secondary', consistent: false, reason: 'wal is in a resync round',
      groupPoint: 1201, together: false, lagSeconds: 75,
    }],
  };
  const lines = renderTop(s, new Map(), 0, 300, 50);
  const g = lines.find((l) => l.includes('group erp'));
  assert.ok(g, lines.join('\n'));
  assert.match(g, /group erp \(db, wal\), secondary: .*not consistent: wal is in a resync round.*; group point 1201; lag 1 min 15 s/);
  assert.ok(lines.indexOf(g) < lines.findIndex((l) => /^db /.test(l)), 'groups come before the volumes');
  assert.equal(renderTop(fleet, new Map(), 0, 300, 50).filter((l) => l.includes('group ')).length, 0, 'no group line without groups');
});

test('a secondary keeping history: its window in the panel, and a checkpoint of a past point says which', () => {
  const t = Date.parse('2026-12-03T10:00:00Z');
  const v = vol('db', {
    role: 'secondary',
    history: {
      points: 120, oldest: { seq: 7, time: t }, newest: { seq: 900, time: t + 3600_000 }, bytes: 3 << 20, keepSeconds: 86400, maxBytes: 1 << 30,
      droppedForSize: 2,
    },
    checkpoint: { label: 'before', createdAt: t + 7200_000, holdUntil: null, appliedSeq: 7, export: 'db@checkpoint', point: { seq: 7, time: t } },
  });
  const lines = renderTop({ ...fleet, volumes: [v] }, new Map(), 0, 200, 50);
  assert.ok(lines.includes('  history 120 points back to 2026-12-03T10:00:00, 3.0 MiB of 1.0 GiB, 2 dropped at its max'), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('  checkpoint "before" of the point at 2026-12-03T10:00:00 held since 2026-12-03T12:00:00')), lines.join('\n'));
});
