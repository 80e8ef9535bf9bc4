// A node's identity: an ECDSA P-256 key pair and a self-signed certificate in the
// state dir, made once by `offsite init`. Peers pin each other by the certificate's
// SHA-256 fingerprint; no certificate authority is involved.
import { X509Certificate, randomBytes, webcrypto } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type * as X509 from '@peculiar/x509';

/** @peculiar/x509 (and the reflect polyfill it needs) load only when an identity is made. */
async function loadX509(): Promise<typeof X509> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return x509;
}

export interface Identity {
  keyPem: string;
  certPem: string;
  /** "AB:CD:..." — SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string;
}

const KEY = 'node.key';
const CERT = 'node.crt';

export function identityPaths(state: string): { key: string; cert: string } {
  return { key: path.join(state, KEY), cert: path.join(state, CERT) };
}

export function fingerprintOf(certPem: string | Buffer): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** Normalises what an operator pasted: case, and with or without colons or a "sha256:" prefix. */
export function normaliseFingerprint(s: string): string {
  const hex = s.trim().replace(/^sha-?256[:=]?/i, '').replace(/[^0-9a-fA-F]/g, '').toUpperCase();
  return hex.match(/.{2}/g)?.join(':') ?? '';
}

/** Loads the identity in `state`, or throws a message that says to run `offsite init`. */
export function loadIdentity(state: string): Identity {
  const p = identityPaths(state);
  if (!fs.existsSync(p.key) || !fs.existsSync(p.cert)) {
    throw new Error(`no node identity in ${state}: run \`offsite init -c <config>\` first`);
  }
  const certPem = fs.readFileSync(p.cert, 'utf8');
  return { keyPem: fs.readFileSync(p.key, 'utf8'), certPem, fingerprint: fingerprintOf(certPem) };
}

/** Creates the identity if absent; either way returns it. Idempotent. */
export async function ensureIdentity(state: string, node: string): Promise<{ identity: Identity; created: boolean }> {
  const p = identityPaths(state);
  if (fs.existsSync(p.key) && fs.existsSync(p.cert)) return { identity: loadIdentity(state), created: false };
  fs.mkdirSync(state, { recursive: true, mode: 0o700 });
  const x509 = await loadX509();
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = new Date();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${node}, O=offsite`,
    notBefore: new Date(now.getTime() - 86_400_000),
    notAfter: new Date(now.getTime() + 100 * 365 * 86_400_000),
    signingAlgorithm: alg,
    keys: keys as unknown as Parameters<typeof X509.X509CertificateGenerator.createSelfSigned>[0]['keys'],
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(pkcs8).toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  const certPem = cert.toString('pem') + '\n';
  // Key first (0600), then the certificate: a half-made identity is never loaded.
  fs.writeFileSync(p.key + '.tmp', keyPem, { mode: 0o600 });
  fs.renameSync(p.key + '.tmp', p.key);
  fs.writeFileSync(p.cert + '.tmp', certPem, { mode: 0o644 });
  fs.renameSync(p.cert + '.tmp', p.cert);
  return { identity: { keyPem, certPem, fingerprint: fingerprintOf(certPem) }, created: true };
}

const TOKEN = 'api.token';

/** The bearer token for mutating API calls: 32 random bytes, hex, mode 0600. */
export function ensureToken(state: string): { token: string; created: boolean } {
  const file = path.join(state, TOKEN);
  if (fs.existsSync(file)) return { token: fs.readFileSync(file, 'utf8').trim(), created: false };
  fs.mkdirSync(state, { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('hex');
  fs.writeFileSync(file + '.tmp', token + '\n', { mode: 0o600 });
  fs.renameSync(file + '.tmp', file);
  return { token, created: true };
}

export function readToken(state: string): string {
  const file = path.join(state, TOKEN);
  if (!fs.existsSync(file)) throw new Error(`no API token in ${state}: run \`offsite init -c <config>\` first`);
  return fs.readFileSync(file, 'utf8').trim();
}
