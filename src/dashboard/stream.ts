// GET /api/v1/stream: server-sent events for the dashboard. Every second an `status`
// event (the JSON of GET /api/v1/status); at connect one `events` event (the recent
// operator events, oldest first), then one `event` event per operator event as it
// happens. Bounded: at most `maxClients` streams, `maxClientsPerAddress` from one
// address (one client cannot hold them all); a client whose unsent bytes pass
// `maxBufferedBytes` (it cannot keep up) is dropped, never buffered without limit.
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { NodeStatus } from '../contract/status.js';
import { operatorEvents, type OperatorEvent } from '../log/events.js';
import type { Logger } from '../log/log.js';

export interface StreamOptions {
  status: () => NodeStatus;
  log: Logger;
  /** Streams open at once (more get 503). */
  maxClients?: number;
  /**
   * Streams open at once from one address (more get 429). Not 1: pages reached
   * through an SSH tunnel all come from 127.0.0.1, and a page reloaded opens its
   * new stream before the old one is seen closed.
   */
  maxClientsPerAddress?: number;
  /** Bytes a client may leave unread before it is dropped. */
  maxBufferedBytes?: number;
  intervalMs?: number;
}

interface Client {
  res: ServerResponse;
  remote: string;
}

export class StatusStream {
  private readonly clients = new Set<Client>();
  private readonly perAddress = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private closed = false;
  readonly maxClients: number;
  readonly maxClientsPerAddress: number;
  readonly maxBufferedBytes: number;
  private readonly intervalMs: number;

  constructor(private readonly opts: StreamOptions) {
    this.maxClients = opts.maxClients ?? 32;
    this.maxClientsPerAddress = opts.maxClientsPerAddress ?? 8;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 1 << 20;
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  get size(): number {
    return this.clients.size;
  }

  /** The route handler: takes the connection over from fastify and keeps it until either side ends it. */
  open(req: FastifyRequest, reply: FastifyReply): void {
    if (this.closed) {
      void reply.code(503).send({ error: 'the node is stopping' });
      return;
    }
    if (this.clients.size >= this.maxClients) {
      void reply.code(503).send({ error: `too many live streams open on this node (at most ${this.maxClients}); close a dashboard tab and retry` });
      return;
    }
    const fromHere = this.perAddress.get(req.ip) ?? 0;
    if (fromHere >= this.maxClientsPerAddress) {
      void reply.code(429).send(
        { error: `too many live streams open from ${req.ip} (at most ${this.maxClientsPerAddress} from one address); close a dashboard tab and retry` });
      return;
    }
    if (!this.unsubscribe) {
      const unsub = operatorEvents.subscribe((e) => this.broadcast(eventChunk('event', e)));
      if (!unsub) {
        void reply.code(503).send({ error: 'too many listeners on the operator events; retry later' });
        return;
      }
      this.unsubscribe = unsub;
    }
    reply.hijack();
    const res = reply.raw;
    const client: Client = { res, remote: req.ip };
    this.clients.add(client);
    this.perAddress.set(client.remote, fromHere + 1);
    res.on('close', () => this.remove(client));
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'close', // never reused: when the stream ends, so does its connection
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    this.send(client, `retry: 2000\n\n${this.statusChunk()}${eventChunk('events', operatorEvents.recent(200))}`);
    if (!this.timer) {
      this.timer = setInterval(() => this.broadcast(this.statusChunk()), this.intervalMs);
      this.timer.unref();
    }
  }

  /**
   * Ends every stream and refuses new ones. Called before the API listener closes:
   * the sockets are destroyed, not ended, so a client that stopped reading (or a
   * browser that would keep the connection idle) cannot hold the daemon's stop.
   */
  close(): void {
    this.closed = true;
    for (const c of [...this.clients]) c.res.destroy();
    this.clients.clear();
    this.perAddress.clear();
    this.idle();
  }

  private statusChunk(): string {
    try {
      return eventChunk('status', this.opts.status());
    } catch (e) {
      return eventChunk('problem', { error: `status unavailable: ${(e as Error).message}` });
    }
  }

  private broadcast(chunk: string): void {
    for (const c of [...this.clients]) this.send(c, chunk);
  }

  private send(c: Client, chunk: string): void {
    if (c.res.destroyed || c.res.writableEnded) {
      this.remove(c);
      return;
    }
    c.res.write(chunk);
    if (c.res.writableLength > this.maxBufferedBytes) {
      const unread = c.res.writableLength;
      this.remove(c);
      c.res.destroy();
      // Logged after this call returns: the log line is itself an operator event.
      queueMicrotask(() => this.opts.log.warn(
        `dashboard: dropped the live stream of ${c.remote}: ${unread} bytes unread (at most ${this.maxBufferedBytes}); its page reconnects`));
    }
  }

  private remove(c: Client): void {
    if (!this.clients.delete(c)) return;
    const left = (this.perAddress.get(c.remote) ?? 1) - 1;
    if (left > 0) this.perAddress.set(c.remote, left);
    else this.perAddress.delete(c.remote);
    if (this.clients.size === 0) this.idle();
  }

  /** No client left: no timer, no subscription. */
  private idle(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}

function eventChunk(name: string, data: NodeStatus | OperatorEvent | OperatorEvent[] | { error: string }): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}
