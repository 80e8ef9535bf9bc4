// Failover and failback end to end (issue 7), with a real ext4 filesystem: the
// primary is killed (-9), the secondary is promoted through the CLI and mounted
// read-write (the journal replays, e2fsck is clean, the flushed files are there),
// more is written there; the old primary comes back, is refused as a second
// primary, is demoted, and converges to the new primary's content. Then split
// brain: both sides written apart is detected, nothing is overwritten until the
// operator chooses, and --discard-my-data resolves it. Root only.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FuseLoop, requireRoot } from '../helpers/ext4.js';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair, type Pair } from '../helpers/pair.js';
import { must, run, sleep } from '../helpers/run.js';
import { assertIdentical, fileSha } from '../helpers/images.js';
import { cli, exportHash } from '../helpers/cli.js';

interface VolumeView { link: string; role: string; backlogBytes: number; consistent: boolean; resyncing: boolean; generation: string[] }

async function view(d: TestDaemon): Promise<VolumeView> {
  return (await statusOf(d)).volumes[0] as unknown as VolumeView;
}

/** Waits until `primary` and `secondary` are linked, nothing is pending and the secondary is consistent. */
async function converged(primary: TestDaemon, secondary: TestDaemon, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [p, s] = [await view(primary).catch(() => null), await view(secondary).catch(() => null)];
    if (p && s && p.link === 'connected' && p.backlogBytes === 0 && !p.resyncing && s.backlogBytes === 0 && !s.resyncing && s.consistent) return;
    if (Date.now() > deadline) {
      throw new Error(`not converged: ${JSON.stringify(p)} ${JSON.stringify(s)}\n${primary.log.slice(-2500)}\n${secondary.log.slice(-2500)}`);
    }
    await sleep(250);
  }
}

/** Mounts the export read-write, runs f on the mount point, unmounts. */
async function onExt4(d: TestDaemon, f: (mnt: string) => void | Promise<void>, mkfs = false): Promise<void> {
  const fl = await FuseLoop.attach(d.uri('db'), d.dir);
  const mnt = path.join(d.dir, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  try {
    if (mkfs) await must('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', fl.loop]);
    await must('mount', [fl.loop, mnt]);
    try {
      await f(mnt);
    } finally {
      await must('umount', [mnt]);
    }
    const fsck = await run('e2fsck', ['-fn', fl.loop]);
    assert.equal(fsck.code, 0, `e2fsck after unmount: ${fsck.stdout}${fsck.stderr}`);
  } finally {
    await fl.detach();
  }
}


function writeFiles(mnt: string, prefix: string, n: number): Map<string, string> {
  const out = new Map<string, string>();
  fs.mkdirSync(path.join(mnt, prefix), { recursive: true });
  for (let i = 0; i < n; i++) {
    const rel = path.join(prefix, `f${i}.bin`);
    fs.writeFileSync(path.join(mnt, rel), crypto.randomBytes(20_000 + i * 1000));
    out.set(rel, fileSha(path.join(mnt, rel)));
  }
  return out;
}

test('failover and failback: kill -9 the primary, promote, write there, demote the old primary, converge', async () => {
  requireRoot();
  const p: Pair = await startPair({ size: '128MiB' });
  try {
    let set1 = new Map<string, string>();
    await onExt4(p.a, (mnt) => {
      set1 = writeFiles(mnt, 'set1', 40);
    }, true);
    await p.drained(120_000);
    const before = await view(p.b);

    // While the primary is linked, promote is refused and says why.
    const early = await cli(p.b, 'promote', 'db');
    assert.equal(early.code, 1);
    assert.match(early.stderr, /refused to promote db: its primary on site-a is still connected/);

    await p.a.kill9();
    for (let i = 0; i < 300 && (await view(p.b)).link === 'connected'; i++) await sleep(100);
    const promoted = await cli(p.b, 'promote', 'db');
    assert.equal(promoted.code, 0, promoted.stderr);
    assert.match(promoted.stdout, /volume db promoted: primary on this node, read-write, generation [0-9a-f]{16}; applied up to record \d+.*took \d+ ms/);
    const after = await view(p.b);
    assert.equal(after.role, 'primary');
    assert.notEqual(after.generation[0], before.generation[0], 'a new generation');
    assert.equal(after.generation[1], before.generation[0], 'the old one is its history');

    // The promoted export: read-write, the flushed files intact, more written there.
    let set2 = new Map<string, string>();
    await onExt4(p.b, (mnt) => {
      for (const [rel, h] of set1) assert.equal(fileSha(path.join(mnt, rel)), h, rel);
      set2 = writeFiles(mnt, 'set2', 20);
      fs.rmSync(path.join(mnt, 'set1', 'f0.bin'));
    });

    // The old primary returns: refused as a second primary, told to demote.
    await p.a.start();
    for (let i = 0; i < 300 && !p.a.log.includes('fail back with'); i++) await sleep(100);
    assert.match(p.a.log, /primary on both nodes: site-b was promoted after this node's last write \(failover\); fail back with `offsite demote db` here/);
    const demoted = await cli(p.a, 'demote', 'db');
    assert.equal(demoted.code, 0, demoted.stderr);
    assert.match(demoted.stdout, /volume db demoted: secondary on this node, read-only; .*compared by hash/);

    // It converges to the new primary's content, sending only what differs.
    await converged(p.b, p.a);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    const sb = (await statusOf(p.b)).volumes[0] as unknown as { resyncSeededBytes: number; resyncBytes: number };
    assert.ok(sb.resyncSeededBytes > 64 << 20, `most regions were equal and did not travel (${sb.resyncSeededBytes} bytes)`);

    // And the way back: demote site-b, promote site-a; site-a's filesystem has everything.
    assert.equal((await cli(p.b, 'demote', 'db')).code, 0);
    const back = await cli(p.a, 'promote', 'db');
    assert.equal(back.code, 0, back.stderr);
    await onExt4(p.a, (mnt) => {
      for (const [rel, h] of set2) assert.equal(fileSha(path.join(mnt, rel)), h, rel);
      assert.ok(!fs.existsSync(path.join(mnt, 'set1', 'f0.bin')));
    });
    await converged(p.a, p.b);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
  } finally {
    await p.stop();
  }
});

test('split brain resolved after the new primary\'s journal overflowed: the old primary\'s own writes are replaced, not kept', async () => {
  // The old primary wrote at 40 MiB after its peer went (never shipped); the promoted
  // site then wrote more than its journal holds, so it tracks by its dirty bitmap when
  // the old primary comes back and is demoted with --discard-my-data (a split brain). The bitmap says nothing of 40 MiB: the demoted
  // replica must still be compared everywhere (docs/RESYNC.md, "Who gets one").
  const p: Pair = await startPair({ size: '64MiB', journal: '8MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 64M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(120_000);
    await p.b.kill9();
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0xee 40M 1M', '-c', 'flush', p.a.uri('db')]);
    await p.a.kill9();
    await p.b.start();
    const promoted = await cli(p.b, 'promote', 'db');
    assert.equal(promoted.code, 0, promoted.stderr);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 16M', '-c', 'flush', p.b.uri('db')]);
    for (let i = 0; i < 100 && !p.b.log.includes('dirty-bitmap tracking'); i++) await sleep(100);
    assert.match(p.b.log, /journal full: .*switched to dirty-bitmap tracking/, 'the new primary\'s journal overflowed');
    // Both wrote apart: a split brain, which the operator resolves for the promoted site.
    await p.a.start();
    for (let i = 0; i < 300 && !p.a.log.includes('split brain'); i++) await sleep(100);
    assert.match(p.a.log, /split brain/);
    const demoted = await cli(p.a, 'demote', 'db', '--discard-my-data');
    assert.equal(demoted.code, 0, demoted.stderr);
    await converged(p.b, p.a);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'), { message: 'the demoted replica holds the new primary\'s image, its own write at 40 MiB replaced' });
    const sb = (await statusOf(p.b)).volumes[0] as unknown as { resyncSeededBytes: number };
    assert.ok(sb.resyncSeededBytes > 32 << 20, `regions equal by hash did not travel (${sb.resyncSeededBytes} bytes)`);
  } finally {
    await p.stop();
  }
});

test('split brain: both sides written apart is detected, nothing is overwritten, --discard-my-data resolves it', async () => {
  const p = await startPair({ size: '32MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 8M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    // The link breaks: site-b stops. site-a keeps writing (a new generation).
    await p.b.stop();
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0xaa 0 1M', '-c', 'flush', p.a.uri('db')]);
    await p.a.stop();
    // site-b is promoted meanwhile and written too.
    await p.b.start();
    assert.equal((await cli(p.b, 'promote', 'db')).code, 0);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0xbb 4M 1M', '-c', 'flush', p.b.uri('db')]);
    const [ha, hb] = [await exportHash(p.a.uri('db'), p.a.dir).catch(() => ''), await exportHash(p.b.uri('db'), p.b.dir)];
    await p.a.start();
    const ha2 = await exportHash(p.a.uri('db'), p.a.dir);
    assert.ok(ha === '' || ha === ha2);
    for (let i = 0; i < 300 && !p.a.log.includes('split brain'); i++) await sleep(100);
    assert.match(p.a.log, /split brain: primary on both nodes, and both took writes while apart \(generations [0-9a-f]+ here, [0-9a-f]+ on site-b; this node has [0-9.]+ [KM]iB of changes its peer never received, site-b has [0-9.]+ [KM]iB of changes its peer never received\)/);
    // Demoting without discarding still meets a split brain: the secondary has writes the primary lacks.
    assert.equal((await cli(p.a, 'demote', 'db')).code, 0);
    for (let i = 0; i < 300 && !/the secondary \(this node\) took writes/.test(p.a.log); i++) await sleep(100);
    assert.match(p.a.log, /split brain: the secondary \(this node\) took writes the primary \(site-b\) never saw/);
    await sleep(1000);
    assert.equal(await exportHash(p.a.uri('db'), p.a.dir), ha2, 'nothing overwritten until the operator decides');
    assert.equal(await exportHash(p.b.uri('db'), p.b.dir), hb);
    // The operator keeps site-b's data.
    const d = await cli(p.a, 'demote', 'db', '--discard-my-data');
    assert.equal(d.code, 0, d.stderr);
    await converged(p.b, p.a);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    assert.equal(await exportHash(p.a.uri('db'), p.a.dir), hb);
  } finally {
    await p.stop();
  }
});

test('failback: auto: the old primary demotes itself when it finds its peer was promoted, and converges', async () => {
  const p = await startPair({ size: '32MiB', volumeKeysA: 'failback: auto' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 8M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    // Writes the secondary may or may not have received when site-a dies.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 8M 1M', p.a.uri('db')]);
    await p.a.kill9();
    for (let i = 0; i < 300 && (await view(p.b)).link === 'connected'; i++) await sleep(100);
    assert.equal((await cli(p.b, 'promote', 'db')).code, 0);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x23 16M 1M', '-c', 'flush', p.b.uri('db')]);
    await p.a.start();
    await converged(p.b, p.a);
    assert.match(p.a.log, /failback: auto demotes it here/);
    assert.equal((await view(p.a)).role, 'secondary');
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    const back = await must('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x23 16M 1M', '-c', 'read -P 0x21 0 8M', p.a.uri('db')]);
    assert.doesNotMatch(back, /Pattern verification failed/);
  } finally {
    await p.stop();
  }
});
