// The peer link's TLS: mutual certificates, pinned fingerprints, no plaintext.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { before, test } from 'node:test';
import { createLogger } from '../../src/log/log.js';
import { ensureIdentity, normaliseFingerprint, type Identity } from '../../src/link/identity.js';
import { LinkListener, LinkRefused, connectLink, type AcceptedLink } from '../../src/link/tls.js';
import { tempDir, waitFor } from '../helpers/run.js';

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
  return { lines, log: createLogger(
    { format: 'json', destination: { write: (s: string) => { lines.push(s); return true; } } as unknown as NodeJS.WritableStream }) };
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

// What a stranger can hold on the link port (issue 15): every socket must finish its
// handshake within the deadline, and the handshakes in progress are capped overall
// and per address, so idle or stalled connections cannot take the daemon's file
// descriptors. Loopback has many addresses (127.0.0.0/8): the strangers come from
// 127.0.0.2 and up, the real peer from 127.0.0.1.

/** A real ClientHello (site-b's), to replay and then fall silent: a handshake left half-open. */
async function clientHello(): Promise<Buffer> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const hello = new Promise<Buffer>((resolve) => srv.once('connection', (s) => s.once('data', (d: Buffer) => {
    resolve(d);
    s.destroy();
  })));
  const c = tls.connect({ minVersion: 'TLSv1.3', host: '127.0.0.1', port, key: b.keyPem, cert: b.certPem, rejectUnauthorized: false });
  c.on('error', () => undefined);
  const d = await hello;
  c.destroy();
  srv.close();
  return d;
}

interface Stranger {
  socket: net.Socket;
  closed: Promise<void>;
  isClosed: () => boolean;
}

function stranger(port: number, from: string, send?: (s: net.Socket) => void): Promise<Stranger> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let closed = false;
    const done = new Promise<void>((r) => socket.once('close', () => {
      closed = true;
      r();
    }));
    socket.on('error', () => undefined);
    socket.on('data', () => undefined); // whatever the server answers is read and dropped
    socket.once('connect', () => {
      send?.(socket);
      resolve({ socket, closed: done, isClosed: () => closed });
    });
  });
}

function messages(lines: string[]): string[] {
  return lines.map((x) => String((JSON.parse(x) as { msg?: string }).msg));
}

/** A link from site-b that echoes what it is sent, to show the real peer keeps working. */
async function echoLink(port: number, links: AcceptedLink[]): Promise<(text: string) => Promise<string>> {
  const s = await connectLink({ identity: b, peer: { name: 'site-a', fingerprint: a.fingerprint }, host: '127.0.0.1', port });
  await waitFor('site-b linked', () => links.length > 0, 10_000, 10);
  const server = links[0]!.socket;
  server.on('data', (c: Buffer) => server.write(c));
  return (text) => new Promise<string>((resolve, reject) => {
    if (s.destroyed) return reject(new Error('the link is gone'));
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString();
      if (got.length >= text.length) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.write(text);
  });
}

test('idle, half-open and trickling handshakes are closed at the deadline; the real link keeps working', async () => {
  const { log, lines } = capture();
  const links: AcceptedLink[] = [];
  const l = new LinkListener({
    identity: a, peers: [{ name: 'site-b', fingerprint: b.fingerprint }], log, onLink: (x) => links.push(x),
    handshakeTimeoutMs: 500, maxPendingPerAddress: 50, maxPendingHandshakes: 50,
  });
  const port = ((await l.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 })) as { port: number }).port;
  const hello = await clientHello();
  const idle = await Promise.all(Array.from({ length: 10 }, () => stranger(port, '127.0.0.2')));
  const halfOpen = await Promise.all(Array.from({ length: 5 }, () => stranger(port, '127.0.0.3', (s) => s.write(hello))));
  // A byte every 50 ms: never idle, so an idle timer alone would never fire.
  const trickling = await stranger(port, '127.0.0.4');
  let at = 0;
  const drip = setInterval(() => {
    if (at < hello.length && !trickling.isClosed()) trickling.socket.write(hello.subarray(at, ++at));
  }, 50);
  await waitFor('the 16 strangers accepted', () => l.pendingHandshakes === 16, 10_000, 10);
  const echo = await echoLink(port, links);
  assert.equal(await echo('before'), 'before');

  // All closed by the server (the 20 s bound is only a guard; the deadline is 0.5 s).
  await waitFor('every stranger closed', () => [...idle, ...halfOpen, trickling].every((x) => x.isClosed()), 20_000, 10);
  clearInterval(drip);
  assert.ok(at < hello.length, 'the trickle was cut before its ClientHello was through');
  assert.equal(l.pendingHandshakes, 0);
  assert.equal(await echo('after the strangers were cut'), 'after the strangers were cut');
  assert.equal(links.length, 1);

  const msgs = messages(lines);
  assert.ok(msgs.some((m) => /^link from 127\.0\.0\.2:\d+ closed: no TLS handshake within 0\.5 s$/.test(m)), msgs.join('\n'));
  // Ten idle sockets from one address: one line now; the other nine are counted, not logged one by one.
  assert.equal(msgs.filter((m) => m.includes('127.0.0.2')).length, 1, msgs.join('\n'));
  links[0]!.socket.destroy();
  await l.close();
  assert.ok(messages(lines).some((m) => m === 'link port: closed 9 more connections from 127.0.0.2 in the last minute: no TLS handshake within 0.5 s'),
    messages(lines).join('\n'));
});

test('handshakes in progress are capped per address and overall; a flood is logged once, then counted', async () => {
  const { log, lines } = capture();
  const links: AcceptedLink[] = [];
  const l = new LinkListener({
    identity: a, peers: [{ name: 'site-b', fingerprint: b.fingerprint }], log, onLink: (x) => links.push(x),
    handshakeTimeoutMs: 60_000, maxPendingPerAddress: 3, maxPendingHandshakes: 5, refusalLogWindowMs: 1000,
  });
  const port = ((await l.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 })) as { port: number }).port;
  const held = await Promise.all(Array.from({ length: 3 }, () => stranger(port, '127.0.0.2')));
  await waitFor('three accepted', () => l.pendingHandshakes === 3, 10_000, 10);

  // A fourth from the same address is closed at once; another address still gets in.
  const flood = await Promise.all(Array.from({ length: 20 }, () => stranger(port, '127.0.0.2')));
  await Promise.all(flood.map((x) => x.closed));
  const other = await Promise.all(Array.from({ length: 2 }, () => stranger(port, '127.0.0.3')));
  await waitFor('five accepted', () => l.pendingHandshakes === 5, 10_000, 10);
  assert.ok([...held, ...other].every((x) => !x.isClosed()), 'the handshakes within the caps are left to their deadline');

  // Five in progress: the cap overall closes a sixth from a new address at once.
  const sixth = await stranger(port, '127.0.0.4');
  await sixth.closed;
  assert.equal(l.pendingHandshakes, 5);

  // The real peer is refused too while the strangers hold every slot (that is what
  // the deadline is for); once they are gone it gets in.
  for (const x of held) x.socket.destroy();
  await waitFor('the held sockets released', () => l.pendingHandshakes === 2, 10_000, 10);
  const s = await connectLink({ identity: b, peer: { name: 'site-a', fingerprint: a.fingerprint }, host: '127.0.0.1', port });
  await waitFor('site-b linked', () => links.length === 1, 10_000, 10);

  // One line per kind and address, then one summary at the end of the window.
  await waitFor('the flood summarised',
    () => messages(lines).some((m) => m.startsWith('link port: refused 19 more connections from 127.0.0.2 in the last 1 s')), 10_000, 10);
  const msgs = messages(lines);
  const firstRefusal =
    /^link port: refused a connection from 127\.0\.0\.2:\d+: 3 TLS handshakes from 127\.0\.0\.2 in progress already \(at most 3 from one address\)$/;
  assert.deepEqual(msgs.filter((m) => m.includes('127.0.0.2')), [
    msgs.find((m) => firstRefusal.test(m))!,
    'link port: refused 19 more connections from 127.0.0.2 in the last 1 s: 3 TLS handshakes from one address in progress already',
  ], msgs.join('\n'));
  assert.ok(msgs.some((m) =>
    /^link port: refused a connection from 127\.0\.0\.4:\d+: 5 TLS handshakes in progress already \(at most 5,/.test(m)), msgs.join('\n'));
  s.destroy();
  for (const x of other) x.socket.destroy();
  links[0]!.socket.destroy();
  await l.close();
});
