// How the CLI reaches its node's daemon: the config's `api:` listener, with the
// bearer token from the state folder for actions. Plain node:http (fetch would load
// undici, a fifth of a command's start). With `api_tls: true` the same requests go
// over TLS to a daemon that must present the node's own certificate (state/node.crt,
// made by `offsite init`): pinned by fingerprint, like the peer link, and checked
// before a byte of the request (the token) is sent.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ClientConfig } from '../config/client.js';
import { formatListenAddress } from '../export/listen-address.js';
import type { NodeStatus } from '../contract/status.js';

/** The token file `offsite init` writes in the state folder (src/link/identity.ts). */
const TOKEN_FILE = 'api.token';
/** The node's certificate, the one the daemon serves the API with when api_tls is true (src/link/identity.ts). */
const CERT_FILE = 'node.crt';

/** An error whose message is already what the operator should read. */
class Said extends Error {}

/** SHA-256 of the certificate's DER, as Node's fingerprint256 and `offsite init` print it. */
function pemFingerprint(pem: string): string {
  const b64 = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem)?.[1]?.replace(/\s+/g, '') ?? '';
  return createHash('sha256').update(Buffer.from(b64, 'base64')).digest('hex').toUpperCase().match(/.{2}/g)!.join(':');
}

/**
 * A TLS connection to the API that presents this node's own certificate, or an
 * error that says what it presented instead. The request is written only after.
 */
async function pinnedSocket(c: ClientConfig, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const file = path.join(c.state, CERT_FILE);
  if (!fs.existsSync(file)) throw new Said(
    `api_tls is true in ${c.file}, but there is no node certificate in ${c.state} to check the daemon's with: run \`offsite init -c ${c.file}\``);
  const want = pemFingerprint(fs.readFileSync(file, 'utf8'));
  const tls = await import('node:tls');
  return new Promise((resolve, reject) => {
    // The certificate is self-signed: what vouches for it is its fingerprint, checked here.
    const socket = tls.connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.2', timeout: timeoutMs });
    socket.once('secureConnect', () => {
      const got = socket.getPeerCertificate().fingerprint256 ?? 'none';
      if (got === want) return resolve(socket);
      socket.destroy();
      reject(new Said(`the API at ${host}:${port} presented certificate ${got}, not this node's own (${file}: ${want}); ` +
        'another program may be listening there: nothing was sent'));
    });
    socket.once('timeout', () => socket.destroy(Object.assign(new Error('TLS handshake timed out'), { code: 'ETIMEDOUT' })));
    socket.once('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ECONNREFUSED' || e.code === 'ETIMEDOUT' ? e
        : new Said(`cannot reach the daemon of node ${c.node} at ${host}:${port} over TLS (${e.code ?? e.message}); api_tls is true in ${c.file}: does the ` +
          `daemon run with this config?`));
    });
  });
}

function target(c: ClientConfig): { host: string; port: number } {
  if (!c.api) throw new Error(`${c.file} has no api: listener; add for example "api: 127.0.0.1:7780" and restart the daemon`);
  if (c.api.kind !== 'tcp') throw new Error(`the CLI reaches the daemon over TCP; ${c.file} gives api: ${formatListenAddress(c.api)}`);
  const host = c.api.host === '0.0.0.0' || c.api.host === '::' ? '127.0.0.1' : c.api.host;
  return { host, port: c.api.port };
}

function readToken(state: string): string {
  const file = path.join(state, TOKEN_FILE);
  if (!fs.existsSync(file)) throw new Error(`no API token in ${state}: run \`offsite init -c <config>\` first`);
  return fs.readFileSync(file, 'utf8').trim();
}

interface Answer { status: number; body: unknown }

function request(c: ClientConfig, method: string, route: string, body: string | null, headers: Record<string, string>, timeoutMs: number): Promise<Answer> {
  const { host, port } = target(c);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host, port, method, path: route, headers: { ...headers, ...(body !== null ? { 'content-length': String(Buffer.byteLength(body)) } :
        {}) }, timeout: timeoutMs,
      ...(c.apiTls ? {
        createConnection: (_o: unknown, done: (err: Error | null, s: Socket) => void) => {
          pinnedSocket(c, host, port, timeoutMs).then((s) => done(null, s), (e: Error) => done(e, undefined as unknown as Socket));
          return undefined;
        },
      } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        let parsed: unknown = {};
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch { /* not JSON: the status code speaks */ }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer in ${Math.round(timeoutMs / 1000)} s`), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof Said) return reject(new Error(e.message));
      if (!c.apiTls && (e.code === 'ECONNRESET' || e.code === 'HPE_INVALID_CONSTANT')) {
        return reject(new Error(
          `the daemon of node ${c.node} at ${formatListenAddress(c.api!)} did not answer plain HTTP (${e.code}); if it serves the API over HTTPS, set ` +
          `api_tls: true in ${c.file}`));
      }
      reject(new Error(`cannot reach the daemon of node ${c.node} at ${formatListenAddress(c.api!)} (${e.code ?? e.message}); is \`offsite daemon ` +
        `-c ${c.file}\` running?`));
    });
    req.end(body ?? undefined);
  });
}

export async function getJson<T>(c: ClientConfig, route: string, timeoutMs = 120_000): Promise<T> {
  const res = await request(c, 'GET', route, null, {}, timeoutMs);
  const body = res.body as T & { error?: string };
  if (res.status < 200 || res.status >= 300) throw new Error(body.error ?? `the daemon at ${formatListenAddress(c.api!)} answered ${res.status}`);
  return body;
}

export function fetchStatus(c: ClientConfig): Promise<NodeStatus> {
  return getJson<NodeStatus>(c, '/api/v1/status', 5000);
}

/** POST /api/v1/volumes/{volume}/{action}; resolves to the daemon's message or throws its refusal. */
export function callAction(c: ClientConfig, volume: string, action: string,
  body: Record<string, unknown> = {}): Promise<{ message: string } & Record<string, unknown>> {
  return post(c, `/api/v1/volumes/${encodeURIComponent(volume)}/${action}`, body);
}

/** POST /api/v1/reload: the daemon reads its config file again; resolves to what it says it did, or throws why not. */
export function callReload(c: ClientConfig): Promise<{ message: string }> {
  return post(c, '/api/v1/reload', {});
}

async function post(c: ClientConfig, route: string, body: Record<string, unknown>): Promise<{ message: string } & Record<string, unknown>> {
  const token = readToken(c.state);
  const res = await request(c, 'POST', route, JSON.stringify(body), { 'content-type': 'application/json', authorization: `Bearer ${token}` }, 120_000);
  const out = res.body as { message?: string; error?: string };
  if (res.status < 200 || res.status >= 300) throw new Error(out.error ?? `the daemon answered ${res.status}`);
  return out as { message: string } & Record<string, unknown>;
}
