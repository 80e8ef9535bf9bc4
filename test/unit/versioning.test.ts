// Versions (docs/VERSIONING.md). The peer protocol: the range each node speaks, Hello
// settling on the lower version both speak, a peer outside the range refused with
// what each side speaks and which to upgrade, and the previous release's wire bytes
// read and written exactly. The on-disk formats: each from literal bytes of the
// current version (and of the previous one where it differs), and a newer version
// refused with a message, the files untouched, never taken for damage.
//
// The fixtures are literal bytes on purpose: a change that stops this build reading
// what the previous release wrote must fail here, whatever the encoders now write.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import * as F from '../../src/link/frame.js';
import { checkHello, encodeHelloFrame, negotiate, type HelloVolume } from '../../src/link/hello.js';
import { Journal } from '../../src/journal/journal.js';
import { DirStore } from '../../src/journal/store.js';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { ActivityLog } from '../../src/journal/activity-log.js';
import { IntentRing } from '../../src/journal/intent.js';
import { RoundMarker } from '../../src/sync/round-marker.js';
import { UndoArea } from '../../src/sync/undo.js';
import { readCheckpoint } from '../../src/secondary/replica.js';
import { VolumeIdentity } from '../../src/volume/identity.js';
import { JOURNAL_FOLDER_FILES, VOLUME_FOLDER_FILES, refuseNewerState } from '../../src/node/state-versions.js';
import { NewerFormatError } from '../../src/versioning/format.js';
import type { Disk } from '../../src/journal/write-path.js';
import { tempDir } from '../helpers/run.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const wire = (parts: Buffer[]): Buffer => Buffer.concat(parts);

function decodeOne(bytes: Buffer, d = new F.FrameDecoder()): F.Frame {
  d.push(bytes);
  const f = d.next();
  assert.ok(f, 'a whole frame');
  return f;
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of fs.readdirSync(dir).sort()) out[n] = fs.readFileSync(path.join(dir, n)).toString('hex');
  return out;
}

/** Runs `open`, which must refuse a newer format with `re`, and leave `dir` as it was. */
async function refusedUntouched(dir: string, open: () => Promise<unknown> | unknown, re: RegExp): Promise<void> {
  const before = snapshot(dir);
  await assert.rejects(async () => open(), (e: unknown) => e instanceof NewerFormatError && re.test(e.message) &&
    /a newer release of Offsite wrote it\. Nothing was read or changed/.test(e.message), re.source);
  assert.deepEqual(snapshot(dir), before, 'nothing in the folder changed');
}

// --- the peer protocol -----------------------------------------------------------

test('negotiation: the lower version both speak wins', () => {
  const names = { self: 'site-b', peer: 'site-a' };
  assert.deepEqual(negotiate({ min: 1, max: 1 }, { min: 1, max: 1 }, names), { ok: true, version: 1 });
  assert.deepEqual(negotiate({ min: 1, max: 2 }, { min: 1, max: 1 }, names), { ok: true, version: 1 });
  assert.deepEqual(negotiate({ min: 1, max: 1 }, { min: 1, max: 2 }, names), { ok: true, version: 1 });
  assert.deepEqual(negotiate({ min: 1, max: 2 }, { min: 2, max: 3 }, names), { ok: true, version: 2 });
  assert.deepEqual(negotiate({ min: 2, max: 3 }, { min: 1, max: 2 }, names), { ok: true, version: 2 });
  assert.deepEqual(negotiate({ min: 1, max: 3 }, { min: 1, max: 3 }, names), { ok: true, version: 3 });
});

test('no version in common: refused, saying what each side speaks and which side to upgrade', () => {
  const names = { self: 'site-b', peer: 'site-a' };
  const peerOlder = negotiate({ min: 2, max: 3 }, { min: 1, max: 1 }, names);
  assert.ok(!peerOlder.ok);
  assert.equal(peerOlder.message, 'site-a speaks protocol version 1 and site-b speaks protocol versions 2..3: no version in common. ' +
    'Upgrade site-a to a release that speaks protocol version 2 (site-b has dropped the older versions); releases one apart always share a ' +
      'version (docs/VERSIONING.md)');
  const selfOlder = negotiate({ min: 1, max: 1 }, { min: 2, max: 3 }, names);
  assert.ok(!selfOlder.ok);
  assert.match(selfOlder.message,
    /^site-a speaks protocol versions 2\.\.3 and site-b speaks protocol version 1: no version in common\. Upgrade site-b to a release that speaks protocol version 2 \(site-a has dropped/);
});

// The previous release's Hello (it speaks protocol 1 only), byte for byte: the 20-byte
// header (magic, version 1, type 1, flags 0, length 253, CRC32C of the payload, of the
// header) and the JSON, keys in the order it wrote them.
const OLD_HELLO_JSON = '{"node":"site-a","protocol":1,"codecs":["zstd"],"volumes":[{"name":"db","uuid":"6f1c7a52-3b0e-4c55-9d0a-2f6b8e4d1c3a",' +
  '"size":16777216,"role":"primary","generation":["0011223344556677"],"durableSeq":41,"logBytes":67108864,"round":0,"changedBytes":4096}]}';
const OLD_HELLO = Buffer.concat([hex('4f46504c 01 01 0000 fd000000 6f89f658 b459f68e'), Buffer.from(OLD_HELLO_JSON, 'utf8')]);
const SITE_A_DB: HelloVolume = {
  name: 'db', uuid: '6f1c7a52-3b0e-4c55-9d0a-2f6b8e4d1c3a', size: 16777216, role: 'primary', generation: ['0011223344556677'],
  durableSeq: 41, logBytes: 67108864, round: 0, changedBytes: 4096,
};
const SITE_B_DB: HelloVolume = { ...SITE_A_DB, role: 'secondary', durableSeq: 0, changedBytes: 0 };

/** What the previous release checked of a Hello: frame version 1, JSON keys it knew (strictly), protocol 1. Flags: never looked at. */
function previousReleaseTakes(bytes: Buffer): boolean {
  if (bytes.readUInt8(4) !== 1 || crc32c(bytes.subarray(0, 16)) !== bytes.readUInt32LE(16)) return false;
  const h = JSON.parse(bytes.subarray(20).toString('utf8')) as Record<string, unknown> & { volumes: Array<Record<string, unknown>> };
  const known = (o: Record<string, unknown>, keys: string[]): boolean => Object.keys(o).every((k) => keys.includes(k));
  return known(h, ['node', 'protocol', 'codecs', 'volumes']) && h.protocol === 1 &&
    h.volumes.every((v) => known(v, ['name', 'uuid', 'size', 'role', 'generation', 'durableSeq', 'logBytes', 'round', 'changedBytes']));
}

test('the previous release\'s Hello, from fixed bytes: read, and a node speaking 1 writes the same bytes', () => {
  const f = decodeOne(OLD_HELLO);
  assert.equal(f.type, F.FrameType.Hello);
  assert.equal(f.version, 1);
  assert.equal(f.flags, 0);
  const r = checkHello(f.payload, 'site-a', [SITE_B_DB], { frame: f, speaks: F.PROTOCOL_RANGE, self: 'site-b' });
  assert.ok(r.ok, r.ok ? '' : r.message);
  assert.equal(r.protocol, 1);
  assert.equal(r.pairs[0]!.remote.durableSeq, 41);
  // A node speaking 1 only says Hello in exactly the previous release's bytes; this
  // build (1..4) differs in the flags alone, which the previous release never reads.
  assert.deepEqual(wire(encodeHelloFrame({ node: 'site-a', codecs: ['zstd'], volumes: [SITE_A_DB] }, { min: 1, max: 1 })), OLD_HELLO);
  assert.ok(previousReleaseTakes(OLD_HELLO));
  assert.deepEqual(F.PROTOCOL_RANGE, { min: 1, max: 4 });
  assert.ok(previousReleaseTakes(wire(encodeHelloFrame({ node: 'site-a', codecs: ['zstd'], volumes: [SITE_A_DB] }))));
});

test('a node speaking 1..2 sends the previous release a Hello it reads as its own; both settle on 1', () => {
  const bytes = wire(encodeHelloFrame({ node: 'site-a', codecs: ['zstd'], volumes: [SITE_A_DB] }, { min: 1, max: 2 }));
  // Only the flags (the highest version, 2) and the header's CRC differ.
  assert.deepEqual(bytes, Buffer.concat([hex('4f46504c 01 01 0200 fd000000 6f89f658 0fd8b61d'), Buffer.from(OLD_HELLO_JSON, 'utf8')]));
  assert.ok(previousReleaseTakes(bytes), 'the previous release takes it');
  const f = decodeOne(bytes);
  // A node speaking 1 only settles on 1 with it; one speaking 1..2 on 2.
  const one = checkHello(f.payload, 'site-a', [SITE_B_DB], { frame: f, speaks: { min: 1, max: 1 }, self: 'site-b' });
  assert.ok(one.ok && one.protocol === 1);
  const two = checkHello(f.payload, 'site-a', [SITE_B_DB], { frame: f, speaks: { min: 1, max: 2 }, self: 'site-b' });
  assert.ok(two.ok && two.protocol === 2);
  // And the previous release's Hello to a node speaking 1..2: version 1.
  const old = decodeOne(OLD_HELLO, new F.FrameDecoder({ min: 1, max: 2 }));
  const back = checkHello(old.payload, 'site-a', [SITE_B_DB], { frame: old, speaks: { min: 1, max: 2 }, self: 'site-b' });
  assert.ok(back.ok && back.protocol === 1);
});

test('frames after Hello carry the agreed version; at version 1 they are the previous release\'s bytes', () => {
  // An ack for db at 42 and a heartbeat at 1000 ms, as the previous release wrote them.
  const OLD_ACK = hex('4f46504c 01 04 0000 0c000000 be586142 96688230  0200 6462 2a00000000000000');
  const OLD_BEAT = hex('4f46504c 01 05 0000 08000000 c7fb1755 204447aa  e803000000000000');
  assert.deepEqual(wire(F.atVersion(F.encodeAck('db', 42), 1)), OLD_ACK);
  assert.deepEqual(wire(F.atVersion(F.encodeHeartbeat({ clock: 1000 }), 1)), OLD_BEAT);
  const d = new F.FrameDecoder();
  d.settle(1);
  assert.deepEqual(F.decodeAck(decodeOne(OLD_ACK, d).payload), { volume: 'db', seq: 42 });
  assert.deepEqual(F.decodeHeartbeat(decodeOne(OLD_BEAT, d).payload), { clock: 1000 });
  // A link that agreed on 2 (between two nodes speaking 1..2): the same frame at version 2.
  const ackV2 = wire(F.atVersion(F.encodeAck('db', 42), 2));
  assert.deepEqual(ackV2, hex('4f46504c 02 04 0000 0c000000 be586142 c6141063  0200 6462 2a00000000000000'));
  const d2 = new F.FrameDecoder({ min: 1, max: 2 });
  d2.settle(2);
  assert.equal(decodeOne(ackV2, d2).version, 2);
  // The previous release (1 only) refuses version 2; a link that agreed on 1 refuses any other.
  assert.throws(() => decodeOne(ackV2, new F.FrameDecoder({ min: 1, max: 1 })),
    (e: unknown) => e instanceof F.FrameError && e.message === 'peer speaks protocol version 2, this node speaks 1');
  const d1 = new F.FrameDecoder({ min: 1, max: 2 });
  d1.settle(1);
  assert.throws(() => decodeOne(ackV2, d1), /peer sent a frame of protocol version 2 on a link that agreed on version 1/);
  // Hello and Refuse are never restamped, and are taken at any version.
  const hello = F.encodeFrame(F.FrameType.Hello, Buffer.from('{}'), 4, 3);
  assert.equal(F.atVersion(hello, 1)[0]!.readUInt8(4), 3);
  const refuse = wire(F.encodeFrame(F.FrameType.Refuse, Buffer.from('{"code":"version","message":"m"}'), 0, 7));
  assert.equal(decodeOne(refuse).version, 7);
});

test('protocol version 2: MapRequest and MapReply from fixed bytes; refused on a link at version 1; bad maps are named errors', () => {
  // Where db's replica holds holes in 1 TiB from 64 KiB; the answer: two holes, the map exact over all of it.
  const REQ = hex('4f46504c 02 0b 0000 14000000 507368fe 8330fbbd  0200 6462 0000010000000000 0000000000010000');
  const REPLY = hex('4f46504c 02 0c 0000 38000000 1b51bdb3 60f63d30  0200 6462 0000010000000000 0000000000010000 02000000' +
    ' 0000010000000000 0000100000000000  0000000080000000 0010000000000000');
  const d2 = new F.FrameDecoder();
  d2.settle(2);
  const req = decodeOne(REQ, d2);
  assert.deepEqual(F.decodeMapRequest(req.payload), { volume: 'db', offset: 65536, length: 2 ** 40 });
  assert.deepEqual(wire(F.atVersion(F.encodeMapRequest({ volume: 'db', offset: 65536, length: 2 ** 40 }), 2)), REQ);
  const reply = { volume: 'db', offset: 65536, covered: 2 ** 40, holes: [{ offset: 65536, length: 1 << 20 }, { offset: 2 ** 39, length: 4096 }] };
  const d3 = new F.FrameDecoder();
  d3.settle(2);
  assert.deepEqual(F.decodeMapReply(decodeOne(REPLY, d3).payload), reply);
  assert.deepEqual(wire(F.atVersion(F.encodeMapReply(reply), 2)), REPLY);
  // At version 1 (a link with the previous release) the frame is refused by name.
  const d1 = new F.FrameDecoder();
  d1.settle(1);
  assert.throws(() => decodeOne(wire(F.atVersion(F.encodeMapRequest({ volume: 'db', offset: 0, length: 1 }), 1)), d1),
    /peer sent a MapRequest frame, which needs protocol version 2, on a link at version 1/);
  // Holes out of order, outside the map, empty, or too many: named errors.
  const payload = (r: typeof reply): Buffer => F.encodeMapReply(r)[1]!;
  const bad: Array<[typeof reply, RegExp]> = [
    [{ ...reply, holes: [reply.holes[1]!, reply.holes[0]!] }, /hole 1 .* out of order, empty or outside the map/],
    [{ ...reply, covered: 4096 }, /hole 0 .* outside the map/],
    [{ ...reply, holes: [{ offset: 65536, length: 0 }] }, /hole 0 .* empty/],
    [{ ...reply, holes: Array.from({ length: F.MAX_MAP_HOLES + 1 }, (_, i) => ({ offset: 65536 + i * 8192, length: 4096 })) }, /at most 4096/],
  ];
  for (const [r, why] of bad) assert.throws(() => F.decodeMapReply(payload(r)), (e: unknown) => e instanceof F.FrameError && why.test(e.message));
  assert.throws(() => F.decodeMapRequest(F.encodeMapRequest({ volume: 'db', offset: 0, length: 0 })[1]!), /map request for 0 bytes/);
});

test('a Hello from a node that speaks only newer versions is read and refused with what to do', () => {
  const newer = JSON.parse(OLD_HELLO_JSON) as Record<string, unknown>;
  newer.protocol = 5;
  const f = decodeOne(wire(F.encodeFrame(F.FrameType.Hello, Buffer.from(JSON.stringify(newer)), 6, 5)));
  assert.deepEqual([f.version, f.flags], [5, 6]);
  const r = checkHello(f.payload, 'site-a', [SITE_B_DB], { frame: f, self: 'site-b' });
  assert.ok(!r.ok);
  assert.equal(r.code, 'version');
  assert.match(r.message,
    /^site-a speaks protocol versions 5\.\.6 and site-b speaks protocol versions 1\.\.4: no version in common\. Upgrade site-b to a release that speaks protocol version 5/);
});

test('a Hello with a key this build does not know is read (a later release may add one); inconsistent ranges are bad-hello', () => {
  const withMore = OLD_HELLO_JSON.replace('"codecs"', '"later":{"x":1},"codecs"').replace('"round":0', '"round":0,"laterToo":7');
  const r = checkHello(Buffer.from(withMore), 'site-a', [SITE_B_DB], { frame: { version: 1, flags: 0 } });
  assert.ok(r.ok, r.ok ? '' : r.message);
  const refused = (frame: { version: number; flags: number }, json = OLD_HELLO_JSON): string => {
    const c = checkHello(Buffer.from(json), 'site-a', [SITE_B_DB], { frame });
    return c.ok ? 'accepted' : `${c.code}: ${c.message}`;
  };
  assert.match(refused({ version: 2, flags: 1 }, OLD_HELLO_JSON.replace('"protocol":1', '"protocol":2')), /^bad-hello: .*speaks protocol versions 2\.\.1/);
  assert.match(refused({ version: 2, flags: 0 }), /^bad-hello: the peer's Hello says protocol 1 but its frame says version 2/);
});

// --- on disk ---------------------------------------------------------------------

// The previous release's journal: segment 1 (header version 1: base seq 1, created
// 0x18f0000000, base epoch 1), a 4-byte write of "abcd" at 0x1000 and the barrier
// closing epoch 1; its release point (1) and redo point (2).
const V1_SEGMENT = hex(`
  4f4646534a534547 01000000 40000000 0100000000000000 000000f018000000 0100000000000000
  0000000000000000000000000000000000000000 088221b7
  4f464a52 01 01 0000 0100000000000000 0100000000000000 0010000000000000 04000000 04000000
  010000f018000000 310ac892 1e50ea6f 61626364
  4f464a52 01 04 0000 0200000000000000 0100000000000000 0000000000000000 00000000 00000000
  020000f018000000 00000000 9bc9997e
`);
const RELEASED_1 = hex('4f46465352454c31 0100000000000000 8f154abc'); // "OFFSREL1", 1
const APPLIED_2 = hex('4f46465341504c31 0200000000000000 eb4e4bb1'); // "OFFSAPL1", 2

test('journal folder: the previous release\'s segment and counters open; a newer segment or counter is refused, nothing touched', async () => {
  const dir = tempDir('ver-journal');
  fs.writeFileSync(path.join(dir, '00000000000000000001.seg'), V1_SEGMENT);
  fs.writeFileSync(path.join(dir, 'released'), RELEASED_1);
  fs.writeFileSync(path.join(dir, 'applied'), APPLIED_2);
  const j = new Journal({ store: new DirStore(dir), capacity: 1 << 20, segmentSize: 4096 });
  const report = await j.recover();
  assert.deepEqual([report.records, report.damaged, report.unknownLoss, j.lastSeq, j.released, j.appliedOnDisk], [2, false, false, 2, 1, 2]);
  j.close();

  // A segment header of version 3, checksum and all (as a newer release would write it).
  const v3 = hex(`4f4646534a534547 03000000 40000000 0100000000000000 000000f018000000 0100000000000000
    0000000000000000000000000000000000000000 ad1d10fa`);
  const newer = tempDir('ver-journal3');
  fs.writeFileSync(path.join(newer, '00000000000000000001.seg'), Buffer.concat([v3, V1_SEGMENT.subarray(64)]));
  fs.writeFileSync(path.join(newer, 'released'), RELEASED_1);
  await refusedUntouched(newer, () => new Journal({ store: new DirStore(newer), capacity: 1 << 20 }).recover(),
    /^00000000000000000001\.seg: this journal segment is format version 3, and this build reads versions 1 and 2/);
  await refusedUntouched(newer, () => refuseNewerState(newer, new DirStore(newer), JOURNAL_FOLDER_FILES),
    new RegExp(`^${path.join(newer, '00000000000000000001.seg')}: this journal segment is format version 3`));

  // A release point of version 2 ("OFFSREL2"): refused, not read as 0.
  const rel2 = tempDir('ver-rel2');
  fs.writeFileSync(path.join(rel2, '00000000000000000001.seg'), V1_SEGMENT);
  fs.writeFileSync(path.join(rel2, 'released'), hex('4f46465352454c32 0100000000000000 a619e5a5'));
  await refusedUntouched(rel2, () => new Journal({ store: new DirStore(rel2), capacity: 1 << 20 }).recover(),
    /^released: this release point is format version 2, and this build reads version 1/);
  // A damaged counter is still what it was: read as 0.
  fs.writeFileSync(path.join(rel2, 'released'), hex('4f46465352454c31 0100000000000000 00000000'));
  const again = new Journal({ store: new DirStore(rel2), capacity: 1 << 20 });
  await again.recover();
  assert.equal(again.released, 0);
  again.close();
});

// Dirty bitmap, version 1: header (magic, version, region size 64 KiB, volume size
// 1 MiB, CRC32C of bytes 0..24), zeros to 4096, then one page: regions 3 and 9 set.
function bitmapFile(version: 1 | 2): Buffer {
  const head = version === 1
    ? hex('4f464653424d4150 01000000 00000100 0000100000000000 e85879e4')
    : hex('4f464653424d4150 02000000 00000100 0000100000000000 1b3881f7');
  const page = Buffer.alloc(4096);
  page[0] = 0x08;
  page[1] = 0x02;
  hex('499dcc6c').copy(page, 4092);
  return Buffer.concat([head, Buffer.alloc(4096 - head.length), page]);
}

test('dirty bitmap: version 1 from literal bytes; version 2 refused, not replaced by an all-dirty one', async () => {
  const dir = tempDir('ver-bitmap');
  fs.writeFileSync(path.join(dir, 'dirty.bitmap'), bitmapFile(1));
  const { bitmap, notes } = await DirtyBitmap.open(new DirStore(dir), 1 << 20, 65536);
  assert.deepEqual(notes, []);
  assert.deepEqual([bitmap.count, bitmap.isSet(3), bitmap.isSet(9), bitmap.isSet(4)], [2, true, true, false]);
  bitmap.close();
  fs.writeFileSync(path.join(dir, 'dirty.bitmap'), bitmapFile(2));
  await refusedUntouched(dir, () => DirtyBitmap.open(new DirStore(dir), 1 << 20, 65536),
    /^dirty\.bitmap: this dirty bitmap is format version 2, and this build reads version 1/);
});

// Activity log slot, version 1: "OFFSACT1", version, extent size 4096 KiB, generation
// 5, boot id "boot-a" (36 bytes), 2 extents (2 and 9), CRC32C.
const ACTIVITY_V1 = hex(`4f46465341435431 01000000 00100000 0500000000000000
  626f6f742d61 ${'00'.repeat(30)} 02000000 0200000000000000 0900000000000000 7f9bd44b`);
const ACTIVITY_V2 = hex(`4f46465341435431 02000000 00100000 0500000000000000
  626f6f742d61 ${'00'.repeat(30)} 02000000 0200000000000000 0900000000000000 c54ca001`);

test('activity log: a version 1 slot from literal bytes makes its extents suspect after a reboot; version 2 refused', async () => {
  const dir = tempDir('ver-activity');
  fs.writeFileSync(path.join(dir, 'activity.0'), ACTIVITY_V1);
  const opts = { store: new DirStore(dir), extentSize: 4 << 20, slots: 1024, bootId: () => 'boot-b' };
  const { suspect } = await ActivityLog.open(opts);
  assert.deepEqual(suspect, [{ offset: 8 << 20, length: 4 << 20 }, { offset: 36 << 20, length: 4 << 20 }]);
  fs.writeFileSync(path.join(dir, 'activity.0'), ACTIVITY_V1);
  fs.writeFileSync(path.join(dir, 'activity.1'), ACTIVITY_V2);
  await refusedUntouched(dir, () => ActivityLog.open(opts), /^activity\.1: this activity log is format version 2/);
});

test('intent ring: slots of the previous release (bytes 28..32 zero) and of version 1 are read; a version 2 slot is refused', async () => {
  const dir = tempDir('ver-intent');
  const slot5 = hex('4f46494e 70ff0589 0500000000000000 0020000000000000 00100000 00000000'); // seq 5, 0x2000+4096, previous release
  const slot6 = hex('4f46494e b75e2b4e 0600000000000000 0000010000000000 00020000 01000000'); // seq 6, 0x10000+512, version 1
  const slot7 = hex('4f46494e 70e31c8e 0700000000000000 0000000000000000 00100000 02000000'); // seq 7, version 2
  // A ring of 4 slots: seq s in slot s % 4; after(3) asks for seqs 4..6.
  fs.writeFileSync(path.join(dir, 'intent'), Buffer.concat([Buffer.alloc(32), slot5, slot6, Buffer.alloc(32)]));
  const ring = IntentRing.open(new DirStore(dir), 4)!;
  assert.deepEqual(await ring.after(3), [{ seq: 5, offset: 0x2000, length: 4096 }, { seq: 6, offset: 0x10000, length: 512 }]);
  ring.close();
  fs.writeFileSync(path.join(dir, 'intent'), Buffer.concat([Buffer.alloc(32), slot5, slot6, slot7]));
  await refusedUntouched(dir, async () => {
    const r = IntentRing.open(new DirStore(dir), 4)!;
    try {
      return await r.after(3);
    } finally {
      r.close();
    }
  }, /^intent: this intent ring is format version 2/);
  // What this build writes: version 1 in bytes 28..32.
  const w = IntentRing.open(new DirStore(dir), 4)!;
  w.recordAll([{ seq: 6, offset: 0x10000, length: 512 }]);
  w.close();
  assert.deepEqual(fs.readFileSync(path.join(dir, 'intent')).subarray(64, 96), slot6);
});

test('round marker and undo area: version 1 from literal bytes; version 2 refused, the image before the round kept', async () => {
  const dir = tempDir('ver-round');
  fs.writeFileSync(path.join(dir, 'round'), hex('4f464653524e4431 2a00000000000000 01000000 04187a07'));
  assert.deepEqual(await new RoundMarker(new DirStore(dir)).read(), { startSeq: 42, initial: true });
  fs.writeFileSync(path.join(dir, 'round'), hex('4f464653524e4432 2a00000000000000 01000000 ab500c56'));
  await refusedUntouched(dir, () => new RoundMarker(new DirStore(dir)).read(), /^round: this resync round marker is format version 2/);

  // Undo area, version 1: region size 4096, volume 12288; one entry: region 1, 4096 bytes of 0xab.
  const undo = tempDir('ver-undo');
  const entry = Buffer.concat([hex('0100000000000000 93413794 3f32c2ce'), Buffer.alloc(4096, 0xab)]);
  fs.writeFileSync(path.join(undo, 'undo'), Buffer.concat([hex('4f464653554e444f 01000000 00100000 0030000000000000 00000000 5adb3fd1'), entry]));
  const disk = { size: 12288, read: async (_o: number, into: Buffer, at: number, l: number) => { into.fill(0x11, at, at + l); } } as unknown as Disk;
  const u = await UndoArea.open(new DirStore(undo), 4096, 12288);
  assert.equal(u.regions, 1);
  const old = Buffer.alloc(12288);
  await u.readOld(disk, 0, old, 0, 12288);
  assert.ok(old.subarray(4096, 8192).every((b) => b === 0xab) && old.subarray(0, 4096).every((b) => b === 0x11));
  u.close();
  fs.writeFileSync(path.join(undo, 'undo'), Buffer.concat([hex('4f464653554e444f 02000000 00100000 0030000000000000 00000000 9dc3fb88'), entry]));
  await refusedUntouched(undo, () => UndoArea.open(new DirStore(undo), 4096, 12288), /^undo: this resync undo area is format version 2/);
});

test('checkpoint file: the previous release\'s (no version), version 1 and version 2 (a past point) read; version 3 refused', async () => {
  const dir = tempDir('ver-checkpoint');
  const want = { label: 'nightly', createdAt: 1700000000000, holdUntil: null, appliedSeq: 42, ownedByDrill: false };
  fs.writeFileSync(path.join(dir, 'checkpoint'), '{"label":"nightly","createdAt":1700000000000,"holdUntil":null,"appliedSeq":42,"ownedByDrill":false}\n');
  assert.deepEqual(await readCheckpoint(new DirStore(dir)), want);
  fs.writeFileSync(path.join(dir, 'checkpoint'),
    '{"version":1,"label":"nightly","createdAt":1700000000000,"holdUntil":null,"appliedSeq":42,"ownedByDrill":false}\n');
  assert.deepEqual(await readCheckpoint(new DirStore(dir)), want);
  // Version 2: a checkpoint of a past point of the history (docs/HISTORY.md).
  fs.writeFileSync(path.join(dir, 'checkpoint'), '{"version":2,"label":"before","createdAt":1700000000000,"holdUntil":null,"appliedSeq":40,' +
    '"ownedByDrill":false,"point":{"seq":40,"time":1699999990000}}\n');
  assert.deepEqual(await readCheckpoint(new DirStore(dir)),
    { label: 'before', createdAt: 1700000000000, holdUntil: null, appliedSeq: 40, ownedByDrill: false, point: { seq: 40, time: 1699999990000 } });
  fs.writeFileSync(path.join(dir, 'checkpoint'), '{"version":3,"label":"nightly","createdAt":1700000000000,"frozenAt":{"seq":42}}\n');
  await refusedUntouched(dir, () => readCheckpoint(new DirStore(dir)), /^checkpoint: this checkpoint file is format version 3/);
});

test('identity.json: version 1 reads; version 2 is refused as newer, not as malformed', async () => {
  const dir = tempDir('ver-identity');
  fs.writeFileSync(path.join(dir, 'identity.json'),
    '{\n  "version": 1,\n  "uuid": "6f1c7a52-3b0e-4c55-9d0a-2f6b8e4d1c3a",\n  "generations": [\n    "0011223344556677"\n  ],\n  "shared": true\n}\n');
  const id = VolumeIdentity.open(dir, 'secondary');
  assert.deepEqual([id.uuid, id.current, id.shared], ['6f1c7a52-3b0e-4c55-9d0a-2f6b8e4d1c3a', '0011223344556677', true]);
  fs.writeFileSync(path.join(dir, 'identity.json'), '{"version":2,"uuid":"6f1c7a52-3b0e-4c55-9d0a-2f6b8e4d1c3a","generations":[],"epochs":[]}\n');
  await refusedUntouched(dir, () => VolumeIdentity.open(dir, 'primary'),
    new RegExp(`^${path.join(dir, 'identity.json')}: this volume identity is format version 2, and this build reads version 1`));
});

test('a volume folder holding one newer file is refused before anything is opened, by its path', async () => {
  const dir = tempDir('ver-volume');
  fs.writeFileSync(path.join(dir, 'dirty.bitmap'), bitmapFile(1));
  fs.writeFileSync(path.join(dir, 'activity.0'), ACTIVITY_V1);
  fs.writeFileSync(path.join(dir, 'round'), hex('4f464653524e4431 2a00000000000000 01000000 04187a07'));
  fs.writeFileSync(path.join(dir, 'checkpoint'), '{"label":"nightly","createdAt":1700000000000,"holdUntil":null,"appliedSeq":42}\n');
  fs.writeFileSync(path.join(dir, 'synced'), 'the first sync of this replica is complete\n');
  await refuseNewerState(dir, new DirStore(dir), VOLUME_FOLDER_FILES); // all current: nothing to say
  fs.writeFileSync(path.join(dir, 'activity.1'), ACTIVITY_V2);
  await refusedUntouched(dir, () => refuseNewerState(dir, new DirStore(dir), VOLUME_FOLDER_FILES),
    new RegExp(`^${path.join(dir, 'activity.1')}: this activity log is format version 2.*docs/VERSIONING\\.md \\("Going back a release"\\)`));
});
