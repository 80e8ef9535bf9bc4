import crypto from 'node:crypto';
import fs from 'node:fs';
import { startFleet, writeVolume } from '../test/helpers/fleet.js';
import { sleep } from '../test/helpers/run.js';
import type { TestDaemon } from '../test/helpers/daemon.js';

const N = Number(process.env.N ?? 20);
const MiB = 1 << 20;
function rss(pid: number): number { const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8')); return Number(m![1]) * 1024; }
async function metrics(d: TestDaemon): Promise<string> {
  const t = await (await fetch(`http://127.0.0.1:${d.apiPort}/metrics`)).text();
  const pick = (k: string): string => { const m = new RegExp(`^${k} (\\S+)`, 'm').exec(t); return m ? (Number(m[1]) / MiB).toFixed(0) : '?'; };
  return `rss ${pick('offsite_process_resident_memory_bytes')} heapTotal ${pick('offsite_nodejs_heap_size_total_bytes')} heapUsed ${pick('offsite_nodejs_heap_size_used_bytes')} external ${pick('offsite_nodejs_external_memory_bytes')}`;
}
const names = Array.from({ length: N }, (_, i) => `v${i + 1}`);
const t0 = Date.now();
const p = await startFleet({ volumes: names.map((name) => ({ name })), size: '64MiB', journal: '256MiB', peerKeysA: process.env.PEER_KEYS ?? '' });
try {
  await p.drained(600_000);
  console.log('first sync', (Date.now() - t0) / 1000, 's', 'rss a', rss(p.a.pid!) / MiB, 'b', rss(p.b.pid!) / MiB);
  console.log('a', await metrics(p.a)); console.log('b', await metrics(p.b));
  const source = `${p.a.dir}/random.bin`;
  fs.writeFileSync(source, crypto.randomBytes(4 * MiB));
  let peakA = 0, peakB = 0, stop = false;
  let peakM = ''; const sampler = (async () => { while (!stop) { const r = rss(p.a.pid!); if (process.env.SNAPPEAK && r > 240 * MiB && peakA <= 240 * MiB) process.kill(p.a.pid!, 'SIGUSR2'); if (r > peakA) { peakA = r; peakM = await metrics(p.a).catch(() => ''); } peakB = Math.max(peakB, rss(p.b.pid!)); await sleep(200); } })();
  const t1 = Date.now();
  const queue = [...names];
  await Promise.all(Array.from({ length: 24 }, async () => { for (let n = queue.shift(); n; n = queue.shift()) await writeVolume(p.a, n, 4 * MiB, source, 1 * MiB); }));
  await p.drained(600_000);
  console.log('at peak a:', peakM); console.log('burst drained', (Date.now() - t1) / 1000, 's peak a', (peakA / MiB).toFixed(0), 'b', (peakB / MiB).toFixed(0), 'now a', (rss(p.a.pid!) / MiB).toFixed(0), 'b', (rss(p.b.pid!) / MiB).toFixed(0));
  console.log('a', await metrics(p.a)); console.log('b', await metrics(p.b));
  await sleep(5000);
  stop = true; await sampler;
  console.log('settled a', (rss(p.a.pid!) / MiB).toFixed(0), 'b', (rss(p.b.pid!) / MiB).toFixed(0));
  console.log('a', await metrics(p.a)); console.log('b', await metrics(p.b));
  if (process.env.SNAP) {
    process.kill(p.a.pid!, 'SIGUSR2'); process.kill(p.b.pid!, 'SIGUSR2');
    await sleep(8000);
    console.log('after gc a', (rss(p.a.pid!) / MiB).toFixed(0), 'b', (rss(p.b.pid!) / MiB).toFixed(0));
    console.log('a', await metrics(p.a)); console.log('b', await metrics(p.b));
  }
} finally { await p.stop(); }
