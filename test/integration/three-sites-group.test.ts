// A consistency group across three sites (docs/GROUPS.md, docs/PEERS.md): volumes db
// and wal in group erp at site-a, site-b and site-c (a set of three). site-a writes
// dependent pairs through qemu-io, as a database writes its log and then its data: the
// log block of step i, a flush, the data block of step i, a flush. Its link to site-b is
// capped (1 Mbit/s), so site-b is behind, each member by its own amount, when site-a is
// killed (-9) part-way; `offsite promote erp` at site-b must bring both members to one
// group point (no data block without its log block); site-c follows site-b with both members and is
// sent what differs; site-a returns, `offsite demote erp` makes both members follow
// site-b, and every site's members end identical (qemu-img compare over NBD).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { OFFSITE_BIN, statusOf, type TestDaemon } from '../helpers/daemon.js';
import { assertIdentical } from '../helpers/images.js';
import { must, run, sleep, tempDir, waitFor } from '../helpers/run.js';
import { startTrio } from '../helpers/trio.js';

const BLOCK = 4096;
/** Dependent steps written at most (each step's blocks hold its number, 1..STEPS). */
const STEPS = 240;

/** Step i writes block i of wal (the log) and flushes, then block i of db (the data) and flushes. */
async function step(d: TestDaemon, i: number): Promise<boolean> {
  for (const volume of ['wal', 'db']) {
    const r = await run('qemu-io', ['-f', 'raw', '-c', `write -P ${i} ${i * BLOCK} ${BLOCK}`, '-c', 'flush', d.uri(volume)], { timeoutMs: 20_000 });
    if (r.code !== 0) return false;
  }
  return true;
}

/** The step number each of the first STEPS + 1 blocks of `volume` at `d` holds (0: never written). */
async function steps(d: TestDaemon, volume: string, dir: string): Promise<number[]> {
  const file = path.join(dir, `${volume}-${Date.now()}.raw`);
  await must('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', d.uri(volume), file], { timeoutMs: 120_000 });
  const fd = fs.openSync(file, 'r');
  const image = Buffer.alloc((STEPS + 1) * BLOCK);
  fs.readSync(fd, image, 0, image.length, 0);
  fs.closeSync(fd);
  fs.rmSync(file);
  return Array.from({ length: STEPS + 1 }, (_, b) => {
    const v = image[b * BLOCK]!;
    assert.ok(image.subarray(b * BLOCK, (b + 1) * BLOCK).every((x) => x === v), `${volume} block ${b} is torn`);
    return v;
  });
}

/**
 * The members at `d` come from one moment of site-a's dependent writes: each holds the
 * steps 1..n in order and nothing after (a prefix), and db holds no step whose log
 * block wal lacks. Returns how many steps each holds.
 */
async function assertOneMoment(d: TestDaemon, where: string, dir: string): Promise<{ wal: number; db: number }> {
  const [wal, db] = [await steps(d, 'wal', dir), await steps(d, 'db', dir)];
  const prefix = (s: number[]): number => {
    let n = 0;
    while (n + 1 <= STEPS && s[n + 1] === n + 1) n++;
    for (let b = n + 1; b <= STEPS; b++) assert.equal(s[b], 0, `${where}: block ${b} holds step ${s[b]} past the first ${n} steps`);
    return n;
  };
  const held = { wal: prefix(wal), db: prefix(db) };
  assert.ok(held.db <= held.wal, `${where}: db holds ${held.db} steps but wal only ${held.wal}: the data is ahead of its log`);
  assert.ok(held.db >= held.wal - 1, `${where}: wal holds ${held.wal} steps, db ${held.db}: a step's two writes are one flush apart`);
  return held;
}

async function assertMembersIdentical(x: TestDaemon, y: TestDaemon, message: string): Promise<void> {
  for (const v of ['db', 'wal']) await assertIdentical(x.uri(v), y.uri(v), { message: `${v}: ${message}` });
}

test('three sites, a consistency group: site-a lost under dependent writes, promote erp at site-b keeps both members at one group point; ' +
  'site-c follows with both, site-a returns demoted, all converge', async (ctx) => {
  const t = await startTrio({ set: true, group: true, size: '64MiB', peerKeys: { 'site-b': 'rate: 1mbit' } });
  const dir = tempDir('group3');
  try {
    // Some data in both members first, everywhere.
    for (const v of ['db', 'wal']) await must('qemu-io', ['-f', 'raw', '-c', `write -P 0xee 8M 256k`, '-c', 'flush', t.a.uri(v)]);
    await t.drained(120_000);
    await assertMembersIdentical(t.a, t.b, 'site-b before the loss');
    await assertMembersIdentical(t.a, t.c, 'site-c before the loss');

    // Dependent writes at site-a, killed part-way.
    let written = 0;
    const writer = (async () => {
      for (let i = 1; i <= STEPS; i++) {
        if (!await step(t.a, i)) return;
        written = i;
      }
    })();
    await waitFor('site-a to write a third of the steps', () => written >= STEPS / 3, 120_000, 20);
    // Shipping paused for the last steps before the loss: the secondaries lack them whatever
    // pace the writer keeps (on a loaded machine site-b once kept up through its 1mbit cap).
    for (const v of ['db', 'wal']) await must(process.execPath, [OFFSITE_BIN, 'pause', v, '-c', t.a.configFile]);
    const paused = written;
    await waitFor('site-a to write five more steps while paused', () => written >= paused + 5, 120_000, 20);
    await t.a.kill9();
    await writer;
    assert.ok(written < STEPS, 'site-a was killed before the writer ended');

    // A member alone is not promoted: the group is.
    const alone = await run(process.execPath, [OFFSITE_BIN, 'promote', 'db', '-c', t.b.configFile]);
    assert.notEqual(alone.code, 0, `promote of a member alone: ${alone.stdout}`);
    assert.match(alone.stdout + alone.stderr, /erp/);
    const promoted = await must(process.execPath, [OFFSITE_BIN, 'promote', 'erp', '-c', t.b.configFile]);
    ctx.diagnostic(promoted.trim());
    const atB = await assertOneMoment(t.b, 'site-b after promote erp', dir);
    ctx.diagnostic(`site-a wrote ${written} steps before its loss; site-b promoted with wal ${atB.wal}, db ${atB.db}`);
    // (Shipping paused before the loss: the promote is of a point before the last step, not the end of the stream.)
    assert.ok(atB.wal < written, `site-b holds all ${written} steps though shipping was paused before the last five`);
    for (const v of (await statusOf(t.b)).volumes) assert.equal(v.role, 'primary', `${v.name} at site-b`);

    // site-c follows site-b with both members; site-b writes on.
    for (const v of ['db', 'wal']) await must('qemu-io', ['-f', 'raw', '-c', `write -P 0x42 32M 2M`, '-c', 'flush', t.b.uri(v)]);
    await waitFor('site-c to follow site-b with both members', () =>
      ['db', 'wal'].every((v) => new RegExp(`volume ${v}: site-b is primary with a journal this replica never followed`).test(t.c.log)), 60_000);
    await t.drained(180_000, 'site-b', ['site-c']);
    await assertMembersIdentical(t.b, t.c, 'site-c after following site-b');
    for (const v of (await statusOf(t.c)).volumes) assert.deepEqual([v.name, v.role, v.peer], [v.name, 'secondary', 'site-b']);

    // site-a returns, is demoted as a group, and both members follow site-b.
    await t.a.start();
    await waitFor('site-a to be told of the promote', () =>
      /site-b was promoted after this node's last write|follows a primary promoted after this node's last write/.test(t.a.log), 60_000);
    const demoted = await must(process.execPath, [OFFSITE_BIN, 'demote', 'erp', '-c', t.a.configFile]);
    ctx.diagnostic(demoted.trim());
    for (const v of ['db', 'wal']) await must('qemu-io', ['-f', 'raw', '-c', `write -P 0x43 40M 1M`, '-c', 'flush', t.b.uri(v)]);
    await t.drained(180_000, 'site-b');
    await assertMembersIdentical(t.b, t.a, 'site-a after its demote');
    await assertMembersIdentical(t.b, t.c, 'site-c after site-a joined');
    // Both members still hold site-b's moment of the steps, and what came after.
    await assertOneMoment(t.a, 'site-a after its demote', dir);
  } finally {
    await t.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    await sleep(0);
  }
});
