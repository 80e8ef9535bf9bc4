// The dialer: for each peer this node dials (of a pair, the node whose name sorts
// first), a loop that connects over TLS, runs the link until it ends (the link
// manager's, links.ts), and dials again, backing off while links fail. A change on
// this node (a promote or demote) cuts the wait short.
import type tls from 'node:tls';
import type { PeerConfig } from '../config/config.js';
import { formatDuration } from '../units/units.js';
import type { Logger } from '../log/log.js';
import type { Identity } from '../link/identity.js';
import { LinkRefused, connectLink } from '../link/tls.js';
import { parseListenAddress } from '../export/listen-address.js';
import type { LinkEnd } from './link-session.js';

/**
 * The dialer's wait before redialling: from MIN_BACKOFF_MS, doubling after every
 * attempt that did not bring the link up, up to a cap. After a peer that does not
 * answer (down, unreachable, no handshake in time) it waits at most
 * MAX_UNANSWERED_BACKOFF_MS: a dial costs a few packets, and a site back from an
 * outage should not wait out a long backoff before its resync begins. One that
 * answers and is refused (another certificate than the pinned one; a refusal at or
 * before Hello: sizes, two primaries, a peer that drops the link before Hello, as one
 * that does not pin this node does), or a peer entry this node cannot dial (no
 * fingerprint, a bad address), needs the operator: it backs off up to MAX_BACKOFF_MS
 * (redialling every half second only repeated the refusal in both logs twice a second).
 */
export const MIN_BACKOFF_MS = 500;
export const MAX_UNANSWERED_BACKOFF_MS = 5_000;
export const MAX_BACKOFF_MS = 30_000;

/** How a dial that did not bring the link up ended: no answer, or an answer that refused it. */
export type DialFailure = 'unanswered' | 'refused';

/** The longest wait after `failure`. */
export function backoffCap(failure: DialFailure): number {
  return failure === 'refused' ? MAX_BACKOFF_MS : MAX_UNANSWERED_BACKOFF_MS;
}

/** The wait after `failure`, the last wait having been `backoff`: doubled, up to the failure's cap. */
export function nextBackoff(backoff: number, failure: DialFailure): number {
  return Math.min(backoffCap(failure), backoff * 2);
}
/**
 * A link that was up this long and then ended is dialed again at once, not after
 * MIN_BACKOFF_MS: most ends are a change on either node (a role change, a volume grown,
 * added, reopened or set aside, a peer added: the next Hello must describe it), and
 * every other volume on the link waits for the new one. A link that ends sooner (one
 * the peer keeps dropping) waits as before, so a flapping link is not dialed in a loop.
 */
const STEADY_LINK_MS = 1000;

export interface DialerOptions {
  identity: Identity;
  log: Logger;
  /** A link to `peer` is open now (accepted or dialed): no dial meanwhile. */
  linked(peer: string): boolean;
  /** Runs a link this node dialed until it ends. */
  run(socket: tls.TLSSocket, peer: string): Promise<LinkEnd>;
}

export class Dialer {
  private stopping = false;
  /** Per peer this node dials: cuts the wait before the next dial short, with the backoff back at its start. */
  private readonly redialNow = new Map<string, () => void>();

  constructor(private readonly o: DialerOptions) {}

  /** Dials `p` until stop(): a link that comes up runs until it ends, then the next dial. */
  async dial(p: PeerConfig): Promise<void> {
    const peer = p.name;
    // (A peer forgotten, then added again by a later reload, is dialed by a new loop: this one ends.)
    const generation = this.generations.get(peer) ?? 0;
    let backoff = MIN_BACKOFF_MS;
    let lastError = '';
    while (!this.stopping && (this.generations.get(peer) ?? 0) === generation) {
      if (!this.o.linked(peer)) {
        // (Set once the config is read and the dial begins: a config error before it needs the operator, like a refusal.)
        let dialing = false;
        try {
          if (!p.fingerprint) throw new Error(`peers.${peer}.fingerprint is not set (run offsite init on ${peer} and copy its fingerprint)`);
          const addr = parseListenAddress(p.address);
          if (addr.kind !== 'tcp') throw new Error('peer address must be host:port');
          dialing = true;
          const socket = await connectLink({ identity: this.o.identity, peer: { name: peer, fingerprint: p.fingerprint }, host: addr.host, port: addr.port });
          const began = Date.now();
          const link = await this.o.run(socket, peer);
          if (link.up) {
            backoff = MIN_BACKOFF_MS;
            lastError = '';
            if (Date.now() - began >= STEADY_LINK_MS) continue;
          } else {
            // TLS worked, the link did not: refused at Hello (said by the session, with
            // its reason, once per attempt) or dropped before it. Like any failure.
            this.o.log.debug({ peer }, `link to ${peer}: ${link.refused ?? 'dropped before Hello'}; next dial in ${formatDuration(backoff / 1000)}`);
            backoff = (await this.backoff(peer, backoff)) ? MIN_BACKOFF_MS : nextBackoff(backoff, 'refused');
            continue;
          }
        } catch (e) {
          const msg = (e as Error).message;
          // Say each distinct failure once at warn; repeats go to debug.
          const say = msg !== lastError ? this.o.log.warn : this.o.log.debug;
          const failure: DialFailure = e instanceof LinkRefused || !dialing ? 'refused' : 'unanswered';
          say.call(this.o.log, { peer }, `link to ${peer} at ${p.address}: ${msg}; retrying (backoff up to ${formatDuration(backoffCap(failure) / 1000)})`);
          lastError = msg;
          backoff = (await this.backoff(peer, backoff)) ? MIN_BACKOFF_MS : nextBackoff(backoff, failure);
          continue;
        }
      }
      await sleep(backoff);
    }
  }

  /**
   * Waits `ms` before the next dial to `peer`; resolves true when a change on this
   * node cut the wait short (a promote or demote here may have cleared what the peer
   * refused: the operator should not wait out 30 s of backoff for it).
   */
  private backoff(peer: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.redialNow.delete(peer);
        resolve(false);
      }, ms);
      this.redialNow.set(peer, () => {
        clearTimeout(timer);
        this.redialNow.delete(peer);
        resolve(true);
      });
    });
  }

  /** A change here may have cleared what `peer` refused: a dial waiting out its backoff goes now. */
  redial(peer: string): void {
    this.redialNow.get(peer)?.();
  }

  /** Per peer: one more each time it is forgotten (the dial loop of an earlier one ends). */
  private readonly generations = new Map<string, number>();

  /** No more dials to `peer` (dropped from the config at a reload); one waiting out a backoff ends now. */
  forget(peer: string): void {
    this.generations.set(peer, (this.generations.get(peer) ?? 0) + 1);
    this.redialNow.get(peer)?.();
  }

  /** No more dials; dialers waiting out a backoff end now. */
  stop(): void {
    this.stopping = true;
    for (const wake of [...this.redialNow.values()]) wake();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
