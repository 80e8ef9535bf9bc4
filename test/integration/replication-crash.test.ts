// Crash consistency with real processes: the host writes known patterns with
// flushes; the test keeps the hash of every image the primary passed through. The
// secondary is killed -9 while it applies and the primary while it ships, 10 times
// each; after every restart the replica's image hash is one of those images (never a
// torn one), and at the end the pair converges.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { startPair } from '../helpers/pair.js';
import { must, sleep } from '../helpers/run.js';
import { assertIdentical, sha } from '../helpers/images.js';

const SIZE = 16 * 1024 * 1024;

test('the replica is always a flush-point image across kill -9 of either side', async () => {
  await crashCycles({});
});

// A capped link falls behind: batches span several epochs and go coalesced (Skip
// records; the replica waits for each unit's end). Still never a torn image.
test('the same with the link capped, so batches are coalesced', async () => {
  const coalesced = await crashCycles({ peerKeysA: 'rate: 4mbit, compression: off', cycles: 8 });
  assert.ok(coalesced > 0, 'no batch was coalesced: the test did not test coalescing');
  console.log(`# ${coalesced} records went as Skip records`);
});

async function crashCycles(opts: { peerKeysA?: string; cycles?: number }): Promise<number> {
  const p = await startPair({ size: '16MiB', ...(opts.peerKeysA ? { peerKeysA: opts.peerKeysA } : {}) });
  let coalesced = 0;
  let coalescedThisRun = 0;
  const sampleCoalesced = async (): Promise<void> => {
    try {
      const st = (await (await fetch(`http://127.0.0.1:${p.a.apiPort}/api/v1/status`)).json()) as {
        volumes: Array<{ shipping: { coalescedRecords: number } | null }>;
      };
      coalescedThisRun = Math.max(coalescedThisRun, st.volumes[0]?.shipping?.coalescedRecords ?? 0);
    } catch {
      // (down: nothing to add)
    }
  };
  const model = Buffer.alloc(SIZE);
  const images = new Set<string>([sha(model)]);
  const torn = new Map<string, string>(); // diagnostics: images in the middle of an epoch
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  const readImage = async (uri: string): Promise<Buffer> => {
    const out = path.join(p.a.dir, `img-${Date.now()}.raw`);
    await must('nbdcopy', [uri, out]);
    const b = fs.readFileSync(out);
    fs.rmSync(out);
    return b;
  };
  try {
    // The new pair's first sync ends first: until then the replica is not consistent (and says so).
    await p.drained(60_000);
    // (npm test: 10 cycles, 8 coalesced; npm run test:soak, OFFSITE_SOAK=1: 60 of each.)
    const cycles = process.env.OFFSITE_SOAK ? 60 : opts.cycles ?? 10;
    for (let cycle = 0; cycle < cycles; cycle++) {
      // A burst of write+flush pairs in the background, killed part way.
      // Epochs of three writes each: an image in the middle of an epoch is torn.
      const writes: Array<{ off: number; len: number; pat: number }> = [];
      // writeback: qemu-io's default (writethrough) would flush after every write.
      const args = ['-f', 'raw', '-t', 'writeback'];
      for (let k = 0; k < 24; k++) {
        const w = { off: rnd(240) * 64 * 1024, len: (1 + rnd(8)) * 64 * 1024, pat: 1 + rnd(250) };
        writes.push(w);
        args.push('-c', `write -P ${w.pat} ${w.off} ${w.len}`);
        if (k % 3 === 2) args.push('-c', 'flush');
      }
      const out: string[] = [];
      const q = spawn('qemu-io', [...args, p.a.uri('db')], { stdio: ['ignore', 'pipe', 'pipe'] });
      q.stdout.on('data', (b: Buffer) => out.push(b.toString()));
      await sleep(20 + rnd(200));
      const killPrimary = cycle % 2 === 1;
      await sampleCoalesced();
      if (killPrimary) {
        coalesced += coalescedThisRun;
        coalescedThisRun = 0;
      }
      if (killPrimary) await p.a.kill9();
      else await p.b.kill9();
      if (q.exitCode === null) await new Promise((r) => q.once('exit', r));
      // The image after each whole epoch of completed writes is one the primary flushed
      // (or may have, for the last one).
      const done = (out.join('').match(/^wrote /gm) ?? []).length;
      writes.slice(0, done).forEach((w, k) => {
        model.fill(w.pat, w.off, w.off + w.len);
        if (k % 3 === 2) images.add(sha(model));
        else torn.set(sha(model), `cycle ${cycle} after write ${k}`);
      });
      // Freeze the replica: stop whichever side still runs, then start site-b alone.
      if (killPrimary) await p.b.stop();
      else {
        await sampleCoalesced();
        coalesced += coalescedThisRun;
        coalescedThisRun = 0;
        await p.a.stop();
      }
      await p.b.start();
      const replica = sha(await readImage(p.b.uri('db')));
      if (!images.has(replica) && process.env.OFFSITE_DEBUG_DIRS) console.log(`DIRS ${p.a.dir} ${p.b.dir}`);
      assert.ok(images.has(replica), `cycle ${cycle} (${killPrimary ? 'primary' : 'secondary'} killed): the replica is not a flush-point image ` +
        `(${torn.get(replica) ?? 'not any image the primary passed through'}; ${done} writes done)`);
      await p.a.start();
      // The primary may hold a write that was in flight at the kill: continue from what it has.
      model.set(await readImage(p.a.uri('db')));
      images.add(sha(model));
    }
    await p.drained(120_000);
    await sampleCoalesced();
    coalesced += coalescedThisRun;
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    return coalesced;
  } finally {
    await p.stop();
  }
}
