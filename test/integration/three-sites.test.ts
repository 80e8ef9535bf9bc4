// One primary, two secondaries (docs/PEERS.md), three real daemons on loopback, host
// I/O through real clients (qemu-io, fio's nbd engine): writes at site-a reach both
// replicas; a long outage of one secondary sends it to a bitmap of its own while the
// other stays current, and it is resynced by that bitmap when it returns; kill -9 of
// each site in turn converges; so does a crash of site-a while a peer is detached, and
// a peer on a slow link detached while linked; site-a lost and site-b promoted, site-c
// follows site-b sent what differs, keeping its restore points (a checkpoint of one from
// before the failover is site-a's image then), and site-a returns, is demoted and follows too.
// Every test ends with the three images compared byte for byte (qemu-img compare over
// NBD; the first also the files).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { OFFSITE_BIN, statusOf, type TestDaemon } from '../helpers/daemon.js';
import { assertIdentical, fileSha } from '../helpers/images.js';
import { readBitmap } from '../helpers/journal-inspect.js';
import { must, run, sleep, tempDir, waitFor } from '../helpers/run.js';
import { startTrio, type Trio } from '../helpers/trio.js';
import { cli, exportHash } from '../helpers/cli.js';

const MiB = 1024 * 1024;
/** The volume's bitmap region (bitmap_region's default). */
const REGION = 64 * 1024;

/** Fails unless both replicas read back byte for byte as site-a's volume (qemu-img compare over NBD). */
async function assertAllIdentical(t: Trio, message: string): Promise<void> {
  await assertIdentical(t.a.uri('db'), t.b.uri('db'), { message: `site-b: ${message}` });
  await assertIdentical(t.a.uri('db'), t.c.uri('db'), { message: `site-c: ${message}` });
}

/** fio's nbd engine at `d`'s db, with these job options. */
function fioRun(d: TestDaemon, ...job: string[]): ReturnType<typeof run> {
  return run('fio', ['--name=w', '--ioengine=nbd', `--uri=${d.uri('db')}`, '--output-format=terse', ...job], { timeoutMs: 180_000 });
}

/** fioRun, and fails the test if fio does. */
async function fio(d: TestDaemon, ...job: string[]): Promise<void> {
  const r = await fioRun(d, ...job);
  assert.equal(r.code, 0, `fio ${job.join(' ')}: ${r.stderr}`);
}

test('three sites: writes at site-a reach site-b and site-c, identical replicas', async () => {
  const t = await startTrio();
  try {
    // Patterned writes, each run flushed, then scattered random writes verified by fio itself.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 8M', '-c', 'write -P 0xa5 20M 3M', '-c', 'write -z 21M 64k', '-c', 'flush', t.a.uri('db')]);
    await fio(t.a, '--rw=randwrite', '--bs=16k', '--iodepth=16', '--offset=32M', '--size=32M', '--randseed=31', '--verify=crc32c');
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 127M 1M', '-c', 'flush', t.a.uri('db')]);
    await t.drained();
    await assertAllIdentical(t, 'after qemu-io and fio at site-a');
    // site-a lists both secondaries, each current; each secondary names site-a and holds what site-a says it acked.
    const sa = (await statusOf(t.a)).volumes[0]!;
    assert.deepEqual(sa.peers.map((p) => [p.name, p.link, p.backlogBytes, p.backlogRecords, p.resyncing]),
      [['site-b', 'connected', 0, 0, false], ['site-c', 'connected', 0, 0, false]]);
    for (const [i, d] of [t.b, t.c].entries()) {
      const own = (await statusOf(d)).volumes[0]!.peers;
      assert.deepEqual(own.map((p) => [p.name, p.link]), [['site-a', 'connected']]);
      const acked = sa.peers[i]!.ackedSeq;
      assert.ok(acked > 0 && acked === own[0]!.ackedSeq, `site-a says ${sa.peers[i]!.name} acked ${acked}; it holds ${own[0]!.ackedSeq}`);
    }
    // A first sync of its own for each, compared by hash (docs/PEERS.md): one waited for the
    // other's, nothing was sent whole to every peer.
    for (const peer of ['site-b', 'site-c']) {
      assert.equal(t.a.log.match(new RegExp(`volume db: first sync of ${peer} alone from record \\d+: the volume \\(128(\\.0)? MiB\\) ` +
        'will be compared with its replica by hash', 'g'))?.length, 1, t.a.log);
    }
    assert.match(t.a.log, /volume db: site-[bc]'s first sync waits for the resync round of site-[bc] to end; it begins then/);
    assert.doesNotMatch(t.a.log, /will be sent to every peer/);
    // offsite status: both in the PEER column, a line for each (docs/PEERS.md).
    const text = (await must(process.execPath, [OFFSITE_BIN, 'status', '-c', t.a.configFile], { env: { ...process.env, NO_COLOR: '1' } })).split('\n');
    assert.ok(text.some((l) => /^db\s+primary\s+\S+ \S+\s+site-b,site-c\s+connected/.test(l)), text.join('\n'));
    assert.ok(text.includes('  to site-c: connected; backlog 0 B, lag 0 s, acked record ' + sa.peers[1]!.ackedSeq), text.join('\n'));
    // The dashboard in headless Chromium: a badge and a line for each secondary, and no error on the page.
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
      await page.goto(`http://127.0.0.1:${t.a.apiPort}/`);
      await page.getByTestId('role-db').filter({ hasText: 'replicates to site-b and site-c' }).waitFor();
      await page.getByTestId('link-db').filter({ hasText: /^up to site-b; up to site-c/ }).waitFor();
      const volume = page.getByTestId('volume-db');
      for (const b of ['site-b up', 'site-c up']) await volume.getByText(b, { exact: true }).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
    // And the files themselves, once each daemon stopped cleanly.
    for (const d of [t.a, t.b, t.c]) assert.equal(await d.stop(), 0);
    const [ha, hb, hc] = [t.a, t.b, t.c].map((d) => fileSha(path.join(d.dir, 'db.img')));
    assert.deepEqual([hb, hc], [ha, ha], 'db.img at site-b and site-c as at site-a');
  } finally {
    await t.stop();
  }
});

test('three sites: site-c down through more than the journal goes to its own bitmap, site-b stays current, site-c resyncs by a round of its own', async () => {
  const t = await startTrio({ size: '256MiB', journal: '16MiB' });
  const peerFile = path.join(t.volumeStateA, 'dirty.site-c.bitmap');
  try {
    await t.drained();
    const overflowsBefore = (await statusOf(t.a)).volumes[0]!.overflows;
    const logFrom = t.a.log.length;
    await t.c.kill9();
    // 40 MiB, more than the 16 MiB journal, sequential from 64 MiB; at 4 MiB/s so that
    // site-b keeps up (the journal holds site-c's records until site-c is detached).
    const [from, bytes] = [64 * MiB, 40 * MiB];
    await fio(t.a, '--rw=write', '--bs=256k', '--iodepth=4', `--offset=${from}`, `--size=${bytes}`, '--rate=4m', '--end_fsync=1');
    await waitFor('site-b current at site-a while site-c is down', async () => {
      const peers = (await statusOf(t.a)).volumes[0]!.peers;
      const [b, c] = [peers.find((p) => p.name === 'site-b'), peers.find((p) => p.name === 'site-c')];
      return b?.link === 'connected' && b.backlogBytes === 0 && c?.link === 'disconnected';
    }, 60_000);
    const during = t.a.log.slice(logFrom);
    const detached = new RegExp(String.raw`volume db: site-c is [\d.]+ \w+ behind \(journal [^)]*\); ` +
      String.raw`its changes from record \d+ on are kept in its own bitmap, and site-b keep streaming`);
    assert.match(during, detached, `site-a's log after site-c's kill:\n${during.slice(-3000)}`);
    // The volume itself stayed on the journal: site-b was never turned into resync rounds.
    assert.doesNotMatch(during, /switched to dirty-bitmap tracking/);
    const sa = (await statusOf(t.a)).volumes[0]!;
    assert.deepEqual([sa.tracking, sa.overflows], ['journal', overflowsBefore]);
    // site-c lacks every byte written since its kill: in its bitmap, or in the journal after what is marked there.
    const c = sa.peers.find((p) => p.name === 'site-c')!;
    assert.ok(c.backlogBytes >= bytes, `site-c's backlog at site-a is ${c.backlogBytes} bytes; ${bytes} were written since it went`);
    assert.ok(fs.existsSync(peerFile), `${peerFile} exists while site-c is detached`);
    // site-b is current meanwhile: its replica reads back as site-a's volume.
    await assertIdentical(t.a.uri('db'), t.b.uri('db'), { message: 'site-b while site-c is down' });
    // Its bitmap marks only regions written since the kill, and at least what left the journal.
    const copy = tempDir('peer-bitmap');
    fs.mkdirSync(path.join(copy, 'volumes', 'db'), { recursive: true });
    fs.copyFileSync(peerFile, path.join(copy, 'volumes', 'db', 'dirty.site-c.bitmap'));
    const marked = await readBitmap(copy, 'db', 256 * MiB, REGION, 'dirty.site-c.bitmap');
    fs.rmSync(copy, { recursive: true, force: true });
    const outside = marked.filter((r) => r < from / REGION || r >= (from + bytes) / REGION);
    assert.deepEqual(outside, [], 'regions marked for site-c that were not written while it was down');
    assert.ok(marked.length * REGION >= bytes - 16 * MiB, `site-c's bitmap marks ${marked.length} regions; the journal holds 16 MiB at most`);

    const rejoinFrom = t.a.log.length;
    const bFrom = t.b.log.length;
    await t.c.start();
    await t.drained(120_000);
    await assertAllIdentical(t, 'after site-c came back');
    // site-c comes back by a round of its own bitmap (docs/PEERS.md, "Rounds for one peer"); site-b is sent padding.
    const after = t.a.log.slice(rejoinFrom);
    const own = /resync round of site-c alone from record \d+: [\d.]+ \w+ in (\d+) regions to send; the other peers keep streaming/.exec(after);
    assert.ok(own, `site-a's log after site-c's return:\n${after.slice(-3000)}`);
    assert.ok(Number(own[1]) >= marked.length, `${own[1]} regions in site-c's round; ${marked.length} were marked before site-c came back`);
    assert.match(after, /resync round of site-c from record \d+ is complete at record \d+/);
    assert.doesNotMatch(after, /switched to dirty-bitmap tracking/, 'no fold: site-b streamed on');
    assert.doesNotMatch(t.b.log.slice(bFrom), /resync round from record \d+ opened/, 'site-b never entered a round');
    assert.ok(!fs.existsSync(peerFile), 'site-c is attached again: its bitmap file is gone');
  } finally {
    await t.stop();
  }
});

test('three sites: kill -9 of site-a, then site-b, then site-c, under writes: all three converge each time', async () => {
  const t = await startTrio({ journal: '64MiB' });
  try {
    await t.drained();
    for (const [i, victim] of [t.a, t.b, t.c].entries()) {
      const name = `site-${'abc'[i]}`;
      // Random writes at 4 MiB/s for 4 s (seed 100 + i); the victim dies under them.
      const writer = fioRun(t.a, '--rw=randwrite', '--bs=64k', '--iodepth=4', `--randseed=${100 + i}`, '--time_based', '--runtime=4',
        '--rate=4m', '--size=96M');
      await sleep(1500);
      await victim.kill9();
      const w = await writer;
      if (victim !== t.a) {
        // The primary's host never notices a secondary going.
        assert.equal(w.code, 0, `fio while ${name} died: ${w.stderr}`);
        // More while it is down: the journal keeps them for it (64 MiB is room enough, it is not detached).
        await must('qemu-io', ['-f', 'raw', '-c', `write -P ${0x20 + i} ${100 + 4 * i}M 2M`, '-c', 'flush', t.a.uri('db')]);
      }
      await victim.start();
      await must('qemu-io', ['-f', 'raw', '-c', `write -P ${0x30 + i} ${112 + 4 * i}M 1M`, '-c', 'flush', t.a.uri('db')]);
      await t.drained(120_000);
      await assertAllIdentical(t, `after kill -9 of ${name}`);
    }
  } finally {
    await t.stop();
  }
});

test('three sites: site-a killed while site-c is detached; site-c\'s bitmap survives the crash and resyncs it', async () => {
  const t = await startTrio({ size: '256MiB', journal: '16MiB' });
  const peerFile = path.join(t.volumeStateA, 'dirty.site-c.bitmap');
  try {
    await t.drained();
    await t.c.kill9();
    // Random writes (seed 7) across the volume, 30 MiB, while site-c is down: it is detached.
    await fio(t.a, '--rw=randwrite', '--bs=64k', '--iodepth=4', '--randseed=7', '--size=256M', '--io_size=30M', '--rate=6m', '--refill_buffers');
    await waitFor('site-c detached', () => fs.existsSync(peerFile) && /kept in its own bitmap/.test(t.a.log), 30_000);
    // site-a dies under more writes (seed 8), its detached peer's bitmap on disk.
    const writer = fioRun(t.a, '--rw=randwrite', '--bs=64k', '--iodepth=4', '--randseed=8', '--size=256M', '--time_based', '--runtime=3', '--rate=6m');
    await sleep(1500);
    await t.a.kill9();
    await writer;
    await t.a.start();
    // At the start the bitmap joins the volume's, for a round every peer is sent (docs/PEERS.md).
    const merged = /site-c was detached from the journal before the stop; its (\d+) regions join the volume's bitmap/.exec(t.a.log);
    assert.ok(merged && Number(merged[1]) > 0, `site-a's log after its restart:\n${t.a.log.slice(-3000)}`);
    assert.ok(!fs.existsSync(peerFile), 'merged at the start: the peer bitmap file is gone');
    // site-c comes back while the host writes again (seed 9).
    const more = fioRun(t.a, '--rw=randwrite', '--bs=64k', '--iodepth=4', '--randseed=9', '--size=256M', '--time_based', '--runtime=4', '--rate=4m');
    await sleep(1000);
    await t.c.start();
    const w = await more;
    assert.equal(w.code, 0, `fio while site-c came back: ${w.stderr}`);
    await t.drained(120_000);
    await assertAllIdentical(t, 'after site-a\'s crash and site-c\'s return');
  } finally {
    await t.stop();
  }
});

test('three sites: site-c on a slow link falls behind under writes and is detached while linked; the host never notices, all converge', async () => {
  // The far copy over a slow line (docs/PEERS.md): 16mbit, uncompressed, against 6 MiB/s
  // of random writes (seed 2) over a 16 MiB journal. site-c's shipper reads records while
  // site-b's acks release them: this once stopped site-a in about one run in eight (a
  // journal read overtaken by a release returned a gap; test/unit/journal-read.test.ts).
  const t = await startTrio({ size: '256MiB', journal: '16MiB', peerKeys: { 'site-c': 'rate: 16mbit, compression: off' } });
  try {
    await t.drained();
    const logFrom = t.a.log.length;
    await fio(t.a, '--rw=randwrite', '--bs=64k', '--iodepth=4', '--randseed=2', '--size=256M', '--io_size=40M', '--rate=6m', '--refill_buffers');
    assert.match(t.a.log.slice(logFrom), /site-c is [\d.]+ \w+ behind .* kept in its own bitmap, and site-b keep streaming/);
    await t.drained(150_000);
    await assertAllIdentical(t, 'after site-c fell behind on its slow link');
  } finally {
    await t.stop();
  }
});

test('three sites: site-a lost, site-b promoted; site-c follows it, sent what differs, history kept; site-a returns, is demoted', async (ctx) => {
  const t = await startTrio({ set: true, size: '256MiB', secondaryKeys: 'history: { keep: 24h, max: 1GiB }' });
  try {
    // 96 MiB of random data at site-a, at every site.
    await fio(t.a, '--rw=write', '--bs=1M', '--size=96M', '--refill_buffers', '--randseed=41');
    await t.drained(120_000);
    // The image at t1, then 8 MiB overwritten at site-a (the secondaries' history saves what it overwrites).
    const atT1 = await exportHash(t.a.uri('db'), t.a.dir);
    await sleep(1100);
    const t1 = new Date().toISOString();
    await sleep(1100);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 8M 8M', '-c', 'flush', t.a.uri('db')]);
    await t.drained(120_000);
    await assertAllIdentical(t, 'before site-a is lost');
    // site-b and site-c name each other: their link is up and carries nothing of db (both secondary).
    for (const d of [t.b, t.c]) assert.doesNotMatch(d.log, /two-secondaries|secondary on both nodes/, d.log);

    // A backup at site-c holds a checkpoint through the failover.
    await must(process.execPath, [OFFSITE_BIN, 'checkpoint', 'create', 'db', '-c', t.c.configFile]);
    await t.a.kill9();
    const promoted = await must(process.execPath, [OFFSITE_BIN, 'promote', 'db', '-c', t.b.configFile]);
    assert.match(promoted, /volume db promoted: primary on this node/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 200M 4M', '-c', 'flush', t.b.uri('db')]);
    // site-c's receive log holds site-a's journal, but its checkpoint is kept: it waits, still serving it.
    await waitFor('site-c to wait for its checkpoint', () => /it follows site-b once checkpoint .* is released/.test(t.c.log), 60_000);
    await assertIdentical(t.c.uri('db@checkpoint'), t.c.uri('db'), { message: 'site-c\'s checkpoint and replica, both as site-a left them' });
    assert.doesNotMatch(t.c.log, /volume db: site-b is primary with a journal this replica never followed \(a failover elsewhere\); the replica stays/);
    // Released: it starts again from its last flush point as site-b's secondary.
    await must(process.execPath, [OFFSITE_BIN, 'checkpoint', 'release', 'db', '-c', t.c.configFile]);
    await waitFor('site-c to follow site-b', () =>
      /volume db: site-b is primary with a journal this replica never followed .*the replica stays/.test(t.c.log), 60_000);
    await t.drained(180_000, 'site-b', ['site-c']);
    await assertIdentical(t.b.uri('db'), t.c.uri('db'), { message: 'site-c after following site-b' });
    const sb = (await statusOf(t.b)).volumes[0]!;
    // What travelled is about what differs (the 4 MiB written at site-b), not the 96 MiB both hold.
    assert.ok(sb.resyncBytes < 16 * MiB, `site-b sent site-c ${sb.resyncBytes} bytes of resync records: ${JSON.stringify(sb)}`);
    assert.ok(sb.resyncSeededBytes >= 90 * MiB, `site-b found ${sb.resyncSeededBytes} bytes equal by hash`);
    ctx.diagnostic(`site-c follows site-b: ${sb.resyncBytes} bytes of resync records sent, ${sb.resyncSeededBytes} found equal by hash`);
    const sc = (await statusOf(t.c)).volumes[0]!;
    assert.deepEqual([sc.role, sc.peer, sc.link], ['secondary', 'site-b', 'connected']);
    // Its history kept the points from site-a's journal (docs/HISTORY.md, "After a follow"), and
    // has site-b's after them: the one at t1 opens to site-a's image then, read by nbdcopy.
    assert.match(t.c.log, /volume db: its history keeps \d+ restore points across the follow of site-b/);
    const listed = await cli(t.c, 'history', 'db');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /record \d+ of site-a\n/, listed.stdout);
    assert.match(listed.stdout, /record \d+ of site-b\n?$/, listed.stdout);
    const made = await cli(t.c, 'checkpoint', 'create', 'db', '--at', t1, '--label', 'before-failover');
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /holds the restore point of \S+ \(record \d+ of site-a\)/);
    assert.equal(await exportHash(t.c.uri('db@checkpoint'), t.c.dir), atT1, 'site-c\'s point from before the failover is site-a\'s image at t1');
    assert.equal((await cli(t.c, 'checkpoint', 'release', 'db')).code, 0);

    // site-a comes back believing it is primary: neither site-b nor site-c takes its writes.
    await t.a.start();
    await waitFor('site-a to be told of the promote', () =>
      /site-b was promoted after this node's last write|follows a primary promoted after this node's last write/.test(t.a.log), 60_000);
    const demoted = await must(process.execPath, [OFFSITE_BIN, 'demote', 'db', '-c', t.a.configFile]);
    assert.match(demoted, /volume db demoted: secondary on this node/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x43 240M 2M', '-c', 'flush', t.b.uri('db')]);
    await t.drained(180_000, 'site-b');
    await assertIdentical(t.b.uri('db'), t.a.uri('db'), { message: 'site-a after its demote' });
    await assertIdentical(t.b.uri('db'), t.c.uri('db'), { message: 'site-c after site-a joined' });
    const after = (await statusOf(t.b)).volumes[0]!;
    ctx.diagnostic(`site-a after its demote: ${after.resyncBytes - sb.resyncBytes} bytes of resync records sent, ` +
      `${after.resyncSeededBytes - sb.resyncSeededBytes} found equal by hash`);
    assert.ok(after.resyncBytes - sb.resyncBytes < 24 * MiB, `site-b sent site-a ${after.resyncBytes - sb.resyncBytes} bytes of resync records`);
    assert.deepEqual(after.peers.map((p) => [p.name, p.link]), [['site-a', 'connected'], ['site-c', 'connected']]);
  } finally {
    await t.stop();
  }
});
