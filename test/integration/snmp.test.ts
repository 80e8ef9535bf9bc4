// The SNMP agent (docs/SNMP.md) against net-snmp's own tools: snmptranslate loads
// OFFSITE-MIB without a warning; snmpwalk reads the volume table over v2c and over
// SNMPv3 authPriv (SHA + AES) with the numbers of /api/v1/status; snmpset over v3
// takes and releases a checkpoint on the secondary, and is refused on the primary
// and with the read-only community; the history columns of a secondary keeping
// history (0 on the primary); snmptrapd receives offsiteLinkDown when the peer is
// killed, offsiteJournalFilling when the journal then passes three quarters, and
// offsiteLinkUp when the peer is back.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import type { NodeStatus } from '../../src/contract/status.js';
import { engineIdOf } from '../../src/snmp/snmp.js';
import { freePort, freeUdpPort, type TestDaemon } from '../helpers/daemon.js';
import { startPair, type Pair } from '../helpers/pair.js';
import { must, run, tempDir, waitFor } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const MIBS = ['-M', `+${path.join(ROOT, 'node_modules/net-snmp/lib/mibs')}:${path.join(ROOT, 'mibs')}`, '-m', 'OFFSITE-MIB'];
const COMMUNITY = 'offsite-ro';
const USER = { name: 'ops', auth: 'opsauth-123', priv: 'opspriv-456' };
const V2C = ['-v2c', '-c', COMMUNITY];
const V3 = ['-v3', '-l', 'authPriv', '-u', USER.name, '-a', 'SHA', '-A', USER.auth, '-x', 'AES', '-X', USER.priv];

/** The net-snmp tools keep their state here, not in /var/lib/snmp. */
const toolDir = tempDir('snmp-tools');
fs.mkdirSync(path.join(toolDir, 'cert_indexes')); // (else the first tool says it created it)
const env = { ...process.env, SNMP_PERSISTENT_DIR: toolDir, SNMPCONFPATH: toolDir };

const snmpKeys = (port: number, traps = ''): string => `snmp:
  listen: 127.0.0.1:${port}
  community: ${COMMUNITY}
  users:
    - { name: ${USER.name}, auth_protocol: sha, auth_key: "${USER.auth}", priv_protocol: aes, priv_key: "${USER.priv}" }
${traps}`;

/** `snmpwalk -OQUet`: name = value, enums as numbers, no units, timeticks raw. */
async function walk(auth: string[], port: number, oid: string): Promise<Map<string, string>> {
  const out = await must('snmpwalk', [...auth, '-OQUet', '-t', '2', '-r', '2', ...MIBS, `127.0.0.1:${port}`, oid], { env });
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const x = /^OFFSITE-MIB::(\S+) = (.*)$/.exec(line);
    if (x && !x[2]!.startsWith('No more variables')) m.set(x[1]!, x[2]!.replace(/^"(.*)"$/, '$1'));
  }
  return m;
}

async function get(auth: string[], port: number, oid: string): Promise<string> {
  return (await must('snmpget', [...auth, '-OQUvet', '-t', '2', '-r', '2', ...MIBS, `127.0.0.1:${port}`, oid], { env })).trim().replace(/^"(.*)"$/, '$1');
}

function set(auth: string[], port: number, oid: string, value: number, type = 'i'): ReturnType<typeof run> {
  return run('snmpset', [...auth, '-t', '5', '-r', '1', ...MIBS, `127.0.0.1:${port}`, oid, type, String(value)], { env });
}

async function status(d: TestDaemon): Promise<NodeStatus> {
  return (await (await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`)).json()) as NodeStatus;
}

async function checkpoints(d: TestDaemon): Promise<Array<{ volume: string; label: string }>> {
  const r = (await (await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/checkpoints`)).json()) as { checkpoints: Array<{ volume: string; label: string }> };
  return r.checkpoints;
}

test('OFFSITE-MIB loads in net-snmp\'s tools without a warning', async () => {
  const r = await run('snmptranslate', [...MIBS, '-Tp', 'OFFSITE-MIB::offsiteMIB'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'no MIB parse warnings');
  assert.match(r.stdout, /\+--offsiteMIB\(32473\)/);
  assert.match(r.stdout, /-RW- EnumVal {3}offsiteVolumeCheckpointControl\(14\)/);
  assert.match(r.stdout, /Counter64 offsiteVolumeBacklogBytes\(6\)/);
  assert.match(r.stdout, /Gauge {5}offsiteVolumeHistoryPoints\(17\)/);
  assert.match(r.stdout, /Counter64 offsiteVolumeHistoryBytes\(18\)/);
  assert.match(r.stdout, /Unsigned {2}offsiteVolumeHistoryOldest\(19\)/);
  assert.match(r.stdout, /Counter {3}offsiteVolumeHistoryDropped\(20\)/);
  assert.match(r.stdout, /Counter64 offsiteVolumeSize\(21\)/);
  const oid = await must('snmptranslate', [...MIBS, '-On', 'OFFSITE-MIB::offsiteLinkDown'], { env });
  assert.equal(oid.trim(), '.1.3.6.1.4.1.32473.0.1');
});

test('SNMP: walks over v2c and v3, a checkpoint by snmpset on the secondary, refusals, link traps', async (t) => {
  const [portA, portB, trapPort] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
  // snmptrapd in the foreground, printing each notification on one line with its security.
  const trapDir = tempDir('snmptrapd');
  const conf = path.join(trapDir, 'snmptrapd.conf');
  fs.writeFileSync(conf, `disableAuthorization yes\ncreateUser -e 0x${engineIdOf('site-a')} ${USER.name} SHA ${USER.auth} AES ${USER.priv}\n`);
  const trapd = spawn('snmptrapd', ['-f', '-Lo', '-n', '-C', '-c', conf, ...MIBS, '-F', 'TRAP [%P] %V\t%v\n', `127.0.0.1:${trapPort}`], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let traps = '';
  trapd.stdout.on('data', (b: Buffer) => { traps += b.toString(); });
  trapd.stderr.on('data', (b: Buffer) => { traps += b.toString(); });
  trapd.on('error', (e) => { traps += `snmptrapd: ${e.message}\n`; });
  const trapTargets = `  traps:
    - { address: "127.0.0.1:${trapPort}", community: public }
    - { address: "127.0.0.1:${trapPort}", user: ${USER.name} }
`;
  let pair: Pair | null = null;
  try {
    await waitFor('snmptrapd to start', () => traps.includes('NET-SNMP version'), 15_000);
    pair = await startPair({
      size: '16MiB', journal: '32MiB', nodeKeysA: snmpKeys(portA, trapTargets), nodeKeysB: snmpKeys(portB),
      volumeKeysB: 'history: { keep: 24h, max: 1GiB }',
    });
    const p = pair;
    assert.match(p.a.log, /SNMP agent on 127\.0\.0\.1:\d+ \(v2c read-only, 1 v3 user; notifications to 2 targets\)/);
    // (After the first sync: a write during it may be sent by the sync round instead of journaled.)
    await p.drained();
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 3M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();

    await t.test('snmpwalk over v2c on the primary: the numbers of /api/v1/status', async () => {
      const before = (await status(p.a)).volumes[0]!;
      const w = await walk(V2C, portA, 'OFFSITE-MIB::offsiteMIB');
      const after = await status(p.a);
      const v = after.volumes[0]!;
      assert.equal(w.get('offsiteNodeName.0'), 'site-a');
      assert.equal(w.get('offsiteNodeVersion.0'), after.version);
      assert.equal(w.get('offsiteNodeVolumeCount.0'), '1');
      assert.equal(w.get('offsiteVolumeName.1'), 'db');
      assert.equal(w.get('offsiteVolumeRole.1'), '1'); // primary
      assert.equal(w.get('offsiteVolumePeer.1'), 'site-b');
      assert.equal(w.get('offsiteVolumeLinkState.1'), '1'); // connected
      assert.equal(w.get('offsiteVolumeBacklogBytes.1'), String(v.backlogBytes));
      assert.equal(w.get('offsiteVolumeLagSeconds.1'), String(Math.round(v.lagSeconds)));
      assert.equal(w.get('offsiteVolumeConsistent.1'), '1'); // true
      assert.equal(w.get('offsiteVolumeTracking.1'), '2'); // journal
      assert.equal(w.get('offsiteVolumeCheckpointState.1'), '1'); // none
      assert.equal(w.get('offsiteVolumeCheckpointControl.1'), '1'); // none
      assert.equal(w.get('offsiteVolumeHostBytes.1'), String(v.hostBytes));
      assert.ok(v.hostBytes >= 3 << 20, `the host wrote 3 MiB (${v.hostBytes})`);
      const wire = Number(w.get('offsiteVolumeWireBytes.1'));
      assert.ok(wire > 0 && wire >= before.wireBytes && wire <= v.wireBytes, `wire bytes ${wire} within ${before.wireBytes}..${v.wireBytes}`);
      const uptime = Number(w.get('offsiteNodeUptime.0'));
      assert.ok(uptime > 0 && uptime <= after.uptimeSeconds * 100, `uptime ${uptime}`);
      // A primary keeps no history: its history columns are 0.
      assert.equal(v.history, null);
      for (const c of ['Points', 'Bytes', 'Oldest', 'Dropped']) assert.equal(w.get(`offsiteVolumeHistory${c}.1`), '0', c);
      // Each peer of the volume (docs/PEERS.md), indexed by volume and peer: site-b, drained.
      const peer = v.peers[0]!;
      assert.equal(v.peers.length, 1);
      assert.equal(w.get('offsitePeerName.1.1'), 'site-b');
      assert.equal(w.get('offsitePeerLinkState.1.1'), '1'); // connected
      assert.equal(w.get('offsitePeerBacklogBytes.1.1'), '0');
      assert.equal(w.get('offsitePeerAckedSeq.1.1'), String(peer.ackedSeq));
      assert.ok(peer.ackedSeq > 0);
      assert.equal(w.get('offsitePeerResyncing.1.1'), '2'); // false
      assert.equal(w.get('offsitePeerDetached.1.1'), '2'); // false: site-b follows the journal
      assert.equal(w.get('offsitePeerFirstSyncWaiting.1.1'), '2'); // false: its first sync is done
      assert.equal(w.has('offsitePeerName.1.2'), false, 'one peer, one row');
    });

    await t.test('snmpwalk over v3 authPriv (SHA, AES) on the secondary', async () => {
      const w = await walk(V3, portB, 'OFFSITE-MIB::offsiteVolumeTable');
      const v = (await status(p.b)).volumes[0]!;
      assert.equal(w.get('offsiteVolumeName.1'), 'db');
      assert.equal(w.get('offsiteVolumeRole.1'), '2'); // secondary
      const peers = await walk(V3, portB, 'OFFSITE-MIB::offsitePeerTable');
      assert.equal(peers.get('offsitePeerName.1.1'), 'site-a', 'a secondary\'s peer is its primary');
      assert.equal(w.get('offsiteVolumePeer.1'), 'site-a');
      assert.equal(w.get('offsiteVolumeLinkState.1'), '1');
      assert.equal(w.get('offsiteVolumeTracking.1'), '4'); // replica
      assert.equal(w.get('offsiteVolumeConsistent.1'), '1');
      assert.equal(w.get('offsiteVolumeBacklogBytes.1'), String(v.backlogBytes));
      assert.equal(w.get('offsiteVolumeHostBytes.1'), String(v.hostBytes));
      assert.ok(v.hostBytes > 0);
      // The history window (docs/HISTORY.md), as status has it; the oldest point in Unix seconds.
      const h = v.history!;
      assert.ok(h && h.points > 0 && h.oldest, JSON.stringify(h));
      assert.equal(w.get('offsiteVolumeHistoryPoints.1'), String(h.points));
      assert.equal(w.get('offsiteVolumeHistoryBytes.1'), String(h.bytes));
      assert.equal(w.get('offsiteVolumeHistoryOldest.1'), String(Math.floor(h.oldest!.time / 1000)));
      const age = Date.now() / 1000 - Number(w.get('offsiteVolumeHistoryOldest.1'));
      assert.ok(age >= 0 && age < 3600, `the oldest point is of this test's run (${age} s ago)`);
      assert.equal(w.get('offsiteVolumeHistoryDropped.1'), '0');
      assert.equal(w.get('offsiteVolumeSize.1'), String(v.sizeBytes));
      assert.equal(await get(V2C, portB, 'OFFSITE-MIB::offsiteVolumeHistoryPoints.1'), String((await status(p.b)).volumes[0]!.history!.points));
      // A wrong privacy key reads nothing.
      const bad = await run('snmpget',
        [...V3.slice(0, -1), 'wrong-priv-key', '-t', '1', '-r', '0', ...MIBS, `127.0.0.1:${portB}`, 'OFFSITE-MIB::offsiteNodeName.0'], { env });
      assert.notEqual(bad.code, 0);
    });

    await t.test('a set with the read-only community is refused, and nothing happens', async () => {
      const r = await set(V2C, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 2);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Reason: noAccess/);
      assert.deepEqual(await checkpoints(p.b), []);
      assert.equal((await status(p.b)).volumes[0]!.checkpoint, null);
      await waitFor('the log line', () => /SNMP: refused a set by the v2c community from 127\.0\.0\.1:\d+: noAccess/.test(p.b.log), 10_000);
    });

    await t.test('a checkpoint create on the primary is refused: inconsistentValue, with the reason in the log', async () => {
      const r = await set(V3, portA, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 2);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Reason: inconsistentValue/);
      await waitFor('the refusal in the log', () => /refused a checkpoint create on db by SNMPv3 user ops/.test(p.a.log), 10_000);
      assert.match(p.a.log, /refused a checkpoint create on db by SNMPv3 user ops from 127\.0\.0\.1:\d+: volume db is primary on this node; a checkpoint is taken on the node that holds the secondary \(site-b\)/);
      assert.deepEqual(await checkpoints(p.a), []);
      // Neither none(1) nor held(4) can be written; nor a volume that does not exist.
      assert.match((await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 4)).stderr, /Reason: wrongValue/);
      assert.match((await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.9', 2)).stderr, /Reason: noCreation/);
      assert.match((await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeLagSeconds.1', 2, 'u')).stderr, /Reason: notWritable/);
      assert.deepEqual(await checkpoints(p.b), []);
    });

    await t.test('snmpset over v3 takes a checkpoint on the secondary and releases it', async () => {
      const r = await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 2);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /offsiteVolumeCheckpointControl\.1 = INTEGER: create\(2\)/);
      const cps = await checkpoints(p.b);
      assert.equal(cps.length, 1);
      assert.equal(cps[0]!.volume, 'db');
      assert.match(cps[0]!.label, /^snmp-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const listed = await cli(p.b, 'checkpoint', 'list');
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, new RegExp(`db {2}"${cps[0]!.label}"`));
      assert.equal(await get(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1'), '4'); // held
      assert.equal(await get(V2C, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointState.1'), '2'); // held
      assert.equal(await get(V2C, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointLabel.1'), cps[0]!.label);
      // (The log is JSON: the label's quotes are escaped.)
      await waitFor('the create in the log', () => /SNMP: checkpoint create on db by SNMPv3 user ops/.test(p.b.log), 10_000);
      assert.match(p.b.log, /SNMP: checkpoint create on db by SNMPv3 user ops from 127\.0\.0\.1:\d+: checkpoint \\"snmp-[^\\"]+\\" of db held at record \d+/);
      // A second create while one is held: refused.
      assert.match((await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 2)).stderr, /Reason: inconsistentValue/);

      const rel = await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 3);
      assert.equal(rel.code, 0, rel.stderr);
      assert.deepEqual(await checkpoints(p.b), []);
      assert.equal(await get(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1'), '1'); // none
      assert.match((await set(V3, portB, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 3)).stderr, /Reason: inconsistentValue/);
    });

    await t.test('snmptrapd: offsiteLinkDown when the peer is killed, offsiteLinkUp when it is back, over v2c and v3', async () => {
      const lines = (): string[] => traps.split('\n').filter((l) => l.startsWith('TRAP '));
      const isNote = (l: string, name: string): boolean => l.includes(`OID: OFFSITE-MIB::${name}\t`);
      // The first link up after the start has come (one per target).
      await waitFor('the first offsiteLinkUp', () => lines().filter((l) => isNote(l, 'offsiteLinkUp')).length >= 2, 30_000);
      const seen = lines().length;
      await p.b.kill9();
      await waitFor('offsiteLinkDown', () => lines().slice(seen).filter((l) => isNote(l, 'offsiteLinkDown')).length >= 2, 30_000);
      const down = lines().slice(seen).filter((l) => isNote(l, 'offsiteLinkDown'));
      assert.ok(down.some((l) => l.startsWith('TRAP [TRAP2, SNMP v2c, community public]')), down.join('\n'));
      assert.ok(down.some((l) => l.startsWith(`TRAP [TRAP2, SNMP v3, user ${USER.name}`)), down.join('\n'));
      for (const l of down) {
        assert.match(l, /OFFSITE-MIB::offsiteVolumeName\.1 = STRING: db\t/);
        assert.match(l, /OFFSITE-MIB::offsiteVolumePeer\.1 = STRING: site-b\t/);
        assert.match(l, /OFFSITE-MIB::offsiteVolumeLinkState\.1 = INTEGER: disconnected\(2\)\t/);
        assert.match(l, /OFFSITE-MIB::offsiteVolumeBacklogBytes\.1 = Counter64: \d+ bytes\t/);
        assert.match(l, /OFFSITE-MIB::offsiteNotifyText\.0 = STRING: volume db: link to site-b down; backlog /);
      }
      // With the peer down, 25 MiB written fill the 32 MiB journal past three quarters: told before it overflows.
      const beforeFill = lines().length;
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x61 0 16M', '-c', 'write -P 0x62 0 9M', '-c', 'flush', p.a.uri('db')]);
      await waitFor('offsiteJournalFilling', () => lines().slice(beforeFill).filter((l) => isNote(l, 'offsiteJournalFilling')).length >= 2, 30_000);
      for (const l of lines().slice(beforeFill).filter((x) => isNote(x, 'offsiteJournalFilling'))) {
        assert.match(l, /OFFSITE-MIB::offsiteVolumeName\.1 = STRING: db\t/);
        assert.match(l, /OFFSITE-MIB::offsiteVolumeLinkState\.1 = INTEGER: disconnected\(2\)\t/);
        assert.match(l, /OFFSITE-MIB::offsiteNotifyText\.0 = STRING: volume db: journal \d+ MiB of 32 MiB \(\d+%\), link to site-b down; full, /);
      }
      const afterDown = lines().length;
      await p.b.start();
      await waitFor('offsiteLinkUp', () => lines().slice(afterDown).filter((l) => isNote(l, 'offsiteLinkUp')).length >= 2, 90_000);
      const up = lines().slice(afterDown).find((l) => isNote(l, 'offsiteLinkUp'))!;
      assert.match(up, /OFFSITE-MIB::offsiteVolumeLinkState\.1 = INTEGER: connected\(1\)\t/);
      assert.match(up, /OFFSITE-MIB::offsiteNotifyText\.0 = STRING: volume db: link to site-b up/);
      // Nothing else was sent: no overflow, lag, role or split-brain notification.
      for (const l of lines()) assert.match(l, /OID: OFFSITE-MIB::offsite(LinkUp|LinkDown|JournalFilling)\t/);
    });
  } finally {
    await pair?.stop();
    trapd.kill('SIGTERM');
    fs.rmSync(trapDir, { recursive: true, force: true });
  }
});

test('SNMP: the consistency group table on both sites, the values of /api/v1/status', async () => {
  const [portA, portB] = [await freeUdpPort(), await freeUdpPort()];
  const wal = (peer: string, role: string): string =>
    `  wal: { path: ./wal.img, size: 16MiB, role: ${role}, peer: ${peer}, journal: 64MiB }\ngroups:\n  erp: [db, wal]\n`;
  const pair = await startPair({
    size: '16MiB', nodeKeysA: `${wal('site-b', 'primary')}${snmpKeys(portA)}`, nodeKeysB: `${wal('site-a', 'secondary')}${snmpKeys(portB)}`,
  });
  try {
    await pair.drained();
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'flush', pair.a.uri('db')]);
    await pair.drained();
    for (const [d, port, role] of [[pair.a, portA, '1'], [pair.b, portB, '2']] as const) {
      const w = await walk(V2C, port, 'OFFSITE-MIB::offsiteGroupTable');
      const g = (await status(d)).groups![0]!;
      assert.equal(w.get('offsiteGroupName.1'), 'erp');
      assert.equal(w.get('offsiteGroupMembers.1'), 'db,wal');
      assert.equal(w.get('offsiteGroupRole.1'), role);
      assert.equal(w.get('offsiteGroupConsistent.1'), g.consistent ? '1' : '2', `${g.reason}`);
      assert.equal(w.get('offsiteGroupReason.1') ?? '', g.reason ?? '');
      assert.ok(Number(w.get('offsiteGroupPoint.1')) > 2 ** 32, `a group point (ms since 1970) past 2^32: ${w.get('offsiteGroupPoint.1')}`);
      assert.equal(w.has('offsiteGroupName.2'), false, 'one group, one row');
    }
  } finally {
    await pair.stop();
  }
});

test('an SNMP port in use stops the daemon at start with the reason', async () => {
  const busy = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => busy.bind(0, '127.0.0.1', () => resolve()));
  const port = busy.address().port;
  const dir = tempDir('snmp-busy');
  try {
    fs.writeFileSync(path.join(dir, 'offsite.yaml'), `node: lone
state: ./state
nbd: 127.0.0.1:${await freePort()}
volumes:
  disk: { path: ./disk.img, size: 4MiB, role: primary }
snmp:
  listen: 127.0.0.1:${port}
  community: public
`);
    const r = await run(process.execPath, [path.join(ROOT, 'bin/offsite.js'), 'daemon', '-c', path.join(dir, 'offsite.yaml')], {
      timeoutMs: 30_000, env: { ...process.env, OFFSITE_LOG: 'json' },
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`offsite: cannot listen for SNMP on 127\\.0\\.0\\.1:${port}: address already in use\\n`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally {
    busy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.after(() => fs.rmSync(toolDir, { recursive: true, force: true }));
