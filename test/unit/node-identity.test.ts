// The node's identity (issue 15, item 12): `offsite init` used to make a new key pair
// over node.key when only node.crt was missing, and the peer, which pinned the old
// fingerprint, refused the node from then on. Half an identity is now refused, with
// which file is missing and what to do.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ensureIdentity, ensureToken, identityPaths, loadIdentity } from '../../src/link/identity.js';
import { tempDir } from '../helpers/run.js';

test('a key without its certificate is refused, the key kept as it was', async () => {
  const dir = tempDir('half-id');
  await ensureIdentity(dir, 'site-a');
  const p = identityPaths(dir);
  const key = fs.readFileSync(p.key);
  fs.rmSync(p.cert);
  await assert.rejects(ensureIdentity(dir, 'site-a'), (e: Error) => {
    assert.match(e.message, new RegExp(
      `^half an identity in ${dir}: ${p.key} is there but ${p.cert} is missing; restore ${p.cert} from a backup of this node, ` +
      `or, to make a new identity, remove ${p.key} too, run offsite init again and pin the new fingerprint at every peer`));
    return true;
  });
  assert.deepEqual(fs.readFileSync(p.key), key, 'node.key untouched');
  assert.equal(fs.existsSync(p.cert), false, 'no certificate made for it');
  // The daemon says the same, rather than "run offsite init".
  assert.throws(() => loadIdentity(dir), /^Error: half an identity in /);
});

test('a certificate without its key is refused too; removing both makes a new identity', async () => {
  const dir = tempDir('half-id');
  const first = await ensureIdentity(dir, 'site-a');
  const p = identityPaths(dir);
  fs.rmSync(p.key);
  await assert.rejects(ensureIdentity(dir, 'site-a'), new RegExp(`${p.cert} is there but ${p.key} is missing; restore ${p.key} from a backup`));
  fs.rmSync(p.cert);
  const second = await ensureIdentity(dir, 'site-a');
  assert.equal(second.created, true);
  assert.notEqual(second.identity.fingerprint, first.identity.fingerprint);
});

test('the identity and the token are readable by this user alone, whatever leftovers of a crash say', async () => {
  const dir = tempDir('id-modes');
  // A crash of an older init left temporary files world-readable.
  fs.writeFileSync(path.join(dir, 'node.key.tmp'), 'old', { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'api.token.tmp'), 'old', { mode: 0o644 });
  await ensureIdentity(dir, 'site-a');
  ensureToken(dir);
  for (const f of ['node.key', 'node.crt', 'api.token']) {
    assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
  }
});
