// A 16 MiB journal under 200 MiB of writes: the host never sees an error, the
// volume switches to the dirty bitmap, which marks exactly the written regions
// (64 KiB granularity) and survives kill -9. And the journal's memory stays flat
// while its backlog grows to gigabytes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { readBitmap, readJournal } from '../helpers/journal-inspect.js';
import { must, run } from '../helpers/run.js';

const MiB = 1024 * 1024;
const REGION = 64 * 1024;

test('journal overflow: writes keep flowing, the bitmap marks what was written, kill -9 keeps it', async () => {
  const d = await TestDaemon.create({ volumes: { db: { size: '1GiB', peer: 'site-b', journal: '16MiB' } } });
  try {
    // 200 MiB sequential from 64 MiB, then scattered small writes far away.
    const fio = await run('fio', ['--name=burst', '--ioengine=nbd', `--uri=${d.uri('db')}`, '--rw=write', '--bs=1M',
      '--iodepth=8', '--offset=64M', '--size=200M', '--output-format=json']);
    assert.equal(fio.code, 0, fio.stderr);
    const res = JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number } }> };
    assert.equal(res.jobs[0]!.error, 0, 'the host saw no error');
    assert.equal(res.jobs[0]!.write.io_bytes, 200 * MiB);
    const scattered = [600 * MiB + 5, 700 * MiB + REGION - 100, 900 * MiB];
    const q = ['-f', 'raw'];
    for (const o of scattered) q.push('-c', `write -P 0x3c ${o} 200`);
    q.push('-c', 'flush');
    await must('qemu-io', [...q, d.uri('db')]);
    assert.match(d.log, /journal full: .* switched to dirty-bitmap tracking/);
    await d.kill9();
    // Expected regions: [64 MiB, 264 MiB) plus the scattered ones (one crosses into the next region).
    const expected = new Set<number>();
    for (let r = (64 * MiB) / REGION; r < (264 * MiB) / REGION; r++) expected.add(r);
    for (const o of scattered) {
      expected.add(Math.floor(o / REGION));
      expected.add(Math.floor((o + 199) / REGION));
    }
    const marked = await readBitmap(`${d.dir}/state`, 'db', 1024 * MiB);
    assert.deepEqual(marked, [...expected].sort((a, b) => a - b));
    // The journal was emptied into the bitmap.
    const { records } = await readJournal(`${d.dir}/state`, 'db');
    assert.equal(records.length, 0);
    // After restart the volume stays in bitmap mode and still serves writes.
    await d.start();
    assert.match(d.log, /marked for resync; tracking changes in the dirty bitmap/);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4096', '-c', 'read -P 0x3c 900M 200', d.uri('db')]);
  } finally {
    await d.stop();
  }
});

test('memory stays flat while the journal backlog grows to gigabytes', async () => {
  const d = await TestDaemon.create({ volumes: { db: { size: '4GiB', peer: 'site-b', journal: '8GiB' } } });
  const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${d.child!.pid}/status`, 'utf8'))![1]) * 1024;
  const write = async (offset: string, size: string): Promise<void> => {
    const r = await run('fio', ['--name=fill', '--ioengine=nbd', `--uri=${d.uri('db')}`, '--rw=write', '--bs=1M', '--iodepth=8',
      `--offset=${offset}`, `--size=${size}`], { timeoutMs: 600_000 });
    assert.equal(r.code, 0, r.stderr);
  };
  try {
    await write('0', '1G');
    const after1 = rss();
    await write('1G', '2G');
    const after3 = rss();
    const used = fs.readdirSync(`${d.dir}/state/volumes/db/journal`).reduce((n, f) => n + fs.statSync(`${d.dir}/state/volumes/db/journal/${f}`).size, 0);
    assert.ok(used > 3 * 1024 * MiB, `journal holds ${used} bytes`);
    assert.ok(after3 - after1 < 96 * MiB, `RSS grew from ${after1} to ${after3} bytes while the backlog went from 1 to 3 GiB`);
  } finally {
    await d.stop();
    fs.rmSync(d.dir, { recursive: true, force: true });
  }
});
