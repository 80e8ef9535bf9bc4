// Which status changes become SNMP notifications (src/snmp/notifications.ts): a pure
// function of two looks at the node, a second apart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  START_GRACE_MS, availabilityNotices, baseline, notices, notificationOf, watchUnavailable, watchVolumes, type WatchedUnavailable, type WatchedVolume,
} from '../../src/snmp/notifications.js';
import { splitBrainVolumes } from '../../src/snmp/snmp.js';
import type { NodeStatus, VolumeStatus } from '../../src/contract/status.js';

function vol(over: Partial<WatchedVolume> = {}): WatchedVolume {
  return {
    name: 'db', role: 'primary', peer: 'site-b', link: 'connected', lagSeconds: 0, tracking: 'journal',
    overflows: 0, backlogBytes: 0, journalUsed: 0, journalCapacity: 8 * 2 ** 30, splitBrain: null, ...over,
  };
}

const kinds = (prev: WatchedVolume[], next: WatchedVolume[], lag: number | null = null): string[] =>
  notices(prev, next, lag).map((n) => `${n.kind}:${n.volume}`);

test('nothing changed, nothing sent', () => {
  assert.deepEqual(kinds([vol()], [vol()], 60), []);
  assert.deepEqual(kinds([vol({ link: 'disconnected' })], [vol({ link: 'disconnected' })], 60), []);
});

test('link down and link up, per volume of the link, with the backlog in words', () => {
  const down = notices([vol(), vol({ name: 'logs' })], [vol({ link: 'disconnected', backlogBytes: 3 << 20 }),
    vol({ name: 'logs', link: 'disconnected' })], null);
  assert.deepEqual(down.map((n) => `${n.kind}:${n.volume}`), ['linkDown:db', 'linkDown:logs']);
  assert.equal(down[0]!.text, 'volume db: link to site-b down; backlog 3.0 MiB');
  const up = notices([vol({ link: 'disconnected' })], [vol()], null);
  assert.deepEqual(up.map((n) => [n.kind, n.text]), [['linkUp', 'volume db: link to site-b up']]);
});

test('a volume without a peer never has link notifications', () => {
  assert.deepEqual(kinds([vol({ peer: null, link: 'none' })], [vol({ peer: null, link: 'none' })]), []);
  assert.deepEqual(kinds(baseline([vol({ peer: null, link: 'none' })]), [vol({ peer: null, link: 'none' })]), []);
});

test('after a start: the first link up is sent; a link still down after the grace is sent as down, once', () => {
  const start = baseline([vol({ link: 'disconnected' })]);
  assert.equal(start[0]!.link, 'starting');
  // Within the grace the watcher calls it "starting": no notification.
  assert.deepEqual(kinds(start, [vol({ link: 'starting' })]), []);
  assert.deepEqual(kinds(start, [vol({ link: 'connected' })]), ['linkUp:db']);
  const late = notices(start, [vol({ link: 'disconnected' })], null);
  assert.deepEqual(late.map((n) => n.kind), ['linkDown']);
  assert.match(late[0]!.text, /link to site-b not up 30 s after the start/);
  assert.deepEqual(kinds([vol({ link: 'disconnected' })], [vol({ link: 'disconnected' })]), []);
});

test('watchVolumes: "starting" only within the grace and before the link was ever up', () => {
  const status = [{ name: 'db', role: 'primary', peer: 'site-b', link: 'disconnected', lagSeconds: 1.5, tracking: 'journal', overflows: 0,
    backlogBytes: 7 }] as unknown as VolumeStatus[];
  const look = (starting: boolean, everUp: string[]) => watchVolumes(status, { starting, everUp: new Set(everUp), splitBrain: new Map() })[0]!;
  assert.equal(look(true, []).link, 'starting');
  assert.equal(look(false, []).link, 'disconnected');
  assert.equal(look(true, ['db']).link, 'disconnected');
  assert.equal(look(false, []).lagSeconds, 1.5);
  assert.equal(START_GRACE_MS, 30_000);
  const sb = watchVolumes(status, { starting: false, everUp: new Set(), splitBrain: new Map([['db', 'volume db: split brain: ...']]) })[0]!;
  assert.equal(sb.splitBrain, 'volume db: split brain: ...');
});

test('journal overflow: the switch to bitmap tracking, or a new overflow counted', () => {
  assert.deepEqual(kinds([vol()], [vol({ tracking: 'bitmap', backlogBytes: 1 << 30 })]), ['journalOverflow:db']);
  assert.match(notices([vol()], [vol({ tracking: 'bitmap', backlogBytes: 1 << 30 })], null)[0]!.text,
    /journal overflowed; changes are tracked in the dirty bitmap \(1\.0 GiB to resync\)/);
  assert.deepEqual(kinds([vol({ tracking: 'bitmap', overflows: 1 })], [vol({ tracking: 'bitmap', overflows: 1 })]), []);
  // Overflowed and resynced between two looks: still reported.
  assert.deepEqual(kinds([vol({ overflows: 1 })], [vol({ overflows: 2 })]), ['journalOverflow:db']);
  // A baseline keeps the tracking it found: no overflow notification at a start.
  assert.deepEqual(kinds(baseline([vol({ tracking: 'bitmap', link: 'connected' })]), [vol({ tracking: 'bitmap' })]), ['linkUp:db']);
});

test('lag alarm: raised above the threshold, cleared at or below it, nothing without a threshold', () => {
  assert.deepEqual(kinds([vol({ lagSeconds: 59 })], [vol({ lagSeconds: 61 })], 60), ['lagHigh:db']);
  assert.deepEqual(kinds([vol({ lagSeconds: 61 })], [vol({ lagSeconds: 90 })], 60), []);
  assert.deepEqual(kinds([vol({ lagSeconds: 61 })], [vol({ lagSeconds: 60 })], 60), ['lagNormal:db']);
  assert.deepEqual(kinds([vol({ lagSeconds: 60 })], [vol({ lagSeconds: 60 })], 60), []);
  assert.deepEqual(kinds([vol({ lagSeconds: 0 })], [vol({ lagSeconds: 5000 })], null), []);
  const high = notices([vol()], [vol({ lagSeconds: 312, backlogBytes: 1536 })], 300)[0]!;
  assert.equal(high.text, 'volume db: lag 5 min 12 s is above the alarm threshold of 5 min 0 s; backlog 1.5 KiB');
  // A lag already high at a start is reported (the baseline's lag is 0).
  assert.deepEqual(kinds(baseline([vol({ lagSeconds: 400 })]), [vol({ lagSeconds: 400 })], 300), ['linkUp:db', 'lagHigh:db']);
});

test('promote and demote', () => {
  const p = notices([vol({ role: 'secondary' })], [vol({ role: 'primary' })], null);
  assert.deepEqual(p.map((n) => [n.kind, n.text]), [['promoted', 'volume db promoted: primary on this node, read-write']]);
  assert.deepEqual(kinds([vol({ role: 'primary' })], [vol({ role: 'secondary' })]), ['demoted:db']);
  // A promote with the link going down at the same time: both, role first.
  assert.deepEqual(kinds([vol({ role: 'secondary' })], [vol({ role: 'primary', link: 'disconnected' })]), ['promoted:db', 'linkDown:db']);
});

test('split brain: once, with the refusal as its text, until the link came up in between', () => {
  const why = 'volume db: split brain: primary on both nodes, and both took writes while apart';
  const sb = notices([vol({ link: 'disconnected' })], [vol({ link: 'disconnected', splitBrain: why })], null);
  assert.deepEqual(sb.map((n) => [n.kind, n.volume, n.text]), [['splitBrain', 'db', why]]);
  assert.deepEqual(kinds([vol({ link: 'disconnected', splitBrain: why })], [vol({ link: 'disconnected', splitBrain: why })]), []);
});

test('splitBrainVolumes: the volume the refusal names, else every volume of that peer', () => {
  const vols = [{ name: 'db', peer: 'site-b' }, { name: 'db2', peer: 'site-b' }, { name: 'logs', peer: 'site-c' }, { name: 'x', peer: null }];
  assert.deepEqual(splitBrainVolumes('site-b', 'volume db2: split brain: the secondary (this node) took writes', vols), ['db2']);
  // "volume db: " does not match "db2".
  assert.deepEqual(splitBrainVolumes('site-b', 'volume db: split brain: primary on both nodes', vols), ['db']);
  assert.deepEqual(splitBrainVolumes('site-b', 'split brain somewhere', vols), ['db', 'db2']);
  assert.deepEqual(splitBrainVolumes('site-c', 'volume db: split brain', vols), ['logs']);
});

test('volumes missing from the previous look are skipped', () => {
  assert.deepEqual(kinds([], [vol({ link: 'disconnected' })]), []);
});

test('a volume set aside: notified when it does not open (the start too), again when a reload\'s try fails, and when it is served again', () => {
  const lost = (attempts: number, error = 'ENOENT: no such file or directory, open \'/v/lost.img\''): WatchedUnavailable =>
    ({ name: 'lost', error, attempts });
  const kindsOf = (ns: ReturnType<typeof availabilityNotices>): string[] => ns.map((n) => `${n.kind}:${n.volume}`);
  // The first look after the start is compared with none set aside.
  const first = availabilityNotices([], [lost(1)], ['good']);
  assert.deepEqual(kindsOf(first), ['volumeUnavailable:lost']);
  assert.equal(first[0]!.text, 'volume lost is not served: it did not open: ENOENT: no such file or directory, open \'/v/lost.img\'; ' +
    'once this is put right, offsite reload (or SIGHUP) opens it');
  assert.deepEqual(availabilityNotices([lost(1)], [lost(1)], ['good']), []);
  // A reload tried again and it failed again: said again, with the newest reason.
  const again = availabilityNotices([lost(1)], [lost(2, 'EACCES')], ['good']);
  assert.deepEqual(kindsOf(again), ['volumeUnavailable:lost']);
  assert.match(again[0]!.text, /did not open \(2 tries\): EACCES;/);
  // Opened at a reload: served again.
  const back = availabilityNotices([lost(2)], [], ['good', 'lost']);
  assert.deepEqual(back.map((n) => [n.kind, n.text]), [['volumeAvailable', 'volume lost opened at a reload: served again']]);
  // Gone from the list without a row (its config entry removed and the node restarted between two looks): nothing.
  assert.deepEqual(availabilityNotices([lost(2)], [], ['good']), []);
  assert.deepEqual(watchUnavailable(undefined), []);
  assert.deepEqual(watchUnavailable([{ name: 'lost', error: 'x', forSeconds: 3, attempts: 2, opening: true }]), [lost(2, 'x')]);
  // A volume a reload lets go to reopen (src/node/volume-reopen.ts) pages no one: no notice while it reopens, nor when it is back.
  const reopening = watchUnavailable([{ name: 'db', error: 'being opened again', forSeconds: 0, attempts: 0, opening: true, reopening: true }]);
  assert.deepEqual(reopening, []);
  assert.deepEqual(availabilityNotices([], reopening, ['good']), []);
  assert.deepEqual(availabilityNotices(reopening, [], ['good', 'db']), []);
});

test('notificationOf: a set-aside volume\'s notification carries the node\'s scalars; a row\'s columns of a volume with no row: none', () => {
  const status = {
    node: 'site-a', version: '1', uptimeSeconds: 5, volumes: [], groups: [],
    unavailable: [{ name: 'lost', error: 'ENOENT', forSeconds: 1, attempts: 1, opening: false }],
  } as unknown as NodeStatus;
  const note = notificationOf({ kind: 'volumeUnavailable', volume: 'lost', text: 'volume lost is not served' }, status, null)!;
  assert.equal(note.trapOid, '1.3.6.1.4.1.32473.0.9');
  assert.deepEqual(note.varbinds.map((v) => [v.oid, v.value]), [
    ['1.3.6.1.4.1.32473.1.1.6.0', 1], ['1.3.6.1.4.1.32473.1.1.7.0', 'lost: ENOENT'], ['1.3.6.1.4.1.32473.1.3.0', 'volume lost is not served'],
  ]);
  assert.equal(notificationOf({ kind: 'volumeAvailable', volume: 'lost', text: 'x' }, status, null), null);
});

test('a primary\'s journal filling: sent as it passes three quarters and nine tenths of its capacity, before it overflows', () => {
  const GiB = 1 << 30;
  const at = (gib: number, over: Partial<WatchedVolume> = {}): WatchedVolume => vol({ journalUsed: gib * GiB, ...over });
  const down = { link: 'disconnected' };
  const sent = notices([at(5.9, down)], [at(6.1, down)], null);
  assert.deepEqual(sent.map((n) => [n.kind, n.text]), [['journalFilling', 'volume db: journal 6.1 GiB of 8.0 GiB (76%), link to site-b down; ' +
    'full, it overflows into the dirty bitmap: raise its journal: and offsite reload, or bring the link back']]);
  assert.deepEqual(kinds([at(6.1)], [at(6.5)]), [], 'past it already: nothing more');
  assert.deepEqual(kinds([at(6.5)], [at(7.3)]), ['journalFilling:db'], 'past nine tenths');
  assert.deepEqual(kinds([at(5)], [at(7.5)]), ['journalFilling:db'], 'both at once: one');
  assert.deepEqual(kinds([at(7.5)], [at(1)]), [], 'released: nothing');
  // Not a secondary's receive log, nor a journal already overflowed (offsiteJournalOverflow says that).
  assert.deepEqual(kinds([at(5, { role: 'secondary', tracking: 'replica' })], [at(7, { role: 'secondary', tracking: 'replica' })]), []);
  assert.deepEqual(kinds([at(5, { tracking: 'bitmap' })], [at(7, { tracking: 'bitmap' })]), []);
});

test('a split brain that keeps one volume unpaired on a link that is up is notified from the status (the link is not refused)', () => {
  const why = 'volume db: split brain: primary on both nodes, and both took writes while apart';
  const status = (conflict: { code: string; message: string } | null): VolumeStatus => ({
    name: 'db', role: 'primary', peer: 'site-b', link: 'connected', lagSeconds: 0, tracking: 'journal', overflows: 0, backlogBytes: 0,
    journalUsedBytes: 0, journalCapacityBytes: 0, peers: [{ name: 'site-b', link: 'connected', conflict }],
  }) as unknown as VolumeStatus;
  const look = { starting: false, everUp: new Set(['db']), splitBrain: new Map<string, string>() };
  const [before] = watchVolumes([status(null)], look);
  const [after] = watchVolumes([status({ code: 'split-brain', message: why })], look);
  assert.deepEqual(notices([before!], [after!], null).map((n) => [n.kind, n.text]), [['splitBrain', why]]);
  // Another conflict (two primaries after a failover) is no split brain.
  assert.equal(watchVolumes([status({ code: 'peer-promoted', message: 'volume db is primary on both nodes: …' })], look)[0]!.splitBrain, null);
});
