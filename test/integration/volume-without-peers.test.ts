// A replicated primary served a while without peers (its `peer:` taken out of the file
// and the daemon restarted), then given its peer back (docs/PEERS.md, "A volume
// without peers"). It journals nothing meanwhile; before the fix its journal reopened
// in the old stream, the secondary took up where it stood, the pair said drained and
// consistent, and qemu-img compare found the writes made without peers missing. Now
// the stream ends when it is served without peers, and the secondary is compared by hash.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPair } from '../helpers/pair.js';
import { must, waitFor } from '../helpers/run.js';

test('a primary served without peers, then given its peer back: the secondary is compared by hash and gets the writes made meanwhile', async () => {
  const p = await startPair({ size: '64MiB', journal: '256MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', p.a.qemuTarget('db')]);
    await p.drained();
    assert.equal(await p.a.stop(), 0);
    const paired = fs.readFileSync(p.a.configFile, 'utf8');
    fs.writeFileSync(p.a.configFile, paired.replace(', peer: site-b', ''));
    await p.a.start();
    assert.match(p.a.log, new RegExp('volume db: served without peers: its writes from now on are in no journal; ' +
      'when it is given a peer again, each of its secondaries is compared with it by hash'));
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 2M 1M', '-c', 'flush', p.a.qemuTarget('db')]);
    assert.equal(await p.a.stop(), 0);
    fs.writeFileSync(p.a.configFile, paired);
    await p.a.start();
    await waitFor('site-b follows the new journal', () => /volume db: site-a began a new journal/.test(p.b.log), 30_000);
    await p.drained();
    await must('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x22 2M 1M', '-c', 'read -P 0x11 0 1M', p.b.qemuTarget('db')]);
    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(p.a.dir, 'db.img'), path.join(p.b.dir, 'db.img')]);
  } finally {
    await p.stop();
  }
});
