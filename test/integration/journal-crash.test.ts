// kill -9 of the primary at random moments while qemu-io writes and flushes:
// every write that completed before a completed flush is on the volume after the
// restart, and still in the journal (no peer has acked anything).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { readJournal } from '../helpers/journal-inspect.js';
import { run, sleep } from '../helpers/run.js';
import { RecordKind } from '../../src/journal/record.js';

const CHUNK = 64 * 1024;
const PER_CYCLE = 48;

test('kill -9 during writes and flushes, 12 cycles: flushed writes survive in volume and journal', async () => {
  const d = await TestDaemon.create({ volumes: { db: { size: '256MiB', peer: 'site-b', journal: '1GiB' } } });
  const durable: Array<{ offset: number; pattern: number }> = [];
  let seed = 12345;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  try {
    for (let cycle = 0; cycle < 12; cycle++) {
      const cmds: string[] = [];
      const writes: Array<{ offset: number; pattern: number }> = [];
      for (let k = 0; k < PER_CYCLE; k++) {
        const offset = (cycle * PER_CYCLE + k) * CHUNK;
        const pattern = ((cycle * PER_CYCLE + k) % 254) + 1;
        writes.push({ offset, pattern });
        cmds.push('-c', `write -P ${pattern} ${offset} ${CHUNK}`, '-c', 'flush');
      }
      const out: string[] = [];
      const q = spawn('qemu-io', ['-f', 'raw', ...cmds, d.uri('db')], { stdio: ['ignore', 'pipe', 'pipe'] });
      q.stdout.on('data', (b: Buffer) => out.push(b.toString()));
      // The kill lands part way through the writes: after the first has been written
      // (qemu-io's start and handshake take their own time on a loaded machine).
      for (let i = 0; i < 200 && !/^wrote /m.test(out.join('')) && q.exitCode === null; i++) await sleep(50);
      await sleep(Math.floor(random() * 250));
      await d.kill9();
      if (q.exitCode === null) await new Promise((r) => q.once('exit', r));
      // "wrote" for write k+1 means the flush after write k completed.
      const wrote = (out.join('').match(/^wrote /gm) ?? []).length;
      for (let k = 0; k + 1 < wrote; k++) durable.push(writes[k]!);
      await d.start();
      // Everything durable so far, from every cycle, reads back.
      const reads: string[] = [];
      for (const w of durable) reads.push('-c', `read -P ${w.pattern} ${w.offset} ${CHUNK}`);
      if (reads.length > 0) {
        const r = await run('qemu-io', ['-f', 'raw', ...reads, d.uri('db')]);
        assert.doesNotMatch(r.stdout + r.stderr, /fail|error/i, `cycle ${cycle}: a flushed write is missing after kill -9`);
      }
    }
    assert.ok(durable.length > 20, `only ${durable.length} writes were flushed before the kills; the test did not exercise much`);
    assert.equal(await d.stop(), 0);
    // Offline: the journal recovers cleanly and holds every durable write.
    const { records } = await readJournal(`${d.dir}/state`, 'db');
    const byOffset = new Map<number, Buffer>();
    for (const r of records) if (r.kind === RecordKind.Write) byOffset.set(r.offset, r.payload);
    for (const w of durable) {
      const p = byOffset.get(w.offset);
      assert.ok(p, `write at ${w.offset} is not in the journal`);
      assert.ok(p.equals(Buffer.alloc(CHUNK, w.pattern)), `journal record at ${w.offset} has the wrong data`);
    }
    assert.ok(records.some((r) => r.kind === RecordKind.Barrier), 'flushes closed epochs');
  } finally {
    await d.stop();
  }
});
