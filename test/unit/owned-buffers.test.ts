// Frame buffers the node owns (src/memory/owned-buffers.ts) and the pacer's contract
// with them (src/rate/pacer.ts): a frame's room goes back only once the socket's write
// of its last byte is done, or when it is dropped before any of it was written; a frame
// whose room went back is never written (invariant 12).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OwnedBuffers } from '../../src/memory/owned-buffers.js';
import { Pacer, type FrameHold } from '../../src/rate/pacer.js';
import { FrameRoom } from '../../src/link/records-frame.js';
import { FrameDecoder, FrameType, encodeFrame } from '../../src/link/frame.js';
import { InvariantError } from '../../src/invariants/assert.js';

const KiB = 1024;
const MiB = 1024 * KiB;

test('sizes come in 1/8 steps between powers of two, at least 64 KiB; a buffer given back is taken again', () => {
  assert.equal(OwnedBuffers.classOf(1), 64 * KiB);
  assert.equal(OwnedBuffers.classOf(64 * KiB), 64 * KiB);
  assert.equal(OwnedBuffers.classOf(64 * KiB + 1), 72 * KiB);
  assert.equal(OwnedBuffers.classOf(4 * MiB), 4 * MiB);
  assert.equal(OwnedBuffers.classOf(4 * MiB + 313), 4.5 * MiB);
  assert.equal(OwnedBuffers.classOf(8 * MiB - 1), 8 * MiB);
  for (let n = 1; n < 20 * MiB; n = Math.ceil(n * 1.37)) {
    const c = OwnedBuffers.classOf(n);
    assert.ok(c >= n && (n <= 64 * KiB || c <= n * 1.125 + 1), `class ${c} for ${n}`);
  }
  const pool = new OwnedBuffers(16 * MiB);
  const a = pool.take(4 * MiB + 300);
  assert.equal(a.bytes.length, 4 * MiB + 300);
  const memory = a.whole.buffer;
  a.give();
  assert.equal(a.live, false);
  const b = pool.take(4 * MiB + 1000);
  assert.equal(b.whole.buffer, memory, 'the same class: the same memory');
  assert.equal(pool.reused, 1);
  assert.equal(pool.made, 1);
  assert.throws(() => a.give(), InvariantError, 'given back twice');
  b.give();
  assert.equal(pool.out, 0);
});

test('idle memory is bounded; poison overwrites what is given back', () => {
  const pool = new OwnedBuffers(5 * MiB);
  const x = [pool.take(2 * MiB), pool.take(2 * MiB), pool.take(2 * MiB)];
  for (const o of x) o.give();
  assert.equal(pool.kept, 4 * MiB, 'two of three kept: a third would pass 5 MiB');
  OwnedBuffers.poison = true;
  try {
    const o = pool.take(100 * KiB);
    o.bytes.fill(7);
    const view = o.bytes.subarray(10, 20);
    o.give();
    assert.ok(view.every((v) => v === 0xdb), 'a view kept past the give reads poison');
  } finally {
    OwnedBuffers.poison = false;
  }
});

/** A socket whose writes finish only when told (their callbacks held), and a pacer on it. */
function rig(rate: number | null = null) {
  const writes: Array<{ b: Buffer; done?: () => void }> = [];
  const wakes: Array<() => void> = [];
  const pacer = new Pacer({ write: (b, done) => writes.push({ b, done }), rate: () => rate, now: () => 0, later: (_ms, f) => wakes.push(f) });
  const finish = (): void => {
    for (const w of writes.splice(0)) w.done?.();
  };
  return { pacer, writes, wakes, finish };
}

function hold(): FrameHold & { released: number } {
  return {
    released: 0,
    get live() { return this.released === 0; },
    release() { this.released++; },
  };
}

/** A Records frame (type byte 3) of `n` bytes. */
const records = (n: number): Buffer[] => {
  const h = Buffer.alloc(20);
  h[5] = 3;
  return [h, Buffer.alloc(n - 20, 1)];
};

test('a frame written straight to the socket is released by the callback of its last write, not before', () => {
  const r = rig();
  const h = hold();
  r.pacer.send('db', 1, records(1000), { hold: h });
  assert.equal(r.writes.length, 2);
  assert.equal(h.released, 0, 'the socket still holds it');
  r.finish();
  assert.equal(h.released, 1);
});

test('a paced frame goes in chunks and is released after the last one is written', () => {
  const r = rig(1e9);
  const h = hold();
  r.pacer.send('db', 1, records(100 * KiB), { hold: h });
  while (r.wakes.length > 0) r.wakes.shift()!();
  assert.ok(r.writes.length > 2, 'in chunks');
  const last = r.writes.pop()!;
  r.finish();
  assert.equal(h.released, 0, 'every chunk but the last is done: not yet');
  last.done!();
  assert.equal(h.released, 1);
});

test('dropped frames not begun are released at once; a close releases those queued, never the one being written', () => {
  const r = rig(1000);
  const first = hold();
  const queued = [hold(), hold()];
  r.pacer.send('db', 1, records(64 * KiB), { hold: first });
  for (const q of queued) r.pacer.send('db', 1, records(64 * KiB), { hold: q });
  r.pacer.drop('db');
  assert.deepEqual(queued.map((q) => q.released), [1, 1]);
  assert.equal(first.released, 0, 'partly written: the socket may hold its bytes');
  const more = hold();
  r.pacer.send('db', 1, records(64 * KiB), { hold: more });
  r.pacer.close();
  assert.equal(more.released, 1);
  assert.equal(first.released, 0);
  const late = hold();
  r.pacer.send('db', 1, records(1000), { hold: late });
  assert.equal(late.released, 1, 'sent on a closed link: nothing of it written');
});

test('a frame whose room was released before it was written stops the daemon', () => {
  const r = rig(1000);
  r.pacer.send('db', 1, records(64 * KiB), { hold: hold() });
  const h = hold();
  r.pacer.send('db', 1, records(64 * KiB), { hold: h });
  h.release();
  assert.throws(() => {
    for (let i = 0; i < 1000 && r.wakes.length > 0; i++) r.wakes.shift()!();
  }, /written after its buffer was released/);
});

test('a frame room takes its buffer from the pool at the read and gives it back once, at its release', () => {
  const pool = new OwnedBuffers(16 * MiB);
  const room = new FrameRoom(pool);
  const into = room.scratch(1 * MiB);
  assert.equal(into.length, 1 * MiB);
  assert.equal(pool.out, 1);
  assert.ok(room.live && room.bytes !== null);
  room.release();
  assert.equal(pool.out, 0);
  assert.equal(room.live, false);
  assert.throws(() => room.bytes, InvariantError);
  assert.throws(() => room.release(), InvariantError);
  const again = new FrameRoom(pool);
  assert.equal(again.scratch(1 * MiB).buffer, into.buffer, 'the next batch is read into the same memory');
  again.release();
});

test('a large record frame that comes in pieces is gathered into an owned buffer; the bytes after it stay as they came', () => {
  const pool = new OwnedBuffers(16 * MiB);
  const d = new FrameDecoder(undefined, pool, 4096);
  const big = Buffer.concat(encodeFrame(FrameType.Records, Buffer.alloc(300 * KiB, 0x5a)));
  const small = Buffer.concat(encodeFrame(FrameType.Records, Buffer.alloc(1000, 0x33)));
  const tail = Buffer.concat(encodeFrame(FrameType.Records, Buffer.alloc(20 * KiB, 0x44)));
  const wire = Buffer.concat([big, small, tail]);
  // Pieces of 64 KiB, the last one holding the end of the big frame, the small one and the tail's start.
  for (let at = 0; at < wire.length; at += 64 * KiB) d.push(wire.subarray(at, at + 64 * KiB));
  const f = d.next()!;
  assert.ok(f.owned, 'gathered into the pool');
  assert.equal(pool.out, 1);
  assert.ok(f.payload.equals(Buffer.alloc(300 * KiB, 0x5a)));
  const g = d.next()!;
  assert.equal(g.owned, undefined, 'within one piece: a view of it, not owned');
  assert.ok(g.payload.equals(Buffer.alloc(1000, 0x33)));
  const h = d.next()!;
  assert.ok(h.owned, 'the tail spans two pieces');
  assert.ok(h.payload.equals(Buffer.alloc(20 * KiB, 0x44)));
  assert.equal(d.next(), null);
  f.owned!.give();
  h.owned!.give();
  assert.equal(pool.out, 0);
  // A frame whose payload fails its checksum is refused, and its buffer goes back at once.
  const bad = Buffer.from(big);
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
  const e = new FrameDecoder(undefined, pool, 4096);
  for (let at = 0; at < bad.length; at += 64 * KiB) e.push(bad.subarray(at, at + 64 * KiB));
  assert.throws(() => e.next(), /payload checksum mismatch/);
  assert.equal(pool.out, 0);
  // Without the pool (or under its size): nothing owned.
  const plain = new FrameDecoder();
  for (let at = 0; at < big.length; at += 64 * KiB) plain.push(big.subarray(at, at + 64 * KiB));
  assert.equal(plain.next()!.owned, undefined);
});

test('a take reuses the smallest idle buffer that holds it, up to twice its size; over the bound the buffers idle longest go', () => {
  const pool = new OwnedBuffers(10 * MiB);
  const big = pool.take(8 * MiB + 100); // class 9 MiB
  const memory = big.whole.buffer;
  big.give();
  // A batch of one 4 MiB record after one of two: the 9 MiB buffer serves it.
  const one = pool.take(4 * MiB + 100); // class 4.5 MiB
  assert.equal(one.whole.buffer, memory, 'within twice its class: reused');
  assert.equal(pool.made, 1);
  one.give();
  // Far larger than needed: made anew, the large one left idle.
  const small = pool.take(1 * MiB);
  assert.notEqual(small.whole.buffer, memory);
  assert.equal(pool.made, 2);
  small.give();
  assert.equal(pool.kept, 10 * MiB, '9 MiB and 1 MiB idle');
  // Two 4.5 MiB buffers come back: the oldest idle (the 9 MiB one) goes, the newest stay.
  const [p, q] = [pool.take(4 * MiB + 200), pool.take(4 * MiB + 300)];
  assert.equal(p.whole.buffer, memory, 'the 9 MiB one, the smallest that holds it');
  const r = pool.take(4 * MiB + 400);
  p.give();
  q.give();
  r.give();
  assert.ok(pool.kept <= 10 * MiB, `${pool.kept} idle`);
  const again = pool.take(4 * MiB);
  assert.notEqual(again.whole.buffer, memory, 'the buffer idle longest was let go');
  again.give();
});

test('a buffer away on a worker is read by no one here, comes back whole, and is not kept when it never comes back', () => {
  const pool = new OwnedBuffers(1 << 20);
  const o = pool.take(100_000);
  o.bytes.fill(7);
  const away = o.moveOut();
  // (A postMessage with a transfer list, as the pool posts a job: the memory leaves this thread.)
  const there = structuredClone(away.view, { transfer: [away.transfer] });
  assert.equal(away.view.byteLength, 0, 'views made here read as empty');
  assert.throws(() => o.bytes, (e: Error) => e instanceof InvariantError && /on another thread/.test(e.message));
  assert.equal(o.live, false);
  assert.throws(() => o.moveOut(), InvariantError);
  there[0] = 9;
  o.movedBack(structuredClone(there, { transfer: [there.buffer as ArrayBuffer] }));
  assert.deepEqual([o.bytes.length, o.bytes[0], o.bytes[1], o.live], [100_000, 9, 7, true]);
  o.give();
  assert.equal(pool.kept, OwnedBuffers.classOf(100_000));
  // The one kept goes away and never comes back (its worker died): nothing is kept of it.
  const lost = pool.take(100_000);
  lost.moveOut();
  lost.give();
  assert.deepEqual({ out: pool.out, kept: pool.kept }, { out: 0, kept: 0 });
  // Only the view that went can come back, and only to one that is away.
  const w = pool.take(1000);
  const m = w.moveOut();
  const back = structuredClone(m.view, { transfer: [m.transfer] });
  assert.throws(() => w.movedBack(back.subarray(1)), /came back as 999 of/);
  w.movedBack(back);
  assert.throws(() => w.movedBack(back), /not away/);
});

test('idle buffers stay within what the node\'s memory budget has free', () => {
  const pool = new OwnedBuffers(32 << 20);
  let free = 40 << 20;
  pool.keepWithin(() => free);
  const a = pool.take(4 << 20);
  const b = pool.take(4 << 20);
  const c = pool.take(4 << 20);
  a.give();
  b.give();
  assert.equal(pool.kept, 8 << 20);
  // The budget's leases now hold most of it: what comes back is let go, the idle longest first.
  free = 6 << 20;
  c.give();
  assert.equal(pool.kept, 4 << 20, 'one buffer kept: 4 MiB within 6 free');
  free = -1;
  pool.take(1 << 20).give();
  assert.equal(pool.kept, 0, 'a budget over its limit keeps none idle');
});

test('a take that makes a buffer first lets idle ones go that the budget has no room for now', () => {
  const pool = new OwnedBuffers(32 << 20);
  let free = 40 << 20;
  pool.keepWithin(() => free);
  const bufs = [pool.take(4 << 20), pool.take(4 << 20), pool.take(4 << 20)];
  for (const b of bufs) b.give();
  assert.equal(pool.kept, 12 << 20);
  // Leases grew meanwhile: a take of a size none idle serves keeps only what then fits beside it.
  free = 10 << 20;
  const big = pool.take(6 << 20);
  assert.equal(pool.kept, 4 << 20, '10 MiB free, 6 of them the new buffer: one 4 MiB buffer stays idle');
  big.give();
});
