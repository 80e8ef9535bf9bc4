// `offsite status` and GET /api/v1/status against a running daemon.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OFFSITE_BIN, TestDaemon } from '../helpers/daemon.js';
import { must, run } from '../helpers/run.js';

interface Status {
  node: string;
  volumes: Array<{
    name: string; role: string; peer: string | null; link: string; backlogBytes: number; lagSeconds: number; consistent: boolean; tracking: string;
    journalUsedBytes: number;
    peers: Array<{ name: string; link: string; ackedSeq: number; backlogBytes: number; backlogRecords: number; lagSeconds: number; resyncing: boolean }>;
  }>;
}

test('status shows role, link, backlog, lag and consistency; --json keeps the field names', async () => {
  const d = await TestDaemon.create({ volumes: { db: { size: '256MiB', peer: 'site-b', journal: '64MiB' }, solo: { size: '16MiB' } } });
  try {
    const api = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/status`);
    assert.equal(api.status, 200);
    const before = (await api.json()) as Status;
    assert.equal(before.node, 'site-a');
    const db0 = before.volumes.find((v) => v.name === 'db')!;
    assert.equal(db0.backlogBytes, 0);
    assert.equal(db0.lagSeconds, 0);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 4M', '-c', 'flush', d.uri('db')]);
    await new Promise((r) => setTimeout(r, 1100));
    const s = JSON.parse(await must(process.execPath, [OFFSITE_BIN, 'status', '--json', '-c', d.configFile])) as Status;
    const db = s.volumes.find((v) => v.name === 'db')!;
    assert.deepEqual({ role: db.role, peer: db.peer, link: db.link, consistent: db.consistent, tracking: db.tracking },
      { role: 'primary', peer: 'site-b', link: 'disconnected', consistent: true, tracking: 'journal' });
    assert.ok(db.backlogBytes >= 4 * 1024 * 1024 && db.backlogBytes < 4.1 * 1024 * 1024, String(db.backlogBytes));
    assert.ok(db.lagSeconds >= 1, `lag ${db.lagSeconds}`);
    // The peer's own figures: what it has not acked, from where it stands (docs/API.md).
    assert.equal(db.peers.length, 1);
    const b = db.peers[0]!;
    assert.deepEqual({ name: b.name, link: b.link, acked: b.ackedSeq, resyncing: b.resyncing },
      { name: 'site-b', link: 'disconnected', acked: 0, resyncing: false });
    assert.equal(b.backlogBytes, db.backlogBytes);
    assert.ok(b.backlogRecords >= 2 && b.lagSeconds >= 1, JSON.stringify(b));
    const solo = s.volumes.find((v) => v.name === 'solo')!;
    assert.deepEqual({ link: solo.link, tracking: solo.tracking, backlog: solo.backlogBytes }, { link: 'none', tracking: 'none', backlog: 0 });
    assert.deepEqual(solo.peers, []);
    const table = await must(process.execPath, [OFFSITE_BIN, 'status', '-c', d.configFile]);
    assert.match(table, /^VOLUME\s+ROLE\s+SIZE\s+PEER\s+LINK/m);
    assert.match(table, /^db\s+primary\s+256 MiB\s+site-b\s+disconnected\s+journal\s+4\.0 MiB/m);
    assert.equal((await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/nope`)).status, 404);
  } finally {
    await d.stop();
  }
  const down = await run(process.execPath, [OFFSITE_BIN, 'status', '-c', d.configFile]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach the daemon of node site-a at 127\.0\.0\.1:\d+ \(ECONNREFUSED\); is `offsite daemon -c .*` running\?/);
});
