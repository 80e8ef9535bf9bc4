#!/usr/bin/env node
// `npm run demo`: the embedded default, two sites on this machine. Site A serves a
// volume over NBD and replicates it to site B over a TLS link; a burst of writes goes
// to A, the backlog drains, and the demo ends by proving B's replica equals A's volume.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
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

// Without fio/qemu-io/qemu-img (a fresh machine), the demo talks NBD itself: the
// fixed-newstyle handshake with NBD_OPT_GO, then one request at a time, answered by
// simple replies (doc/proto.md of the NBD project). Its own few lines: the product
// does not lean on test code.
const NBD = {
  IHAVEOPT: 0x49484156454f5054n, OPTION_REPLY_MAGIC: 0x3e889045565a9n, REQUEST_MAGIC: 0x25609513, SIMPLE_REPLY_MAGIC: 0x67446698,
  FLAG_C_FIXED_NEWSTYLE: 1, FLAG_C_NO_ZEROES: 2, OPT_GO: 7, REP_ACK: 1,
  CMD_READ: 0, CMD_WRITE: 1, CMD_DISC: 2, CMD_FLUSH: 3,
};

async function nbdClient(port, name = 'db') {
  const socket = net.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  let chunks = [];
  let have = 0;
  let wake = null;
  let closed = false;
  socket.on('data', (d) => { chunks.push(d); have += d.length; wake?.(); });
  socket.on('close', () => { closed = true; wake?.(); });
  socket.on('error', () => {});
  const take = async (n) => {
    while (have < n) {
      if (closed) throw new Error(`the NBD server on port ${port} closed the connection`);
      await new Promise((r) => (wake = r));
      wake = null;
    }
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    chunks = all.length > n ? [all.subarray(n)] : [];
    have -= n;
    return all.subarray(0, n);
  };
  // Handshake: the server's greeting, our flags, then NBD_OPT_GO for the export.
  await take(18);
  const hello = Buffer.alloc(4);
  hello.writeUInt32BE(NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES);
  const exportName = Buffer.from(name);
  const opt = Buffer.alloc(16 + 4 + exportName.length + 2);
  opt.writeBigUInt64BE(NBD.IHAVEOPT, 0);
  opt.writeUInt32BE(NBD.OPT_GO, 8);
  opt.writeUInt32BE(opt.length - 16, 12);
  opt.writeUInt32BE(exportName.length, 16);
  exportName.copy(opt, 20); // then 0 information requests
  socket.write(Buffer.concat([hello, opt]));
  for (;;) {
    const h = await take(20);
    if (h.readBigUInt64BE(0) !== NBD.OPTION_REPLY_MAGIC) throw new Error('not an NBD option reply');
    const type = h.readUInt32BE(12);
    const data = await take(h.readUInt32BE(16));
    if (type >= 0x80000000) throw new Error(`NBD_OPT_GO for ${name} refused: ${data.toString()}`);
    if (type === NBD.REP_ACK) break; // (NBD_REP_INFO replies before it are not needed here)
  }
  let handle = 0n;
  const request = async (type, offset, length, data) => {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD.REQUEST_MAGIC, 0);
    h.writeUInt16BE(0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(++handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    socket.write(data ? Buffer.concat([h, data]) : h);
    const r = await take(16);
    if (r.readUInt32BE(0) !== NBD.SIMPLE_REPLY_MAGIC || r.readBigUInt64BE(8) !== handle) throw new Error('not the NBD reply expected');
    if (r.readUInt32BE(4) !== 0) throw new Error(`NBD request ${type} at ${offset} failed: error ${r.readUInt32BE(4)}`);
    return type === NBD.CMD_READ ? take(length) : null;
  };
  return {
    write: (offset, data) => request(NBD.CMD_WRITE, offset, data.length, data),
    flush: () => request(NBD.CMD_FLUSH, 0, 0),
    read: (offset, length) => request(NBD.CMD_READ, offset, length),
    close: () => {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(NBD.REQUEST_MAGIC, 0);
      h.writeUInt16BE(NBD.CMD_DISC, 6);
      socket.end(h);
    },
  };
}

async function writeBurstBuiltin(port) {
  const c = await nbdClient(port);
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 128; i++) {
    chunk.fill(i + 1);
    await c.write(((i * 37) % 1024) << 20, chunk);
    if (i % 16 === 15) await c.flush();
  }
  c.close();
}

async function compareBuiltin(portA, portB) {
  const [a, b] = [await nbdClient(portA), await nbdClient(portB)];
  const step = 4 << 20;
  for (let off = 0; off < 1 << 30; off += step) {
    if (!(await a.read(off, step)).equals(await b.read(off, step))) {
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
    execFileSync('fio', [
      '--name=burst', '--ioengine=nbd', `--uri=${a}`, '--rw=randwrite', '--bs=64k', '--iodepth=16',
      '--size=256M', '--io_size=192M', '--output-format=terse',
    ], { stdio: 'ignore' });
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
    const sync = s.resyncing
      ? `, first sync ${((s.resyncTotalBytes - s.resyncLeftBytes) / 2 ** 20).toFixed(0)} of ${(s.resyncTotalBytes / 2 ** 20).toFixed(0)} MiB compared or sent`
      : '';
    console.log(`backlog ${(s.backlogBytes / 2 ** 20).toFixed(1)} MiB, lag ${s.lagSeconds} s, link ${s.link}${sync}` +
      `${t.consistent ? '' : ', site-b not consistent yet'}`);
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
