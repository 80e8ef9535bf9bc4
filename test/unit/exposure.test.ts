// The presentable point and the lag it gives (src/rpo/exposure.ts): acked records past
// the newest barrier the peer could present are lost on a promote and count in the lag.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExposureTracker, type SentRecord } from '../../src/rpo/exposure.js';
import { RecordKind } from '../../src/journal/record.js';

const w = (seq: number, time: number): SentRecord => ({ kind: RecordKind.Write, seq, offset: 0, time });
const b = (seq: number, time: number): SentRecord => ({ kind: RecordKind.Barrier, seq, offset: 0, time });
const skip = (seq: number, time: number, until: number): SentRecord => ({ kind: RecordKind.Skip, seq, offset: until, time });

test('acked at a barrier: nothing lost; acked past it: lost since the first write after it', () => {
  const t = new ExposureTracker();
  t.reset(0);
  t.sent([w(1, 100), w(2, 200), b(3, 210), w(4, 300), w(5, 400)]);
  t.acked(3);
  assert.equal(t.presentable, 3);
  assert.equal(t.lostAgeMs(1000), 0);
  t.acked(5);
  assert.equal(t.presentable, 3, 'no barrier after 3 is acked');
  assert.equal(t.lostAgeMs(1000), 700, 'record 4 (time 300) would be lost');
});

test('a coalesced unit: its inner barriers cannot be presented until its last one is acked', () => {
  const t = new ExposureTracker();
  t.reset(10);
  // Unit from 11 to 16: record 11 is covered by 15, so it goes as a Skip naming 16.
  t.sent([skip(11, 1000, 16), b(12, 1010), w(13, 2000), b(14, 2010), w(15, 3000), b(16, 3010), w(17, 4000)]);
  t.acked(14);
  assert.equal(t.presentable, 10, 'barriers 12 and 14 are inside the unit');
  assert.equal(t.lostAgeMs(5000), 4000, 'everything since record 11 is lost on a promote now');
  t.acked(16);
  assert.equal(t.presentable, 16);
  assert.equal(t.lostAgeMs(5000), 0);
  t.acked(17);
  assert.equal(t.lostAgeMs(5000), 1000);
});

test('a resend after a reconnect is not counted twice; marks are dropped as the point moves', () => {
  const t = new ExposureTracker();
  t.reset(0);
  for (let i = 1; i <= 5000; i += 2) t.sent([w(i, i), b(i + 1, i)]);
  t.acked(5000);
  assert.equal(t.presentable, 5000);
  t.sent([w(4999, 4999), b(5000, 4999), w(5001, 6000)]);
  t.acked(5001);
  assert.equal(t.lostAgeMs(7000), 1000);
});

test('a jump in the stream (a resync round) starts the count again from there', () => {
  const t = new ExposureTracker();
  t.reset(0);
  t.sent([w(1, 1), b(2, 1), w(10, 50), w(11, 60)]);
  t.acked(11);
  assert.equal(t.presentable, 9);
  assert.equal(t.lostAgeMs(100), 50);
});
