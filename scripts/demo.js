#!/usr/bin/env node
// `npm run demo`: the embedded default, two sites on this machine. Site A serves a
// volume over NBD and replicates it to site B over a TLS link; a burst of writes goes
// to A, the backlog drains, and the demo ends by proving B's replica equals A's volume.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(new URL('..', import.meta.url).pathname);
const dir = path.join(root, 'demo');
const bin = path.join(root, 'bin', 'offsite.js');
const base = Number(process.env.OFFSITE_DEMO_PORT ?? 10809);
const ports = { nbdA: base, nbdB: base + 1, linkA: base + 2, linkB: base + 3, apiA: base + 4, apiB: base + 5 };
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });

const site = (me, peer, nbd, link, peerLink, api, role) => `# written by npm run demo
node: ${me}
state: ./state/${me}
nbd: 127.0.0.1:${nbd}
link: 127.0.0.1:${link}
api: 127.0.0.1:${api}
peers:
  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FINGERPRINT" }
volumes:
  db: { path: ./data/${me}-db.img, size: 1GiB, role: ${role}, peer: ${peer}, journal: 2GiB }
`;
const cfgA = path.join(dir, 'site-a.yaml');
const cfgB = path.join(dir, 'site-b.yaml');
fs.writeFileSync(cfgA, site('site-a', 'site-b', ports.nbdA, ports.linkA, ports.linkB, ports.apiA, 'primary'));
fs.writeFileSync(cfgB, site('site-b', 'site-a', ports.nbdB, ports.linkB, ports.linkA, ports.apiB, 'secondary'));
fs.mkdirSync(path.join(dir, 'data'), { recursive: true });

const offsite = (...args) => execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const say = (s) => console.log(`\n== ${s}`);

say('pairing: offsite init on each site, each pins the other\'s fingerprint');
const fpA = offsite('init', '-c', cfgA).trim().split('\n').pop();
const fpB = offsite('init', '-c', cfgB).trim().split('\n').pop();
fs.writeFileSync(cfgA, fs.readFileSync(cfgA, 'utf8').replace('FINGERPRINT', fpB));
fs.writeFileSync(cfgB, fs.readFileSync(cfgB, 'utf8').replace('FINGERPRINT', fpA));
console.log(`site-a ${fpA}\nsite-b ${fpB}`);

const daemons = [];
function start(cfg, name) {
  const child = spawn(process.execPath, [bin, 'daemon', '-c', cfg], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OFFSITE_LOG: 'text' } });
  child.stderr.on('data', (b) => process.stderr.write(b.toString().split('\n').filter(Boolean).map((l) => `[${name}] ${l}\n`).join('')));
  daemons.push(child);
  return child;
}
const stopAll = () => Promise.all(daemons.map((d) => new Promise((r) => (d.exitCode !== null ? r() : (d.once('exit', r), d.kill('SIGTERM'))))));
process.on('SIGINT', () => stopAll().then(() => process.exit(130)));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function status(api) {
  const r = await fetch(`http://127.0.0.1:${api}/api/v1/status`);
  return (await r.json()).volumes[0];
}
async function waitUp(api) {
  for (let i = 0; i < 100; i++) {
    try { if ((await status(api)).link === 'connected') return; } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error('the sites did not link within 10 s');
}
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// Without fio/qemu-io/qemu-img (a fresh machine), the demo talks NBD itself.
async function nbdClient(port) {
  const { RawClient } = await import('../dist/test/helpers/raw-client.js');
  const c = await RawClient.connect({ host: '127.0.0.1', port });
  await c.go('db');
  return c;
}

async function writeBurstBuiltin(port) {
  const c = await nbdClient(port);
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 128; i++) {
    chunk.fill(i + 1);
    c.request(1 /* WRITE */, BigInt(((i * 37) % 1024) << 20), chunk.length, { handle: BigInt(i), data: chunk });
    const r = await c.simpleReply();
    if (r.error) throw new Error(`write failed: ${r.error}`);
    if (i % 16 === 15) {
      c.request(3 /* FLUSH */, 0n, 0, { handle: 999n });
      await c.simpleReply();
    }
  }
  c.close();
}

async function compareBuiltin(portA, portB) {
  const [a, b] = [await nbdClient(portA), await nbdClient(portB)];
  const step = 4 << 20;
  for (let off = 0; off < 1 << 30; off += step) {
    const read = async (c) => {
      c.request(0 /* READ */, BigInt(off), step, { handle: 1n });
      const r = await c.simpleReply();
      if (r.error) throw new Error(`read failed: ${r.error}`);
      return c.read(step, 30000);
    };
    if (!(await read(a)).equals(await read(b))) {
      a.close(); b.close();
      return `Content mismatch in the 4 MiB at offset ${off}`;
    }
  }
  a.close(); b.close();
  return 'Images are identical.';
}

async function main() {
  say('starting site-b (secondary) and site-a (primary)');
  start(cfgB, 'site-b');
  start(cfgA, 'site-a');
  await waitUp(ports.apiA);
  const a = `nbd://127.0.0.1:${ports.nbdA}/db`;
  const b = `nbd://127.0.0.1:${ports.nbdB}/db`;
  say(`writing a burst to site-a (${a})`);
  if (has('fio')) {
    execFileSync('fio', ['--name=burst', '--ioengine=nbd', `--uri=${a}`, '--rw=randwrite', '--bs=64k', '--iodepth=16', '--size=256M', '--io_size=192M', '--output-format=terse'], { stdio: 'ignore' });
    console.log('fio wrote 192 MiB of random 64 KiB blocks');
  } else if (has('qemu-io')) {
    execFileSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 128M', '-c', 'flush', a], { stdio: 'ignore' });
    console.log('qemu-io wrote 128 MiB');
  } else {
    await writeBurstBuiltin(ports.nbdA);
    console.log('wrote 128 MiB over NBD (install fio or qemu-utils to use them instead)');
  }
  say('the first sync of the new pair completes and the backlog drains over the link');
  for (let i = 0; i < 1200; i++) {
    const s = await status(ports.apiA);
    const t = await status(ports.apiB);
    const sync = s.resyncing ? `, first sync ${((s.resyncTotalBytes - s.resyncLeftBytes) / 2 ** 20).toFixed(0)} of ${(s.resyncTotalBytes / 2 ** 20).toFixed(0)} MiB compared or sent` : '';
    console.log(`backlog ${(s.backlogBytes / 2 ** 20).toFixed(1)} MiB, lag ${s.lagSeconds} s, link ${s.link}${sync}${t.consistent ? '' : ', site-b not consistent yet'}`);
    if (s.link === 'connected' && s.backlogBytes === 0 && !s.resyncing && t.backlogBytes === 0 && !t.resyncing && t.consistent) break;
    await sleep(500);
  }
  console.log(offsite('status', '-c', cfgA));
  console.log(offsite('status', '-c', cfgB));
  let verdict;
  if (has('qemu-img')) {
    say(`proving the replica equals the primary: qemu-img compare ${a} ${b}`);
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', a, b], { encoding: 'utf8' });
    verdict = (cmp.stdout + cmp.stderr).trim();
  } else {
    say(`proving the replica equals the primary: reading both exports and comparing every byte (qemu-img compare does this when installed)`);
    verdict = await compareBuiltin(ports.nbdA, ports.nbdB);
  }
  console.log(verdict);
  await stopAll();
  const same = verdict === 'Images are identical.';
  say(same ? 'done: site-b holds an identical copy of site-a' : 'the images differ');
  process.exit(same ? 0 : 1);
}

main().catch(async (e) => {
  console.error(`demo failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
