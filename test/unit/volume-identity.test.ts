// The volume identity file: born on the primary, adopted by the secondary,
// replaced atomically, and a damaged file is a clear error, never a new identity.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { VolumeIdentity } from '../../src/volume/identity.js';
import { tempDir } from '../helpers/run.js';

const dir = (): string => tempDir('identity');

test('a primary gets a uuid and a first generation; reopening keeps them', () => {
  const d = dir();
  const a = VolumeIdentity.open(d, 'primary');
  assert.match(a.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.match(a.current, /^[0-9a-f]{16}$/);
  const again = VolumeIdentity.open(d, 'primary');
  assert.equal(again.uuid, a.uuid);
  assert.deepEqual(again.generations, a.generations);
  const g2 = again.newGeneration();
  assert.deepEqual(VolumeIdentity.open(d, 'primary').generations, [g2, a.current]);
});

test('a secondary starts empty and adopts the primary\'s identity', () => {
  const d = dir();
  const b = VolumeIdentity.open(d, 'secondary');
  assert.equal(b.uuid, '');
  assert.deepEqual(b.generations, []);
  b.adopt('6f1c2a8e-1b7d-4c55-9a0e-2f3b4c5d6e7f', ['00112233445566aa']);
  const again = VolumeIdentity.open(d, 'secondary');
  assert.equal(again.uuid, '6f1c2a8e-1b7d-4c55-9a0e-2f3b4c5d6e7f');
  assert.equal(again.current, '00112233445566aa');
});

test('the file format is fixed; a damaged file is refused with its name', () => {
  const d = dir();
  fs.writeFileSync(path.join(d, 'identity.json'), '{"version":1,"uuid":"u-1","generations":["0123456789abcdef"]}');
  const id = VolumeIdentity.open(d, 'primary');
  assert.equal(id.uuid, 'u-1');
  assert.equal(id.current, '0123456789abcdef');
  fs.writeFileSync(path.join(d, 'identity.json'), '{"version":1,"uuid":"u-1","generations":["xyz"]}');
  assert.throws(() => VolumeIdentity.open(d, 'primary'), /identity\.json is malformed at generations\.0/);
  fs.writeFileSync(path.join(d, 'identity.json'), '{"version":1,');
  assert.throws(() => VolumeIdentity.open(d, 'primary'), /identity\.json is not valid JSON/);
  assert.ok(!fs.existsSync(path.join(d, 'identity.json.tmp')));
});
