// Rates, schedules and the pacer on a simulated clock: a 1 Mbit/s cap holds within
// 10% over 30 s, a schedule switch takes effect at once, weights share the link,
// control frames never wait behind records, and frames stay whole and in order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SOCKET_BUFFERED, Pacer } from '../../src/rate/pacer.js';
import { parseRate, parseWindow, rateAt } from '../../src/rate/rate.js';

/** A pacer on a fake clock: later() queues wake-ups that run() fires in time order. */
function rig(rate: () => number | null) {
  let now = 0;
  const wakes: Array<{ at: number; f: () => void }> = [];
  const out: Array<{ at: number; b: Buffer }> = [];
  const pacer = new Pacer({ write: (b) => out.push({ at: now, b }), rate, now: () => now, later: (ms, f) => wakes.push({ at: now + ms, f }) });
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
  return { pacer, out, run, setNow: (t: number) => (now = t), get now() { return now; } };
}

const frame = (tag: number, n: number): Buffer[] => [Buffer.alloc(20, tag), Buffer.alloc(n - 20, tag)];

test('rates and windows parse as operators write them', () => {
  assert.equal(parseRate('1mbit'), 125_000);
  assert.equal(parseRate('256kbit'), 32_000);
  assert.equal(parseRate('10MB/s'), 10_000_000);
  assert.throws(() => parseRate('fast'), /not a rate; write it like 1mbit/);
  assert.deepEqual(parseWindow('08:00-18:00'), [480, 1080]);
  assert.throws(() => parseWindow('8-18'), /not a time window/);
  const at = (h: number): number => new Date(2026, 10, 26, h, 30).getTime();
  const w = [{ at: '08:00-18:00', rate: 32_000 }, { at: '22:00-02:00', rate: 1_000 }];
  assert.equal(rateAt(125_000, w, at(9)), 32_000);
  assert.equal(rateAt(125_000, w, at(19)), 125_000);
  assert.equal(rateAt(125_000, w, at(1)), 1_000, 'a window past midnight');
  assert.equal(rateAt(null, [], at(9)), null);
});

test('a 1 Mbit/s cap holds within 10% over a 30 s window, with a backlog always waiting', () => {
  const r = rig(() => 125_000);
  // Keep far more queued than the link can carry in the window.
  for (let i = 0; i < 40; i++) r.pacer.send('db', 1, frame(i, 256 * 1024));
  r.run(5_000);
  const at5 = r.out.reduce((n, w) => n + w.b.length, 0);
  r.run(35_000);
  const at35 = r.out.reduce((n, w) => n + w.b.length, 0);
  const rate = (at35 - at5) / 30;
  assert.ok(rate <= 125_000 * 1.1 && rate >= 125_000 * 0.9, `measured ${rate} B/s`);
});

test('a schedule switch takes effect at once, without a new link', () => {
  let cap = 125_000;
  const r = rig(() => cap);
  for (let i = 0; i < 40; i++) r.pacer.send('db', 1, frame(i, 256 * 1024));
  r.run(10_000);
  const a = r.out.reduce((n, w) => n + w.b.length, 0);
  cap = 32_000; // 08:00: the daytime rate
  r.run(20_000);
  const b = r.out.reduce((n, w) => n + w.b.length, 0);
  const slow = (b - a) / 10;
  assert.ok(slow <= 32_000 * 1.15, `after the switch ${slow} B/s`);
  assert.ok(slow >= 32_000 * 0.85, `after the switch ${slow} B/s`);
});

test('weights share the link; control frames go at the next frame boundary; frames stay whole and in order', () => {
  const r = rig(() => 100_000);
  for (let i = 0; i < 30; i++) {
    r.pacer.send('big', 3, frame(1, 64 * 1024));
    r.pacer.send('small', 1, frame(2, 64 * 1024));
  }
  r.run(2_000);
  r.pacer.control([Buffer.alloc(28, 9)]);
  r.run(20_000);
  const bytes = Buffer.concat(r.out.map((w) => w.b));
  // Reassemble: frames are runs of 64 KiB of one tag, the control frame 28 bytes of 9.
  const seq: number[] = [];
  for (let at = 0; at < bytes.length;) {
    const tag = bytes[at]!;
    const len = tag === 9 ? 28 : 64 * 1024;
    assert.ok(bytes.subarray(at, at + len).every((x) => x === tag), `a frame interleaved at byte ${at}`);
    seq.push(tag);
    at += len;
  }
  assert.equal(seq.filter((t) => t === 9).length, 1, 'the control frame went through');
  const big = seq.filter((t) => t === 1).length;
  const small = seq.filter((t) => t === 2).length;
  assert.ok(big >= 2.4 * small && big <= 3.6 * small, `weights 3:1 gave ${big}:${small}`);
});

test('without a rate frames go straight through', () => {
  const r = rig(() => null);
  r.pacer.send('db', 1, frame(5, 1000));
  assert.equal(r.out.length, 2);
});

test('control frames keep their order behind a paced frame; drop forgets a volume\'s queued records only, dropAll all of them', () => {
  const r = rig(() => 20_000);
  const records = (tag: number): Buffer[] => { const h = Buffer.alloc(20, tag); h[5] = 3; return [h, Buffer.alloc(40_000, tag)]; };
  r.pacer.send('db', 1, records(1));
  r.pacer.control([Buffer.alloc(28, 7)]); // queued: a frame is being written
  r.run(1_900); // the frame's last chunk has gone, the bucket makes the pump wait
  r.pacer.control([Buffer.alloc(28, 8)]); // must not overtake 7
  r.run(10_000);
  const tags = r.out.filter((w) => w.b.length === 28).map((w) => w.b[0]);
  assert.deepEqual(tags, [7, 8]);
  const d = rig(() => 1_000);
  d.pacer.send('db', 1, records(1));
  d.pacer.send('db', 1, records(2));
  const resync = [Buffer.alloc(20, 9), Buffer.alloc(12, 9)];
  d.pacer.send('db', 1, resync);
  d.pacer.drop('db');
  d.run(120_000);
  const body = Buffer.concat(d.out.map((w) => w.b));
  assert.ok(!body.includes(2), 'the queued records frame was dropped');
  assert.ok(body.includes(9), 'the Resync frame still went');
  // dropAll (a VolumeHello ends the volume's pairing): every queued frame of it goes, holds released; another volume's stay.
  const e = rig(() => 1_000);
  let released = 0;
  const hold = { release: () => released++ } as unknown as Parameters<typeof e.pacer.send>[3] extends { hold?: infer H } ? H : never;
  e.pacer.send('db', 1, records(1));
  e.pacer.send('db', 1, records(2), { hold });
  e.pacer.send('db', 1, [Buffer.alloc(20, 9), Buffer.alloc(12, 9)]);
  e.pacer.send('logs', 1, records(5));
  e.pacer.dropAll('db');
  e.run(120_000);
  const rest = Buffer.concat(e.out.map((w) => w.b));
  assert.ok(!rest.includes(2) && !rest.includes(9), 'no queued frame of db went');
  assert.ok(rest.includes(5), 'logs\' frame went');
  assert.equal(released, 1);
});

test('an uncapped link slower than we write: the socket holds at most MAX_SOCKET_BUFFERED, and control frames pass queued records', () => {
  let buffered = 0;
  let written = 0;
  const drains: Array<() => void> = [];
  const out: string[] = [];
  const pacer = new Pacer({
    write: (b) => {
      buffered += b.length;
      written += b.length;
      out.push(b.length === 40 ? 'ack' : 'rec');
    },
    rate: () => null, now: () => 0, later: () => undefined,
    buffered: () => buffered, onDrain: (f) => drains.push(f),
  });
  const frame = (type: number, bytes: number): Buffer[] => {
    const b = Buffer.alloc(bytes);
    b[5] = type;
    return [b];
  };
  for (let i = 0; i < 40; i++) pacer.send('db', 1, frame(3, 64 * 1024));
  // 256 KiB went out; the rest waits in the pacer, not in the socket.
  assert.equal(buffered, MAX_SOCKET_BUFFERED);
  assert.equal(pacer.pending(), 36);
  // An ack now goes straight to the socket, ahead of 36 queued record frames.
  pacer.control(frame(4, 40));
  assert.equal(out[out.length - 1], 'ack');
  // The socket drains: the pacer goes on, 256 KiB at a time.
  buffered = 0;
  drains.shift()!();
  assert.equal(pacer.pending(), 32);
  while (drains.length > 0) {
    buffered = 0;
    drains.shift()!();
  }
  assert.equal(pacer.pending(), 0);
  assert.equal(written, 40 * 64 * 1024 + 40);
});

/** A pacer on an uncapped link over a socket whose buffer the test drains by hand. */
function socketPacer(allowance: number): { pacer: Pacer; buffered: () => number; drainAll: () => void } {
  let buffered = 0;
  const drains: Array<() => void> = [];
  const pacer = new Pacer({
    write: (b) => {
      buffered += b.length;
    },
    rate: () => null, now: () => 0, later: () => undefined,
    buffered: () => buffered, onDrain: (f) => drains.push(f), maxBuffered: () => allowance,
  });
  const drainAll = (): void => {
    while (drains.length > 0) {
      buffered = 0;
      drains.shift()!();
    }
  };
  return { pacer, buffered: () => buffered, drainAll };
}

test('a slow link: the socket holds only its allowance (maxBuffered), so control frames wait less', () => {
  const { pacer, buffered } = socketPacer(32 * 1024);
  const frame = Buffer.alloc(16 * 1024);
  frame[5] = 3;
  for (let i = 0; i < 8; i++) pacer.send('db', 1, [frame]);
  assert.equal(buffered(), 32 * 1024);
  assert.equal(pacer.pending(), 6);
});

test('active: a record frame being written or waiting for the socket counts, an idle pacer does not', () => {
  const { pacer, buffered, drainAll } = socketPacer(64 * 1024);
  assert.equal(pacer.active(), false);
  const frame = Buffer.alloc(256 * 1024); // larger than the allowance: goes in chunks
  frame[5] = 3;
  pacer.send('db', 1, [frame]);
  assert.equal(pacer.pending(), 0, 'nothing queued behind it');
  assert.equal(pacer.active(), true, 'but the frame is part way out');
  drainAll();
  assert.equal(pacer.active(), false);
  assert.equal(buffered(), 64 * 1024, 'the last chunk');
});
