#!/usr/bin/env node
// `npm run demo`: the embedded default. Starts a node on this machine with one
// volume under ./demo, shows a real client using it, then serves until Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(new URL('..', import.meta.url).pathname);
const dir = path.join(root, 'demo');
fs.mkdirSync(dir, { recursive: true });
const config = path.join(dir, 'site-a.yaml');
const port = process.env.OFFSITE_DEMO_PORT ?? '10809';
fs.writeFileSync(config, `# written by npm run demo
node: site-a
state: ./state/site-a
nbd: 127.0.0.1:${port}
volumes:
  db:
    path: ./data/site-a-db.img
    size: 1GiB
    role: primary
`);
fs.mkdirSync(path.join(dir, 'data'), { recursive: true });

const bin = path.join(root, 'bin', 'offsite.js');
const daemon = spawn(process.execPath, [bin, 'daemon', '-c', config], {
  stdio: ['ignore', 'inherit', 'pipe'],
  env: { ...process.env, OFFSITE_LOG: 'text' },
});
let ready = false;
daemon.stderr.on('data', (b) => {
  process.stderr.write(b);
  if (!ready && b.toString().includes('ready: ')) {
    ready = true;
    show();
  }
});
daemon.on('exit', (code) => process.exit(code ?? 1));
const stop = () => daemon.kill('SIGTERM');
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

function tryRun(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return `(${cmd} is not installed: apt-get install ${cmd === 'nbdinfo' ? 'libnbd-bin' : 'qemu-utils'})`;
  return (r.stdout + r.stderr).trim();
}

function show() {
  const uri = `nbd://127.0.0.1:${port}/db`;
  console.log(`\n== site-a is serving volume db at ${uri}\n`);
  console.log(`$ nbdinfo ${uri}`);
  console.log(tryRun('nbdinfo', [uri]));
  console.log(`\n$ qemu-io -f raw -c 'write -P 0x5a 0 1M' -c flush -c 'read -P 0x5a 0 1M' ${uri}`);
  console.log(tryRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'flush', '-c', 'read -P 0x5a 0 1M', uri]));
  console.log(`\nTry it yourself:
  nbdinfo --map ${uri}
  qemu-img info ${uri}
  fio --name=t --ioengine=nbd --uri=${uri} --rw=randwrite --bs=4k --iodepth=32 --size=256M
Press Ctrl-C to stop the node (it stops cleanly and syncs the volume).`);
  if (process.env.OFFSITE_DEMO_ONCE) stop();
}
