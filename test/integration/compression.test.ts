// Compression on a live pair (issue 5): real files, zeros and random data go
// through the link; zeros travel as Zeroes records, files as zstd frames, random data
// raw; the replica is identical; `compression: off` set by a live reload sends raw.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { statusOf, type TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';

interface Shipping {
  compression: string;
  level: number | null;
  recordBytes: number;
  zeroBytes: number;
  compressedInBytes: number;
  compressedOutBytes: number;
  compressionRatio: number;
}
interface V { wireBytes: number; shipping: Shipping | null }
const v = async (d: TestDaemon): Promise<V> => (await statusOf(d)).volumes[0] as unknown as V;

/** Files of this machine (headers and docs: text and binaries), concatenated. */
function realFiles(bytes: number): Buffer {
  const out: Buffer[] = [];
  let n = 0;
  const walk = (dir: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      if (n >= bytes) return;
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size > 0) {
        const b = fs.readFileSync(p).subarray(0, bytes - n);
        out.push(b);
        n += b.length;
      }
    }
  };
  walk('/usr/include');
  walk('/usr/lib/x86_64-linux-gnu');
  return Buffer.concat(out);
}

async function identical(a: string, b: string): Promise<void> {
  const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', a, b]);
  assert.equal((cmp.stdout + cmp.stderr).trim(), 'Images are identical.');
}

test('zstd on the link: files shrink, zeros go as Zeroes records, random data raw; off by live reload', async () => {
  const p = await startPair({ size: '64MiB', peerKeysA: 'compression: "zstd:3"' });
  try {
    await p.drained();
    const s0 = await v(p.a);
    assert.equal(s0.shipping?.compression, 'zstd:3');
    assert.equal(s0.shipping?.level, 3);
    // 16 MiB of real files in 1 MiB writes, 8 MiB of zeros as plain writes (not
    // WRITE_ZEROES), 4 MiB of random data; flushed.
    const files = realFiles(16 << 20);
    const cmds: string[] = [];
    for (let i = 0; i < 20; i++) {
      const chunk = path.join(p.a.dir, `chunk${i}.bin`);
      fs.writeFileSync(chunk, i < 16 ? files.subarray(i << 20, (i + 1) << 20) : randomBytes(1 << 20));
      cmds.push('-c', `write -s ${chunk} ${i < 16 ? i : 32 + i - 16}M 1M`);
    }
    await must('qemu-io', ['-f', 'raw', ...cmds, '-c', 'write -P 0 16M 8M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(120_000);
    await identical(p.a.uri('db'), p.b.uri('db'));
    const s1 = await v(p.a);
    const sh = s1.shipping!;
    const recordDelta = sh.recordBytes - s0.shipping!.recordBytes;
    const wireDelta = s1.wireBytes - s0.wireBytes;
    assert.ok(recordDelta >= 24 << 20, `records shipped: ${recordDelta}`);
    assert.ok(sh.zeroBytes >= 8 << 20, `zero writes sent as Zeroes records: ${sh.zeroBytes}`);
    assert.ok(sh.compressedOutBytes < sh.compressedInBytes * 0.7, `zstd: ${sh.compressedInBytes} -> ${sh.compressedOutBytes}`);
    // Files shrink, zeros vanish, random data stays: well under the record bytes.
    assert.equal(files.length, 16 << 20);
    assert.ok(wireDelta < recordDelta * 0.6, `wire ${wireDelta} for ${recordDelta} record bytes`);
    assert.ok(sh.compressionRatio > 1.5, `ratio ${sh.compressionRatio}`);

    // compression: off, live: the next files go raw (wire about the record bytes), same link.
    fs.writeFileSync(p.a.configFile, fs.readFileSync(p.a.configFile, 'utf8').replace('compression: "zstd:3"', 'compression: off'));
    const closedBefore = (p.a.log.match(/link to site-b closed/g) ?? []).length;
    process.kill(p.a.pid!, 'SIGHUP');
    for (let i = 0; i < 200 && !p.a.log.includes('compression off'); i++) await sleep(100);
    assert.match(p.a.log, /config reloaded: .*peer site-b: compression off/);
    const s2 = await v(p.a);
    assert.equal(s2.shipping?.compression, 'off');
    assert.equal(s2.shipping?.level, 0);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 40M 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained(60_000);
    const s3 = await v(p.a);
    const rec = s3.shipping!.recordBytes - s2.shipping!.recordBytes;
    const wire = s3.wireBytes - s2.wireBytes;
    assert.ok(rec >= 4 << 20);
    assert.ok(wire >= rec, `raw: wire ${wire} >= records ${rec}`);
    assert.equal(s3.shipping!.compressedInBytes, s2.shipping!.compressedInBytes);
    assert.equal((p.a.log.match(/link to site-b closed/g) ?? []).length, closedBefore, 'no reconnect');
    await identical(p.a.uri('db'), p.b.uri('db'));
  } finally {
    await p.stop();
  }
});

test('coalescing: an overwrite-heavy workload with flushes over a slow link sends far fewer bytes than it wrote', async () => {
  // compression off: what is saved here is coalescing alone.
  const p = await startPair({ size: '64MiB', peerKeysA: 'rate: 8mbit, compression: off' });
  try {
    await p.drained();
    const s0 = await statusOf(p.a);
    const v0 = s0.volumes[0] as unknown as V & { hostBytes: number };
    // 300 epochs, each rewriting the same two 64 KiB ranges (a database's hot pages), then a flush.
    const cmds: string[] = [];
    for (let i = 0; i < 300; i++) cmds.push('-c', `write -P ${1 + (i % 250)} 0 64k`, '-c', `write -P ${1 + ((i * 7) % 250)} 1M 64k`, '-c', 'flush');
    await must('qemu-io', ['-f', 'raw', '-t', 'writeback', ...cmds, p.a.uri('db')]);
    await p.drained(120_000);
    await identical(p.a.uri('db'), p.b.uri('db'));
    const v1 = (await statusOf(p.a)).volumes[0] as unknown as V & {
      hostBytes: number;
      shipping: Shipping & { coalescedBytes: number; coalescedRecords: number };
    };
    const host = v1.hostBytes - v0.hostBytes;
    const wire = v1.wireBytes - v0.wireBytes;
    assert.equal(host, 300 * 128 * 1024);
    assert.ok(v1.shipping.coalescedBytes > host / 2, `coalesced ${v1.shipping.coalescedBytes} of ${host}`);
    assert.ok(wire < host / 2, `wire ${wire} for ${host} written`);
    console.log(`# ${host} bytes written, ${wire} on the wire, ${v1.shipping.coalescedRecords} records coalesced`);
  } finally {
    await p.stop();
  }
});

test('coalescing far behind: ranges rewritten several batches apart travel once', async () => {
  const p = await startPair({ size: '64MiB', peerKeysA: 'compression: off' });
  try {
    await p.drained();
    const v0 = (await statusOf(p.a)).volumes[0] as unknown as V & { hostBytes: number };
    // Shipping paused: the backlog builds. Four passes over the same 8 MiB (two batches
    // apart and more), each pass flushed: per batch, no record is covered.
    assert.equal((await cli(p.a, 'pause', 'db')).code, 0);
    const cmds: string[] = [];
    for (let pass = 0; pass < 4; pass++) {
      for (let m = 0; m < 8; m++) cmds.push('-c', `write -P ${1 + pass * 8 + m} ${m}M 1M`);
      cmds.push('-c', 'flush');
    }
    await must('qemu-io', ['-f', 'raw', '-t', 'writeback', ...cmds, p.a.uri('db')]);
    assert.equal((await cli(p.a, 'resume', 'db')).code, 0);
    await p.drained(120_000);
    await identical(p.a.uri('db'), p.b.uri('db'));
    const v1 = (await statusOf(p.a)).volumes[0] as unknown as V & { hostBytes: number; shipping: Shipping & { coalescedBytes: number } };
    const host = v1.hostBytes - v0.hostBytes;
    const wire = v1.wireBytes - v0.wireBytes;
    assert.equal(host, 32 << 20);
    // Three of the four passes stay home.
    assert.ok(v1.shipping.coalescedBytes >= 24 << 20, `coalesced ${v1.shipping.coalescedBytes}`);
    assert.ok(wire < 10 << 20, `wire ${wire} for ${host} written`);
  } finally {
    await p.stop();
  }
});
