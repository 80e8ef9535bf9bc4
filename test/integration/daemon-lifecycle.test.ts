// The daemon's life: kill -9 and restart keeps flushed data; SIGTERM mid-load
// exits 0 after in-flight requests; one daemon per state dir; bad config says where.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { OFFSITE_BIN, TestDaemon } from '../helpers/daemon.js';
import { must, run, sleep, tempDir } from '../helpers/run.js';

test('data written and flushed before kill -9 is there after restart', async () => {
  const d = await TestDaemon.create({ volumes: { disk: { size: '64MiB' } } });
  try {
    for (let cycle = 0; cycle < 3; cycle++) {
      const p = (0x30 + cycle).toString(16);
      await must('qemu-io', ['-f', 'raw', '-c', `write -P 0x${p} ${cycle}M 1M`, '-c', 'flush', d.qemuTarget('disk')]);
      await d.kill9();
      await d.start();
      for (let k = 0; k <= cycle; k++) {
        const r = await run('qemu-io', ['-f', 'raw', '-c', `read -P 0x${(0x30 + k).toString(16)} ${k}M 1M`, d.qemuTarget('disk')]);
        assert.doesNotMatch(r.stdout + r.stderr, /fail/i, `cycle ${cycle}, block ${k}`);
      }
    }
  } finally {
    await d.stop();
  }
});

test('the daemon runs 16 disk threads unless UV_THREADPOOL_SIZE says otherwise', async () => {
  // (scripts/test.js sets UV_THREADPOOL_SIZE for every test: taken out here, as an operator's shell has none.
  // An ES module entry started the pool at 4 threads before its first line ran: bin/offsite.js is CommonJS for that.)
  const d = await TestDaemon.create({ volumes: { disk: { size: '16MiB' } }, noStart: true });
  const saved = process.env.UV_THREADPOOL_SIZE;
  const threads = async (size: string | undefined): Promise<number> => {
    if (size === undefined) delete process.env.UV_THREADPOOL_SIZE;
    else process.env.UV_THREADPOOL_SIZE = size;
    try {
      await d.start();
    } finally {
      if (saved === undefined) delete process.env.UV_THREADPOOL_SIZE;
      else process.env.UV_THREADPOOL_SIZE = saved;
    }
    // (A disk call first, so the pool has started: an NBD read of the volume.)
    await must('nbdinfo', ['--size', d.uri('disk')]);
    const n = fs.readdirSync(`/proc/${d.pid}/task`).length;
    assert.equal(await d.stop(), 0, d.log);
    return n;
  };
  try {
    const unset = await threads(undefined);
    const four = await threads('4');
    // The same process but for the pool: the difference is the pool's threads.
    assert.equal(unset - four, 12, `threads with UV_THREADPOOL_SIZE unset: ${unset}; with 4: ${four}`);
  } finally {
    if (d.child) await d.stop();
  }
});

test('SIGTERM under load: in-flight requests finish, exit code 0, a restart serves again', async () => {
  const d = await TestDaemon.create({ volumes: { disk: { size: '128MiB' } } });
  const fio = spawn('fio', ['--name=load', '--ioengine=nbd', `--uri=${d.uri('disk')}`, '--rw=randwrite', '--bs=64k',
    '--iodepth=16', '--size=128M', '--time_based', '--runtime=30'], { stdio: 'ignore' });
  await sleep(1500);
  const code = await d.stop();
  assert.equal(code, 0, d.log);
  assert.match(d.log, /stopped cleanly/);
  if (fio.exitCode === null && fio.signalCode === null) await new Promise((r) => fio.once('exit', r));
  await d.start();
  assert.equal((await must('nbdinfo', ['--size', d.uri('disk')])).trim(), String(128 * 1024 * 1024));
  assert.equal(await d.stop(), 0);
});

test('a second daemon on the same state directory or volume is refused', async () => {
  const d = await TestDaemon.create({ volumes: { disk: { size: '1MiB' } } });
  try {
    const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', d.configFile]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /another offsite daemon is running with state directory/);
    // A different node sharing the volume file is refused too.
    const dir = tempDir('second');
    fs.writeFileSync(path.join(dir, 'offsite.yaml'),
      `node: other\nstate: ./state\nnbd: 127.0.0.1:0\nvolumes:\n  disk:\n    path: ${path.join(d.dir, 'disk.img')}\n    role: primary\n`);
    const r2 = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', path.join(dir, 'offsite.yaml')]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /in use by another process/);
  } finally {
    await d.stop();
  }
});

test('a broken config exits 2 and names the line; a size mismatch is explained', async () => {
  const dir = tempDir('badconf');
  const file = path.join(dir, 'offsite.yaml');
  fs.writeFileSync(file, 'node: a\nstate: ./s\nnbd: 127.0.0.1:0\nvolumes:\n  db:\n    path: ./db.img\n    size: lots\n    role: primary\n');
  const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /offsite\.yaml:7: volumes\.db\.size: "lots" is not a size/);
  assert.doesNotMatch(r.stderr, /\s+at /, 'no stack trace');
  fs.writeFileSync(path.join(dir, 'db.img'), Buffer.alloc(4096));
  fs.writeFileSync(file, 'node: a\nstate: ./s\nnbd: 127.0.0.1:0\nvolumes:\n  db:\n    path: ./db.img\n    size: 1MiB\n    role: primary\n');
  const r2 = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /db\.img is 4\.0 KiB \(4096 bytes\) but the config says 1\.0 MiB/);
  // $OFFSITE_CONFIG is the default when -c is not given.
  const r3 = await run(process.execPath, [OFFSITE_BIN, 'config'], { env: { ...process.env, OFFSITE_CONFIG: file } });
  assert.equal(r3.code, 0, r3.stderr);
  assert.match(r3.stdout, /config ok/);
});

// Issue 15, item 16: a "billion laughs" and a volume of no size are config errors
// (exit 2, with the line); a start that fails removes the image it made.
test('aliases of aliases and size: 0 exit 2 with the line; nothing is created', async () => {
  const dir = tempDir('laughs');
  const file = path.join(dir, 'offsite.yaml');
  const lines = ['node: a', 'state: ./s', 'nbd: 127.0.0.1:0', `l0: &a0 [${Array(9).fill('lol').join(', ')}]`];
  for (let i = 1; i <= 9; i++) lines.push(`l${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
  fs.writeFileSync(file, `${lines.join('\n')}\nvolumes:\n  db: { path: ./db.img, size: 1MiB, role: primary }\n`);
  for (const cmd of ['daemon', 'config']) {
    const r = await run(process.execPath, [OFFSITE_BIN, cmd, '-c', file], { timeoutMs: 20_000 });
    assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
    assert.match(r.stderr, /^offsite: \S+offsite\.yaml:7: \*a2: aliases expand to more than 100 values in all/);
  }
  fs.writeFileSync(file, 'node: a\nstate: ./s\nnbd: 127.0.0.1:0\nvolumes:\n  db:\n    path: ./db.img\n    size: 0\n    role: primary\n');
  const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /offsite\.yaml:7: volumes\.db\.size: a volume must be at least 4KiB \(one block\)/);
  assert.deepEqual(fs.readdirSync(dir), ['offsite.yaml'], 'no state folder, no image');
  // An existing empty file (no size: given) is refused by the daemon, and left as it was.
  fs.writeFileSync(path.join(dir, 'db.img'), '');
  fs.writeFileSync(file, 'node: a\nstate: ./s\nnbd: 127.0.0.1:0\nvolumes:\n  db:\n    path: ./db.img\n    role: primary\n');
  const r2 = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
  assert.equal(r2.code, 1, r2.stderr);
  assert.match(r2.stderr, /volume db: \S+db\.img is 0 bytes; a volume must be at least 4\.0 KiB \(one block\)/);
  assert.equal(fs.statSync(path.join(dir, 'db.img')).size, 0);
});

test('a start that fails removes the image it created, never one that was there', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const taken = (busy.address() as net.AddressInfo).port;
  try {
    const dir = tempDir('failed-start');
    const file = path.join(dir, 'offsite.yaml');
    const image = path.join(dir, 'db.img');
    const config = (nbd: string, api = ''): string =>
      `node: a\nstate: ./s\nnbd: ${nbd}\n${api}volumes:\n  db:\n    path: ./db.img\n    size: 1MiB\n    role: primary\n`;
    // The NBD listener fails (its port is taken): the image made a moment before goes.
    fs.writeFileSync(file, config(`127.0.0.1:${taken}`));
    const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot listen for NBD on \S+: address already in use/);
    assert.match(r.stdout + r.stderr, /removed \S+db\.img, created by this start that failed/);
    assert.equal(fs.existsSync(image), false, 'the image this start made is gone');
    // The API listener fails, after NBD listens: the same.
    fs.writeFileSync(file, config('127.0.0.1:0', `api: 127.0.0.1:${taken}\n`));
    const r2 = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
    assert.equal(r2.code, 1, r2.stderr);
    assert.equal(fs.existsSync(image), false, 'gone after a later failure too');
    // An image that was there before stays, bytes and all.
    fs.writeFileSync(image, Buffer.alloc(1 << 20, 0x5a));
    for (const c of [config(`127.0.0.1:${taken}`), config('127.0.0.1:0', `api: 127.0.0.1:${taken}\n`)]) {
      fs.writeFileSync(file, c);
      const r3 = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
      assert.equal(r3.code, 1, r3.stderr);
      assert.doesNotMatch(r3.stdout + r3.stderr, /removed/);
      assert.deepEqual(fs.readFileSync(image), Buffer.alloc(1 << 20, 0x5a), 'the existing image is untouched');
    }
  } finally {
    busy.close();
  }
});

test('an iSCSI port in use stops the daemon at start with the reason, and frees what it opened (the NBD port)', async () => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
  const port = (busy.address() as net.AddressInfo).port;
  const nbdPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const dir = tempDir('iscsi-busy');
  try {
    fs.writeFileSync(path.join(dir, 'offsite.yaml'), `node: lone
state: ./state
nbd: 127.0.0.1:${nbdPort}
iscsi: { listen: "127.0.0.1:${port}", iqn: iqn.2026-12.com.example:lone }
volumes:
  disk: { path: ./disk.img, size: 4MiB, role: primary }
`);
    const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', path.join(dir, 'offsite.yaml')], {
      timeoutMs: 30_000, env: { ...process.env, OFFSITE_LOG: 'json' },
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`offsite: cannot listen for iSCSI on 127\\.0\\.0\\.1:${port}: address already in use\\n`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(fs.existsSync(path.join(dir, 'disk.img')), false, 'the image it made is removed');
    // The NBD port it had opened is free again.
    await new Promise<void>((resolve, reject) => {
      const s = net.createServer().once('error', reject).listen(nbdPort, '127.0.0.1', () => s.close(() => resolve()));
    });
  } finally {
    busy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
