// A reload's new and dropped volumes (src/node/reloaded-volumes.ts): which open at once, which
// are let go, which wait for a restart and why; and the config's refusal of two volumes on one file.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig, sameFileKey, type Config } from '../../src/config/config.js';
import { applyVolumeKeys, journalReloaded, volumesReloaded } from '../../src/node/reloaded-volumes.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import type { Replica } from '../../src/secondary/replica.js';
import { tempDir } from '../helpers/run.js';

const dir = tempDir('added');
const file = path.join(dir, 'offsite.yaml');

function config(volumes: string, extra = ''): Config {
  return parseConfig(`node: site-a
state: ./state
nbd: 127.0.0.1:10809
peers:
  site-b: { address: "127.0.0.1:7701" }
  site-c: { address: "127.0.0.1:7702" }
volumes:
${volumes}
${extra}`, file);
}

const REOPENED = '(its NBD connections and iSCSI sessions close, and hosts connect again; the node\'s other volumes go on)';

const base = `  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }`;

test('a volume new to the file opens now; the ones already served are left as they are', () => {
  const now = config(base);
  const next = config(`${base}\n  logs: { path: ./logs.img, size: 2GiB, role: primary, peer: site-b }`);
  const r = volumesReloaded(now, next, true);
  assert.deepEqual(r.add.map((v) => v.name), ['logs']);
  assert.equal(r.add[0]!.size, 2 * 2 ** 30);
  assert.equal(r.add[0]!.path, path.join(dir, 'logs.img'));
  assert.deepEqual(r.notes, []);
  // Nothing new: nothing added, nothing said.
  assert.deepEqual(volumesReloaded(now, config(base), true), { add: [], remove: [], addGroups: [], removeGroups: [], reopen: [], regroup: [], notes: [] });
});

test('what waits for a restart is said: a group member, a peer the daemon does not link with, default', () => {
  const now = config(base, '');
  // A new volume in a group the daemon serves: the group's points are formed over the members it had.
  const grouped = config(base, 'groups:\n  erp: [db, wal]');
  const more = config(`${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-b }`, 'groups:\n  erp: [db, wal, logs]');
  const g = volumesReloaded(grouped, more, true);
  assert.deepEqual(g.add, []);
  assert.deepEqual(g.notes, ['volume logs: a new member of consistency group erp: not added; add the volume at one reload, ' +
    'then put it in the group at another']);
  assert.deepEqual(g.regroup, []);
  // Among served volumes a group's members change by a regroup: one joins, one leaves, a new group over served volumes, a group dropped.
  const three = `${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-b }`;
  const joins = volumesReloaded(config(three, 'groups:\n  erp: [db, wal]'), config(three, 'groups:\n  erp: [db, wal, logs]'), true);
  assert.deepEqual([joins.add, joins.regroup], [[], [{ group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'logs'] }]]);
  assert.deepEqual(joins.notes, ['consistency group erp: logs joins (db, wal → db, wal, logs); db, wal, logs are let go and opened again together ' +
    REOPENED.replace('its', 'their')]);
  const leaves = volumesReloaded(config(three, 'groups:\n  erp: [db, wal, logs]'), config(three, 'groups:\n  erp: [db, wal]'), true);
  assert.deepEqual(leaves.regroup, [{ group: 'erp', was: ['db', 'wal', 'logs'], now: ['db', 'wal'] }]);
  assert.match(leaves.notes[0]!, /^consistency group erp: logs leaves \(db, wal, logs → db, wal\)/);
  const made = volumesReloaded(config(base), grouped, true);
  assert.deepEqual([made.addGroups, made.regroup], [[], [{ group: 'erp', was: [], now: ['db', 'wal'] }]]);
  assert.match(made.notes[0]!, /^consistency group erp: new over db, wal; db, wal are let go and opened again together/);
  const gone = volumesReloaded(grouped, config(base), true);
  assert.deepEqual([gone.removeGroups, gone.regroup], [[], [{ group: 'erp', was: ['db', 'wal'], now: [] }]]);
  assert.match(gone.notes[0]!, /^consistency group erp: dropped \(db, wal served on, each alone\)/);
  // wal and logs swap groups at one reload: at this one each group only lets go what leaves it (one member would stay,
  // so both go), the joins at the next; never a volume in two groups.
  const four = `${three}\n  tmp: { path: ./tmp.img, size: 1GiB, role: primary, peer: site-b }`;
  const moved = volumesReloaded(config(four, 'groups:\n  erp: [db, wal]\n  crm: [logs, tmp]'),
    config(four, 'groups:\n  erp: [db, logs]\n  crm: [wal, tmp]'), true);
  assert.deepEqual(moved.regroup, [{ group: 'erp', was: ['db', 'wal'], now: [] }, { group: 'crm', was: ['logs', 'tmp'], now: [] }]);
  assert.ok(moved.notes.includes('consistency group crm: logs, wal also change another group at this reload: only its dropping goes now; ' +
    'reload again to finish'), moved.notes.join('\n'));
  const afterMove = volumesReloaded(config(four), config(four, 'groups:\n  erp: [db, logs]\n  crm: [wal, tmp]'), true);
  assert.deepEqual(afterMove.regroup, [{ group: 'erp', was: [], now: ['db', 'logs'] }, { group: 'crm', was: [], now: ['wal', 'tmp'] }]);
  // One member moves from a group of three to another: the one it leaves keeps two now; the other takes it at the next reload.
  const five = `${four}\n  mail: { path: ./mail.img, size: 1GiB, role: primary, peer: site-b }`;
  const one = volumesReloaded(config(five, 'groups:\n  erp: [db, wal, logs]\n  crm: [tmp, mail]'),
    config(five, 'groups:\n  erp: [db, wal]\n  crm: [tmp, mail, logs]'), true);
  assert.deepEqual(one.regroup, [{ group: 'erp', was: ['db', 'wal', 'logs'], now: ['db', 'wal'] }]);
  assert.ok(one.notes.includes('consistency group erp: logs also changes another group at this reload: only its leaving members go now ' +
    '(→ db, wal); reload again to finish'), one.notes.join('\n'));
  // A group renamed: the old name goes now, the new one over the same members at the next reload.
  const renamed = volumesReloaded(grouped, config(base, 'groups:\n  erp2: [db, wal]'), true);
  assert.deepEqual(renamed.regroup, [{ group: 'erp', was: ['db', 'wal'], now: [] }]);
  // A member whose file changes at the same reload: reopened alone, and its group's change waits.
  const coarser = three.replace('db: { path: ./db.img,', 'db: { path: ./db.img, bitmap_region: 128KiB,');
  const both = volumesReloaded(config(three, 'groups:\n  erp: [db, wal]'), config(coarser, 'groups:\n  erp: [db, wal, logs]'), true);
  assert.deepEqual([both.regroup, both.reopen.map((v) => v.name)], [[], ['db']]);
  assert.ok(both.notes.includes('consistency group erp: its members change at the reload that reopens db: reload again once that is done'),
    both.notes.join('\n'));
  // site-c is in the reloaded file's peers but not the running daemon's.
  const twoPeers = { ...now, peers: now.peers.filter((p) => p.name === 'site-b') };
  const c = volumesReloaded(twoPeers, config(`${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-c }`), true);
  assert.deepEqual(c.add, []);
  assert.deepEqual(c.notes, ['volume logs: peer site-c is new to this daemon: that takes a restart']);
  const def = volumesReloaded(now, config(`${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, default: true }`), true);
  assert.deepEqual(def.add.map((v) => [v.name, v.default]), [['logs', false]]);
  assert.match(def.notes[0]!, /^volume logs: default: true takes a restart/);
  // No link runs (the daemon started with no peer): added, and said that it ships after a restart.
  const unlinked = volumesReloaded(now, config(`${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-b }`), false);
  assert.deepEqual(unlinked.add.map((v) => v.name), ['logs']);
  assert.match(unlinked.notes[0]!, /^volume logs: no peer link runs on this daemon .*shipped after a restart$/);
});

test('a new volume on a served volume\'s file is not added, also through a link; the config refuses two volumes on one file', () => {
  fs.writeFileSync(path.join(dir, 'db.img'), '');
  fs.symlinkSync(dir, path.join(dir, 'here'));
  const now = config(base);
  // The running daemon's db moved to another file in the reloaded file (reopened there); the new one takes db's old file (free after the reopen).
  const next = config(`  db: { path: ./db2.img, size: 1GiB, role: primary, peer: site-b }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }
  logs: { path: ./here/db.img, size: 1GiB, role: primary, peer: site-b }`);
  // (Not there yet, or of another size: refused, db stays where it is.)
  assert.deepEqual(volumesReloaded(now, next, true).notes.slice(0, 1),
    [`volume db: ${path.join(dir, 'db2.img')}: no such file: not reopened (it is served from ${path.join(dir, 'db.img')} as it was)`]);
  fs.writeFileSync(path.join(dir, 'db2.img'), '');
  fs.truncateSync(path.join(dir, 'db2.img'), 2 ** 29);
  assert.deepEqual(volumesReloaded(now, next, true).notes.slice(0, 1),
    [`volume db: ${path.join(dir, 'db2.img')} holds 512 MiB, and the volume is 1.0 GiB: not reopened ` +
      `(it is served from ${path.join(dir, 'db.img')} as it was)`]);
  fs.truncateSync(path.join(dir, 'db2.img'), 2 ** 30);
  const r = volumesReloaded(now, next, true);
  assert.deepEqual(r.add, []);
  assert.deepEqual(r.reopen.map((v) => [v.name, v.path]), [['db', path.join(dir, 'db2.img')]]);
  assert.deepEqual(r.notes, [`volume db: path ${path.join(dir, 'db.img')} → ${path.join(dir, 'db2.img')}: reopening it alone ${REOPENED}`,
    `volume logs: ${path.join(dir, 'here', 'db.img')} is the file of volume db, served here: not added`]);
  // A volume set aside: its path is SetAside.adopt's to take (and say), not this.
  assert.deepEqual(volumesReloaded(now, next, true, (name) => name === 'db').notes.slice(0, 1),
    [`volume logs: ${path.join(dir, 'here', 'db.img')} is the file of volume db, served here: not added`]);
  // Weight, priority and history's limits apply live: nothing said here.
  const live = config(`  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b, weight: 4, priority: high }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }`);
  assert.deepEqual(volumesReloaded(now, live, true).notes, []);
  const region = config(`  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b, bitmap_region: 128KiB }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }`);
  assert.deepEqual(volumesReloaded(now, region, true).notes, [`volume db: bitmap_region 64 KiB → 128 KiB: reopening it alone ${REOPENED}`]);
  // A consistency group's member: reopened with the other members, which open together; onto another served volume's file, refused.
  const grouped = volumesReloaded(config(base, 'groups:\n  erp: [db, wal]'), config(base.replace('./db.img', './db2.img'), 'groups:\n  erp: [db, wal]'), true);
  assert.deepEqual([grouped.reopen.map((v) => v.name), grouped.notes], [['db'],
    [`volume db: path ${path.join(dir, 'db.img')} → ${path.join(dir, 'db2.img')}: reopening it with the other members of consistency group erp ` +
      '(wal), which open together (their NBD connections and iSCSI sessions close, and hosts connect again; the node\'s other volumes go on)']]);
  // Two served volumes swapping files: each is the other's, served here: neither reopens.
  const swap = volumesReloaded(now, config(`  db: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }
  wal: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }`), true);
  assert.deepEqual([swap.reopen, swap.notes], [[], [`volume db: ${path.join(dir, 'wal.img')} is the file of volume wal, served here: not reopened`,
    `volume wal: ${path.join(dir, 'db.img')} is the file of volume db, served here: not reopened`]]);
  // A role in the file: promote and demote change a served volume's role; a restart reads the file's only if neither ran.
  const role = config(`  db: { path: ./db.img, size: 1GiB, role: secondary, peer: site-b }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }`);
  assert.deepEqual(volumesReloaded(now, role, true).notes, ['volume db: role: secondary in the file: a served volume\'s role changes by ' +
    '`offsite promote` and `offsite demote` (docs/FAILOVER.md), at once and safely; a restart takes the file\'s role: only if neither ever ran on it here']);
  assert.equal(sameFileKey(path.join(dir, 'here', 'not-yet', 'x.img')), path.join(fs.realpathSync(dir), 'not-yet', 'x.img'));
  assert.throws(() => config(`${base}\n  logs: { path: ./here/wal.img, size: 1GiB, role: primary }`),
    /offsite\.yaml:\d+: volumes\.logs\.path: .*here\/wal\.img is volume wal's file too; each volume needs a file \(or device\) of its own/);
});

test('a volume gone from the file is let go; a member of a consistency group waits for a restart; its file and name are free for a new one', () => {
  const dropped = volumesReloaded(config(base), config('  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }'), true);
  assert.deepEqual(dropped, { add: [], remove: ['wal'], addGroups: [], removeGroups: [], reopen: [], regroup: [], notes: [] });
  // A set-aside volume that is gone goes too (the reload does not try it again).
  assert.deepEqual(volumesReloaded(config(base), config('  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }'), true,
    (name) => name === 'wal').remove, ['wal']);
  const grouped = config(base, 'groups:\n  erp: [db, wal]');
  const member = volumesReloaded(grouped, config('  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }'), true);
  assert.deepEqual(member.remove, []);
  assert.deepEqual(member.notes, ['consistency group erp is gone from the config: that takes a restart (its members stay grouped until then)',
    'volume wal is gone from the config, but it is a member of consistency group erp: it is served until the next restart']);
  // A rename in one reload: wal is let go first, so logs may take its file (and would take its target name).
  const renamed = volumesReloaded(config(base), config(`  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }
  logs: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b }`), true);
  assert.deepEqual(renamed.remove, ['wal']);
  assert.deepEqual(renamed.add.map((v) => v.name), ['logs']);
  assert.deepEqual(renamed.notes, []);
});

test('a served volume\'s checkpoint schedule, failback, on_full, description and iSCSI access change in place; its folders reopen it', () => {
  const iscsi = 'iscsi:\n  listen: 127.0.0.1:3260';
  const now = config(base, iscsi);
  const changed = config(`  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b, failback: auto, on_full: block,
       checkpoints: [ { cron: "0 2 * * *", label: nightly } ], iscsi: { initiators: [ "iqn.2026-12.com.example:erp" ] } }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peer: site-b, journal_dir: ./wal-journal }`, iscsi);
  // Only the journal's folder of wal is said: it reopens.
  assert.deepEqual(volumesReloaded(now, changed, true).notes,
    [`volume wal: journal_dir (default) → ${path.join(dir, 'wal-journal')}: reopening it alone ${REOPENED}`]);
  const db = now.volumes[0]!;
  const modes: string[] = [];
  let replanned = 0;
  const volume = { description: 'offsite volume db on node site-a' };
  const notes = applyVolumeKeys({ config: db, journaled: { setOnFull: (m) => modes.push(m) }, volume },
    { ...changed.volumes[0]!, description: 'ERP database' }, () => replanned++);
  assert.deepEqual(notes, [
    'volume db: checkpoint schedule now "nightly" (0 2 * * *)',
    'volume db: failback auto',
    'volume db: on_full block',
    'volume db: description changed (for the next NBD connections and iSCSI inquiries)',
    'volume db: iSCSI access changed (for the next logins; sessions logged in stay)',
  ]);
  assert.equal(replanned, 1);
  assert.deepEqual(modes, ['block']);
  assert.equal(volume.description, 'ERP database');
  assert.equal(db.failback, 'auto');
  assert.deepEqual(db.checkpoints.map((c) => c.label), ['nightly']);
  assert.deepEqual(db.iscsi?.initiators, ['iqn.2026-12.com.example:erp']);
  // The same file again: nothing changes, nothing is said.
  assert.deepEqual(applyVolumeKeys({ config: db, journaled: null, volume }, { ...changed.volumes[0]!, description: 'ERP database' }, () => replanned++), []);
  assert.equal(replanned, 1);
  // A secondary's on_full is kept for when it is promoted.
  const wal = now.volumes[1]!;
  assert.deepEqual(applyVolumeKeys({ config: wal, journaled: null, volume }, { ...wal, on_full: 'block' }, () => undefined),
    ['volume wal: on_full block (when it is primary)']);
});

test('a new consistency group comes with its members, all new, whole or not at all; a group goes with its members, all dropped', () => {
  const now = config(base);
  const erp = `${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-b }\n` +
    '  idx: { path: ./idx.img, size: 1GiB, role: primary, peer: site-b }';
  const added = volumesReloaded(now, config(erp, 'groups:\n  erp: [logs, idx]'), true);
  assert.deepEqual(added.add.map((v) => v.name), ['logs', 'idx']);
  assert.deepEqual(added.addGroups.map((g) => [g.name, g.members]), [['erp', ['logs', 'idx']]]);
  assert.deepEqual(added.notes, []);
  // One member cannot be added (its peer is new to the daemon): neither is, nor the group.
  const twoPeers = { ...now, peers: now.peers.filter((p) => p.name === 'site-b') };
  const half = volumesReloaded(twoPeers, config(`${base}\n  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-c }\n` +
    '  idx: { path: ./idx.img, size: 1GiB, role: primary, peer: site-c }', 'groups:\n  erp: [logs, idx]'), true);
  assert.deepEqual(half.add, []);
  assert.deepEqual(half.addGroups, []);
  assert.match(half.notes.join('\n'), /volume logs: peer site-c is new to this daemon: that takes a restart/);
  // Dropped with all its members: they are let go, then the group.
  const gone = volumesReloaded(config(erp, 'groups:\n  erp: [logs, idx]'), now, true);
  assert.deepEqual(gone.remove, ['logs', 'idx']);
  assert.deepEqual(gone.removeGroups, ['erp']);
  assert.deepEqual(gone.notes, []);
});

test('journal: a served volume\'s journal or receive log takes a new size at once, never below what it holds', () => {
  const MiB = 1024 * 1024;
  const now = config(base);
  const next = config(base.replace('role: primary, peer: site-b }', 'role: primary, peer: site-b, journal: 16GiB }'));
  assert.deepEqual(volumesReloaded(now, next, true).notes, [], 'not a restart');
  const db = (c: Config) => c.volumes.find((v) => v.name === 'db')!;
  const resized: number[] = [];
  const journal = { usedBytes: 3 * MiB, capacity: 8 * 1024 * MiB };
  const jv = { journal, resizeJournal: (n: number) => resized.push(n) } as unknown as JournaledVolume;
  const e = { config: db(now), journaled: jv, replica: null };
  let relinked = 0;
  assert.deepEqual(journalReloaded(e, db(next), () => relinked++), ['volume db: journal 16 GiB (was 8.0 GiB)']);
  assert.deepEqual([resized, e.config.journal, relinked], [[16 * 1024 ** 3], 16 * 1024 ** 3, 0]);
  assert.deepEqual(journalReloaded(e, db(next), () => relinked++), [], 'the same size: nothing');
  // A receive log made smaller than it holds stays; smaller than that, the primary is told at a new Hello.
  const log = { usedBytes: 6 * MiB, capacity: 16 * 1024 ** 3, resize: (n: number) => resized.push(n) };
  const r = { config: { ...db(next) }, journaled: null, replica: { log } as unknown as Replica };
  const small = (size: string) => db(config(base.replace('role: primary, peer: site-b }', `role: primary, peer: site-b, journal: ${size} }`)));
  assert.deepEqual(journalReloaded(r, small('4MiB'), () => relinked++),
    ['volume db: receive log stays 16 GiB: it holds 6.0 MiB now; one of 4.0 MiB is taken once it holds less (reload again then)']);
  assert.deepEqual([r.config.journal, relinked], [16 * 1024 ** 3, 0]);
  assert.deepEqual(journalReloaded(r, small('64MiB'), () => relinked++), ['volume db: receive log 64 MiB (was 16 GiB)']);
  assert.deepEqual([resized.at(-1), relinked], [64 * MiB, 1]);
});
