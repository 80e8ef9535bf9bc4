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
  const half = halfIdentityError(state);
  if (half) throw half;
  if (!fs.existsSync(p.key) || !fs.existsSync(p.cert)) {
    throw new Error(`no node identity in ${state}: run \`offsite init -c <config>\` first`);
  }
  const certPem = fs.readFileSync(p.cert, 'utf8');
  return { keyPem: fs.readFileSync(p.key, 'utf8'), certPem, fingerprint: fingerprintOf(certPem) };
}

/** The error for a key without its certificate or the reverse, or null. */
function halfIdentityError(state: string): Error | null {
  const p = identityPaths(state);
  const [hasKey, hasCert] = [fs.existsSync(p.key), fs.existsSync(p.cert)];
  if (hasKey === hasCert) return null;
  const [there, missing] = hasKey ? [p.key, p.cert] : [p.cert, p.key];
  return new Error(`half an identity in ${state}: ${there} is there but ${missing} is missing; ` +
    `restore ${missing} from a backup of this node, or, to make a new identity, remove ${there} too, ` +
    'run offsite init again and pin the new fingerprint at every peer (peers: NAME: fingerprint:); ' +
    'until then the peers refuse this node');
}

/**
 * Creates the identity if absent; either way returns it. Idempotent. Half an
 * identity (a key without its certificate, or the reverse) is refused: a new key
 * pair would replace the half that is there, and the peer, which pinned the old
 * certificate's fingerprint, would refuse this node from then on without a word here.
 */
export async function ensureIdentity(state: string, node: string): Promise<{ identity: Identity; created: boolean }> {
  const p = identityPaths(state);
  if (fs.existsSync(p.key) && fs.existsSync(p.cert)) return { identity: loadIdentity(state), created: false };
  const half = halfIdentityError(state);
  if (half) throw half;
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
  // Both written in full before either is renamed into place, key first: a crash
  // leaves half an identity only between two renames (and init then says so).
  // 0600 like every file in the state folder (the certificate is no secret, but
  // nothing but this daemon reads it: its fingerprint is what goes to the peer).
  writeNew(p.key + '.tmp', keyPem);
  writeNew(p.cert + '.tmp', certPem);
  fs.renameSync(p.key + '.tmp', p.key);
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
  writeNew(file + '.tmp', token + '\n');
  fs.renameSync(file + '.tmp', file);
  return { token, created: true };
}

/**
 * Writes a file readable by this user alone. A leftover of an interrupted run is
 * removed first: opening it would keep the mode it has.
 */
function writeNew(file: string, data: string): void {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, data, { mode: 0o600 });
}

export function readToken(state: string): string {
  const file = path.join(state, TOKEN);
  if (!fs.existsSync(file)) throw new Error(`no API token in ${state}: run \`offsite init -c <config>\` first`);
  return fs.readFileSync(file, 'utf8').trim();
}
