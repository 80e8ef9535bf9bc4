// Resync with real daemons (docs/RESYNC.md): a small journal, the secondary down, a
// burst that overflows the journal into the dirty bitmap; when the secondary returns a
// round sends about the dirty regions only, the secondary's export keeps serving its
// last consistent image until the round ends (also across kill -9 of either side
// mid-round), and the pair converges to identical.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, sleep } from '../helpers/run.js';
import { assertIdentical } from '../helpers/images.js';

interface Vol {
  tracking: string;
  dirtyBytes: number;
  resyncing: boolean;
  resyncTotalBytes: number;
  consistent: boolean;
  hostBytes: number;
}

async function vol(d: TestDaemon): Promise<Vol> {
  return (await statusOf(d)).volumes[0] as unknown as Vol;
}

/** sha256 of a whole export, streamed from nbdcopy (a real client). */
function exportHash(d: TestDaemon): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    const child = spawn('nbdcopy', [d.uri('db'), '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.on('data', (b: Buffer) => h.update(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(h.digest('hex')) : reject(new Error(`nbdcopy exited ${code}: ${err}`))));
  });
}

test('overflow, then a resync round: only dirty regions travel; the replica stays a flush-point image throughout', async () => {
  const p = await startPair({ size: '256MiB', journal: '24MiB' });
  try {
    // A first image, replicated: the secondary's last consistent image.
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 160M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(120_000);
    const before = await exportHash(p.b);
    assert.equal(before, await exportHash(p.a));

    // The secondary goes away; a burst overflows the journal into the dirty bitmap.
    await p.b.stop();
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 8M 96M', '-c', 'write -z 200M 4M', '-c', 'flush', p.a.uri('db')]);
    const a1 = await vol(p.a);
    assert.equal(a1.tracking, 'bitmap', 'the journal overflowed');
    const dirty = a1.dirtyBytes;
    // (Cumulative per daemon run: the first sync of the new pair counted too.)
    const sentBefore = (a1 as unknown as { resyncBytes: number }).resyncBytes;
    assert.ok(dirty >= 100 * 2 ** 20 && dirty <= 104 * 2 ** 20, `dirty ${dirty}`);

    // Back: a round begins. While it runs, the secondary serves the image from before it.
    await p.b.start();
    let sawRound = false;
    let restartedA = false;
    const midRound: string[] = [];
    for (let i = 0; i < 3 && (await vol(p.b)).resyncing; i++) {
      sawRound = true;
      const h = await exportHash(p.b);
      if ((await vol(p.b)).resyncing) midRound.push(h);
      if (i === 0 && (await vol(p.b)).resyncing) {
        // kill -9 of the secondary mid-round: after restart, still the old image.
        await p.b.kill9();
        await p.b.start();
      } else if (i === 1 && (await vol(p.b)).resyncing) {
        await p.a.kill9();
        await p.a.start();
        restartedA = true;
      }
    }
    await p.drained(180_000);
    for (let i = 0; i < 100 && ((await vol(p.a)).resyncing || (await vol(p.b)).resyncing); i++) await sleep(200);
    const [a2, b2] = [await vol(p.a), await vol(p.b)];
    assert.equal(a2.tracking, 'journal');
    assert.equal(a2.resyncing, false);
    assert.equal(b2.resyncing, false);
    assert.equal(b2.consistent, true);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    // Mid-round the export was the image before the round (or, when a restart of the
    // primary began a second round after the first had ended, the first round's end).
    const after = await exportHash(p.b);
    for (const h of midRound) assert.ok(h === before || h === after, 'mid-round the export is a consistent image');
    // What travelled: the dirty regions (once per round; a round restarted by a kill
    // sends again what it had not finished), not the 256 MiB volume.
    // (The counter is per daemon run; the zeroed 4 MiB travel as Zeroes records, not data.)
    const total = ((await statusOf(p.a)).volumes[0] as unknown as { resyncBytes: number }).resyncBytes;
    const sent = restartedA ? total : total - sentBefore;
    if (!restartedA) assert.ok(sent >= 96 * 2 ** 20 * 0.95, `resync sent ${sent} of ${dirty} dirty`);
    assert.ok(sent <= dirty * (sawRound ? 2.2 : 1.1), `resync sent ${sent} for ${dirty} dirty`);
  } finally {
    await p.stop();
  }
});
