// The dialer's backoff (src/node/dialer.ts): after a peer that does not answer the wait
// is at most 5 s (a site back from an outage links within seconds); one that answers
// and refuses (another certificate, a refusal at Hello), or a peer entry that cannot be
// dialled, backs off to 30 s. The policy, then the dial loop's classes against real sockets.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Dialer, MAX_BACKOFF_MS, MAX_UNANSWERED_BACKOFF_MS, MIN_BACKOFF_MS, nextBackoff, type DialFailure } from '../../src/node/dialer.js';
import { ensureIdentity, type Identity } from '../../src/link/identity.js';
import { LinkListener } from '../../src/link/tls.js';
import { silentLogger, type Logger } from '../../src/log/log.js';
import type { PeerConfig } from '../../src/config/config.js';
import { tempDir, waitFor } from '../helpers/run.js';
import { freePort } from '../helpers/daemon.js';

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

// How the dial loop classes a failure, against real sockets: its first warning says the wait's cap.
describe('the dial loop classes each failure', () => {
  let site: Identity;
  let other: Identity;
  before(async () => {
    site = (await ensureIdentity(tempDir('dial-a'), 'site-a')).identity;
    other = (await ensureIdentity(tempDir('dial-b'), 'site-b')).identity;
  });

  /** The dialer's first warning about `peer`, then the loop stopped. */
  async function firstWarning(peer: PeerConfig): Promise<string> {
    const lines: string[] = [];
    const log = { warn: (_o: unknown, m: string) => lines.push(m), debug: () => undefined, info: () => undefined, error: () => undefined };
    const d = new Dialer({ identity: site, log: log as unknown as Logger, linked: () => false, run: () => Promise.resolve({ up: false, refused: null }) });
    const dialing = d.dial(peer);
    await waitFor('a warning', () => lines.length > 0, 15_000, 20);
    d.stop();
    await dialing;
    return lines[0]!;
  }

  test('no answer (nothing listens): up to 5 s', async () => {
    const port = await freePort();
    const w = await firstWarning({ name: 'site-b', address: `127.0.0.1:${port}`, fingerprint: other.fingerprint } as PeerConfig);
    assert.match(w, /^link to site-b at 127\.0\.0\.1:\d+: .*ECONNREFUSED.*; retrying \(backoff up to 5 s\)$/);
  });

  test('another certificate than the pinned one, and a peer entry without a fingerprint: up to 30 s', async () => {
    const l = new LinkListener({ identity: site, peers: [], log: silentLogger, onLink: () => undefined });
    const addr = await l.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    try {
      const port = addr.kind === 'tcp' ? addr.port : 0;
      // (site-a's own listener answers with site-a's certificate; site-b's is pinned.)
      const w = await firstWarning({ name: 'site-b', address: `127.0.0.1:${port}`, fingerprint: other.fingerprint } as PeerConfig);
      assert.match(w, /is not site-b: its certificate is .*; retrying \(backoff up to 30 s\)$/);
    } finally {
      await l.close();
    }
    const w = await firstWarning({ name: 'site-b', address: '127.0.0.1:9' } as PeerConfig);
    assert.match(w, /peers\.site-b\.fingerprint is not set .*; retrying \(backoff up to 30 s\)$/);
  });
});
