// The promote-at file (src/secondary/promote-at-file.ts, docs/HISTORY.md) is acted on
// only for a promote that has begun: one left by a promote that stopped before its
// change to primary began is removed at the start, and a promote to the newest point
// removes it before it begins, so neither rolls back to its point. RoleChanges over a
// double of the daemon and of the replica, with real state files in a temp folder.
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
import { PROMOTE_AT_FILE, writePromoteAt } from '../../src/secondary/promote-at-file.js';
import { VolumeIdentity } from '../../src/volume/identity.js';
import { tempDir } from '../helpers/run.js';

const POINT = { seq: 7, time: Date.UTC(2026, 11, 3, 10, 14) };

/** A secondary `db` whose replica records the point each finish-for-promote is asked for. */
function secondary(): { roles: RoleChanges; e: VolumeEntry; finishedAt: Array<number | undefined>; logged: string[] } {
  const dir = tempDir('promote-at');
  const finishedAt: Array<number | undefined> = [];
  const replica = {
    checkpoint: null,
    log: { close: () => undefined },
    notFrozenBecause: () => null,
    pastPoint: () => POINT,
    finishForPromote: (seq?: number) => {
      finishedAt.push(seq);
      return Promise.resolve({ applied: seq ?? 12, discarded: 0, rolledBack: 0, initialRound: false, ...(seq === undefined ? {} : { restoredBytes: 4096 }) });
    },
  };
  const e = {
    config: { name: 'db', peer: 'site-a' }, volume: { readOnly: true }, role: 'secondary', dir, journaled: null, replica, history: null,
    identity: VolumeIdentity.open(dir, 'secondary'), drill: null,
  } as unknown as VolumeEntry;
  const daemon = {
    config: { node: 'site-b' }, entries: [e], links: null,
    registry: { add: () => undefined, remove: () => undefined },
    openRole: () => Promise.resolve(), backendOf: () => ({}),
  } as unknown as RoleHost;
  const logged: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => { logged.push(String(JSON.parse(chunk.toString()).msg)); done(); } });
  return { roles: new RoleChanges(daemon, createLogger({ format: 'json', destination: sink })), e, finishedAt, logged };
}

const planted = (e: VolumeEntry): boolean => fs.existsSync(path.join(e.dir, PROMOTE_AT_FILE));

test('a promote-at file whose promote never began is removed at the start; a plain promote then goes to the newest point', async () => {
  const { roles, e, finishedAt, logged } = secondary();
  // The daemon died between writing the file and beginning the change to primary.
  await writePromoteAt(new DirStore(e.dir), POINT);
  await roles.settlePromoteAt(e);
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
  await roles.settlePromoteAt(e);
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
