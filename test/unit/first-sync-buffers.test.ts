// A first sync reads each run of the volume into one of the node's frame buffers, not a
// fresh one (src/journal/resync.ts; docs/RESYNC.md, "The first sync's own CPU"), and
// gives it back once the journal has written the run's record: never before (the
// poisoned pool would put bytes no CRC accepts into the record), never lost.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakePeer, drive } from '../helpers/fake-peer.js';
import { tempDir } from '../helpers/run.js';
import { SIZE, RS, openPeered } from '../helpers/peered-volume.js';
import { OwnedBuffers, frameBuffers } from '../../src/memory/owned-buffers.js';

test('a first sync reads its runs into the node\'s frame buffers and gives each back once its record is written', async (t) => {
  OwnedBuffers.poison = true;
  t.after(() => {
    OwnedBuffers.poison = false;
  });
  const { jv, data, disk } = await openPeered(tempDir('first-sync-buffers'), ['b']);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
  // Every memory the pool hands out, and every read of the volume a resync step makes: where it went.
  const pooled = new Set<ArrayBufferLike>();
  const take = frameBuffers.take.bind(frameBuffers);
  frameBuffers.take = (length: number) => {
    const o = take(length);
    pooled.add(o.whole.buffer);
    return o;
  };
  t.after(() => {
    frameBuffers.take = take;
  });
  let stepping = 0;
  const step = jv.resyncStep.bind(jv);
  jv.resyncStep = async (maxBytes: number) => {
    stepping++;
    try {
      return await step(maxBytes);
    } finally {
      stepping--;
    }
  };
  const read = disk.read.bind(disk);
  let runs = 0;
  let intoPool = 0;
  disk.read = (offset: number, into: Buffer, at: number, length: number) => {
    if (stepping > 0) {
      runs++;
      if (pooled.has(into.buffer)) intoPool++;
    }
    return read(offset, into, at, length);
  };
  const out = frameBuffers.out;
  const peer = new FakePeer(jv, 'b', Buffer.alloc(SIZE), RS);
  peer.up(0, 0, true);
  await drive('the peer is announced the first sync', [peer], () => peer.resyncs.length > 0, true);
  await drive('the first sync ends', [peer], () => jv.roundStart === 0, true);
  assert.ok(peer.replica.equals(data), 'the replica is the volume, byte for byte (no run was given back before its record was written)');
  assert.ok(runs > 0, 'the round read runs of the volume');
  assert.equal(intoPool, runs, `${intoPool} of ${runs} runs read into the pool's buffers`);
  await jv.close();
  assert.equal(frameBuffers.out, out, 'every buffer went back to the pool');
});
