// Protocol versions against a real daemon (docs/VERSIONING.md). A peer double, "future",
// holds a paired key and speaks the real protocol, claiming other version ranges:
// - 1 only (the previous release): the daemon (1..4) sends its Hello at version 1 with
//   its highest, 4, in the flags and the previous release's JSON keys, settles on 1,
//   and the link comes up; a frame at version 2 after that is refused;
// - 2..5: the link settles on 4, the daemon's highest;
// - 5..6: no version in common: the daemon refuses the Hello, with a Refuse at version
//   5 (the double reads it) saying what each side speaks and that site-b must upgrade.
// On each link that comes up, the double asks the daemon's replica for region hashes:
// SHA-256 on the link at version 1, BLAKE3 on the one at version 4 (the hash a link
// agrees on, src/sync/region-hashes.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import {
  FrameDecoder, FrameType, atVersion, decodeHashReply, encodeFrame, encodeHashRequest, encodeHeartbeat, type Frame,
} from '../../src/link/frame.js';
import { regionHash } from '../../src/sync/region-hashes.js';
import { encodeHello, encodeHelloFrame, type Hello } from '../../src/link/hello.js';
import { ensureIdentity, type Identity } from '../../src/link/identity.js';
import { connectLink } from '../../src/link/tls.js';
import { OFFSITE_BIN, TestDaemon, freePort } from '../helpers/daemon.js';
import { must, sleep, tempDir } from '../helpers/run.js';

const HELLO: Omit<Hello, 'protocol'> = {
  node: 'future', codecs: ['zstd'],
  volumes: [{
    name: 'db', uuid: '3c1d2e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5', size: 16 << 20, role: 'primary', generation: ['00112233aabbccdd'],
    durableSeq: 0, logBytes: 1 << 30, round: 0, changedBytes: 0,
  }],
};

/** One link from the double: every frame it hears, taken at any version. */
class Double {
  readonly frames: Frame[] = [];
  closed = false;
  private constructor(readonly socket: tls.TLSSocket) {
    const d = new FrameDecoder({ min: 0, max: 255 });
    socket.on('data', (b: Buffer) => {
      d.push(b);
      for (let f = d.next(); f; f = d.next()) this.frames.push(f);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => { this.closed = true; });
  }

  static async dial(identity: Identity, to: { name: string; fingerprint: string }, port: number): Promise<Double> {
    return new Double(await connectLink({ identity, peer: to, host: '127.0.0.1', port }));
  }

  async waitFor(type: FrameType, ms = 10_000): Promise<Frame | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.find((x) => x.type === type);
      if (f) return f;
      if (this.closed || Date.now() > deadline) return null;
      await sleep(20);
    }
  }

  send(parts: Buffer[]): void {
    for (const b of parts) this.socket.write(b);
  }
}

const RS = 64 << 10;
/** What the replica holds: zeros, but region 1 of a pattern (written into its file before the daemon starts). */
const PATTERN = Buffer.alloc(RS, 0x5a);

/** Asks the daemon's replica of db for the hashes of regions 0..3 on a link at `version`; the four it answers. */
async function askHashes(d: Double, version: number): Promise<Buffer[]> {
  d.send(atVersion(encodeHashRequest({ volume: 'db', regionSize: RS, first: 0, count: 4 }), version));
  const f = await d.waitFor(FrameType.HashReply);
  assert.ok(f, 'a HashReply');
  assert.equal(f.version, version);
  const reply = decodeHashReply(f.payload);
  assert.deepEqual([reply.first, reply.regionSize, reply.hashes.length], [0, RS, 4]);
  return reply.hashes;
}

/** Regions 0..3 of the replica as `hash` gives them. */
function expected(hash: (b: Buffer) => Buffer): Buffer[] {
  const zeros = Buffer.alloc(RS);
  return [hash(zeros), hash(PATTERN), hash(zeros), hash(zeros)];
}

describe('protocol versions against a real daemon', { timeout: 120_000 }, () => {
  let root: string;
  let b: TestDaemon;
  let future: Identity;
  let fpB: string;
  let linkB: number;

  before(async () => {
    root = tempDir('versions');
    future = (await ensureIdentity(path.join(root, 'future'), 'future')).identity;
    linkB = await freePort();
    fs.mkdirSync(path.join(root, 'b'));
    // "future" sorts before "site-b": it dials, site-b accepts and speaks first.
    b = await TestDaemon.create({
      dir: path.join(root, 'b'), node: 'site-b', noStart: true, yaml: (ports) => `node: site-b
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${linkB}
api: 127.0.0.1:${ports.api}
peers:
  future: { address: "127.0.0.1:9", fingerprint: "${future.fingerprint}" }
volumes:
  db: { path: ./db.img, size: 16MiB, role: secondary, peer: future, journal: 64MiB }
`,
    });
    fpB = (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', b.configFile])).trim().split('\n').pop()!;
    const img = path.join(root, 'b', 'db.img');
    const fd = fs.openSync(img, fs.existsSync(img) ? 'r+' : 'w+');
    fs.ftruncateSync(fd, 16 << 20);
    fs.writeSync(fd, PATTERN, 0, RS, RS);
    fs.closeSync(fd);
    await b.start();
  });

  after(async () => {
    await b.stop();
    if (!process.env.OFFSITE_KEEP_DIRS) fs.rmSync(root, { recursive: true, force: true });
  });

  test('a peer of the previous release (1 only) settles on 1 with this release; a version 2 frame after that is refused', async () => {
    const d = await Double.dial(future, { name: 'site-b', fingerprint: fpB }, linkB);
    const hello = await d.waitFor(FrameType.Hello);
    assert.ok(hello, 'site-b sent its Hello');
    // A Hello the previous release reads as its own: version 1, its JSON keys only; the highest (4) in the flags it never reads.
    assert.deepEqual([hello.version, hello.flags], [1, 4]);
    assert.deepEqual(Object.keys(JSON.parse(hello.payload.toString('utf8')) as object), ['node', 'protocol', 'codecs', 'volumes']);
    d.send(encodeHelloFrame(HELLO, { min: 1, max: 1 }));
    // Up at version 1: site-b's heartbeats come at 1, and no Refuse.
    const beat = await d.waitFor(FrameType.Heartbeat, 5000);
    assert.ok(beat, `a heartbeat after Hello\n${b.log.slice(-2000)}`);
    assert.equal(beat.version, 1);
    assert.equal(d.frames.find((f) => f.type === FrameType.Refuse), undefined);
    assert.match(b.log, /link to future up/);
    // Region hashes on a link at version 1: SHA-256.
    assert.deepEqual(await askHashes(d, 1), expected((x) => createHash('sha256').update(x).digest()));
    // A frame at version 2 on a link that agreed on 1: closed, with the reason.
    d.send(atVersion(encodeHeartbeat({ clock: Date.now() }), 2));
    for (let i = 0; i < 100 && !d.closed; i++) await sleep(50);
    assert.ok(d.closed, 'site-b closed the link');
    for (let i = 0; i < 50 && !/agreed on version 1/.test(b.log); i++) await sleep(50);
    assert.match(b.log, /link to future closed: future sent a bad frame: peer sent a frame of protocol version 2 on a link that agreed on version 1/);
  });

  test('a peer speaking 2..5 settles on 4, the highest both speak', async () => {
    const d = await Double.dial(future, { name: 'site-b', fingerprint: fpB }, linkB);
    assert.ok(await d.waitFor(FrameType.Hello));
    d.send(encodeFrame(FrameType.Hello, encodeHello({ ...HELLO, protocol: 2 }), 5, 2));
    const beat = await d.waitFor(FrameType.Heartbeat, 5000);
    assert.ok(beat, `a heartbeat after Hello\n${b.log.slice(-2000)}`);
    assert.equal(beat.version, 4);
    assert.equal(d.frames.find((f) => f.type === FrameType.Refuse), undefined);
    // Region hashes on a link at version 4: BLAKE3 (checked against its published vectors in region-hashes.test.ts).
    assert.deepEqual(await askHashes(d, 4), expected((x) => regionHash('blake3', x)));
    d.socket.destroy();
  });

  test('a peer speaking only 5..6 is refused: what each side speaks, and that site-b is to be upgraded', async () => {
    const d = await Double.dial(future, { name: 'site-b', fingerprint: fpB }, linkB);
    assert.ok(await d.waitFor(FrameType.Hello));
    d.send(encodeFrame(FrameType.Hello, encodeHello({ ...HELLO, protocol: 5 }), 6, 5));
    const refuse = await d.waitFor(FrameType.Refuse);
    assert.ok(refuse, `site-b answered with a Refuse\n${b.log.slice(-2000)}`);
    assert.equal(refuse.version, 5, 'at the version of the Hello it answers');
    const r = JSON.parse(refuse.payload.toString('utf8')) as { code: string; message: string };
    assert.equal(r.code, 'version');
    assert.match(r.message,
      /^future speaks protocol versions 5\.\.6 and site-b speaks protocol versions 1\.\.4: no version in common\. Upgrade site-b to a release that speaks protocol version 5/);
    assert.match(b.log, /link to future refused: future speaks protocol versions 5\.\.6 and site-b speaks protocol versions 1\.\.4/);
  });
});
