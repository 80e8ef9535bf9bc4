// Large appends to the journal and the receive log go through O_DIRECT, padded with
// zeros to a 4 KiB block (src/journal/store.ts, docs/JOURNAL.md "Direct appends"): the
// bytes read back are those appended, small appends after a direct one land after it,
// a clean close cuts the zeros, and recovery after a crash (no close: the zeros stay)
// finds every record and cuts them without calling them a torn tail.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import { DIRECT_APPEND_MIN_BYTES, DIRECT_BLOCK_BYTES } from '../../src/limits/limits.js';
import { tempDir } from '../helpers/run.js';

const onDisk = (dir: string, name: string): number => fs.statSync(path.join(dir, name)).size;

/** Whether the temp folder's filesystem opens files O_DIRECT (tmpfs before Linux 6.6 does not): the store then never pads. */
function directOpens(): boolean {
  const dir = tempDir('direct-probe');
  const file = path.join(dir, 'probe');
  fs.writeFileSync(file, '');
  try {
    fs.closeSync(fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
const skip = directOpens() ? false : `the filesystem of ${os.tmpdir()} refuses O_DIRECT`;

test('a direct append reads back whole, pads to a block, and a clean close cuts the padding', { skip }, async () => {
  const dir = tempDir('direct-append');
  const store = new DirStore(dir, { directAppends: true });
  const f = store.create('seg');
  const small = crypto.randomBytes(100);
  const large = crypto.randomBytes(DIRECT_APPEND_MIN_BYTES + 777);
  const large2 = [crypto.randomBytes(5000), crypto.randomBytes(DIRECT_APPEND_MIN_BYTES)];
  const tiny = crypto.randomBytes(33);
  await f.writev(0, [small]);
  assert.equal(onDisk(dir, 'seg'), 100, 'a small append goes through the page cache, unpadded');
  await f.writev(100, [large]);
  let end = 100 + large.length;
  assert.equal(f.size(), end);
  assert.equal(onDisk(dir, 'seg'), Math.ceil(end / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES, 'the direct append padded to a block');
  await f.writev(end, large2);
  end += 5000 + DIRECT_APPEND_MIN_BYTES;
  await f.writev(end, [tiny]);
  end += tiny.length;
  const want = Buffer.concat([small, large, ...large2, tiny]);
  assert.equal(f.size(), end);
  assert.ok(onDisk(dir, 'seg') > end, 'the small append after a direct one left the padding beyond it');
  assert.deepEqual(await f.read(0, end + 4096), want, 'read back: every byte appended, in order, none of the padding');
  assert.deepEqual(fs.readFileSync(path.join(dir, 'seg')).subarray(0, end), want, 'the file, read by another reader');
  f.close();
  assert.equal(onDisk(dir, 'seg'), end, 'a clean close cut the padding');
  assert.deepEqual(fs.readFileSync(path.join(dir, 'seg')), want);
});

test('a direct append with following writes: the record, then each following write', { skip }, async () => {
  const dir = tempDir('direct-append-then');
  const f = new DirStore(dir, { directAppends: true }).create('seg');
  const vol = path.join(dir, 'volume');
  fs.writeFileSync(vol, Buffer.alloc(1 << 20));
  const fd = fs.openSync(vol, 'r+');
  const head = crypto.randomBytes(10);
  await f.writev(0, [head]);
  const rec = crypto.randomBytes(DIRECT_APPEND_MIN_BYTES + 5);
  const a = crypto.randomBytes(4096);
  const b = crypto.randomBytes(512);
  assert.ok(f.writevThen, 'the addon has pwritevDirectThen');
  const errs = await f.writevThen(10, [rec], { fd, bufs: [a, b], positions: [8192, 65536] });
  assert.deepEqual(errs, [0, 0]);
  assert.deepEqual(await f.read(0, 1 << 20), Buffer.concat([head, rec]));
  assert.equal(onDisk(dir, 'seg') % DIRECT_BLOCK_BYTES, 0, 'it went direct');
  const v = fs.readFileSync(vol);
  assert.deepEqual(v.subarray(8192, 8192 + 4096), a);
  assert.deepEqual(v.subarray(65536, 65536 + 512), b);
  fs.closeSync(fd);
  f.close();
});

test("a close cuts its padding only while the file ends there, never another's bytes", { skip }, async () => {
  const dir = tempDir('direct-append-two');
  const store = new DirStore(dir, { directAppends: true });
  const a = store.create('seg');
  const large = crypto.randomBytes(DIRECT_APPEND_MIN_BYTES + 9);
  await a.writev(0, [large]);
  const padded = onDisk(dir, 'seg');
  assert.ok(padded > large.length);
  // Another descriptor writes past the padding (nothing of this project does; a close must still not cut it).
  const b = store.open('seg');
  const more = crypto.randomBytes(5000);
  b.writeSync(padded, more);
  a.close();
  assert.equal(onDisk(dir, 'seg'), padded + more.length, 'the other bytes stayed');
  b.close();
});

test('a store without directAppends never pads', async () => {
  const dir = tempDir('direct-append-off');
  const f = new DirStore(dir).create('seg');
  const large = crypto.randomBytes(DIRECT_APPEND_MIN_BYTES + 1);
  await f.writev(0, [large]);
  assert.equal(onDisk(dir, 'seg'), large.length);
  f.close();
});

test('recovery after a crash finds every record of direct appends and cuts the padding quietly', { skip }, async () => {
  const dir = tempDir('direct-append-journal');
  const j = new Journal({ store: new DirStore(dir, { directAppends: true }), capacity: 256 << 20, now: () => 1000 });
  await j.recover();
  const payloads: Buffer[] = [];
  for (let i = 0; i < 6; i++) {
    // (Odd sizes: no record ends on a block.)
    const p = crypto.randomBytes(DIRECT_APPEND_MIN_BYTES + 4096 * i + 13);
    payloads.push(p);
    j.append(RecordKind.Write, i * (1 << 20), p.length, p);
    if (i % 2 === 1) j.barrier();
  }
  await j.sync();
  const segs = fs.readdirSync(dir).filter((n) => n.endsWith('.seg'));
  assert.equal(segs.length, 1);
  const logical = SEGMENT_HEADER_SIZE + payloads.reduce((n, p) => n + RECORD_HEADER_SIZE + p.length, 0) + 3 * RECORD_HEADER_SIZE;
  assert.equal(onDisk(dir, segs[0]!), Math.ceil(logical / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES,
    'the segment ends in padding (the appends went direct)');
  // A crash: the daemon dies without closing, so the padding stays. Recovery reads it.
  const again = new Journal({ store: new DirStore(dir, { directAppends: true }), capacity: 256 << 20 });
  const report = await again.recover();
  assert.equal(report.records, 9);
  assert.equal(report.damaged, false);
  assert.equal(report.tornBytes, 0, 'padding is not a torn tail');
  assert.deepEqual(report.notes.filter((n) => /torn/.test(n)), []);
  assert.equal(onDisk(dir, segs[0]!), logical, 'recovery cut the padding');
  const read = await again.read(1, 64 << 20);
  assert.deepEqual(read.filter((r) => r.kind === RecordKind.Write).map((r) => r.payload), payloads);
  // Appends go on after it, and a torn record after the padding's place is still a torn tail.
  again.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 7));
  await again.sync();
  again.close();
  fs.appendFileSync(path.join(dir, segs[0]!), Buffer.alloc(100, 0xee));
  const third = new Journal({ store: new DirStore(dir, { directAppends: true }), capacity: 256 << 20 });
  const r3 = await third.recover();
  assert.equal(r3.records, 10);
  assert.equal(r3.tornBytes, 100, 'bytes that are not zeros to a block end are a torn tail, as before');
  third.close();
  j.close();
});
