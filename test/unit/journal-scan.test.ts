// Recovery reads a segment in large reads (src/journal/scan-reader.ts), not one or two
// per record: a start with a long backlog of small writes took 50 s of CPU for 900k
// records before. The records, a record larger than a read, and damage after it are
// still all found.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Journal, REPORT_DAMAGE } from '../../src/journal/journal.js';
import { RecordKind, RECORD_HEADER_SIZE } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import type { StoreFile } from '../../src/store/store.js';
import { RECOVERY_PROGRESS_MS, RECOVERY_READ_BYTES } from '../../src/limits/limits.js';
import { recoveryProgress } from '../../src/node/role-open.js';
import type { Logger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';

/** A DirStore that counts the reads of its files. */
class CountingStore extends DirStore {
  reads = 0;
  override open(name: string): StoreFile {
    const f = super.open(name);
    const read = f.read.bind(f);
    f.read = (position, length, into) => {
      this.reads++;
      return read(position, length, into);
    };
    return f;
  }
}

const SMALL = 4096;
const COUNT = 3000;
const LARGE = 2 * RECOVERY_READ_BYTES + 123; // larger than a read: a buffer of its own

async function build(dir: string): Promise<void> {
  const j = new Journal({ store: new DirStore(dir), capacity: 256 << 20, now: () => 1000 });
  await j.recover();
  for (let i = 0; i < COUNT; i++) {
    if (i === COUNT / 2) j.append(RecordKind.Write, 0, LARGE, Buffer.alloc(LARGE, 0xab));
    j.append(RecordKind.Write, i * SMALL, SMALL, Buffer.alloc(SMALL, i & 0xff));
    if (i % 100 === 99) j.barrier();
  }
  await j.sync();
  j.close();
}

test('recovery reads a segment in large reads and finds every record', async () => {
  const dir = tempDir('jscan');
  await build(dir);
  const store = new CountingStore(dir);
  const j = new Journal({ store, capacity: 256 << 20 });
  const report = await j.recover();
  const records = COUNT + 1 + COUNT / 100;
  assert.equal(report.records, records);
  assert.equal(report.damaged, false);
  const bytes = COUNT * (RECORD_HEADER_SIZE + SMALL) + RECORD_HEADER_SIZE + LARGE;
  // One read per RECOVERY_READ_BYTES and the large record's own, with a few to spare;
  // two per record (the old scan) would be over 6000.
  const bound = Math.ceil(bytes / RECOVERY_READ_BYTES) + 8;
  assert.ok(store.reads <= bound, `recovery made ${store.reads} reads of ${records} records (at most ${bound})`);
  const back = await j.read(COUNT / 2 - 2, 1 << 30);
  const large = back.find((r) => r.length === LARGE)!;
  assert.ok(large.payload.equals(Buffer.alloc(LARGE, 0xab)), 'the large record reads back whole');
  j.close();
});

test('a damaged payload after a large record is still found', async () => {
  const dir = tempDir('jscan-bad');
  await build(dir);
  const seg = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.seg'))!);
  const fd = fs.openSync(seg, 'r+');
  const size = fs.fstatSync(fd).size;
  const at = size - 10 * (RECORD_HEADER_SIZE + SMALL) + RECORD_HEADER_SIZE + 7; // inside a payload, well before the tail
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ 0x10;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
  const j = new Journal({ store: new DirStore(dir), capacity: 256 << 20, onDamage: REPORT_DAMAGE });
  const report = await j.recover();
  assert.equal(report.damaged, true);
  assert.equal(report.lost.length, 1, report.notes.join('; '));
  assert.equal(report.lost[0]!.length, SMALL);
  j.close();
});

test('a scan tells its progress after each segment, and a start logs it at most every RECOVERY_PROGRESS_MS', async () => {
  const dir = tempDir('jscan-progress');
  const j0 = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize: 1 << 20, now: () => 1000 });
  await j0.recover();
  for (let i = 0; i < 1000; i++) j0.append(RecordKind.Write, i * SMALL, SMALL, Buffer.alloc(SMALL, 1));
  await j0.sync();
  j0.close();
  const segs = fs.readdirSync(dir).filter((n) => n.endsWith('.seg'));
  assert.ok(segs.length >= 3, `${segs.length} segments`);
  const total = segs.reduce((n, s) => n + fs.statSync(path.join(dir, s)).size, 0);
  const told: Array<[number, number, number]> = [];
  const j = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize: 1 << 20 });
  await j.recover(undefined, (done, of, bytes) => told.push([done, of, bytes]));
  j.close();
  assert.equal(told.length, segs.length);
  told.forEach(([done, of], i) => {
    assert.equal(done, i + 1);
    assert.equal(of, segs.length);
  });
  assert.equal(told[told.length - 1]![2], total);
  assert.ok(told.every(([, , b], i) => i === 0 || b > told[i - 1]![2]), 'bytes grow');

  // The log: nothing before RECOVERY_PROGRESS_MS, then once per interval; never for the last segment.
  const lines: string[] = [];
  const log = { info: (_o: unknown, m: string) => lines.push(m) } as unknown as Logger;
  let t = 0;
  const tell = recoveryProgress(log, 'db', () => t);
  tell(1, 10, 2 ** 30);
  t = RECOVERY_PROGRESS_MS - 1;
  tell(2, 10, 2 * 2 ** 30);
  t = RECOVERY_PROGRESS_MS;
  tell(3, 10, 3 * 2 ** 30);
  tell(4, 10, 4 * 2 ** 30);
  t = 3 * RECOVERY_PROGRESS_MS;
  tell(10, 10, 10 * 2 ** 30);
  assert.deepEqual(lines, ['volume db: journal recovery: 3 of 10 segments, 3.0 GiB read, 5 s']);
});
