// The peers a primary's journal kept cursors for (src/journal/peers-file.ts): written,
// read back, decoded from fixed bytes; a newer version and a broken one refused; and
// JournaledVolume.setPeers writes it down with the change.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PEERS_FILE, readPeers, writePeers } from '../../src/journal/peers-file.js';
import { DirStore } from '../../src/journal/store.js';
import { NewerFormatError } from '../../src/versioning/format.js';
import { tempDir } from '../helpers/run.js';
import { openPeered } from '../helpers/peered-volume.js';

test('the peers file: written, read back, decoded from fixed bytes; newer and broken ones refused', async () => {
  const dir = tempDir('peers-file');
  try {
    const store = new DirStore(dir);
    assert.equal(await readPeers(store), null);
    await writePeers(store, ['site-b', 'site-c']);
    assert.equal(fs.readFileSync(path.join(dir, PEERS_FILE), 'utf8'), '{"version":1,"peers":["site-b","site-c"]}\n');
    fs.writeFileSync(path.join(dir, PEERS_FILE), Buffer.from('7b2276657273696f6e223a312c227065657273223a5b22647231225d7d0a', 'hex'));
    assert.deepEqual(await readPeers(store), ['dr1']);
    fs.writeFileSync(path.join(dir, PEERS_FILE), '{"version":2,"peers":["site-b"]}\n');
    await assert.rejects(readPeers(store), NewerFormatError);
    for (const broken of ['{"version":1,"peers":[]}', '{"version":1,"peers":["a","a"]}', '{"version":1}', 'x']) {
      fs.writeFileSync(path.join(dir, PEERS_FILE), broken);
      await assert.rejects(readPeers(store), /peers: no list of peers in it/);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a change of peers is written down with it (setPeers), for the next start to compare with', async () => {
  const dir = tempDir('peers-set');
  try {
    const { jv } = await openPeered(dir, ['site-b', 'site-c']);
    assert.equal(await readPeers(new DirStore(dir)), null);
    await jv.setPeers(['site-b', 'site-d']);
    assert.deepEqual(await readPeers(new DirStore(dir)), ['site-b', 'site-d']);
    await jv.setPeers(['site-d']);
    assert.deepEqual(await readPeers(new DirStore(dir)), ['site-d']);
    await jv.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a change of peers whose release fails on a full disk is made all the same (replication simulation seed 1534)', async () => {
  const dir = tempDir('peers-full');
  try {
    const { jv } = await openPeered(dir, ['site-b', 'site-c']);
    await jv.write(0, Buffer.alloc(4096, 1), false);
    await jv.flush();
    await jv.releaseFor('site-b', jv.journal.lastSeq);
    // The release point's write fails: the disk is full.
    jv.journal.release = async () => {
      throw new Error('ENOSPC: disk full');
    };
    const changed = await jv.setPeers(['site-b']);
    assert.deepEqual(changed, { added: [], removed: ['site-c'] });
    assert.deepEqual(jv.cursors.peers, ['site-b']);
    assert.deepEqual(await readPeers(new DirStore(dir)), ['site-b']);
    await jv.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
