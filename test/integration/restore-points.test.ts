// History at the secondary (docs/HISTORY.md, invariant 8): a past flush point opens as
// VOLUME@checkpoint and as a writable drill while the replica stays current, through a
// kill -9 of the secondary; `offsite history` lists the points. Written with qemu-io,
// read whole with nbdcopy, compared with what the primary held then.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { statusOf } from '../helpers/daemon.js';
import { startPair, type Pair } from '../helpers/pair.js';
import { must, run, sleep } from '../helpers/run.js';
import { cli, exportHash } from '../helpers/cli.js';
import type { VolumeStatus } from '../../src/contract/status.js';


test('a past point opens as a checkpoint and a drill while the replica moves on, and survives kill -9', async () => {
  const p = await startPair({ size: '32MiB', volumeKeysB: 'history: { keep: 24h, max: 1GiB }' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 16M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    const before = await exportHash(p.a.uri('db'), p.a.dir);
    await sleep(1100);
    const t1 = new Date().toISOString();
    await sleep(1100);
    // The "damage": most of what was there is overwritten, and flushed.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 8M', '-c', 'write -P 0x33 12M 8M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    const after = await exportHash(p.a.uri('db'), p.a.dir);
    assert.notEqual(before, after);

    const listed = await cli(p.b, 'history', 'db');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^db: \d+ restore points, [\d.]+ \S+ of history \(keep 1 d 0 h, max 1\.0 GiB\)/m);
    const onPrimary = await cli(p.a, 'history', 'db');
    assert.equal(onPrimary.code, 1);
    assert.match(onPrimary.stderr, /runs on the node that holds the secondary/);

    const made = await cli(p.b, 'checkpoint', 'create', 'db', '--at', t1, '--label', 'before');
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /checkpoint "before" of db holds the restore point of \S+ \(record \d+\); read it at export db@checkpoint/);
    assert.equal(await exportHash(p.b.uri('db@checkpoint'), p.b.dir), before, 'the checkpoint is the image before the damage');
    assert.equal(await exportHash(p.b.uri('db'), p.b.dir), after, 'the replica stays current');

    // The replica moves on under it; the past point does not.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x44 4M 16M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    const later = await exportHash(p.a.uri('db'), p.a.dir);
    assert.equal(await exportHash(p.b.uri('db'), p.b.dir), later);
    assert.equal(await exportHash(p.b.uri('db@checkpoint'), p.b.dir), before);

    const st = await statusOf(p.b);
    const v = st.volumes[0] as unknown as VolumeStatus;
    assert.ok(v.history && v.history.points >= 3 && v.history.bytes > 16 << 20, JSON.stringify(v.history));
    assert.ok(v.checkpoint?.point, 'the checkpoint names its restore point');

    // kill -9 of the secondary: the held point opens to the same image after the start.
    await p.b.kill9();
    // And a promote --at that the kill cut after it wrote its point down, before its change
    // to primary began: the start removes the file (no later promote rolls back to it).
    const promoteAt = path.join(p.b.dir, 'state', 'volumes', 'db', 'promote-at');
    fs.writeFileSync(promoteAt, `${JSON.stringify({ version: 1, seq: 1, time: Date.parse(t1) })}\n`);
    await p.b.start();
    assert.equal(fs.existsSync(promoteAt), false, 'the stale promote-at file is removed at the start');
    assert.match(p.b.log, /volume db: removed the promote-at file of a promote to the restore point of \S+ \(record 1\) that a stop cut before it began/);
    assert.equal(await exportHash(p.b.uri('db@checkpoint'), p.b.dir), before, 'the same image after kill -9');
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'db')).code, 0);

    // A drill over the same point: writable, its writes its own, the replica untouched.
    const drill = await cli(p.b, 'drill', 'start', 'db', '--at', t1);
    assert.equal(drill.code, 0, drill.stderr);
    assert.equal(await exportHash(p.b.uri('db@drill'), p.b.dir), before);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 1M', '-c', 'flush', p.b.uri('db@drill')]);
    const r = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x55 0 1M', '-c', 'read -P 0x11 1M 1M', p.b.uri('db@drill')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /Pattern verification failed/);
    assert.equal((await cli(p.b, 'drill', 'stop', 'db')).code, 0);
    assert.equal(await exportHash(p.b.uri('db'), p.b.dir), later);

    // A time before the history begins is refused with how far back it reaches.
    const early = await cli(p.b, 'checkpoint', 'create', 'db', '--at', '2020-01-01T00:00:00Z');
    assert.equal(early.code, 1);
    assert.match(early.stderr, /no restore point at or before 2020-01-01T00:00:00\.000Z: its history reaches back to /);
    const bad = await cli(p.b, 'checkpoint', 'create', 'db', '--at', 'last tuesday');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /"last tuesday" is not a time/);

    // The recovery after ransomware: site-a is lost; site-b is promoted at the point
    // before the damage and serves that image read-write.
    await p.a.kill9();
    const promoted = await cli(p.b, 'promote', 'db', '--at', t1);
    assert.equal(promoted.code, 0, promoted.stderr);
    assert.match(promoted.stdout,
      new RegExp('volume db promoted: primary on this node, read-write, generation \\S+; ' +
        'rolled back to the restore point of \\S+ \\(record \\d+\\), [\\d.]+ MiB of later changes undone'));
    assert.equal(await exportHash(p.b.uri('db'), p.b.dir), before, 'the promoted volume is the image before the damage');
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 1M', '-c', 'flush', p.b.uri('db')]);
    const st2 = await statusOf(p.b);
    assert.equal((st2.volumes[0] as unknown as VolumeStatus).history, null, 'a primary keeps no history');
  } finally {
    await p.stop();
  }
});

/** A pair with consistency group erp of db and wal, both keeping history at site-b. */
function startGroupPair(): ReturnType<typeof startPair> {
  const wal = (peer: string, role: string, keys = ''): string =>
    `  wal: { path: ./wal.img, size: 16MiB, role: ${role}, peer: ${peer}, journal: 256MiB${keys} }\ngroups:\n  erp: [db, wal]\n`;
  const history = 'history: { keep: 24h, max: 1GiB }';
  return startPair({
    size: '16MiB', volumeKeysB: history, nodeKeysA: wal('site-b', 'primary'), nodeKeysB: wal('site-a', 'secondary', `, ${history}`),
  });
}

test('a consistency group opens at one past group point: a checkpoint and a drill of erp --at', async () => {
  const p = await startGroupPair();
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 8M', '-c', 'flush', p.a.uri('db')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x12 0 8M', '-c', 'flush', p.a.uri('wal')]);
    await p.drained();
    await sleep(2500); // (a group point after both flushes: the cadence makes one at least every second)
    const before = [await exportHash(p.a.uri('db'), p.a.dir), await exportHash(p.a.uri('wal'), p.a.dir)];
    const t1 = new Date().toISOString();
    await sleep(1100);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 4M 8M', '-c', 'flush', p.a.uri('db')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 4M 8M', '-c', 'flush', p.a.uri('wal')]);
    await p.drained();
    await sleep(2500);

    const one = await cli(p.b, 'checkpoint', 'create', 'db', '--at', t1);
    assert.equal(one.code, 1, 'a member alone is refused');
    assert.match(one.stderr, /group erp/);
    const made = await cli(p.b, 'checkpoint', 'create', 'erp', '--at', t1);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /checkpoint "[^"]+" of group erp held at group point \d+, a past point of \S+, \(db at record \d+, wal at record \d+\)/);
    assert.deepEqual([await exportHash(p.b.uri('db@checkpoint'), p.b.dir), await exportHash(p.b.uri('wal@checkpoint'), p.b.dir)], before);
    assert.equal((await cli(p.b, 'checkpoint', 'release', 'erp')).code, 0);

    const drill = await cli(p.b, 'drill', 'start', 'erp', '--at', t1);
    assert.equal(drill.code, 0, drill.stderr);
    assert.deepEqual([await exportHash(p.b.uri('db@drill'), p.b.dir), await exportHash(p.b.uri('wal@drill'), p.b.dir)], before);
    assert.equal((await cli(p.b, 'drill', 'stop', 'erp')).code, 0);

    // The group's recovery to a past point: refused while site-a is linked, and before the histories begin.
    const linked = await cli(p.b, 'promote', 'erp', '--at', t1);
    assert.equal(linked.code, 1);
    assert.match(linked.stderr, /refused to promote group erp: db's primary on site-a is still connected .*Add --force/);
    const early = await cli(p.b, 'promote', 'erp', '--at', '1h ago');
    assert.equal(early.code, 1);
    assert.match(early.stderr, /no group point at or before \S+ is in the history of every member \(db's oldest is group point \d+ of \S+; wal's oldest is/);
    // site-a is lost: both members are promoted at the group point before the damage.
    await p.a.kill9();
    const promoted = await cli(p.b, 'promote', 'erp', '--at', t1);
    assert.equal(promoted.code, 0, promoted.stderr);
    assert.match(promoted.stdout, new RegExp('group erp promoted: db, wal primary on this node, read-write, rolled back to group point \\d+ of \\S+: ' +
      'db to record \\d+ \\([\\d.]+ MiB of later changes undone.*\\), wal to record \\d+ \\([\\d.]+ MiB of later changes undone'));
    await expectGroupAt(p.b, before);
  } finally {
    await p.stop();
  }
});

/** db and wal at `node` are read-write and hold the images `before` (0x11 and 0x12 over their first 8 MiB, not what came later). */
async function expectGroupAt(node: Pair['b'], before: string[]): Promise<void> {
  assert.deepEqual([await exportHash(node.uri('db'), node.dir), await exportHash(node.uri('wal'), node.dir)], before, 'both members at the earlier point');
  for (const [v, pattern] of [['db', '0x11'], ['wal', '0x12']] as const) {
    const r = await run('qemu-io', ['-f', 'raw', '-r', '-c', `read -P ${pattern} 0 8M`, node.uri(v)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /Pattern verification failed/, `${v} holds what was written before the point`);
  }
  const st = await statusOf(node);
  assert.deepEqual(st.volumes.map((v) => [v.name, (v as unknown as VolumeStatus).role]), [['db', 'primary'], ['wal', 'primary']]);
  await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 1M', '-c', 'flush', node.uri('wal')]);
}

test('a group\'s promote --at that a kill cut part-way completes on every member at the start, at the same group point', async () => {
  const p = await startGroupPair();
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 8M', '-c', 'flush', p.a.uri('db')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x12 0 8M', '-c', 'flush', p.a.uri('wal')]);
    await p.drained();
    await sleep(2500);
    const before = [await exportHash(p.a.uri('db'), p.a.dir), await exportHash(p.a.uri('wal'), p.a.dir)];
    const t1 = Date.now();
    await sleep(1100);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 4M 8M', '-c', 'flush', p.a.uri('db')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 4M 8M', '-c', 'flush', p.a.uri('wal')]);
    await p.drained();
    await sleep(2500);
    // The group point `promote erp --at t1` goes to, and each member's record of it.
    const points = async (v: string): Promise<Map<number, { seq: number; time: number }>> => {
      const r = await cli(p.b, 'history', v, '--json');
      assert.equal(r.code, 0, r.stderr);
      const h = JSON.parse(r.stdout) as { points: Array<{ seq: number; time: number; groupPoint?: number }> };
      return new Map(h.points.filter((x) => x.groupPoint !== undefined && x.time <= t1).map((x) => [x.groupPoint!, x]));
    };
    const [dbPoints, walPoints] = [await points('db'), await points('wal')];
    const gp = Math.max(...[...dbPoints.keys()].filter((k) => walPoints.has(k)));
    assert.ok(Number.isFinite(gp), 'a group point before t1 on both members');

    // site-a is lost; site-b's daemon is killed after both points were written down and
    // wal's change to primary began, before db's (db, first in the config, is opened
    // first at the start: it must see wal's change): the state the promote leaves there.
    await p.a.kill9();
    await p.b.kill9();
    const state = (v: string): string => path.join(p.b.dir, 'state', 'volumes', v);
    for (const [v, pt] of [['db', dbPoints.get(gp)!], ['wal', walPoints.get(gp)!]] as const) {
      fs.writeFileSync(path.join(state(v), 'promote-at'), `${JSON.stringify({ version: 1, seq: pt.seq, time: pt.time, group: 'erp', groupPoint: gp })}\n`);
    }
    const idFile = path.join(state('wal'), 'identity.json');
    fs.writeFileSync(idFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(idFile, 'utf8')), changing: 'primary' }));
    await p.b.start();
    assert.match(p.b.log, new RegExp(`volume db: the promote of group erp to group point ${gp} \\(the restore point of \\S+ ` +
      `\\(record ${dbPoints.get(gp)!.seq}\\)\\) began on another member before a stop; db is promoted there too`));
    await expectGroupAt(p.b, before);
  } finally {
    await p.stop();
  }
});
