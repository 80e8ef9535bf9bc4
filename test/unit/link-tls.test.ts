// The peer link's TLS: mutual certificates, pinned fingerprints, no plaintext.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { before, test } from 'node:test';
import { createLogger } from '../../src/log/log.js';
import { ensureIdentity, normaliseFingerprint, type Identity } from '../../src/link/identity.js';
import { LinkListener, LinkRefused, connectLink, type AcceptedLink } from '../../src/link/tls.js';
import { tempDir } from '../helpers/run.js';

let a: Identity;
let b: Identity;
let mallory: Identity;

before(async () => {
  a = (await ensureIdentity(tempDir('id-a'), 'site-a')).identity;
  b = (await ensureIdentity(tempDir('id-b'), 'site-b')).identity;
  mallory = (await ensureIdentity(tempDir('id-m'), 'mallory')).identity;
});

function capture(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { lines, log: createLogger({ format: 'json', destination: { write: (s: string) => { lines.push(s); return true; } } as unknown as NodeJS.WritableStream }) };
}

async function listenA(onLink: (l: AcceptedLink) => void): Promise<{ l: LinkListener; port: number; lines: string[] }> {
  const { log, lines } = capture();
  const l = new LinkListener({ identity: a, peers: [{ name: 'site-b', fingerprint: b.fingerprint.toLowerCase().replace(/:/g, '') }], log, onLink });
  const addr = await l.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  return { l, port: addr.kind === 'tcp' ? addr.port : 0, lines };
}

test('init is idempotent and fingerprints normalise', async () => {
  const dir = tempDir('id-again');
  const first = await ensureIdentity(dir, 'x');
  const second = await ensureIdentity(dir, 'x');
  assert.equal(first.created, true);
  assert.equal(second.created, false);
  assert.equal(first.identity.fingerprint, second.identity.fingerprint);
  assert.match(first.identity.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.equal(normaliseFingerprint(`sha256:${first.identity.fingerprint.toLowerCase()}`), first.identity.fingerprint);
});

test('the paired peer gets in; the server speaks only after checking it', async () => {
  const { l, port } = await listenA((link) => {
    assert.equal(link.peer.name, 'site-b');
    link.socket.end('hello site-b\n');
  });
  const s = await connectLink({ identity: b, peer: { name: 'site-a', fingerprint: a.fingerprint }, host: '127.0.0.1', port });
  assert.equal(s.getProtocol(), 'TLSv1.3');
  const got = await new Promise<string>((resolve) => {
    let d = '';
    s.on('data', (c: Buffer) => (d += c.toString()));
    s.on('end', () => resolve(d));
  });
  assert.equal(got, 'hello site-b\n');
  await l.close();
});

test('an unknown peer is refused before any data, and the log says who and with which fingerprint', async () => {
  let linked = false;
  const { l, port, lines } = await listenA(() => { linked = true; });
  const s = await connectLink({ identity: mallory, peer: { name: 'site-a', fingerprint: a.fingerprint }, host: '127.0.0.1', port });
  const got = await new Promise<number>((resolve) => {
    let n = 0;
    s.on('data', (c: Buffer) => (n += c.length));
    s.on('close', () => resolve(n));
    s.on('error', () => undefined);
  });
  assert.equal(got, 0, 'not a byte for an unknown peer');
  assert.equal(linked, false);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(lines.some((x) => x.includes('refused') && x.includes(mallory.fingerprint)), lines.join(''));
  await l.close();
});

test('a server with the wrong certificate is refused by the client before it sends', async () => {
  const { l, port } = await listenA((link) => link.socket.end());
  await assert.rejects(
    connectLink({ identity: b, peer: { name: 'site-a', fingerprint: mallory.fingerprint }, host: '127.0.0.1', port }),
    (e: unknown) => e instanceof LinkRefused && e.message.includes(a.fingerprint) && e.message.includes('is not site-a'),
  );
  await l.close();
});

test('plaintext and certificate-less clients get nothing', async () => {
  let linked = false;
  const { l, port, lines } = await listenA(() => { linked = true; });
  // Plaintext: the TLS server answers garbage with a handshake failure and closes.
  const raw = net.connect(port, '127.0.0.1');
  raw.write('OFFSITE HELLO plaintext please\n');
  await new Promise((r) => raw.on('close', r));
  // TLS without a client certificate.
  const bare = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
  const n = await new Promise<number>((resolve) => {
    let k = 0;
    bare.on('data', (c: Buffer) => (k += c.length));
    bare.on('close', () => resolve(k));
    bare.on('error', () => undefined);
  });
  assert.equal(n, 0);
  assert.equal(linked, false);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(lines.some((x) => x.includes('presented no certificate')), lines.join(''));
  assert.ok(lines.some((x) => x.includes('refused during the TLS handshake')), lines.join(''));
  await l.close();
});
