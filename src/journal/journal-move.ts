// Moving a primary's journal to the folder `journal_dir` now names (src/journal/placement.ts
// says when: at the open after the key changed, at a start or at a reload that reopens
// the volume). The journal holds the only copy of what the peers have not received, so
// the move never has a moment when neither folder holds all of it:
//
// 1. each file is linked into the new folder (a copy, made durable, when the folders
//    are on two filesystems) under a temporary name, so the new folder holds no segment
//    yet; then each is given its name, and the folder synced;
// 2. `commit` writes down that the journal is in the new folder: the commit point.
//    Before it, the old folder is the journal, whatever the new one holds (a move a
//    crash cut is done again from the start, its copies removed first);
// 3. the old folder's files go (the caller wrote down that they are leaving, so a crash
//    here has them removed at the next open: removeLeft).
import fs from 'node:fs';
import path from 'node:path';

/** The files of a journal folder that move with it (its lock file stays: the new folder's is taken at the open). */
export const JOURNAL_FILES = /^(?:\d{20}\.seg|released|applied|intent)$/;
const MOVING = '.moving';

export interface JournalMoved {
  files: number;
  bytes: number;
  /** Copied (the folders are on two filesystems), not linked. */
  copied: boolean;
}

/** Moves the journal in `from` to `to`; `commit` writes down, durably, that it is in `to`. */
export async function moveJournal(from: string, to: string, commit: () => Promise<void>): Promise<JournalMoved> {
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  const names = fs.readdirSync(from).filter((n) => JOURNAL_FILES.test(n));
  // A move a crash cut left copies of `from`'s files in `to`: they go. Anything else of
  // a journal there is not this move's, and is not touched.
  for (const n of fs.readdirSync(to)) {
    const base = n.endsWith(MOVING) ? n.slice(0, -MOVING.length) : n;
    if (!JOURNAL_FILES.test(base)) continue;
    if (!names.includes(base)) {
      throw new Error(`cannot move the journal from ${from} to ${to}: ${to} holds ${n}, a journal file that is no copy of one of ${from}; ` +
        `nothing was moved: empty ${to} of its journal files (another volume's journal?) or set journal_dir back to ${from}`);
    }
    fs.rmSync(path.join(to, n), { force: true });
  }
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
