// The primary's questions at a secondary (src/secondary/replica-requests.ts): hash
// requests worked on two at a time and answered in the order asked, a map request
// after the answers before it, and a failed read that never goes unhandled while an
// earlier request still waits (the daemon exits on an unhandled rejection).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PeerRequests, type RequestHost } from '../../src/secondary/replica-requests.js';
import type { Disk } from '../../src/journal/disk.js';
import type { UnitApplier } from '../../src/secondary/apply-unit.js';

const RS = 65536;

function rig(failAt: number | null = null) {
  const state = { applied: 0, reads: [] as number[], open: 0, most: 0 };
  let ended: () => void = () => undefined;
  const volume = {
    size: 64 * RS,
    extents: async (offset: number, length: number) => [{ offset, length, hole: false, zero: false }],
    read: async (offset: number, into: Buffer, at: number, length: number) => {
      state.open++;
      state.most = Math.max(state.most, state.open);
      await new Promise((r) => setImmediate(r));
      state.open--;
      state.reads.push(offset / RS);
      if (failAt !== null && offset === failAt * RS) throw Object.assign(new Error('EIO: read error'), { code: 'EIO' });
      into.fill(offset / RS, at, at + length);
    },
  } as unknown as Disk;
  const units = {
    gate: null,
    nextEnd: () => new Promise<void>((r) => (ended = r)),
  } as unknown as UnitApplier;
  const host: RequestHost = { volume, units, hashBuffers: null, applied: () => state.applied, busy: () => null };
  const apply = (upTo: number): void => {
    state.applied = upTo;
    ended();
  };
  return { requests: new PeerRequests(host), state, apply };
}

test('hash requests: two worked on at once, answered in the order asked; a map request after them', async () => {
  const r = rig();
  const order: string[] = [];
  const asks = [0, 4, 8, 12].map((first) => r.requests.hashRegions('blake3', RS, first, 4).then((h) => {
    order.push(`hash ${first}`);
    return h;
  }));
  const map = r.requests.mapHoles(0, 64 * RS, 16).then((m) => {
    order.push('map');
    return m;
  });
  const hashes = await Promise.all(asks);
  await map;
  assert.deepEqual(order, ['hash 0', 'hash 4', 'hash 8', 'hash 12', 'map']);
  assert.equal(r.state.most, 2, 'two reads at once, never more');
  assert.ok(hashes.every((h) => h?.length === 4));
  assert.notDeepEqual(hashes[0]![0], hashes[1]![0], 'each its own regions');
});

test('a failed read while an earlier verify request waits for its flush point: no unhandled rejection; it fails in its turn', async () => {
  const r = rig(4);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e);
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    // The first waits until the replica has applied record 10; the second reads at once and fails.
    const first = r.requests.hashRegions('blake3', RS, 0, 4, () => true, 10);
    const second = r.requests.hashRegions('blake3', RS, 4, 4);
    const settled = { second: false };
    second.catch(() => (settled.second = true));
    for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
    assert.deepEqual(r.state.reads, [4], 'the second read ran (and failed) while the first waits');
    assert.equal(settled.second, false, 'its failure waits for the answer before it');
    assert.deepEqual(unhandled, [], 'nothing unhandled meanwhile');
    r.apply(10);
    assert.equal((await first)?.length, 4);
    await assert.rejects(second, /EIO/);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
