// A journal belongs to one volume (issue 15): segments name their volume and a
// segment of another volume is refused at open; the previous release's segments
// (version 1, naming none) still open and take appends; a journal folder is locked
// while in use, and the lock dies with its process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ForeignSegmentError, Journal, KEEP_PREFIX, type JournalVolume } from '../../src/journal/journal.js';
import { RecordKind, SEGMENT_HEADER_SIZE, decodeSegmentHeader, volumeId, type DecodedSegmentHeader } from '../../src/journal/record.js';
import { DirStore, FolderLock, FOLDER_LOCK_FILE } from '../../src/journal/store.js';
import { tempDir } from '../helpers/run.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const UUID_A = '6f1c7a52-3b0e-4c55-9d0a-2f6b8e4d1c3a';
const UUID_B = 'c2d4e6f8-0a1b-4c3d-8e5f-60718293a4b5';
const vol = (name: string, uuid: string): JournalVolume => ({ name, uuid: () => uuid });

// A journal as the previous release wrote it, from literal bytes (docs/JOURNAL.md,
// "Segment header, version 1"): segment 1 (base seq 1, created 0x18f0000000, base
// epoch 1, no volume), then a 4-byte write of "abcd" at 0x1000 (seq 1, epoch 1) and
// the barrier closing epoch 1 (seq 2).
const V1_SEGMENT = hex(`
  4f4646534a534547 01000000 40000000 0100000000000000 000000f018000000 0100000000000000
  0000000000000000000000000000000000000000 088221b7
  4f464a52 01 01 0000 0100000000000000 0100000000000000 0010000000000000 04000000 04000000
  010000f018000000 310ac892 1e50ea6f 61626364
  4f464a52 01 04 0000 0200000000000000 0100000000000000 0000000000000000 00000000 00000000
  020000f018000000 00000000 9bc9997e
`);
const V1_NAME = '00000000000000000001.seg';

function header(dir: string, name: string): DecodedSegmentHeader {
  const h = decodeSegmentHeader(fs.readFileSync(path.join(dir, name)).subarray(0, SEGMENT_HEADER_SIZE));
  assert.ok(typeof h !== 'string', String(h));
  return h;
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of fs.readdirSync(dir).sort()) out[n] = fs.readFileSync(path.join(dir, n)).toString('hex');
  return out;
}

test('a version 1 journal from the previous release opens without a resync and keeps taking appends', async () => {
  const dir = tempDir('jv1');
  fs.writeFileSync(path.join(dir, V1_NAME), V1_SEGMENT);
  const open = (): Journal => new Journal({ store: new DirStore(dir), capacity: 1 << 20, segmentSize: 4096, volume: vol('db', UUID_A) });
  const j = open();
  const report = await j.recover();
  assert.equal(report.records, 2);
  assert.equal(report.damaged, false);
  assert.equal(report.unknownLoss, false);
  assert.deepEqual(report.lost, []);
  assert.equal(report.tornBytes, 0);
  assert.equal(j.lastSeq, 2);
  assert.equal(j.epoch, 2);
  const old = await j.read(1, 1 << 20);
  assert.deepEqual(old.map((r) => [r.seq, r.kind, r.epoch, r.offset, r.length, r.payload.toString()]),
    [[1, RecordKind.Write, 1, 0x1000, 4, 'abcd'], [2, RecordKind.Barrier, 1, 0, 0, '']]);

  // The open tail (version 1) takes the next records in place; its header stays as written.
  assert.equal(j.append(RecordKind.Write, 0x2000, 3, Buffer.from('xyz')), 3);
  j.barrier();
  // A record past the segment size starts a new segment: version 2, naming the volume.
  assert.equal(j.append(RecordKind.Write, 0x3000, 5000, Buffer.alloc(5000, 0x55)), 5);
  j.barrier();
  await j.sync();
  j.close();
  assert.deepEqual(fs.readFileSync(path.join(dir, V1_NAME)).subarray(0, SEGMENT_HEADER_SIZE), V1_SEGMENT.subarray(0, SEGMENT_HEADER_SIZE));
  const segs = fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
  assert.deepEqual(segs, [V1_NAME, '00000000000000000005.seg', '00000000000000000006.seg']);
  for (const n of segs.slice(1)) {
    const h = header(dir, n);
    assert.equal(h.version, 2);
    assert.deepEqual(h.volume, volumeId(UUID_A));
  }

  // Both versions side by side open again, every record intact.
  const again = open();
  const r2 = await again.recover();
  assert.equal(r2.records, 6);
  assert.equal(r2.damaged, false);
  const all = await again.read(1, 1 << 20);
  assert.deepEqual(all.map((r) => r.seq), [1, 2, 3, 4, 5, 6]);
  assert.equal(all[2]!.payload.toString(), 'xyz');
  assert.ok(all[4]!.payload.equals(Buffer.alloc(5000, 0x55)));
  // Released and emptied, the kept tail is rewritten in the new version too.
  await again.releaseAllDurably();
  again.clear();
  await again.sync();
  again.close();
  for (const n of fs.readdirSync(dir).filter((x) => x.endsWith('.seg'))) assert.equal(header(dir, n).version, 2);
  fs.rmSync(dir, { recursive: true });
});

test('a segment that names another volume is refused at open, with what to do, and nothing is touched', async () => {
  const dir = tempDir('jforeign');
  const a = new Journal({ store: new DirStore(dir), capacity: 1 << 20, volume: vol('v1', UUID_A) });
  await a.recover();
  a.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 0x55));
  a.barrier();
  await a.sync();
  a.close();
  // A torn tail too: were the segment read as this volume's, recovery would cut it.
  fs.appendFileSync(path.join(dir, V1_NAME), Buffer.alloc(100, 0xee));
  const before = snapshot(dir);

  const b = new Journal({ store: new DirStore(dir), capacity: 1 << 20, volume: vol('v2', UUID_B) });
  await assert.rejects(b.recover(), (e: unknown) => {
    assert.ok(e instanceof ForeignSegmentError, String(e));
    assert.equal(e.segment, V1_NAME);
    assert.equal(e.owner, UUID_A);
    assert.match(e.message, new RegExp(
      `^journal of volume v2: segment ${V1_NAME} belongs to another volume \\(uuid ${UUID_A}\\), not to v2 \\(uuid ${UUID_B}\\)`));
    assert.match(e.detail('v1'), new RegExp(`^segment ${V1_NAME} belongs to volume v1 \\(uuid ${UUID_A}\\), not to v2`));
    assert.match(e.message, /two volumes have shared this journal folder/);
    assert.match(e.message, /Nothing was read, changed or removed\. Give each volume a journal folder of its own \(volumes\.NAME\.journal_dir\)/);
    assert.match(e.message, /offsite verify v2 --repair/);
    return true;
  });
  assert.deepEqual(snapshot(dir), before, 'refused, not dropped as damaged nor cut');

  // Behind a segment of the previous release (naming none), it is still refused.
  const mixed = tempDir('jmixed');
  fs.writeFileSync(path.join(mixed, V1_NAME), V1_SEGMENT);
  const c = new Journal({ store: new DirStore(mixed), capacity: 1 << 20, volume: vol('v1', UUID_A) });
  await c.recover();
  await c.releaseAllDurably();
  c.close();
  const tail = new Journal({ store: new DirStore(mixed), capacity: 1 << 20, segmentSize: 4096, volume: vol('v1', UUID_A) });
  await tail.recover();
  tail.append(RecordKind.Write, 0, 5000, Buffer.alloc(5000, 1));
  await tail.sync();
  tail.close();
  const withOld = new Journal({ store: new DirStore(mixed), capacity: 1 << 20, volume: vol('v2', UUID_B) });
  await assert.rejects(withOld.recover(), ForeignSegmentError);
  // The owner opens it as before.
  const owner = new Journal({ store: new DirStore(mixed), capacity: 1 << 20, volume: vol('v1', UUID_A) });
  assert.equal((await owner.recover()).damaged, false);
  owner.close();
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(mixed, { recursive: true });
});

test('a receive log: segments name none before the first link, the adopted uuid after; another volume\'s is refused, not dropped', async () => {
  const dir = tempDir('jrecv');
  let uuid = '';
  const me: JournalVolume = { name: 'db', uuid: () => uuid };
  const log = new Journal({ store: new DirStore(dir), capacity: 1 << 20, segmentSize: 4096, onDamage: KEEP_PREFIX, volume: me });
  await log.recover();
  await log.drained();
  assert.equal(header(dir, V1_NAME).volume, null, 'no identity yet');
  uuid = UUID_A; // the first link: the secondary adopts the primary's uuid
  log.appendReceived({ kind: RecordKind.Write, flags: 0, seq: 1, epoch: 1, offset: 0, length: 5000, time: 1 }, Buffer.alloc(5000, 7));
  log.appendReceived({ kind: RecordKind.Barrier, flags: 0, seq: 2, epoch: 1, offset: 0, length: 0, time: 1 }, null);
  await log.sync();
  log.close();
  assert.deepEqual(header(dir, '00000000000000000002.seg').volume, volumeId(UUID_A));
  const again = new Journal({ store: new DirStore(dir), capacity: 1 << 20, onDamage: KEEP_PREFIX, volume: me });
  const report = await again.recover();
  assert.equal(report.records, 2);
  assert.equal(report.damaged, false);
  again.close();
  // Opened as another volume's receive log: refused, where damage would be dropped and fetched again.
  const before = snapshot(dir);
  const other = new Journal({ store: new DirStore(dir), capacity: 1 << 20, onDamage: KEEP_PREFIX, volume: vol('logs', UUID_B) });
  await assert.rejects(other.recover(), /^Error: journal of volume logs: segment 00000000000000000002\.seg belongs to another volume/);
  assert.deepEqual(snapshot(dir), before);
  fs.rmSync(dir, { recursive: true });
});

test('a journal folder is locked while in use: a second opener is told which volume holds it', () => {
  const dir = path.join(tempDir('jlock'), 'sharedj');
  const lock = FolderLock.take(dir, 'v1');
  assert.ok(fs.existsSync(path.join(dir, FOLDER_LOCK_FILE)));
  assert.throws(() => FolderLock.take(dir, 'v2'), (e: Error) => {
    assert.equal(e.message, `volume v2: journal folder ${dir} is in use by volume v1 of this daemon; two volumes must never share one: ` +
      'their records would mix and one\'s writes would reach the other\'s replica; give each volume a journal folder of its own (volumes.NAME.journal_dir)');
    return true;
  });
  lock.release();
  FolderLock.take(dir, 'v2').release();
});

test('a journal folder held by another process is refused with its volume and pid, and freed when that process dies (kill -9)', async () => {
  const dir = path.join(tempDir('jlock2'), 'j');
  const storeUrl = new URL('../../src/journal/store.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e',
    `import { FolderLock } from ${JSON.stringify(storeUrl)}; FolderLock.take(${JSON.stringify(dir)}, 'db'); console.log('held'); setInterval(() => {}, 1000);`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => { if (b.toString().includes('held')) resolve(); });
      child.once('exit', (code) => reject(new Error(`the holder exited with ${code}`)));
    });
    assert.throws(() => FolderLock.take(dir, 'logs'),
      new RegExp(`^Error: volume logs: journal folder ${dir} is in use by volume db \\(pid ${child.pid} on \\S+\\); two volumes must never share one`));
  } finally {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }
  FolderLock.take(dir, 'logs').release();
});
