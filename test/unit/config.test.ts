// Config errors name the key and the line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { parseDuration, parseSize } from '../../src/config/units.js';

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
