// A reload's peers (src/node/reloaded-peers.ts): a new one known from now on, a new
// fingerprint or address makes the link again, a rate applies in place, one dropped with
// its volumes retires, one a kept volume still pairs with waits for a restart.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig, type Config } from '../../src/config/config.js';
import { peersReloaded } from '../../src/node/reloaded-peers.js';
import { tempDir } from '../helpers/run.js';

const file = path.join(tempDir('peers'), 'offsite.yaml');

function config(peers: string, volumes: string): Config {
  return parseConfig(`node: site-a\nstate: ./state\nnbd: 127.0.0.1:10809\npeers:\n${peers}\nvolumes:\n${volumes}\n`, file);
}

const B = '  site-b: { address: "10.0.0.2:7800", fingerprint: "AA:BB" }';
const C = '  site-c: { address: "10.0.0.3:7800", fingerprint: "CC:DD" }';
const db = '  db: { path: ./db.img, size: 1GiB, role: primary, peer: site-b }';
const logs = '  logs: { path: ./logs.img, size: 1GiB, role: primary, peer: site-c }';

function run(now: Config, next: Config, retiring = new Set<string>()): { notes: string[]; relinked: string[]; compressing: string[]; retiring: Set<string> } {
  const relinked: string[] = [];
  const compressing: string[] = [];
  const notes = peersReloaded(now, next, retiring, { relink: (p, why) => relinked.push(`${p}: ${why}`), compresses: (p) => compressing.push(p) });
  return { notes, relinked, compressing, retiring };
}

test('a new peer is known from now on; a re-keyed or moved one is linked again; a rate applies in place', () => {
  const now = config(B, db);
  const added = run(now, config(`${B}\n${C}`, `${db}\n${logs}`));
  assert.deepEqual(added.notes, ['peer site-c: added (at 10.0.0.3:7800)']);
  assert.deepEqual(now.peers.map((p) => p.name), ['site-b', 'site-c']);
  assert.deepEqual(added.relinked, []);
  const rekeyed = run(now, config(`${B.replace('AA:BB', 'EE:FF').replace('10.0.0.2', '10.0.0.9')}\n${C.replace('}', ', rate: 8mbit }')}`,
    `${db}\n${logs}`));
  assert.deepEqual(rekeyed.notes, ['peer site-b: fingerprint, address 10.0.0.9:7800; its link is made again', 'peer site-c: rate 8.0 Mbit/s']);
  assert.deepEqual(rekeyed.relinked, ['site-b: peer site-b\'s fingerprint, address 10.0.0.9:7800 changed at a reload']);
  assert.equal(now.peers[0]!.fingerprint, 'EE:FF');
  assert.equal(now.peers[1]!.rate, 1_000_000);
  // Compression on (the default, auto): the workers are asked for every peer.
  assert.deepEqual(rekeyed.compressing, ['site-b', 'site-c']);
  // The same file again: nothing said, nothing done.
  const same = run(now, config(`${B.replace('AA:BB', 'EE:FF').replace('10.0.0.2', '10.0.0.9')}\n${C.replace('}', ', rate: 8mbit }')}`,
    `${db}\n${logs}`));
  assert.deepEqual([same.notes, same.relinked], [[], []]);
});

test('a peer dropped with every volume paired with it retires, and so does one the volumes kept are no longer paired with', () => {
  const now = config(`${B}\n${C}`, `${db}\n${logs}`);
  const dropped = run(now, config(B, db));
  assert.deepEqual(dropped.notes, ['peer site-c: dropped (its link closes once no volume here pairs with it)']);
  assert.deepEqual([...dropped.retiring], ['site-c']);
  // (Said once: a second reload before it is gone says nothing more of it.)
  assert.deepEqual(run(now, config(B, db), dropped.retiring).notes, []);
  // logs stays but moves to site-b: site-c retires once logs' peers have changed (src/node/volume-peers.ts).
  const kept = run(config(`${B}\n${C}`, `${db}\n${logs}`), config(B, `${db}\n${logs.replace('site-c', 'site-b')}`));
  assert.deepEqual(kept.notes, ['peer site-c: dropped (its link closes once no volume here pairs with it)']);
  assert.deepEqual([...kept.retiring], ['site-c']);
});
