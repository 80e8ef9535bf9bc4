// Where a primary's journal lives, written down in its state folder (docs/JOURNAL.md,
// "Moving a journal, and a journal lost"). The journal's folder is a config key
// (`journal_dir`), and its records are the only copy of what the peers have not
// received yet. A start that found the key pointing at an empty folder used to begin a
// new journal numbered from 1 in the same stream: a peer that had received up to record
// 40 then took the new 41 as the old one's successor, and the old 41..57, unshipped,
// never reached it, without a word.
//
// So the state folder names the journal's folder (`journal-at`), and before a journal
// is opened its place is judged (judgePlace):
//
// - the folder written down is another and still holds the journal, and the configured
//   one holds no segments: the key moved, so the journal moves to it (moveJournal: the
//   move written down as begun, the files linked or copied under temporary names, made
//   durable, named, then `journal-at` names the new folder, which is the commit point,
//   and only then do the old files go). A move a crash cut is done again from the
//   start, its copies replaced: the old folder is the journal until `journal-at` says
//   otherwise. A configured folder that holds segments not of a cut move is opened as it
//   is (moved there by hand; another volume's is refused by the segments' owner check);
// - segments in the configured folder, or a journal that never began: opened there;
// - the configured folder absent, and a journal began here before: refused, nothing
//   made (a disk not mounted looks so; a replaced one gets its folder made by hand);
// - none there or where it was (a journal disk replaced, files deleted): the journal is
//   lost. It begins again in a new stream (src/stream/stream.ts), so every peer's
//   replica is brought to its last flush point and compared with this volume by hash, as
//   after a failover; a round marker of the old numbering goes.
//
// STATE/volumes/NAME/journal-at, JSON: {"version":1,"folder":"/abs/path"}; from a move's
// beginning to its commit (and after, while that folder holds its copies) "moving":"/new/path";
// while the old folder's files are being removed after a move, "leaving":"/old/path".
import fs from 'node:fs';
import path from 'node:path';
import { readStateFile, type Store } from './store.js';
import { SEGMENT_NAME } from './segment.js';
import { jsonVersion } from '../versioning/format.js';
import { formatBytes } from '../units/units.js';

export const JOURNAL_AT_FILE = 'journal-at';
export const JOURNAL_AT_FORMAT = jsonVersion('journal place file', 1, [1]);

/**
 * Where the journal is; `moving`: a folder it is being moved to (until the commit point,
 * what that folder holds of a journal is this move's copies); `leaving`: a folder it
 * moved from whose files are still to be removed.
 */
export interface JournalAt {
  folder: string;
  moving?: string;
  leaving?: string;
}

/** Writes down, durably, where the volume's journal is (absolute paths). */
export function writeJournalAt(store: Store, at: JournalAt): Promise<void> {
  const j = {
    version: JOURNAL_AT_FORMAT.writes, folder: at.folder,
    ...(at.moving !== undefined ? { moving: at.moving } : {}), ...(at.leaving !== undefined ? { leaving: at.leaving } : {}),
  };
  return store.replace(JOURNAL_AT_FILE, Buffer.from(`${JSON.stringify(j)}\n`));
}

/** What is written down, or null (none: a journal never opened by this release). A file that cannot be read stops the start. */
export async function readJournalAt(store: Store): Promise<JournalAt | null> {
  const b = await readStateFile(store, JOURNAL_AT_FILE, JOURNAL_AT_FORMAT);
  if (b === null) return null;
  let j: { folder?: unknown; moving?: unknown; leaving?: unknown } = {};
  try {
    j = JSON.parse(b.toString('utf8')) as typeof j;
  } catch {
    // (below)
  }
  const absolute = (x: unknown): x is string => typeof x === 'string' && path.isAbsolute(x);
  if (!absolute(j.folder) || (j.leaving !== undefined && !absolute(j.leaving)) || (j.moving !== undefined && !absolute(j.moving))) {
    throw new Error(`${JOURNAL_AT_FILE}: no folder in it (${b.toString('utf8').trim()})`);
  }
  return {
    folder: j.folder, ...(j.moving !== undefined ? { moving: j.moving as string } : {}), ...(j.leaving !== undefined ? { leaving: j.leaving as string } : {}),
  };
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
  /** A move to `folder` was begun and not committed (a crash cut it): what `folder` holds of a journal is its copies. */
  cutMove: boolean;
  /** The volume's stream names this node as its primary: a journal began here before. */
  ownStream: boolean;
  /** The configured folder exists (false: a disk not mounted?). */
  exists: boolean;
}

export type JournalPlace =
  | { kind: 'here' }
  | { kind: 'move'; from: string; redo: boolean; message: string }
  | { kind: 'lost'; message: string }
  | { kind: 'missing'; message: string };

/** Is the journal where the config says, to be moved there, or lost? (The rules are the file's comment.) */
export function judgePlace(f: PlaceFacts): JournalPlace {
  // (A configured folder that holds segments of its own, not a cut move's copies, is opened
  // as it is: the journal moved there by hand, or another volume's, which its owner check refuses.)
  if (f.writtenDown !== null && !sameFolder(f.writtenDown, f.folder) && f.there.count > 0 && (f.here.count === 0 || f.cutMove)) {
    return {
      kind: 'move', from: f.writtenDown, redo: f.cutMove,
      message: `volume ${f.volume}: journal_dir is now ${f.folder}: moving its journal there from ${f.writtenDown} ` +
        `(${f.there.count} segment${f.there.count === 1 ? '' : 's'}, ${formatBytes(f.there.bytes)})`,
    };
  }
  if (f.here.count > 0) return { kind: 'here' };
  if (f.writtenDown === null && !f.ownStream) return { kind: 'here' };
  const was = f.writtenDown ?? f.folder;
  if (!f.exists) {
    // A folder that is not there at all is more often a disk not mounted than a journal lost.
    return {
      kind: 'missing',
      message: `volume ${f.volume}: its journal folder ${f.folder} does not exist (its disk not mounted?)` +
        `${sameFolder(was, f.folder) ? '' : `, and ${was}, where it was, holds none of it`}: nothing was opened. Mount it and reload; if ` +
        `the journal is lost for good (a disk replaced), make the folder (mkdir -p ${f.folder}) and reload: a new journal begins, and ` +
        'each peer is compared with this volume by hash',
    };
  }
  return {
    kind: 'lost',
    message: `volume ${f.volume}: its journal is lost: ${sameFolder(was, f.folder) ? `${f.folder} holds no segments of it` :
      `neither ${f.folder} (journal_dir) nor ${was}, where it was, holds a segment of it`} (a journal disk replaced, or its files removed). ` +
      'The writes its peers had not received are in no journal now: a new journal begins, and each peer\'s replica is compared with this ' +
      'volume by hash and brought equal (only the regions that differ are sent); until then each holds the flush point it last reached',
  };
}

export function sameFolder(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  return real(a) === real(b);
}
