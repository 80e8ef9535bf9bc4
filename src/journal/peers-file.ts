// The peers a primary's journal kept cursors for, written down in its state folder
// (docs/PEERS.md, "Peers changed across a restart"). The journal lets records go once
// every peer it knows has acked them; a peer it did not know then (taken out of the
// file at one restart, put back at a later one) lacks them, and nothing else holds
// them: a peer that returns behind the journal's start was assumed to lack only what
// the journal and the bitmap hold, so its resync left the records released meanwhile
// out, and its replica ended different from the primary while every figure said it was
// current. So each start compares the file's peers with these, and a change is made as
// a reload makes it (JournaledVolume.setPeers): a peer new to the journal waits detached
// for a first sync of its own, compared by hash; one gone holds the journal back no more.
//
// STATE/volumes/NAME/peers, JSON: {"version":1,"peers":["site-b","site-c"]}. Written at
// a primary's first start and after each change of its peers (durably, before the
// change is said done).
import { readStateFile, type Store } from './store.js';
import { jsonVersion } from '../versioning/format.js';

export const PEERS_FILE = 'peers';
export const PEERS_FORMAT = jsonVersion('journal peers file', 1, [1]);

export function writePeers(store: Store, peers: readonly string[]): Promise<void> {
  return store.replace(PEERS_FILE, Buffer.from(`${JSON.stringify({ version: PEERS_FORMAT.writes, peers })}\n`));
}

/** The peers written down, or null (none: a journal of a release before this file). A file that cannot be read stops the start. */
export async function readPeers(store: Store): Promise<string[] | null> {
  const b = await readStateFile(store, PEERS_FILE, PEERS_FORMAT);
  if (b === null) return null;
  let peers: unknown;
  try {
    peers = (JSON.parse(b.toString('utf8')) as { peers?: unknown }).peers;
  } catch {
    peers = undefined;
  }
  const listed = Array.isArray(peers) && peers.length > 0 && peers.every((p) => typeof p === 'string' && p.length > 0);
  if (!listed || new Set(peers as string[]).size !== (peers as string[]).length) {
    throw new Error(`${PEERS_FILE}: no list of peers in it (${b.toString('utf8').trim()})`);
  }
  return peers as string[];
}

/** The same peers, in any order. */
export function samePeers(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((p) => b.includes(p));
}

/**
 * The peers a journal opens with: those written down at its last run when they differ
 * from `configured` (JournaledVolume.settlePeers then makes the change).
 */
export function peersToOpenWith(had: readonly string[] | null, configured: readonly string[]): readonly string[] {
  return had !== null && !samePeers(had, configured) ? had : configured;
}
