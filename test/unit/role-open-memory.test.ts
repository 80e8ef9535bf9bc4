// What an open primary keeps of its start (src/node/role-open.ts): its dirty bitmap, a
// bit per region, and nothing else that grows with the volume. The ranges the journal's
// records cover (a second set of the same size, built for the start) were kept by a
// closure of the open for as long as the journal lived: 2 MiB per TiB of volume, per
// volume. Measured here after full collections (--expose-gc, set from the test).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { parseConfig } from '../../src/config/config.js';
import { silentLogger } from '../../src/log/log.js';
import { MemoryBudget } from '../../src/memory/budget.js';
import { HashBuffers } from '../../src/sync/region-hashes.js';
import { openRole, VolumeFolders, type RoleOpening } from '../../src/node/role-open.js';
import type { VolumeEntry } from '../../src/node/volume-entry.js';
import { Volume } from '../../src/volume/volume.js';
import { VolumeIdentity } from '../../src/volume/identity.js';
import { tempDir } from '../helpers/run.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function arrayBuffersNow(): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().arrayBuffers;
}

test('an open primary of 8 TiB keeps its dirty bitmap (16 MiB) and not a second set of that size', async () => {
  const dir = tempDir('role-memory');
  const config = parseConfig(`node: site-a
state: ./state
nbd: 127.0.0.1:10809
peers:
  site-b: { address: "127.0.0.1:7701" }
volumes:
  big: { path: ./big.img, size: 8TiB, role: primary, peer: site-b, journal: 64MiB }
`, path.join(dir, 'offsite.yaml'));
  const v = config.volumes[0]!;
  const volumeDir = path.join(config.state, 'volumes', v.name);
  fs.mkdirSync(volumeDir, { recursive: true });
  const volume = Volume.open({ name: v.name, path: v.path, size: v.size, readOnly: false, description: 'big' });
  const e: VolumeEntry = {
    config: v, volume, role: 'primary', dir: volumeDir, journaled: null, replica: null, history: null, drill: null,
    identity: VolumeIdentity.open(volumeDir, 'primary'),
  };
  const o: RoleOpening = {
    config, log: silentLogger, memory: new MemoryBudget(64 << 20), hashBuffers: new HashBuffers(),
    alive: { lastAliveOf: () => null, openedOne: () => undefined },
    linkVolumes: {
      primaries: new Map(), replicas: new Map(), identities: new Map(), streams: { of: () => null, adopt: async () => undefined },
    },
    streams: new Map(), folders: new VolumeFolders(config),
  };
  const bitmapBytes = v.size! / v.bitmap_region / 8;
  assert.equal(bitmapBytes, 16 << 20);
  const before = arrayBuffersNow();
  await openRole(o, e);
  try {
    const kept = arrayBuffersNow() - before;
    assert.ok(e.journaled, 'opened as primary');
    // The bitmap, and a few small buffers (headers, the activity log's page): well under a second set.
    assert.ok(kept >= bitmapBytes, `kept ${kept} bytes, less than the bitmap's ${bitmapBytes}`);
    assert.ok(kept < bitmapBytes * 1.25, `kept ${(kept / 2 ** 20).toFixed(1)} MiB after the open; the bitmap is ${bitmapBytes / 2 ** 20} MiB`);
  } finally {
    await e.journaled?.close();
    o.folders.releaseAll();
    await volume.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
