// One journal folder, one volume (issue 15): two volumes sharing a journal_dir once
// shipped one's writes to the other's replica without a word. Now the config refuses
// it, a second daemon finds the folder locked, and a journal refuses segments that
// name another volume.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { OFFSITE_BIN, TestDaemon } from '../helpers/daemon.js';
import { must, run, tempDir } from '../helpers/run.js';
import type { NodeStatus } from '../../src/contract/status.js';
import { FOLDER_LOCK_FILE } from '../../src/journal/store.js';

const config = (ports: { nbd: number; api: number }, journals: { v1: string; v2: string }, state = './state'): string => `node: site-a
state: ${state}
nbd: 127.0.0.1:${ports.nbd}
api: 127.0.0.1:${ports.api}
peers:
  site-b: { address: "127.0.0.1:7701" }
volumes:
  v1:
    path: ./v1.img
    size: 16MiB
    role: primary
    peer: site-b
    journal_dir: ${journals.v1}
  v2:
    path: ./v2.img
    size: 16MiB
    role: primary
    peer: site-b
    journal_dir: ${journals.v2}
`;

test('the reproduction: two volumes with one journal_dir are refused at config load, with the line', async () => {
  const dir = tempDir('jshared');
  const file = path.join(dir, 'offsite.yaml');
  fs.writeFileSync(file, config({ nbd: 0, api: 0 }, { v1: './sharedj', v2: './sharedj' }));
  const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /offsite\.yaml:19: volumes\.v2\.journal_dir: \S+\/sharedj is also volume v1's journal folder \(volumes\.v1\.journal_dir, line 13\)/);
  assert.ok(!fs.existsSync(path.join(dir, 'sharedj')), 'nothing was opened');
});

test('a second daemon (another state folder) using a journal folder in use is refused, naming the folder and its volume', async () => {
  const a = await TestDaemon.create({ yaml: (p) => config(p, { v1: './j1', v2: './j2' }) });
  try {
    const dir = tempDir('jother');
    const file = path.join(dir, 'offsite.yaml');
    // Its own state and volume files, but its journal folders point at the running daemon's
    // (swapped). Each volume is refused, so nothing opens and the start fails with both reasons
    // (one volume refused alone is set aside while the other is served: unavailable-volume.test.ts).
    fs.writeFileSync(file, config({ nbd: 0, api: 0 }, { v1: path.join(a.dir, 'j2'), v2: path.join(a.dir, 'j1') })
      .replace('nbd: 127.0.0.1:0\napi: 127.0.0.1:0\n', 'nbd: 127.0.0.1:0\n'));
    const r = await run(process.execPath, [OFFSITE_BIN, 'daemon', '-c', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`volume v1: journal folder ${path.join(a.dir, 'j2')} is in use by volume v2 ` +
      `\\(pid ${a.pid} on \\S+\\); two volumes must never share one`));
    assert.match(r.stderr, new RegExp(`volume v2: journal folder ${path.join(a.dir, 'j1')} is in use by volume v1 `));

    // Only v1's folder in use: v1 is set aside with that reason, v2 is served, and nothing of a's j2 changes.
    const listing = (): string[] => fs.readdirSync(path.join(a.dir, 'j2')).sort().map((n) => `${n}:${fs.statSync(path.join(a.dir, 'j2', n)).size}`);
    const before = listing();
    const b = await TestDaemon.create({ dir, yaml: (p) => config(p, { v1: path.join(a.dir, 'j2'), v2: './j' }) });
    try {
      const s = (await (await fetch(`http://127.0.0.1:${b.apiPort}/api/v1/status`)).json()) as NodeStatus;
      assert.deepEqual(s.volumes.map((v) => v.name), ['v2']);
      assert.equal(s.unavailable?.[0]?.name, 'v1');
      assert.match(s.unavailable![0]!.error, new RegExp(`journal folder ${path.join(a.dir, 'j2')} is in use by volume v2 \\(pid ${a.pid} on \\S+\\)`));
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 64k', '-c', 'flush', b.qemuTarget('v2')]);
    } finally {
      assert.equal(await b.stop(), 0);
    }
    assert.deepEqual(listing(), before);
  } finally {
    assert.equal(await a.stop(), 0);
  }
});

test('a journal holding another volume\'s segments is refused at start, and left as it was', async () => {
  const d = await TestDaemon.create({ yaml: (p) => config(p, { v1: './j1', v2: './j2' }) });
  await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 64k', '-c', 'flush', d.qemuTarget('v1')]);
  await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 64k', '-c', 'flush', d.qemuTarget('v2')]);
  assert.equal(await d.stop(), 0);
  const good = fs.readFileSync(d.configFile, 'utf8');
  // Each file with its content's digest; the lock by name only: its text names the last process to take it, which a
  // refused start is (and a pid's digits vary), while the flock, not that text, is what holds the folder.
  const digest = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex').slice(0, 16);
  const listing = (): string[] => ['j1', 'j2'].flatMap((j) =>
    fs.readdirSync(path.join(d.dir, j)).sort()
      .map((n) => (n === FOLDER_LOCK_FILE ? `${j}/${n}` : `${j}/${n}:${digest(path.join(d.dir, j, n))}`)));
  const before = listing();
  // The folders swapped between the two volumes (no overlap for the config to see, no lock held).
  fs.writeFileSync(d.configFile, good
    .replace('journal_dir: ./j1', 'journal_dir: ./jX')
    .replace('journal_dir: ./j2', 'journal_dir: ./j1')
    .replace('journal_dir: ./jX', 'journal_dir: ./j2'));
  await assert.rejects(d.start(), (e: Error) => {
    assert.match(e.message,
      /volume v1: journal folder \S+\/j2: segment \d{20}\.seg belongs to volume v2 \(uuid [0-9a-f-]{36}\), not to v1 \(uuid [0-9a-f-]{36}\)/);
    assert.match(e.message, /Nothing was read, changed or removed/);
    return true;
  });
  assert.deepEqual(listing(), before);
  // Back to its own folders, each volume has its journal as it was.
  fs.writeFileSync(d.configFile, good);
  await d.start();
  try {
    assert.match(d.log, /volume v1: journal [^,]+, [1-9]\d* records unreleased/);
    assert.match(d.log, /volume v2: journal [^,]+, [1-9]\d* records unreleased/);
    await must('qemu-io', ['-f', 'raw', '-c', 'read -P 0x55 0 64k', d.qemuTarget('v1')]);
  } finally {
    assert.equal(await d.stop(), 0);
  }
});
