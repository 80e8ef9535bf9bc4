// npm run bench:resync: what a first sync and a resync after an outage send, and how
// long they take, beside rsync doing the same job on the same files in the same run.
//
// 1. First sync of a new pair: a 2 GiB volume with 512 MiB of random data (the rest a
//    hole). Offsite sends the data; zero runs go as 56-byte Zeroes records.
//    Both sites keep the default journal (8 GiB).
// 2. Outage: site-a's journal shrinks to 64 MiB by a reload, site-b stops, 3000
//    scattered 64 KiB writes overflow the journal into the dirty bitmap, site-b
//    returns and a round sends the dirty regions. rsync
//    (--inplace --no-whole-file) brings a copy of the pre-outage image up to date.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitPort } from './fio.js';
import { machineLine, writeSection } from './report.js';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const bin = path.join(root, 'bin/offsite.js');
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'offsite-bench-resync-'));
const base = 22000 + Math.floor(Math.random() * 20000);
const P = { nbdA: base, nbdB: base + 1, linkA: base + 2, linkB: base + 3, apiA: base + 4, apiB: base + 5 };
const MiB = 1024 * 1024;

/** A site's config; the journal at its default (8 GiB) unless `journal` says (the outage below shrinks site-a's so a burst overflows it). */
function site(me: string, peer: string, nbd: number, link: number, peerLink: number, api: number, role: string, size = '2GiB', journal?: string): string {
  return `node: ${me}\nstate: ./state-${me}\nnbd: 127.0.0.1:${nbd}\nlink: 127.0.0.1:${link}\napi: 127.0.0.1:${api}\n` +
    `peers:\n  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FP" }\n` +
    `volumes:\n  db: { path: ./${me}.img, size: ${size}, role: ${role}, peer: ${peer}${journal ? `, journal: ${journal}` : ''} }\n`;
}

/** offsite init on both sites, then each pins the other's fingerprint. */
function pairSites(cfgA: string, cfgB: string): void {
  const fp = (cfg: string): string => execFileSync(process.execPath, [bin, 'init', '-c', cfg], { encoding: 'utf8' }).trim().split('\n').pop()!;
  const [fa, fb] = [fp(cfgA), fp(cfgB)];
  fs.writeFileSync(cfgA, fs.readFileSync(cfgA, 'utf8').replace('"FP"', `"${fb}"`));
  fs.writeFileSync(cfgB, fs.readFileSync(cfgB, 'utf8').replace('"FP"', `"${fa}"`));
}

interface Vol {
  backlogBytes: number; resyncing: boolean; dirtyBytes: number; resyncBytes: number; resyncHashBytes: number; resyncSeededBytes: number;
  tracking: string; link: string; consistent: boolean;
  verify: { elapsedMs: number } | null;
}

async function vol(api: number): Promise<Vol> {
  // (Once more on a socket error: a kept-alive connection the daemon closed as it idled can race the next request.)
  for (let tries = 1; ; tries++) {
    try {
      const r = await fetch(`http://127.0.0.1:${api}/api/v1/status`);
      return ((await r.json()) as { volumes: Vol[] }).volumes[0]!;
    } catch (e) {
      if (tries >= 3) throw e;
    }
  }
}

async function drained(): Promise<void> {
  for (;;) {
    const [a, b] = await Promise.all([vol(P.apiA).catch(() => null), vol(P.apiB).catch(() => null)]);
    if (a && b && a.link === 'connected' && a.backlogBytes === 0 && !a.resyncing && !b.resyncing && b.backlogBytes === 0 && b.consistent) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function daemon(cfg: string): ChildProcess {
  const out = fs.openSync(`${cfg}.log`, 'a');
  const p = spawn(process.execPath, [bin, 'daemon', '-c', cfg], { stdio: ['ignore', out, out], env: { ...process.env, OFFSITE_LOG_LEVEL: 'info' } });
  p.once('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGTERM') console.error(`daemon ${cfg} exited with ${code ?? sig}; its log is ${cfg}.log`);
  });
  return p;
}

/** Bytes a process has read from and written to the disk so far (/proc/PID/io; null: not readable here). */
function diskIo(p: ChildProcess): { read: number; write: number } | null {
  try {
    const t = fs.readFileSync(`/proc/${p.pid}/io`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(t)![1]);
    return { read: field('read_bytes'), write: field('write_bytes') };
  } catch {
    return null;
  }
}

/** What each daemon read from and wrote to the disk between two diskIo readings. */
function ioBetween(before: ReturnType<typeof diskIo>, after: ReturnType<typeof diskIo>): { read: number; write: number } | null {
  return before && after ? { read: after.read - before.read, write: after.write - before.write } : null;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

function rsyncStats(args: string[]): { sent: number; seconds: number } {
  const t0 = Date.now();
  const out = execFileSync('rsync', [...args, '--stats'], { encoding: 'utf8', maxBuffer: 16 * MiB });
  const m = /Total bytes sent: ([\d,.]+)/.exec(out);
  return { sent: Number((m?.[1] ?? '0').replace(/[,.]/g, '')), seconds: (Date.now() - t0) / 1000 };
}

/**
 * A verify read from the disk (page cache dropped), and dd reading the same data cold:
 * one image after the other (two runs), and both images at once, one dd chain each
 * (the verify's own pattern: each site reads its image as the other reads its own).
 */
interface Cold { verify: number; dd: number[]; ddBoth: number }

function canDropCaches(): boolean {
  try {
    fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function dropCaches(): void {
  execFileSync('sync');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Seconds for dd to read these 128 MiB extents (offsets in MiB) with the page cache dropped first, 1 MiB at a time. */
function ddCold(extents: Array<{ img: string; at: number }>): number {
  dropCaches();
  const t = process.hrtime.bigint();
  for (const e of extents) {
    execFileSync('dd', [`if=${e.img}`, 'of=/dev/null', 'bs=1M', 'count=128', `skip=${e.at}`, 'iflag=fullblock', 'status=none']);
  }
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Seconds for two chains of dd, one per image, to read these extents at once, the page cache dropped first. */
async function ddColdBoth(extents: Array<{ img: string; at: number }>): Promise<number> {
  dropCaches();
  const t = process.hrtime.bigint();
  const images = [...new Set(extents.map((e) => e.img))];
  await Promise.all(images.map((img) => new Promise<void>((resolve, reject) => {
    const script = extents.filter((e) => e.img === img)
      .map((e) => `dd if="$1" of=/dev/null bs=1M count=128 skip=${e.at} iflag=fullblock status=none`).join(' && ');
    const p = spawn('sh', ['-c', script, 'sh', img], { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`dd of ${img} exited ${code}`))));
  })));
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/**
 * A seeded first sync: a 10 GiB volume with 1 GiB of random data, copied whole to
 * the secondary before the pair first meets (a disk shipped by courier).
 */
async function seeded(): Promise<{
  seconds: number; data: number; hashes: number; equal: number; rsync: { sent: number; seconds: number }; verifySeconds: number; cmpSeconds: number;
  cold: Cold | null;
}> {
  const sdir = fs.mkdtempSync(path.join(dir, 'seed-'));
  const cfgA = path.join(sdir, 'a.yaml');
  const cfgB = path.join(sdir, 'b.yaml');
  fs.writeFileSync(cfgA, site('site-a', 'site-b', P.nbdA, P.linkA, P.linkB, P.apiA, 'primary', '10GiB'));
  fs.writeFileSync(cfgB, site('site-b', 'site-a', P.nbdB, P.linkB, P.linkA, P.apiB, 'secondary', '10GiB'));
  pairSites(cfgA, cfgB);
  const imgA = path.join(sdir, 'site-a.img');
  execFileSync('truncate', ['-s', '10G', imgA]);
  for (let i = 0; i < 8; i++) {
    execFileSync('dd', ['if=/dev/urandom', `of=${imgA}`, 'bs=1M', 'count=128', `seek=${i * 1200 + 7}`, 'conv=notrunc', 'status=none']);
  }
  execFileSync('cp', ['--sparse=always', imgA, path.join(sdir, 'site-b.img')]);
  const a = daemon(cfgA);
  const b = daemon(cfgB);
  await Promise.all([waitPort(P.apiA), waitPort(P.apiB)]);
  const t0 = Date.now();
  await drained();
  const seconds = (Date.now() - t0) / 1000;
  const v = await vol(P.apiA);
  // The online verify of the same pair (every region by hash against one flush point),
  // beside cmp of the two images (which reads both whole, holes included).
  // (Its time as the daemon measured it, start to end: the CLI's wait adds its own start and polling.)
  execFileSync(process.execPath, [bin, 'verify', 'db', '-c', cfgA], { encoding: 'utf8' });
  const verifySeconds = (await vol(P.apiA)).verify!.elapsedMs / 1000;
  // The same verify with the page cache dropped, beside dd reading the same data cold.
  let cold: Cold | null = null;
  if (canDropCaches()) {
    const data = (img: string): Array<{ img: string; at: number }> => Array.from({ length: 8 }, (_, i) => ({ img, at: i * 1200 + 7 }));
    const extents = [...data(imgA), ...data(path.join(sdir, 'site-b.img'))];
    const ddBefore = ddCold(extents);
    dropCaches();
    execFileSync(process.execPath, [bin, 'verify', 'db', '-c', cfgA], { encoding: 'utf8' });
    const verify = (await vol(P.apiA)).verify!.elapsedMs / 1000;
    cold = { verify, dd: [ddBefore, ddCold(extents)], ddBoth: await ddColdBoth(extents) };
  }
  await stop(a);
  await stop(b);
  const tc = Date.now();
  execFileSync('cmp', [imgA, path.join(sdir, 'site-b.img')]);
  const cmpSeconds = (Date.now() - tc) / 1000;
  // rsync's peer figure: the same identical pair of files.
  const rs = rsyncStats(['--inplace', '--ignore-times', '--no-whole-file', imgA, path.join(sdir, 'site-b.img')]);
  fs.rmSync(sdir, { recursive: true, force: true });
  return { seconds, data: v.resyncBytes, hashes: v.resyncHashBytes, equal: v.resyncSeededBytes, rsync: rs, verifySeconds, cmpSeconds, cold };
}

async function main(): Promise<void> {
  const seed = await seeded();
  const cfgA = path.join(dir, 'a.yaml');
  const cfgB = path.join(dir, 'b.yaml');
  fs.writeFileSync(cfgA, site('site-a', 'site-b', P.nbdA, P.linkA, P.linkB, P.apiA, 'primary'));
  fs.writeFileSync(cfgB, site('site-b', 'site-a', P.nbdB, P.linkB, P.linkA, P.apiB, 'secondary'));
  pairSites(cfgA, cfgB);
  const imgA = path.join(dir, 'site-a.img');
  execFileSync('truncate', ['-s', '2G', imgA]);
  execFileSync('dd', ['if=/dev/urandom', `of=${imgA}`, 'bs=1M', 'count=512', 'seek=256', 'conv=notrunc', 'status=none']);
  execFileSync('truncate', ['-s', '2G', path.join(dir, 'empty.img')]);

  // 1. First sync.
  const a = daemon(cfgA);
  let b = daemon(cfgB);
  await Promise.all([waitPort(P.apiA), waitPort(P.apiB)]);
  const ioBefore = [diskIo(a), diskIo(b)];
  let t0 = Date.now();
  await drained();
  const first = { seconds: (Date.now() - t0) / 1000, sent: (await vol(P.apiA)).resyncBytes };
  const firstIo = [ioBetween(ioBefore[0]!, diskIo(a)), ioBetween(ioBefore[1]!, diskIo(b))];
  const empty = path.join(dir, 'empty.img');
  const rsFirst = rsyncStats(['--sparse', '--ignore-times', '--no-whole-file', imgA, empty]);

  // 2. Outage and resync. site-a's journal shrinks to 64 MiB by a reload (it holds
  // nothing now), so the burst below overflows it into the dirty bitmap.
  const fpB = /fingerprint: "([^"]+)"/.exec(fs.readFileSync(cfgA, 'utf8'))![1]!;
  fs.writeFileSync(cfgA, site('site-a', 'site-b', P.nbdA, P.linkA, P.linkB, P.apiA, 'primary', '2GiB', '64MiB').replace('"FP"', `"${fpB}"`));
  // (A journal still holding records stays as large until a reload after they are released.)
  for (let tries = 1; !/journal 64(\.0)? MiB \(was/.test(fs.readFileSync(`${cfgA}.log`, 'utf8')); tries++) {
    if (tries > 20) throw new Error(`site-a did not shrink its journal at a reload; its log is ${cfgA}.log`);
    a.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
  }
  await stop(b);
  const before = path.join(dir, 'before.img');
  execFileSync('cp', ['--sparse=always', imgA, before]);
  const cmds: string[] = [];
  let x = 12345;
  for (let i = 0; i < 3000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    cmds.push('-c', `write -P ${1 + (i % 250)} ${(x % (2048 * 16)) * 64}k 64k`);
  }
  cmds.push('-c', 'flush');
  execFileSync('qemu-io', ['-f', 'raw', ...cmds, `nbd://127.0.0.1:${P.nbdA}/db`], { stdio: 'ignore' });
  const out = await vol(P.apiA);
  if (out.tracking !== 'bitmap') throw new Error(`expected the journal to overflow, tracking is ${out.tracking}`);
  const dirty = out.dirtyBytes;
  const sentBefore = out.resyncBytes;
  b = daemon(cfgB);
  t0 = Date.now();
  await waitPort(P.apiB);
  await drained();
  const resync = { seconds: (Date.now() - t0) / 1000, sent: (await vol(P.apiA)).resyncBytes - sentBefore };
  await stop(a);
  await stop(b);
  const rsResync = rsyncStats(['--inplace', '--no-whole-file', imgA, before]);

  const md = `## First sync and resync after an outage, beside rsync

\`npm run bench:resync\`

${machineLine()}. Both sites on this machine over loopback TLS; one run. Offsite's
figure is the data bytes its resync records carried (zero runs travel as 56-byte
Zeroes records); rsync's is its "Total bytes sent" for the same files.

| job | data | offsite sent | offsite time | rsync sent | rsync time |
| --- | ---: | ---: | ---: | ---: | ---: |
| first sync to an empty secondary, 2 GiB volume, 512 MiB random data | 512.0 MiB | ${mb(first.sent)} | ${first.seconds.toFixed(1)} s ` +
  `| ${mb(rsFirst.sent)} | ${rsFirst.seconds.toFixed(1)} s |
| seeded first sync, identical 10 GiB volumes, 1 GiB random data | 10 GiB compared | ${mb(seed.data)} data + ${mb(seed.hashes)} hashes ` +
  `(${(((seed.data + seed.hashes) / (10 * 1024 * MiB)) * 100).toFixed(3)}% of the volume; ${mb(seed.equal)} found equal) ` +
  `| ${seed.seconds.toFixed(1)} s | ${mb(seed.rsync.sent)} | ${seed.rsync.seconds.toFixed(1)} s |
| resync after an outage, 3000 × 64 KiB scattered writes | ${mb(dirty)} dirty | ${mb(resync.sent)} (${(resync.sent / dirty).toFixed(2)}x of dirty) ` +
  `| ${resync.seconds.toFixed(1)} s | ${mb(rsResync.sent)} | ${rsResync.seconds.toFixed(1)} s |
${ioLine(firstIo)}
Online verify of the seeded pair after its first sync (\`offsite verify db\`, every
region by hash against one flush point on both sides), beside \`cmp\` of the two
images after the daemons stopped (both in the page cache from the sync):

| job | data | offsite verify | cmp |
| --- | ---: | ---: | ---: |
| identical 10 GiB volumes, 1 GiB random data | 1 GiB on each side | ${seed.verifySeconds.toFixed(1)} s ` +
  `(${(1024 / seed.verifySeconds).toFixed(0)} MiB/s of data) | ${seed.cmpSeconds.toFixed(1)} s (reads 2 x 10 GiB) |
${coldTable(seed.cold)}
The verify reads and hashes only data (a hole hashes as zeros), in batches of 4 MiB,
up to four out at once, each under its own range lock: each costs a read and a hash
on each side and a round trip, overlapped with the others'. The link sets
TCP_NODELAY, so the small request and reply go at once; before (Nagle's algorithm,
one batch out) each waited for the peer's delayed ACK, and the same job took 215 s
(5 MiB/s of data). Until 2026-12-04 the range locks were one at a time, so the four
batches went one after the other (2.6 s here, 326 MiB/s of data in the table's run
before); they are now held at once, and the secondary reads one request while it
hashes another. Since 2026-12-07 a link at protocol version 4 hashes regions with
BLAKE3 (\`@napi-rs/blake-hash\`, 5.6 GB/s on one core here with AVX-512, against
SHA-256's 1.7 GB/s with SHA-NI; docs/PEER-PROTOCOL.md, "Region hashes"); the same
verify, alternated on one pair of daemons, took 0.83-1.05 s against 1.3 s before
(775 MiB/s of data with SHA-256). What bounds it now, from perf over both daemons
during a verify in the page cache: the copy out of the page cache (a fifth of the
samples) and BLAKE3 (a quarter), each daemon spending about 0.7 s of CPU on its 1 GiB,
both on this two-core machine; then a round trip and a map of the allocation per batch
over the 9 GiB of holes (16 MiB batches there once a batch found a hole: about 600).
From the disk, each side reads its data at once, so the two sites here share one
disk. Since 2026-12-07 (evening) the table reads the same data with two \`dd\` at once
as well, one per image as the verify does: this virtual disk serves two streams far
faster than one (that evening 0.39-0.49 s for the 2 GiB in five runs, against 0.8-3.1 s
one image after the other), so the disk is not what bounds the verify here: it took
1.06-2.02 s from the disk against 1.1-1.3 s from the page cache, the CPU of the two
daemons on two cores, hashing and copying, being the bound. Issue 21 asks for a
verify at 0.8x of the disk's sequential read: against one \`dd\` this run reads the
first ratio, against the disk's rate for the verify's own pattern the second (this
virtual disk's rate varies by 2x between runs minutes apart).

The resync's time runs from site-b's start to the pair drained, so it holds site-a's wait
before its next dial: since 2026-12-07 at most 5 s for a peer that does not answer
(src/node/dialer.ts; before, the backoff doubled to 30 s over the outage, and this row
read 2.5 to 5.1 s in runs of that day before the change).
The resync sends the dirty regions (64 KiB each) once: the target was at most 1.1x the
dirty bytes. rsync needs no bitmap but reads both files end to end to find the same
changes; Offsite knows them from the bitmap and reads only those regions. A first
sync compares every 64 KiB region by hash (BLAKE3; 32 bytes per region on the wire) and
sends only those that differ, so a seeded copy costs hashes, not data: the target
was at most 1% of the volume. Neither side reads its holes: the secondary's map of
holes comes first (protocol version 2), regions that are holes on both sides leave
unhashed, and each side reads and hashes only its data (here 1 GiB of 10), so the
seeded sync is bounded by reading and hashing the data on both sides at once, with
up to three hash requests (16 MiB of regions each) out so the secondary hashes the
next while the primary compares the last (one at a time and under Nagle's algorithm,
before, it took 7.6 s against rsync's 5.5 s); rsync (\`--ignore-times\`, so it
compares rather than trusting sizes and times) reads both files end to end, holes
included; it runs after the verify and cmp below, with both images in the page cache
(earlier runs, before cmp was added, read them cold: 37.7 to 44.9 s). The first sync to an empty secondary reads the primary's data once (a
region that is a hole there and data here is sent without asking its hash), with
both journals at their default (8 GiB); it moves each byte through this one disk four
times (the primary's read and journal, the secondary's receive log and volume: the
counts below), and rsync twice. Neither site's CPU is busy all the time (since
2026-12-07 a round reads its runs into reused buffers: docs/RESYNC.md, "The first
sync's own CPU"). What bounds it is the disk (2 GiB through it in these seconds) and the
round trip of the durable ack (the secondary's sync of its receive log, about 50 ms
here) over what is in flight: the shipper's window (8 MiB with the default memory
budget) and at most a quarter of the journal (with 64 MiB journals, 16 MiB: the same
first sync took 7.3-7.4 s, against 4.8-5.2 s with 1 GiB). rsync's times on this shared
machine vary by more than 2x from run to run.
`;
  writeSection('resync', md);
  console.log(md);
  fs.rmSync(dir, { recursive: true, force: true });
}

const mb = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

/** The first sync's disk traffic at each site (/proc/PID/io), or nothing where it could not be read. */
function ioLine(io: Array<{ read: number; write: number } | null>): string {
  const [a, b] = io;
  if (!a || !b) return '';
  return `
The first sync to an empty secondary through each site's disk (\`/proc/PID/io\` of each daemon, from
both listening to the pair drained): site-a read ${mb(a.read)} and wrote ${mb(a.write)} (its volume, its
journal); site-b read ${mb(b.read)} and wrote ${mb(b.write)} (its receive log and its volume; its
apply reads the receive log from the page cache). rsync reads the data once and writes it once.
`;
}

/** The verify read from the disk, beside dd reading the same 2 GiB (1 GiB of data in each image, both sites on this one disk). */
function coldTable(c: Cold | null): string {
  if (!c) return '\nThe verify from the disk was not measured: dropping the page cache needs root.\n';
  const best = Math.min(...c.dd);
  return `
The same verify with the page cache dropped first, so each side reads its 1 GiB from
the disk, both sites on this one disk; beside it \`dd\` (1 MiB blocks) reading the same
2 GiB of data, the cache dropped before each run: one image after the other, once
before the verify and once after, then both images at once, one \`dd\` each, which is
how the verify reads them (each site its own image, at the same time, from this one
disk). This virtual disk's rate varies from run to run.

| job | data read from the disk | offsite verify | dd, one image after the other | dd, both at once | verify / dd (faster run) | verify / dd both at once |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
| identical 10 GiB volumes, 1 GiB random data, cache dropped | 2 x 1 GiB | ${c.verify.toFixed(2)} s (${(2048 / c.verify).toFixed(0)} MiB/s) ` +
    `| ${c.dd.map((x) => `${x.toFixed(2)} s`).join(', ')} (${(2048 / best).toFixed(0)} MiB/s) ` +
    `| ${c.ddBoth.toFixed(2)} s (${(2048 / c.ddBoth).toFixed(0)} MiB/s) | ${(best / c.verify).toFixed(2)}x | ${(c.ddBoth / c.verify).toFixed(2)}x |
`;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
