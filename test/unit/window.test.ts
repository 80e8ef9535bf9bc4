// The shipper's window follows the link's bandwidth-delay product (docs/LINK.md):
// two round trips of the rate plus two batches, within the configured window and
// half the peer's receive log.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VolumeShipper } from '../../src/link/volume-shipper.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';

const MiB = 1 << 20;

test('window: bandwidth-delay product, bounded by the configured window and the peer log', () => {
  const sh = new VolumeShipper('db', {} as JournaledVolume, silentLogger, { windowBytes: 32 * MiB, batchBytes: 4 * MiB, selfSyncMs: 1000, now: () => 0 });
  assert.equal(sh.windowBytes, 32 * MiB);
  // 1 Mbit/s, 100 ms: the product is tiny; two batches remain in flight.
  sh.linkMeasured(125_000, 100);
  assert.equal(sh.windowBytes, 8 * MiB + 25_000);
  // 1 Gbit/s over 200 ms: 2 x 25 MB + 8 MiB is over the configured 32 MiB.
  sh.linkMeasured(125_000_000, 200);
  assert.equal(sh.windowBytes, 32 * MiB);
  // 100 Mbit/s over 40 ms: 1 MB + 8 MiB.
  sh.linkMeasured(12_500_000, 40);
  assert.equal(sh.windowBytes, 8 * MiB + 1_000_000);
  // No round trip measured yet: the configured window.
  sh.linkMeasured(125_000, null);
  assert.equal(sh.windowBytes, 32 * MiB);
  // A peer with a 10 MiB receive log takes at most 5 MiB unacked.
  sh.fitWindow(10 * MiB);
  assert.equal(sh.windowBytes, 5 * MiB);
  // A window-limited link measures window / RTT: the next window doubles it.
  const w = 5 * MiB;
  sh.fitWindow(1 << 30);
  sh.linkMeasured(w / 0.05, 50);
  assert.equal(sh.windowBytes, Math.min(32 * MiB, 2 * w + 8 * MiB));
});

test('batch: about four seconds of the link once its capacity is known, 64 KiB to 4 MiB; the window counts the batch it has', () => {
  const sh = new VolumeShipper('db', {} as JournaledVolume, silentLogger, { windowBytes: 32 * MiB, batchBytes: 4 * MiB, selfSyncMs: 1000, now: () => 0 });
  assert.equal(sh.batchBytes, 4 * MiB);
  // 1 Mbit/s: a 4 MiB frame would hold acks and hash requests behind it for 34 s.
  sh.linkMeasured(125_000, 100, 125_000);
  assert.equal(sh.batchBytes, 500_000);
  assert.equal(sh.windowBytes, 2 * 500_000 + 25_000);
  // 56 kbit/s: the smallest batch, 64 KiB (9 s of the line).
  sh.linkMeasured(7_000, 100, 7_000);
  assert.equal(sh.batchBytes, 64 * 1024);
  // 100 Mbit/s: the largest.
  sh.linkMeasured(12_500_000, 40, 12_500_000);
  assert.equal(sh.batchBytes, 4 * MiB);
  // Capacity unknown: the largest.
  sh.linkMeasured(125_000, 100, null);
  assert.equal(sh.batchBytes, 4 * MiB);
});
