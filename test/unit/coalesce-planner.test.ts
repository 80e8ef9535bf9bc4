// The shipper's side of coalescing (src/coalesce/planner.ts) over a journal double:
// a batch coalesced or left as it is (off, a round open, more than the peer takes as
// a unit), the counts of Skip records and bytes, and far behind, one unit planned
// over the backlog ahead within the scope, kept for the batches inside it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnitPlanner } from '../../src/coalesce/planner.js';
import { COALESCE_MAX_RECORDS, COALESCE_SCOPE } from '../../src/limits/limits.js';
import { RECORD_HEADER_SIZE, RecordKind, type JournalRecord, type RecordHeader } from '../../src/journal/record.js';

const SIZE = 8192;
const REC = RECORD_HEADER_SIZE + SIZE;
let seq = 0;
const W = (offset: number): JournalRecord => ({ kind: RecordKind.Write, flags: 0, seq: ++seq, epoch: 1, offset, length: SIZE, time: 0,
  payload: Buffer.alloc(SIZE, seq & 0xff) });
const B = (): JournalRecord => ({ kind: RecordKind.Barrier, flags: 0, seq: ++seq, epoch: 1, offset: 0, length: 0, time: 0, payload: Buffer.alloc(0) });
const kinds = (rs: JournalRecord[]): string => rs.map((r) => ({ 1: 'W', 2: 'Z', 3: 'T', 4: 'B', 5: 'S' })[r.kind]).join('');

/** `epochs` epochs, each rewriting the same two 8 KiB ranges, then a barrier. */
function backlog(epochs: number): JournalRecord[] {
  seq = 0;
  const all: JournalRecord[] = [];
  for (let e = 0; e < epochs; e++) all.push(W(0), W(SIZE), B());
  return all;
}

/** A journal double holding `records`: reads headers as Journal.readHeaders does (at least one record, about maxBytes, not past limitSeq). */
function journal(records: JournalRecord[]) {
  const reads: Array<{ from: number; maxBytes: number; got: number }> = [];
  let backlogBytes = 0;
  for (const r of records) backlogBytes += RECORD_HEADER_SIZE + r.payload.length;
  return {
    reads,
    backlogBytes,
    readHeaders(from: number, maxBytes: number, limitSeq: number): Promise<Array<RecordHeader & { size: number }>> {
      const out: Array<RecordHeader & { size: number }> = [];
      let bytes = 0;
      for (const r of records) {
        if (r.seq < from || r.seq > limitSeq) continue;
        if (out.length > 0 && bytes + RECORD_HEADER_SIZE + r.payload.length > maxBytes) break;
        const { payload, ...h } = r;
        out.push({ ...h, size: RECORD_HEADER_SIZE + payload.length });
        bytes += RECORD_HEADER_SIZE + r.payload.length;
      }
      reads.push({ from, maxBytes, got: out.length });
      return Promise.resolve(out);
    },
  };
}

const open = { roundOpen: false, maxEpochBytes: 1 << 30 };

test('a batch spanning several epochs goes coalesced, and what stayed home is counted', () => {
  const p = new UnitPlanner({ coalesce: () => true, readBytes: 1 << 20 });
  const batch = backlog(3);
  const out = p.coalesced(batch, null, open);
  assert.equal(kinds(out), 'SSBSSBWWB');
  assert.ok(out.slice(0, 2).every((r) => r.offset === 9), 'Skips name the unit\'s last barrier');
  assert.equal(p.records, 4);
  assert.equal(p.bytes, 4 * SIZE);
  p.coalesced(backlog(2), null, open);
  assert.equal(p.records, 6, 'the counts add up batch after batch');
  assert.equal(p.bytes, 6 * SIZE);
});

test('a batch is left as it is when coalescing is off, a round is open, or it is more than the peer takes as a unit', () => {
  const batch = backlog(3);
  const bytes = batch.reduce((n, r) => n + RECORD_HEADER_SIZE + r.payload.length, 0);
  let on = false;
  const p = new UnitPlanner({ coalesce: () => on, readBytes: 1 << 20 });
  assert.equal(p.coalesced(batch, null, open), batch, 'off');
  on = true;
  assert.equal(p.coalesced(batch, null, { roundOpen: true, maxEpochBytes: 1 << 30 }), batch, 'a round open');
  assert.equal(p.coalesced(batch, null, { roundOpen: false, maxEpochBytes: bytes - 1 }), batch, 'larger than a unit');
  assert.equal(kinds(p.coalesced(batch, null, { roundOpen: false, maxEpochBytes: bytes })), 'SSBSSBWWB', 'exactly a unit');
  assert.equal(new UnitPlanner({ readBytes: 1 << 20 }).coalesced(batch, null, open), batch, 'no coalesce option: off');
  assert.equal(p.records, 4);
});

test('far behind, one unit is planned over the backlog ahead, and each batch of it goes with the plan\'s Skips', async () => {
  const all = backlog(10); // 30 records, 20 writes
  const j = journal(all);
  const batchBytes = 3 * REC; // one epoch
  const p = new UnitPlanner({ coalesce: () => true, readBytes: 4 * REC });
  const plan = await p.unitFor(j, 1, 30, batchBytes, open);
  assert.ok(plan);
  assert.equal(plan.from, 1);
  assert.equal(plan.until, 30);
  assert.equal(plan.skip.size, 18, 'every write but the last of each range');
  // Read once, in reads of at most readBytes, each after the one before.
  assert.ok(j.reads.length > 1 && j.reads.every((r) => r.maxBytes <= 4 * REC));
  let next = 1;
  for (const r of j.reads) {
    assert.equal(r.from, next);
    next += r.got;
  }
  assert.equal(next, 31);
  // A batch inside the unit: the same plan, nothing read again.
  const reads = j.reads.length;
  assert.equal(await p.unitFor(j, 4, 30, batchBytes, open), plan);
  assert.equal(j.reads.length, reads);
  // The first batch alone holds one barrier; with the plan its writes go as Skips.
  const first = p.coalesced(all.slice(0, 3), plan, { roundOpen: false, maxEpochBytes: 1 });
  assert.equal(kinds(first), 'SSB');
  assert.ok(first.slice(0, 2).every((r) => r.offset === 30));
  assert.equal(p.records, 2);
  assert.equal(p.bytes, 2 * SIZE);
});

test('the plan covers at most the scope (and half a unit), and not past limitSeq', async () => {
  const all = backlog(10);
  const batchBytes = 3 * REC;
  const scoped = new UnitPlanner({ coalesce: () => true, scopeBytes: 9 * REC, readBytes: 1 << 20 });
  const j = journal(all);
  const plan = await scoped.unitFor(j, 1, 30, batchBytes, open);
  // Nine writes' bytes: four epochs (8 writes, 4 barriers) and a write of the fifth, read
  // in two reads (the second for what is left of the scope); the unit ends at the fourth barrier.
  assert.equal(plan!.until, 12);
  assert.deepEqual(j.reads.map((r) => [r.maxBytes, r.got]), [[9 * REC, 12], [REC - 4 * RECORD_HEADER_SIZE, 1]]);
  // What a unit sends is at most half what the peer takes as a unit: of fresh writes, two epochs
  // (four writes) fit in six writes' bytes, three do not; of rewrites, the whole backlog fits,
  // as every write but the last of each range goes as a Skip header.
  seq = 0;
  const fresh: JournalRecord[] = [];
  for (let e = 0; e < 10; e++) fresh.push(W(2 * e * SIZE), W((2 * e + 1) * SIZE), B());
  const halfUnit = new UnitPlanner({ coalesce: () => true, readBytes: 1 << 20 });
  assert.equal((await halfUnit.unitFor(journal(fresh), 1, 30, batchBytes, { roundOpen: false, maxEpochBytes: 12 * REC }))!.until, 6,
    'half of 12 writes: the second barrier');
  const rewrites = new UnitPlanner({ coalesce: () => true, readBytes: 1 << 20 });
  const whole = await rewrites.unitFor(journal(all), 1, 30, batchBytes, { roundOpen: false, maxEpochBytes: 12 * REC });
  assert.equal(whole!.until, 30, 'rewrites: two writes and 28 headers sent, the whole backlog one unit');
  assert.equal(whole!.skip.size, 18);
  // Of fresh writes with no two epochs under the bound: no unit, and the batches before the
  // first barrier do not plan again.
  const tight = new UnitPlanner({ coalesce: () => true, readBytes: 1 << 20 });
  const jt = journal(fresh);
  assert.equal(await tight.unitFor(jt, 1, 30, REC, { roundOpen: false, maxEpochBytes: 7 * REC }), null);
  const n = jt.reads.length;
  assert.equal(await tight.unitFor(jt, 2, 30, REC, { roundOpen: false, maxEpochBytes: 7 * REC }), null);
  assert.equal(jt.reads.length, n, 'remembered up to the first barrier');
  const limited = new UnitPlanner({ coalesce: () => true, readBytes: 1 << 20 });
  const jl = journal(all);
  assert.equal((await limited.unitFor(jl, 1, 13, batchBytes, open))!.until, 12, 'the last barrier up to limitSeq');
  assert.ok(jl.reads.every((r) => r.from <= 13), 'nothing read past limitSeq');
  // Past the unit's end, a new unit is planned from there.
  const j2 = journal(all);
  assert.equal(await scoped.unitFor(j2, 12, 30, batchBytes, open), plan, 'inside the unit: the same plan');
  assert.equal((await scoped.unitFor(j2, 13, 30, batchBytes, open))!.from, 13);
  assert.equal(j2.reads[0]!.from, 14, '(record 13 was read by the planning before)');
  // Before the unit's start (a new link resumes earlier): planned again from there.
  assert.equal((await scoped.unitFor(j2, 4, 30, batchBytes, open))!.from, 4);
  assert.equal(COALESCE_SCOPE, 1024 << 20);
});

test('no unit is planned when off, in a round, near the head of the journal, or when the scope holds under two batches', async () => {
  const all = backlog(10);
  const bytes = all.reduce((n, r) => n + RECORD_HEADER_SIZE + r.payload.length, 0);
  let on = false;
  const p = new UnitPlanner({ coalesce: () => on, readBytes: 1 << 20 });
  const j = journal(all);
  assert.equal(await p.unitFor(j, 1, 30, 3 * REC, open), null, 'off');
  on = true;
  assert.equal(await p.unitFor(j, 1, 30, 3 * REC, { roundOpen: true, maxEpochBytes: 1 << 30 }), null, 'a round open');
  assert.equal(await p.unitFor(j, 1, 30, Math.floor(bytes / 3) + 1, open), null, 'a backlog of under three batches');
  assert.equal(await p.unitFor(j, 1, 30, 3 * REC, { roundOpen: false, maxEpochBytes: 4 * 3 * REC - 2 }), null, 'half a unit holds under two batches');
  assert.deepEqual(j.reads, [], 'nothing read');
  assert.ok(await p.unitFor(j, 1, 30, Math.floor(bytes / 3), open), 'three batches of backlog: planned');
  // A plan made before a round opened is not used once it is open.
  assert.equal(await p.unitFor(j, 2, 30, 3 * REC, { roundOpen: true, maxEpochBytes: 1 << 30 }), null);
});

test('a backlog whose barriers lie further apart than the scope is read for a plan once, not again at every batch', async () => {
  seq = 0;
  const all: JournalRecord[] = [];
  for (let e = 0; e < 3; e++) {
    for (let i = 0; i < 20; i++) all.push(W(i * SIZE));
    all.push(B());
  }
  const j = journal(all);
  const batchBytes = 2 * REC;
  const p = new UnitPlanner({ coalesce: () => true, scopeBytes: 10 * REC, readBytes: 4 * REC });
  assert.equal(await p.unitFor(j, 1, 63, batchBytes, open), null, 'no barrier within the scope');
  const reads = j.reads.length;
  assert.ok(reads > 0);
  for (const from of [3, 5, 9, 10]) assert.equal(await p.unitFor(j, from, 63, batchBytes, open), null);
  assert.equal(j.reads.length, reads, 'batches inside what was read find no unit without reading again');
  // Past what was read (records 1..10): planned again from there, and again none.
  assert.equal(await p.unitFor(j, 11, 63, batchBytes, open), null);
  assert.equal(j.reads[reads]!.from, 11);
  const again = j.reads.length;
  assert.equal(await p.unitFor(j, 20, 63, batchBytes, open), null, 'inside 11..20: not read again');
  assert.equal(j.reads.length, again);
  // From 16: one barrier in the scope (21): none, and not read again up to the barrier.
  assert.equal(await p.unitFor(j, 16, 63, batchBytes, open), null);
  assert.equal(j.reads.length, again, '(16 lies in the stretch read from 11)');
  // From the barrier on: planned from there. A link that resumes earlier plans from there too.
  await p.unitFor(j, 21, 63, batchBytes, open);
  assert.equal(j.reads[again]!.from, 21);
  const later = j.reads.length;
  await p.unitFor(j, 2, 63, batchBytes, open);
  assert.equal(j.reads[later]!.from, 2);
  // A stretch with a record that ends a unit early (a resync round's) is not remembered: planned
  // again each time, from the headers already read.
  seq = 0;
  const round: JournalRecord[] = [W(0), W(SIZE), { ...W(2 * SIZE), flags: 2 }, W(3 * SIZE), B()];
  const jr = journal(round);
  const pr = new UnitPlanner({ coalesce: () => true, scopeBytes: 10 * REC, readBytes: 4 * REC });
  assert.equal(await pr.unitFor(jr, 1, 5, REC, open), null);
  const n = jr.reads.length;
  assert.equal(await pr.unitFor(jr, 2, 5, REC, open), null);
  assert.equal(jr.reads.length, n, 'each header is read once');
});

test('far behind, the next unit is planned from the headers the last planning read past its end', async () => {
  const all = backlog(10);
  const j = journal(all);
  const p = new UnitPlanner({ coalesce: () => true, scopeBytes: 30 * REC, readBytes: 4 * REC });
  // A group point at the fourth barrier ends the first unit there.
  all[11] = { ...all[11]!, flags: 8 };
  const first = await p.unitFor(j, 1, 30, REC, open);
  assert.equal(first!.until, 12);
  const reads = j.reads.length;
  const second = await p.unitFor(j, 13, 30, REC, open);
  assert.equal(second!.from, 13);
  assert.equal(second!.until, 30);
  assert.equal(j.reads.length, reads, 'records 13..30 were read by the first planning: not read again');
  // The near end of the backlog drops what was kept.
  assert.equal(await p.unitFor(j, 1, 30, 1 << 30, open), null);
  await p.unitFor(j, 13, 30, REC, open);
  assert.ok(j.reads.length > reads, 'read again once dropped');
});

test('the stretch planned over is at most two of the largest epochs the peer takes, and at most COALESCE_MAX_RECORDS records', async () => {
  // Rewrites of two ranges: any stretch fits as one unit, so only the stretch bounds it.
  const all = backlog(10);
  const j = journal(all);
  const p = new UnitPlanner({ coalesce: () => true, readBytes: 1 << 20 });
  const plan = await p.unitFor(j, 1, 30, REC, { roundOpen: false, maxEpochBytes: 6 * REC });
  const read = j.reads.reduce((n, r) => n + r.got, 0);
  // Twelve writes' bytes: five epochs and two writes of a sixth (each epoch two writes and a barrier).
  assert.equal(read, 17);
  assert.equal(plan!.until, 15, 'the last barrier within the stretch');
  assert.equal(p.keptHeaders, read);
  p.dropKept();
  assert.equal(p.keptHeaders, 0);
  // Records of a header alone (zeroes): one read of a large batch would hold more than the cap.
  seq = 0;
  const zeroes: JournalRecord[] = [];
  const n = COALESCE_MAX_RECORDS + 5000;
  for (let i = 0; i < n; i++) {
    zeroes.push(i % 100 === 99 ? B() : { kind: RecordKind.Zeroes, flags: 0, seq: ++seq, epoch: 1, offset: (i % 7) * SIZE, length: SIZE, time: 0,
      payload: Buffer.alloc(0) });
  }
  const jz = journal(zeroes);
  const pz = new UnitPlanner({ coalesce: () => true, readBytes: 64 << 20 });
  assert.ok(await pz.unitFor(jz, 1, n, RECORD_HEADER_SIZE, open));
  assert.equal(pz.keptHeaders, COALESCE_MAX_RECORDS, 'exactly the cap, though one read could take them all');
});
