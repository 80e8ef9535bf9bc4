// Fuzzing the peer frame codec (issue 15): random and mutated frames, fed to the frame
// decoder in random pieces and each frame to the decoder of its type (PackedRecords
// both here and through the worker pool), must decode or throw a FrameError that says
// why; never another exception, a hang, or memory beyond a frame's bound. Mutations
// keep the frame checksums right, so they reach the payload decoders, and include what
// an attacker would send: zstd bombs after a good frame, sizes at and past the limits.
//
// Seeded: OFFSITE_FUZZ_SEED=N replays a run, OFFSITE_FUZZ_CASES=N sets its length. The
// seed is in the test's name and in every failure.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { compress } from 'zstd-napi';
import { RecordKind, type JournalRecord } from '../../src/journal/record.js';
import {
  FrameDecoder, FrameError, FrameType, FRAME_HEADER_SIZE, MAX_FRAME_PAYLOAD, decodeAck, decodeHashReply, decodeHashRequest, decodeHeartbeat,
    decodeHold, decodeResync,
  encodeAck, encodeFrame, encodeHashReply, encodeHashRequest, encodeHeartbeat, encodeHold, encodeResync, frameVolume, type Frame,
} from '../../src/link/frame.js';
import { checkHello, encodeHello, type HelloVolume } from '../../src/link/hello.js';
import { decodeRecordsFrame, encodeRecordsFrame } from '../../src/link/records-frame.js';
import { decodePackedRecordsFrame, decodePackedRecordsFrameOff, packSync, parsePackedRecordsFrame } from '../../src/compress/codec.js';
import { CompressionPool } from '../../src/compress/pool.js';
import { OwnedBuffers } from '../../src/memory/owned-buffers.js';
import { Rng } from '../sim/disk-model.js';
import { zstdBomb } from '../helpers/hostile-peer.js';

const SEED = Number(process.env.OFFSITE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CASES = Number(process.env.OFFSITE_FUZZ_CASES ?? 4000);
/** A decode that takes longer than this is a hang in the making. */
const SLOW_MS = 2000;

const shared: HelloVolume[] = [{ name: 'db', uuid: '', size: 1 << 24, role: 'secondary', generation: [], durableSeq: 0, logBytes: 1 << 26, round: 0 }];

function records(rng: Rng, n: number, compressible: boolean): JournalRecord[] {
  const out: JournalRecord[] = [];
  let seq = 1 + rng.int(1000);
  for (let i = 0; i < n; i++) {
    const kind = rng.chance(0.8) ? RecordKind.Write : [RecordKind.Barrier, RecordKind.Zeroes][rng.int(2)]!;
    const len = kind === RecordKind.Write ? 512 * (1 + rng.int(16)) : kind === RecordKind.Zeroes ? 4096 : 0;
    const payload = kind !== RecordKind.Write ? Buffer.alloc(0) : compressible ? Buffer.alloc(len, rng.int(4)) : randomBytesFrom(rng, len);
    out.push({ kind, flags: 0, seq: seq++, epoch: 1, offset: 4096 * rng.int(4096), length: len, time: 1_700_000_000_000 + seq, payload });
  }
  return out;
}

function randomBytesFrom(rng: Rng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(256);
  return b;
}

const z = (b: Buffer): Buffer => compress(b, { checksumFlag: true });

/** Valid frames of every type, as [type, payload]. */
function corpus(rng: Rng): Frame[] {
  const frames: Buffer[][] = [
    encodeFrame(FrameType.Hello, encodeHello({ node: 'site-a', protocol: 1, codecs: ['zstd'], volumes: [
      { ...shared[0]!, role: 'primary', uuid: 'u', generation: ['00ff'] }] })),
    encodeFrame(FrameType.Refuse, Buffer.from(JSON.stringify({ code: 'size', message: 'no' }))),
    encodeRecordsFrame('db', records(rng, 4, true)),
    encodeAck('db', 42),
    encodeHeartbeat({ clock: 1000 }),
    encodeHeartbeat({ clock: 1000, echo: { clock: 990, heldMs: 7 } }),
    encodeResync('db', 7),
    encodeHashRequest({ volume: 'db', regionSize: 65536, first: 3, count: 4 }),
    encodeHashRequest({ volume: 'db', regionSize: 65536, first: 3, count: 4, afterSeq: 99 }),
    encodeHashReply({ volume: 'db', regionSize: 65536, first: 3 }, [randomBytes(32), randomBytes(32)]),
    encodeHold('db', 42, true),
    packSync('db', records(rng, 24, true), z, 3), // codec 1
    packSync('db', records(rng, 48, false), z, 3), // codec 2 (random payloads)
  ];
  return frames.map((parts) => {
    const d = new FrameDecoder();
    d.push(Buffer.concat(parts));
    return d.next()!;
  });
}

const INTERESTING_U32 = [0, 1, 2, 51, 52, 56, 0x7f, 0x80, 0xff, 0xffff, 0x10000, MAX_FRAME_PAYLOAD - 1, MAX_FRAME_PAYLOAD,
  MAX_FRAME_PAYLOAD + 1, 0x7fffffff, 0xffffffff];

/** A payload mutated the way a fuzzer would, or the way an attacker would. */
function mutate(rng: Rng, p: Buffer, all: Frame[]): Buffer {
  let b = Buffer.from(p);
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    const at = b.length > 0 ? rng.int(b.length) : 0;
    switch (rng.int(10)) {
      case 0: // flip bits
        if (b.length) b[at] = b[at]! ^ (1 << rng.int(8));
        break;
      case 1: // random bytes over a stretch
        for (let i = at; i < Math.min(b.length, at + 1 + rng.int(16)); i++) b[i] = rng.int(256);
        break;
      case 2: // a u32 field set to a boundary value
        if (b.length >= 4) b.writeUInt32LE(INTERESTING_U32[rng.int(INTERESTING_U32.length)]!, Math.min(at, b.length - 4));
        break;
      case 3: // cut short
        b = b.subarray(0, at);
        break;
      case 4: // grown with random bytes
        b = Buffer.concat([b, randomBytesFrom(rng, 1 + rng.int(64))]);
        break;
      case 5: // a piece of another frame spliced in
        {
          const o = all[rng.int(all.length)]!.payload;
          const from = o.length ? rng.int(o.length) : 0;
          b = Buffer.concat([b.subarray(0, at), o.subarray(from, from + 1 + rng.int(256)), b.subarray(at)]);
        }
        break;
      case 6: // a zstd frame appended: another good one, or a bomb (512 MiB of RLE blocks in 16 KiB)
        b = Buffer.concat([b, rng.chance(0.5) ? z(randomBytesFrom(rng, 64)) : zstdBomb(rng.chance(0.5) ? 4096 : 1 + rng.int(64))]);
        break;
      case 7: // a stretch repeated
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 1 + rng.int(64)), b.subarray(at)]);
        break;
      case 8: // the volume name's length
        if (b.length >= 2) b.writeUInt16LE([0, 1, 2, 255, 256, 0xffff][rng.int(6)]!, 0);
        break;
      default: // the PackedRecords head: codec and declared length
        if (b.length >= 12) {
          const n = b.readUInt16LE(0);
          if (2 + n + 8 <= b.length) {
            if (rng.chance(0.5)) b[2 + n] = rng.int(4);
            else b.writeUInt32LE(INTERESTING_U32[rng.int(INTERESTING_U32.length)]!, 2 + n + 4);
          }
        }
    }
  }
  return b;
}

/** What decoding a frame's payload gave: a short description, or the FrameError's message. */
function decodeOne(f: Frame): { ok: boolean; what: string; bytes: number } {
  try {
    frameVolume(f);
    switch (f.type) {
      case FrameType.Hello: {
        const c = checkHello(f.payload, 'site-a', shared);
        return { ok: c.ok, what: c.ok ? 'hello' : c.code, bytes: 0 };
      }
      case FrameType.Refuse:
        return { ok: true, what: f.payload.toString('utf8').slice(0, 10), bytes: 0 };
      case FrameType.Records: {
        const r = decodeRecordsFrame(f.payload);
        return { ok: true, what: `records ${r.records.length}`, bytes: r.records.reduce((n, x) => n + x.payload.length, 0) };
      }
      case FrameType.PackedRecords: {
        const r = decodePackedRecordsFrame(f.payload);
        return { ok: true, what: `records ${r.records.length}`, bytes: r.records.reduce((n, x) => n + x.payload.length, 0) };
      }
      case FrameType.Ack: return { ok: true, what: JSON.stringify(decodeAck(f.payload)), bytes: 0 };
      case FrameType.Heartbeat: return { ok: true, what: JSON.stringify(decodeHeartbeat(f.payload)), bytes: 0 };
      case FrameType.Resync: return { ok: true, what: JSON.stringify(decodeResync(f.payload)), bytes: 0 };
      case FrameType.HashRequest: return { ok: true, what: JSON.stringify(decodeHashRequest(f.payload)), bytes: 0 };
      case FrameType.HashReply: return { ok: true, what: `hashes ${decodeHashReply(f.payload).count}`, bytes: 0 };
      case FrameType.Hold: return { ok: true, what: JSON.stringify(decodeHold(f.payload)), bytes: 0 };
    }
    throw new Error(`no decoder for frame type ${f.type}`);
  } catch (e) {
    if (e instanceof FrameError) return { ok: false, what: e.message, bytes: 0 };
    throw e;
  }
}

test(`peer frames: random and mutated frames decode or are refused cleanly, in bounded time and memory (seed ${SEED})`, { timeout: 600_000 }, async (t) => {
  const rng = new Rng(SEED);
  const pool = new CompressionPool(1);
  const buffers = new OwnedBuffers(8 << 20);
  const rss0 = process.memoryUsage.rss();
  let peak = rss0;
  const outcomes = { decoded: 0, refused: 0, streamErrors: 0 };
  let at = 'setting up';
  try {
    const all = corpus(rng);
    // Every valid frame decodes as it is.
    for (const f of all) assert.equal(decodeOne(f).ok, true, `corpus frame of type ${f.type}`);
    for (let i = 0; i < CASES; i++) {
      const base = all[rng.int(all.length)]!;
      const kind = rng.int(10);
      let f: Frame;
      if (kind === 0) {
        // Pure noise, as the payload of a frame of any type.
        f = { type: 1 + rng.int(10), flags: 0, payload: randomBytesFrom(rng, rng.int(512)) };
      } else {
        f = { type: rng.chance(0.9) ? base.type : 1 + rng.int(10), flags: 0, payload: mutate(rng, base.payload, all) };
      }
      at = `case ${i}: a ${FrameType[f.type]} frame of ${f.payload.length} bytes (${f.payload.subarray(0, 48).toString('hex')}…)`;
      // Through the frame decoder, in random pieces, after good checksums were written.
      const wire = Buffer.concat(encodeFrame(f.type, f.payload));
      const d = new FrameDecoder();
      let got: Frame | null = null;
      for (let o = 0; o < wire.length && !got;) {
        const n = 1 + rng.int(Math.max(1, wire.length >> 1));
        d.push(wire.subarray(o, o + n));
        o += n;
        got = d.next();
        assert.ok(d.bufferedBytes <= FRAME_HEADER_SIZE + MAX_FRAME_PAYLOAD, 'the decoder holds at most one frame');
      }
      assert.ok(got, 'a frame with good checksums comes out whole');
      assert.deepEqual(got.payload, f.payload);
      const t0 = performance.now();
      const out = decodeOne(got);
      const ms = performance.now() - t0;
      assert.ok(ms < SLOW_MS, `decoding took ${ms.toFixed(0)} ms`);
      assert.ok(out.bytes <= MAX_FRAME_PAYLOAD, `decoded ${out.bytes} bytes`);
      outcomes[out.ok ? 'decoded' : 'refused']++;
      // PackedRecords through the worker pool: the same answer, word for word.
      if (got.type === FrameType.PackedRecords && rng.chance(0.25)) {
        let there: string;
        try {
          const r = await decodePackedRecordsFrameOff(parsePackedRecordsFrame(got.payload), pool, buffers);
          there = `records ${r.records.length}`;
          r.owned?.give();
        } catch (e) {
          assert.ok(e instanceof FrameError, `the pool threw ${(e as Error).stack}`);
          there = e.message;
        }
        assert.equal(there, out.what, 'the pool and the event loop agree');
      }
      // The same bytes with the checksums or header damaged: refused by the frame decoder.
      if (rng.chance(0.2)) {
        const bad = Buffer.from(wire);
        const k = rng.int(Math.min(bad.length, FRAME_HEADER_SIZE + 8));
        bad[k] = bad[k]! ^ (1 << rng.int(8));
        const d2 = new FrameDecoder();
        d2.push(bad);
        try {
          const g = d2.next();
          // (A flipped length may leave it waiting for more bytes: null, never a hang.)
          if (g) decodeOne(g);
        } catch (e) {
          assert.ok(e instanceof FrameError, `the frame decoder threw ${(e as Error).stack}`);
          outcomes.streamErrors++;
        }
      }
      // Bombs of 512 MiB are among the cases: the process never holds one. (What it
      // does grow by is garbage not yet collected and the worker.)
      peak = Math.max(peak, process.memoryUsage.rss());
      assert.ok(peak - rss0 < 256 << 20, `the process grew by ${((peak - rss0) / 2 ** 20).toFixed(0)} MiB`);
    }
    assert.ok(outcomes.refused > CASES / 10 && outcomes.decoded > 0, JSON.stringify(outcomes));
    assert.equal(buffers.out, 0, 'every buffer an unpack took went back, the frame refused or not');
    t.diagnostic(`${CASES} cases: ${outcomes.decoded} decoded, ${outcomes.refused} refused, ${outcomes.streamErrors} damaged streams refused; grew ` +
      `${((peak - rss0) / 2 ** 20).toFixed(0)} MiB`);
  } catch (e) {
    throw new Error(`peer frame fuzz failed at ${at}, seed ${SEED} (replay: OFFSITE_FUZZ_SEED=${SEED} node --test dist/test/unit/peer-frame-fuzz.test.js): ` +
      `${(e as Error).message}`, { cause: e });
  } finally {
    await pool.close();
  }
});
