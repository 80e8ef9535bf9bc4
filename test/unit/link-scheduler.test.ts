// Sharing a link between volumes (docs/LINK.md, "How it works"): the deficit round
// robin of src/rate/scheduler.ts by itself, then through the pacer on a simulated
// clock, and the batch a volume sharing the link gets (src/rate/capacity.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LinkScheduler, effectiveWeight, shareOf, type FrameClass } from '../../src/rate/scheduler.js';
import { Pacer } from '../../src/rate/pacer.js';
import { batchFor } from '../../src/rate/capacity.js';
import { Rng } from '../sim/disk-model.js';
import { VolumeShipper } from '../../src/link/volume-shipper.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';
import { parseConfig } from '../../src/config/config.js';

const KiB = 1024;
const MiB = 1 << 20;

/** Volumes v0..v(n-1), each with `frames` frames waiting of sizes from `size`. */
function backlog(n: number, frames: number, size: (v: number, i: number) => number, weight = (_v: number) => 1): LinkScheduler<string> {
  const s = new LinkScheduler<string>();
  for (let i = 0; i < frames; i++) for (let v = 0; v < n; v++) s.enqueue(`v${v}`, `v${v}#${i}`, size(v, i), { weight: weight(v) });
  return s;
}

/** Takes frames until `bytes` went; the bytes per volume. */
function drain(s: LinkScheduler<string>, bytes: number): Map<string, number> {
  const sent = new Map<string, number>();
  for (let total = 0; total < bytes;) {
    const f = s.next();
    if (!f) break;
    sent.set(f.volume, (sent.get(f.volume) ?? 0) + f.bytes);
    total += f.bytes;
  }
  return sent;
}

for (const n of [8, 50]) {
  test(`${n} equal volumes with backlogs: each sends within the first ${n} turns, and bytes within 20% of the mean`, () => {
    // Equal frames: the first n frames come from n different volumes.
    const s = backlog(n, 8, () => 256 * KiB);
    const first = new Set<string>();
    for (let i = 0; i < n; i++) first.add(s.next()!.volume);
    assert.equal(first.size, n, `the first ${n} frames came from ${first.size} volumes`);
    // Frames of every size from 16 KiB to 4 MiB, different per volume: bytes, not frames, are shared.
    const rng = new Rng(n);
    const sizes = Array.from({ length: n }, () => Array.from({ length: 400 }, () => 16 * KiB + rng.int(4 * MiB - 16 * KiB)));
    const t = backlog(n, 400, (v, i) => sizes[v]![i]!);
    const sent = drain(t, n * 64 * MiB);
    const mean = [...sent.values()].reduce((a, b) => a + b, 0) / n;
    assert.equal(sent.size, n);
    for (const [v, b] of sent) assert.ok(Math.abs(b - mean) <= 0.2 * mean, `${v} sent ${b}, the mean is ${mean}`);
  });
}

test('weights 1:2:4 give byte shares of 1/7, 2/7 and 4/7 within 20%, whatever the frame sizes', () => {
  const rng = new Rng(7);
  const w = [1, 2, 4];
  const s = backlog(3, 600, () => 16 * KiB + rng.int(2 * MiB), (v) => w[v]!);
  const sent = drain(s, 256 * MiB);
  const total = [...sent.values()].reduce((a, b) => a + b, 0);
  for (let v = 0; v < 3; v++) {
    const share = sent.get(`v${v}`)! / total;
    const want = w[v]! / 7;
    assert.ok(Math.abs(share - want) <= 0.2 * want, `v${v} (weight ${w[v]}) took ${share.toFixed(3)} of the link, not ${want.toFixed(3)}`);
  }
});

test('priority counts as a factor of 8 on the weight: a high volume takes 8/9 beside a normal one, a low one 1/9', () => {
  assert.equal(effectiveWeight(1, 'high'), 8);
  assert.equal(effectiveWeight(2, 'low'), 0.25);
  for (const [p, want] of [['high', 8 / 9], ['low', 1 / 9]] as const) {
    const s = new LinkScheduler<string>();
    for (let i = 0; i < 400; i++) {
      s.enqueue('a', 'a', 64 * KiB, { weight: 1, priority: p });
      s.enqueue('b', 'b', 64 * KiB, { weight: 1 });
    }
    const sent = drain(s, 20 * MiB);
    const share = sent.get('a')! / (sent.get('a')! + (sent.get('b') ?? 0));
    assert.ok(Math.abs(share - want) <= 0.2 * want, `a ${p} volume took ${share.toFixed(3)}`);
  }
});

test("live records go before any volume's resync; a volume's own frames stay in order", () => {
  const s = new LinkScheduler<string>();
  const order: string[] = [];
  for (let i = 0; i < 5; i++) s.enqueue('r', `r-resync-${i}`, 64 * KiB, { weight: 4 }, 'resync');
  s.enqueue('r', 'r-live-0', 64 * KiB, { weight: 4 }, 'live');
  for (let i = 0; i < 5; i++) s.enqueue('l', `l-live-${i}`, 64 * KiB, { weight: 1 }, 'live');
  for (let f = s.next(); f; f = s.next()) order.push(f.item);
  // All of l's live frames first (r's weight of 4 does not matter across classes),
  // then r's frames in the order r gave them: its live frame waits behind its resync.
  assert.deepEqual(order, [
    'l-live-0', 'l-live-1', 'l-live-2', 'l-live-3', 'l-live-4',
    'r-resync-0', 'r-resync-1', 'r-resync-2', 'r-resync-3', 'r-resync-4', 'r-live-0',
  ]);
  // A live frame arriving while resync frames wait goes at the next boundary.
  s.enqueue('r', 'r2-resync', 64 * KiB, { weight: 1 }, 'resync');
  s.enqueue('r', 'r2-resync2', 64 * KiB, { weight: 1 }, 'resync');
  assert.equal(s.next()!.item, 'r2-resync');
  s.enqueue('l', 'l2-live', 64 * KiB, { weight: 1 }, 'live');
  assert.equal(s.next()!.item, 'l2-live');
  assert.equal(s.next()!.item, 'r2-resync2');
  assert.equal(s.next(), null);
});

test('idle time is not banked: a volume back from idle is level with the others, and drop forgets what it refuses', () => {
  const s = new LinkScheduler<string>();
  // a alone for a long while; then b and c arrive: nobody waits for anybody to catch up.
  for (let i = 0; i < 100; i++) s.enqueue('a', 'a', 64 * KiB, { weight: 1 });
  drain(s, 100 * 64 * KiB);
  for (const v of ['a', 'b', 'c']) for (let i = 0; i < 4; i++) s.enqueue(v, v, 64 * KiB, { weight: 1 });
  assert.deepEqual(new Set([s.next()!.volume, s.next()!.volume, s.next()!.volume]), new Set(['a', 'b', 'c']));
  s.drop('b', () => false);
  assert.equal(s.pending, 6);
  const rest = drain(s, Infinity);
  assert.equal(rest.get('b'), undefined);
  assert.equal(s.pending, 0);
});

test('shares: a volume\'s weight over those of the volumes with a backlog', () => {
  assert.equal(shareOf(1, []), 1);
  assert.equal(shareOf(1, [1, 1, 1, 1, 1, 1, 1]), 1 / 8);
  assert.equal(shareOf(4, [1, 2]), 4 / 7);
});

test('batch: about a second of the volume\'s share when several volumes want the link, four seconds of it alone', () => {
  // 16 Mbit/s, 8 equal volumes: 250 KB batches, not 4 MiB (2 s of the whole link each).
  assert.equal(batchFor(2_000_000, 4 * MiB, 1 / 8), 250_000);
  assert.equal(batchFor(2_000_000, 4 * MiB), 4 * MiB);
  // 1 Mbit/s, 50 volumes: the floor, 16 KiB.
  assert.equal(batchFor(125_000, 4 * MiB, 1 / 50), 16 * KiB);
  // Never larger than alone, and unknown capacity: the largest.
  assert.equal(batchFor(1e9, 4 * MiB, 1 / 2), 4 * MiB);
  assert.equal(batchFor(null, 4 * MiB, 1 / 8), 4 * MiB);
});

// --- through the pacer (the policy the old pacer had in it) ---------------------------

/** A pacer on a fake clock at `rate` bytes per second; frames are tagged by their first byte. */
function rig(rate: number) {
  let now = 0;
  const wakes: Array<{ at: number; f: () => void }> = [];
  const out: Array<{ at: number; b: Buffer }> = [];
  const pacer = new Pacer({ write: (b) => out.push({ at: now, b }), rate: () => rate, now: () => now, later: (ms, f) => wakes.push({ at: now + ms, f }) });
  const run = (until: number): void => {
    for (;;) {
      wakes.sort((a, b) => a.at - b.at);
      const w = wakes[0];
      if (!w || w.at > until) break;
      wakes.shift();
      now = w.at;
      w.f();
    }
    now = until;
  };
  /** The volumes (by tag) of the frames written so far, one per frame (a header is 20 bytes). */
  const frames = (): number[] => out.filter((w) => w.b.length === 20).map((w) => w.b[0]!);
  return { pacer, out, run, frames };
}

/** A frame of `n` bytes tagged `tag`: a Records frame (type 3 in byte 5) unless `cls` says resync. */
function frame(tag: number, n: number, cls: FrameClass = 'live'): Buffer[] {
  const h = Buffer.alloc(20, tag);
  h[5] = cls === 'live' ? 3 : 9;
  return [h, Buffer.alloc(n - 20, tag)];
}

test('pacer: volumes that sent much earlier do not wait for the others to catch up (issue 18: 3 volumes sent all, 5 nothing)', () => {
  const r = rig(2_000_000);
  // Volumes 1..5 ship 16 MiB each while 6..8 are idle; the link drains.
  for (let v = 1; v <= 5; v++) for (let i = 0; i < 64; i++) r.pacer.send(`v${v}`, 1, frame(v, 256 * KiB));
  r.run(60_000);
  assert.equal(r.pacer.pending(), 0);
  const before = r.frames().length;
  // Then all 8 get a backlog at once, the idle ones first: each is among the first 9
  // frames (the first one starts out alone, before the others' are queued). The old
  // pacer counted bytes since the link came up: v6..v8 went alone until they had
  // caught up with 16 MiB each (three volumes sent everything, five nothing).
  for (let v = 8; v >= 1; v--) for (let i = 0; i < 16; i++) r.pacer.send(`v${v}`, 1, frame(v, 256 * KiB));
  r.run(61_000 + 2_000);
  const next = r.frames().slice(before, before + 9);
  assert.deepEqual(new Set(next), new Set([1, 2, 3, 4, 5, 6, 7, 8]), `the first 9 frames after the burst came from volumes ${next.join(',')}`);
});

test('pacer: resync frames of one volume wait while another volume\'s live records do; priority weighs', () => {
  const r = rig(1_000_000);
  for (let i = 0; i < 8; i++) r.pacer.send('seed', 8, frame(1, 64 * KiB, 'resync'));
  // (The frames begun before db's came, within the bucket's burst, finish first.)
  const begun = r.frames().length;
  for (let i = 0; i < 8; i++) r.pacer.send('db', 1, frame(2, 64 * KiB));
  r.run(10_000);
  assert.deepEqual(r.frames().slice(begun, begun + 8), [2, 2, 2, 2, 2, 2, 2, 2]);
  assert.equal(r.frames().length, 16);

  const p = rig(1_000_000);
  for (let i = 0; i < 90; i++) {
    p.pacer.send('gold', 1, frame(1, 16 * KiB), { priority: 'high' });
    p.pacer.send('bronze', 1, frame(2, 16 * KiB));
  }
  p.run(1_000);
  const f = p.frames();
  const gold = f.filter((x) => x === 1).length / f.length;
  assert.ok(gold >= 0.8 * (8 / 9), `a high volume took ${gold.toFixed(2)} of the link beside a normal one`);
});

// --- the shipper and the config ------------------------------------------------------

test('a shipper sharing the link reads batches of about a second of its share, its window unchanged', () => {
  const sh = new VolumeShipper('db', {} as JournaledVolume, silentLogger, { windowBytes: 32 * MiB, batchBytes: 4 * MiB, selfSyncMs: 1000, now: () => 0 });
  let share = 1;
  sh.share = () => share;
  sh.linkMeasured(2_000_000, 10, 2_000_000);
  assert.equal(sh.batchBytes, 4 * MiB);
  const window = sh.windowBytes;
  share = 1 / 8;
  sh.linkMeasured(2_000_000, 10, 2_000_000);
  assert.equal(sh.batchBytes, 250_000);
  assert.equal(sh.windowBytes, window, 'smaller frames, not fewer bytes in flight');
});

test('config: priority is high, normal (default) or low', () => {
  const yaml = (extra: string): string => 'node: site-a\nstate: ./state\nnbd: 127.0.0.1:10809\npeers:\n  site-b: { address: "127.0.0.1:7700" }\n' +
    `volumes:\n  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b${extra} }\n`;
  assert.equal(parseConfig(yaml(''), '/x/o.yaml').volumes[0]!.priority, 'normal');
  assert.equal(parseConfig(yaml(', priority: high'), '/x/o.yaml').volumes[0]!.priority, 'high');
  assert.throws(() => parseConfig(yaml(', priority: urgent'), '/x/o.yaml'), /priority/);
});
