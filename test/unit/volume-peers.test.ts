// A served volume's peers changed at a reload (src/node/volume-peers.ts): what is said, what
// waits for a restart and why, and what the change does, in order, to the journal and the links.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig, type Config, type VolumeConfig } from '../../src/config/config.js';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';
import { volumesReloaded } from '../../src/node/reloaded-volumes.js';
import { volumePeersReloaded, type PeerLinks } from '../../src/node/volume-peers.js';
import { tempDir } from '../helpers/run.js';

const dir = tempDir('peers');
const file = path.join(dir, 'offsite.yaml');

function config(db: string, extra = ''): Config {
  return parseConfig(`node: site-a
state: ./state
nbd: 127.0.0.1:10809
peers:
  site-b: { address: "127.0.0.1:7701" }
  site-c: { address: "127.0.0.1:7702" }
  site-d: { address: "127.0.0.1:7703" }
volumes:
  db: { path: ./db.img, size: 1GiB, role: primary, ${db} }
  wal: { path: ./wal.img, size: 1GiB, role: primary, peers: [site-b, site-c] }
${extra}`, file);
}

/** What the change did, in order. */
function fakes(): { links: PeerLinks; jv: JournaledVolume; did: string[] } {
  const did: string[] = [];
  let peers = ['site-b', 'site-c'];
  const links: PeerLinks = {
    stopShipping: (v, p) => did.push(`stop ${v} ${p.join(',')}`),
    relink: (v, p) => did.push(`relink ${v} ${p.join(',')}`),
  };
  const jv = {
    cursors: { get peers() { return peers; } },
    setPeers: async (next: readonly string[]) => {
      did.push(`journal ${next.join(',')}`);
      peers = [...next];
      return { added: [], removed: [] };
    },
  } as unknown as JournaledVolume;
  return { links, jv, did };
}

const host = (links: PeerLinks | null, wanted = new Map<string, string[]>()) => ({ links, log: silentLogger, wanted });
const db = (c: Config): VolumeConfig => c.volumes.find((v) => v.name === 'db')!;

test('a primary\'s peers changed at a reload: shipping to the one taken away stops, the journal takes the list, the links are made again', async () => {
  const now = config('peers: [site-b, site-c]');
  const next = config('peers: [site-b, site-d]');
  // Not a restart: the peers are a live key of a served volume.
  assert.deepEqual(volumesReloaded(now, next, true).notes, []);
  const { links, jv, did } = fakes();
  const e = { config: db(now), journaled: jv };
  const r = volumePeersReloaded(e, db(next), host(links));
  assert.deepEqual(r.notes, ['volume db: peers now site-b, site-d (site-d added: a first sync of its own at a primary) (site-c taken away)']);
  assert.deepEqual(did, [], 'nothing runs until the caller runs the change (in the node\'s action queue)');
  await r.change!();
  assert.deepEqual(did, ['stop db site-c', 'journal site-b,site-d', 'relink db site-d,site-c']);
  assert.deepEqual([e.config.peers, e.config.peer], [['site-b', 'site-d'], 'site-b']);
  // The same list again: nothing said, nothing to run.
  assert.deepEqual(volumePeersReloaded(e, db(next), host(links)), { notes: [] });
});

test('a secondary\'s peers changed at a reload: no journal, the links are made again', async () => {
  const now = config('peer: site-b');
  const next = config('peers: [site-b, site-c]');
  const { links, did } = fakes();
  const e = { config: { ...db(now), role: 'secondary' as const }, journaled: null };
  const r = volumePeersReloaded(e, db(next), host(links));
  await r.change!();
  assert.deepEqual(did, ['relink db site-c']);
  assert.deepEqual(e.config.peers, ['site-b', 'site-c']);
});

test('a journal that fails to take the new list leaves the config as the journal ships, and the links as it pairs', async () => {
  const now = config('peers: [site-b, site-c]');
  const { links, did } = fakes();
  const jv = {
    cursors: { peers: ['site-b', 'site-c'] },
    setPeers: async () => {
      throw new Error('ENOSPC: no space left on device');
    },
  } as unknown as JournaledVolume;
  const e = { config: db(now), journaled: jv };
  await volumePeersReloaded(e, db(config('peer: site-b')), host(links)).change!();
  assert.deepEqual(did, ['stop db site-c', 'relink db site-c']);
  assert.deepEqual(e.config.peers, ['site-b', 'site-c'], 'still what the journal holds a cursor for');
});

test('peers reordered: the first is the one the one-peer status fields describe; nothing else changes', () => {
  const now = config('peers: [site-b, site-c]');
  const { links, did } = fakes();
  const e = { config: db(now), journaled: null };
  const r = volumePeersReloaded(e, db(config('peers: [site-c, site-b]')), host(links));
  assert.deepEqual([r.notes, r.change, did], [['volume db: peers in the order site-c, site-b'], undefined, []]);
  assert.equal(e.config.peer, 'site-c');
});

test('what waits for a restart: a first peer, the last one taken away, no links', () => {
  const { links, did } = fakes();
  const said = (from: string, to: string, h = host(links)): string[] => {
    const r = volumePeersReloaded({ config: db(config(from)), journaled: null }, db(config(to)), h);
    assert.equal(r.change, undefined);
    return r.notes;
  };
  assert.match(said('journal: 1GiB', 'peer: site-b')[0]!,
    /^volume db: peers changed to site-b: a volume without a peer has no journal.*: that takes a restart$/);
  assert.match(said('peer: site-b', 'journal: 1GiB')[0]!,
    /^volume db: peers changed to none: a volume with no peer left keeps no journal: that takes a restart$/);
  assert.match(said('peer: site-b', 'peer: site-c', host(null))[0]!, /no peer link runs on this daemon/);
  assert.deepEqual(did, []);
});

test('two reloads before the first one\'s change ran: the later list is the one made; one that puts the list back makes it again', async () => {
  const now = config('peers: [site-b, site-c]');
  const { links, jv, did } = fakes();
  const e = { config: db(now), journaled: jv };
  const h = host(links);
  const first = volumePeersReloaded(e, db(config('peers: [site-b, site-d]')), h);
  const second = volumePeersReloaded(e, db(config('peer: site-b')), h);
  assert.deepEqual(second.notes, ['volume db: peers now site-b (site-d taken away)'], 'said against the list the first asked for');
  await first.change!();
  assert.deepEqual(did, [], 'the first gives way');
  await second.change!();
  assert.deepEqual(did, ['stop db site-c', 'journal site-b', 'relink db site-c']);
  assert.deepEqual(e.config.peers, ['site-b']);
  assert.equal(h.wanted.size, 0);
  // Back and forth before either ran: the list stays as it is, the journal asked for it again.
  did.length = 0;
  const there = volumePeersReloaded(e, db(config('peers: [site-b, site-c]')), h);
  const back = volumePeersReloaded(e, db(config('peer: site-b')), h);
  assert.ok(back.change, 'a change back is queued too');
  await there.change!();
  await back.change!();
  assert.deepEqual([did, e.config.peers], [['journal site-b'], ['site-b']]);
});
