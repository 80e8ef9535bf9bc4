// The web dashboard on the API listener (docs/DASHBOARD.md): GET / is the page,
// GET /assets/NAME its files, GET /api/v1/stream the live feed. The page is
// served under a Content-Security-Policy that allows this origin only.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { NodeStatus } from '../contract/status.js';
import type { Logger } from '../log/log.js';
import { loadAssets, type Asset } from './assets.js';
import { StatusStream } from './stream.js';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export interface DashboardOptions {
  status: () => NodeStatus;
  log: Logger;
  /** Live streams at once (default 32). */
  maxStreams?: number;
}

/** Adds the dashboard's routes; the stream's clients are ended before the listener closes. */
export function registerDashboard(app: FastifyInstance, opts: DashboardOptions): StatusStream {
  let assets: Map<string, Asset> | null = null;
  let missing = '';
  try {
    assets = loadAssets();
  } catch (e) {
    missing = (e as Error).message;
    opts.log.warn(`dashboard unavailable: ${missing}; the API and metrics are served as usual`);
  }
  const serve = (reply: FastifyReply, a: Asset): FastifyReply => reply
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .type(a.type)
    .send(a.body);

  app.get('/', async (_req, reply) => {
    const page = assets?.get('index.html');
    if (!page) return reply.code(503).type('text/plain; charset=utf-8').send(`The dashboard is unavailable on this node: ${missing}\n`);
    return serve(reply, page);
  });
  app.get<{ Params: { name: string } }>('/assets/:name', async (req, reply) => {
    const a = assets?.get(req.params.name);
    if (!a) return reply.code(404).send({ error: `no dashboard file ${req.params.name}` });
    return serve(reply, a);
  });
  const stream = new StatusStream({ status: opts.status, log: opts.log, maxClients: opts.maxStreams });
  app.get('/api/v1/stream', (req, reply) => stream.open(req, reply));
  const connections = trackConnections(app);
  app.addHook('preClose', (done) => {
    stream.close();
    connections.close();
    done();
  });
  return stream;
}

/**
 * Browsers open connections ahead of need (preconnect) and keep others idle, and
 * the listener's close waits for every connection. So at close, a connection with no
 * request in progress is closed at once; one with a request in progress, as soon as
 * its response has gone out.
 */
function trackConnections(app: FastifyInstance): { close(): void } {
  const sockets = new Set<Socket>();
  const busy = new Map<Socket, ServerResponse>();
  app.server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => {
      sockets.delete(s);
      busy.delete(s);
    });
  });
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    busy.set(req.socket, res);
    res.once('close', () => {
      if (busy.get(req.socket) === res) busy.delete(req.socket);
    });
  });
  return {
    close() {
      for (const s of sockets) {
        const res = busy.get(s);
        if (!res || res.writableFinished) s.destroy();
        else res.once('finish', () => s.destroy());
      }
    },
  };
}
