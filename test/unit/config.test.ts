// Config errors name the key and the line.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { parseDuration, parseSize } from '../../src/units/units.js';
import { tempDir } from '../helpers/run.js';

const good = `node: site-a
state: ./state/site-a
nbd: 127.0.0.1:10809
volumes:
  db:
    path: ./data/db.img
    size: 1GiB
    role: primary
`;

function err(text: string): string {
  try {
    parseConfig(text, 'offsite.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  assert.fail('expected a ConfigError');
}

test('the example config parses; paths are relative to the file', () => {
  const c = parseConfig(good, '/etc/offsite/offsite.yaml');
  assert.equal(c.node, 'site-a');
  assert.equal(c.state, '/etc/offsite/state/site-a');
  assert.deepEqual(c.nbd, { kind: 'tcp', host: '127.0.0.1', port: 10809 });
  assert.equal(c.volumes[0]!.path, '/etc/offsite/data/db.img');
  assert.equal(c.volumes[0]!.size, 1 << 30);
});

test('unix socket listener', () => {
  const c = parseConfig(good.replace('127.0.0.1:10809', 'unix:/run/offsite.sock'), '/x/o.yaml');
  assert.deepEqual(c.nbd, { kind: 'unix', path: '/run/offsite.sock' });
});

test('a bad size names the key and its line', () => {
  assert.equal(err(good.replace('1GiB', '1 potato')),
    'offsite.yaml:7: volumes.db.size: "1 potato" is not a size; write it like 1GiB, 512MiB, 64KiB or a number of bytes');
});

test('an unknown key is named with its line', () => {
  assert.match(err(good.replace('    role: primary', '    role: primary\n    sise: 2GiB')), /^offsite\.yaml:9: volumes\.db\.sise: unknown key "sise"$/);
});

test('peers: a primary with several secondaries (docs/PEERS.md); peer: is the one-peer form', () => {
  const withPeers = (volume: string): string => `${good.replace('volumes:', 'peers:\n  site-b: { address: 127.0.0.1:7001 }\n' +
    '  site-c: { address: 127.0.0.1:7002 }\nvolumes:')}${volume}`;
  const two = parseConfig(withPeers('    peers: [site-b, site-c]\n'), 'offsite.yaml').volumes[0]!;
  assert.deepEqual(two.peers, ['site-b', 'site-c']);
  assert.equal(two.peer, 'site-b', 'the first peer stands for the volume in the one-peer fields');
  const one = parseConfig(withPeers('    peer: site-c\n'), 'offsite.yaml').volumes[0]!;
  assert.deepEqual(one.peers, ['site-c']);
  assert.deepEqual(parseConfig(good, 'offsite.yaml').volumes[0]!.peers, []);
  assert.equal(err(withPeers('    peer: site-b\n    peers: [site-c]\n')), 'offsite.yaml:13: volumes.db.peers: give peer: (one) or peers: (several), not both');
  assert.equal(err(withPeers('    peers: [site-b, site-b]\n')), 'offsite.yaml:12: volumes.db.peers: a peer is named twice');
  assert.equal(err(withPeers('    peers: [site-b, site-d]\n')), 'offsite.yaml:12: volumes.db.peers: no peer named "site-d" under peers:');
  assert.equal(err(withPeers('    peers: [site-a]\n')), 'offsite.yaml:12: volumes.db.peers: "site-a" is this node; a peer is another node');
  // A secondary lists the other members of its set: it follows whichever of them is primary (docs/PEERS.md).
  const set = parseConfig(withPeers('    peers: [site-b, site-c]\n').replace('role: primary', 'role: secondary'), 'offsite.yaml').volumes[0]!;
  assert.deepEqual([set.role, set.peers], ['secondary', ['site-b', 'site-c']]);
  assert.match(err(withPeers('    peers: []\n')), /^offsite\.yaml:12: volumes\.db\.peers: /);
});

test('a bad role, a missing key, a bad listener', () => {
  assert.match(err(good.replace('role: primary', 'role: boss')), /^offsite\.yaml:8: volumes\.db\.role: /);
  assert.match(err(good.replace('    path: ./data/db.img\n', '')), /^offsite\.yaml:5: volumes\.db\.path: /);
  assert.match(err(good.replace('127.0.0.1:10809', 'localhost')), /^offsite\.yaml:3: nbd: "localhost" is not host:port/);
});

test('YAML syntax errors give the line', () => {
  assert.match(err('node: a\nstate: [\n'), /^offsite\.yaml:\d+: /);
  assert.match(err(good + 'node: again\n'), /^offsite\.yaml:9: .*[Mm]ap keys must be unique/);
});

test('two default volumes are refused', () => {
  const two = good + '    default: true\n  logs:\n    path: ./l.img\n    size: 1MiB\n    role: primary\n    default: true\n';
  assert.match(err(two), /db and logs are both marked default/);
});

test('sizes and durations', () => {
  assert.equal(parseSize('64KiB'), 65536);
  assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
  assert.equal(parseSize('8 GB'), 8e9);
  assert.equal(parseSize(4096), 4096);
  assert.throws(() => parseSize('-1'));
  assert.throws(() => parseSize('99999999PiB'), /too large/);
  assert.equal(parseDuration('2h'), 7200);
  assert.equal(parseDuration('500ms'), 0.5);
});

test('peer timeout: a duration with a default, and a clear error when out of range', () => {
  const withPeer = `${good}peers:\n  site-b: { address: "127.0.0.1:7701", timeout: 20s }\n`;
  assert.equal(parseConfig(withPeer, '/x/o.yaml').peers[0]!.timeout, 20);
  assert.equal(parseConfig(withPeer.replace(', timeout: 20s', ''), '/x/o.yaml').peers[0]!.timeout, 5);
  assert.match(err(withPeer.replace('20s', '2h')), /^offsite\.yaml:10: peers\.site-b\.timeout: must be between 0\.5s and 1h$/);
  assert.match(err(withPeer.replace('20s', 'soon')), /^offsite\.yaml:10: peers\.site-b\.timeout: "soon" is not a duration/);
});

// Two volumes in one journal folder corrupt a replica without a word (issue 15): the
// config refuses them, at the journal_dir that makes the overlap.
const pair = (v1: string, v2: string): string => `node: site-a
state: ./state
nbd: 127.0.0.1:10809
peers:
  site-b: { address: "127.0.0.1:7701" }
volumes:
  v1:
    path: ./v1.img
    role: primary
    peer: site-b${v1}
  v2:
    path: ./v2.img
    role: primary
    peer: site-b${v2}
`;
const jd = (dir: string): string => `\n    journal_dir: ${dir}`;
const FILE = '/etc/offsite/offsite.yaml';
function errIn(text: string, file = FILE): string {
  try {
    parseConfig(text, file);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  assert.fail('expected a ConfigError');
}
const WHY = 'two volumes sharing a journal folder mix their records, and one\'s writes reach the other\'s replica: give each volume a folder of its own';

test('two volumes may not share a journal folder: the error names the key and its line', () => {
  assert.equal(errIn(pair(jd('./sharedj'), jd('./sharedj'))),
    `${FILE}:16: volumes.v2.journal_dir: /etc/offsite/sharedj is also volume v1's journal folder (volumes.v1.journal_dir, line 11); ${WHY}`);
  // The same folder after resolving ".." and a trailing slash.
  assert.match(err(pair(jd('./sharedj'), jd('./x/../sharedj/'))),
    /^offsite\.yaml:16: volumes\.v2\.journal_dir: \S+\/sharedj is also volume v1's journal folder/);
  // One inside the other, either way round.
  assert.match(err(pair(jd('/srv/j'), jd('/srv/j/v2'))),
    /^offsite\.yaml:16: volumes\.v2\.journal_dir: \/srv\/j\/v2 is inside volume v1's journal folder \/srv\/j \(volumes\.v1\.journal_dir, line 11\)/);
  assert.match(err(pair(jd('/srv/j/v1'), jd('/srv/j'))),
    /^offsite\.yaml:16: volumes\.v2\.journal_dir: \/srv\/j contains volume v1's journal folder \/srv\/j\/v1/);
  // Separate folders are fine, and so is a folder that only shares a prefix of its name.
  assert.equal(parseConfig(pair(jd('/srv/j1'), jd('/srv/j2')), '/x/o.yaml').volumes[1]!.journal_dir, '/srv/j2');
  parseConfig(pair(jd('/srv/j'), jd('/srv/j-v2')), '/x/o.yaml');
  parseConfig(pair('', ''), '/x/o.yaml');
});

test('a journal folder may not be, be inside, or hold another volume\'s state folder (default journals live there)', () => {
  // v2's default journal: STATE/volumes/v2/journal.
  assert.equal(errIn(pair(jd('./state/volumes/v2/journal'), '')),
    `${FILE}:11: volumes.v1.journal_dir: /etc/offsite/state/volumes/v2/journal is inside volume v2's state folder /etc/offsite/state/volumes/v2; ${WHY}`);
  assert.match(err(pair(jd('./state/volumes/v2'), '')),
    /^offsite\.yaml:11: volumes\.v1\.journal_dir: \S+\/state\/volumes\/v2 is also volume v2's state folder/);
  assert.match(err(pair('', jd('./state'))),
    /^offsite\.yaml:15: volumes\.v2\.journal_dir: \S+\/state contains volume v1's state folder \S+\/state\/volumes\/v1/);
  // A volume without a peer has no journal, but its state folder is still its own.
  assert.match(err(pair(jd('./state/volumes/v2/j'), '').replace(/(v2\.img\n    role: primary\n)    peer: site-b\n/, '$1')),
    /^offsite\.yaml:11: volumes\.v1\.journal_dir: \S+ is inside volume v2's state folder/);
  // Inside its own state folder is where a journal lives by default.
  parseConfig(pair(jd('./state/volumes/v1/journal-ssd'), ''), '/x/o.yaml');
});

test('journal folders are compared through symlinks', () => {
  const dir = tempDir('cfg');
  fs.mkdirSync(path.join(dir, 'real'));
  fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
  assert.throws(() => parseConfig(pair(jd('./real/j'), jd('./link/j')), path.join(dir, 'offsite.yaml')),
    /offsite\.yaml:16: volumes\.v2\.journal_dir: \S+\/link\/j is also volume v1's journal folder \S+\/real\/j/);
  fs.rmSync(dir, { recursive: true });
});

// Issue 15, item 16: aliases of aliases ("billion laughs") and a volume of no size.
test('aliases that expand exponentially are refused as a config error with the alias\'s line', () => {
  const lines = ['node: site-a', 'state: ./state', 'nbd: 127.0.0.1:10809', `l0: &a0 [${Array(9).fill('lol').join(', ')}]`];
  for (let i = 1; i <= 8; i++) lines.push(`l${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
  const started = Date.now();
  const m = err(`${lines.join('\n')}\nvolumes:\n  db: { path: ./db.img, size: 1GiB, role: primary }\n`);
  assert.ok(Date.now() - started < 2000, 'refused before it expands');
  // The alias that crosses the limit is on line 7 (l3's, aliasing l2's aliases of l1's).
  assert.match(m, /^offsite\.yaml:7: \*a2: aliases expand to more than 100 values in all \(aliases of aliases grow exponentially\); write the values out$/);
  // A few plain aliases are still fine (and an unknown key under one is still named).
  const anchored = 'node: site-a\nstate: ./state\nnbd: 127.0.0.1:10809\nvolumes:\n  db: &v { path: ./db.img, size: 1GiB, role: primary }\n';
  assert.equal(parseConfig(anchored, '/x/o.yaml').volumes[0]!.size, 1 << 30);
});

test('a volume is at least 4KiB: size 0 or 4095 is refused with its line', () => {
  assert.equal(err(good.replace('1GiB', '0')), 'offsite.yaml:7: volumes.db.size: a volume must be at least 4KiB (one block)');
  assert.equal(err(good.replace('1GiB', '4095')), 'offsite.yaml:7: volumes.db.size: a volume must be at least 4KiB (one block)');
  assert.equal(parseConfig(good.replace('1GiB', '4KiB'), '/x/o.yaml').volumes[0]!.size, 4096);
});

// Issue 15, item 10: a schedule's hold is a positive finite duration of at most 10 years.
test('a checkpoint schedule\'s hold must be positive and at most 10 years', () => {
  const sched = (hold: string): string => `${good}    checkpoints:\n      - { cron: "0 2 * * *", hold: ${hold}, label: nightly }\n`;
  assert.equal(parseConfig(sched('2h'), '/x/o.yaml').volumes[0]!.checkpoints[0]!.hold, 7200);
  assert.equal(parseConfig(sched('3650d'), '/x/o.yaml').volumes[0]!.checkpoints[0]!.hold, 3650 * 86400);
  for (const bad of ['99999999999h', '1e308', '-5', '0', '0s', '3651d']) {
    assert.match(err(sched(bad)), /^offsite\.yaml:10: volumes\.db\.checkpoints\.0\.hold: must be /, bad);
  }
  assert.match(err(sched('1e308')), /must be at most 10 years \(3650d\); give no hold to keep the checkpoint until it is released$/);
  assert.match(err(sched('-5')), /must be a positive duration such as 30m, 2h or 7d/);
});
