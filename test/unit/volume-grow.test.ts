// A volume grown while it is served (docs/CONFIG.md, "Growing a volume"): the dirty
// bitmap keeps its marks and gets clean regions, on disk in an order a crash cannot
// break; a bitmap made for a smaller volume opens grown; the undo area of a round keeps
// the image from before the round, zeros where the volume grew; a primary's write path
// grows every bitmap before the disk answers with the new size; a volume file smaller
// than its size: grows at the open, a larger one is refused; the SCSI unit reports the
// new capacity with CAPACITY DATA HAS CHANGED to every nexus; a reload's notes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { BITS_PER_PAGE, DirtyBitmap, PAGE_SIZE, RegionSet, peerBitmapFile } from '../../src/journal/bitmap.js';
import { DirStore } from '../../src/journal/store.js';
import { UndoArea } from '../../src/sync/undo.js';
import { GROW_FILE, readGrowing, removeGrowing, writeGrowing } from '../../src/journal/grow.js';
import { Volume } from '../../src/volume/volume.js';
import { diskCapabilities } from '../../src/export/backend.js';
import { CheckedBackend } from '../../src/export/contract.js';
import { LogicalUnit } from '../../src/scsi/logical-unit.js';
import { volumeSizeReloaded, type GrownEntry } from '../../src/node/volume-size.js';
import type { VolumeConfig } from '../../src/config/config.js';
import { silentLogger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';
import { memDisk } from '../helpers/mem-disk.js';
import { A, B, IDENTITY, MemoryDisk, cmd, hex, outcome } from '../helpers/scsi-unit.js';
import { KiB, RS, SIZE, openPeered } from '../helpers/peered-volume.js';

const HEADER = 4096;

test('a bitmap grows: its marks stay, its new regions are clean, and it reopens at the new size as it was', async () => {
  const dir = tempDir('grow-bitmap');
  const rs = 4096;
  const small = (BITS_PER_PAGE + 10) * rs; // two pages, the second partly used
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), small, rs);
  bitmap.mark(0, 1);
  bitmap.mark(small - 1, 1);
  await bitmap.sync();
  const big = 3 * BITS_PER_PAGE * rs + 100; // four pages, a short last region
  await bitmap.grow(big);
  assert.equal(bitmap.regions, 3 * BITS_PER_PAGE + 1);
  assert.equal(bitmap.count, 2);
  assert.deepEqual([...bitmap.dirtyRegions()], [0, BITS_PER_PAGE + 9]);
  // A write past the old end lands on a bit of its own.
  assert.equal(bitmap.mark(big - 1, 1), 1);
  await bitmap.sync();
  bitmap.close();
  // On disk: the header says the new size, every page is there.
  const file = fs.readFileSync(path.join(dir, 'dirty.bitmap'));
  assert.equal(Number(file.readBigUInt64LE(16)), big);
  assert.equal(file.length, HEADER + 4 * PAGE_SIZE);
  const { bitmap: again, notes } = await DirtyBitmap.open(new DirStore(dir), big, rs);
  assert.deepEqual(notes, []);
  assert.deepEqual([...again.dirtyRegions()], [0, BITS_PER_PAGE + 9, 3 * BITS_PER_PAGE]);
  again.close();
  // Growing to the same size changes nothing.
  const { bitmap: same } = await DirtyBitmap.open(new DirStore(dir), big, rs);
  await same.grow(big);
  assert.equal(same.count, 3);
  same.close();
});

test('a bitmap made for a smaller volume opens grown (a start with a raised size:): marks kept, no resync; a larger one is unusable, all marked', async () => {
  const dir = tempDir('grow-bitmap-open');
  const rs = 64 * KiB;
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), 10 * rs, rs);
  bitmap.mark(3 * rs, 1);
  await bitmap.sync();
  bitmap.close();
  const { bitmap: grown, notes } = await DirtyBitmap.open(new DirStore(dir), 100 * rs, rs);
  assert.deepEqual(notes, []);
  assert.equal(grown.regions, 100);
  assert.deepEqual([...grown.dirtyRegions()], [3]);
  grown.close();
  assert.equal(Number(fs.readFileSync(path.join(dir, 'dirty.bitmap')).readBigUInt64LE(16)), 100 * rs, 'the header says the new size');
  // A crash after the new pages were written and before the header: the old header, the pages beyond read clean.
  const { bitmap: shrunk, notes: said } = await DirtyBitmap.open(new DirStore(dir), 50 * rs, rs);
  assert.match(said.join(), /dirty bitmap unusable \(volume size was 6553600, now 3276800\): every region will be resynced/);
  assert.equal(shrunk.count, 50);
  shrunk.close();
});

test('a region set grows with its marks', () => {
  const s = new RegionSet(10 * 4096, 4096);
  s.mark(9 * 4096, 1);
  s.mark(20 * 4096, 1); // past its end: nothing
  s.grow(30 * 4096);
  assert.ok(s.has(9) && !s.has(20));
  s.mark(20 * 4096, 1);
  assert.ok(s.has(20));
  assert.equal(s.volumeSize, 30 * 4096);
});

test('an undo area of a round the volume grew during: the image before the round reads zeros where it grew, and a rollback puts zeros there', async () => {
  const dir = tempDir('grow-undo');
  const store = new DirStore(dir);
  const old = 2 * 4096 + 100; // a short last region
  const disk = memDisk(old);
  disk.data.fill(0x11);
  const u = await UndoArea.open(store, 4096, disk.size);
  await disk.extend(5 * 4096);
  disk.setSize(5 * 4096);
  // The round writes across the old end and past it.
  await u.protect(disk, [{ offset: 2 * 4096, length: 3 * 4096 }]);
  assert.equal(u.regions, 1, 'only the region the old volume had');
  disk.data.fill(0x22, 2 * 4096);
  const before = Buffer.alloc(disk.size, 0xee);
  await u.readOld(disk, 0, before, 0, disk.size);
  assert.ok(before.subarray(0, old).every((b) => b === 0x11), 'the old image');
  assert.ok(before.subarray(old).every((b) => b === 0), 'zeros past its end');
  u.close();
  // A restart mid-round reads the header's size back.
  const again = await UndoArea.open(store, 4096, disk.size);
  await again.rollback(disk);
  assert.ok(disk.data.subarray(0, old).every((b) => b === 0x11));
  assert.ok(disk.data.subarray(old, disk.size).every((b) => b === 0), 'the grown part zeroed');
  again.close();
});

test('a primary grows: every bitmap first (the volume\'s, a detached peer\'s), then the disk; writes past the old end are journaled and marked', async () => {
  const dir = tempDir('grow-primary');
  const { jv } = await openPeered(dir, ['site-b', 'site-c']);
  const disk = jv.disk as ReturnType<typeof import('../helpers/mem-disk.js').memDisk>;
  // site-d joins detached (every region marked in its own bitmap).
  await jv.setPeers(['site-b', 'site-c', 'site-d']);
  const own = jv.detached!.bitmapOf('site-d')!;
  assert.equal(own.count, SIZE / RS);
  await jv.write(0, Buffer.alloc(4 * KiB, 0x01), false);
  await jv.flush();
  const big = 3 * SIZE;
  // Bitmaps grow before the disk: while they do, the disk still answers with the old size.
  let sizeWhenDiskGrew = -1;
  const extend = disk.extend.bind(disk);
  disk.extend = async (n) => {
    sizeWhenDiskGrew = jv.bitmap.regions;
    assert.equal(await readGrowing(new DirStore(dir)), big, 'the grow is written down before anything grows');
    assert.equal(own.regions, big / RS, 'the detached peer\'s bitmap grew before the disk');
    assert.equal(jv.size, SIZE);
    await extend(n);
  };
  await jv.grow(big);
  assert.equal(sizeWhenDiskGrew, big / RS);
  assert.equal(jv.size, big);
  assert.ok(!fs.existsSync(path.join(dir, GROW_FILE)), 'and its file goes once all has grown');
  assert.equal(own.count, SIZE / RS, 'its new regions clean: both sides read zeros there');
  // A host write past the old end: journaled, read back.
  const data = Buffer.alloc(64 * KiB, 0x5a);
  await jv.write(2 * SIZE, data, false);
  await jv.flush();
  const back = Buffer.alloc(data.length);
  await jv.read(2 * SIZE, back, 0, back.length);
  assert.ok(back.equals(data));
  const records = await jv.journal.read(jv.journal.released + 1, 1 << 20);
  assert.ok(records.some((r) => r.offset === 2 * SIZE && r.length === data.length), 'journaled');
  // In bitmap mode it lands on a bit of the grown bitmap.
  jv.bitmap.mark(2 * SIZE, 1);
  assert.ok(jv.bitmap.isSet(2 * SIZE / RS));
  // site-d's bitmap on disk says the new size.
  await jv.close();
  const file = fs.readFileSync(path.join(dir, peerBitmapFile('site-d')));
  assert.equal(Number(file.readBigUInt64LE(16)), big);
});

test('a volume file smaller than its size: is refused (a typo), grown at the open only to finish a grow under way; extend/setSize grow it served', async () => {
  const dir = tempDir('grow-file');
  const file = path.join(dir, 'db.img');
  fs.writeFileSync(file, Buffer.alloc(64 * KiB, 0x33));
  assert.throws(() => Volume.open({ name: 'db', path: file, size: 256 * KiB, readOnly: false }), new RegExp('db\\.img is 64 KiB \\(65536 bytes\\) ' +
    'but the config says 256 KiB \\(262144 bytes\\); fix size:, or to grow the volume, start it at the size it has and raise size: at a reload'));
  assert.equal(fs.statSync(file).size, 64 * KiB, 'untouched');
  const v = Volume.open({ name: 'db', path: file, size: 256 * KiB, growTo: 256 * KiB, readOnly: false });
  assert.equal(v.size, 256 * KiB);
  assert.equal(v.grownFrom, 64 * KiB);
  assert.equal(fs.statSync(file).size, 256 * KiB);
  const tail = Buffer.alloc(192 * KiB, 0xee);
  await v.read(64 * KiB, tail, 0, tail.length);
  assert.ok(tail.every((b) => b === 0));
  await v.extend(512 * KiB);
  assert.equal(v.size, 256 * KiB, 'the size answered changes at setSize');
  v.setSize(512 * KiB);
  assert.equal(v.size, 512 * KiB);
  await v.close();
  assert.throws(() => Volume.open({ name: 'db', path: file, size: 128 * KiB, readOnly: false }),
    /db\.img is 512 KiB \(524288 bytes\) but the config says 128 KiB \(131072 bytes\); a volume does not shrink/);
  const same = Volume.open({ name: 'db', path: file, size: 512 * KiB, readOnly: true });
  assert.equal(same.grownFrom, null);
  await same.close();
});

test('a grown unit: CAPACITY DATA HAS CHANGED to every nexus once, then READ CAPACITY says the new size and the new blocks are reachable', async () => {
  const disk = new MemoryDisk(4096 * 512, diskCapabilities(false));
  (disk as { size: number }).size = 2048 * 512;
  const lu = new LogicalUnit({ backend: new CheckedBackend(disk), identity: IDENTITY });
  const capacity = async (nexus = A): Promise<number> => (await cmd(lu, '25 00 00000000 00 00 00', { nexus, expectedLength: 8 })).dataIn!.readUInt32BE(0) + 1;
  assert.equal(await capacity(A), 2048);
  assert.equal(await capacity(B), 2048);
  assert.equal(outcome(await cmd(lu, `28 00 ${hex(3000, 4)} 00 0001 00`, { expectedLength: 512 })), '5/2100', 'past the end');
  (disk as { size: number }).size = 4096 * 512;
  for (const nexus of [A, B]) {
    assert.equal(outcome(await cmd(lu, '25 00 00000000 00 00 00', { nexus, expectedLength: 8 })), '6/2a09', 'CAPACITY DATA HAS CHANGED');
    assert.equal(await capacity(nexus), 4096);
  }
  assert.equal(outcome(await cmd(lu, `2a 00 ${hex(3000, 4)} 00 0001 00`, { data: Buffer.alloc(512, 7) })), 'GOOD');
  assert.equal(disk.data[3000 * 512], 7);
});

function entry(size: number, role: 'primary' | 'secondary' | 'none'): { e: GrownEntry; calls: string[] } {
  const calls: string[] = [];
  let now = size;
  const volume = {
    get size() { return now; },
    extend: async (n: number) => { calls.push(`extend ${n}`); },
    setSize: (n: number) => { now = n; calls.push(`setSize ${n}`); },
    cannotGrow: () => null,
  };
  const grow = async (n: number): Promise<void> => {
    calls.push(`grow ${n}`);
    now = n;
  };
  const config = { name: 'db', size, peers: role === 'none' ? [] : ['site-b'] } as unknown as VolumeConfig;
  return {
    e: {
      config, volume: volume as unknown as Volume, dir: tempDir('grow-entry'),
      journaled: role === 'primary' ? { grow } as never : null, replica: role === 'secondary' ? { grow } as never : null,
    },
    calls,
  };
}

test('a reload\'s size: a grow in the action queue, the links made again at a primary and at a secondary its primary waits for; a shrink refused', async () => {
  const relinks: string[] = [];
  let paired = true;
  const relink = (v: string, peers: readonly string[], why: string): number => relinks.push(`${v} ${peers.join()} ${why}`);
  const host = { log: silentLogger, links: { relink, paired: () => paired } };
  const next = (size?: number): VolumeConfig => ({ name: 'db', size, peers: ['site-b'] } as unknown as VolumeConfig);
  // Shrinking: refused, nothing to run.
  const p = entry(2 * SIZE, 'primary');
  const shrink = volumeSizeReloaded(p.e, next(SIZE), host);
  assert.equal(shrink.change, undefined);
  assert.match(shrink.notes.join(), /volume db: size 1\.0 MiB is less than its 2\.0 MiB: a volume does not shrink under its hosts; it stays 2\.0 MiB/);
  // Unchanged or removed: nothing.
  assert.deepEqual(volumeSizeReloaded(p.e, next(2 * SIZE), host), { notes: [] });
  assert.deepEqual(volumeSizeReloaded(p.e, next(undefined), host), { notes: [] });
  // A primary: grown, then its links made again.
  const g = volumeSizeReloaded(p.e, next(4 * SIZE), host);
  assert.deepEqual(g.notes, ['volume db: growing from 2.0 MiB to 4.0 MiB']);
  assert.deepEqual(p.calls, [], 'nothing before the action queue runs it');
  await g.change!();
  assert.deepEqual(p.calls, [`grow ${4 * SIZE}`]);
  assert.deepEqual(relinks, ['db site-b volume db grew at a reload here']);
  assert.equal(p.e.config.size, 4 * SIZE);
  // Run again (a second reload's grow queued after): done already, nothing.
  await g.change!();
  assert.equal(p.calls.length, 1);
  // A secondary paired with its primary: grown, its link left alone (its primary grows next).
  const s = entry(SIZE, 'secondary');
  relinks.length = 0;
  await volumeSizeReloaded(s.e, next(2 * SIZE), host).change!();
  assert.deepEqual(s.calls, [`grow ${2 * SIZE}`]);
  assert.deepEqual(relinks, []);
  // One whose primary grew first (unpaired, waiting for the sizes to match): its link is made again.
  paired = false;
  await volumeSizeReloaded(s.e, next(3 * SIZE), host).change!();
  assert.deepEqual(relinks, ['db site-b volume db grew at a reload here']);
  // A volume with no peer: its file alone.
  const n = entry(SIZE, 'none');
  await volumeSizeReloaded(n.e, next(2 * SIZE), host).change!();
  assert.deepEqual(n.calls, [`extend ${2 * SIZE}`, `setSize ${2 * SIZE}`]);
});

test('the grow file, byte by byte: written durably, read back, a newer version or garbage refused, removed', async () => {
  const dir = tempDir('grow-file-format');
  const store = new DirStore(dir);
  assert.equal(await readGrowing(store), null);
  await writeGrowing(store, 100663296);
  assert.equal(fs.readFileSync(path.join(dir, GROW_FILE), 'utf8'), '{"version":1,"size":100663296}\n');
  assert.equal(await readGrowing(store), 100663296);
  fs.writeFileSync(path.join(dir, GROW_FILE), '{"version":2,"size":5}\n');
  await assert.rejects(readGrowing(store), /grow file .*version 2/);
  fs.writeFileSync(path.join(dir, GROW_FILE), 'garbage');
  await assert.rejects(readGrowing(store), /grow: no size in it \(garbage\)/);
  await removeGrowing(store);
  assert.deepEqual(fs.readdirSync(dir), []);
});
