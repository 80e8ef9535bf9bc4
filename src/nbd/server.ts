// The NBD listener: TCP or unix socket, a bounded number of connections, and a
// clean stop (in-flight requests finish and their replies go out).
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../log/log.js';
import type { ExportBackend } from '../export/backend.js';
import type { ExportTable } from './negotiation.js';
import { NbdConnection } from './connection.js';
import { formatListenAddress, type ListenAddress } from '../export/listen-address.js';
import { CheckedBackend } from '../export/contract.js';

export class ExportRegistry implements ExportTable {
  private readonly byName = new Map<string, ExportBackend>();
  private defaultName: string | null = null;

  /** Serves `backend` under its name, held to its capabilities on every call (src/export/contract.ts). */
  add(backend: ExportBackend, isDefault = false): void {
    this.byName.set(backend.name, backend instanceof CheckedBackend ? backend : new CheckedBackend(backend));
    if (isDefault) this.defaultName = backend.name;
  }

  remove(name: string): void {
    this.byName.delete(name);
    if (this.defaultName === name) this.defaultName = null;
  }

  lookup(name: string): ExportBackend | undefined {
    if (name !== '') return this.byName.get(name);
    if (this.defaultName !== null) return this.byName.get(this.defaultName);
    return this.byName.size === 1 ? [...this.byName.values()][0] : undefined;
  }

  list(): ExportBackend[] {
    return [...this.byName.values()];
  }
}

export interface NbdServerOptions {
  exports: ExportTable;
  log: Logger;
  maxConnections?: number;
}

export class NbdServer {
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly maxConnections: number;
  private nextId = 1;
  /** Where it actually listens (port 0 resolved). */
  readonly addresses: ListenAddress[] = [];

  constructor(private readonly opts: NbdServerOptions) {
    this.maxConnections = opts.maxConnections ?? 256;
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
    const a = server.address();
    const actual: ListenAddress = typeof a === 'string' || a === null
      ? addr
      : { kind: 'tcp', host: addr.kind === 'tcp' ? addr.host : a.address, port: a.port };
    this.addresses.push(actual);
    return actual;
  }

  private accept(socket: net.Socket): void {
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : `unix#${this.nextId++}`;
    if (this.connections.size >= this.maxConnections) {
      this.opts.log.warn(`NBD client ${peer} refused: ${this.maxConnections} connections already open`);
      socket.destroy();
      return;
    }
    const c = new NbdConnection(socket, this.opts.exports, this.opts.log, peer, (done) => this.connections.delete(done));
    this.connections.add(c);
  }

  /** Stops listening, lets every connection finish its in-flight requests, then closes them. */
  async close(): Promise<void> {
    // net.Server.close() calls back only once every connection is gone, so start it, then drain.
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await Promise.all(closed);
  }
}

function removeStaleSocket(path: string): void {
  try {
    if (fs.statSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // absent: nothing to remove
  }
}
