// Moving a primary's journal to the folder `journal_dir` now names (src/journal/placement.ts
// says when: at the open after the key changed, at a start or at a reload that reopens
// the volume). The journal holds the only copy of what the peers have not received, so
// the move never has a moment when neither folder holds all of it:
//
// 0. the move is written down as begun: until the commit, what the new folder holds of
//    a journal is this move's (a move a crash cut is done again, its copies replaced);
// 1. each file is linked into the new folder (a copy, made durable, when the folders
//    are on two filesystems) under a temporary name, so the new folder holds no segment
//    yet; then each is given its name, and the folder synced;
// 2. `commit` writes down that the journal is in the new folder: the commit point.
//    Before it, the old folder is the journal, whatever the new one holds;
// 3. the old folder's files go (the caller wrote down that they are leaving, so a crash
//    here has them removed at the next open: removeLeft).
import fs from 'node:fs';
import path from 'node:path';

/** The files of a journal folder that move with it (its lock file stays: the new folder's is taken at the open). */
export const JOURNAL_FILES = /^(?:\d{20}\.seg|released|applied|intent)$/;
const SEGMENT_FILE = /^\d{20}\.seg$/;
const MOVING = '.moving';

export interface JournalMoved {
  files: number;
  bytes: number;
  /** Copied (the folders are on two filesystems), not linked. */
  copied: boolean;
}

/**
 * Moves the journal in `from` to `to`. `begin` writes down, durably, that the move is
 * under way (from then until the commit, `to`'s journal files are this move's); `commit`
 * that the journal is in `to`. `redo`: a move a crash cut, whose copies in `to` go first.
 */
export async function moveJournal(from: string, to: string, begin: () => Promise<void>, commit: () => Promise<void>,
  redo = false): Promise<JournalMoved> {
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  const names = fs.readdirSync(from).filter((n) => JOURNAL_FILES.test(n));
  for (const n of fs.readdirSync(to)) {
    const base = n.endsWith(MOVING) ? n.slice(0, -MOVING.length) : n;
    if (!JOURNAL_FILES.test(base)) continue;
    // (Not a cut move's: segments there are not ours to remove; counters or an intent ring
    // without a segment are a journal's leftovers, replaced by the move's.)
    if (!redo && !n.endsWith(MOVING) && SEGMENT_FILE.test(n)) {
      throw new Error(`cannot move the journal from ${from} to ${to}: ${to} holds ${n}, a segment of another journal; nothing was moved`);
    }
    fs.rmSync(path.join(to, n), { force: true });
  }
  await begin();
  let bytes = 0;
  let copied = false;
  for (const n of names) {
    const src = path.join(from, n);
    const tmp = path.join(to, `${n}${MOVING}`);
    bytes += fs.statSync(src).size;
    try {
      fs.linkSync(src, tmp);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw err;
      // (On another filesystem: copied in the thread pool, so the node's other volumes go on meanwhile.)
      await fs.promises.copyFile(src, tmp);
      const fh = await fs.promises.open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      copied = true;
    }
  }
  syncFolder(to);
  for (const n of names) fs.renameSync(path.join(to, `${n}${MOVING}`), path.join(to, n));
  syncFolder(to);
  await commit();
  removeJournalFiles(from);
  return { files: names.length, bytes, copied };
}

/** Removes a journal's files from a folder it moved out of (absent: nothing to do). */
export function removeJournalFiles(folder: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(folder);
  } catch {
    return;
  }
  for (const n of names) if (JOURNAL_FILES.test(n)) fs.rmSync(path.join(folder, n), { force: true });
  syncFolder(folder);
}

function syncFolder(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
