// A reload adds a secondary to a volume served here, or takes one away (docs/PEERS.md,
// "Adding and removing a secondary"): the real write path and VolumeShipper, each peer a
// fake link that decodes the frames, applies the records to a replica in memory,
// answers hash requests and acks (test/helpers/fake-peer.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { RecordKind } from '../../src/journal/record.js';
import { FakePeer, drive } from '../helpers/fake-peer.js';
import { tempDir } from '../helpers/run.js';
import { KiB, RS, SIZE, fillRegions as fill, openPeered as open } from '../helpers/peered-volume.js';

test('peers changed live: a secondary added waits detached, holding nothing back, then gets a first sync of its own; the other streams on', async () => {
  const dir = tempDir('peers-add');
  const { jv, data } = await open(dir, ['near']);
  await fill(jv, (seq) => jv.releaseFor('near', seq));
  const near = new FakePeer(jv, 'near', Buffer.from(data), RS);
  near.up(jv.journal.lastSeq);
  assert.equal(jv.seed.alone, true);

  assert.deepEqual(await jv.setPeers(['near', 'far']), { added: ['far'], removed: [] });
  assert.deepEqual(jv.cursors.peers, ['near', 'far']);
  assert.equal(jv.cursors.isDetached('far'), true, 'far joins detached');
  assert.equal(jv.detached!.bitmapOf('far')!.count, SIZE / RS, 'its bitmap marks every region');
  assert.ok(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), 'durable in the folder');
  assert.equal(jv.seed.alone, false, 'a round of all compares with no one now');
  // far is not there yet: the host writes and near's acks release the journal all the same.
  await fill(jv, async () => undefined, 0x40);
  const live = jv.journal.lastSeq;
  await drive('near acks what was written since', [near], () => near.sh.acked >= live, false);
  await jv.releaseFor('near', near.sh.acked);
  assert.equal(jv.journal.released, live, 'far holds the journal back from nothing');

  // far links with a replica that is the primary's but for two regions: a first sync of its own, compared by hash.
  const replica = Buffer.from(data);
  replica[3 * RS + 1] = 0xff - data[3 * RS + 1]!;
  replica[12 * RS + 9] = 0xff - data[12 * RS + 9]!;
  const far = new FakePeer(jv, 'far', replica, RS);
  far.up(0, 0, true);
  await drive('far is announced a round of its own', [near, far], () => far.resyncs.length > 0, false);
  assert.deepEqual([jv.roundOwner, jv.firstSyncOpenFor('far'), jv.cursors.isDetached('far')], ['far', true, false]);
  await drive('far\'s first sync ends', [near, far], () => jv.roundStart === 0 && far.sh.acked === jv.journal.lastSeq, true);
  assert.deepEqual(far.resyncRegions(), [3, 12], 'only the regions that differ were sent');
  assert.ok(far.replica.equals(data) && near.replica.equals(data), 'both replicas are the primary\'s');
  assert.deepEqual(near.resyncs, [], 'near saw no round');
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false);
  await jv.close();
});

test('peers changed live: a secondary taken away during its first sync of its own ends its round; the journal follows the other alone', async () => {
  const dir = tempDir('peers-remove');
  const { jv, data } = await open(dir, ['near', 'far']);
  await fill(jv, (seq) => jv.releaseFor('near', seq));
  const near = new FakePeer(jv, 'near', Buffer.from(data), RS);
  // far's replica differs from the primary's in regions 2 to 13.
  const stale = Buffer.from(data);
  for (let r = 2; r <= 13; r++) stale[r * RS + 3] = 0xff - data[r * RS + 3]!;
  const far = new FakePeer(jv, 'far', stale, RS);
  near.up(jv.journal.lastSeq);
  far.up(0, 0, true);
  await drive('far is announced a round of its own', [near, far], () => far.resyncs.length > 0, false);
  // Part of its round goes out (far answers hashes), then far is taken away.
  await drive('far is sent part of its round', [near, far], () => far.resyncRegions().length >= 3, true);
  const start = jv.roundStart;
  assert.equal(jv.roundOwner, 'far');
  far.sh.down();
  assert.deepEqual(await jv.setPeers(['near']), { added: [], removed: ['far'] });
  assert.deepEqual([jv.roundStart, jv.roundOwner, jv.seeding], [0, null, false], 'far\'s round ended where it was');
  assert.deepEqual(jv.cursors.peers, ['near']);
  assert.equal(jv.detached!.ownRound, null);
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false, 'its bitmap went');
  assert.equal(jv.seed.alone, true);
  await jv.releaseFor('far', jv.journal.lastSeq); // an ack of far's on its way: nothing waits for it

  // near is sent the round's records as padding, and then the host's writes; the journal follows near alone.
  for (const r of [0, 15]) await jv.write(r * RS, Buffer.alloc(4 * KiB, 0x70 + r), false);
  await jv.flush();
  const live = jv.journal.lastSeq;
  await drive('near acks everything', [near], () => near.sh.acked >= live, false);
  await jv.releaseFor('near', near.sh.acked);
  assert.equal(jv.journal.released, live);
  assert.deepEqual(near.resyncRegions(), [], 'no resync record of far\'s round went to near whole');
  assert.ok(near.received.some((r) => r.kind === RecordKind.Skip && r.seq >= start), 'far\'s records went to near as padding');
  assert.ok(near.replica.equals(data), 'near\'s replica is the primary\'s');
  assert.equal(near.closed, null);

  // Put back with the replica it had, behind what the journal holds: what it holds is not known here,
  // so its round of its own compares by hash first, and sends what differs (the regions its
  // round had not sent, those written since), not the whole volume.
  await jv.setPeers(['near', 'far']);
  const behind = far.sh.acked;
  assert.ok(behind < jv.journal.released, `far holds up to ${behind}, the journal starts at ${jv.journal.released + 1}`);
  const differ = [...Array(SIZE / RS).keys()].filter((r) => !far.replica.subarray(r * RS, (r + 1) * RS).equals(data.subarray(r * RS, (r + 1) * RS)));
  const back = new FakePeer(jv, 'far', Buffer.from(far.replica), RS);
  back.up(behind, start);
  await drive('far is announced a round of its own', [near, back], () => back.resyncs.length > 0, false);
  assert.deepEqual([jv.roundOwner, jv.seedingFor('far')], ['far', true], 'compared by hash with far\'s replica');
  await drive('far\'s round ends', [near, back], () => jv.roundStart === 0 && back.sh.acked === jv.journal.lastSeq, true,
    async () => jv.releaseFor('near', near.sh.acked));
  assert.ok(back.replica.equals(data), 'far\'s replica is the primary\'s');
  assert.deepEqual(back.resyncRegions(), differ, 'only the regions that differ were sent');
  assert.ok(differ.length > 0 && differ.length < SIZE / RS);
  await jv.close();
});

test('peers changed live: a detached secondary taken away lets the journal go, and its bitmap goes', async () => {
  const dir = tempDir('peers-remove-detached');
  const { jv } = await open(dir, ['near', 'far']);
  for (let i = 0; i < 300 && !jv.cursors.isDetached('far'); i++) {
    await jv.write((i % 16) * RS, Buffer.alloc(4 * KiB, i + 1), false);
    await jv.flush();
    await jv.releaseFor('near', jv.journal.lastSeq);
  }
  await jv.detached!.settled();
  assert.equal(jv.cursors.isDetached('far'), true, 'far was detached');
  assert.ok(fs.existsSync(path.join(dir, 'dirty.far.bitmap')));
  await jv.setPeers(['near']);
  assert.deepEqual([jv.cursors.peers, jv.cursors.detached], [['near'], []]);
  assert.equal(fs.existsSync(path.join(dir, 'dirty.far.bitmap')), false);
  assert.equal(jv.journal.released, jv.cursors.of('near'));
  // The volume keeps at least one peer.
  await assert.rejects(jv.setPeers([]), /cannot become/);
  await jv.close();
  // A start with the new list: nothing of far is merged into the volume's bitmap.
  const again = await open(dir, ['near']);
  assert.deepEqual([again.jv.bitmap.count, again.jv.mode], [0, 'journal']);
  await again.jv.close();
});

test('peers changed live: a secondary added during the other\'s first sync by hash ends that comparison; the rest goes whole, it waits its turn',
  async () => {
  const dir = tempDir('peers-add-comparing');
  const { jv, data } = await open(dir, ['near']);
  await fill(jv, async () => undefined);
  await jv.beginInitialSync();
  // near's replica is the primary's but for region 6: its first sync compares by hash.
  const replica = Buffer.from(data);
  replica[6 * RS + 2] = 0xff - data[6 * RS + 2]!;
  const near = new FakePeer(jv, 'near', replica, RS);
  near.up(0, 0, true);
  await drive('near is asked for hashes', [near], () => near.asks.length > 0, false);
  assert.deepEqual([jv.roundOwner, jv.seedingFor('near')], [null, true]);
  await jv.setPeers(['near', 'far']);
  // (Compared on: far's shipper would ask far's replica for the hashes of near's comparison.)
  assert.deepEqual([jv.seeding, jv.seedingFor('far')], [false, false], 'the comparison ended');
  const far = new FakePeer(jv, 'far', Buffer.alloc(SIZE), RS);
  far.up(0, 0, true);
  await drive('near\'s first sync ends', [near, far], () => jv.roundStart === 0 && near.sh.acked === jv.journal.lastSeq, true);
  assert.ok(near.replica.equals(data), 'near\'s replica is the primary\'s');
  assert.equal(far.sh.firstSyncWaitsFor, 'every peer (near)', 'far waited for near\'s round');
  await drive('far\'s first sync ends', [near, far], () => jv.roundStart === 0 && far.resyncs.length > 0 && far.sh.acked === jv.journal.lastSeq, true);
  assert.ok(far.replica.equals(data), 'far\'s replica is the primary\'s');
  await jv.close();
});
