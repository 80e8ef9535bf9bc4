// Peer protocol frames against fixed bytes (docs/PEER-PROTOCOL.md).
import assert from 'node:assert/strict';
import { crc32c } from '@node-rs/crc32';
import { test } from 'node:test';
import * as F from '../../src/link/frame.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('a heartbeat frame, byte by byte', () => {
  const payload = hex('e803000000000000'); // 1000 ms
  const bytes = Buffer.concat(F.encodeFrame(F.FrameType.Heartbeat, payload));
  // magic, version 1, type 5, flags 0, length 8, CRC32C(payload), CRC32C(header[0..16]).
  assert.deepEqual(bytes.subarray(0, 12), hex('4f46504c 01 05 0000 08000000'));
  assert.equal(bytes.length, 28);
  const d = new F.FrameDecoder();
  d.push(bytes);
  assert.deepEqual(d.next(), { type: F.FrameType.Heartbeat, flags: 0, payload, version: 1 });
  assert.equal(d.next(), null);
});

test('a heartbeat with its echo (for the round trip) decodes from fixed bytes', () => {
  const bytes = Buffer.concat(F.encodeHeartbeat({ clock: 1000, echo: { clock: 990, heldMs: 7 } }));
  assert.deepEqual(bytes.subarray(20), hex('e803000000000000 de03000000000000 07000000'));
  const d = new F.FrameDecoder();
  d.push(bytes);
  assert.deepEqual(F.decodeHeartbeat(d.next()!.payload), { clock: 1000, echo: { clock: 990, heldMs: 7 } });
  assert.deepEqual(F.decodeHeartbeat(hex('e803000000000000')), { clock: 1000 });
  assert.throws(() => F.decodeHeartbeat(hex('e8030000')), /8 or 20 bytes/);
});

test('an ack decodes from fixed bytes', () => {
  const bytes = Buffer.concat(F.encodeAck('db', 42));
  assert.deepEqual(bytes.subarray(20), hex('0200 6462 2a00000000000000'));
  const d = new F.FrameDecoder();
  d.push(bytes);
  const f = d.next()!;
  assert.equal(f.type, F.FrameType.Ack);
  assert.deepEqual(F.decodeAck(f.payload), { volume: 'db', seq: 42 });
});

test('frames split across arbitrary chunks come out whole and in order', () => {
  const frames = [
    F.encodeFrame(F.FrameType.Hello, Buffer.from('{"node":"site-a"}')),
    F.encodeAck('db', 7),
    F.encodeFrame(F.FrameType.Records, F.encodeVolumePayload('db', Buffer.alloc(100000, 3))),
  ].map((p) => Buffer.concat(p));
  const all = Buffer.concat(frames);
  for (const step of [1, 7, 20, 4096]) {
    const d = new F.FrameDecoder();
    const out: F.Frame[] = [];
    for (let i = 0; i < all.length; i += step) {
      d.push(all.subarray(i, i + step));
      for (let f = d.next(); f; f = d.next()) out.push(f);
    }
    assert.deepEqual(out.map((f) => f.type), [F.FrameType.Hello, F.FrameType.Ack, F.FrameType.Records], `step ${step}`);
    assert.equal(d.bufferedBytes, 0);
  }
});

test('frames queued in the decoder come out byte for byte, each copied at most once', () => {
  const payloads = [0, 1, 19, 20, 21, 4096, 70000, 3].map((n, i) => Buffer.alloc(n, i + 1).fill(i * 7, 0, Math.min(n, 5)));
  const frames = payloads.map((p) => Buffer.concat(F.encodeFrame(F.FrameType.Records, F.encodeVolumePayload('db', p))));
  const all = Buffer.concat(frames);
  for (const step of [1, 5, 20, 21, 999, 65536, all.length]) {
    const d = new F.FrameDecoder();
    // Everything pushed before the first frame is taken (frames waiting for memory, as intake.ts holds them).
    for (let i = 0; i < all.length; i += step) d.push(all.subarray(i, i + step));
    const out: Buffer[] = [];
    for (let f = d.next(); f; f = d.next()) out.push(F.decodeVolumePayload(f.payload).rest);
    assert.deepEqual(out, payloads, `step ${step}`);
    assert.equal(d.bufferedBytes, 0);
  }
  // A frame that one chunk holds whole is a view of that chunk, not a copy; the frames behind it are not touched.
  const d = new F.FrameDecoder();
  const chunk = Buffer.concat([frames[6]!, frames[7]!]);
  d.push(chunk);
  d.push(frames[5]!);
  const f = d.next()!;
  assert.equal(f.payload.buffer, chunk.buffer);
  assert.equal(d.bufferedBytes, frames[7]!.length + frames[5]!.length);
  assert.equal(d.next()!.payload.length, frames[7]!.length - 20);
  assert.equal(d.next()!.payload.length, frames[5]!.length - 20);
});

test('garbage, flipped bits, other versions and oversize frames are named errors', () => {
  const good = Buffer.concat(F.encodeFrame(F.FrameType.Heartbeat, hex('0100000000000000')));
  const cases: Array<[Buffer, RegExp]> = [
    [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /not an Offsite frame/],
    [Buffer.from(good).fill(0x99, 24, 25), /payload checksum mismatch/],
    [Buffer.from(good).fill(0x07, 5, 6), /header checksum mismatch/],
  ];
  const v5 = Buffer.from(good);
  v5.writeUInt8(5, 4);
  v5.writeUInt32LE(require32(v5), 16);
  cases.push([v5, /protocol version 5, this node speaks 1..4/]);
  const big = Buffer.from(good);
  big.writeUInt32LE(F.MAX_FRAME_PAYLOAD + 1, 8);
  big.writeUInt32LE(require32(big), 16);
  cases.push([big, /over the .*-byte limit/]);
  for (const [bytes, re] of cases) {
    const d = new F.FrameDecoder();
    d.push(bytes);
    assert.throws(() => d.next(), (e: unknown) => e instanceof F.FrameError && re.test(e.message), re.source);
  }
  assert.throws(() => F.encodeFrame(F.FrameType.Records, Buffer.alloc(F.MAX_FRAME_PAYLOAD + 1)), /over the/);
});

function require32(b: Buffer): number {
  return crc32c(b.subarray(0, 16));
}

test('a frame of parts is byte for byte the frame of their concatenation, its CRC taken across them', () => {
  const parts = [hex('0002 6462'), Buffer.alloc(0), Buffer.from('packed bytes from zstd'), hex('00ff')];
  const joined = Buffer.concat(F.encodeFrame(F.FrameType.PackedRecords, Buffer.concat(parts)));
  const split = F.encodeFrameParts(F.FrameType.PackedRecords, parts);
  assert.equal(split.length, 1 + parts.length, 'the header, then each part as it was (no copy of them)');
  for (let i = 0; i < parts.length; i++) assert.equal(split[i + 1], parts[i]);
  assert.deepEqual(Buffer.concat(split), joined);
  assert.equal(split[0]!.readUInt32LE(12), crc32c(Buffer.concat(parts)));
  assert.throws(() => F.encodeFrameParts(F.FrameType.PackedRecords, [Buffer.alloc(F.MAX_FRAME_PAYLOAD), Buffer.alloc(1)]), /over the/);
});
