// The HTTP API on the `api:` listener (docs/API.md). Reads are open; every mutating
// call needs the bearer token from `offsite init` (wrong or missing: 401, and
// nothing happens). Actions answer { volume, message, ... } or { error }.
//
// Bounded (issue 15): slow-body requests used to stay open for minutes, and 240 of
// them took NBD and the API down through file descriptors. So every phase of a
// request has a timeout, connections are capped at a share of RLIMIT_NOFILE, and
// refusals are logged once per address and kind, then counted (src/log/refusals.ts),
// so a flood of bad tokens cannot push the operator's events out of the ring.
import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from '../log/log.js';
import { RefusalLog } from '../log/refusals.js';
import { listenerBudget } from '../limits/fd-limit.js';
import { formatListenAddress, type ListenAddress } from '../export/listen-address.js';
import { ActionRefused, type NodeActions } from '../contract/actions.js';
import { ACTIONS, ACTION_NAMES, REFUSAL_STATUS, type Body } from './actions.js';
import { openApiDocument } from './openapi.js';
import { operatorEvents } from '../log/events.js';
import type { HistoryRing } from '../journal/history.js';
import { AddressRateLimit } from './rate-limit.js';
import type { NodeStatus } from '../contract/status.js';
import { metricsRegistry } from './metrics.js';
import { registerDashboard } from '../dashboard/dashboard.js';

export interface ApiOptions {
  status: () => NodeStatus;
  actions: NodeActions;
  /** The bearer token (read when a mutating call arrives, so `offsite init` needs no restart). */
  token: () => string;
  /** A primary volume's per-minute write history (null: no such volume or none kept). */
  history: (volume: string) => HistoryRing | null;
  /** Re-reads the config file and applies what can change live; says what changed. */
  reload: () => string;
  log: Logger;
  /** Tests shorten these; the daemon takes the defaults. */
  limits?: Partial<ApiLimits>;
  /** api_tls: HTTPS with the node's key and certificate (absent: plain HTTP). */
  tls?: { key: string; cert: string } | null;
  /** api_hosts: names answered besides IP literals, localhost and the name listened on. */
  hosts?: string[];
}

export interface ApiLimits {
  /** A request's headers must be in within this; so must the first request of a connection that sends nothing. */
  headersTimeoutMs: number;
  /** The whole request, body included (64 KiB at most): a body trickled in is cut here with 408. */
  requestTimeoutMs: number;
  /** A keep-alive connection idle between requests is closed after this. */
  keepAliveTimeoutMs: number;
  /**
   * A connection with no traffic either way for this long is closed: a client that
   * stopped reading its answer. Longer than any action the CLI waits for (120 s),
   * since an action's answer can take that long to come.
   */
  idleTimeoutMs: number;
  /** Requests on one connection; then it is closed and the client opens another. */
  maxRequestsPerSocket: number;
  /** Connections at once, dashboard streams included; more are closed on accept. */
  maxConnections: number;
  /** How often the header and request timeouts are checked (Node's default, 30 s, would let a request overstay by as much). */
  timeoutCheckMs: number;
  /** Repeated refusals (bad tokens, connections past the cap) are counted this long, then logged in one line. */
  refusalLogWindowMs: number;
  /** GET .../history requests a second from one address (past the burst); more get 429. */
  historyPerSecond: number;
  /** GET .../history requests one address may make at once. */
  historyBurst: number;
}

/**
 * The API's limits. Dashboard streams (GET /api/v1/stream) are long-lived on purpose:
 * their request is complete once its headers are in, so the request timeout never
 * applies to them, and they write every second, so neither does the idle timeout.
 */
export function apiLimits(overrides: Partial<ApiLimits> = {}): ApiLimits {
  return {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 5_000,
    idleTimeoutMs: 300_000,
    maxRequestsPerSocket: 1000,
    maxConnections: listenerBudget().apiConnections,
    timeoutCheckMs: 1000,
    refusalLogWindowMs: 60_000,
    historyPerSecond: HISTORY_REQUESTS_PER_SECOND,
    historyBurst: HISTORY_BURST,
    ...overrides,
  };
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
  const limits = apiLimits(opts.limits);
  const serverLimits = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.timeoutCheckMs,
  };
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    connectionTimeout: limits.idleTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxRequestsPerSocket: limits.maxRequestsPerSocket,
    // With TLS, the same limits go to https.createServer (fastify passes `http` only to
    // http), and the TLS handshake gets the headers' deadline: a stalled handshake
    // holds a descriptor like a stalled request.
    ...(opts.tls
      ? { https: { key: opts.tls.key, cert: opts.tls.cert, minVersion: 'TLSv1.2' as const, handshakeTimeout: limits.headersTimeoutMs, ...serverLimits } }
      : { http: serverLimits }),
  }) as unknown as FastifyInstance;
  app.server.maxConnections = limits.maxConnections;
  const refusals = new RefusalLog({ log: opts.log, windowMs: limits.refusalLogWindowMs });
  if (opts.tls) {
    // Plain HTTP (or anything but TLS) on the HTTPS port: the handshake fails and the
    // socket is closed; said once per address, then counted.
    app.server.on('tlsClientError', (e: Error & { reason?: string }, socket: net.Socket) => {
      const from = socket.remoteAddress ?? 'a local socket';
      refusals.refuse({
        kind: 'not TLS', from,
        first: `API: refused a connection from ${from}: no TLS handshake (${e.reason ?? e.message.split('\n')[0]}); this API speaks HTTPS only (api_tls: true)`,
        more: (n, who, span) => `API: refused ${n} more connections from ${who} in ${span} that did not speak TLS`,
      });
    });
  }
  // DNS rebinding: a page on another site whose name is made to resolve to this
  // address reaches the open read routes from the operator's browser, sending its own
  // name as Host. Only names this node is known by are answered; an IP literal is
  // never a rebinding.
  const hostNames = new Set(['localhost', ...(opts.hosts ?? []).map((h) => h.toLowerCase())]);
  if (addr.kind === 'tcp' && net.isIP(addr.host) === 0) hostNames.add(addr.host.toLowerCase());
  app.addHook('onRequest', (req, reply, done) => {
    const host = req.headers.host;
    if (host === undefined || hostAllowed(host, hostNames)) return done();
    const name = hostName(host);
    refusals.refuse({
      kind: 'unknown host', from: req.ip,
      first: `API: refused ${req.method} ${req.url.split('?')[0]} from ${req.ip}: Host ${JSON.stringify(name)} is not a name of this node (it answers to IP ` +
        `addresses and ${[...hostNames].join(', ')}; more go in api_hosts)`,
      more: (n, from, span) => `API: refused ${n} more requests from ${from} in ${span} for host names this node does not answer to`,
    });
    void reply.code(421).send({
      error: `this API does not answer to the host name ${JSON.stringify(name)}: a page on another site can point its name at this address (DNS rebinding). ` +
        'Use the address, localhost, or add the name to api_hosts in offsite.yaml',
    });
  });
  app.server.on('drop', (d) => refusals.refuse({
    kind: 'too many connections', from: '',
    first: `API: refused a connection from ${d?.remoteAddress ?? 'a local socket'}: ${limits.maxConnections} connections open already (at most ` +
      `${limits.maxConnections}, so that the API cannot take the file descriptors the volumes, journals and NBD need)`,
    more: (n, _from, span) => `API: refused ${n} more connections in ${span}: ${limits.maxConnections} open already`,
  }));
  app.addHook('onClose', (_app, done) => {
    refusals.close();
    done();
  });
  /** A 401, logged once per address and reason, then counted. */
  const refuse = (req: FastifyRequest, reply: FastifyReply, what: string): FastifyReply => {
    const reason = req.headers.authorization ? 'wrong token' : 'no token';
    refusals.refuse({
      kind: reason, from: req.ip,
      first: `API: refused ${what} from ${req.ip}: ${reason}`,
      more: (n, from, span) => `API: refused ${n} more requests ${reason === 'wrong token' ? 'with a wrong token' : 'without a token'} from ${from} in ${span}`,
    });
    return reply.code(401).header('www-authenticate', 'Bearer').send(
      { error: 'a bearer token is needed for this call (print it with: offsite token -c <config>)' });
  };
  app.get('/api/v1/status', async () => opts.status());
  app.get('/api/v1/checkpoints', async () => ({ checkpoints: opts.actions.checkpoints() }));
  // The restore points of a secondary's history (docs/HISTORY.md); refusals as the actions'.
  app.get<{ Params: { name: string } }>('/api/v1/volumes/:name/restore-points', async (req, reply) => {
    try {
      return opts.actions.history(req.params.name);
    } catch (e) {
      if (!(e instanceof ActionRefused)) throw e;
      return reply.code(REFUSAL_STATUS[e.reason]).send({ error: e.message, reason: e.reason });
    }
  });
  app.get('/api/v1/openapi.json', async () => openApiDocument(opts.status().version));
  app.get<{ Querystring: { limit?: string } }>('/api/v1/events', async (req) => ({ events: operatorEvents.recent(clampInt(req.query.limit, 100, 1, 1000)) }));
  // Answered from the rows the daemon keeps in memory, each answer made once per
  // minute recorded (30 days of rows are 7 MB of JSON, 60 ms to make), and limited
  // per address: the event loop this takes is the one NBD runs on.
  const historyRate = new AddressRateLimit({ perSecond: limits.historyPerSecond, burst: limits.historyBurst });
  const historyAnswers = new Map<string, { ring: HistoryRing; appended: number; body: string }>();
  app.get<{ Params: { name: string }; Querystring: { minutes?: string } }>('/api/v1/volumes/:name/history', async (req, reply) => {
    if (!historyRate.take(req.ip)) {
      refusals.refuse({
        kind: 'history rate', from: req.ip,
        first: `API: refused GET /api/v1/volumes/${req.params.name}/history from ${req.ip}: more than ${limits.historyBurst} at once or ` +
          `${limits.historyPerSecond} a second from one address`,
        more: (n, from, span) => `API: refused ${n} more history requests from ${from} in ${span}: over ${limits.historyPerSecond} a second`,
      });
      return reply.code(429).header('retry-after', String(historyRate.retryAfter(req.ip)))
        .send({ error: `too many history requests from ${req.ip}: at most ${limits.historyPerSecond} a second (${limits.historyBurst} at once); the history ` +
          `changes once a minute` });
    }
    const ring = opts.history(req.params.name);
    if (ring === null) return reply.code(404).send({ error: `no volume named ${req.params.name} with a write history on this node (the primary keeps one)` });
    const minutes = clampInt(req.query.minutes, 1440, 1, 43200);
    const key = `${req.params.name}\u0000${minutes}`;
    let answer = historyAnswers.get(key);
    if (answer?.ring !== ring || answer.appended !== ring.appended) {
      answer = { ring, appended: ring.appended, body: JSON.stringify({ history: ring.last(minutes) }) };
      historyAnswers.delete(key);
      historyAnswers.set(key, answer);
      // A few answers kept (the oldest made goes first): distinct `minutes` cost a new one each.
      if (historyAnswers.size > HISTORY_ANSWERS_KEPT) historyAnswers.delete(historyAnswers.keys().next().value!);
    }
    return reply.type('application/json; charset=utf-8').send(answer.body);
  });
  // GET /, /assets/*, /api/v1/stream (docs/DASHBOARD.md). Streams take at most half
  // the connections, so the API still answers with every stream open.
  registerDashboard(app, { status: opts.status, log: opts.log, maxStreams: Math.max(1, Math.min(32, Math.floor(limits.maxConnections / 2))) });
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
    if (!authorized(req, tokenNow())) return refuse(req, reply, 'reload');
    try {
      return { message: opts.reload() };
    } catch (e) {
      return reply.code(400).send({ error: (e as Error).message });
    }
  });
  app.post<{ Params: { name: string; action: string }; Body: Body }>('/api/v1/volumes/:name/:action', async (req, reply: FastifyReply) => {
    const token = tokenNow();
    if (!authorized(req, token)) return refuse(req, reply, `${req.params.action} on ${req.params.name}`);
    const act = ACTIONS.get(req.params.action);
    if (!act) return reply.code(404).send({ error: `no action ${req.params.action}; actions are: ${ACTION_NAMES.join(', ')}` });
    const body = req.body !== null && typeof req.body === 'object' ? req.body : undefined;
    try {
      const res = await act(opts.actions, req.params.name, body);
      opts.log.info({ volume: req.params.name }, `API: ${req.params.action} on ${req.params.name}: ${res.message}`);
      return res;
    } catch (e) {
      if (e instanceof ActionRefused) return reply.code(REFUSAL_STATUS[e.reason]).send({ error: e.message });
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
  // Past listen, an error is a failed accept (EMFILE: out of file descriptors). Said, not thrown.
  app.server.on('error', (e: NodeJS.ErrnoException) => refusals.refuse({
    kind: `accept ${e.code ?? e.message}`, from: '',
    first: `API: cannot accept a connection: ${e.code === 'EMFILE' || e.code === 'ENFILE' ? `${e.code}, out of file descriptors` : e.message}`,
    more: (n, _from, span) => `API: ${n} more connections could not be accepted in ${span}: ${e.code ?? e.message}`,
  }));
  const a = app.server.address();
  const address: ListenAddress = typeof a === 'object' && a !== null ? { kind: 'tcp', host: addr.kind === 'tcp' ? addr.host : a.address, port: a.port } : addr;
  opts.log.info(`API at ${opts.tls ? 'https' : 'http'}://${formatListenAddress(address)}/api/v1/status`);
  return { app, address };
}

/** The name in a Host header, without its port, lower case, without a trailing dot ("[::1]" for IPv6). */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(h);
  return (m?.[1] ?? h).replace(/\.$/, '');
}

function hostAllowed(host: string, names: Set<string>): boolean {
  const name = hostName(host);
  if (name.startsWith('[') && name.endsWith(']')) return net.isIPv6(name.slice(1, -1));
  return net.isIPv4(name) || names.has(name);
}

/** The history route's limit per address (docs/API.md, "Limits"): ample for a tool polling it, which changes once a minute. */
export const HISTORY_REQUESTS_PER_SECOND = 2;
export const HISTORY_BURST = 6;
/** Made history answers kept (volume and `minutes`), at most 7 MB each. */
const HISTORY_ANSWERS_KEPT = 8;

function clampInt(v: string | undefined, dflt: number, lo: number, hi: number): number {
  const n = v === undefined ? dflt : Number.parseInt(v, 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
}
