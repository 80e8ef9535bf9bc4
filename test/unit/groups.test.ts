// Consistency groups (docs/GROUPS.md): the group point record's bytes, the primary's
// cadence, the secondary's coordinator and a member receiver's group limit, the config.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as R from '../../src/journal/record.js';
import { GroupPointCadence } from '../../src/group/cadence.js';
import { groupLimit } from '../../src/group/limit.js';
import { pastGroupPoint } from '../../src/group/past-point.js';
import { Receiver, type ReceivedRecord, type ReceiverAction } from '../../src/secondary/receiver.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { InvariantError } from '../../src/invariants/assert.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('a group point is a barrier with flag 8 and its number in the offset field, byte by byte', () => {
  // Group point 1764720000123 (0x019ae1823c7b), seq 9, epoch 4, at time 1764720000123.
  const fixed = hex(`4f464a52 01 04 0800
    0900000000000000
    0400000000000000
    7b3c82e19a010000
    00000000 00000000
    7b3c82e19a010000
    00000000
    b4c87db9`);
  const b = R.encodeRecordHeader({
    kind: R.RecordKind.Barrier, flags: R.FLAG_GROUP_POINT, seq: 9, epoch: 4, offset: 1764720000123, length: 0, time: 1764720000123,
  }, null);
  assert.deepEqual(b, fixed);
  const d = R.decodeRecordHeader(fixed);
  assert.ok(d.ok);
  assert.equal(d.header.kind, R.RecordKind.Barrier);
  assert.equal(R.groupPointOf(d.header), 1764720000123);
  // A receiver that ignores the flag sees a plain barrier (kind 4, no payload): the same decode.
  assert.equal(d.payloadLength, 0);
  // A plain barrier is no group point; neither is a write whose offset happens to be a number.
  assert.equal(R.groupPointOf({ kind: R.RecordKind.Barrier, flags: 0, offset: 0 }), null);
  assert.equal(R.groupPointOf({ kind: R.RecordKind.Write, flags: R.FLAG_GROUP_POINT, offset: 5 }), null);
  assert.equal(R.groupPointOf({ kind: R.RecordKind.Barrier, flags: R.FLAG_GROUP_POINT | R.FLAG_ROUND_END, offset: 7 }), 7);
});

test('the cadence: a point every interval while there are records, sooner on a flush (rate-limited) or past the epoch bound', () => {
  const c = new GroupPointCadence(0, 0, 1000, 100);
  assert.equal(c.due(500, true), false);
  assert.equal(c.due(1000, false), false, 'nothing new: no point');
  assert.equal(c.due(1000, true), true);
  assert.equal(c.made(1000), 1000);
  c.ask('flush');
  assert.equal(c.due(1050, true), false, 'a flush asks, but not within the minimum gap');
  assert.equal(c.due(1100, true), true);
  assert.equal(c.made(1100), 1100);
  c.ask('bytes');
  assert.equal(c.due(1101, true), true, 'past the epoch bound: at once');
  // Numbers grow even when the clock does not (or goes back).
  assert.equal(c.made(1100), 1101);
  assert.equal(c.made(900), 1102);
  assert.equal(c.last, 1102);
});

test('the coordinator: the newest point every member holds, never backwards, and why not consistent', () => {
  const db = { appliedPoint: 10, points: [11, 12, 13], inRound: false };
  const wal = { appliedPoint: 10, points: [11, 12], inRound: false };
  let v = groupLimit([{ name: 'db', view: db }, { name: 'wal', view: wal }], null);
  assert.equal(v.limit, 12);
  assert.equal(v.together, false);
  assert.equal(v.notConsistentBecause, null);
  // wal has nothing newer than what it stands at: the limit stays where the members can all be.
  v = groupLimit([
    { name: 'db', view: { appliedPoint: 12, points: [13] , inRound: false } },
    { name: 'wal', view: { appliedPoint: 12, points: [], inRound: false } },
  ], 12);
  assert.equal(v.limit, 12);
  assert.equal(v.together, true);
  // Never backwards: a current limit newer than any common point stays.
  v = groupLimit([
    { name: 'db', view: { appliedPoint: 12, points: [], inRound: false } },
    { name: 'wal', view: { appliedPoint: null, points: [], inRound: true } },
  ], 12);
  assert.equal(v.limit, 12);
  assert.match(v.notConsistentBecause!, /wal is in a resync round/);
  // A point one member missed (bitmap mode at the primary) is skipped for the next common one.
  v = groupLimit([
    { name: 'a', view: { appliedPoint: 1, points: [2, 3], inRound: false } },
    { name: 'b', view: { appliedPoint: 1, points: [3], inRound: false } },
  ], 1);
  assert.equal(v.limit, 3);
  v = groupLimit([
    { name: 'a', view: { appliedPoint: null, points: [], inRound: false } },
    { name: 'b', view: { appliedPoint: null, points: [5], inRound: false } },
  ], null);
  assert.equal(v.limit, null);
  assert.match(v.notConsistentBecause!, /a, b stand at no group point/);
});

const rec = (seq: number, o: Partial<ReceivedRecord> = {}): ReceivedRecord => ({ seq, barrier: false, size: 100, ...o });
const applies = (as: ReceiverAction[]): Array<[number, number]> =>
  as.filter((a) => a.type === 'apply').map((a) => [(a as { fromSeq: number }).fromSeq, (a as { toSeq: number }).toSeq]);

test('a past group point: the newest at or before the time that every member lists, or why none, naming each member\'s oldest', () => {
  const t = (s: number): number => Date.UTC(2026, 11, 3, 10, 0, s);
  const db = [
    { seq: 10, record: 10, time: t(1), groupPoint: 5 }, { seq: 12, record: 12, time: t(2) },
    { seq: 14, record: 14, time: t(3), groupPoint: 6 }, { seq: 20, record: 20, time: t(5), groupPoint: 8 }];
  // wal's history thinned point 6 away and has 7, which db lacks.
  const wal = [
    { seq: 3, record: 3, time: t(1), groupPoint: 5 }, { seq: 7, record: 7, time: t(4), groupPoint: 7 }, { seq: 9, record: 9, time: t(5), groupPoint: 8 }];
  const at4 = pastGroupPoint([{ name: 'db', points: db }, { name: 'wal', points: wal }], t(4));
  assert.equal(at4.point, 5, 'not 6 (wal lacks it) nor 7 (db lacks it)');
  assert.deepEqual([...at4.members], [['db', db[0]], ['wal', wal[0]]]);
  assert.equal(at4.time, t(1));
  assert.equal(pastGroupPoint([{ name: 'db', points: db }, { name: 'wal', points: wal }], t(9)).point, 8);
  assert.throws(() => pastGroupPoint([{ name: 'db', points: db }, { name: 'wal', points: wal.slice(1) }], t(4)),
    { message: 'no group point at or before 2026-12-03T10:00:04.000Z is in the history of every member ' +
      '(db\'s oldest is group point 5 of 2026-12-03T10:00:01.000Z; wal\'s oldest is group point 7 of 2026-12-03T10:00:04.000Z)' });
  assert.throws(() => pastGroupPoint([{ name: 'db', points: db }, { name: 'wal', points: [] }], t(9)), /wal holds no group point yet/);
  assert.throws(() => pastGroupPoint([{ name: 'db', points: db }, { name: 'wal', points: null }], t(9)),
    /^Error: wal keeps no history, so the group has no past point \(set history: on every member/);
});

test('a member receiver applies only to group points, and only up to the group limit', () => {
  const r = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 }, { group: true });
  r.handle({ type: 'up' });
  // 1 write, 2 host barrier, 3 group point 100, 4 write, 5 group point 101, 6 write, 7 host barrier
  r.handle({
    type: 'records',
    records: [rec(1), rec(2, { barrier: true }), rec(3, { barrier: true, groupPoint: 100 }), rec(4), rec(5, { barrier: true, groupPoint: 101 }), rec(6),
      rec(7, { barrier: true })],
  });
  const synced = r.handle({ type: 'synced', upTo: 7, asked: 7 });
  assert.deepEqual(applies(synced), [], 'no limit yet: nothing applied, not even the host barriers');
  assert.deepEqual(r.memberView, { appliedPoint: null, points: [100, 101], inRound: false });
  assert.deepEqual(applies(r.handle({ type: 'groupLimit', point: 100 })), [[1, 3]]);
  r.handle({ type: 'applied', upTo: 3 });
  assert.equal(r.appliedPoint, 100);
  assert.equal(r.newestExposable, 3);
  assert.deepEqual(applies(r.handle({ type: 'groupLimit', point: 101 })), [[4, 5]]);
  const after = r.handle({ type: 'applied', upTo: 5 });
  assert.deepEqual(applies(after), [], 'the host barrier at 7 is not exposed on its own');
  assert.equal(r.appliedPoint, 101);
  assert.deepEqual(r.memberView, { appliedPoint: 101, points: [], inRound: false });
});

test('a member receiver whose apply would pass the group limit trips invariant 10', () => {
  const r = new Receiver({ logged: 0, logDurable: 0, applied: 0, lastBarrier: 0 }, { group: true });
  r.handle({ type: 'up' });
  r.handle({ type: 'records', records: [rec(1), rec(2, { barrier: true, groupPoint: 5 }), rec(3), rec(4, { barrier: true, groupPoint: 6 })] });
  r.handle({ type: 'synced', upTo: 4, asked: 4 });
  // A planted bug: the receiver's choice ignores the limit.
  const proto = Receiver.prototype as unknown as { exposable: () => number };
  const orig = proto.exposable;
  proto.exposable = function (): number { return 4; };
  try {
    assert.throws(() => r.handle({ type: 'groupLimit', point: 5 }),
      (e: unknown) => e instanceof InvariantError && /passes the group's limit \(group point 5\)/.test(e.message));
  } finally {
    proto.exposable = orig;
  }
});

test('after a restart a member knows the group point it stands at, from its log or its group-point file', () => {
  const fromLog = new Receiver({
    logged: 9, logDurable: 9, applied: 5, lastBarrier: 9, barriers: [9], groupPoints: [{ seq: 5, point: 50 }, { seq: 9, point: 51 }],
  }, { group: true });
  assert.deepEqual(fromLog.memberView, { appliedPoint: 50, points: [51], inRound: false });
  const fromFile = new Receiver({ logged: 5, logDurable: 5, applied: 5, lastBarrier: 0, appliedPoint: { seq: 5, point: 50 } }, { group: true });
  assert.equal(fromFile.appliedPoint, 50);
  const stale = new Receiver({ logged: 7, logDurable: 7, applied: 7, lastBarrier: 0, appliedPoint: { seq: 5, point: 50 } }, { group: true });
  assert.equal(stale.appliedPoint, null, 'a file about another seq says nothing of where the replica stands');
});

const base = `node: site-b
state: ./state
nbd: 127.0.0.1:10809
peers:
  site-a: { address: 127.0.0.1:7700 }
  site-c: { address: 127.0.0.1:7701 }
volumes:
  db: { path: ./db.img, size: 1GiB, role: secondary, peer: site-a }
  wal: { path: ./wal.img, size: 1GiB, role: secondary, peer: site-a }
  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-a }
  other: { path: ./other.img, size: 1GiB, role: secondary, peer: site-c }
  plain: { path: ./plain.img, size: 1GiB, role: primary }
`;

function err(text: string): string {
  try {
    parseConfig(text, 'offsite.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  assert.fail('expected a ConfigError');
}

test('groups: in the config, and every wrong group is an error at its line', () => {
  const c = parseConfig(`${base}groups:\n  erp: [db, wal]\n`, 'offsite.yaml');
  assert.deepEqual(c.groups, [{ name: 'erp', members: ['db', 'wal'] }]);
  assert.deepEqual(parseConfig(base, 'offsite.yaml').groups, []);
  assert.equal(err(`${base}groups:\n  erp: [db, nope]\n`), 'offsite.yaml:14: groups.erp: no volume named "nope" under volumes:');
  assert.equal(err(`${base}groups:\n  erp: [db, wal]\n  crm: [wal, db]\n`),
    'offsite.yaml:15: groups.crm: volume wal is already in group erp; a volume is in at most one group');
  assert.equal(err(`${base}groups:\n  erp: [db, logs]\n`),
    'offsite.yaml:14: groups.erp: volume logs is primary, db is secondary; a group\'s members have one role');
  assert.equal(err(`${base}groups:\n  erp: [db, other]\n`),
    'offsite.yaml:14: groups.erp: volume other replicates with site-c, db with site-a; a group\'s members share one peer');
  assert.equal(err(`${base}groups:\n  erp: [db, plain]\n`),
    'offsite.yaml:14: groups.erp: volume plain has no peer; a group\'s members replicate (volumes.plain.peer)');
  assert.equal(err(`${base}groups:\n  db: [wal, other]\n`), 'offsite.yaml:14: groups.db: a volume is named db too; a group needs a name of its own');
  assert.equal(err(`${base}groups:\n  erp: [db]\n`), 'offsite.yaml:14: groups.erp: a group has at least two volumes');
  assert.match(err(`${base}groups:\n  erp: [db, db]\n`), /groups\.erp: a volume is listed twice/);
});

test('actions on a group: a member alone is refused naming the group; a member\'s schedule and a group hold act on the group', async () => {
  const { RoleChanges } = await import('../../src/node/roles.js');
  const { ActionRefused } = await import('../../src/contract/actions.js');
  const { silentLogger } = await import('../../src/log/log.js');
  const erp = { name: 'erp', members: ['db', 'wal'] };
  const cfg = (name: string, checkpoints: unknown[] = []) => ({ name, peer: 'site-a', checkpoints });
  const cp = (volume: string) => ({ label: 'nightly', createdAt: 0, holdUntil: 1000, appliedSeq: 7, group: 'erp', groupPoint: 42, volume });
  const daemon = {
    config: { node: 'site-b' },
    entries: [
      { config: cfg('db', [{ cron: '*/5 * * * *', hold: 600, label: 'five' }]), role: 'secondary', replica: { checkpoint: cp('db') } },
      { config: cfg('wal'), role: 'secondary', replica: { checkpoint: cp('wal') } },
    ],
    groups: { group: (n: string) => (n === 'erp' ? erp : null), groupOf: (v: string) => (erp.members.includes(v) ? erp : null) },
  } as unknown as import('../../src/node/roles.js').RoleHost;
  const roles = new RoleChanges(daemon, silentLogger);
  for (const [what, call] of [
    ['checkpoint create', () => roles.createCheckpoint('db', {})],
    ['checkpoint release', () => roles.releaseCheckpoint('wal')],
    ['drill start', () => roles.startDrill('db')],
    ['promote', () => roles.promote('wal', {})],
    ['demote', () => roles.demote('db', {})],
  ] as const) {
    await assert.rejects(call(),
      (e: unknown) => e instanceof ActionRefused && e.reason === 'conflict' && new RegExp(`consistency group erp .*offsite ${what} erp`).test(e.message), what);
  }
  const asked: string[] = [];
  roles.createCheckpoint = (name) => { asked.push(`create ${name}`); return Promise.resolve({ volume: name, message: '' }); };
  roles.releaseCheckpoint = (name) => { asked.push(`release ${name}`); return Promise.resolve({ volume: name, message: '' }); };
  // The group's hold ends: released once, on the group, not member by member.
  roles.tick(new Date(2026, 10, 26, 10, 1).getTime());
  assert.deepEqual(asked, ['release erp']);
  // db's schedule fires: the checkpoint is the group's (both members hold none now).
  (daemon.entries[0]!.replica as { checkpoint: unknown }).checkpoint = null;
  (daemon.entries[1]!.replica as { checkpoint: unknown }).checkpoint = null;
  roles.tick(new Date(2026, 10, 26, 10, 5).getTime());
  assert.deepEqual(asked, ['release erp', 'create erp']);
});

test('offsite status prints a line per group', async () => {
  const { groupLines } = await import('../../src/cli/status.js');
  const lines = groupLines({ node: 'b', version: '', uptimeSeconds: 0, volumes: [], groups: [
    { name: 'erp', members: ['db', 'wal'], role: 'secondary', consistent: true, reason: null, groupPoint: 42, together: true, lagSeconds: 0 },
    {
      name: 'crm', members: ['a', 'b'], role: 'secondary', consistent: false, reason: 'a is in a resync round (or a first sync)',
      groupPoint: null, together: false, lagSeconds: 3,
    },
  ] });
  // eslint-disable-next-line no-control-regex
  const plain = lines.map((l) => l.replace(/\x1b\[\d+m/g, ''));
  assert.equal(plain[0], 'group erp (db, wal), secondary: consistent; group point 42 (every member there); lag 0 s');
  assert.equal(plain[1], 'group crm (a, b), secondary: not consistent: a is in a resync round (or a first sync); no group point yet; lag 3 s');
});
