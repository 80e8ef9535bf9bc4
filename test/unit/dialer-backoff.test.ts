// The dialer's backoff (src/node/dialer.ts): a peer that does not answer is tried at
// least every 5 s (a site back from an outage links within seconds); one that answers
// and refuses (another certificate, a refusal at Hello) backs off to 30 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_BACKOFF_MS, MAX_UNANSWERED_BACKOFF_MS, MIN_BACKOFF_MS, nextBackoff, type DialFailure } from '../../src/node/dialer.js';

function waits(failure: DialFailure, n: number): number[] {
  const out = [MIN_BACKOFF_MS];
  while (out.length < n) out.push(nextBackoff(out[out.length - 1]!, failure));
  return out;
}

test('a peer that does not answer: 0.5, 1, 2, 4 s, then every 5 s however long it stays down', () => {
  assert.deepEqual(waits('unanswered', 8), [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
  assert.equal(MAX_UNANSWERED_BACKOFF_MS, 5000);
});

test('a peer that answers and refuses: doubling to 30 s (the operator must act; the logs are not flooded)', () => {
  assert.deepEqual(waits('refused', 9), [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(MAX_BACKOFF_MS, 30000);
  // A refusal after a run of unanswered dials goes on doubling from where it was.
  assert.equal(nextBackoff(MAX_UNANSWERED_BACKOFF_MS, 'refused'), 10000);
  // And an answer lost again after refusals: back under the unanswered cap at once.
  assert.equal(nextBackoff(MAX_BACKOFF_MS, 'unanswered'), MAX_UNANSWERED_BACKOFF_MS);
});
