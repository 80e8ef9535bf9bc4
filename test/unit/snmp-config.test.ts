// The snmp: section of offsite.yaml: defaults, and errors that name the field.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/config.js';

const base = `node: site-b
state: ./state
nbd: 127.0.0.1:10809
volumes:
  db: { path: ./db.img, size: 1GiB, role: primary }
`;

const snmpGood = `snmp:
  listen: 127.0.0.1:1161
  community: public
  users:
    - { name: ops, auth_protocol: sha, auth_key: "authpass123", priv_protocol: aes, priv_key: "privpass123" }
    - { name: watcher, auth_protocol: sha256, auth_key: "authpass456", priv_protocol: aes256b, priv_key: "privpass456", access: read-only }
  traps:
    - { address: "192.0.2.10:162" }
    - { address: "[::1]:1162", user: ops, inform: true }
  lag_alarm: 300
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

test('an snmp: section parses, with its defaults', () => {
  const c = parseConfig(base + snmpGood, '/x/offsite.yaml');
  assert.ok(c.snmp);
  assert.deepEqual(c.snmp.listen, { kind: 'tcp', host: '127.0.0.1', port: 1161 });
  assert.equal(c.snmp.community, 'public');
  assert.equal(c.snmp.users[0]!.access, 'read-write');
  assert.equal(c.snmp.users[1]!.access, 'read-only');
  assert.deepEqual(c.snmp.traps[0], { address: { kind: 'tcp', host: '192.0.2.10', port: 162 }, inform: false });
  assert.deepEqual(c.snmp.traps[1]!.address, { kind: 'tcp', host: '::1', port: 1162 });
  assert.equal(c.snmp.traps[1]!.inform, true);
  assert.equal(c.snmp.lagAlarmSeconds, 300);
  assert.equal(parseConfig(base + snmpGood.replace('lag_alarm: 300', 'lag_alarm: 5m'), '/x/offsite.yaml').snmp!.lagAlarmSeconds, 300);
  assert.equal(c.snmp.users[0]!.authKey, 'authpass123');
  assert.equal(c.snmp.users[0]!.privProtocol, 'aes');
  assert.equal(parseConfig(base, '/x/offsite.yaml').snmp, undefined);
  // Only listen and one way in are needed.
  const small = parseConfig(`${base}snmp: { listen: "127.0.0.1:161", community: public }\n`, '/x/offsite.yaml');
  assert.deepEqual(small.snmp!.users, []);
  assert.deepEqual(small.snmp!.traps, []);
});

test('bad snmp values name the field (and the line)', () => {
  assert.match(err(`${base}snmp: { community: public }\n`), /^offsite\.yaml:6: snmp\.listen: is required but missing$/);
  assert.match(err(base + snmpGood.replace('127.0.0.1:1161', 'nowhere')), /^offsite\.yaml:7: snmp\.listen: "nowhere" is not host:port$/);
  assert.match(err(base + snmpGood.replace('127.0.0.1:1161', 'unix:/run/x.sock')), /snmp\.listen: "unix:\/run\/x\.sock" must be host:port \(UDP\)$/);
  assert.match(err(base + snmpGood.replace('auth_key: "authpass123"', 'auth_key: "short"')),
    /^offsite\.yaml:10: snmp\.users\.0\.auth_key: must be at least 8 characters/);
  assert.match(err(base + snmpGood.replace('priv_protocol: aes,', 'priv_protocol: des,')),
    /snmp\.users\.0\.priv_protocol: must be aes, aes256b or aes256r \(DES is not offered/);
  assert.match(err(base + snmpGood.replace('auth_protocol: sha,', 'auth_protocol: sha1,')), /snmp\.users\.0\.auth_protocol: must be one of sha, sha224/);
  assert.match(err(base + snmpGood.replace('user: ops', 'user: nobody')), /^offsite\.yaml:14: snmp\.traps\.1\.user: no user named "nobody" under snmp\.users$/);
  assert.match(err(base + snmpGood.replace('user: ops', 'user: ops, community: x')),
    /snmp\.traps\.1\.user: give community \(SNMPv2c\) or user \(SNMPv3\), not both$/);
  assert.match(err(base + snmpGood.replace('name: watcher', 'name: ops')), /snmp\.users\.1\.name: user "ops" is listed twice$/);
  assert.match(err(base + snmpGood.replace('lag_alarm: 300', 'lag_alarm: -5')), /^offsite\.yaml:15: snmp\.lag_alarm: /);
  assert.match(err(base + snmpGood.replace('lag_alarm: 300', 'lag_alarm: 5x')), /snmp\.lag_alarm: /);
  assert.match(err(base + snmpGood.replace('  community: public\n', '  comunity: public\n')), /^offsite\.yaml:8: snmp\.comunity: unknown key "comunity"$/);
  assert.match(err(`${base}snmp: { listen: "127.0.0.1:161" }\n`), /snmp\.community: give a read-only community, SNMPv3 users, or both$/);
  assert.match(err(base + snmpGood.replace('address: "192.0.2.10:162"', 'address: "192.0.2.10"')),
    /snmp\.traps\.0\.address: "192\.0\.2\.10" is not host:port$/);
});
