// The stream of records a replicated volume's journal (primary) or receive log
// (secondary) holds (docs/PEERS.md, "Roles across three sites"). A primary's journal
// numbers its records from 1 when it begins (a new volume, a promote), so a record's
// seq means something only within one journal: its stream. A primary names its stream
// with a random id when its journal begins; a secondary writes down the stream whose
// records its receive log holds before it takes the first of them. When the two differ
// at a link (a new primary after a failover, the old primary promoted again), the
// secondary's receive log and round are another journal's: it is brought to its last
// flush point, its receive log goes, and the primary compares it by hash as a new
// replica (RoleChanges.follow). Without this the secondary's "durable up to record N"
// would be read in the new journal's numbering: records skipped or applied twice.
//
// state/volumes/NAME/stream, JSON: {"version":1,"stream":"<16 hex>","primary":"site-a"}.
// Removed with the rest of a role's files at a promote or demote.
import { randomBytes } from 'node:crypto';
import { readStateFile, type Store } from '../journal/store.js';
import { jsonVersion } from '../versioning/format.js';

export const STREAM_FILE = 'stream';
export const STREAM_FORMAT = jsonVersion('record stream file', 1, [1]);

export interface StreamMark {
  /** The journal's id (16 hex digits); DAMAGED_STREAM for a file that could not be read. */
  stream: string;
  /** The node whose journal it is. */
  primary: string;
}

/** A secondary whose stream file is unreadable holds records of a stream it cannot name: no primary's matches it. */
export const DAMAGED_STREAM = 'damaged';

export function newStreamId(): string {
  return randomBytes(8).toString('hex');
}

export function writeStream(store: Store, m: StreamMark): Promise<void> {
  return store.replace(STREAM_FILE, Buffer.from(`${JSON.stringify({ version: STREAM_FORMAT.writes, stream: m.stream, primary: m.primary })}\n`));
}

/** The stream ends here (a primary served without peers: src/node/role-open.ts): its file goes, durably. */
export async function removeStream(store: Store): Promise<void> {
  if (!store.list().includes(STREAM_FILE)) return;
  store.remove(STREAM_FILE);
  await store.syncDir();
}

/** The stream written down in `store`, or null (none); a file that cannot be read names DAMAGED_STREAM. */
export async function readStream(store: Store): Promise<StreamMark | null> {
  const b = await readStateFile(store, STREAM_FILE, STREAM_FORMAT);
  if (b === null) return null;
  try {
    const j = JSON.parse(b.toString('utf8')) as { stream?: unknown; primary?: unknown };
    if (typeof j.stream === 'string' && /^[0-9a-f]{16}$/.test(j.stream) && typeof j.primary === 'string') return { stream: j.stream, primary: j.primary };
  } catch {
    // (below)
  }
  return { stream: DAMAGED_STREAM, primary: '' };
}
