// The peer link's transport: TLS 1.3, both sides present their node certificate,
// each pins the other's SHA-256 fingerprint from config. No CA, no plaintext mode.
//
// Who speaks first matters: the accepting side checks the client's certificate as
// soon as the handshake completes and only then sends anything; the connecting side
// checks the server's certificate before it sends anything. So an unknown or wrong
// peer is cut off before a single byte of Offsite data flows either way, and both
// sides log who tried and with which fingerprint.
//
// The port faces the WAN and takes callers before they prove anything, so what a
// stranger can hold there is bounded: every socket must finish its handshake within
// `handshakeTimeoutMs` of being accepted (a deadline from the accept, not an idle
// timer a trickle of bytes would reset) or it is destroyed; at most
// `maxPendingHandshakes` handshakes are in progress at once, `maxPendingPerAddress`
// from one address, so a flood cannot take the descriptors the volumes and journals
// need (src/limits/fd-limit.ts); a socket past a cap is closed before any TLS work.
// Refusals are logged through a RefusalLog: the first of a kind from an address in
// full, the rest counted once a minute.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../log/log.js';
import { RefusalLog } from '../log/refusals.js';
import { type ListenAddress, formatListenAddress } from '../export/listen-address.js';
import { listenerBudget } from '../limits/fd-limit.js';
import { normaliseFingerprint, type Identity } from './identity.js';

export interface PinnedPeer {
  name: string;
  fingerprint: string;
}

export interface AcceptedLink {
  socket: tls.TLSSocket;
  peer: PinnedPeer;
  remote: string;
}

export interface LinkListenerOptions {
  identity: Identity;
  peers: PinnedPeer[];
  log: Logger;
  onLink: (link: AcceptedLink) => void;
  /** From the accept to a checked certificate; slower sockets are destroyed (slowloris). Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Handshakes in progress at once (default: a share of RLIMIT_NOFILE, src/limits/fd-limit.ts). */
  maxPendingHandshakes?: number;
  /** Handshakes in progress from one address (default 4). */
  maxPendingPerAddress?: number;
  /** The window over which repeated refusals are counted before they are logged (default a minute). */
  refusalLogWindowMs?: number;
}

export const LINK_HANDSHAKE_TIMEOUT_MS = 10_000;

const TLS_BASE = { minVersion: 'TLSv1.3' as const, maxVersion: 'TLSv1.3' as const };

function peerFingerprint(socket: tls.TLSSocket): string | null {
  const cert = socket.getPeerCertificate();
  return cert && 'fingerprint256' in cert && cert.fingerprint256 ? cert.fingerprint256 : null;
}

/** An OpenSSL error's reason ("wrong version number"), not its source file and line. */
function tlsReason(e: Error): string {
  const reason = (e as { reason?: unknown }).reason;
  return typeof reason === 'string' && reason ? reason : (e.message.split('\n')[0] ?? e.message);
}

export class LinkListener {
  private server: net.Server | null = null;
  private readonly peers: Map<string, PinnedPeer>;
  /** Sockets accepted and not yet handed to onLink, with their deadline. */
  private readonly pending = new Map<tls.TLSSocket, NodeJS.Timeout>();
  private readonly pendingFrom = new Map<string, number>();
  private readonly refusals: RefusalLog;
  readonly handshakeTimeoutMs: number;
  readonly maxPendingHandshakes: number;
  readonly maxPendingPerAddress: number;

  constructor(private readonly opts: LinkListenerOptions) {
    this.peers = new Map(opts.peers.map((p) => [normaliseFingerprint(p.fingerprint), p]));
    const budget = listenerBudget();
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? LINK_HANDSHAKE_TIMEOUT_MS;
    this.maxPendingHandshakes = opts.maxPendingHandshakes ?? budget.linkHandshakes;
    this.maxPendingPerAddress = opts.maxPendingPerAddress ?? budget.linkHandshakesPerAddress;
    this.refusals = new RefusalLog({ log: opts.log, windowMs: opts.refusalLogWindowMs });
  }

  /**
   * The peers whose certificates a link may present, from now on (a reload: a peer
   * added, or re-keyed by `offsite init` at its site). Links up stay up.
   */
  pin(peers: readonly PinnedPeer[]): void {
    this.peers.clear();
    for (const p of peers) this.peers.set(normaliseFingerprint(p.fingerprint), p);
  }

  /** Handshakes in progress now. */
  get pendingHandshakes(): number {
    return this.pending.size;
  }

  async listen(addr: ListenAddress): Promise<ListenAddress> {
    const { identity } = this.opts;
    const secureContext = tls.createSecureContext({ ...TLS_BASE, key: identity.keyPem, cert: identity.certPem });
    // A plain TCP server that wraps each socket itself, so a socket past a cap is
    // closed before any TLS work and every handshake has a deadline of its own.
    // noDelay: the link's small frames (acks, heartbeats, hash and map requests and
    // their replies) go at once; with Nagle's algorithm each waited for the peer's
    // delayed ACK, about 40 ms a turn on Linux. Large frames are written whole anyway.
    const server = net.createServer({ noDelay: true }, (raw) => this.accept(raw, secureContext));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(
        `cannot listen for peer links on ${formatListenAddress(addr)}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`,
      )));
      if (addr.kind === 'unix') server.listen(addr.path, resolve);
      else server.listen(addr.port, addr.host, resolve);
    });
    // Past listen, an error is a failed accept (EMFILE: the process is out of file
    // descriptors). Said, not thrown: the links already up and the disks go on.
    server.on('error', (e: NodeJS.ErrnoException) => this.refusals.refuse({
      kind: `accept ${e.code ?? e.message}`, from: '',
      first: `link port: cannot accept a connection: ${e.code === 'EMFILE' || e.code === 'ENFILE' ? `${e.code}, out of file descriptors` : e.message}`,
      more: (n, _from, span) => `link port: ${n} more connections could not be accepted in ${span}: ${e.code ?? e.message}`,
    }));
    this.server = server;
    const a = server.address();
    return typeof a === 'object' && a !== null ? { kind: 'tcp', host: a.address, port: a.port } : addr;
  }

  private accept(raw: net.Socket, secureContext: tls.SecureContext): void {
    raw.on('error', () => undefined); // a reset before the wrap: nothing to say
    const address = raw.remoteAddress ?? 'local';
    const remote = raw.remoteAddress ? `${raw.remoteAddress}:${raw.remotePort}` : 'a local socket';
    if (this.pending.size >= this.maxPendingHandshakes) {
      raw.destroy();
      this.refusals.refuse({
        kind: 'too many handshakes', from: '',
        first: `link port: refused a connection from ${remote}: ${this.pending.size} TLS handshakes in progress already ` +
          `(at most ${this.maxPendingHandshakes}, so that a flood cannot take the file descriptors the volumes and journals need)`,
        more: (n, _from, span) => `link port: refused ${n} more connections in ${span}: ${this.maxPendingHandshakes} TLS handshakes in progress already`,
      });
      return;
    }
    const fromHere = this.pendingFrom.get(address) ?? 0;
    if (fromHere >= this.maxPendingPerAddress) {
      raw.destroy();
      this.refusals.refuse({
        kind: 'too many handshakes from one address', from: address,
        first: `link port: refused a connection from ${remote}: ${fromHere} TLS handshakes from ${address} in progress already ` +
          `(at most ${this.maxPendingPerAddress} from one address)`,
        more: (n, from, span) => `link port: refused ${n} more connections from ${from} in ${span}: ` +
          `${this.maxPendingPerAddress} TLS handshakes from one address in progress already`,
      });
      return;
    }
    const socket = new tls.TLSSocket(raw, { isServer: true, secureContext, requestCert: true, rejectUnauthorized: false });
    // Self-signed certificates: trust is the pinned fingerprint, checked at 'secure'.
    this.pendingFrom.set(address, fromHere + 1);
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      clearTimeout(this.pending.get(socket));
      this.pending.delete(socket);
      const left = (this.pendingFrom.get(address) ?? 1) - 1;
      if (left > 0) this.pendingFrom.set(address, left);
      else this.pendingFrom.delete(address);
    };
    const deadline = setTimeout(() => {
      if (done) return;
      release();
      socket.destroy();
      this.refusals.refuse({
        kind: 'handshake timeout', from: address,
        first: `link from ${remote} closed: no TLS handshake within ${this.handshakeTimeoutMs / 1000} s`,
        more: (n, from, span) => `link port: closed ${n} more connections from ${from} in ${span}: no TLS handshake within ${this.handshakeTimeoutMs / 1000} s`,
      });
    }, this.handshakeTimeoutMs);
    deadline.unref();
    this.pending.set(socket, deadline);
    const onError = (err: Error): void => {
      if (done) return;
      release();
      socket.destroy();
      this.refusals.refuse({
        kind: 'handshake failed', from: address,
        first: `link from ${remote} refused during the TLS handshake: ${tlsReason(err)}`,
        more: (n, from, span) => `link port: refused ${n} more connections from ${from} during the TLS handshake in ${span}`,
      });
    };
    socket.on('error', onError);
    socket.once('close', release);
    socket.once('secure', () => {
      if (done) return;
      release();
      // From here on the link's owner handles the socket's errors (and its close).
      socket.off('error', onError);
      socket.on('error', () => undefined);
      const fp = peerFingerprint(socket);
      const peer = fp ? this.peers.get(normaliseFingerprint(fp)) : undefined;
      if (!peer) {
        socket.destroy();
        this.refusals.refuse({
          kind: `certificate ${fp ?? 'none'}`, from: address,
          first: fp
            ? `link from ${remote} refused: certificate ${fp} is not a configured peer`
            : `link from ${remote} refused: it presented no certificate`,
          more: (n, from, span) => `link port: refused ${n} more connections from ${from} in ${span}: ` +
            `${fp ? `certificate ${fp} is not a configured peer` : 'no certificate'}`,
        });
        return;
      }
      this.opts.onLink({ socket, peer, remote });
    });
  }

  /** Stops accepting; handshakes in progress are cut (a stopping daemon does not wait out their deadline). */
  close(): Promise<void> {
    for (const socket of [...this.pending.keys()]) socket.destroy();
    this.refusals.close();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

export class LinkRefused extends Error {}

/** Connects to a peer and checks its certificate before sending a byte. */
export function connectLink(opts: { identity: Identity; peer: PinnedPeer; host: string; port: number; timeoutMs?: number }): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...TLS_BASE,
      host: opts.host,
      port: opts.port,
      key: opts.identity.keyPem,
      cert: opts.identity.certPem,
      rejectUnauthorized: false, // self-signed: checked against the pinned fingerprint below
      servername: undefined,
    });
    socket.setNoDelay(true); // (as the listener's: small frames go at once)
    const timer = setTimeout(
      () => socket.destroy(new Error(`no TLS handshake with ${opts.peer.name} within ${(opts.timeoutMs ?? 10_000) / 1000} s`)),
      opts.timeoutMs ?? 10_000,
    );
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const fp = peerFingerprint(socket);
      const want = normaliseFingerprint(opts.peer.fingerprint);
      if (!fp || normaliseFingerprint(fp) !== want) {
        socket.destroy();
        reject(new LinkRefused(`${opts.host}:${opts.port} is not ${opts.peer.name}: its certificate is ${fp ?? '(none)'}, the config pins ${want}`));
        return;
      }
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
