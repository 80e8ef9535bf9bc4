// The resync formats from docs/RESYNC.md, from fixed bytes: the round marker, the
// undo area (saved once per region, read back after a restart, torn tail cut), the
// Resync frame, and the range locks that order resync reads against host writes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DirStore } from '../../src/journal/store.js';
import { decodeResync, encodeResync, FrameDecoder, FrameType } from '../../src/link/frame.js';
import { decodeRoundMark, encodeRoundMark, RoundMarker } from '../../src/sync/round-marker.js';
import { RangeLocks } from '../../src/sync/range-lock.js';
import { UndoArea } from '../../src/sync/undo.js';
import { memDisk } from '../helpers/mem-disk.js';
import { tempDir } from '../helpers/run.js';

test('round marker: fixed bytes, damage reads as absent, replaced atomically', async () => {
  const fixed = Buffer.from('4f464653524e44312a000000000000000100000004187a07', 'hex');
  assert.deepEqual(decodeRoundMark(fixed), { startSeq: 42, initial: true });
  assert.ok(encodeRoundMark({ startSeq: 42, initial: true }).equals(fixed));
  // Flag bit 1: the round's end is applied, its counter being synced (a start completes the round).
  const ending = Buffer.from('4f464653524e44312a00000000000000020000003d915865', 'hex');
  assert.deepEqual(decodeRoundMark(ending), { startSeq: 42, initial: false, ending: true });
  assert.ok(encodeRoundMark({ startSeq: 42, initial: false, ending: true }).equals(ending));
  const bad = Buffer.from(fixed);
  bad[9] = bad[9]! ^ 1;
  assert.equal(decodeRoundMark(bad), null);
  assert.equal(decodeRoundMark(fixed.subarray(0, 20)), null);
  const dir = tempDir('round');
  const m = new RoundMarker(new DirStore(dir));
  assert.equal(await m.read(), null);
  await m.write({ startSeq: 7, initial: false });
  assert.deepEqual(await m.read(), { startSeq: 7, initial: false });
  assert.deepEqual(fs.readdirSync(dir), ['round']);
  await m.remove();
  assert.equal(await m.read(), null);
});

test('undo area: old bytes saved once per region, served after a restart, torn tail cut', async () => {
  const dir = tempDir('undo');
  const store = new DirStore(dir);
  const disk = memDisk(3 * 4096 + 100); // a short last region
  disk.data.fill(0x11);
  const u = await UndoArea.open(store, 4096, disk.size);
  await u.protect(disk, [{ offset: 4000, length: 200 }]); // regions 0 and 1
  disk.data.fill(0x22, 0, 8192); // the round writes both
  await u.protect(disk, [{ offset: 0, length: 10 }]); // already saved: not again
  assert.equal(u.regions, 2);
  await u.protect(disk, [{ offset: 3 * 4096, length: 100 }]); // the short last region
  disk.data.fill(0x33, 3 * 4096);
  const old = Buffer.alloc(disk.size);
  await u.readOld(disk, 0, old, 0, disk.size);
  assert.ok(old.every((b) => b === 0x11), 'the image before the round');
  u.close();
  // A restart reads the entries back; a torn entry at the end is cut.
  fs.appendFileSync(path.join(dir, 'undo'), Buffer.from('0200000000000000deadbeef', 'hex'));
  const again = await UndoArea.open(store, 4096, disk.size);
  assert.equal(again.regions, 3);
  const old2 = Buffer.alloc(disk.size);
  await again.readOld(disk, 0, old2, 0, disk.size);
  assert.ok(old2.every((b) => b === 0x11));
  // The header, byte for byte: magic, version 1, region size, volume size.
  const head = fs.readFileSync(path.join(dir, 'undo')).subarray(0, 28);
  assert.equal(head.toString('hex'), '4f464653554e444f' + '01000000' + '00100000' + '6430000000000000' + '00000000');
  again.close();
  await UndoArea.drop(store);
  assert.ok(!fs.existsSync(path.join(dir, 'undo')));
});

test('Resync frame: fixed bytes, and a round that starts at 0 is refused', () => {
  const parts = encodeResync('db', 17);
  const wire = Buffer.concat(parts);
  assert.equal(wire.subarray(0, 12).toString('hex'), '4f46504c' + '01' + '06' + '0000' + '0c000000');
  const dec = new FrameDecoder();
  dec.push(wire);
  const f = dec.next()!;
  assert.equal(f.type, FrameType.Resync);
  assert.equal(f.payload.toString('hex'), '0200' + '6462' + '1100000000000000');
  assert.deepEqual(decodeResync(f.payload), { volume: 'db', startSeq: 17 });
  assert.throws(() => decodeResync(Buffer.from('02006462' + '0000000000000000', 'hex')), /record 1 or later/);
});

test('range locks: a resync read waits for host writes in flight there, and holds new ones', async () => {
  const locks = new RangeLocks();
  const w1 = locks.enterWrite(0, 4096);
  assert.equal(typeof w1, 'number', 'no lock held: the write enters at once');
  const elsewhere = locks.enterWrite(1 << 20, 4096);
  let granted = false;
  const lockP = locks.lock(0, 65536).then((release) => {
    granted = true;
    return release;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(granted, false, 'a write in flight in the range holds the lock back');
  locks.exitWrite(elsewhere as number);
  await new Promise((r) => setImmediate(r));
  assert.equal(granted, false, 'a write elsewhere does not matter');
  locks.exitWrite(w1 as number);
  const release = await lockP;
  assert.equal(granted, true);
  const blocked = locks.enterWrite(8192, 512);
  assert.ok(blocked instanceof Promise, 'a new write in the locked range waits');
  assert.equal(typeof locks.enterWrite(65536, 512), 'number', 'just past the range it does not');
  let entered = false;
  void (blocked as Promise<number>).then(() => (entered = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(entered, false);
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(entered, true);
});

test('range locks: ranges apart are locked at once, an overlapping lock waits for the one it overlaps', async () => {
  const locks = new RangeLocks();
  const a = await locks.lock(0, 65536);
  const b = await locks.lock(65536, 65536);
  assert.equal(locks.locked, 2, 'two ranges apart are held at once (the verify keeps several batches out)');
  let cGranted = false;
  const c = locks.lock(60000, 10000).then((release) => {
    cGranted = true;
    return release;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(cGranted, false, 'a lock over both waits');
  a();
  await new Promise((r) => setImmediate(r));
  assert.equal(cGranted, false, 'it still overlaps the second');
  const w = locks.enterWrite(0, 4096);
  assert.equal(typeof w, 'number', 'the first range is free for host writes again');
  assert.ok(locks.enterWrite(70000, 512) instanceof Promise, 'the second is not');
  b();
  const releaseC = await c;
  assert.equal(cGranted, true);
  assert.equal(locks.locked, 1);
  releaseC();
  assert.throws(() => releaseC(), /let go once/);
  assert.equal(locks.locked, 0);
});

test('HashRequest and HashReply: fixed bytes, and bounds', async () => {
  const { decodeHashReply, decodeHashRequest, encodeHashReply, encodeHashRequest, FrameDecoder: D } = await import('../../src/link/frame.js');
  const req = Buffer.concat(encodeHashRequest({ volume: 'db', regionSize: 65536, first: 3, count: 2 }));
  const dec = new D();
  dec.push(req);
  const f = dec.next()!;
  assert.equal(f.payload.toString('hex'), '0200' + '6462' + '00000100' + '0300000000000000' + '02000000');
  assert.deepEqual(decodeHashRequest(f.payload), { volume: 'db', regionSize: 65536, first: 3, count: 2 });
  assert.throws(() => decodeHashRequest(Buffer.from('02006462' + '00000100' + '0300000000000000' + '01040000', 'hex')), /1025 regions/);
  // Pinned (online verify): after-seq 9 appended.
  const pinned = new D();
  pinned.push(Buffer.concat(encodeHashRequest({ volume: 'db', regionSize: 65536, first: 3, count: 2, afterSeq: 9 })));
  const pf = pinned.next()!;
  assert.equal(pf.payload.toString('hex'), '0200' + '6462' + '00000100' + '0300000000000000' + '02000000' + '0900000000000000');
  assert.deepEqual(decodeHashRequest(pf.payload), { volume: 'db', regionSize: 65536, first: 3, count: 2, afterSeq: 9 });
  assert.throws(() => decodeHashRequest(Buffer.from('02006462' + '00000100' + '0300000000000000' + '02000000' + '09', 'hex')), /not 16 or 24 bytes/);
  assert.throws(() => decodeHashRequest(Buffer.from('02006462' + '00300000' + '0300000000000000' + '01000000', 'hex')), /region size 12288/);
  const h = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
  const dec2 = new D();
  dec2.push(Buffer.concat(encodeHashReply({ volume: 'db', regionSize: 65536, first: 3 }, h)));
  const r = decodeHashReply(dec2.next()!.payload);
  assert.equal(r.count, 2);
  assert.ok(r.hashes[1]!.equals(h[1]!));
  assert.throws(() => decodeHashReply(Buffer.from('02006462' + '00000100' + '0300000000000000' + 'aa', 'hex')), /whole number of hashes/);
});
