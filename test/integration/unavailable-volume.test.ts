// A volume that does not open is set aside; the node serves the others (src/node/set-aside.ts).
// - One daemon, two volumes, one of them on a folder that is gone: the daemon starts, the
//   other volume takes writes from qemu-io, the missing one is refused to nbdinfo and said
//   in the status, the metrics, SNMP (snmpget, and snmptrapd's offsiteVolumeUnavailable) and an action's
//   refusal; a reload (SIGHUP) with the folder still gone tries again (notified again); once the config
//   says where the file now is, a reload opens it there (offsiteVolumeAvailable) and qemu-io writes it.
// - A pair whose secondary cannot open one of two volumes: the link comes up and serves
//   the other (its Hello lists the volume as not opened, with why); the primary's status
//   says so; after a reload at the secondary the volume links, syncs and compares equal.
// - A start at which no volume opens fails, as before, with the volume's reason.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { OFFSITE_BIN, TestDaemon, freeUdpPort } from '../helpers/daemon.js';
import { cli } from '../helpers/cli.js';
import { startPair } from '../helpers/pair.js';
import { must, run, tempDir, waitFor } from '../helpers/run.js';
import type { NodeStatus } from '../../src/contract/status.js';
import { chromium } from 'playwright-core';

const ROOT = new URL('../../../', import.meta.url).pathname;
const MIB_DIRS = `${path.join(ROOT, 'node_modules/net-snmp/lib/mibs')}:${path.join(ROOT, 'mibs')}`;
/** net-snmp's tools keep their state here, not in /var/lib/snmp. */
const snmpTools = tempDir('snmp-tools');
fs.mkdirSync(path.join(snmpTools, 'cert_indexes'));
const SNMP_ENV = { ...process.env, SNMP_PERSISTENT_DIR: snmpTools, SNMPCONFPATH: snmpTools };

async function status(d: TestDaemon): Promise<NodeStatus> {
  const r = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`);
  return (await r.json()) as NodeStatus;
}

test('a volume whose folder is gone is set aside: the other is served; a reload opens it where the config now puts it', async (t) => {
  const dir = tempDir('unavailable');
  const [snmpPort, trapPort] = [await freeUdpPort(), await freeUdpPort()];
  // snmptrapd in the foreground, one line per notification.
  const trapd = spawn('snmptrapd', ['-f', '-Lo', '-n', '-C', '-c', '/dev/null', '-M', `+${MIB_DIRS}`, '-m', 'OFFSITE-MIB',
    '--disableAuthorization=yes', '-F', 'TRAP %V\t%v\n', `127.0.0.1:${trapPort}`], { env: SNMP_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => trapd.kill());
  let traps = '';
  trapd.stdout.on('data', (b: Buffer) => { traps += b.toString(); });
  trapd.stderr.on('data', (b: Buffer) => { traps += b.toString(); });
  trapd.on('error', (e) => { traps += `snmptrapd: ${e.message}\n`; });
  await waitFor('snmptrapd to start', () => traps.includes('NET-SNMP version'), 15_000);
  const notes = (name: string): string[] => traps.split('\n').filter((l) => l.startsWith('TRAP ') && l.includes(`OFFSITE-MIB::${name}\t`));
  const d = await TestDaemon.create({
    dir, noStart: true,
    yaml: (ports) => `node: site-a
state: ./state
nbd: 127.0.0.1:${ports.nbd}
api: 127.0.0.1:${ports.api}
snmp:
  listen: "127.0.0.1:${snmpPort}"
  community: offsite-ro
  traps: [{ address: "127.0.0.1:${trapPort}", community: public }]
volumes:
  good: { path: ./good.img, size: 16MiB, role: primary }
  lost: { path: ./gone/lost.img, size: 16MiB, role: primary }
`,
  });
  await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile]); // (the API's token)
  await d.start();
  try {
    assert.match(d.log, /volume lost is not served: [^\n]*ENOENT[^\n]*offsite reload/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'flush', d.uri('good')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 0 1M', d.uri('good')]);
    const refused = await run('nbdinfo', [d.uri('lost')]);
    assert.notEqual(refused.code, 0, 'nbdinfo reached a volume that did not open');

    const s = await status(d);
    assert.deepEqual(s.volumes.map((v) => v.name), ['good']);
    assert.equal(s.unavailable?.length, 1);
    assert.equal(s.unavailable![0]!.name, 'lost');
    assert.match(s.unavailable![0]!.error, /ENOENT/);
    assert.equal(s.unavailable![0]!.attempts, 1);
    const text = await cli(d, 'status');
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /1 volume \(1 primary, 0 secondary\): 1 not open here/);
    assert.match(text.stdout, /volume lost NOT SERVED: it did not open [^\n]*ENOENT[^\n]*offsite reload/);
    // SNMP (net-snmp's snmpget): the count and the reason, beside a volume table of one row.
    const snmp = async (oid: string): Promise<string> => (await must('snmpget', [
      '-v2c', '-c', 'offsite-ro', '-OQUvet', '-t', '2', '-r', '2', '-M', `+${MIB_DIRS}`, '-m', 'OFFSITE-MIB', `127.0.0.1:${snmpPort}`, oid,
    ], { env: SNMP_ENV })).trim().replace(/^"(.*)"$/, '$1');
    assert.equal(await snmp('OFFSITE-MIB::offsiteNodeUnavailableCount.0'), '1');
    assert.match(await snmp('OFFSITE-MIB::offsiteNodeUnavailable.0'), /^lost: .*ENOENT/);
    assert.equal(await snmp('OFFSITE-MIB::offsiteNodeVolumeCount.0'), '1');
    const metrics = await (await fetch(`http://127.0.0.1:${d.apiPort}/metrics`)).text();
    assert.match(metrics, /^offsite_volume_unavailable\{volume="lost"\} 1$/m);
    const token = fs.readFileSync(path.join(dir, 'state', 'api.token'), 'utf8').trim();
    const action = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/volumes/lost/pause`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}',
    });
    assert.equal(action.status, 503);
    assert.match(((await action.json()) as { error: string }).error, /volume lost is not served on node site-a: it did not open \(.*ENOENT/);

    // snmptrapd: the volume set aside at the start, with the scalars and the reason.
    await waitFor('offsiteVolumeUnavailable', () => notes('offsiteVolumeUnavailable').length === 1, 15_000);
    const first = notes('offsiteVolumeUnavailable')[0]!;
    assert.match(first, /offsiteNodeUnavailableCount\.0 = Gauge32: 1\t/);
    assert.match(first, /offsiteNotifyText\.0 = STRING: "?volume lost is not served: it did not open: [^\t]*ENOENT/);

    // A reload while the folder is still gone: tried again, still set aside, the try counted and notified.
    process.kill(d.pid!, 'SIGHUP');
    await waitFor('the second try', async () => (await status(d)).unavailable?.[0]?.attempts === 2, 15_000);
    await waitFor('a second offsiteVolumeUnavailable', () => notes('offsiteVolumeUnavailable').length === 2, 15_000);
    assert.match(notes('offsiteVolumeUnavailable')[1]!, /it did not open \(2 tries\)/);
    // The file is now elsewhere (a disk mounted at another place): the config says so, and a reload opens it there.
    fs.mkdirSync(path.join(dir, 'moved'));
    fs.writeFileSync(d.configFile, fs.readFileSync(d.configFile, 'utf8').replace('./gone/lost.img', './moved/lost.img'));
    process.kill(d.pid!, 'SIGHUP');
    await waitFor('lost to open', async () => ((await status(d)).unavailable ?? []).length === 0, 15_000);
    assert.match(d.log, /config reloaded: [^\n]*volume lost: its file is now [^\n]*moved\/lost\.img/);
    assert.match(d.log, /volume lost: opened at a reload; served as primary/);
    assert.ok(fs.statSync(path.join(dir, 'moved', 'lost.img')).size > 0, 'the volume file was made where the config now puts it');
    await waitFor('offsiteVolumeAvailable', () => notes('offsiteVolumeAvailable').length === 1, 15_000);
    assert.match(notes('offsiteVolumeAvailable')[0]!, /offsiteVolumeName\.2 = STRING: "?lost"?\t.*offsiteNodeUnavailableCount\.0 = Gauge32: 0\t/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x6b 0 1M', '-c', 'flush', d.uri('lost')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x6b 0 1M', d.uri('lost')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 0 1M', d.uri('good')]);
    assert.deepEqual((await status(d)).volumes.map((v) => v.name), ['good', 'lost'], 'in the config\'s order');
    assert.equal(await snmp('OFFSITE-MIB::offsiteNodeUnavailableCount.0'), '0');
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('a start at which no volume opens fails with its reason', async () => {
  const d = await TestDaemon.create({ volumes: { lost: { size: '16MiB', path: './gone/lost.img' } }, noStart: true });
  await assert.rejects(d.start(), /ENOENT/);
});

test('a secondary that cannot open one of two volumes links the other; the primary is told why; a reload there brings it in', async () => {
  const p = await startPair({
    size: '64MiB', journal: '256MiB',
    volumesA: '  wal: { path: ./wal.img, size: 16MiB, role: primary, peer: site-b, journal: 64MiB }',
    volumesB: '  wal: { path: ./gone/wal.img, size: 16MiB, role: secondary, peer: site-a, journal: 64MiB }',
  });
  try {
    assert.match(p.b.log, /volume wal is not served/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', p.a.uri('db')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 2M', '-c', 'flush', p.a.uri('wal')]);
    // db replicates over the link that wal's absence did not refuse.
    await waitFor('db drained', async () => {
      const db = (await status(p.a)).volumes.find((v) => v.name === 'db')!;
      const replica = (await status(p.b)).volumes.find((v) => v.name === 'db')!;
      return db.link === 'connected' && db.backlogBytes === 0 && !db.resyncing && !replica.resyncing && replica.consistent;
    });
    const wal = (await status(p.a)).volumes.find((v) => v.name === 'wal')!;
    assert.match(wal.peers[0]!.unavailable ?? '', /ENOENT/);
    assert.ok(wal.backlogBytes > 0, 'wal kept its backlog');
    const text = await cli(p.a, 'status');
    assert.match(text.stdout, /volume wal NOT OPEN ON site-b: [^\n]*ENOENT/);
    assert.match(p.a.log, /volume wal: site-b could not open it/);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
    // Both dashboards say it, in headless Chromium: site-b lists wal as not served, site-a's card of wal says where it is not open.
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${p.b.apiPort}/`);
      await page.getByTestId('unavailable').getByText(/ENOENT/).waitFor({ timeout: 15_000 });
      assert.match(await page.getByTestId('unavailable').innerText(), /wal: .*ENOENT.*reload/s);
      await page.goto(`http://127.0.0.1:${p.a.apiPort}/`);
      await page.getByText('not open on site-b').waitFor({ timeout: 15_000 });
      assert.ok(await page.locator('#unavailable-section').isHidden(), 'site-a opened every volume');
    } finally {
      await browser.close();
    }

    fs.mkdirSync(path.join(p.b.dir, 'gone'));
    process.kill(p.b.pid!, 'SIGHUP');
    await p.drained();
    assert.equal((await status(p.a)).volumes.find((v) => v.name === 'wal')!.peers[0]!.unavailable ?? null, null);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('wal'), p.b.uri('wal')]);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', p.a.uri('db'), p.b.uri('db')]);
  } finally {
    await p.stop();
  }
});

test('a consistency group\'s members are set aside together when one does not open, and open together at a reload', async () => {
  const dir = tempDir('unavailable-group');
  const d = await TestDaemon.create({
    dir, noStart: true,
    yaml: (ports) => `node: site-a
state: ./state
nbd: 127.0.0.1:${ports.nbd}
api: 127.0.0.1:${ports.api}
peers:
  site-b: { address: "127.0.0.1:7701" }
volumes:
  db: { path: ./db.img, size: 16MiB, role: primary, peer: site-b, journal: 64MiB }
  wal: { path: ./wal.img, size: 16MiB, role: primary, peer: site-b, journal: 64MiB }
  solo: { path: ./solo.img, size: 16MiB, role: primary, peer: site-b, journal: 64MiB }
groups:
  erp: [db, wal]
`,
  });
  await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile]);
  await d.start();
  await d.stop();
  const identity = path.join(dir, 'state', 'volumes', 'wal', 'identity.json');
  const good = fs.readFileSync(identity);
  fs.writeFileSync(identity, '{ not json');
  await d.start();
  try {
    const s = await status(d);
    assert.deepEqual(s.volumes.map((v) => v.name), ['solo']);
    const aside = new Map((s.unavailable ?? []).map((u) => [u.name, u.error]));
    assert.deepEqual([...aside.keys()].sort(), ['db', 'wal']);
    assert.match(aside.get('db')!, /consistency group erp: its member wal did not open \(.*\), and its members open together/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 1M', '-c', 'flush', d.uri('solo')]);
    // Still broken: a reload leaves both aside.
    process.kill(d.pid!, 'SIGHUP');
    await waitFor('the second try', async () => ((await status(d)).unavailable ?? []).every((u) => u.attempts === 2 && !u.opening), 15_000);
    assert.equal((await status(d)).volumes.length, 1);
    fs.writeFileSync(identity, good);
    process.kill(d.pid!, 'SIGHUP');
    await waitFor('both to open', async () => ((await status(d)).unavailable ?? []).length === 0, 15_000);
    assert.deepEqual((await status(d)).volumes.map((v) => v.name), ['db', 'wal', 'solo'], 'in the config\'s order');
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x44 0 1M', '-c', 'flush', d.uri('wal')]);
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('a volume set aside because its size: is wrong opens at a reload once the file says the right size', async () => {
  const dir = tempDir('unavailable-size');
  // The host's disk is 24 MiB; the config says 32 MiB, as a typo would.
  fs.writeFileSync(path.join(dir, 'logs.img'), Buffer.alloc(24 * 1024 * 1024, 0x3c));
  const d = await TestDaemon.create({
    dir, noStart: true,
    yaml: (ports) => `node: site-a
state: ./state
nbd: 127.0.0.1:${ports.nbd}
api: 127.0.0.1:${ports.api}
volumes:
  good: { path: ./good.img, size: 16MiB, role: primary }
  logs: { path: ./logs.img, size: 32MiB, role: primary, on_full: block }
`,
  });
  await d.start();
  try {
    assert.match(d.log, /volume logs is not served: \S+logs\.img is 24 MiB \(25165824 bytes\) but the config says 32 MiB[^\n]*fix size:/);
    fs.writeFileSync(d.configFile, fs.readFileSync(d.configFile, 'utf8').replace('size: 32MiB', 'size: 24MiB'));
    // (No identity, so no API token: SIGHUP, as an init script sends it.)
    process.kill(d.pid!, 'SIGHUP');
    await waitFor('the reload', () => /config reloaded: /.test(d.log), 15_000);
    assert.match(d.log, /config reloaded: [^\n]*volume logs: size taken \(it opens with it\)/);
    assert.doesNotMatch(d.log, /takes a restart/);
    await waitFor('logs opened at the reload', () => /volume logs: opened at a reload; served as primary \(24 MiB\)/.test(d.log), 30_000);
    // Its data is the host's, untouched; it takes writes.
    await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x3c 0 24M', '-c', 'write -P 0x4d 0 1M', '-c', 'flush', d.uri('logs')]);
  } finally {
    await d.stop();
  }
});
