// Wrong fingerprint, two primaries, size mismatch: refused with a clear message on
// both sides, and nothing reaches the other volume.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { statusOf } from '../helpers/daemon.js';
import { startPair, type PairOptions } from '../helpers/pair.js';
import { must, sleep } from '../helpers/run.js';

async function refused(opts: PairOptions, a: RegExp, b: RegExp): Promise<void> {
  const p = await startPair(opts);
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 1M', '-c', 'flush', p.a.uri('db')]);
    for (let i = 0; i < 200 && !(a.test(p.a.log) && b.test(p.b.log)); i++) await sleep(100);
    assert.match(p.a.log, a);
    assert.match(p.b.log, b);
    assert.equal((await statusOf(p.a)).volumes[0]!.link, 'disconnected');
    // Nothing written at site-b: its volume file holds no data and its receive log no record.
    const img = fs.readFileSync(path.join(p.b.dir, 'db.img'));
    assert.ok(img.every((x) => x === 0), 'site-b volume untouched');
    const recv = path.join(p.b.dir, 'state', 'volumes', 'db', 'receive');
    const segBytes = fs.existsSync(recv) ? fs.readdirSync(recv).filter((f) => f.endsWith('.seg')).reduce((n, f) => n + fs.statSync(path.join(recv, f)).size, 0) : 0;
    assert.ok(segBytes <= 64, `site-b receive log holds ${segBytes} bytes`);
  } finally {
    await p.stop();
  }
}

test('an unknown fingerprint is refused during the handshake, logged on both sides', async () => {
  await refused({ wrongPinAtB: true, size: '16MiB' },
    /link to site-b dropped before its Hello: does site-b pin this node's fingerprint/,
    /link from 127\.0\.0\.1:\d+ refused: certificate [0-9A-F:]{95} is not a configured peer/);
});

test('two primaries are refused with the demote advice', async () => {
  await refused({ roleB: 'primary', size: '16MiB' }, /volume db is primary on both nodes/, /volume db is primary on both nodes/);
});

test('a size mismatch is refused and says both sizes', async () => {
  await refused({ size: '16MiB', sizeB: '32MiB' }, /volume db is 16777216 bytes here and 33554432 bytes on site-b/,
    /site-a refused the link: volume db is 16777216 bytes here and 33554432 bytes on site-b; the sizes must match \(size\)/);
});
