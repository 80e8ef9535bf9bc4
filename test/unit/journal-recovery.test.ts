// Recovery on real files: every torn-tail length of a small journal, a flipped bit
// in a middle record, release and numbering across restarts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Journal, KEEP_PREFIX, REPORT_DAMAGE } from '../../src/journal/journal.js';
import { RecordKind, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import { tempDir } from '../helpers/run.js';

async function build(dir: string): Promise<{ sizes: number[] }> {
  const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20, now: () => 1000 });
  await j.recover();
  const sizes: number[] = [];
  for (let i = 0; i < 4; i++) {
    j.append(RecordKind.Write, i * 4096, 100 + i, Buffer.alloc(100 + i, i + 1));
    sizes.push(RECORD_HEADER_SIZE + 100 + i);
    if (i === 1) {
      j.barrier();
      sizes.push(RECORD_HEADER_SIZE);
    }
  }
  await j.sync();
  j.close();
  return { sizes };
}

function segmentFile(dir: string): string {
  return path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.seg'))!);
}

test('a torn tail of every possible length is cut cleanly', async () => {
  const master = tempDir('jrec');
  const { sizes } = await build(master);
  const full = fs.readFileSync(segmentFile(master));
  const boundaries = [SEGMENT_HEADER_SIZE];
  for (const s of sizes) boundaries.push(boundaries[boundaries.length - 1]! + s);
  assert.equal(boundaries[boundaries.length - 1], full.length);
  for (let len = SEGMENT_HEADER_SIZE; len <= full.length; len++) {
    const dir = tempDir('jtorn');
    fs.writeFileSync(path.join(dir, path.basename(segmentFile(master))), full.subarray(0, len));
    const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20 });
    const report = await j.recover();
    const whole = boundaries.filter((b) => b <= len).length - 1; // complete records
    assert.equal(report.records, whole, `length ${len}`);
    assert.equal(j.lastSeq, whole, `length ${len}`);
    assert.equal(report.damaged, false);
    assert.equal(report.tornBytes, len - boundaries[whole]!, `length ${len}`);
    assert.equal(fs.statSync(segmentFile(dir)).size, boundaries[whole], 'file cut at the last whole record');
    // Appending after recovery continues the numbering and reads back.
    const seq = j.append(RecordKind.Write, 0, 3, Buffer.from('new'));
    assert.equal(seq, whole + 1);
    await j.whenWritten(whole + 1);
    const all = await j.read(1, 1 << 20);
    assert.equal(all.length, whole + 1);
    assert.deepEqual(all[all.length - 1]!.payload, Buffer.from('new'));
    j.close();
    fs.rmSync(dir, { recursive: true });
  }
});

test('a flipped bit in a middle record is damage, reported with segment and offset', async () => {
  const dir = tempDir('jflip');
  const { sizes } = await build(dir);
  const file = segmentFile(dir);
  const buf = fs.readFileSync(file);
  const second = SEGMENT_HEADER_SIZE + sizes[0]!; // record 2's header
  buf.writeUInt8(buf.readUInt8(second + RECORD_HEADER_SIZE + 10) ^ 0x04, second + RECORD_HEADER_SIZE + 10); // in record 2's payload
  fs.writeFileSync(file, buf);
  const ranges: Array<[number, number]> = [];
  const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20 });
  const report = await j.recover((o, l) => ranges.push([o, l]));
  assert.equal(report.damaged, true);
  assert.equal(report.unknownLoss, false);
  assert.deepEqual(report.lost, [{ offset: 4096, length: 101 }]);
  assert.ok(report.notes.some((n) => n.includes(`byte ${second}`) && n.includes(path.basename(file))), report.notes.join('\n'));
  // The records after the damage were still seen (their ranges go to the bitmap).
  assert.deepEqual(ranges.map((r) => r[0]), [0, 8192, 12288]);
  j.close();
});

test('a flipped bit in a middle header: the range is unknown, so the whole volume', async () => {
  const dir = tempDir('jflip2');
  const { sizes } = await build(dir);
  const file = segmentFile(dir);
  const buf = fs.readFileSync(file);
  buf.writeUInt8(buf.readUInt8(SEGMENT_HEADER_SIZE + sizes[0]! + 20) ^ 0x01, SEGMENT_HEADER_SIZE + sizes[0]! + 20);
  fs.writeFileSync(file, buf);
  const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20 });
  const report = await j.recover();
  assert.equal(report.damaged, true);
  assert.equal(report.unknownLoss, true);
  j.close();
});

test('release frees whole segments, and numbering survives an empty journal', async () => {
  const dir = tempDir('jrel');
  const j = new Journal({ store: new DirStore(dir), capacity: 4 << 20, segmentSize: 1 << 20 });
  await j.recover();
  const data = Buffer.alloc(256 * 1024, 7);
  for (let i = 0; i < 12; i++) j.append(RecordKind.Write, i * data.length, data.length, data);
  j.barrier();
  await j.sync();
  const segs = (): number => fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).length;
  assert.ok(segs() >= 3);
  assert.equal(j.backlogRecords, 13);
  await j.release(5);
  assert.equal(j.released, 5);
  assert.ok(j.backlogBytes >= 8 * data.length && j.backlogBytes < 9 * data.length + 4096, String(j.backlogBytes));
  await j.release(13);
  await j.sync();
  assert.equal(j.backlogRecords, 0);
  assert.equal(j.backlogBytes, 0);
  assert.equal(segs(), 1, 'one empty segment carries the numbering');
  j.close();
  const again = new Journal({ store: new DirStore(dir), capacity: 4 << 20 });
  await again.recover();
  assert.equal(again.nextSeq, 14);
  assert.equal(again.epoch, 2);
  assert.equal(again.append(RecordKind.Trim, 0, 4096, null), 14);
  await again.drained();
  await assert.rejects(again.read(3, 1000), /no longer holds record 3/);
  again.close();
});

test('a full journal says so instead of growing', async () => {
  const dir = tempDir('jfull');
  const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20 });
  await j.recover();
  const data = Buffer.alloc(100 * 1024);
  let n = 0;
  while (j.append(RecordKind.Write, 0, data.length, data) !== 'full') n++;
  assert.equal(n, 10);
  assert.ok(j.usedBytes <= 1 << 20);
  await j.drained();
  j.close();
});

test('a receive log (KEEP_PREFIX) keeps the intact prefix: a damaged record and everything after it go, to be sent again', async () => {
  const dir = tempDir('jprefix');
  const { sizes } = await build(dir);
  const file = segmentFile(dir);
  const buf = fs.readFileSync(file);
  const second = SEGMENT_HEADER_SIZE + sizes[0]!;
  buf.writeUInt8(buf.readUInt8(second + RECORD_HEADER_SIZE + 10) ^ 0x04, second + RECORD_HEADER_SIZE + 10); // record 2's payload
  fs.writeFileSync(file, buf);
  const log = new Journal({ store: new DirStore(dir), capacity: 1 << 20, onDamage: KEEP_PREFIX });
  assert.equal(log.onDamage, KEEP_PREFIX);
  const report = await log.recover();
  assert.equal(report.damaged, true);
  assert.equal(report.unknownLoss, false, 'nothing to resync: the peer sends the rest again');
  assert.deepEqual(report.lost, []);
  assert.equal(log.lastSeq, 1);
  assert.equal(fs.statSync(file).size, second, 'cut at the damaged record');
  assert.ok(report.notes.some((n) => n.startsWith(`receive log: damaged record at segment ${path.basename(file)} byte ${second}`)), report.notes.join('\n'));
  log.close();
  // The same bytes as a journal: the damaged record's range is reported, later records kept.
  const dir2 = tempDir('jprefix2');
  await build(dir2);
  fs.writeFileSync(segmentFile(dir2), buf);
  const j = new Journal({ store: new DirStore(dir2), capacity: 1 << 20, onDamage: REPORT_DAMAGE });
  assert.equal(j.onDamage, REPORT_DAMAGE);
  const jr = await j.recover();
  assert.deepEqual(jr.lost, [{ offset: 4096, length: 101 }]);
  assert.equal(j.lastSeq, 5);
  j.close();
});

test('a receive log (KEEP_PREFIX) drops a segment after a gap and the segments after it', async () => {
  const dir = tempDir('jgap');
  const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20, segmentSize: 4096, onDamage: KEEP_PREFIX });
  await j.recover();
  const data = Buffer.alloc(3000, 1);
  for (let i = 0; i < 4; i++) j.append(RecordKind.Write, i * 4096, data.length, data);
  await j.sync();
  j.close();
  const segs = fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
  assert.equal(segs.length, 4);
  fs.rmSync(path.join(dir, segs[1]!)); // records 2 are gone: 3 and 4 no longer follow
  const log = new Journal({ store: new DirStore(dir), capacity: 1 << 20, onDamage: KEEP_PREFIX });
  const report = await log.recover();
  assert.equal(log.lastSeq, 1);
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.endsWith('.seg')), [segs[0]]);
  assert.ok(report.notes.some(
    (n) => n.includes(`segment ${segs[2]} starts at record 3 but 2 was next; it and everything after it (2 segment file(s)) are dropped`)),
    report.notes.join('\n'));
  log.close();
});
