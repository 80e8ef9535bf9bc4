// A node that stops while its replica applies a unit closes the receive log under the
// apply: the apply's reads fail because the log was let go, not for damage. That is
// said at info (the next start takes the unit up again from the log, as after a crash
// part-way), never as "applying records ... failed" at error level, which every clean
// stop of a busy secondary used to log. A failure of an open log is still an error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { PlanRunner, type PlanHost } from '../../src/secondary/plan-runner.js';
import type { UnitApplier } from '../../src/secondary/apply-unit.js';
import type { Logger } from '../../src/log/log.js';
import type { Store } from '../../src/journal/store.js';

function runner(closed: boolean) {
  const lines: Array<{ level: number; msg: string }> = [];
  const sink = new Writable({ write: (chunk: Buffer, _e, done) => { lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }); done(); } });
  const host = { name: 'db', log: { closed } } as unknown as PlanHost;
  const r = new PlanRunner(host, {} as UnitApplier, pino({ level: 'debug' }, sink) as unknown as Logger, {} as Store);
  const reasons: string[] = [];
  r.link = { ack: () => undefined, hold: () => undefined, close: (reason: string) => reasons.push(reason) };
  return { r, lines, reasons };
}

const settle = (): Promise<void> => new Promise((res) => setImmediate(res));

test('an apply cut by the receive log\'s close (a node stopping) is said at info, and the link is closed saying so', async () => {
  const { r, lines, reasons } = runner(true);
  r.fail('applying records 2..38901', new Error('journal no longer holds record 10122 (released up to 1)'));
  await settle();
  assert.deepEqual(lines.map((l) => [l.level, l.msg]),
    [[30, 'volume db: applying records 2..38901 stopped part-way (journal no longer holds record 10122 (released up to 1)): the receive log was closed; ' +
      'what it holds is taken up again when it is opened']]);
  assert.deepEqual(reasons, ['applying records 2..38901 stopped: the receive log was closed']);
});

test('the same failure on an open receive log is an error, with what happens to the data', async () => {
  const { r, lines, reasons } = runner(false);
  r.fail('applying records 2..38901', Object.assign(new Error('read failed'), { code: 'EIO' }));
  await settle();
  assert.deepEqual(lines.map((l) => [l.level, l.msg]),
    [[50, 'volume db: applying records 2..38901 failed (EIO); the link closes and the primary\'s journal keeps the data']]);
  assert.deepEqual(reasons, ['applying records 2..38901 failed on the secondary (EIO)']);
});
