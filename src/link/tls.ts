// The peer link's transport: TLS 1.3, both sides present their node certificate,
// each pins the other's SHA-256 fingerprint from config. No CA, no plaintext mode.
//
// Who speaks first matters: the accepting side checks the client's certificate as
// soon as the handshake completes and only then sends anything; the connecting side
// checks the server's certificate before it sends anything. So an unknown or wrong
// peer is cut off before a single byte of Offsite data flows either way, and both
// sides log who tried and with which fingerprint.
import tls from 'node:tls';
import type { Logger } from '../log/log.js';
import { type ListenAddress, formatListenAddress } from '../nbd/server.js';
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
  /** Handshakes slower than this are cut (slowloris). */
  handshakeTimeoutMs?: number;
}

const TLS_BASE = { minVersion: 'TLSv1.3' as const, maxVersion: 'TLSv1.3' as const };

function peerFingerprint(socket: tls.TLSSocket): string | null {
  const cert = socket.getPeerCertificate();
  return cert && 'fingerprint256' in cert && cert.fingerprint256 ? cert.fingerprint256 : null;
}

export class LinkListener {
  private server: tls.Server | null = null;
  private readonly peers: Map<string, PinnedPeer>;

  constructor(private readonly opts: LinkListenerOptions) {
    this.peers = new Map(opts.peers.map((p) => [normaliseFingerprint(p.fingerprint), p]));
  }


  async listen(addr: ListenAddress): Promise<ListenAddress> {
    const { identity, log } = this.opts;
    const server = tls.createServer({
      ...TLS_BASE,
      key: identity.keyPem,
      cert: identity.certPem,
      requestCert: true,
      // Self-signed certificates: trust is the pinned fingerprint, checked below.
      rejectUnauthorized: false,
      handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000,
    });
    server.on('secureConnection', (socket) => {
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      const fp = peerFingerprint(socket);
      const peer = fp ? this.peers.get(normaliseFingerprint(fp)) : undefined;
      if (!peer) {
        log.warn({ remote, fingerprint: fp }, fp
          ? `link from ${remote} refused: certificate ${fp} is not a configured peer`
          : `link from ${remote} refused: it presented no certificate`);
        socket.destroy();
        return;
      }
      this.opts.onLink({ socket, peer, remote });
    });
    server.on('tlsClientError', (err, socket) => {
      log.warn({ remote: `${socket.remoteAddress}:${socket.remotePort}` },
        `link from ${socket.remoteAddress}:${socket.remotePort} refused during the TLS handshake: ${err.message}`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen for peer links on ${formatListenAddress(addr)}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`)));
      if (addr.kind === 'unix') server.listen(addr.path, resolve);
      else server.listen(addr.port, addr.host, resolve);
    });
    this.server = server;
    const a = server.address();
    return typeof a === 'object' && a !== null ? { kind: 'tcp', host: a.address, port: a.port } : addr;
  }

  close(): Promise<void> {
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
    const timer = setTimeout(() => socket.destroy(new Error(`no TLS handshake with ${opts.peer.name} within ${(opts.timeoutMs ?? 10_000) / 1000} s`)), opts.timeoutMs ?? 10_000);
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
