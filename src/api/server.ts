// The HTTP API on the `api:` listener. This issue: GET /api/v1/status (read-only,
// open). Mutating calls (later) need the bearer token from `offsite init`.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../log/log.js';
import { formatListenAddress, type ListenAddress } from '../nbd/server.js';
import type { NodeStatus } from './status.js';

export interface ApiOptions {
  status: () => NodeStatus;
  log: Logger;
}

export async function startApi(addr: ListenAddress, opts: ApiOptions): Promise<{ app: FastifyInstance; address: ListenAddress }> {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  app.get('/api/v1/status', async () => opts.status());
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
