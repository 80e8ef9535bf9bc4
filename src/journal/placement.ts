// Where a primary's journal lives, written down in its state folder (docs/JOURNAL.md,
// "A journal that moved or was lost"). The journal's folder is a config key
// (`journal_dir`), and its records are the only copy of what the peers have not
// received yet. A start that found the key pointing at an empty folder used to begin a
// new journal numbered from 1 in the same stream: a peer that had received up to record
// 40 then took the new 41 as the old one's successor, and the old 41..57, unshipped,
// never reached it, without a word.
//
// So the state folder names the journal's folder (`journal-at`), and before a journal
// is opened its place is judged (judgePlace):
//
// - segments in the configured folder, or a journal that never began: opened there;
// - none there, and the folder written down still holds this volume's segments: the
//   journal moved in the config but not on disk; refused, nothing changed, and the
//   operator told to move the files or set the key back;
// - none there or where it was (a journal disk replaced, files deleted): the journal is
//   lost. It begins again in a new stream (src/stream/stream.ts), so every peer's
//   replica is brought to its last flush point and compared with this volume by hash, as
//   after a failover; a round marker of the old numbering goes.
//
// STATE/volumes/NAME/journal-at, JSON: {"version":1,"folder":"/abs/path"}.
import fs from 'node:fs';
import path from 'node:path';
import { readStateFile, type Store } from './store.js';
import { SEGMENT_NAME } from './segment.js';
import { jsonVersion } from '../versioning/format.js';
import { formatBytes } from '../units/units.js';

export const JOURNAL_AT_FILE = 'journal-at';
export const JOURNAL_AT_FORMAT = jsonVersion('journal place file', 1, [1]);

/** Writes down, durably, that the volume's journal is in `folder` (absolute). */
export function writeJournalAt(store: Store, folder: string): Promise<void> {
  return store.replace(JOURNAL_AT_FILE, Buffer.from(`${JSON.stringify({ version: JOURNAL_AT_FORMAT.writes, folder })}\n`));
}

/** The folder written down, or null (none: a journal never opened by this release). A file that cannot be read stops the start. */
export async function readJournalAt(store: Store): Promise<string | null> {
  const b = await readStateFile(store, JOURNAL_AT_FILE, JOURNAL_AT_FORMAT);
  if (b === null) return null;
  let folder: unknown;
  try {
    folder = (JSON.parse(b.toString('utf8')) as { folder?: unknown }).folder;
  } catch {
    folder = undefined;
  }
  if (typeof folder !== 'string' || !path.isAbsolute(folder)) throw new Error(`${JOURNAL_AT_FILE}: no folder in it (${b.toString('utf8').trim()})`);
  return folder;
}

/** A folder's journal segments: how many, and their bytes (none: the folder is absent or holds none). */
export interface SegmentsIn {
  count: number;
  bytes: number;
}

export function segmentsIn(folder: string): SegmentsIn {
  let names: string[];
  try {
    names = fs.readdirSync(folder).filter((n) => SEGMENT_NAME.test(n));
  } catch {
    return { count: 0, bytes: 0 };
  }
  let bytes = 0;
  for (const n of names) {
    try {
      bytes += fs.statSync(path.join(folder, n)).size;
    } catch {
      // (gone meanwhile)
    }
  }
  return { count: names.length, bytes };
}

/** What judgePlace sees. */
export interface PlaceFacts {
  volume: string;
  /** The configured folder, absolute. */
  folder: string;
  here: SegmentsIn;
  /** The folder written down (null: none). */
  writtenDown: string | null;
  /** Its segments, when it is another folder than `folder`. */
  there: SegmentsIn;
  /** The volume's stream names this node as its primary: a journal began here before. */
  ownStream: boolean;
}

export type JournalPlace =
  | { kind: 'here' }
  | { kind: 'moved'; message: string }
  | { kind: 'lost'; message: string };

/** Is the journal where the config says, elsewhere, or lost? (The rules are the file's comment.) */
export function judgePlace(f: PlaceFacts): JournalPlace {
  if (f.here.count > 0) return { kind: 'here' };
  const elsewhere = f.writtenDown !== null && !sameFolder(f.writtenDown, f.folder);
  if (elsewhere && f.there.count > 0) {
    return {
      kind: 'moved',
      message: `volume ${f.volume}: journal_dir is now ${f.folder}, which holds no journal, and its journal is in ${f.writtenDown} ` +
        `(${f.there.count} segment${f.there.count === 1 ? '' : 's'}, ${formatBytes(f.there.bytes)}, holding the writes its peers have not received): ` +
        `move its files there with the daemon stopped (mv ${f.writtenDown}/* ${f.folder}/), or set journal_dir back to ${f.writtenDown}, ` +
        'then reload; nothing was read or changed',
    };
  }
  if (f.writtenDown === null && !f.ownStream) return { kind: 'here' };
  const was = f.writtenDown ?? f.folder;
  return {
    kind: 'lost',
    message: `volume ${f.volume}: its journal is lost: ${sameFolder(was, f.folder) ? `${f.folder} holds no segments of it` :
      `neither ${f.folder} (journal_dir) nor ${was}, where it was, holds a segment of it`} (a journal disk replaced, or its files removed). ` +
      'The writes its peers had not received are in no journal now: a new journal begins, and each peer\'s replica is compared with this ' +
      'volume by hash and brought equal (only the regions that differ are sent); until then each holds the flush point it last reached',
  };
}

function sameFolder(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  return real(a) === real(b);
}
