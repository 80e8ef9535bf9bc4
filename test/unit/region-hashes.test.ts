// Region hashes (src/sync/region-hashes.ts): regions in holes are not read and hash as
// zeros; every hash equals SHA-256 or BLAKE3 (the link's) of the bytes the region reads
// as, on a real sparse file (SEEK_DATA/SEEK_HOLE) and on a map that cuts regions in odd
// places. BLAKE3 is checked against the BLAKE3 team's published vectors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  BLAKE3_SINCE_VERSION, HashBuffers, hashRegions, regionHash, regionHashOf, zeroHash, type HashedDisk, type RegionHash,
} from '../../src/sync/region-hashes.js';
import { HASH_BUFFERS } from '../../src/limits/limits.js';
import { Volume } from '../../src/volume/volume.js';
import type { Extent } from '../../src/export/backend.js';
import { tempDir } from '../helpers/run.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function sha(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

/** A disk in memory whose allocation map is given, counting the bytes read. */
function memDisk(bytes: Buffer, map: (offset: number, length: number) => Extent[]): HashedDisk & { readBytes: number } {
  const d = {
    size: bytes.length,
    readBytes: 0,
    read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
      d.readBytes += length;
      bytes.copy(into, at, offset, offset + length);
      return Promise.resolve();
    },
    extents(offset: number, length: number): Promise<Extent[]> {
      return Promise.resolve(map(offset, length));
    },
  };
  return d;
}

/** The hash of `b` by `algorithm`: SHA-256 from node:crypto, BLAKE3 from src (checked against the published vectors below). */
function digest(algorithm: RegionHash, b: Buffer): Buffer {
  return algorithm === 'sha256' ? sha(b) : regionHash('blake3', b);
}

const BOTH: RegionHash[] = ['sha256', 'blake3'];

test('BLAKE3 gives the BLAKE3 team\'s published digests (test_vectors.json: input i % 251, unkeyed, first 32 bytes)', () => {
  const published: Array<[number, string]> = [
    [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
    [1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213'],
    [1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7'],
    [1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444'],
    [102400, 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085'],
  ];
  for (const [n, hex] of published) {
    const input = Buffer.alloc(n);
    for (let i = 0; i < n; i++) input[i] = i % 251;
    assert.equal(regionHash('blake3', input).toString('hex'), hex, `${n} bytes`);
  }
  assert.equal(regionHash('sha256', Buffer.from('abc')).toString('hex'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('a link hashes with BLAKE3 from protocol version 4, SHA-256 before (absent: version 1)', () => {
  assert.equal(BLAKE3_SINCE_VERSION, 4);
  assert.deepEqual([undefined, 1, 2, 3, 4, 5].map(regionHashOf), ['sha256', 'sha256', 'sha256', 'sha256', 'blake3', 'blake3']);
});

test('zeroHash is the hash of that many zero bytes, a region or a short last one, for each algorithm', () => {
  for (const alg of BOTH) {
    for (const n of [0, 4096, 64 * KiB, 5 * MiB + 12]) assert.deepEqual(zeroHash(alg, n), digest(alg, Buffer.alloc(n)), `${alg}, ${n} bytes`);
  }
  assert.notDeepEqual(zeroHash('sha256', 4096), zeroHash('blake3', 4096));
});

test('only regions wholly inside a hole of the map go unread; what the map does not reach is data', async () => {
  const rs = 64 * KiB;
  // From 0: hole 100 KiB (region 0 whole, region 1 partly), data to 128 KiB, hole to 328 KiB (regions 2, 3, 4), then unmapped.
  const map: Extent[] = [{ length: 100 * KiB, hole: true }, { length: 28 * KiB, hole: false }, { length: 200 * KiB, hole: true }];
  const d = memDisk(Buffer.alloc(8 * rs), () => map);
  assert.deepEqual(await hashRegions('sha256', d, rs, 0, 8), Array.from({ length: 8 }, () => zeroHash('sha256', rs)));
  assert.equal(d.readBytes, 4 * rs, 'regions 1, 5, 6 and 7 read');
  // A map from an offset inside the volume; the last region ends short at the volume's end.
  const short = memDisk(Buffer.alloc(4 * rs + 10), () => [{ length: rs + 10, hole: true }]);
  assert.deepEqual(await hashRegions('blake3', short, rs, 3, 2), [zeroHash('blake3', rs), zeroHash('blake3', 10)]);
  assert.equal(short.readBytes, 0);
  const second = memDisk(Buffer.alloc(2 * rs), () => [{ length: rs, hole: false }, { length: rs, hole: true }]);
  await hashRegions('sha256', second, rs, 0, 2);
  assert.equal(second.readBytes, rs, 'only the region with data');
});

for (const alg of BOTH) test(`${alg}: hashes match the bytes whatever the map; holes are not read`, async () => {
  const rs = 64 * KiB;
  const sha = (b: Buffer): Buffer => digest(alg, b);
  const bytes = Buffer.alloc(16 * rs);
  bytes.fill(7, 2 * rs + 100, 2 * rs + 200); // region 2
  bytes.fill(9, 9 * rs, 11 * rs); // regions 9, 10
  const truth = Array.from({ length: 16 }, (_, i) => sha(bytes.subarray(i * rs, (i + 1) * rs)));
  // An honest map at 4 KiB blocks, and one that calls everything data.
  const honest = (offset: number, length: number): Extent[] => {
    const out: Extent[] = [];
    for (let at = offset; at < offset + length; at += 4096) {
      const hole = bytes.subarray(at, at + 4096).every((b) => b === 0);
      const last = out[out.length - 1];
      if (last && last.hole === hole) last.length += 4096;
      else out.push({ length: 4096, hole });
    }
    return out;
  };
  const sparse = memDisk(bytes, honest);
  assert.deepEqual(await hashRegions(alg, sparse, rs, 0, 16), truth);
  assert.equal(sparse.readBytes, 3 * rs, 'only the three regions holding data are read');
  const dense = memDisk(bytes, (_o, length) => [{ length, hole: false }]);
  assert.deepEqual(await hashRegions(alg, dense, rs, 0, 16), truth);
  assert.equal(dense.readBytes, 16 * rs);
  // A span from the middle, running past the end: beyond it, the empty hash.
  const tail = await hashRegions(alg, sparse, rs, 14, 4);
  assert.deepEqual(tail, [truth[14], truth[15], sha(Buffer.alloc(0)), sha(Buffer.alloc(0))]);
  // The asker gone: null.
  assert.equal(await hashRegions(alg, sparse, rs, 0, 16, () => false), null);
});

for (const alg of BOTH) test(`${alg}, on a real sparse file: a 1 GiB volume with two writes is hashed by reading what it holds`, async () => {
  const sha = (b: Buffer): Buffer => digest(alg, b);
  const dir = tempDir('hash');
  try {
    const v = Volume.open({ name: 'v', path: join(dir, 'v.img'), size: 1024 * MiB, readOnly: false });
    const a = Buffer.alloc(64 * KiB, 0x5a);
    await v.write(3 * MiB, a, false);
    await v.write(700 * MiB + 4096, a.subarray(0, 4096), false);
    let read = 0;
    const counted: HashedDisk = {
      size: v.size,
      read: (o, into, at, n) => { read += n; return v.read(o, into, at, n); },
      extents: (o, n, max) => v.extents(o, n, max),
    };
    const rs = MiB;
    const hashes = (await hashRegions(alg, counted, rs, 0, 1024))!;
    assert.equal(hashes.length, 1024);
    const whole = Buffer.alloc(rs);
    for (const r of [0, 3, 700, 1023]) {
      await v.read(r * rs, whole, 0, rs);
      assert.deepEqual(hashes[r], sha(whole), `region ${r}`);
    }
    // ext4/xfs/tmpfs map at block granularity: two regions hold data. (A file system
    // without SEEK_DATA reports all data; then all is read and the hashes still match.)
    const map = await v.extents(0, v.size, 16);
    if (map.length > 1) assert.ok(read <= 4 * rs, `read ${read} bytes of a 1 GiB volume holding 68 KiB`);
    v.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hashing of many volumes at once shares the node\'s HASH_BUFFERS buffers: memory bounded whatever the number of volumes', async () => {
  const rs = 64 * KiB;
  const disks = Array.from({ length: 12 }, (_, v) => {
    const bytes = Buffer.alloc(64 * rs, v + 1);
    const d = memDisk(bytes, (_o, length) => [{ length, hole: false }]);
    const read = d.read.bind(d);
    // Slow reads, so every hashing is under way at once.
    d.read = async (o, into, at, n) => {
      await new Promise((r) => setTimeout(r, 2));
      return read(o, into, at, n);
    };
    return { d, bytes };
  });
  const node = new HashBuffers();
  const all = await Promise.all(disks.map(({ d }) => hashRegions('blake3', d, rs, 0, 64, () => true, node)));
  all.forEach((hashes, v) => assert.deepEqual(hashes, Array.from({ length: 64 }, (_, i) => digest('blake3', disks[v]!.bytes.subarray(i * rs, (i + 1) * rs)))));
  assert.equal(node.made, HASH_BUFFERS, `${node.made} buffers for 12 volumes hashing at once`);
  // All given back: the next hashing takes one of them, makes none.
  assert.ok(await hashRegions('blake3', disks[0]!.d, rs, 0, 64, () => true, node));
  assert.equal(node.made, HASH_BUFFERS);
  // An asker already gone gets null and holds no buffer.
  assert.equal(await hashRegions('blake3', disks[1]!.d, rs, 0, 64, () => false, node), null);
  await Promise.all(disks.map(({ d }) => hashRegions('blake3', d, rs, 0, 64, () => true, node)));
  assert.equal(node.made, HASH_BUFFERS);
});
