// OFFSITE-MIB in code (src/snmp/mib.ts) against mibs/OFFSITE-MIB.txt as net-snmp's
// MIB parser reads it, and the mapping from the node's status to MIB values and
// notification varbinds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import snmp from 'net-snmp';
import type { NodeStatus, VolumeStatus } from '../../src/contract/status.js';
import {
  GROUP_COLUMNS, NODE_SCALARS, NOTIFICATION_TYPES, OFFSITE_MIB, VOLUME_COLUMNS, counter64, counter64Value, displayString,
  groupValues, instanceOid, nodeValues, systemValues, volumeValues,
} from '../../src/snmp/mib.js';
import { wireValue } from '../../src/snmp/agent.js';
import { notificationOf } from '../../src/snmp/notifications.js';
import { engineIdOf } from '../../src/snmp/snmp.js';

const MIB_FILE = new URL('../../../mibs/OFFSITE-MIB.txt', import.meta.url).pathname;

interface StoreProvider {
  name: string; oid: string; scalarType?: number; tableColumns?: Array<{ number: number; name: string; type: number; maxAccess: number }> }
interface Store {
  loadFromFile(f: string): void;
  getModule(n: string): Record<string, { OID?: string; OBJECTS?: string[]; MACRO?: string; 'MAX-ACCESS'?: string }>;
  getProvidersForModule(n: string): StoreProvider[];
}

function store(): Store {
  const s = (snmp as unknown as { createModuleStore(): Store }).createModuleStore();
  s.loadFromFile(MIB_FILE);
  return s;
}

test('the code\'s OIDs, types and access are the MIB file\'s', () => {
  const s = store();
  const mod = s.getModule('OFFSITE-MIB');
  assert.equal(mod.offsiteMIB!.OID, OFFSITE_MIB);
  const providers = s.getProvidersForModule('OFFSITE-MIB');
  for (const sc of NODE_SCALARS) {
    const p = providers.find((x) => x.name === sc.name);
    assert.ok(p, sc.name);
    assert.equal(`${p.oid}.0`, instanceOid(sc.name, 1), sc.name);
    assert.equal(p.scalarType, wireValue({ kind: sc.kind, value: 0 }).type, sc.name);
  }
  const table = providers.find((x) => x.name === 'offsiteVolumeEntry')!;
  assert.deepEqual(table.tableColumns!.map((c) => c.name), ['offsiteVolumeIndex', ...VOLUME_COLUMNS.map((c) => c.name)]);
  for (const c of VOLUME_COLUMNS) {
    const m = table.tableColumns!.find((x) => x.number === c.id)!;
    assert.equal(m.name, c.name);
    assert.equal(m.type, wireValue({ kind: c.kind, value: 0 }).type, c.name);
    assert.equal(`${table.oid}.${c.id}.3`, instanceOid(c.name, 3));
    assert.equal(m.maxAccess, c.name === 'offsiteVolumeCheckpointControl' ? 3 : 2, `${c.name} access`);
  }
  const groups = providers.find((x) => x.name === 'offsiteGroupEntry')!;
  assert.deepEqual(groups.tableColumns!.map((c) => c.name), ['offsiteGroupIndex', ...GROUP_COLUMNS.map((c) => c.name)]);
  for (const c of GROUP_COLUMNS) {
    const m = groups.tableColumns!.find((x) => x.number === c.id)!;
    assert.equal(m.name, c.name);
    assert.equal(m.type, wireValue({ kind: c.kind, value: 0 }).type, c.name);
    assert.equal(`${groups.oid}.${c.id}.2`, instanceOid(c.name, 2));
    assert.equal(m.maxAccess, 2, `${c.name} is read-only`);
  }
  for (const t of Object.values(NOTIFICATION_TYPES)) {
    const m = mod[t.name]!;
    assert.equal(m.MACRO, 'NOTIFICATION-TYPE');
    assert.equal(m.OID, `${OFFSITE_MIB}.0.${t.id}`);
    assert.deepEqual(m.OBJECTS, [...t.objects, 'offsiteNotifyText'], t.name);
  }
  assert.equal(mod.offsiteNotifyText!['MAX-ACCESS'], 'accessible-for-notify');
});

function volume(over: Partial<VolumeStatus> = {}): VolumeStatus {
  return {
    name: 'db', role: 'secondary', peer: 'site-a', link: 'connected', backlogBytes: 5_000_000_000, backlogRecords: 3, lagSeconds: 12.6,
    consistent: true, sizeBytes: 1 << 30, tracking: 'replica', journalUsedBytes: 0, journalCapacityBytes: 0, epoch: 1, dirtyBytes: 0,
    hostBytes: 2 ** 40 + 5, wireBytes: 0, verify: null, paused: false, linkRateBytesPerSecond: null, overflows: 0, uuid: 'u', generation: [],
    resyncing: false, resyncLeftBytes: 0, resyncTotalBytes: 0, resyncBytes: 0, resyncSeededBytes: 0, resyncHashBytes: 0,
    resyncRateBytesPerSecond: 0, resyncEtaSeconds: 0,
    checkpoint: { label: 'nightly', createdAt: 1, holdUntil: null, appliedSeq: 9, export: 'db@checkpoint' }, drill: null,
    ...over,
  } as VolumeStatus; // (fields this test does not read may be added to VolumeStatus)
}

test('a volume\'s row: enumerations, truth values, 64-bit byte counts, labels', () => {
  const r = volumeValues(volume());
  assert.deepEqual(r.offsiteVolumeName, { kind: 'string', value: 'db' });
  assert.deepEqual(r.offsiteVolumeRole, { kind: 'integer', value: 2 });
  assert.deepEqual(r.offsiteVolumePeer, { kind: 'string', value: 'site-a' });
  assert.deepEqual(r.offsiteVolumeLinkState, { kind: 'integer', value: 1 });
  assert.deepEqual(r.offsiteVolumeBacklogBytes, { kind: 'counter64', value: 5_000_000_000 });
  assert.deepEqual(r.offsiteVolumeLagSeconds, { kind: 'gauge', value: 13 });
  assert.deepEqual(r.offsiteVolumeConsistent, { kind: 'integer', value: 1 });
  assert.deepEqual(r.offsiteVolumeTracking, { kind: 'integer', value: 4 });
  assert.deepEqual(r.offsiteVolumeCheckpointState, { kind: 'integer', value: 2 });
  assert.deepEqual(r.offsiteVolumeCheckpointLabel, { kind: 'string', value: 'nightly' });
  assert.deepEqual(r.offsiteVolumeHostBytes, { kind: 'counter64', value: 2 ** 40 + 5 });
  assert.deepEqual(r.offsiteVolumeCheckpointControl, { kind: 'integer', value: 4 });

  const p = volumeValues(volume({ role: 'primary', peer: null, link: 'none', tracking: 'bitmap', consistent: false, checkpoint: null, lagSeconds: -1 }));
  assert.equal(p.offsiteVolumeRole.value, 1);
  assert.equal(p.offsiteVolumePeer.value, '');
  assert.equal(p.offsiteVolumeLinkState.value, 3);
  assert.equal(p.offsiteVolumeTracking.value, 3);
  assert.equal(p.offsiteVolumeConsistent.value, 2);
  assert.equal(p.offsiteVolumeCheckpointState.value, 1);
  assert.equal(p.offsiteVolumeCheckpointControl.value, 1);
  assert.equal(p.offsiteVolumeLagSeconds.value, 0);
  assert.equal(volumeValues(volume({ link: 'disconnected' })).offsiteVolumeLinkState.value, 2);
  assert.equal(volumeValues(volume({ drill: { export: 'db@drill', bytesWritten: 0 } })).offsiteVolumeCheckpointState.value, 3);
});

test('a volume\'s history columns: points, bytes past 2^32, the oldest point in Unix seconds, drops; 0 without history', () => {
  const oldest = Date.UTC(2026, 11, 3, 10, 14, 2) + 987; // (ms: rounded down to the second)
  const r = volumeValues(volume({
    history: {
      points: 1234, oldest: { seq: 17, time: oldest }, newest: { seq: 9000, time: oldest + 3_600_000 }, bytes: 6 * 2 ** 30,
      keepSeconds: 86_400, maxBytes: 50 * 2 ** 30, droppedForSize: 3,
    },
  }));
  assert.deepEqual(r.offsiteVolumeHistoryPoints, { kind: 'gauge', value: 1234 });
  assert.deepEqual(r.offsiteVolumeHistoryBytes, { kind: 'counter64', value: 6 * 2 ** 30 });
  assert.deepEqual(r.offsiteVolumeHistoryOldest, { kind: 'unsigned', value: Date.UTC(2026, 11, 3, 10, 14, 2) / 1000 });
  assert.deepEqual(r.offsiteVolumeHistoryDropped, { kind: 'counter', value: 3 });
  const w = wireValue(r.offsiteVolumeHistoryDropped);
  assert.equal(w.type, snmp.ObjectType.Counter32);
  assert.equal(w.value, 3);
  // A history with no point yet, no history (null), a status from before history (absent), a primary.
  const empty = volumeValues(volume({
    history: { points: 0, oldest: null, newest: null, bytes: 0, keepSeconds: null, maxBytes: 1 << 20, droppedForSize: 0 },
  }));
  for (const v of [empty, volumeValues(volume({ history: null })), volumeValues(volume()), volumeValues(volume({ role: 'primary', history: null }))]) {
    assert.deepEqual(
      [v.offsiteVolumeHistoryPoints.value, v.offsiteVolumeHistoryBytes.value, v.offsiteVolumeHistoryOldest.value, v.offsiteVolumeHistoryDropped.value],
      [0, 0, 0, 0],
    );
  }
});

test('Counter64 on the wire: minimal big-endian bytes, a zero byte before a set top bit; 2^53-1 survives', () => {
  assert.deepEqual([...counter64(0)], [0]);
  assert.deepEqual([...counter64(127)], [0x7f]);
  assert.deepEqual([...counter64(128)], [0x00, 0x80]);
  assert.deepEqual([...counter64(5_000_000_000)], [0x01, 0x2a, 0x05, 0xf2, 0x00]);
  assert.equal(counter64Value(counter64(Number.MAX_SAFE_INTEGER)), BigInt(Number.MAX_SAFE_INTEGER));
  assert.deepEqual([...counter64(0xffff_ffff_ffff_ffffn)], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  assert.deepEqual([...counter64(-5)], [0]);
  const w = wireValue({ kind: 'counter64', value: 5_000_000_000 });
  assert.equal(w.type, snmp.ObjectType.Counter64);
  assert.equal(counter64Value(w.value as Buffer), 5_000_000_000n);
});

test('DisplayString: at most 255 octets, cut with "..."', () => {
  assert.equal(displayString('short'), 'short');
  const long = displayString('x'.repeat(300));
  assert.equal(long.length, 255);
  assert.ok(long.endsWith('...'));
  assert.ok(Buffer.byteLength(displayString('é'.repeat(200))) <= 255);
});

const status: NodeStatus = { node: 'site-b', version: '0.1.0', uptimeSeconds: 42, volumes: [volume({ name: 'logs' }), volume()] };

test('the node\'s scalars and the system group', () => {
  const n = nodeValues(status, 300);
  assert.deepEqual(n.offsiteNodeName, { kind: 'string', value: 'site-b' });
  assert.deepEqual(n.offsiteNodeUptime, { kind: 'timeticks', value: 4200 });
  assert.deepEqual(n.offsiteNodeVolumeCount, { kind: 'unsigned', value: 2 });
  assert.deepEqual(n.offsiteNodeLagAlarmThreshold, { kind: 'unsigned', value: 300 });
  assert.equal(nodeValues(status, null).offsiteNodeLagAlarmThreshold.value, 0);
  const s = systemValues(status);
  assert.deepEqual(s.sysObjectID, { kind: 'oid', value: OFFSITE_MIB });
  assert.equal(s.sysName.value, 'site-b');
  assert.equal(s.sysUpTime.value, 4200);
  assert.match(String(s.sysDescr.value), /^Offsite 0\.1\.0: .* node site-b$/);
});

test('a notification: its trap OID, the volume\'s row instances in MIB order, then the text', () => {
  const note = notificationOf({ kind: 'linkDown', volume: 'db', text: 'volume db: link to site-a down' }, status, 300)!;
  assert.equal(note.trapOid, `${OFFSITE_MIB}.0.1`);
  assert.deepEqual(note.varbinds, [
    { oid: `${OFFSITE_MIB}.1.2.1.2.2`, kind: 'string', value: 'db' },
    { oid: `${OFFSITE_MIB}.1.2.1.4.2`, kind: 'string', value: 'site-a' },
    { oid: `${OFFSITE_MIB}.1.2.1.5.2`, kind: 'integer', value: 1 },
    { oid: `${OFFSITE_MIB}.1.2.1.6.2`, kind: 'counter64', value: 5_000_000_000 },
    { oid: `${OFFSITE_MIB}.1.3.0`, kind: 'string', value: 'volume db: link to site-a down' },
  ]);
  const lag = notificationOf({ kind: 'lagHigh', volume: 'logs', text: 'x' }, status, 300)!;
  assert.equal(lag.trapOid, `${OFFSITE_MIB}.0.4`);
  assert.deepEqual(lag.varbinds.map((v) => [v.oid, v.value]), [
    [`${OFFSITE_MIB}.1.2.1.2.1`, 'logs'], [`${OFFSITE_MIB}.1.2.1.7.1`, 13], [`${OFFSITE_MIB}.1.2.1.6.1`, 5_000_000_000],
    [`${OFFSITE_MIB}.1.1.5.0`, 300], [`${OFFSITE_MIB}.1.3.0`, 'x'],
  ]);
  assert.equal(notificationOf({ kind: 'linkUp', volume: 'nope', text: '' }, status, null), null);
});

test('the engine ID: enterprise 32473, text format, the node name', () => {
  assert.equal(engineIdOf('site-b'), `80007ed904${Buffer.from('site-b').toString('hex')}`);
  assert.equal(engineIdOf('n'.repeat(63)).length, 10 + 27 * 2);
});

test('a consistency group\'s row: members, role, truth values, the group point past 2^32', () => {
  const r = groupValues({ name: 'erp', members: ['db', 'wal'], role: 'secondary', consistent: false, reason: 'wal is in a resync round',
    groupPoint: 1_796_282_402_123, together: false, lagSeconds: 75.4 });
  assert.deepEqual(r.offsiteGroupName, { kind: 'string', value: 'erp' });
  assert.deepEqual(r.offsiteGroupMembers, { kind: 'string', value: 'db,wal' });
  assert.deepEqual(r.offsiteGroupRole, { kind: 'integer', value: 2 });
  assert.deepEqual(r.offsiteGroupConsistent, { kind: 'integer', value: 2 });
  assert.deepEqual(r.offsiteGroupReason, { kind: 'string', value: 'wal is in a resync round' });
  assert.deepEqual(r.offsiteGroupPoint, { kind: 'counter64', value: 1_796_282_402_123 });
  assert.deepEqual(r.offsiteGroupTogether, { kind: 'integer', value: 2 });
  assert.deepEqual(r.offsiteGroupLagSeconds, { kind: 'gauge', value: 75 });
  const none = groupValues({
    name: 'erp', members: ['db', 'wal'], role: 'mixed', consistent: true, reason: null, groupPoint: null, together: true, lagSeconds: 0,
  });
  assert.deepEqual(
    [none.offsiteGroupRole.value, none.offsiteGroupConsistent.value, none.offsiteGroupReason.value, none.offsiteGroupPoint.value],
    [3, 1, '', 0],
  );
});
