// The first sync of a new pair (docs/RESYNC.md): to an empty secondary it sends the
// primary's data; to a seeded copy (a disk shipped by courier) it compares regions
// by hash and sends only those that differ. Host writes during the sync end up on
// both sides. Counted bytes, not time.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { statusOf } from '../helpers/daemon.js';
import { startPair, type Pair } from '../helpers/pair.js';
import { must, tempDir } from '../helpers/run.js';
import { assertIdentical } from '../helpers/images.js';

const MiB = 1024 * 1024;
const SIZE = 1024 * MiB;

/** A 1 GiB sparse image with 64 scattered 1 MiB runs of random data; returns the bytes of data. */
function makeImage(file: string): number {
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, SIZE);
  let x = 99;
  const at = new Set<number>();
  for (let i = 0; i < 64; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    at.add(x % 1000);
    fs.writeSync(fd, crypto.randomBytes(MiB), 0, MiB, (x % 1000) * MiB);
  }
  fs.closeSync(fd);
  return at.size * MiB;
}

async function sent(p: Pair): Promise<{ data: number; seeded: number }> {
  const v = (await statusOf(p.a)).volumes[0] as unknown as { resyncBytes: number; resyncSeededBytes: number };
  return { data: v.resyncBytes, seeded: v.resyncSeededBytes };
}

test('first sync: the whole of the data to an empty secondary, only differing regions to a seeded copy', async () => {
  const srcDir = tempDir('seed');
  const src = path.join(srcDir, 'src.img');
  const data = makeImage(src);

  // An empty secondary: every region with data travels.
  const empty = await startPair({ size: '1GiB', prepare: (a) => fs.copyFileSync(src, path.join(a, 'db.img')) });
  let full: { data: number; seeded: number };
  try {
    await empty.drained(300_000);
    full = await sent(empty);
    await assertIdentical(empty.a.uri('db'), empty.b.uri('db'), { timeoutMs: 300_000 });
  } finally {
    await empty.stop();
  }
  assert.ok(full.data >= data && full.data <= data * 1.1, `an empty secondary got ${full.data} bytes of data for ${data}`);

  // A seeded copy with five regions changed: hashes, and those regions, travel.
  const seeded = await startPair({
    size: '1GiB',
    prepare: (a, b) => {
      fs.copyFileSync(src, path.join(a, 'db.img'));
      fs.copyFileSync(src, path.join(b, 'db.img'));
      const fd = fs.openSync(path.join(b, 'db.img'), 'r+');
      for (const at of [3, 200, 517, 800, 1001]) fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, at * MiB + 8192);
      fs.closeSync(fd);
    },
  });
  try {
    // The host writes while the sync runs; those writes must reach the secondary too.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 10M 2M', '-c', 'write -P 0x5b 700M 64k', '-c', 'flush', seeded.a.uri('db')]);
    await seeded.drained(300_000);
    const s = await sent(seeded);
    await assertIdentical(seeded.a.uri('db'), seeded.b.uri('db'), { timeoutMs: 300_000 });
    assert.ok(s.data < full.data / 10, `a seeded first sync sent ${s.data} bytes of data; the empty one ${full.data}`);
    assert.ok(s.seeded >= 900 * MiB, `only ${s.seeded} bytes were found equal by hash`);
  } finally {
    await seeded.stop();
    fs.rmSync(srcDir, { recursive: true, force: true });
  }
});

test('first sync: a new pair of empty 1 TiB volumes (sparse, nothing written) compares by its holes, reads and sends nothing', async () => {
  const p = await startPair({ size: '1TiB' });
  try {
    await p.drained(300_000);
    const v = (await statusOf(p.a)).volumes[0] as unknown as { resyncBytes: number; resyncSeededBytes: number; resyncHashBytes: number };
    assert.equal(v.resyncBytes, 0, 'no region travelled');
    assert.equal(v.resyncSeededBytes, 1024 * 1024 * MiB, 'every region found equal');
    // Maps of holes (16 bytes a hole and a head), not 32 bytes of hash per 64 KiB region (512 MiB).
    assert.ok(v.resyncHashBytes < 64 * 1024, `${v.resyncHashBytes} bytes of maps and hashes`);
    const b = (await statusOf(p.b)).volumes[0] as unknown as { consistent: boolean };
    assert.equal(b.consistent, true, 'the first sync is complete: the replica is a flush-point image');
    // Writes far apart then reach the replica (the image is not all holes any more).
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', '-c', 'write -P 0x5b 700G 1M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(120_000);
    await must('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x5a 0 64k', '-c', 'read -P 0x5b 700G 1M', '-c', 'read -P 0 1M 1M', p.b.uri('db')]);
  } finally {
    await p.stop();
  }
});
