// File descriptors kept for what matters. The daemon's volumes, journals, receive
// logs, the peer link and NBD connections all need descriptors from the same
// RLIMIT_NOFILE as every socket a stranger opens to the link port or the API. With
// no cap, 235 idle connections to the link port of a daemon limited to 256
// descriptors made journal applies fail with EMFILE, dropped the link and stopped
// NBD and the API from answering. So the listeners that take callers nobody has
// vetted yet hold at most a share of the limit; the rest stays for the disks.
import fs from 'node:fs';

/**
 * Assumed when the limit cannot be read (no /proc: not Linux). 1024 is the usual
 * soft limit; Node raises the soft limit to the hard one at start, so where it can
 * be read it is often higher.
 */
export const ASSUMED_OPEN_FILE_LIMIT = 1024;

/**
 * The process's soft RLIMIT_NOFILE as it is now (after Node raised it to the hard
 * limit at start), from /proc/self/limits; null where that cannot be read. Node
 * itself does not expose getrlimit.
 */
export function openFileLimit(): number | null {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === 'unlimited') return Number.MAX_SAFE_INTEGER;
    const n = soft === undefined ? NaN : Number.parseInt(soft, 10);
    return Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

export interface ListenerBudget {
  /** The soft limit these shares were taken from. */
  openFiles: number;
  /** Link-port sockets accepted and not yet authenticated (TLS handshake in progress): 1/16, 4 to 64. */
  linkHandshakes: number;
  /** The same, from one address: a real peer needs one at a time (it redials after a failure). */
  linkHandshakesPerAddress: number;
  /** API connections (dashboard streams included): 1/8, 16 to 256. */
  apiConnections: number;
}

/**
 * The shares. At 256 descriptors the link port holds at most 16 handshakes and the
 * API 32 connections, which leaves 208 for the volumes, journals, peer links and
 * NBD; at 1024, 64 and 128; never more than 64 and 256.
 */
export function listenerBudget(openFiles = openFileLimit() ?? ASSUMED_OPEN_FILE_LIMIT): ListenerBudget {
  const share = (part: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, Math.floor(openFiles * part)));
  return {
    openFiles,
    linkHandshakes: share(1 / 16, 4, 64),
    linkHandshakesPerAddress: 4,
    apiConnections: share(1 / 8, 16, 256),
  };
}
