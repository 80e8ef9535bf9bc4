// A volume set aside (it did not open) whose peers a reload changes (src/node/set-aside.ts,
// SetAside.adopt): nothing of it is open, so it takes them as a start would, and the links
// to the peers it had and has are made again (each Hello says it is set aside, or not
// paired here any more); a consistency group's member, and a daemon that runs no link,
// wait for a restart, and the reload says why.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SetAside, type SetAsideHost } from '../../src/node/set-aside.js';
import { UnavailableVolumes } from '../../src/node/unavailable.js';
import type { Config, VolumeConfig } from '../../src/config/config.js';
import { silentLogger } from '../../src/log/log.js';

const vol = (peers: string[], over: Partial<VolumeConfig> = {}): VolumeConfig =>
  ({ name: 'db', path: '/srv/db.img', role: 'primary', peers, peer: peers[0], journal: 1 << 30, ...over } as unknown as VolumeConfig);

function rig(opts: { grouped?: boolean; links?: boolean } = {}) {
  const relinks: string[] = [];
  const config = { state: '/var/lib/offsite', volumes: [vol(['site-b'])], groups: opts.grouped ? [{ name: 'erp', members: ['db', 'wal'] }] : [] };
  const unavailable = new UnavailableVolumes();
  unavailable.set('db', 'its file is gone', 0);
  const links = {
    pausedVolumes: new Set<string>(), armApart: () => undefined, volumeReady: () => undefined, volumeAdded: () => undefined,
    relink: (volume: string, peers: readonly string[], why: string) => relinks.push(`${volume}: ${peers.join(', ')}: ${why}`),
  };
  const host = {
    config: config as unknown as Pick<Config, 'state' | 'volumes' | 'groups'>, log: silentLogger, unavailable, entries: () => [],
    links: () => (opts.links === false ? null : links), openVolume: () => Promise.reject(new Error('not here')), served: () => undefined,
  } as unknown as SetAsideHost;
  return { aside: new SetAside(host), config, relinks };
}

test('a set-aside volume takes its new peers at a reload, and the links to the old and the new are made again', () => {
  const { aside, config, relinks } = rig();
  const notes = aside.adopt({ volumes: [vol(['site-b', 'site-c'])] } as unknown as Pick<Config, 'volumes'>);
  assert.deepEqual(notes, ['volume db: peers taken (it opens with it)']);
  assert.deepEqual(config.volumes[0]!.peers, ['site-b', 'site-c']);
  assert.deepEqual(relinks, ['db: site-b, site-c: volume db\'s peers changed at a reload here (it is set aside)']);
  // Moved to another site altogether: both are told.
  relinks.length = 0;
  aside.adopt({ volumes: [vol(['site-d'])] } as unknown as Pick<Config, 'volumes'>);
  assert.equal(config.volumes[0]!.peer, 'site-d');
  assert.deepEqual(relinks, ['db: site-b, site-c, site-d: volume db\'s peers changed at a reload here (it is set aside)']);
});

test('a set-aside group member takes its new peers (its members, set aside together, all do); one on a daemon that runs no link keeps them', () => {
  const g = rig({ grouped: true });
  assert.deepEqual(g.aside.adopt({ volumes: [vol(['site-c'])] } as unknown as Pick<Config, 'volumes'>), ['volume db: peers, peer taken (it opens with them)']);
  assert.deepEqual(g.config.volumes[0]!.peers, ['site-c']);
  assert.deepEqual(g.relinks, ['db: site-b, site-c: volume db\'s peers changed at a reload here (it is set aside)']);
  const n = rig({ links: false });
  assert.match(n.aside.adopt({ volumes: [vol(['site-c'])] } as unknown as Pick<Config, 'volumes'>).join(),
    /peers, peer changed: that takes a restart \(no peer link runs on this daemon\)/);
  // Other keys still go with it.
  const k = rig({ grouped: true });
  assert.deepEqual(k.aside.adopt({ volumes: [vol(['site-b'], { journal: 2 << 30 })] } as unknown as Pick<Config, 'volumes'>),
    ['volume db: journal taken (it opens with it)']);
});
