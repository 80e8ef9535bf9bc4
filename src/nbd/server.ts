// The NBD listener: TCP or unix socket, a bounded number of connections, and a
// clean stop (in-flight requests finish and their replies go out).
//
// NBD has no authentication: whoever reaches the port is served (docs/NBD.md, "Who
// may connect"). So what one caller can hold is bounded node-wide: connections in
// all and per address, the bytes of write payloads buffered (src/nbd/budget.ts),
// the handshake's duration, and, when configured, idle time. 256 idle connections
// once locked the real host out; eight clients each stopping a 32 MiB write one byte
// short took the daemon from 104 MB to 360 MB.
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../log/log.js';
import type { ExportBackend } from '../export/backend.js';
import type { ExportTable } from './negotiation.js';
import { NBD_HANDSHAKE_TIMEOUT_MS, NbdConnection, type ConnectionLimits } from './connection.js';
import { NBD_REQUEST_BUDGET_BYTES, RequestBudget } from './budget.js';
import { RefusalLog } from '../log/refusals.js';
import { formatListenAddress, type ListenAddress } from '../export/listen-address.js';

/** Connections at once, all addresses and unix sockets together. */
export const NBD_MAX_CONNECTIONS = 256;
/** Connections at once from one IP address: a host needs a few (multi-conn); one caller cannot take every slot. */
export const NBD_MAX_CONNECTIONS_PER_ADDRESS = 32;
/**
 * A write whose payload stopped coming this long, while other requests wait for
 * the request budget, is cut: it holds bytes they need. Real clients send a request
 * whole; only a broken or hostile one stops in the middle of it.
 */
export const NBD_STALLED_PAYLOAD_MS = 10_000;

export interface NbdServerOptions {
  exports: ExportTable;
  log: Logger;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  /** Node-wide bytes of write payloads held in memory (default NBD_REQUEST_BUDGET_BYTES). */
  requestBudgetBytes?: number;
  /** From the accept to the transmission phase (default NBD_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /** `nbd_idle_timeout`: a connection idle this long in the transmission phase is closed (default: never). */
  idleTimeoutMs?: number | null;
  stalledPayloadMs?: number;
  /** How often idle and stalled connections are looked for (default 1 s). */
  sweepMs?: number;
  /** Repeated refusals and cuts are counted this long, then logged in one line (default a minute). */
  refusalLogWindowMs?: number;
}

export class NbdServer {
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly perAddress = new Map<string, number>();
  private readonly maxConnections: number;
  private readonly maxPerAddress: number;
  private readonly limits: ConnectionLimits;
  private readonly refusals: RefusalLog;
  private sweeper: NodeJS.Timeout | null = null;
  private nextId = 1;
  /** Where it actually listens (port 0 resolved). */
  readonly addresses: ListenAddress[] = [];

  constructor(private readonly opts: NbdServerOptions) {
    this.maxConnections = opts.maxConnections ?? NBD_MAX_CONNECTIONS;
    this.maxPerAddress = opts.maxConnectionsPerAddress ?? NBD_MAX_CONNECTIONS_PER_ADDRESS;
    this.limits = {
      budget: new RequestBudget(opts.requestBudgetBytes ?? NBD_REQUEST_BUDGET_BYTES),
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? NBD_HANDSHAKE_TIMEOUT_MS,
      report: (c, kind, reason) => this.refusals.refuse({
        kind, from: addressOf(c),
        first: `NBD client ${c.peer} disconnected: ${reason}`,
        more: (n, who, span) => `NBD: closed ${n} more connections from ${who} in ${span}: ${kind}`,
      }),
    };
    this.refusals = new RefusalLog({ log: opts.log, windowMs: opts.refusalLogWindowMs ?? 60_000 });
  }

  /** The node-wide request budget (bytes held now: `used`). */
  get budget(): RequestBudget {
    return this.limits.budget;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  async listen(addr: ListenAddress): Promise<ListenAddress> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    if (addr.kind === 'unix') removeStaleSocket(addr.path);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        reject(new Error(`cannot listen for NBD on ${formatListenAddress(addr)}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`));
      });
      if (addr.kind === 'unix') server.listen(addr.path, resolve);
      else server.listen(addr.port, addr.host, resolve);
    });
    server.on('error', (e) => this.opts.log.error(`NBD listener: ${e.message}`));
    this.servers.push(server);
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(Date.now()), this.opts.sweepMs ?? 1000);
      this.sweeper.unref();
    }
    const a = server.address();
    const actual: ListenAddress = typeof a === 'string' || a === null
      ? addr
      : { kind: 'tcp', host: addr.kind === 'tcp' ? addr.host : a.address, port: a.port };
    this.addresses.push(actual);
    return actual;
  }

  private accept(socket: net.Socket): void {
    const address = socket.remoteAddress ?? null; // null: a unix socket (local, not capped apart)
    const peer = address ? `${address}:${socket.remotePort}` : `unix#${this.nextId++}`;
    const from = address ?? 'a unix socket';
    if (this.connections.size >= this.maxConnections) {
      socket.destroy();
      this.refusals.refuse({
        kind: 'too many connections', from,
        first: `NBD: refused a connection from ${from}: ${this.maxConnections} connections open already (at most ${this.maxConnections})`,
        more: (n, who, span) => `NBD: refused ${n} more connections from ${who} in ${span}: ${this.maxConnections} open already`,
      });
      return;
    }
    if (address !== null && (this.perAddress.get(address) ?? 0) >= this.maxPerAddress) {
      socket.destroy();
      this.refusals.refuse({
        kind: 'too many connections from one address', from: address,
        first: `NBD: refused a connection from ${address}: ${this.maxPerAddress} connections from this address open already ` +
          `(at most ${this.maxPerAddress} from one address, so that one caller cannot take the ${this.maxConnections} slots)`,
        more: (n, who, span) => `NBD: refused ${n} more connections from ${who} in ${span}: ${this.maxPerAddress} from it open already`,
      });
      return;
    }
    if (address !== null) this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    const c = new NbdConnection(socket, this.opts.exports, this.opts.log, peer, (done) => {
      this.connections.delete(done);
      if (address === null) return;
      const n = (this.perAddress.get(address) ?? 1) - 1;
      if (n > 0) this.perAddress.set(address, n);
      else this.perAddress.delete(address);
    }, this.limits);
    this.connections.add(c);
  }

  /**
   * Once a second: while requests wait for the budget, writes stalled in the middle
   * of their payload are cut (they hold what the others wait for); with an idle
   * timeout, connections idle that long are closed. Both logged once per address,
   * then counted.
   */
  private sweep(now: number): void {
    const budget = this.limits.budget;
    const stalledMs = this.opts.stalledPayloadMs ?? NBD_STALLED_PAYLOAD_MS;
    const idleMs = this.opts.idleTimeoutMs ?? null;
    if (budget.waiting === 0 && idleMs === null) return;
    for (const c of [...this.connections]) {
      const from = addressOf(c);
      if (budget.waiting > 0 && c.stalledPayloadMs(now) >= stalledMs) {
        const reason = `stopped sending in the middle of a ${c.payloadBytes}-byte write for ${Math.round(c.stalledPayloadMs(now) / 1000)} s ` +
          `while ${budget.waiting} other requests waited for the NBD request budget (${mib(budget.limit)} held by writes not yet on disk)`;
        this.refusals.refuse({
          kind: 'stalled write', from,
          first: `NBD client ${c.peer} disconnected: ${reason}`,
          more: (n, who, span) => `NBD: cut ${n} more connections from ${who} in ${span} ` +
            'that stopped sending in the middle of a write while others waited for the request budget',
        });
        c.cut(reason, false);
      } else if (idleMs !== null && c.idleMs(now) >= idleMs) {
        const reason = `idle for ${Math.round(c.idleMs(now) / 1000)} s (nbd_idle_timeout: ${idleMs / 1000} s)`;
        this.refusals.refuse({
          kind: 'idle', from,
          first: `NBD client ${c.peer} disconnected: ${reason}`,
          more: (n, who, span) => `NBD: closed ${n} more idle connections from ${who} in ${span} (nbd_idle_timeout: ${idleMs / 1000} s)`,
        });
        c.cut(reason, false);
      }
    }
  }

  /**
   * Closes the connections on these exports (a volume let go: src/node/volume-removal.ts),
   * each once its in-flight requests have answered; resolves with how many there were.
   * The exports are out of the registry already, so no new one opens them.
   */
  async closeExports(names: ReadonlySet<string>): Promise<number> {
    const on = [...this.connections].filter((c) => c.exportName !== null && names.has(c.exportName));
    await Promise.all(on.map((c) => c.shutdown()));
    return on.length;
  }

  /** Stops listening, lets every connection finish its in-flight requests, then closes them. */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    this.refusals.close();
    // net.Server.close() calls back only once every connection is gone, so start it, then drain.
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await Promise.all(closed);
  }
}

/** The connection's IP address without its port (a unix socket: its own name). */
function addressOf(c: NbdConnection): string {
  return c.peer.startsWith('unix#') ? 'a unix socket' : c.peer.replace(/:\d+$/, '');
}

function mib(bytes: number): string {
  return `${Math.round(bytes / (1024 * 1024))} MiB`;
}

function removeStaleSocket(path: string): void {
  try {
    if (fs.statSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // absent: nothing to remove
  }
}
