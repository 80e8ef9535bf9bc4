// Released segment files written again (src/journal/segment-set.ts, docs/JOURNAL.md
// "Spare segment files"): a record lands in pages the file already has. What a reused
// file holds past this use's records is its earlier use's bytes, and recovery must
// never take them for records, nor for damage: after kill -9 with a reused tail, after
// a crash before its own header was written, and with spares left at a start.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind, SEGMENT_HEADER_SIZE } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import { SEGMENT_SPARES } from '../../src/limits/limits.js';
import { tempDir } from '../helpers/run.js';

const SEGMENT = 64 * 1024;
const names = (dir: string, re: RegExp): string[] => fs.readdirSync(dir).filter((n) => re.test(n)).sort();
const segments = (dir: string): string[] => names(dir, /^\d{20}\.seg$/);
const spares = (dir: string): string[] => names(dir, /^spare-\d+\.seg$/);

/** A journal whose first segments were all released (now spares), then written again: `after` records of 4 KiB (byte i+1). */
async function reused(dir: string, after: number): Promise<{ j: Journal; oldHeader: Buffer; first: number }> {
  const j = new Journal({ store: new DirStore(dir), capacity: 4 << 20, segmentSize: SEGMENT });
  await j.recover();
  const big = Buffer.alloc(16 * 1024, 0xee);
  for (let i = 0; i < 12; i++) j.append(RecordKind.Write, i * big.length, big.length, big);
  await j.sync();
  await j.release(j.lastSeq);
  await j.sync();
  assert.equal(spares(dir).length, SEGMENT_SPARES, 'released segments kept as spares');
  const spare = path.join(dir, spares(dir).at(-1)!);
  const oldHeader = Buffer.from(fs.readFileSync(spare).subarray(0, SEGMENT_HEADER_SIZE));
  const oldLength = fs.statSync(spare).size;
  const first = j.nextSeq;
  // Fill the tail past its target size, so the next record opens a segment in a spare's file.
  while (j.nextSeq === first || segments(dir).length < 2) j.append(RecordKind.Write, 0, big.length, big);
  const start = j.nextSeq;
  for (let i = 0; i < after; i++) j.append(RecordKind.Write, i * 4096, 4096, Buffer.alloc(4096, i + 1));
  await j.sync();
  const tail = path.join(dir, segments(dir).at(-1)!);
  assert.equal(fs.statSync(tail).size, oldLength, 'the tail is a spare\'s file, its old bytes past the new records');
  return { j, oldHeader, first: start };
}

test('after kill -9 with a reused tail: its own records are read back, its old bytes are cut, and nothing is damage', async () => {
  const dir = tempDir('jspare');
  const { first } = await reused(dir, 3);
  // (No close: the process died. A new one opens the folder.)
  const again = new Journal({ store: new DirStore(dir), capacity: 4 << 20, segmentSize: SEGMENT });
  const report = await again.recover();
  assert.equal(report.damaged, false, report.notes.join('\n'));
  assert.equal(report.unknownLoss, false);
  assert.equal(report.tornBytes, 0, 'old bytes are not a torn tail');
  assert.ok(report.notes.some((n) => /are its file's earlier use, cut/.test(n)), report.notes.join('\n'));
  assert.equal(again.lastSeq, first + 2);
  const records = await again.read(first, 1 << 20);
  assert.deepEqual(records.map((r) => [r.seq, r.payload[0]]), [[first, 1], [first + 1, 2], [first + 2, 3]]);
  // And it goes on from there.
  assert.equal(again.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 9)), first + 3);
  await again.sync();
  again.close();
  const third = new Journal({ store: new DirStore(dir), capacity: 4 << 20, segmentSize: SEGMENT });
  const r3 = await third.recover();
  assert.equal(r3.damaged, false);
  assert.equal(third.lastSeq, first + 3);
  third.close();
});

test('a reused file whose own header never reached the disk is a segment being created: removed, nothing lost that was durable', async () => {
  const dir = tempDir('jspare-header');
  const { j, oldHeader } = await reused(dir, 2);
  j.close();
  // The crash kept the rename and lost every write of the new use: the file is its earlier use's, whole.
  const tailName = segments(dir).at(-1)!;
  const durableBefore = Number(tailName.slice(0, 20)) - 1;
  const tail = path.join(dir, tailName);
  const fd = fs.openSync(tail, 'r+');
  fs.writeSync(fd, oldHeader, 0, oldHeader.length, 0);
  fs.closeSync(fd);
  const again = new Journal({ store: new DirStore(dir), capacity: 4 << 20, segmentSize: SEGMENT });
  const report = await again.recover();
  assert.equal(report.damaged, false, report.notes.join('\n'));
  assert.equal(report.unknownLoss, false);
  assert.ok(report.notes.some((n) => /was being created at the crash \(the header of its earlier use/.test(n)), report.notes.join('\n'));
  // (Removed; the journal, now empty, begins a new segment at the same seq: a header alone.)
  assert.ok(!fs.existsSync(tail) || fs.statSync(tail).size === SEGMENT_HEADER_SIZE, 'removed');
  assert.equal(again.lastSeq, durableBefore, 'the segment before it is whole');
  again.close();
});

test('spares left by a process that died are removed at the start; a clean stop leaves none', async () => {
  const dir = tempDir('jspare-start');
  const { first } = await reused(dir, 1);
  fs.writeFileSync(path.join(dir, 'spare-99.seg'), Buffer.alloc(SEGMENT, 0xab));
  const again = new Journal({ store: new DirStore(dir), capacity: 4 << 20, segmentSize: SEGMENT });
  const report = await again.recover();
  assert.equal(report.damaged, false);
  assert.deepEqual(spares(dir), []);
  assert.equal(again.lastSeq, first);
  again.close();
  assert.deepEqual(spares(dir), []);
});
