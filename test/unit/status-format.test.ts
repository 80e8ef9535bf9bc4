// The status table's resync column: progress, rate and time left on the primary,
// what the secondary serves meanwhile.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeStatus, VolumeStatus } from '../../src/contract/status.js';
import { resyncCell, unavailableLines, wireCell } from '../../src/cli/status.js';
import { UnavailableVolumes } from '../../src/node/unavailable.js';
import { volumeStatus } from '../helpers/status.js';

const { role: _role, ...base } = volumeStatus('db');

test('no round: a dash', () => {
  assert.equal(resyncCell({ ...base, role: 'primary' }), '-');
});

test('primary mid-round: a bar, the percentage, what is left, the rate and the time left', () => {
  const v: VolumeStatus = { ...base, role: 'primary', resyncing: true, resyncTotalBytes: 100 << 20, resyncLeftBytes: 40 << 20,
    resyncRateBytesPerSecond: 12 << 20, resyncEtaSeconds: 3 };
  assert.equal(resyncCell(v), '[######....] 60% 40 MiB to send, 12 MiB/s, 3 s left');
});

test('primary with a comparison pending, no round open yet (a peer starting again): said so, no empty bar', () => {
  assert.match(resyncCell({ ...base, role: 'primary', resyncing: true }), /pending: to be compared by hash/);
});

test('secondary: what it serves while it receives', () => {
  assert.equal(resyncCell({ ...base, role: 'secondary', resyncing: true }), 'receiving (old image served)');
  assert.match(resyncCell({ ...base, role: 'secondary', resyncing: true, consistent: false }), /receiving first sync/);
});

test('an online verify shows in the same column: bar, differing regions, rate, time left', () => {
  const v: VolumeStatus = {
    ...base, role: 'primary',
    verify: { state: 'running', checkedRegions: 420, totalRegions: 1000, regionSize: 65536, differingRegions: [129, 130], repair: false, message: 'running',
      rateBytesPerSecond: 120 << 20, etaSeconds: 9, elapsedMs: 2000 },
  };
  assert.equal(resyncCell(v), 'verify [####......] 42% 2 differ, 120 MiB/s, 9 s left');
  assert.equal(resyncCell({ ...v, verify: { ...v.verify!, state: 'done' } }), '-');
});

test('the wire column: send rate, record bytes per wire byte, and whether the backlog drains', () => {
  const shipping = {
    compression: 'auto', level: 3, recordBytes: 300 << 20, zeroBytes: 0, compressedInBytes: 300 << 20, compressedOutBytes: 100 << 20, compressionRatio: 2.94,
      coalesce: true, coalescedRecords: 0, coalescedBytes: 0, rttMs: 0.4, ackRttMs: 12, windowBytes: 32 << 20,
      capacityBytesPerSecond: null, batchBytes: 4 << 20,
    hostRateBytesPerSecond: 100 << 10, recordRateBytesPerSecond: 900 << 10, wireRateBytesPerSecond: 310 << 10, drainSeconds: 240,
  };
  assert.equal(wireCell({ ...base, role: 'primary', backlogBytes: 1 << 30, shipping }), '310 KiB/s x2.9, drains in 4 min 0 s');
  assert.equal(wireCell({ ...base, role: 'primary', backlogBytes: 1 << 30, shipping: { ...shipping, drainSeconds: null } }), '310 KiB/s x2.9, not draining');
  assert.equal(wireCell({ ...base, role: 'primary', shipping }), '310 KiB/s x2.9');
  assert.equal(wireCell({ ...base, role: 'secondary' }), '-');
});

test('a volume set aside says why and what to do; one a reload reopens says so, and that it comes back by itself', () => {
  const u = new UnavailableVolumes();
  u.set('logs', 'volume logs: /srv/logs.img: no such file', 1000);
  u.reopen('db', 'being opened again at a reload with its new path', 5000);
  const s = { node: 'site-a', version: '0', uptimeSeconds: 9, volumes: [], unavailable: u.status(7000) } as unknown as NodeStatus;
  const plain = unavailableLines(s).map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''));
  assert.deepEqual(plain, [
    'volume logs NOT SERVED: it did not open 6 s ago: volume logs: /srv/logs.img: no such file; put that right and run `offsite reload`',
    'volume db REOPENING: being opened again at a reload with its new path (not served for 2 s; served again once it opens)',
  ]);
  // A reopen that fails is set aside as any other, counted from its own start.
  u.set('db', 'volume db: /srv/db2.img: Permission denied', 6000);
  assert.deepEqual(u.status(7000).find((x) => x.name === 'db'),
    { name: 'db', error: 'volume db: /srv/db2.img: Permission denied', forSeconds: 2, attempts: 1, opening: false });
});
