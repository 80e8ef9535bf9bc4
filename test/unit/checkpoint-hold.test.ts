// A checkpoint's hold (issue 15, item 10): `--hold 99999999999h`, `hold: 1e308` or a
// negative hold used to be held and persisted before the error, leaving a checkpoint
// with no export and `checkpoint list` failing. Now every way in is checked first.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ACTIONS, REFUSAL_STATUS } from '../../src/api/actions.js';
import { holdError } from '../../src/checkpoint/schedule.js';
import { MAX_HOLD_SECONDS } from '../../src/limits/limits.js';
import { createLogger } from '../../src/log/log.js';
import { RoleChanges } from '../../src/node/roles.js';
import { ActionRefused } from '../../src/contract/actions.js';

const silent = createLogger({ format: 'json', destination: { write: () => true } as unknown as NodeJS.WritableStream });

test('holdError: positive, finite, at most 10 years', () => {
  assert.equal(MAX_HOLD_SECONDS, 3650 * 86400);
  for (const ok of [0.5, 1, 7200, MAX_HOLD_SECONDS]) assert.equal(holdError(ok), null, String(ok));
  for (const bad of [0, -1, -7200, Number.NaN, Infinity, -Infinity, 1e308, MAX_HOLD_SECONDS + 1, 99999999999 * 3600]) {
    assert.match(holdError(bad) ?? 'accepted', /^must be /, String(bad));
  }
});

/** A RoleChanges whose every call would fail loudly: the hold must be refused before any. */
function untouchable(): { roles: RoleChanges; touched: string[] } {
  const touched: string[] = [];
  const daemon = new Proxy({}, { get: (_t, k) => { touched.push(String(k)); throw new Error(`daemon.${String(k)} touched`); } });
  return { roles: new RoleChanges(daemon as never, silent), touched };
}

test('RoleChanges.createCheckpoint refuses a bad hold (400) before it looks at any volume', async () => {
  const { roles, touched } = untouchable();
  for (const bad of [1e308, 99999999999 * 3600, -5, 0, Number.NaN, Infinity]) {
    await assert.rejects(roles.createCheckpoint('db', { holdSeconds: bad }), (e: unknown) => {
      assert.ok(e instanceof ActionRefused, String(e));
      assert.equal(REFUSAL_STATUS[e.reason], 400);
      assert.match(e.message, /^hold: must be /);
      return true;
    }, String(bad));
  }
  assert.deepEqual(touched, []);
});

test('the API\'s checkpoint action refuses a bad hold with the input quoted, before calling the node', async () => {
  const calls: unknown[] = [];
  const fake = { createCheckpoint: (...a: unknown[]) => { calls.push(a); return Promise.resolve({ volume: 'db',
    message: 'held' }); } } as unknown as RoleChanges;
  const act = ACTIONS.get('checkpoint')!;
  const refusal = async (hold: unknown): Promise<ActionRefused> => {
    try {
      await act(fake, 'db', { hold });
    } catch (e) {
      assert.ok(e instanceof ActionRefused, String(e));
      return e;
    }
    assert.fail(`hold ${String(hold)} was accepted`);
  };
  let e = await refusal('99999999999h');
  assert.equal(REFUSAL_STATUS[e.reason], 400);
  assert.equal(e.message, 'hold "99999999999h": must be at most 10 years (3650d); give no hold to keep the checkpoint until it is released');
  e = await refusal(1e308);
  assert.match(e.message, /^hold 1e\+308: must be at most 10 years/);
  e = await refusal(-5);
  assert.match(e.message, /^hold -5: must be a positive duration such as 30m, 2h or 7d/);
  e = await refusal('0s');
  assert.match(e.message, /^hold "0s": must be a positive duration/);
  assert.equal(calls.length, 0, 'nothing reached the node');
  await act(fake, 'db', { hold: '2h' });
  assert.deepEqual(calls, [['db', { label: undefined, holdSeconds: 7200 }]]);
});
