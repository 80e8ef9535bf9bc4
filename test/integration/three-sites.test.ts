// One primary, two secondaries (docs/PEERS.md), three real daemons on loopback, host
// I/O through real clients (qemu-io, fio's nbd engine): writes at site-a reach both
// replicas; a long outage of one secondary sends it to a bitmap of its own while the
// other stays current, and it is resynced by that bitmap when it returns; kill -9 of
// each site in turn converges.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { assertIdentical } from '../helpers/images.js';
import { must, run } from '../helpers/run.js';
import { startTrio, type Trio } from '../helpers/trio.js';

/** Fails unless both replicas read back byte for byte as site-a's volume (qemu-img compare over NBD). */
async function assertAllIdentical(t: Trio, message: string): Promise<void> {
  await assertIdentical(t.a.uri('db'), t.b.uri('db'), { message: `site-b: ${message}` });
  await assertIdentical(t.a.uri('db'), t.c.uri('db'), { message: `site-c: ${message}` });
}

/** fio's nbd engine at `d`'s db, with these job options; fails the test if fio does. */
async function fio(d: TestDaemon, ...job: string[]): Promise<void> {
  const r = await run('fio', ['--name=w', '--ioengine=nbd', `--uri=${d.uri('db')}`, '--output-format=terse', ...job], { timeoutMs: 180_000 });
  assert.equal(r.code, 0, `fio ${job.join(' ')}: ${r.stderr}`);
}

test('three sites: writes at site-a reach site-b and site-c, identical replicas', async () => {
  const t = await startTrio();
  try {
    // Patterned writes, each run flushed, then scattered random writes verified by fio itself.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 8M', '-c', 'write -P 0xa5 20M 3M', '-c', 'write -z 21M 64k', '-c', 'flush', t.a.uri('db')]);
    await fio(t.a, '--rw=randwrite', '--bs=16k', '--iodepth=16', '--offset=32M', '--size=64M', '--randseed=31', '--verify=crc32c');
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
  } finally {
    await t.stop();
  }
});
