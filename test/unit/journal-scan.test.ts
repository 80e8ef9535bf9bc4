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
import { RECOVERY_READ_BYTES } from '../../src/limits/limits.js';
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
