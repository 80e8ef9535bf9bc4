// Promotes over a double of the daemon and of the replicas, with real state files in a
// temp folder. The promote-at file (src/secondary/promote-at-file.ts, docs/HISTORY.md)
// is acted on only for a promote that has begun: one left by a promote that stopped
// before its change to primary began is removed at the start, and a promote to the
// newest point removes it before it begins, so neither rolls back to its point. A
// group's promote --at goes to one past group point on every member, written down on
// each before any member's change begins; a refused group promote links its members again.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../../src/log/log.js';
import { RoleChanges, type RoleHost } from '../../src/node/roles.js';
import type { VolumeEntry } from '../../src/node/volume-entry.js';
import { ActionRefused } from '../../src/contract/actions.js';
import { DirStore } from '../../src/journal/store.js';
import { PROMOTE_AT_FILE, promoteBegun, readPromoteAt, writePromoteAt } from '../../src/secondary/promote-at-file.js';
import { VolumeIdentity } from '../../src/volume/identity.js';
import { tempDir } from '../helpers/run.js';

const POINT = { seq: 7, time: Date.UTC(2026, 11, 3, 10, 14) };

interface Secondaries { roles: RoleChanges; e: VolumeEntry; entries: VolumeEntry[]; finishedAt: Array<number | undefined>; logged: string[] }

/**
 * A secondary `db` (and `wal`, with `group`: the two in consistency group erp) whose
 * replicas record the point each finish-for-promote is asked for.
 */
function secondary(group = false): Secondaries {
  const finishedAt: Array<number | undefined> = [];
  const entry = (name: string): VolumeEntry => {
    const dir = tempDir('promote-at');
    const replica = {
      checkpoint: null,
      log: { close: () => undefined },
      notFrozenBecause: () => null,
      pastPoint: () => POINT,
      keepPoint: () => undefined,
      releasePoint: () => undefined,
      finishForPromote: (at?: { seq: number }) => {
        finishedAt.push(at?.seq);
        return Promise.resolve({ applied: at?.seq ?? 12, discarded: 0, rolledBack: 0, initialRound: false, ...(at ? { restoredBytes: 4096 } : {}) });
      },
    };
    return {
      config: { name, peer: 'site-a', peers: ['site-a'] }, volume: { readOnly: true }, role: 'secondary', dir, journaled: null, replica, history: null,
      identity: VolumeIdentity.open(dir, 'secondary'), drill: null,
    } as unknown as VolumeEntry;
  };
  const entries = group ? [entry('db'), entry('wal')] : [entry('db')];
  const erp = { name: 'erp', members: ['db', 'wal'] };
  const daemon = {
    config: { node: 'site-b' }, entries, links: null,
    registry: { add: () => undefined, remove: () => undefined },
    openRole: () => Promise.resolve(), backendOf: () => ({}),
    ...(group ? { groups: { group: (n: string) => (n === 'erp' ? erp : null), groupOf: (v: string) => (erp.members.includes(v) ? erp : null) } } : {}),
  } as unknown as RoleHost;
  const logged: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => { logged.push(String(JSON.parse(chunk.toString()).msg)); done(); } });
  return { roles: new RoleChanges(daemon, createLogger({ format: 'json', destination: sink })), e: entries[0]!, entries, finishedAt, logged };
}

const planted = (e: VolumeEntry): boolean => fs.existsSync(path.join(e.dir, PROMOTE_AT_FILE));

test('a promote-at file whose promote never began is removed at the start; a plain promote then goes to the newest point', async () => {
  const { roles, e, finishedAt, logged } = secondary();
  // The daemon died between writing the file and beginning the change to primary.
  await writePromoteAt(new DirStore(e.dir), POINT);
  await roles.settlePromoteAt(e, () => null);
  assert.equal(planted(e), false, 'the stale file is gone before the replica opens (nor does its history pin the point)');
  assert.match(logged.join('\n'), new RegExp('volume db: removed the promote-at file of a promote to the restore point of 2026-12-03T10:14:00.000Z ' +
    '\\(record 7\\) that a stop cut before it began: the promote did not happen and db is still secondary here'));
  const r = await roles.promote('db', {});
  assert.deepEqual(finishedAt, [undefined], 'promoted at the newest flush point, not rolled back');
  assert.match(r.message, /volume db promoted: .*applied up to record 12/);
});

test('a plain promote removes a stale promote-at file before it begins, and goes to the newest point', async () => {
  const { roles, e, finishedAt, logged } = secondary();
  // Left while the daemon runs (the change to primary could not be written, say): not removed by a start.
  await writePromoteAt(new DirStore(e.dir), POINT);
  await roles.promote('db', {});
  assert.deepEqual(finishedAt, [undefined]);
  assert.match(logged.join('\n'),
    /volume db: removed the promote-at file of a promote to the restore point of \S+ \(record 7\) that a promote which never began left/);
});

test('a promote-at file of a promote that began is kept at the start and finished at its point; another promote is refused meanwhile', async () => {
  const { roles, e, finishedAt } = secondary();
  await writePromoteAt(new DirStore(e.dir), POINT);
  e.identity!.beginChange('primary');
  await roles.settlePromoteAt(e, () => null);
  assert.equal(planted(e), true);
  // (While it runs, a promote to elsewhere could mix two points: a roll-back may be part done.)
  const refusal = new RegExp('volume db: a promote to the restore point of 2026-12-03T10:14:00.000Z \\(record 7\\) began here and failed part-way; ' +
    'it completes only there: offsite promote db --at 2026-12-03T10:14:00.000Z, or restart the daemon');
  await assert.rejects(roles.promote('db', {}), (err: unknown) => err instanceof ActionRefused && err.reason === 'conflict' && refusal.test(err.message));
  assert.deepEqual(finishedAt, []);
  await roles.completeChange(e);
  assert.deepEqual(finishedAt, [7], 'rolled back to the point written down');
  assert.equal(e.role, 'primary');
  assert.equal(planted(e), false, 'the role change removes it');
});

test('promoteBegun: a change to primary under way here, or for a group\'s promote on another member, begun or done', () => {
  const grp = { ...POINT, group: 'erp', groupPoint: 42 };
  assert.equal(promoteBegun({}), false);
  assert.equal(promoteBegun({ changing: 'primary' }), true);
  assert.equal(promoteBegun({ changing: 'secondary' }, POINT), false);
  assert.equal(promoteBegun({}, grp, [null, {}, { role: 'secondary' }]), false, 'no member has begun');
  assert.equal(promoteBegun({}, grp, [{ changing: 'primary' }]), true);
  assert.equal(promoteBegun({}, grp, [{ role: 'primary' }]), true, 'a member finished already');
  assert.equal(promoteBegun({}, POINT, [{ role: 'primary' }]), false, 'a file of one volume\'s promote looks at no other');
});

test('a group\'s promote a stop cut: a member whose change had not begun joins when another\'s had; none began, every file goes', async () => {
  const grp = (seq: number) => ({ seq, time: POINT.time, group: 'erp', groupPoint: 42 });
  {
    const { roles, entries: [db, wal], finishedAt, logged } = secondary(true);
    await writePromoteAt(new DirStore(db!.dir), grp(7));
    await writePromoteAt(new DirStore(wal!.dir), grp(3));
    db!.identity!.beginChange('primary');
    const identityOf = (m: string) => (m === 'db' ? db!.identity : m === 'wal' ? wal!.identity : null);
    for (const e of [wal!, db!]) await roles.settlePromoteAt(e, identityOf);
    assert.equal(wal!.identity!.changing, 'primary', 'wal begins its change at the start');
    assert.deepEqual(await readPromoteAt(new DirStore(wal!.dir)), grp(3));
    assert.match(logged.join('\n'), /volume wal: the promote of group erp to group point 42 \(the restore point of \S+ \(record 3\)\) began on another member/);
    for (const e of [wal!, db!]) await roles.completeChange(e);
    assert.deepEqual(finishedAt, [3, 7], 'each rolled back to its record of group point 42');
  }
  {
    const { roles, entries: [db, wal] } = secondary(true);
    await writePromoteAt(new DirStore(db!.dir), grp(7));
    await writePromoteAt(new DirStore(wal!.dir), grp(3));
    const identityOf = (m: string) => (m === 'db' ? db!.identity : m === 'wal' ? wal!.identity : null);
    for (const e of [db!, wal!]) await roles.settlePromoteAt(e, identityOf);
    assert.deepEqual([planted(db!), planted(wal!)], [false, false]);
    assert.deepEqual([db!.identity!.changing, wal!.identity!.changing], [undefined, undefined]);
  }
});

test('a group whose promote began on a member and stopped there is refused another promote: a start completes it', async () => {
  const { roles, entries: [db, wal], finishedAt } = secondary(true);
  await writePromoteAt(new DirStore(db!.dir), { ...POINT, group: 'erp', groupPoint: 42 });
  await writePromoteAt(new DirStore(wal!.dir), { seq: 3, time: POINT.time, group: 'erp', groupPoint: 42 });
  db!.identity!.beginChange('primary');
  for (const opts of [{}, { at: POINT.time }]) {
    await assert.rejects(roles.promote('erp', opts), (err: unknown) => err instanceof ActionRefused &&
      /^group erp: a promote to group point 42 of 2026-12-03T10:14:00.000Z began on db and failed part-way; restart the daemon/.test(err.message));
  }
  assert.deepEqual(finishedAt, []);
});

test('promote erp --at: one past group point on every member, each written down before any member\'s change begins', async () => {
  const { roles, entries, finishedAt } = secondary(true);
  const t = (sec: number): number => POINT.time + sec * 1000;
  // db's and wal's restore points: group points 41 and 42 on both (wal thinned 43 away), db's own points between.
  const points: Record<string, Array<{ seq: number; time: number; groupPoint?: number }>> = {
    db: [{ seq: 5, time: t(0), groupPoint: 41 }, { seq: 7, time: t(1), groupPoint: 42 }, { seq: 8, time: t(2) }, { seq: 9, time: t(3), groupPoint: 43 }],
    wal: [{ seq: 2, time: t(0), groupPoint: 41 }, { seq: 3, time: t(1), groupPoint: 42 }, { seq: 6, time: t(4), groupPoint: 44 }],
  };
  const seen: string[] = [];
  let linked: 'connected' | 'down' = 'connected';
  for (const e of entries) {
    Object.assign(e.replica!, { history: {}, historyPoints: () => points[e.config.name], quiesce: () => Promise.resolve() });
    const id = e.identity!;
    const begin = id.beginChange.bind(id);
    id.beginChange = (role) => {
      seen.push(`${e.config.name} begins with files on ${entries.filter(planted).map((x) => x.config.name).join(', ')}`);
      begin(role);
    };
  }
  const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
  const groups = host.groups as Record<string, unknown>;
  Object.assign(groups, { hold: () => seen.push('held'), thaw: () => seen.push('thawed') });
  host.links = {
    primaryLinked: () => linked === 'connected', primaryOf: () => null,
    volumeChanged: () => undefined, volumeReady: () => undefined, volumeKept: () => undefined,
  };
  await assert.rejects(roles.promote('erp', { at: t(3.5) }), (err: unknown) => err instanceof ActionRefused &&
    /^refused to promote group erp: db's primary on site-a is still connected .*; wal's primary .*Add --force/.test(err.message));
  const none = /no group point at or before \S+ is in the history of every member \(db's oldest is group point 41 of \S+; wal's oldest is group point 41/;
  await assert.rejects(roles.promote('erp', { at: t(-1) }), (err: unknown) => err instanceof ActionRefused && none.test(err.message));
  assert.deepEqual([seen, finishedAt], [[], []], 'nothing done by a refusal');
  linked = 'down';
  const r = await roles.promote('erp', { at: t(3.5) });
  assert.deepEqual(finishedAt, [7, 3], 'both at group point 42 (43 is not in wal\'s history, 44 is after the time)');
  assert.deepEqual(seen, ['held', 'db begins with files on db, wal', 'wal begins with files on db, wal', 'thawed']);
  assert.match(r.message, new RegExp('^group erp promoted: db, wal primary on this node, read-write, ' +
    'rolled back to group point 42 of 2026-12-03T10:14:01.000Z: ' +
    'db to record 7 \\(4.0 KiB of later changes undone\\), wal to record 3 \\(4.0 KiB of later changes undone\\); took \\d+ ms$'));
  assert.deepEqual(entries.map((e) => [e.role, planted(e)]), [['primary', false], ['primary', false]]);
});

test('a group promote refused after its members\' links went (not at one moment, or its past point dropped) links every member again', async () => {
  const { roles, entries, finishedAt } = secondary(true);
  const kept: string[] = [];
  const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
  for (const e of entries) Object.assign(e.replica!, { prepareForPromote: () => Promise.resolve() });
  Object.assign(host.groups as Record<string, unknown>, {
    bringTogether: () => Promise.reject(new Error('group erp is not at one moment: wal is in a resync round (or a first sync)')),
    thaw: () => undefined,
  });
  host.links = {
    primaryLinked: () => false, primaryOf: () => null,
    volumeChanged: (v: string) => kept.push(`changed ${v}`), volumeReady: (v: string) => kept.push(`ready ${v}`),
    volumeKept: (v: string, rp: unknown) => kept.push(`kept ${v}${rp === entries.find((e) => e.config.name === v)!.replica ? ' with its replica' : ''}`),
  };
  await assert.rejects(roles.promote('erp', {}),
    (err: unknown) => err instanceof ActionRefused && /^refused to promote group erp: group erp is not at one moment/.test(err.message));
  assert.deepEqual(kept, ['changed db', 'changed wal', 'kept db with its replica', 'kept wal with its replica']);
  assert.deepEqual(finishedAt, []);

  // And one --at whose point the history no longer holds once the links went (retention, as the last units applied).
  kept.length = 0;
  let looks = 0;
  for (const e of entries) {
    Object.assign(e.replica!, {
      history: {}, quiesce: () => Promise.resolve(),
      historyPoints: () => (e.config.name === 'wal' && looks++ > 0 ? [] : [{ seq: 3, time: POINT.time, groupPoint: 42 }]),
    });
  }
  Object.assign(host.groups as Record<string, unknown>, { hold: () => undefined });
  await assert.rejects(roles.promote('erp', { at: POINT.time }),
    (err: unknown) => err instanceof ActionRefused && /^refused to promote group erp: no group point .*wal holds no group point yet/.test(err.message));
  assert.deepEqual(kept, ['changed db', 'changed wal', 'kept db with its replica', 'kept wal with its replica']);
  assert.deepEqual([finishedAt, entries.map(planted), entries.map((e) => e.identity!.changing)], [[], [false, false], [undefined, undefined]]);
});

test('a promote that fails before its change began pairs the replica again; one that fails after says a promote again completes it', async () => {
  const { roles, e, finishedAt } = secondary();
  const said: string[] = [];
  const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
  host.links = {
    primaryLinked: () => false, primaryOf: () => null,
    volumeChanged: (v: string, why: string) => said.push(`changed ${v}: ${why}`), volumeReady: (v: string, why: string) => said.push(`ready ${v}: ${why}`),
    volumeKept: (v: string, rp: unknown, why: string) => said.push(`kept ${v}${rp === e.replica ? ' with its replica' : ''}: ${why}`),
    changeStopped: (v: string, why: string) => said.push(`stopped ${v}: ${why}`),
  };
  // The identity's change cannot be written (its temporary file's name taken by a folder, as a full disk would fail it).
  const tmp = path.join(e.dir, 'identity.json.tmp');
  fs.mkdirSync(tmp);
  await assert.rejects(roles.promote('db', {}));
  assert.deepEqual(said, ['changed db: volume db is being promoted here', 'kept db with its replica: volume db: its promote did not begin']);
  assert.equal(e.identity!.changing, undefined, 'nothing began: neither on disk nor in what the identity holds');
  assert.deepEqual([e.role, finishedAt], ['secondary', []]);
  fs.rmdirSync(tmp);

  // Begun, then the finish fails: the replica is not paired again (it may be half rolled back), and its peers hear what completes it.
  said.length = 0;
  const finish = e.replica!.finishForPromote.bind(e.replica!);
  e.replica!.finishForPromote = () => Promise.reject(new Error('EIO: i/o error, write'));
  await assert.rejects(roles.promote('db', {}), (err: unknown) => err instanceof Error &&
    err.message === 'EIO: i/o error, write; the promote of db is recorded, and completes when \'offsite promote db\' runs again (or at the next start)');
  assert.deepEqual(said, ['changed db: volume db is being promoted here',
    'stopped db: volume db: its promote stopped part-way (EIO: i/o error, write); it is recorded, and completes when \'offsite promote db\' runs again ' +
    '(or at the next start)']);
  assert.equal(e.identity!.changing, 'primary');
  // Again, and its change cannot be written this time (begun already): not paired again as a secondary, for a start would promote it.
  said.length = 0;
  fs.mkdirSync(tmp);
  await assert.rejects(roles.promote('db', {}));
  assert.deepEqual(said.map((x) => x.split(':')[0]), ['changed db', 'stopped db']);
  fs.rmdirSync(tmp);
  said.length = 0;
  e.replica!.finishForPromote = finish;
  await roles.promote('db', {});
  assert.deepEqual(said, ['changed db: volume db is being promoted here', 'ready db: volume db is primary here now']);
  assert.deepEqual([e.role, e.identity!.changing, finishedAt], ['primary', undefined, [undefined]]);
});

test('a promote that fails once the replica is let go says only a restart completes it, and refuses every action until then', async () => {
  const { roles, e } = secondary();
  const said: string[] = [];
  const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
  host.links = {
    primaryLinked: () => false, primaryOf: () => null,
    volumeChanged: (v: string) => said.push(`changed ${v}`), volumeReady: (v: string) => said.push(`ready ${v}`),
    volumeKept: (v: string) => said.push(`kept ${v}`), changeStopped: (v: string, why: string) => said.push(`stopped ${v}: ${why}`),
  };
  host.openRole = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, open'), { code: 'ENOSPC' }));
  await assert.rejects(roles.promote('db', {}), (err: unknown) => err instanceof Error &&
    new RegExp(`^the disk holding ${e.dir} is full \\(ENOSPC: no space left on device, open\\): make room there and restart the daemon: ` +
      'its start completes the promote of db$').test(err.message));
  assert.deepEqual(said, ['changed db',
    'stopped db: volume db: its promote stopped part-way (ENOSPC: no space left on device, open); restart the daemon: its start completes it']);
  // (The role is written: a start opens it as primary.)
  assert.equal(e.identity!.role, 'primary');
  for (const action of [() => roles.promote('db', {}), () => roles.demote('db', {})]) {
    await assert.rejects(action(), (err: unknown) => err instanceof ActionRefused && err.reason === 'conflict' &&
      /^volume db: its promote stopped part-way \(ENOSPC.*\); restart the daemon: its start completes it; nothing else is done to db until then$/
        .test(err.message));
  }
});

test('a demote --discard-my-data that fails before it began keeps the secondary paired; one that fails after says a restart completes it', async () => {
  const { roles, e } = secondary();
  const said: string[] = [];
  const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
  host.links = {
    volumeChanged: (v: string) => said.push(`changed ${v}`), volumeReady: (v: string) => said.push(`ready ${v}`),
    volumeKept: (v: string, rp: unknown) => said.push(`kept ${v}${rp === e.replica ? ' with its replica' : ''}`),
    changeStopped: (v: string, why: string) => said.push(`stopped ${v}: ${why}`),
  };
  Object.assign(e.replica!, { quiesce: () => Promise.reject(new Error('the apply failed: EIO')), releaseCheckpoint: () => Promise.resolve() });
  await assert.rejects(roles.demote('db', { discardMyData: true }),
    (err: unknown) => err instanceof Error && err.message === 'no demote of db: the apply failed: EIO; it is still the secondary it was, its data kept');
  assert.deepEqual(said, ['changed db', 'kept db with its replica']);
  assert.equal(e.identity!.changing, undefined);

  said.length = 0;
  Object.assign(e.replica!, { quiesce: () => Promise.resolve() });
  e.identity!.adopt('6f1c1f3e-5b7a-4a53-9b8e-2f0d5c1a9e11', ['0123456789abcdef']);
  host.openRole = () => Promise.reject(new Error('EIO: i/o error, open'));
  await assert.rejects(roles.demote('db', { discardMyData: true }), (err: unknown) => err instanceof Error &&
    err.message === 'volume db: its demote stopped part-way (EIO: i/o error, open); it is recorded, and a restart of the daemon completes it');
  assert.deepEqual(said, ['changed db', 'stopped db: volume db: its demote stopped part-way (EIO: i/o error, open); it is recorded, ' +
    'and a restart of the daemon completes it']);
  // Its history was forgotten before the role was written (a start completes the demote, and would not forget it).
  assert.deepEqual(e.identity!.generations, []);
  await assert.rejects(roles.promote('db', {}), (err: unknown) => err instanceof ActionRefused && /nothing else is done to db until then$/.test(err.message));
});

test('a group promote that stops part-way says a restart completes the members begun, and refuses the group until then', async () => {
  for (const failing of ['finish', 'open'] as const) {
    const { roles, entries: [db, wal] } = secondary(true);
    const said: string[] = [];
    const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
    for (const e of [db!, wal!]) Object.assign(e.replica!, { prepareForPromote: () => Promise.resolve() });
    Object.assign(host.groups as Record<string, unknown>, { bringTogether: () => Promise.resolve(42), thaw: () => undefined });
    host.links = {
      primaryLinked: () => false, primaryOf: () => null,
      volumeChanged: (v: string) => said.push(`changed ${v}`), volumeReady: (v: string) => said.push(`ready ${v}`),
      volumeKept: (v: string) => said.push(`kept ${v}`), changeStopped: (v: string) => said.push(`stopped ${v}`),
    };
    // db is promoted; then wal's finish fails (its change begun), or wal's open as primary (its role written).
    if (failing === 'finish') wal!.replica!.finishForPromote = () => Promise.reject(new Error('EIO: i/o error, read'));
    else host.openRole = (e: VolumeEntry) => (e === wal ? Promise.reject(new Error('EIO: i/o error, open')) : Promise.resolve());
    await assert.rejects(roles.promote('erp', {}), (err: unknown) => err instanceof Error &&
      new RegExp(`^group erp: its promote stopped part-way \\(EIO: i/o error, ${failing === 'finish' ? 'read' : 'open'}\\); restart the daemon: ` +
        'its start completes the promote of wal \\(done: db up to record 12\\)$').test(err.message));
    assert.deepEqual(said, ['changed db', 'changed wal', 'ready db', 'stopped wal'], failing);
    await assert.rejects(roles.promote('erp', {}),
      (err: unknown) => err instanceof ActionRefused && /nothing else is done to wal until then$/.test(err.message));
  }
});

test('a demote --discard-my-data forgets the history before the role is written, and says so when it could not', async () => {
  for (const failing of ['role', 'history'] as const) {
    const { roles, e } = secondary();
    const host = (roles as unknown as { daemon: Record<string, unknown> }).daemon;
    host.links = { volumeChanged: () => undefined, volumeReady: () => undefined, volumeKept: () => undefined, changeStopped: () => undefined };
    Object.assign(e.replica!, { quiesce: () => Promise.resolve(), releaseCheckpoint: () => Promise.resolve() });
    e.identity!.adopt('6f1c1f3e-5b7a-4a53-9b8e-2f0d5c1a9e11', ['0123456789abcdef']);
    const full = (): never => { throw new Error('ENOSPC: no space left on device, write'); };
    if (failing === 'role') e.identity!.setRole = full;
    else e.identity!.forgetHistory = full;
    await assert.rejects(roles.demote('db', { discardMyData: true }), (err: unknown) => err instanceof Error &&
      err.message === 'volume db: its demote stopped part-way (ENOSPC: no space left on device, write); it is recorded, and a restart of the daemon ' +
      `completes it${failing === 'history' ? '; its data is not discarded yet: run \'offsite demote db --discard-my-data\' again then' : ''}`);
    assert.deepEqual([e.identity!.changing, e.identity!.generations.length], ['secondary', failing === 'role' ? 0 : 1], failing);
  }
});
