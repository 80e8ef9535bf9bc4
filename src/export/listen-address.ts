// Where a listener listens: "127.0.0.1:10809", "[::1]:10809", ":10809" (every
// address) or "unix:/run/offsite.sock". Shared by every front end (NBD, and iSCSI
// next), the peer link, the API and SNMP; no I/O here, so the CLI loads it for free.

export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseListenAddress(s: string): ListenAddress {
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (!path) throw new Error(`"${s}": unix: needs a socket path`);
    return { kind: 'unix', path };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s);
  if (!m) throw new Error(`"${s}" is not host:port or unix:/path`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`"${s}": port ${port} is out of range`);
  return { kind: 'tcp', host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function formatListenAddress(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** A TCP listener on every address, or on one that is not loopback (reachable from the network). */
export function isNetworkFacing(a: ListenAddress): boolean {
  if (a.kind === 'unix') return false;
  const h = a.host.toLowerCase();
  return !(h === 'localhost' || h === '::1' || h.startsWith('127.'));
}
