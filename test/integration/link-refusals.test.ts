// Wrong fingerprint: refused with a clear message on both sides, and nothing reaches
// the other volume. Two primaries: that volume waits unpaired with the demote advice on
// both sides while the link serves another volume. A size mismatch: that volume waits
// unpaired, both sides say which to grow and how, and nothing of it reaches the other.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { OFFSITE_BIN, statusOf } from '../helpers/daemon.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { startPair, type Pair, type PairOptions } from '../helpers/pair.js';
import { must, sleep } from '../helpers/run.js';

async function refused(opts: PairOptions, a: RegExp, b: RegExp, link = 'disconnected', more?: (p: Pair) => Promise<void>): Promise<void> {
  const p = await startPair(opts);
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 1M', '-c', 'flush', p.a.uri('db')]);
    for (let i = 0; i < 200 && !(a.test(p.a.log) && b.test(p.b.log)); i++) await sleep(100);
    assert.match(p.a.log, a);
    assert.match(p.b.log, b);
    assert.equal((await statusOf(p.a)).volumes[0]!.link, link);
    // Nothing written at site-b: its volume file holds no data and its receive log no record.
    const img = fs.readFileSync(path.join(p.b.dir, 'db.img'));
    assert.ok(img.every((x) => x === 0), 'site-b volume untouched');
    const recv = path.join(p.b.dir, 'state', 'volumes', 'db', 'receive');
    const segBytes = fs.existsSync(recv)
      ? fs.readdirSync(recv).filter((f) => f.endsWith('.seg')).reduce((n, f) => n + fs.statSync(path.join(recv, f)).size, 0)
      : 0;
    assert.ok(segBytes <= 64, `site-b receive log holds ${segBytes} bytes`);
    await more?.(p);
  } finally {
    await p.stop();
  }
}

test('an unknown fingerprint is refused during the handshake, logged on both sides', async () => {
  await refused({ wrongPinAtB: true, size: '16MiB' },
    /link to site-b dropped before its Hello: does site-b pin this node's fingerprint/,
    /link from 127\.0\.0\.1:\d+ refused: certificate [0-9A-F:]{95} is not a configured peer/);
});

test('two primaries: that volume waits unpaired with the demote advice on both sides, and the link serves the other volume', async () => {
  const logs = (peer: string, role: string): string => `  logs: { path: ./logs.img, size: 16MiB, role: ${role}, peer: ${peer}, journal: 64MiB }`;
  const opts = { roleB: 'primary', size: '16MiB', volumesA: logs('site-b', 'primary'), volumesB: logs('site-a', 'secondary') };
  await refused(opts,
    /volume db is primary on both nodes .*demote one .*; nothing of db flows between this node and site-b until then \(the link serves the other volumes\)/,
    /volume db is primary on both nodes .*; nothing of db flows between this node and site-a until then/, 'connected', async (p) => {
      // The other volume replicates meanwhile.
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 2M', '-c', 'flush', p.a.uri('logs')]);
      for (let i = 0; i < 200; i++) {
        const v = (await statusOf(p.a)).volumes.find((x) => x.name === 'logs')!;
        if (v.backlogBytes === 0 && v.link === 'connected') break;
        await sleep(100);
      }
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('logs'), p.b.uri('logs')]);
      // Each side's status says why db is not paired, and which code.
      for (const [d, peer] of [[p.a, 'site-b'], [p.b, 'site-a']] as const) {
        const db = (await statusOf(d)).volumes.find((x) => x.name === 'db')!;
        assert.equal(db.peers[0]!.conflict?.code, 'two-primaries', `${peer}'s side`);
      }
      const text = await must(process.execPath, [OFFSITE_BIN, 'status', '-c', p.a.configFile], { env: { ...process.env, NO_COLOR: '1' } });
      assert.match(text, /volume db NOT PAIRED WITH site-b \(two-primaries\): volume db is primary on both nodes/);
      assert.match(text, /1 not paired \(a conflict\)/);
    });
});

test('a size mismatch leaves the volume unpaired, each side saying both sizes and which to grow; nothing of it reaches site-b', async () => {
  await refused({ size: '16MiB', sizeB: '32MiB' },
    new RegExp('volume db: it is 16 MiB \\(16777216 bytes\\) here and 32 MiB \\(33554432 bytes\\) on site-b; the sizes must match: ' +
      'raise its size: here and reload \\(docs/CONFIG.md, .*\\); the link serves the other volumes'),
    new RegExp('volume db: it is 32 MiB \\(33554432 bytes\\) here and 16 MiB \\(16777216 bytes\\) on site-a; the sizes must match: ' +
      'raise its size: on site-a and reload there'), 'connected');
});

test('a link refused at Hello is redialled with a growing backoff, and each try says the refusal once, not a fingerprint guess', async () => {
  // A proxy with no faults between the sites counts site-a's dials.
  let proxy = null as FaultProxy | null;
  const p = await startPair({
    // (site-b's config knows site-a's certificate as site-0: a link refused as a whole, at Hello.)
    size: '16MiB', peerNameAtB: 'site-0',
    proxy: async (linkB) => {
      proxy = new FaultProxy(linkB);
      proxy.faults = false;
      return proxy.start();
    },
  });
  try {
    const windowMs = 12_000;
    await sleep(windowMs);
    const dials = proxy!.counts.connections;
    // Backoff 0.5, 1, 2, 4, 8 s: five dials in 12 s (each dial takes a few ms more).
    // Before: one every 0.55 s, about 22.
    assert.ok(dials >= 4 && dials <= 6, `${dials} dials in ${windowMs / 1000} s`);
    const lines = (log: string): Array<{ time: number; msg: string }> => log.split('\n').filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { time: number; msg: string });
    const refusedA = lines(p.a.log).filter((l) =>
      /site-b refused the link: the peer calls itself "site-a" but this node's config knows it as "site-0"/.test(l.msg));
    const refusedB = lines(p.b.log).filter((l) => /link to site-0 refused: the peer calls itself "site-a"/.test(l.msg));
    // Once per dial on each side (the last may be in flight as the window ends).
    for (const [side, got] of [['site-a', refusedA], ['site-b', refusedB]] as const) {
      assert.ok(got.length >= dials - 1 && got.length <= dials, `${side} said the refusal ${got.length} times for ${dials} dials`);
    }
    // The waits between tries grow.
    const gaps = refusedA.slice(1).map((l, i) => l.time - refusedA[i]!.time);
    for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i]! > gaps[i - 1]! * 1.5, `gaps between refusals ${gaps.join(', ')} ms`);
    // Nothing misleading, and no second line per try.
    for (const log of [p.a.log, p.b.log]) {
      assert.doesNotMatch(log, /pin this node's fingerprint/);
      assert.doesNotMatch(log, /link to site-[ab] closed/);
    }
  } finally {
    await p.stop();
    await proxy?.stop();
  }
});
