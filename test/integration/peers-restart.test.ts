// A secondary taken out of a primary's file at one restart and put back at a later one
// (src/journal/peers-file.ts, docs/PEERS.md "Peers changed across a restart"), three
// real daemons: while site-c is out, site-b acks and the journal lets go of records
// site-c never got (more than a segment of writes); put back, site-c was resynced from
// the journal and the bitmap alone, "complete", and qemu-img compare found its image
// different from the primary's. Now the start finds the peers changed since its last
// run and gives site-c a first sync of its own, compared by hash.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startTrio } from '../helpers/trio.js';
import { assertIdentical } from '../helpers/images.js';
import { must } from '../helpers/run.js';

test('a secondary out of the primary\'s file for a restart and back at the next: a first sync of its own; both replicas end equal', async () => {
  const t = await startTrio({ size: '64MiB', journal: '256MiB' });
  try {
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', t.a.qemuTarget('db')]);
    await t.drained();
    assert.equal(await t.a.stop(), 0);
    const both = fs.readFileSync(t.a.configFile, 'utf8');
    fs.writeFileSync(t.a.configFile, both.replace('peers: [site-b, site-c]', 'peers: [site-b]'));
    await t.a.start();
    assert.match(t.a.log, /volume db: its peers were site-b, site-c at its last run and are site-b now; site-c no longer sent its changes/);
    // More than a journal segment (32 MiB here), acked by site-b alone: the journal lets go of it.
    for (const b of [0x31, 0x32, 0x33]) await must('qemu-io', ['-f', 'raw', '-c', `write -P ${b} 8M 48M`, '-c', 'flush', t.a.qemuTarget('db')]);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 2M 1M', '-c', 'flush', t.a.qemuTarget('db')]);
    await t.drained(90_000, 'site-a', ['site-b']);
    assert.equal(await t.a.stop(), 0);
    fs.writeFileSync(t.a.configFile, both);
    await t.a.start();
    // (The journal let go of the records site-c lacks: it starts past them.)
    const first = /journal: recovered \d+ records in \d+ segments, records (\d+)\.\./.exec(t.a.log);
    assert.ok(first && Number(first[1]) > 10, `the journal let go of nothing site-c lacks: ${first?.[0]}`);
    assert.match(t.a.log, new RegExp('volume db: its peers were site-b at its last run and are site-b, site-c now; site-c gets a first sync ' +
      'of its own, compared by hash, when it links'));
    await t.drained();
    await assertIdentical(t.a.uri('db'), t.b.uri('db'), { message: 'site-b' });
    await assertIdentical(t.a.uri('db'), t.c.uri('db'), { message: 'site-c, out of the file while the journal let go' });
  } finally {
    await t.stop();
  }
});
