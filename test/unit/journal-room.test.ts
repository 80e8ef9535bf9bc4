// A journal (or receive log) full and then released rolls its tail to an empty segment so the
// old one can go; that segment's header must fit the capacity too. Records leave it room
// (src/journal/segment-set.ts): a full receive log went 32 bytes over (replication simulation seed 2776).
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind, SEGMENT_HEADER_SIZE } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import { tempDir } from '../helpers/run.js';

test('a full journal, released, rolls its tail within its capacity', async () => {
  const capacity = 64 * 1024;
  // (One segment can hold it all: the tail is the only segment, and over its target once full.)
  const journal = new Journal({ store: new DirStore(path.join(tempDir('journal-room'), 'j')), capacity, segmentSize: 16 * 1024 });
  await journal.recover();
  // Large records, then the smallest (a trim: its header alone) until nothing more fits.
  while (journal.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 1)) !== 'full');
  while (journal.append(RecordKind.Trim, 0, 4096, null) !== 'full');
  assert.ok(journal.usedBytes + SEGMENT_HEADER_SIZE <= capacity, `${journal.usedBytes} bytes used leave a segment header of room`);
  await journal.sync();
  await journal.release(journal.lastSeq);
  assert.ok(journal.usedBytes <= capacity, `${journal.usedBytes} bytes used of ${capacity} after the tail rolled`);
  await journal.release(journal.lastSeq);
  assert.ok(journal.usedBytes <= capacity);
  // And it takes records again.
  assert.equal(typeof journal.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 2)), 'number');
  journal.close();
});
