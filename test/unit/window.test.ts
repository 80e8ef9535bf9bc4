// The shipper's window follows the link's bandwidth-delay product (docs/LINK.md):
// two round trips of the rate plus two batches, within the configured window and
// half the peer's receive log.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VolumeShipper } from '../../src/link/volume-shipper.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';
import { AckRoundTrip, windowFor } from '../../src/link/window.js';
import { MemoryBudget } from '../../src/memory/budget.js';
import { MAX_WINDOW_BYTES, MIN_WINDOW_BYTES } from '../../src/limits/limits.js';

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

test('window: sized from the durable-ack round trip (send to ack, the peer\'s sync included) once a batch is acked', async () => {
  const { windowFor, AckRoundTrip } = await import('../../src/link/window.js');
  const { MAX_WINDOW_BYTES } = await import('../../src/limits/limits.js');
  const base = { rateBytesPerSecond: 100e6, heartbeatRttMs: 1, batchBytes: 4 * MiB, configuredBytes: MAX_WINDOW_BYTES, peerLogCapBytes: Infinity };
  // Loopback: a heartbeat round trip of 1 ms leaves two batches in flight, however long the peer's sync.
  assert.equal(windowFor({ ...base, ackRttMs: null }), 200_000 + 8 * MiB);
  // The durable ack takes 150 ms (the peer's fdatasync): two of them at 100 MB/s, plus two batches.
  assert.equal(windowFor({ ...base, ackRttMs: 150 }), 30_000_000 + 8 * MiB);
  // Bounded by MAX_WINDOW_BYTES, the configured window and half the peer's receive log.
  assert.equal(windowFor({ ...base, ackRttMs: 5000 }), MAX_WINDOW_BYTES);
  assert.equal(windowFor({ ...base, ackRttMs: 5000, configuredBytes: 32 * MiB }), 32 * MiB);
  assert.equal(windowFor({ ...base, ackRttMs: 5000, peerLogCapBytes: 20 * MiB }), 20 * MiB);

  // Samples: each ack measures from the send of the oldest batch it covers; the median of the newest.
  const rt = new AckRoundTrip();
  assert.equal(rt.ms, null);
  rt.sentBatch(10, 1000);
  rt.sentBatch(20, 1010);
  rt.sentBatch(30, 1020);
  assert.equal(rt.oldestAgeMs(1100), 100);
  rt.acked(20, 1200); // one group commit covered two batches: the older waited 200 ms
  assert.equal(rt.ms, 200);
  assert.equal(rt.oldestAgeMs(1200), 180);
  rt.acked(25, 1250); // covers no whole batch: no sample
  assert.equal(rt.ms, 200);
  rt.acked(30, 1120 + 1000);
  assert.equal(rt.ms, 1100, 'median of 200 and 1100 (upper middle)');
  rt.stopped();
  assert.equal(rt.oldestAgeMs(5000), 0, 'stopped: nothing in flight');
  assert.equal(rt.ms, 1100, 'the samples outlive a link (the same peer and disks)');
});

test('VolumeShipper: the window follows the durable-ack round trip of its own batches', () => {
  const sh = new VolumeShipper('db', {} as JournaledVolume, silentLogger, { windowBytes: 1 << 30, batchBytes: 4 * MiB, selfSyncMs: 1000, now: () => 0 });
  // 100 MB/s over a 1 ms heartbeat round trip, nothing acked yet: two batches and a little.
  sh.linkMeasured(100e6, 1, 100e6);
  assert.equal(sh.windowBytes, 200_000 + 8 * MiB);
  assert.equal(sh.ackRttMs, null);
});

test('on a capped link the queue ahead of a batch is not counted as round trip (no feedback into a larger window)', () => {
  // 2 Mbit/s: 250 kB/s. A batch sent with 10 MB ahead of it is acked 40.1 s later: 40 s
  // of that was the bytes ahead passing the cap, 100 ms the round trip and the peer's sync.
  const capped = new AckRoundTrip();
  capped.sentBatch(10, 0, 10_000_000);
  capped.acked(10, 40_100, 250_000);
  assert.equal(capped.ms, 100);
  const w = windowFor({
    rateBytesPerSecond: 250_000, heartbeatRttMs: 30, ackRttMs: capped.ms, batchBytes: 1_000_000, configuredBytes: 128 << 20, peerLogCapBytes: Infinity,
  });
  assert.equal(w, 2 * 250_000 * 0.1 + 2 * 1_000_000);
  // Without a cap nothing is taken out (the round trip includes the peer's sync).
  const open = new AckRoundTrip();
  open.sentBatch(10, 0, 10_000_000);
  open.acked(10, 400);
  assert.equal(open.ms, 400);
  // Never below the heartbeat's round trip.
  assert.equal(windowFor({
    rateBytesPerSecond: 250_000, heartbeatRttMs: 200, ackRttMs: 0, batchBytes: 1_000_000, configuredBytes: 128 << 20, peerLogCapBytes: Infinity,
  }), 2 * 250_000 * 0.2 + 2 * 1_000_000);
});

test('a window holds at most its share of the node\'s send memory: a slow line\'s never takes all of it', () => {
  const memory = new MemoryBudget(64 * MiB);
  const sh = new VolumeShipper('db', {} as JournaledVolume, silentLogger,
    { windowBytes: MAX_WINDOW_BYTES, batchBytes: 4 * MiB, selfSyncMs: 1000, now: () => 0, memory });
  // No rate known (a line shaped on the path, no cap configured): the window was the configured 128 MiB.
  sh.linkMeasured(null, 400);
  assert.equal(sh.windowBytes, Math.floor(memory.classLimit / 2), 'alone: half the send memory');
  let linked = 4;
  sh.shippersLinked = () => linked;
  sh.linkMeasured(null, 400);
  assert.equal(sh.windowBytes, Math.floor(memory.classLimit / 4), 'four shippers linked: a quarter each');
  linked = 200;
  sh.linkMeasured(null, 400);
  assert.equal(sh.windowBytes, MIN_WINDOW_BYTES, 'never below the smallest window');
  // Without a budget nothing changes.
  const free = new VolumeShipper('db', {} as JournaledVolume, silentLogger,
    { windowBytes: MAX_WINDOW_BYTES, batchBytes: 4 * MiB, selfSyncMs: 1000, now: () => 0 });
  free.linkMeasured(null, 400);
  assert.equal(free.windowBytes, MAX_WINDOW_BYTES);
});
