// A new secondary of a volume with several peers gets a first sync of its own, compared
// by hash (docs/PEERS.md, "The first sync with several peers"): the real write path and
// VolumeShipper (its resync driver), each peer a fake link that decodes the frames,
// applies the records to a replica in memory, answers hash requests and acks.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FLAG_RESYNC, RecordKind, type JournalRecord } from '../../src/journal/record.js';
import { createLogger } from '../../src/log/log.js';
import { FakePeer, drive, turn } from '../helpers/fake-peer.js';
import { tempDir } from '../helpers/run.js';
import { KiB, RS, SIZE, fillRegions as fill, openPeered as open } from '../helpers/peered-volume.js';

test('first sync with several peers: a new secondary gets a round of its own, compared by hash; the other streams on', async () => {
  const dir = tempDir('first-sync-own');
  const { jv, data } = await open(dir, ['near', 'far']);
  await fill(jv, async (seq) => {
    await jv.releaseFor('near', seq);
    await jv.releaseFor('far', seq);
  });
  // near is current; far comes back as a new secondary whose replica is almost the primary's (a
  // common ancestor): regions 3 and 7 differ.
  const near = new FakePeer(jv, 'near', Buffer.from(data), RS);
  const farReplica = Buffer.from(data);
  farReplica[3 * RS + 100] = 0xee;
  farReplica[7 * RS + 5000] = 0xee;
  const far = new FakePeer(jv, 'far', farReplica, RS);
  near.up(jv.journal.lastSeq);
  far.up(0, 0, true);
  await drive('far is announced a round', [near, far], () => far.resyncs.length > 0, false);
  const start = far.resyncs[0]!;
  assert.deepEqual([jv.roundOwner, jv.roundStart], ['far', start], 'a round of far\'s own');
  assert.equal(jv.firstSyncOpenFor('far'), true);
  assert.equal(jv.mode, 'journal', 'no fold');
  assert.equal(jv.bitmap.count, 0, 'the volume\'s bitmap is untouched');
  assert.equal(jv.detached!.bitmapOf('far')!.count, SIZE / RS, 'far\'s own bitmap marks every region');
  assert.ok(fs.existsSync(path.join(dir, 'dirty.far.bitmap')));
  assert.equal(jv.cursors.of('far'), start - 1, 'far follows the journal from the round\'s start');
  assert.deepEqual([jv.seedingFor('far'), jv.seedingFor('near')], [true, false], 'the comparison is with far\'s replica alone');
  assert.deepEqual(near.resyncs, [], 'near sees no round');

  // While far's comparison runs (its hash requests not answered yet), the host writes: region 5
  // the bytes both replicas already hold (touched by the round: it must not be cleared by hash),
  // region 9 new bytes. near is sent and acks both at once; far nothing yet.
  await drive('far is asked for hashes', [near, far], () => far.asks.length > 0, false);
  await jv.write(5 * RS, Buffer.alloc(4 * KiB, 0x10 + 5), false);
  await jv.write(9 * RS, Buffer.alloc(4 * KiB, 0x99), false);
  await jv.flush();
  const live = jv.journal.lastSeq;
  await drive('near acks the live writes during far\'s comparison', [near, far], () => near.sh.acked >= live, false);
  assert.equal(jv.seeding, true, 'far\'s comparison is still running');
  assert.ok(near.received.some((r) => r.offset === 9 * RS && r.kind === RecordKind.Write), 'near was sent the live write');
  assert.equal(far.received.length, 0, 'far is sent nothing while its replica is compared');

  // far answers: only the regions that differ, and those the round's records touched (5, equal
  // by hash, and 9), go to it.
  await drive('far\'s first sync ends', [near, far], () => jv.roundStart === 0, true);
  assert.deepEqual(far.resyncRegions(), [3, 5, 7, 9], 'regions equal by hash were not sent to far');
  assert.equal(jv.seed.seededBytes, 12 * RS, 'twelve regions found equal');
  assert.ok(far.received.some((r) => r.offset === 9 * RS && (r.flags & FLAG_RESYNC) === 0), 'far got the live write through the journal');
  // near was sent far's resync records as padding, never whole.
  const pads = near.received.filter((r) => r.kind === RecordKind.Skip && r.seq >= start).length;
  assert.equal(pads, far.resyncRegions().length, 'each resync record went to near as a Skip');
  assert.deepEqual(near.resyncRegions(), []);
  assert.ok(far.replica.equals(data), 'far\'s replica is the primary\'s');
  assert.ok(near.replica.equals(data), 'near\'s replica is the primary\'s');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false, 'far\'s bitmap went at the round\'s end');
  assert.equal(jv.detached!.ownRound, null);
  assert.equal(jv.cursors.isDetached('far'), false);
  await jv.close();
});

test('first sync with several peers: a new secondary waits while another peer\'s round is open, holding nothing back, then gets its own', async () => {
  const dir = tempDir('first-sync-waits');
  const { jv, data } = await open(dir, ['near', 'far', 'new']);
  // far acks nothing while near and new ack as they go: past three quarters of the journal far is detached.
  for (let i = 0; i < 300 && !jv.cursors.isDetached('far'); i++) {
    await jv.write((i % 16) * RS, Buffer.alloc(4 * KiB, i + 1), false);
    await jv.flush();
    await jv.releaseFor('near', jv.journal.lastSeq);
    await jv.releaseFor('new', jv.journal.lastSeq);
  }
  await jv.detached!.settled();
  assert.equal(jv.cursors.isDetached('far'), true, 'far was detached');
  const farRound = await jv.startRoundFor('far');
  assert.ok(farRound > 0 && jv.roundOwner === 'far');
  const farLeft = jv.detached!.ownRound!.bitmap.count;
  const nearAt = jv.cursors.of('near');

  // new's replica is lost: it links as a new secondary while far's round is open.
  assert.equal(await jv.firstSyncFor('new'), 0, 'no first sync of its own while far\'s round is open');
  const lines: string[] = [];
  const log = createLogger({ format: 'json', destination: { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream });
  const nu = new FakePeer(jv, 'new', Buffer.alloc(SIZE), RS, log);
  nu.up(0, 0, true);
  const said = (): string[] => lines.filter((l) => l.includes('first sync waits'));
  await drive('new\'s wait is said', [nu], () => said().length > 0, false);
  assert.match(said()[0]!, /volume m: new's first sync waits for the resync round of far to end; it begins then/);
  for (let i = 0; i < 20; i++) {
    nu.sh.tick();
    await turn();
  }
  assert.equal(said().length, 1, 'said once');
  assert.equal(nu.sh.firstSyncWaitsFor, 'far', 'status says whose round it waits for');
  assert.equal(nu.closed, null, 'its link stays up (it carries the peer\'s other volumes)');
  assert.deepEqual(nu.resyncs, [], 'new was announced no round');
  assert.deepEqual([jv.roundOwner, jv.roundStart, jv.mode, jv.bitmap.count], ['far', farRound, 'journal', 0], 'far\'s round goes on untouched');
  assert.equal(jv.detached!.ownRound!.bitmap.count, farLeft);
  assert.deepEqual([jv.cursors.isDetached('near'), jv.cursors.of('near')], [false, nearAt], 'near is untouched');
  // new leaves the journal meanwhile (its replica unknown, every region marked): far's round ends without its acks.
  assert.equal(jv.cursors.isDetached('new'), true);
  assert.equal(jv.detached!.bitmapOf('new')!.count, SIZE / RS);
  assert.ok(fs.existsSync(path.join(dir, 'dirty.new.bitmap')));
  for (let i = 0; i < 200 && jv.roundStart !== 0; i++) {
    await jv.resyncStep(RS);
    await jv.flush();
    await jv.releaseFor('near', jv.journal.durableSeq);
    await jv.releaseFor('far', jv.journal.durableSeq);
  }
  assert.equal(jv.roundStart, 0, 'far\'s round ended while new was away');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false);

  // On the same link: new gets its first sync of its own, compared with its replica (put
  // back from a copy meanwhile, all but region 2).
  data.copy(nu.replica);
  nu.replica[2 * RS + 7] = 0xff - data[2 * RS + 7]!;
  await drive('new is announced a round', [nu], () => nu.resyncs.length > 0, false);
  assert.equal(nu.closed, null);
  assert.equal(nu.sh.firstSyncWaitsFor, null, 'it waits no more');
  assert.deepEqual([jv.roundOwner, jv.firstSyncOpenFor('new'), jv.cursors.isDetached('new')], ['new', true, false]);
  assert.deepEqual([jv.seedingFor('new'), jv.seedingFor('near')], [true, false]);
  const acks = async (): Promise<void> => {
    await jv.releaseFor('near', jv.journal.durableSeq);
    await jv.releaseFor('far', jv.journal.durableSeq);
  };
  await drive('new\'s first sync ends', [nu], () => jv.roundStart === 0 && nu.sh.acked === jv.journal.lastSeq, true, acks);
  assert.ok(nu.replica.equals(data), 'new\'s replica is the primary\'s');
  assert.deepEqual(nu.resyncRegions(), [2], 'only the region that differs was sent');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.new.bitmap')), false);
  await jv.close();
});

test('first sync with several peers: two new secondaries of a new volume both join its first sync of all, neither waits', async () => {
  const dir = tempDir('first-sync-all');
  const { jv, data } = await open(dir, ['near', 'far']);
  await jv.write(0, Buffer.alloc(4 * KiB, 0x42), false);
  await jv.beginInitialSync();
  const near = new FakePeer(jv, 'near', Buffer.alloc(SIZE), RS);
  const far = new FakePeer(jv, 'far', Buffer.alloc(SIZE), RS);
  near.up(0, 0, true);
  await drive('near is announced the first sync of all', [near], () => near.resyncs.length > 0, false);
  assert.deepEqual([jv.roundOwner, jv.roundCoversAllFor('far')], [null, true]);
  far.up(0, 0, true);
  await drive('far is announced it too', [near, far], () => far.resyncs.length > 0 || far.closed !== null, false);
  assert.equal(far.closed, null, 'far does not wait for a round that is its own first sync too');
  assert.deepEqual(far.resyncs, near.resyncs, 'one round for both');
  await drive('the first sync ends', [near, far], () => jv.roundStart === 0 && far.sh.acked === jv.journal.lastSeq, true);
  assert.ok(near.replica.equals(data) && far.replica.equals(data), 'both replicas are the primary\'s');
  await jv.close();
});

test('first sync with several peers: a stop during a first sync of one peer\'s own merges its bitmap into the volume\'s (a round of all)', async () => {
  const dir = tempDir('first-sync-stop');
  let { jv } = await open(dir, ['near', 'far']);
  await jv.write(0, Buffer.alloc(4 * KiB, 0x42), false);
  await jv.flush();
  await jv.releaseFor('near', jv.journal.lastSeq);
  assert.ok(await jv.firstSyncFor('far') > 0);
  assert.ok(fs.existsSync(path.join(dir, 'dirty.far.bitmap')));
  await jv.close();
  ({ jv } = await open(dir, ['near', 'far']));
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false, 'its file went at the start');
  assert.deepEqual([jv.bitmap.count, jv.mode, jv.roundStart], [SIZE / RS, 'bitmap', 0], 'every region is marked for a round of all');
  await jv.close();
});

test('first sync with several peers: a round of one peer\'s own ends when that peer holds its end, though another peer never acks', async () => {
  // After a failover: the new primary's other peer (the lost old primary) is down and holds the journal
  // back; the other secondary's first sync of its own must still end (docs/PEERS.md, "Roles across three sites").
  const dir = tempDir('first-sync-own');
  const { jv, data } = await open(dir, ['gone', 'next']);
  await fill(jv, async () => undefined);
  const replica = Buffer.from(data);
  replica[2 * RS + 7] = 0xee;
  const next = new FakePeer(jv, 'next', replica, RS);
  next.up(0, 0, true);
  await drive('next is announced a round of its own', [next], () => next.resyncs.length > 0, false);
  assert.equal(jv.roundOwner, 'next');
  await drive('next\'s first sync of its own ends with gone down', [next], () => jv.roundStart === 0, true);
  assert.deepEqual(next.resyncRegions(), [2], 'only the region that differs was sent');
  assert.ok(next.replica.equals(data));
  assert.equal(jv.journal.released, 0, 'gone holds the journal: the round ended on next\'s ack alone');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.next.bitmap')), false);
  await jv.close();
});
