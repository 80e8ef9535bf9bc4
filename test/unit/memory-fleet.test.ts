// Many volumes drawing from one small memory budget (src/memory/budget.ts): the real
// VolumeShipper over journals held in memory, a peer that acks each frame a moment
// later, and the intake of a secondary (src/memory/intake.ts) logging frames a moment
// after they arrive. Every volume makes progress, and none holds more than the budget:
// a burst waits for leases instead of allocating.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBudget } from '../../src/memory/budget.js';
import { FrameIntake } from '../../src/memory/intake.js';
import { VolumeShipper } from '../../src/link/volume-shipper.js';
import { decodeRecordsFrame } from '../../src/link/records-frame.js';
import { FRAME_HEADER_SIZE } from '../../src/link/frame.js';
import { RECORD_HEADER_SIZE, RecordKind, type JournalRecord } from '../../src/journal/record.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';

const KiB = 1024;
const later = (f: () => void): void => void setTimeout(f, 1);

/** A journal in memory holding `n` records of `size` bytes, all durable; reads as the real one (at least one record). */
function fakeVolume(n: number, size: number): { jv: JournaledVolume; released: () => number } {
  const recs: JournalRecord[] = Array.from({ length: n }, (_, i) => ({
    kind: RecordKind.Write, flags: 0, seq: i + 1, epoch: 1, offset: i * size, length: size, time: 0, payload: Buffer.alloc(size, i & 0xff),
  }));
  let released = 0;
  const journal = {
    get durableSeq() { return n; },
    get lastSeq() { return n; },
    get released() { return released; },
    get backlogBytes() { return recs.filter((r) => r.seq > released).length * (size + RECORD_HEADER_SIZE); },
    lagMs: () => 0,
    read: (from: number, maxBytes: number, limit: number): Promise<JournalRecord[]> => {
      const out: JournalRecord[] = [];
      let bytes = 0;
      for (let s = from; s <= Math.min(limit, n); s++) {
        const r = recs[s - 1]!;
        if (out.length > 0 && bytes + r.payload.length + RECORD_HEADER_SIZE > maxBytes) break;
        out.push(r);
        bytes += r.payload.length + RECORD_HEADER_SIZE;
      }
      return new Promise((res) => later(() => res(out)));
    },
  };
  const jv = {
    journal, mode: 'journal', canResync: false, roundStart: 0, roundEnd: 0, seeding: false, seedingFor: () => false, folding: null, maxEpochBytes: 1 << 30,
    roundOwner: null, roundStartFor: () => 0, cursors: { count: 1, isDetached: () => false }, padFor: (_p: string, r: unknown[]) => r,
    resyncUnsettled: false, bitmap: { regionSize: 64 * KiB, regions: 0, count: 0 },
    seed: { nextAsk: () => null, stop: () => undefined, linkDown: () => undefined },
    releaseFor: (_peer: string, seq: number): Promise<void> => {
      released = Math.max(released, seq);
      return Promise.resolve();
    },
    flush: (): Promise<void> => Promise.resolve(),
    releaseIfDue: (): void => undefined,
  };
  return { jv: jv as unknown as JournaledVolume, released: () => released };
}

test('twenty volumes given a burst at once share a budget of a few batches: all drain, none past the budget', async () => {
  const budget = new MemoryBudget(1024 * KiB);
  const volumes = Array.from({ length: 20 }, (_, i) => {
    const v = fakeVolume(32, 16 * KiB);
    const sh = new VolumeShipper(`v${i}`, v.jv, silentLogger, {
      windowBytes: 4096 * KiB, batchBytes: 128 * KiB, selfSyncMs: 1000, now: Date.now, memory: budget,
    });
    return { ...v, sh };
  });
  let sentBytes = 0;
  let maxUsed = 0;
  for (const v of volumes) {
    v.sh.up({
      send: (parts) => {
        maxUsed = Math.max(maxUsed, budget.used);
        const payload = Buffer.concat(parts).subarray(FRAME_HEADER_SIZE);
        const { records } = decodeRecordsFrame(payload);
        sentBytes += payload.length;
        later(() => v.sh.ack(records[records.length - 1]!.seq));
      },
      close: (reason) => assert.fail(reason),
    }, 0);
  }
  const deadline = Date.now() + 20_000;
  while (volumes.some((v) => v.released() < 32) && Date.now() < deadline) {
    for (const v of volumes) v.sh.tick();
    await new Promise((r) => setTimeout(r, 2));
  }
  for (const v of volumes) assert.equal(v.released(), 32, 'every volume drained its backlog');
  assert.ok(sentBytes >= 20 * 32 * 16 * KiB);
  assert.ok(budget.waits > 0, 'the burst waited for leases');
  assert.ok(budget.peak > 0 && budget.peak <= budget.classLimit, `peak ${budget.peak} within the send class's share of ${budget.classLimit}`);
  assert.ok(maxUsed <= budget.limit);
  assert.equal(budget.used, 0, 'every lease came back');
  assert.equal(budget.leases, 0);
});

test('a link going down gives back what its volume held, and a read waiting for memory is withdrawn', async () => {
  const budget = new MemoryBudget(1024 * KiB);
  const v = fakeVolume(64, 64 * KiB);
  const sh = new VolumeShipper('db', v.jv, silentLogger, { windowBytes: 4096 * KiB, batchBytes: 256 * KiB, selfSyncMs: 1000, now: Date.now, memory: budget });
  let frames = 0;
  sh.up({ send: () => void frames++, close: (reason) => assert.fail(reason) }, 0);
  for (let i = 0; i < 50 && !sh.leases.waiting; i++) {
    sh.tick();
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.ok(sh.leases.waiting, 'unacked batches filled the share: the next read waits');
  assert.ok(frames > 0 && sh.leases.bytes > 0 && sh.leases.bytes <= budget.classLimit);
  sh.down();
  assert.equal(sh.leases.bytes, 0);
  assert.equal(sh.leases.waiting, false);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(budget.used, 0, 'nothing held after the link went down');
  assert.equal(budget.waiting(), 0);
});

test('a secondary\'s intake: frames past the budget wait with the socket paused, in order, and every lease comes back when logged', async () => {
  const budget = new MemoryBudget(1024 * KiB);
  const taken: number[] = [];
  const pauses: boolean[] = [];
  let maxUsed = 0;
  type F = { n: number; payload: Buffer; heartbeat?: boolean };
  const intake: FrameIntake<F> = new FrameIntake<F>(budget, {
    bytesOf: (f) => (f.heartbeat ? 0 : f.payload.length),
    passes: (f) => f.heartbeat === true,
    take: (f) => {
      taken.push(f.n);
      maxUsed = Math.max(maxUsed, budget.used);
      const logged = intake.leaseOf(f.payload);
      setTimeout(logged, 2); // (the receive log writes it a moment later)
    },
    closed: () => false,
    pause: (p) => pauses.push(p),
  });
  for (let n = 0; n < 40; n++) intake.arrive({ n, payload: Buffer.alloc(100 * KiB) });
  intake.arrive({ n: -1, payload: Buffer.alloc(8), heartbeat: true });
  assert.ok(taken.includes(-1), 'a heartbeat passes frames waiting for memory');
  assert.ok(intake.waiting > 0, 'frames past the receive share wait');
  assert.deepEqual(pauses, [true], 'the socket is not read meanwhile');
  for (let i = 0; i < 500 && taken.length < 41; i++) await new Promise((r) => setTimeout(r, 2));
  assert.deepEqual(taken.filter((n) => n >= 0), Array.from({ length: 40 }, (_, n) => n), 'all taken, in order');
  assert.equal(pauses[pauses.length - 1], false, 'reading resumed');
  assert.ok(maxUsed <= budget.classLimit, `at most the receive share held (${maxUsed})`);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(budget.used, 0);
  intake.close();
});
