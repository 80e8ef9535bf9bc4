// A consistency group's members changed at a reload (src/node/regroup.ts, docs/GROUPS.md
// and docs/CONFIG.md "Reloading"), both sites, no restart. Three volumes, erp: [db, wal].
// logs joins erp (the primary's reload first, then the secondary's): its members are let
// go and opened again together, logs is then a member (a checkpoint of logs alone is
// refused naming the group; a group checkpoint holds all three at one group point, each
// member's checkpoint file naming it). Then wal leaves (the secondary first): wal alone
// takes a checkpoint of its own. The pairs drain equal throughout. Before, any change of
// a served group's members took a restart of the node: every host's session and link cut.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { cli } from '../helpers/cli.js';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, qemuWrite, waitFor } from '../helpers/run.js';

const vol = (name: string, role: string, peer: string): string =>
  `  ${name}: { path: ./${name}.img, size: 32MiB, role: ${role}, peer: ${peer}, journal: 64MiB }`;

/** Rewrites the node's `groups:` section and reloads it; waits until every member named opened again in `role`. */
async function regroup(d: TestDaemon, members: string, opened: string[], role: string): Promise<string> {
  fs.writeFileSync(d.configFile, fs.readFileSync(d.configFile, 'utf8').replace(/groups:\n {2}erp: \[[^\]]*\]\n/, `groups:\n  erp: [${members}]\n`));
  const from = d.log.length;
  const said = await cli(d, 'reload');
  assert.equal(said.code, 0, said.stderr);
  assert.doesNotMatch(said.stdout, /takes a restart/);
  await waitFor(`${opened.join(', ')} opened again as ${role}`, () =>
    opened.every((v) => new RegExp(`volume ${v}: opened at a reload; served as ${role}`).test(d.log.slice(from))), 30_000);
  return said.stdout;
}

test('a reload puts a served volume into a consistency group and takes one out, at both sites; the group checkpoints over its new members', async () => {
  const groups = 'groups:\n  erp: [db, wal]\n';
  const p = await startPair({
    size: '32MiB', journal: '64MiB',
    volumesA: [vol('wal', 'primary', 'site-b'), vol('logs', 'primary', 'site-b')].join('\n'),
    volumesB: [vol('wal', 'secondary', 'site-a'), vol('logs', 'secondary', 'site-a')].join('\n'),
    nodeKeysA: groups, nodeKeysB: groups,
  });
  try {
    const writeAll = async (pattern: number, at: string): Promise<void> => {
      for (const [i, v] of ['db', 'wal', 'logs'].entries()) await qemuWrite(p.a.qemuTarget(v), pattern + i, at);
    };
    await writeAll(0x10, '0');
    await p.drained();

    // logs joins: the primary's reload, then the secondary's.
    const said = await regroup(p.a, 'db, wal, logs', ['db', 'wal', 'logs'], 'primary');
    assert.match(said, /consistency group erp: logs joins \(db, wal → db, wal, logs\); db, wal, logs are let go and opened again together/);
    assert.match(p.a.log, /volumes db, wal, logs: let go in \d+ ms to be opened again together \(consistency group erp: db, wal → db, wal, logs\)/);
    await regroup(p.b, 'db, wal, logs', ['db', 'wal', 'logs'], 'secondary');
    await writeAll(0x20, '4M');
    await p.drained();
    const alone = await cli(p.b, 'checkpoint', 'create', 'logs', '--label', 'alone');
    assert.equal(alone.code, 1);
    assert.match(alone.stderr, /volume logs is in consistency group erp \(with db, wal\)/);
    await waitFor('the group consistent over three members', async () => {
      const s = (await statusOf(p.b)) as unknown as { groups?: Array<{ name: string; members: string[]; consistent: boolean }> };
      const g = s.groups?.find((x) => x.name === 'erp');
      return g !== undefined && g.members.length === 3 && g.consistent;
    }, 30_000);
    const made = await cli(p.b, 'checkpoint', 'create', 'erp', '--label', 'three');
    assert.equal(made.code, 0, `${made.stderr} ${made.stdout}`);
    const point = /held at group point (\d+)/.exec(made.stdout)?.[1];
    assert.ok(point, made.stdout);
    for (const v of ['db', 'wal', 'logs']) {
      const held = JSON.parse(fs.readFileSync(path.join(p.b.dir, 'state', 'volumes', v, 'checkpoint'), 'utf8')) as { group?: string; groupPoint?: number };
      assert.deepEqual([held.group, String(held.groupPoint)], ['erp', point], `${v}'s checkpoint`);
    }

    // wal leaves: the secondary's reload, then the primary's. Not while the group's checkpoint is held:
    // the grouping stays, and says why, until it is released and the node reloaded again.
    fs.writeFileSync(p.b.configFile, fs.readFileSync(p.b.configFile, 'utf8').replace('erp: [db, wal, logs]', 'erp: [db, logs]'));
    const from = p.b.log.length;
    assert.equal((await cli(p.b, 'reload')).code, 0);
    await waitFor('the regroup refused', () =>
      /consistency group erp: not regrouped: a checkpoint or drill is held on db, wal, logs/.test(p.b.log.slice(from)));
    assert.equal((await cli(p.b, 'checkpoint', 'create', 'wal', '--label', 'x')).code, 1, 'wal is still a member');
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'erp')).code, 0);
    await regroup(p.b, 'db, logs', ['db', 'wal', 'logs'], 'secondary');
    await regroup(p.a, 'db, logs', ['db', 'wal', 'logs'], 'primary');
    await writeAll(0x30, '8M');
    await p.drained();
    const solo = await cli(p.b, 'checkpoint', 'create', 'wal', '--label', 'solo');
    assert.equal(solo.code, 0, solo.stderr);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'wal')).code, 0);

    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    for (const v of ['db', 'wal', 'logs']) {
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(p.a.dir, `${v}.img`), path.join(p.b.dir, `${v}.img`)]);
    }
  } finally {
    await p.stop();
  }
});
