// How the CLI reaches its node's daemon: the config's `api:` listener, with the
// bearer token from the state folder for actions.
import type { Config } from '../config/config.js';
import { formatListenAddress } from '../nbd/server.js';
import { readToken } from '../link/identity.js';

export function apiUrl(c: Config, route: string): string {
  if (!c.api) throw new Error(`${c.file} has no api: listener; add for example "api: 127.0.0.1:7780" and restart the daemon`);
  if (c.api.kind !== 'tcp') throw new Error(`the CLI reaches the daemon over TCP; ${c.file} gives api: ${formatListenAddress(c.api)}`);
  const host = c.api.host === '0.0.0.0' || c.api.host === '::' ? '127.0.0.1' : c.api.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${c.api.port}${route}`;
}

async function request(c: Config, route: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(apiUrl(c, route), { ...init, signal: AbortSignal.timeout(120_000) });
  } catch (e) {
    if ((e as Error).message.includes('api: listener') || (e as Error).message.includes('over TCP')) throw e;
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    throw new Error(`cannot reach the daemon of node ${c.node} at ${formatListenAddress(c.api!)} (${cause}); is \`offsite daemon -c ${c.file}\` running?`);
  }
}

export async function getJson<T>(c: Config, route: string): Promise<T> {
  const res = await request(c, route, {});
  const body = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new Error(body.error ?? `the daemon answered ${res.status}`);
  return body;
}

/** POST /api/v1/volumes/{volume}/{action}; resolves to the daemon's message or throws its refusal. */
export async function callAction(c: Config, volume: string, action: string, body: Record<string, unknown> = {}): Promise<{ message: string } & Record<string, unknown>> {
  const token = readToken(c.state);
  const res = await request(c, `/api/v1/volumes/${encodeURIComponent(volume)}/${action}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const out = (await res.json().catch(() => ({}))) as { message?: string; error?: string };
  if (!res.ok) throw new Error(out.error ?? `the daemon answered ${res.status}`);
  return out as { message: string } & Record<string, unknown>;
}
