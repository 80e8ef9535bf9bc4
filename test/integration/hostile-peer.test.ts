// A hostile peer (issue 15, items 3 and 4). Two real daemons replicate `db` (site-a
// primary, site-b secondary); each also pairs one volume with a third node,
// "mallory", whose key both pin. Mallory is a test double speaking the real protocol
// with that key. It sends (a) a zstd bomb, a PackedRecords frame for its own volume
// whose first zstd frame declares 2 KiB and is followed by 16 KiB of RLE blocks (512
// MiB), and (b) frames of every kind for `db`, the other pair's volume. Each is
// refused, its link closed with a log line naming mallory, the frame and the volume;
// site-b's memory stays flat and its event loop free; and site-a and site-b go on as if
// mallory did not exist: their link never drops, and the replica matches.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compress } from 'zstd-napi';
import { RecordKind } from '../../src/journal/record.js';
import { FrameType, encodeAck, encodeFrame, encodeHashReply, encodeHashRequest, encodeHold, encodeResync } from '../../src/link/frame.js';
import type { Hello } from '../../src/link/hello.js';
import { ensureIdentity, type Identity } from '../../src/link/identity.js';
import { encodeRecordsFrame, recordsBody } from '../../src/link/records-frame.js';
import { CODEC_ZSTD } from '../../src/compress/codec.js';
import { OFFSITE_BIN, TestDaemon, freePort, statusOf } from '../helpers/daemon.js';
import { HostilePeer, packedPayload, zstdBomb } from '../helpers/hostile-peer.js';
import { must, sleep, tempDir } from '../helpers/run.js';
import { assertIdentical } from '../helpers/images.js';

interface Three {
  a: TestDaemon;
  b: TestDaemon;
  mallory: Identity;
  fp: { a: string; b: string };
  links: { a: number; b: number };
  root: string;
}

/** site-a and site-b pair db; site-a pairs ma and site-b pairs mb with mallory (mallory "primary" of both). */
async function startThree(): Promise<Three> {
  const root = tempDir('hostile');
  const mallory = (await ensureIdentity(path.join(root, 'mallory'), 'mallory')).identity;
  const [linkA, linkB] = [await freePort(), await freePort()];
  const yaml = (node: string, peer: string, myLink: number, peerLink: number, role: string, own: string) =>
    (ports: { nbd: number; api: number }): string => `node: ${node}
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${myLink}
api: 127.0.0.1:${ports.api}
peers:
  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FINGERPRINT" }
  mallory: { address: "127.0.0.1:9", fingerprint: "${mallory.fingerprint}" }
volumes:
  db: { path: ./db.img, size: 64MiB, role: ${role}, peer: ${peer}, journal: 256MiB }
  ${own}: { path: ./${own}.img, size: 16MiB, role: secondary, peer: mallory, journal: 64MiB }
`;
  fs.mkdirSync(path.join(root, 'a'));
  fs.mkdirSync(path.join(root, 'b'));
  const a = await TestDaemon.create({
    dir: path.join(root, 'a'), node: 'site-a', noStart: true, yaml: yaml('site-a', 'site-b', linkA, linkB, 'primary', 'ma'),
  });
  const b = await TestDaemon.create({
    dir: path.join(root, 'b'), node: 'site-b', noStart: true, yaml: yaml('site-b', 'site-a', linkB, linkA, 'secondary', 'mb'),
  });
  const fp = async (d: TestDaemon): Promise<string> => (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!;
  const [fa, fb] = [await fp(a), await fp(b)];
  fs.writeFileSync(a.configFile, fs.readFileSync(a.configFile, 'utf8').replace('FINGERPRINT', fb));
  fs.writeFileSync(b.configFile, fs.readFileSync(b.configFile, 'utf8').replace('FINGERPRINT', fa));
  await b.start();
  await a.start();
  return { a, b, mallory, fp: { a: fa, b: fb }, links: { a: linkA, b: linkB }, root };
}

/** db drained: nothing unacked at site-a, the link up, site-b's replica consistent. */
async function dbDrained(t: Three, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await statusOf(t.a).catch(() => null))?.volumes.find((v) => v.name === 'db') as
      { link: string; backlogBytes: number; resyncing?: boolean } | undefined;
    const r = (await statusOf(t.b).catch(() => null))?.volumes.find((v) => v.name === 'db') as
      { backlogBytes: number; consistent: boolean; resyncing?: boolean } | undefined;
    if (s && r && s.link === 'connected' && s.backlogBytes === 0 && s.resyncing !== true && r.resyncing !== true && r.consistent) return;
    if (Date.now() > deadline) {
      throw new Error(`db not drained after ${timeoutMs} ms: ${JSON.stringify(s)} ${JSON.stringify(r)}\n${t.a.log.slice(-3000)}\n${t.b.log.slice(-3000)}`);
    }
    await sleep(200);
  }
}

function helloOf(volume: string): Hello {
  return {
    node: 'mallory', protocol: 1, codecs: ['zstd'],
    volumes: [{
      name: volume, uuid: '6f0f3c52-1f1e-4c47-9d44-0d6f6d0c2a11', size: 16 << 20, role: 'primary', generation: ['00112233aabbccdd'],
      durableSeq: 0, logBytes: 1 << 30, round: 0, changedBytes: 0,
    }],
  };
}

function rssOf(d: TestDaemon): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${d.pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

const closes = (d: TestDaemon, peer: string): number => d.log.split('\n').filter((l) => l.includes(`link to ${peer} closed`)).length;

describe('a paired peer that sends a zstd bomb or another pair\'s frames', { timeout: 300_000 }, () => {
  let t: Three;
  let closesA = 0;
  let closesB = 0;
  let body: Buffer;
  const toB = (volume = 'mb'): Promise<HostilePeer> =>
    HostilePeer.connect({ identity: t.mallory, to: { name: 'site-b', fingerprint: t.fp.b }, port: t.links.b, hello: helloOf(volume) });
  const toA = (): Promise<HostilePeer> =>
    HostilePeer.connect({ identity: t.mallory, to: { name: 'site-a', fingerprint: t.fp.a }, port: t.links.a, hello: helloOf('ma') });

  before(async () => {
    t = await startThree();
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4M', '-c', 'flush', t.a.uri('db')]);
    await dbDrained(t);
    closesA = closes(t.a, 'site-b');
    closesB = closes(t.b, 'site-a');
    body = recordsBody([{
      kind: RecordKind.Write, flags: 0, seq: 1, epoch: 1, offset: 0, length: 2048 - 56, time: Date.now(), payload: Buffer.alloc(2048 - 56, 1),
    }]);
  });

  after(async () => {
    await t.a.stop();
    await t.b.stop();
    if (!process.env.OFFSITE_KEEP_DIRS) fs.rmSync(t.root, { recursive: true, force: true });
  });

  test('(a) a multi-frame zstd bomb for its own volume: refused unopened, memory flat, the event loop free', async () => {
    // 2 KiB declared, one good frame of 2 KiB, then 16 KiB that decompress to 512 MiB. Three times.
    const bomb = packedPayload('mb', CODEC_ZSTD, body.length, Buffer.concat([compress(body), zstdBomb()]));
    const rss0 = rssOf(t.b);
    let peakRss = rss0;
    let slowest = 0;
    for (let i = 0; i < 3; i++) {
      const m = await toB();
      await sleep(200); // (the Hello taken, the replica attached)
      m.send(encodeFrame(FrameType.PackedRecords, bomb));
      // site-b's API answers all along: its event loop never waits on the bomb.
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        const t0 = Date.now();
        await statusOf(t.b);
        slowest = Math.max(slowest, Date.now() - t0);
        peakRss = Math.max(peakRss, rssOf(t.b));
        await sleep(50);
      }
      assert.ok(await m.closedWithin(5000), 'site-b closes the bomb\'s link');
    }
    assert.ok(peakRss - rss0 < 64 << 20, `site-b grew from ${(rss0 / 2 ** 20).toFixed(0)} MiB to ${(peakRss / 2 ** 20).toFixed(0)} MiB on the bomb`);
    assert.ok(slowest < 1000, `site-b's API took ${slowest} ms to answer during the bomb`);
    assert.match(t.b.log,
      /link to mallory closed: mallory sent a bad frame: PackedRecords frame for mb holds 16390 bytes after its zstd frame \(one frame, nothing after it\)/);
  });

  test('(b) frames for the other pair\'s volume, of every kind: each closes the link with the peer, the frame and the volume named', async () => {
    // To site-b (db's secondary): a hash request (reading the replica), a resync
    // (jamming it), records raw and packed. To site-a (db's primary): an ack past
    // everything, a hold, a hash reply. And a frame for a volume neither node has.
    const packedDb = packedPayload('db', CODEC_ZSTD, body.length, compress(body));
    const probes: Array<{ to: () => Promise<HostilePeer>; at: TestDaemon; frame: Buffer[]; type: string; volume?: string; whose?: RegExp }> = [
      { to: toB, at: t.b, frame: encodeHashRequest({ volume: 'db', regionSize: 65536, first: 0, count: 16 }), type: 'HashRequest' },
      { to: toB, at: t.b, frame: encodeResync('db', 1), type: 'Resync' },
      {
        to: toB, at: t.b,
        frame: encodeRecordsFrame('db', [{
          kind: RecordKind.Write, flags: 0, seq: 1_000_000, epoch: 1, offset: 0, length: 4096, time: Date.now(), payload: randomBytes(4096),
        }]),
        type: 'Records',
      },
      { to: toB, at: t.b, frame: encodeFrame(FrameType.PackedRecords, packedDb), type: 'PackedRecords' },
      { to: toA, at: t.a, frame: encodeAck('db', 1_000_000), type: 'Ack' },
      { to: toA, at: t.a, frame: encodeHold('db', 0, true), type: 'Hold' },
      { to: toA, at: t.a, frame: encodeHashReply({ volume: 'db', regionSize: 65536, first: 0 }, [randomBytes(32)]), type: 'HashReply' },
      {
        to: toB, at: t.b, frame: encodeHashRequest({ volume: 'nope', regionSize: 65536, first: 0, count: 1 }), type: 'HashRequest',
        volume: 'nope', whose: /which is not a volume of this node/,
      },
    ];
    for (const p of probes) {
      const m = await p.to();
      await sleep(200);
      m.send(p.frame);
      const closed = await m.closedWithin(5000);
      assert.equal(await m.waitFor(FrameType.HashReply, 0), null, 'no hashes of db reach mallory');
      assert.ok(closed, `${p.type} for db: the link is closed`);
      const volume = p.volume ?? 'db';
      const whose = p.whose ?? new RegExp(`which is paired with ${p.at === t.a ? 'site-b' : 'site-a'}, not mallory \\(volumes\\.db\\.peer\\)`);
      const line = p.at.log.split('\n').find((l) => l.includes(`mallory sent a ${p.type} frame for volume ${volume}`));
      assert.ok(line, `${p.at === t.a ? 'site-a' : 'site-b'} says mallory sent a ${p.type} frame for volume ${volume}:\n${p.at.log.slice(-2000)}`);
      assert.match(line, /"level":50/, 'at error level');
      assert.match(line, /link to mallory closed/);
      assert.match(line, whose);
    }
  });

  test('the real pair never noticed: its link did not drop, db keeps replicating, the replica is the primary\'s image', async () => {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x6b 1M 6M', '-c', 'write -P 0x11 30M 1M', '-c', 'flush', t.a.uri('db')]);
    await dbDrained(t);
    assert.equal(closes(t.a, 'site-b'), closesA, `site-a's link to site-b dropped:\n${t.a.log.slice(-3000)}`);
    assert.equal(closes(t.b, 'site-a'), closesB, `site-b's link to site-a dropped:\n${t.b.log.slice(-3000)}`);
    assert.ok(t.a.alive && t.b.alive);
    for (const d of [t.a, t.b]) assert.doesNotMatch(d.log, /TypeError|RangeError|uncaught/i);
    assert.equal(await t.a.stop(), 0);
    assert.equal(await t.b.stop(), 0);
    await assertIdentical(path.join(t.a.dir, 'db.img'), path.join(t.b.dir, 'db.img'));
  });
});
