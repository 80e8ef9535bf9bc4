// A large file the node lets go of (a released journal or receive log segment, a complete
// round's undo area, history's oldest segments) is freed by the kernel at the last of its
// removal and its close: about 38 ms for 64 MiB on the test machine's disk, and the event
// loop serves every host meanwhile (docs/JOURNAL.md, "Releasing a segment"). So a file's
// close runs on the thread pool, and such files are removed before they close, never after.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import type { Disk } from '../../src/journal/disk.js';
import type { Store, StoreFile } from '../../src/store/store.js';
import { ReplicaRound } from '../../src/secondary/replica-round.js';
import { SegmentFiles } from '../../src/history/segments.js';
import { tempDir } from '../helpers/run.js';

test('a released journal segment closes on the thread pool, not on the event loop', async (t) => {
  const dir = path.join(tempDir('file-release'), 'j');
  const journal = new Journal({ store: new DirStore(dir), capacity: 64 << 20, segmentSize: 1 << 20 });
  await journal.recover();
  // Three segments' worth, so that a release drops whole segments.
  for (let i = 0; i < 3 * 16; i++) journal.append(RecordKind.Write, i * 65536, 65536, Buffer.alloc(65536, i));
  await journal.sync();
  const before = fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).length;
  assert.ok(before >= 3, `${before} segments written`);
  const closedSync: number[] = [];
  const closedOnPool: number[] = [];
  const closeSync = fs.closeSync;
  const close = fs.close;
  t.after(() => {
    fs.closeSync = closeSync;
    fs.close = close;
  });
  fs.closeSync = (fd: number) => {
    closedSync.push(fd);
    closeSync(fd);
  };
  fs.close = ((fd: number, cb?: (err: NodeJS.ErrnoException | null) => void) => {
    closedOnPool.push(fd);
    return close(fd, cb);
  }) as typeof fs.close;
  await journal.release(journal.lastSeq - 1);
  fs.closeSync = closeSync;
  fs.close = close;
  const after = fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).length;
  assert.ok(after < before, `the release dropped segments (${before} before, ${after} after)`);
  assert.ok(closedOnPool.length >= before - after, `${closedOnPool.length} closes on the pool for ${before - after} segments dropped`);
  assert.deepEqual(closedSync, [], 'no descriptor closed on the event loop');
  journal.close();
});

/** A store that notes, in order, each remove and each close of its files. */
function noting(inner: Store, log: string[]): Store {
  const wrap = (f: StoreFile): StoreFile => new Proxy(f, {
    get(target, key) {
      if (key === 'close') return () => {
        log.push(`close ${target.name}`);
        target.close();
      };
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'open') return (name: string) => wrap(target.open(name));
      if (key === 'create') return (name: string) => wrap(target.create(name));
      if (key === 'remove') return (name: string) => {
        log.push(`remove ${name}`);
        target.remove(name);
      };
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

test('a complete round\'s undo area is removed before it closes', async () => {
  const log: string[] = [];
  const store = noting(new DirStore(tempDir('file-release-undo')), log);
  const round = new ReplicaRound(store, 65536, { size: 1 << 20 } as Disk);
  await round.readMark();
  await round.begin(5, false);
  assert.ok(round.undo !== null, 'a round after the first sync keeps an undo area');
  log.length = 0;
  await round.complete();
  await round.completed();
  const undo = log.filter((l) => / undo$/.test(l));
  assert.deepEqual(undo, ['remove undo', 'close undo'], `the undo area's steps: ${log.join(', ')}`);
  assert.ok(!store.list().includes('undo'));
});

test('history\'s oldest segments are removed before they close', async () => {
  const log: string[] = [];
  const store = noting(new DirStore(tempDir('file-release-history')), log);
  const files = new SegmentFiles(store, 1 << 20);
  await files.begin();
  await files.begin();
  const first = files.all[0]!;
  log.length = 0;
  await files.dropOldest(1);
  const mine = log.filter((l) => l.endsWith(` ${first.file.name}`));
  assert.deepEqual(mine, [`remove ${first.file.name}`, `close ${first.file.name}`], `the oldest segment's steps: ${log.join(', ')}`);
  files.close();
});
