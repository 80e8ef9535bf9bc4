// The iscsi: section of offsite.yaml: names, CHAP, allow lists and per-volume
// overrides; every error names the key and its line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { targetNameOf } from '../../src/iscsi/config.js';
import { scsiIdentityOf } from '../../src/node/iscsi-targets.js';

const base = `node: Site_A
state: ./state
nbd: 127.0.0.1:10809
volumes:
  db: { path: ./db.img, size: 1GiB, role: primary }
  My_Log: { path: ./log.img, size: 1GiB, role: primary }
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

test('no iscsi: section, no iSCSI', () => {
  assert.equal(parseConfig(base, '/x/offsite.yaml').iscsi, undefined);
});

test('the section: listener, base name lowered, default base from the node name, auth', () => {
  const c = parseConfig(`${base}iscsi:\n  listen: 0.0.0.0:3260\n  iqn: IQN.2026-12.com.Example:site-a\n` +
    '  chap: { user: backup, secret: "twelve+chars", mutual_user: tgt, mutual_secret: "another-secret" }\n' +
    '  initiators: [ IQN.1991-05.com.microsoft:ERP1 ]\n', '/x/o.yaml');
  assert.deepEqual(c.iscsi!.listen, { kind: 'tcp', host: '0.0.0.0', port: 3260 });
  assert.equal(c.iscsi!.iqn, 'iqn.2026-12.com.example:site-a');
  assert.deepEqual(c.iscsi!.auth, {
    chap: { user: 'backup', secret: 'twelve+chars' }, mutual: { user: 'tgt', secret: 'another-secret' }, initiators: ['iqn.1991-05.com.microsoft:erp1'],
  });
  const d = parseConfig(`${base}iscsi: { listen: "127.0.0.1:3260" }\n`, '/x/o.yaml');
  assert.equal(d.iscsi!.iqn, 'iqn.2026-12.offsite.invalid:site-a');
  assert.deepEqual(d.iscsi!.auth, { chap: null, mutual: null, initiators: null });
});

test('target names: BASE:volume, lower case, "_" as "-", checkpoint and drill as suffixes', () => {
  const b = 'iqn.2026-12.com.example:site-a';
  assert.equal(targetNameOf(b, 'db'), `${b}:db`);
  assert.equal(targetNameOf(b, 'My_Log'), `${b}:my-log`);
  assert.equal(targetNameOf(b, 'db@checkpoint'), `${b}:db:checkpoint`);
  assert.equal(targetNameOf(b, 'db@drill'), `${b}:db:drill`);
});

test('bad names, short secrets, half a mutual pair: each at its line', () => {
  assert.match(err(`${base}iscsi:\n  listen: 127.0.0.1:3260\n  iqn: example.com:site-a\n`), /^offsite\.yaml:9: iscsi\.iqn: an iSCSI qualified name/);
  assert.match(err(`${base}iscsi:\n  listen: unix:/x.sock\n`), /^offsite\.yaml:8: iscsi\.listen: .*TCP/);
  assert.match(err(`${base}iscsi:\n  listen: 127.0.0.1:3260\n  chap: { user: a, secret: short }\n`),
    /^offsite\.yaml:9: iscsi\.chap\.secret: must be at least 12 characters \(Windows/);
  assert.match(err(`${base}iscsi:\n  listen: 127.0.0.1:3260\n  chap: { user: a, secret: "twelve+chars", mutual_user: b }\n`),
    /iscsi\.chap\.mutual_secret: mutual CHAP needs both/);
  assert.match(err(`${base}iscsi:\n  listen: 127.0.0.1:3260\n  chap: { user: a, secret: "twelve+chars", mutual_user: b, mutual_secret: "twelve+chars" }\n`),
    /mutual_secret: must differ from secret/);
  assert.match(err(`${base}iscsi:\n  listen: 127.0.0.1:3260\n  initiators: [ "windows box" ]\n`),
    /^offsite\.yaml:9: iscsi\.initiators\.0: an initiator name is/);
});

test('a volume override needs the node section; target names may not collide', () => {
  const override = base.replace('role: primary }\n  My_Log', 'role: primary, iscsi: { initiators: [ iqn.2026-12.com.example:h ] } }\n  My_Log');
  assert.match(err(override), /^offsite\.yaml:5: volumes\.db\.iscsi: the node has no iscsi: section/);
  const c = parseConfig(`${override}iscsi: { listen: "127.0.0.1:3260", chap: { user: a, secret: "twelve+chars" } }\n`, '/x/o.yaml');
  assert.deepEqual(c.volumes[0]!.iscsi, { initiators: ['iqn.2026-12.com.example:h'] });
  const clash = `${base}  my-log: { path: ./l2.img, size: 1GiB, role: primary }\niscsi: { listen: "127.0.0.1:3260" }\n`;
  assert.match(err(clash), /^offsite\.yaml:7: volumes\.my-log: its iSCSI target name would be the same as volume My_Log's/);
  // Without iSCSI the same names are fine.
  parseConfig(`${base}  my-log: { path: ./l2.img, size: 1GiB, role: primary }\n`, '/x/o.yaml');
});

test('the SCSI identity: NAA type 3, stable for a uuid, different for a checkpoint and a drill', () => {
  const v = scsiIdentityOf('0b8c1f8e-8d4e-4c31-9f0a-6c1e2d3f4a5b', 'volume');
  assert.equal(v.naa.length, 8);
  assert.equal(v.naa[0]! >> 4, 3);
  assert.deepEqual(scsiIdentityOf('0b8c1f8e-8d4e-4c31-9f0a-6c1e2d3f4a5b', 'volume'), v);
  const cp = scsiIdentityOf('0b8c1f8e-8d4e-4c31-9f0a-6c1e2d3f4a5b:checkpoint', 'checkpoint');
  assert.notDeepEqual(cp.naa, v.naa);
  assert.notEqual(cp.serial, v.serial);
  assert.ok(v.product.length <= 16 && v.revision.length <= 4);
});
