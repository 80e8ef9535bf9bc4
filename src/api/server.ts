// The HTTP API on the `api:` listener (docs/API.md). Reads are open; every mutating
// call needs the bearer token from `offsite init` (wrong or missing: 401, and
// nothing happens). Actions answer { volume, message, ... } or { error }.
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from '../log/log.js';
import { formatListenAddress, type ListenAddress } from '../nbd/server.js';
import { ActionError, type RoleChanges } from '../node/roles.js';
import { ACTIONS, type Body } from './actions.js';
import { openApiDocument } from './openapi.js';
import { operatorEvents } from '../log/events.js';
import type { HistoryRow } from '../journal/history.js';
import type { NodeStatus } from './status.js';
import { metricsRegistry } from './metrics.js';
import { registerDashboard } from '../dashboard/dashboard.js';

export interface ApiOptions {
  status: () => NodeStatus;
  actions: RoleChanges;
  /** The bearer token (read when a mutating call arrives, so `offsite init` needs no restart). */
  token: () => string;
  /** A primary volume's per-minute write history (null: no such volume or none kept). */
  history: (volume: string) => HistoryRow[] | null;
  /** Re-reads the config file and applies what can change live; says what changed. */
  reload: () => string;
  log: Logger;
}

function authorized(req: FastifyRequest, token: string): boolean {
  const h = req.headers.authorization ?? '';
  const m = /^Bearer (\S+)$/.exec(h);
  if (!m || !token) return false;
  const given = Buffer.from(m[1]!);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

export async function startApi(addr: ListenAddress, opts: ApiOptions): Promise<{ app: FastifyInstance; address: ListenAddress }> {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  app.get('/api/v1/status', async () => opts.status());
  app.get('/api/v1/checkpoints', async () => ({ checkpoints: opts.actions.checkpoints() }));
  app.get('/api/v1/openapi.json', async () => openApiDocument(opts.status().version));
  app.get<{ Querystring: { limit?: string } }>('/api/v1/events', async (req) => ({ events: operatorEvents.recent(clampInt(req.query.limit, 100, 1, 1000)) }));
  app.get<{ Params: { name: string }; Querystring: { minutes?: string } }>('/api/v1/volumes/:name/history', async (req, reply) => {
    const rows = opts.history(req.params.name);
    if (rows === null) return reply.code(404).send({ error: `no volume named ${req.params.name} with a write history on this node (the primary keeps one)` });
    return { history: rows.slice(-clampInt(req.query.minutes, 1440, 1, 43200)) };
  });
  registerDashboard(app, { status: opts.status, log: opts.log }); // GET /, /assets/*, /api/v1/stream (docs/DASHBOARD.md)
  const metrics = metricsRegistry(opts.status);
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
  const tokenNow = (): string => {
    try {
      return opts.token();
    } catch {
      return ''; // no token yet: nothing is authorized
    }
  };
  app.post('/api/v1/reload', async (req, reply: FastifyReply) => {
    if (!authorized(req, tokenNow())) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'a bearer token is needed for this call (print it with: offsite token -c <config>)' });
    try {
      return { message: opts.reload() };
    } catch (e) {
      return reply.code(400).send({ error: (e as Error).message });
    }
  });
  app.post<{ Params: { name: string; action: string }; Body: Body }>('/api/v1/volumes/:name/:action', async (req, reply: FastifyReply) => {
    const token = tokenNow();
    if (!authorized(req, token)) {
      opts.log.warn(`API: refused ${req.params.action} on ${req.params.name} from ${req.ip}: ${req.headers.authorization ? 'wrong token' : 'no token'}`);
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'a bearer token is needed for this call (print it with: offsite token -c <config>)' });
    }
    const act = ACTIONS[req.params.action];
    if (!act) return reply.code(404).send({ error: `no action ${req.params.action}; actions are: ${Object.keys(ACTIONS).join(', ')}` });
    const body = req.body !== null && typeof req.body === 'object' ? req.body : undefined;
    try {
      const res = await act(opts.actions, req.params.name, body);
      opts.log.info({ volume: req.params.name }, `API: ${req.params.action} on ${req.params.name}: ${res.message}`);
      return res;
    } catch (e) {
      if (e instanceof ActionError) return reply.code(e.status).send({ error: e.message });
      opts.log.error({ volume: req.params.name }, `API: ${req.params.action} on ${req.params.name} failed: ${(e as Error).message}`);
      return reply.code(500).send({ error: `${req.params.action} failed: ${(e as Error).message}` });
    }
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no such endpoint: ${req.method} ${req.url}` });
  });
  try {
    if (addr.kind === 'unix') await app.listen({ path: addr.path });
    else await app.listen({ host: addr.host, port: addr.port });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot listen for the API on ${formatListenAddress(addr)}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`);
  }
  const a = app.server.address();
  const address: ListenAddress = typeof a === 'object' && a !== null ? { kind: 'tcp', host: addr.kind === 'tcp' ? addr.host : a.address, port: a.port } : addr;
  opts.log.info(`API at http://${formatListenAddress(address)}/api/v1/status`);
  return { app, address };
}

function clampInt(v: string | undefined, dflt: number, lo: number, hi: number): number {
  const n = v === undefined ? dflt : Number.parseInt(v, 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
}
