// Two new secondaries of one volume (docs/PEERS.md, "The first sync with several peers"),
// a round of every peer open (the journal folded): site-c, a new secondary, left the
// journal to wait for that round; site-b, new too and the last peer following the
// journal, cannot leave it. Waiting as well, nobody would carry the round to its end and
// the volume would never converge (replication simulation seed 645 of the first grows'
// schedules). It begins the first sync of the whole volume instead (src/link/resync-driver.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResyncDriver, type ResyncLink } from '../../src/link/resync-driver.js';
import type { Logger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';
import { openPeered, KiB } from '../helpers/peered-volume.js';

test('the last peer following the journal does not wait for a round of every peer that only it could carry: the whole volume is sent', async () => {
  const { jv } = await openPeered(tempDir('last-peer'), ['site-b', 'site-c']);
  await jv.write(0, Buffer.alloc(4 * KiB, 1), false);
  await jv.flush();
  // A round of every peer, of some regions (the journal folded into the bitmap).
  assert.ok(await jv.restartRound('the journal overflowed') > 0);
  assert.equal(jv.roundOwner, null);
  // site-c, new, left the journal to wait for it.
  assert.equal(await jv.detachNew('site-c'), true);
  assert.deepEqual(jv.cursors.attached, ['site-b']);
  const lines: string[] = [];
  const log = { info: (_o: unknown, m: string) => lines.push(m), warn: (_o: unknown, m: string) => lines.push(m), debug: () => undefined,
    error: (_o: unknown, m: string) => lines.push(m) } as unknown as Logger;
  const sent: Buffer[][] = [];
  const s = { send: (parts: Buffer[]) => sent.push(parts), close: () => undefined, version: 2 };
  const link: ResyncLink = { session: () => s, detach: () => undefined, rate: () => null, durable: () => undefined };
  const driver = new ResyncDriver('db', jv, log, 1 << 20, link, 'site-b');
  await driver.begin(s, 0, 0, true, () => undefined);
  assert.equal(driver.waiting, null, `site-b waits for the round it alone carries: ${lines.join('; ')}`);
  const whole = /site-b is a new secondary and no first sync of its own can begin .* the first sync of the whole volume begins, for every peer/;
  assert.ok(lines.some((l) => whole.test(l)), lines.join('; '));
  // Every region is marked for the round that follows (the fold's reconnect begins it: docs/PEERS.md).
  assert.equal(jv.bitmap.count, jv.bitmap.regions);
  await jv.close();
});
