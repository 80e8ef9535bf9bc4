// Where each peer of a volume stands in its journal (src/journal/peer-cursors.ts,
// docs/PEERS.md): the journal lets go of a record only when every peer holds it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import { PeerCursors } from '../../src/journal/peer-cursors.js';
import { FLAG_RESYNC, FLAG_ROUND_END, RecordKind, type JournalRecord } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';
import { memDisk } from '../helpers/mem-disk.js';

const KiB = 1024;

test('peer cursors: the release point is the lowest peer; a cursor never goes back; a fold moves every cursor', () => {
  const c = new PeerCursors(['near', 'far'], 10);
  assert.deepEqual(c.peers, ['near', 'far']);
  assert.equal(c.ack('near', 50), 10, 'far still holds only up to 10');
  assert.equal(c.slowest, 'far');
  assert.equal(c.ack('far', 30), 30);
  assert.equal(c.ack('near', 20), 30, 'a lower ack changes nothing');
  assert.equal(c.of('near'), 50);
  assert.equal(c.slowest, 'far');
  c.folded(40);
  assert.equal(c.of('far'), 40, 'the fold put what far lacked in the bitmap');
  assert.equal(c.of('near'), 50);
  assert.equal(c.ackAll(60), 60);
  assert.throws(() => c.ack('elsewhere', 1), /invariant broken: .*"elsewhere" is no peer of this volume/);
  assert.throws(() => new PeerCursors([], 0), /invariant broken/);
  assert.throws(() => new PeerCursors(['a', 'a'], 0), /invariant broken: .*named twice/);
});

async function open(dir: string, peers: string[], detach = false, rounds = false): Promise<JournaledVolume> {
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 1024 * KiB, segmentSize: 64 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), 1024 * KiB, 64 * KiB);
  const jv = new JournaledVolume({
    disk: memDisk(1024 * KiB), journal, bitmap, onFull: 'bitmap', log: silentLogger, peers, peerStore: detach ? new DirStore(dir) : undefined,
    roundStore: rounds ? new DirStore(dir) : undefined,
  });
  await jv.start(report);
  return jv;
}

test('write path with two peers: a record stays until both acked it, and after a restart until both say so again', async () => {
  const dir = tempDir('cursors');
  let jv = await open(dir, ['near', 'far']);
  for (let i = 0; i < 8; i++) await jv.write(i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1), false);
  await jv.flush();
  const last = jv.journal.lastSeq;
  await jv.releaseFor('near', last);
  assert.equal(jv.journal.released, 0, 'far holds nothing yet');
  await jv.releaseFor('far', 3);
  assert.equal(jv.journal.released, 3);
  await jv.close();
  jv = await open(dir, ['near', 'far']);
  // The release point on disk is written when a segment goes: it may lag what was released, never lead it.
  const base = jv.journal.released;
  assert.ok(base <= 3 && jv.journal.lastSeq === last, `released ${base}, last ${jv.journal.lastSeq}`);
  assert.deepEqual([jv.cursors.of('near'), jv.cursors.of('far')], [base, base], 'both start at the release point');
  await jv.releaseFor('far', last);
  assert.equal(jv.journal.released, base, 'near has not said again where it stands');
  await jv.releaseFor('near', last);
  assert.equal(jv.journal.released, last);
  await jv.close();
});

test('write path with two peers: an overflow empties the journal into the bitmap and moves both cursors', async () => {
  const dir = tempDir('cursors-fold');
  const jv = await open(dir, ['near', 'far']);
  await jv.write(0, Buffer.alloc(4 * KiB, 7), false);
  await jv.flush();
  await jv.releaseFor('near', jv.journal.lastSeq);
  // Past the journal's capacity with far silent: the overflow folds everything into the bitmap.
  for (let i = 0; i < 300 && jv.mode === 'journal'; i++) await jv.write((i % 200) * 4 * KiB, Buffer.alloc(4 * KiB, 9), false);
  assert.equal(jv.mode, 'bitmap');
  await jv.quiesce();
  assert.equal(jv.journal.backlogRecords, 0);
  assert.equal(jv.cursors.of('far'), jv.journal.released, 'what far lacked is in the bitmap now');
  assert.ok(jv.bitmap.isSet(0), 'the first write, far never acked, is marked');
  await jv.close();
});

test('write path with two peers: past three quarters of the journal the slowest is detached into its own bitmap, the other streams on', async () => {
  const dir = tempDir('cursors-detach');
  let jv = await open(dir, ['near', 'far'], true);
  // far acks nothing; near acks everything as it goes: once the journal is 3/4 full, far leaves it.
  for (let i = 0; i < 200 && !jv.cursors.isDetached('far'); i++) {
    await jv.write((i % 16) * 64 * KiB, Buffer.alloc(4 * KiB, i + 1), false);
    await jv.flush();
    await jv.releaseFor('near', jv.journal.lastSeq);
  }
  await jv.detached!.settled();
  assert.equal(jv.cursors.isDetached('far'), true, 'far was detached');
  assert.equal(jv.mode, 'journal', 'the journal did not overflow: near streams on');
  assert.ok(fs.existsSync(path.join(dir, 'dirty.far.bitmap')));
  await jv.releaseFor('near', jv.journal.lastSeq);
  assert.equal(jv.journal.released, jv.journal.lastSeq, 'released for near alone');
  const own = jv.detached!.bitmapOf('far')!;
  assert.equal(own.count, 16, 'every region far lacks is in its bitmap (16 written)');
  assert.equal(jv.bitmap.count, 0, 'the volume\'s bitmap is untouched');
  await jv.close();
  // After a restart far's bitmap joins the volume's (a round for one peer is not built yet) and its file goes.
  jv = await open(dir, ['near', 'far'], true);
  assert.equal(jv.bitmap.count, 16);
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false);
  assert.equal(jv.cursors.isDetached('far'), false);
  await jv.close();
});

/** Writes to 16 regions, near acking as it goes and far silent, until far is detached. */
async function detachFar(jv: JournaledVolume): Promise<void> {
  for (let i = 0; i < 200 && !jv.cursors.isDetached('far'); i++) {
    await jv.write((i % 16) * 64 * KiB, Buffer.alloc(4 * KiB, i + 1), false);
    await jv.flush();
    await jv.releaseFor('near', jv.journal.lastSeq);
  }
  await jv.detached!.settled();
  assert.equal(jv.cursors.isDetached('far'), true, 'far was detached');
  await jv.releaseFor('near', jv.journal.lastSeq);
}

/** A volume of two peers in a new folder, far detached (rounds: with a round store); where far's bitmap is marked up to. */
async function withFarDetached(name: string, rounds: boolean): Promise<{ dir: string; jv: JournaledVolume; marked: number }> {
  const dir = tempDir(name);
  const jv = await open(dir, ['near', 'far'], true, rounds);
  await detachFar(jv);
  return { dir, jv, marked: jv.cursors.detached[0]!.markedUpTo };
}

test('write path with two peers: a detached peer that acks past its bitmap follows the journal again, and holds it back', async () => {
  const { dir, jv, marked } = await withFarDetached('cursors-caught-up', false);
  assert.ok(marked > 0 && jv.journal.released === marked, `marked up to ${marked}, released ${jv.journal.released}`);
  // Short of the marked point: far stays detached (its bitmap still stands for records it lacks).
  await jv.releaseFor('far', marked - 1);
  assert.equal(jv.cursors.isDetached('far'), true);
  await jv.releaseFor('far', marked);
  assert.equal(jv.cursors.isDetached('far'), false, 'far holds everything its bitmap marks');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false, 'its bitmap file went');
  // From here on far holds the journal again: near's ack alone releases nothing past far.
  await jv.write(0, Buffer.alloc(4 * KiB, 0xee), false);
  await jv.flush();
  await jv.releaseFor('near', jv.journal.lastSeq);
  assert.equal(jv.journal.released, marked, 'far has not acked the new records');
  await jv.releaseFor('far', jv.journal.lastSeq);
  assert.equal(jv.journal.released, jv.journal.lastSeq);
  await jv.close();
});

test('write path with two peers: a resync round begins with a detached peer\'s bitmap in the volume\'s, and the peer attached', async () => {
  const { dir, jv } = await withFarDetached('cursors-rejoin', true);
  assert.equal(jv.bitmap.count, 0);
  // far links again holding less than the journal starts at: a round for every peer (links resync-driver.ts does this).
  const start = await jv.restartRound('far holds less than the journal starts at');
  assert.ok(start > 0 && jv.roundStart === start, `round from ${start}`);
  assert.equal(jv.cursors.isDetached('far'), false, 'far follows the journal again');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false);
  assert.equal(jv.bitmap.count, 16, 'the round sends every region far lacked');
  assert.deepEqual([jv.cursors.of('near'), jv.cursors.of('far')], [start - 1, start - 1], 'both stand at the fold');
  await jv.close();
});

test('write path with two peers: a fold moves a detached peer\'s cursor, but only its acks past its bitmap drop the bitmap', async () => {
  const { dir, jv, marked } = await withFarDetached('cursors-fold-detached', true);
  // The journal overflows (near silent now too): the fold moves every cursor, far's included.
  for (let i = 0; i < 400 && jv.mode === 'journal'; i++) await jv.write((i % 200) * 4 * KiB, Buffer.alloc(4 * KiB, 9), false);
  assert.equal(jv.mode, 'bitmap');
  await jv.quiesce();
  assert.ok(jv.cursors.of('far') > marked, `far's cursor ${jv.cursors.of('far')} moved past its bitmap's ${marked}`);
  // A late ack from far of what it held before: it does not hold what its own bitmap marks.
  await jv.releaseFor('far', marked - 1);
  assert.equal(jv.cursors.isDetached('far'), true, 'far is still detached');
  assert.ok(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), 'its bitmap was kept');
  const folded = jv.bitmap.count;
  await jv.restartRound('far links again');
  assert.equal(jv.cursors.isDetached('far'), false);
  // Its 16 regions (64 KiB each) join the fold's, which reach only up to 800 KiB (regions
  // 13 to 15 are far's alone): the round sends what far lacked.
  for (let r = 0; r < 16; r++) assert.ok(jv.bitmap.isSet(r), `region ${r} (far's) is in the round`);
  assert.ok(jv.bitmap.count >= folded);
  await jv.close();
});

test('write path with two peers: a detached peer comes back by a round of its own; the other is sent its records as padding', async () => {
  const { dir, jv, marked } = await withFarDetached('cursors-own-round', true);
  // Host writes the near peer has not acked yet: far gets them from the journal after its round's start.
  await jv.write(0, Buffer.alloc(4 * KiB, 0x77), false);
  await jv.flush();
  const start = await jv.startRoundFor('far');
  assert.ok(start > marked, `a round of far's own from ${start}`);
  assert.equal(jv.roundOwner, 'far');
  assert.equal(jv.mode, 'journal', 'no fold: near streams on');
  assert.equal(jv.bitmap.count, 0, 'the volume\'s bitmap is untouched');
  assert.deepEqual([jv.roundStartFor('far'), jv.roundStartFor('near')], [start, 0], 'near sees no round');
  assert.equal(jv.cursors.isDetached('far'), false);
  assert.equal(jv.cursors.of('far'), start - 1, 'far follows the journal from the round\'s start');
  // The pump hands far's 16 regions to the journal, then the round's end; both peers ack
  // as they go (a small journal), all but the end.
  const records: JournalRecord[] = [];
  for (let i = 0; i < 100 && !jv.roundEnd; i++) {
    await jv.resyncStep(64 * KiB); // (a run per segment of this small journal)
    await jv.flush();
    records.push(...await jv.journal.read((records.at(-1)?.seq ?? start - 1) + 1, 16 << 20));
    const upTo = jv.roundEnd ? jv.roundEnd - 1 : jv.journal.lastSeq;
    await jv.releaseFor('near', upTo);
    await jv.releaseFor('far', upTo);
  }
  assert.ok(jv.roundEnd > start && records.at(-1)!.seq === jv.roundEnd, `the round ended at ${jv.roundEnd}`);
  const resync = records.filter((r) => (r.flags & FLAG_RESYNC) !== 0);
  assert.equal(resync.reduce((n, r) => n + r.length, 0), 16 * 64 * KiB, 'every region far lacked, once');
  // near is sent each of them as a Skip naming its own seq, and the end as a plain barrier; far is sent them whole.
  const toNear = jv.padFor('near', records);
  for (const [i, r] of records.entries()) {
    const n = toNear[i]!;
    if ((r.flags & FLAG_RESYNC) !== 0) assert.deepEqual([n.kind, n.offset, n.payload.length], [RecordKind.Skip, r.seq, 0]);
    else if (r.seq === jv.roundEnd) assert.deepEqual([n.kind, n.flags & FLAG_ROUND_END], [RecordKind.Barrier, 0]);
    else assert.equal(n, r, 'a host record goes as it is');
  }
  assert.deepEqual(jv.padFor('far', records), records);
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), true, 'far\'s bitmap stays until far holds the round\'s end');
  // Both ack the end: the round is complete and far's bitmap goes.
  const end = jv.roundEnd;
  await jv.releaseFor('near', end);
  await jv.releaseFor('far', end);
  await jv.flush();
  assert.equal(jv.roundStart, 0, 'the round closed');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false);
  assert.equal(jv.detached!.ownRound, null);
  // Let go of by the journal, its records are nobody's padding any more.
  assert.deepEqual(jv.padFor('near', records), records);
  await jv.close();
});
