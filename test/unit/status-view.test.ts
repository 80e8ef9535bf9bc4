// `offsite status` at a hundred volumes: the summary line, name patterns, --lagging and --sort.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeStatus, VolumeStatus } from '../../src/contract/status.js';
import { volumeStatus } from '../helpers/status.js';
import { formatStatus, selectVolumes, summaryLine } from '../../src/cli/status.js';

const vol = volumeStatus;

const fleet: NodeStatus = {
  node: 'site-a', version: '0.1.0', uptimeSeconds: 3600,
  volumes: [
    ...Array.from({ length: 96 }, (_, i) => vol(`srv${String(i).padStart(2, '0')}`, { lagSeconds: 0.2 })),
    vol('erp-db', { lagSeconds: 250, backlogBytes: 300 << 20 }),
    vol('erp-log', { lagSeconds: 30, backlogBytes: 900 << 20 }),
    vol('mail', { link: 'disconnected', lagSeconds: 5 }),
    vol('files', { role: 'secondary', resyncing: true }),
  ],
};

test('the summary line counts what needs attention and names the worst lag', () => {
  assert.equal(summaryLine(fleet), '100 volumes (99 primary, 1 secondary): 1 link down, 1 resyncing; backlog 1.2 GiB in all; worst lag erp-db 4 min 10 s');
  assert.match(formatStatus(fleet).split('\n')[0]!, /^node site-a, up 1 h 0 min; 100 volumes/);
});

test('--lagging shows only volumes needing attention, and says how many are hidden', () => {
  const names = (xs: VolumeStatus[]): string[] => xs.map((v) => v.name);
  assert.deepEqual(names(selectVolumes(fleet, { names: [], laggingOver: 60, sort: 'name' })), ['erp-db', 'mail', 'files']);
  assert.deepEqual(names(selectVolumes(fleet, { names: [], laggingOver: 10, sort: 'lag' })), ['erp-db', 'erp-log', 'mail', 'files']);
  const out = formatStatus(fleet, { names: [], laggingOver: 60, sort: 'lag' }).split('\n');
  assert.equal(out.length, 1 + 1 + 3 + 1);
  assert.match(out.at(-1)!, /^\(97 more not shown: nothing needs attention there\)$/);
});

test('names and patterns; sorting worst first by backlog', () => {
  const names = (xs: VolumeStatus[]): string[] => xs.map((v) => v.name);
  assert.deepEqual(names(selectVolumes(fleet, { names: ['erp*'], laggingOver: null, sort: 'backlog' })), ['erp-log', 'erp-db']);
  assert.deepEqual(names(selectVolumes(fleet, { names: ['mail', 'srv0?'], laggingOver: null, sort: 'name' })).length, 11);
  assert.match(formatStatus(fleet, { names: ['nope'], laggingOver: null, sort: 'name' }), /no volume matches/);
});

test('an ISCSI column only when the node serves iSCSI', () => {
  assert.doesNotMatch(formatStatus(fleet), /ISCSI/);
  const withIscsi: NodeStatus = {
    ...fleet,
    volumes: [vol('db', { iscsi: { target: 'iqn.x:db', lun: 0, sessions: [{ initiator: 'iqn.h', address: '10.0.0.5:1' }], exports: [] } })],
  };
  const out = formatStatus(withIscsi);
  assert.match(out, /ISCSI/);
  assert.match(out, /1 session\b/);
  assert.match(out.split('\n')[0]!, /: 1 iSCSI session$/);
});

test('a primary with two secondaries: both in the PEER column, a line for each, and a detached one needs attention', () => {
  const peer = vol('x').peers[0]!;
  const erp = vol('erp', {
    peers: [
      { ...peer, name: 'site-b', ackedSeq: 900 },
      { ...peer, name: 'site-c', link: 'disconnected', detached: true, backlogBytes: 12 << 20, lagSeconds: 182, ackedSeq: 412 },
    ],
  });
  const node: NodeStatus = { ...fleet, volumes: [vol('quiet'), erp] };
  const out = formatStatus(node).split('\n');
  const row = out.findIndex((l) => l.startsWith('erp '));
  assert.match(out[row]!, /^erp\s+primary\s+1\.0 GiB\s+site-b,site-c\s+connected/);
  assert.equal(out[row + 1], '  to site-b: connected; backlog 0 B, lag 0 s, acked record 900');
  assert.equal(out[row + 2], '  to site-c: disconnected, detached (its own bitmap); backlog 12 MiB, lag 3 min 2 s, acked record 412');
  // One peer: no line under the row.
  assert.ok(out[out.findIndex((l) => l.startsWith('quiet ')) + 1]!.startsWith('erp '));
  // site-b is current and the volume's own figures are site-b's, but site-c needs the operator.
  assert.deepEqual(selectVolumes(node, { names: [], laggingOver: 60, sort: 'name' }).map((v) => v.name), ['erp']);
});
