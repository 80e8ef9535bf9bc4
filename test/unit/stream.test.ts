// The record stream file (src/stream/stream.ts, docs/PEER-PROTOCOL.md "Handshake"):
// version 1 decoded from fixed bytes, a newer version refused as newer (not damage), a
// damaged file read as a stream no primary's matches, and the state check at start.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DirStore } from '../../src/journal/store.js';
import { DAMAGED_STREAM, STREAM_FILE, newStreamId, readStream, writeStream } from '../../src/stream/stream.js';
import { VOLUME_FOLDER_FILES, refuseNewerState } from '../../src/node/state-versions.js';
import { NewerFormatError } from '../../src/versioning/format.js';
import { tempDir } from '../helpers/run.js';

test('stream file: version 1 from fixed bytes; written as read; none is null', async () => {
  const dir = tempDir('stream');
  const store = new DirStore(dir);
  assert.equal(await readStream(store), null);
  fs.writeFileSync(path.join(dir, STREAM_FILE), '{"version":1,"stream":"0123456789abcdef","primary":"site-a"}\n');
  assert.deepEqual(await readStream(store), { stream: '0123456789abcdef', primary: 'site-a' });
  const id = newStreamId();
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.notEqual(id, newStreamId());
  await writeStream(store, { stream: id, primary: 'site-b' });
  assert.equal(fs.readFileSync(path.join(dir, STREAM_FILE), 'utf8'), `{"version":1,"stream":"${id}","primary":"site-b"}\n`);
  assert.deepEqual(await readStream(store), { stream: id, primary: 'site-b' });
});

test('stream file: a newer version is refused as newer, at open and at the start\'s check; damage names no stream', async () => {
  const dir = tempDir('stream');
  const store = new DirStore(dir);
  fs.writeFileSync(path.join(dir, STREAM_FILE), '{"version":2,"stream":"0123456789abcdef","primary":"site-a","more":1}\n');
  await assert.rejects(readStream(store), (e: unknown) => e instanceof NewerFormatError && /record stream file is format version 2/.test(e.message));
  await assert.rejects(refuseNewerState(dir, store, VOLUME_FOLDER_FILES), (e: unknown) => e instanceof NewerFormatError);
  for (const bad of ['{"version":1,"stream":"xyz","primary":"site-a"}', '{"version":1,', '']) {
    fs.writeFileSync(path.join(dir, STREAM_FILE), bad);
    assert.deepEqual(await readStream(store), { stream: DAMAGED_STREAM, primary: '' }, bad);
  }
});
