// Which file a volume's state was kept for (docs/CONFIG.md, "A volume's file replaced").
// A volume's journal, receive log, round, checkpoint and history all describe changes to
// one file. A file put in its place while the daemon was stopped (a backup restored at
// the primary, a copy moved to new storage, a replica copied over by hand) is another
// file whose content they do not describe: applying them to it, or shipping only them,
// would leave the secondary different from the primary without a word. So the state
// folder writes down the file's identity at each open (`file-id`: its inode and its
// birth time, which a rename keeps and a copy or restore does not; not its device
// number, which a reboot may renumber), and an open that finds another file says so and
// starts the pair over by hash (src/node/role-open.ts). It also writes down the state
// folder's own identity: a state folder copied or moved together with the file (an
// appliance's disks moved with `cp -a`, both stopped) is a new folder too, and its
// state still describes the file, so the file is taken as it is. Block devices are not
// checked: a device node's inode is made anew at each boot.
//
// STATE/volumes/NAME/file-id, JSON: {"version":1,"ino":"5308517","birth":"1796481237337958459",
// "folderIno":"5308001","folderBirth":"1796481230000000000"} (decimal strings: an inode
// number may pass 2^53; birth in ns since the epoch, "0" where the filesystem keeps none).
import fs from 'node:fs';
import { readStateFile, type Store } from '../store/store.js';
import { jsonVersion } from '../versioning/format.js';

export const FILE_ID_FILE = 'file-id';
export const FILE_ID_FORMAT = jsonVersion('volume file identity', 1, [1]);

export interface Identity {
  ino: bigint;
  /** Birth time in ns (0n: the filesystem keeps none). */
  birth: bigint;
}

/** A volume's file, and the state folder that was kept for it. */
export interface FileId extends Identity {
  folder: Identity;
}

/** The identity of the file at `path` and of the state folder `dir` (null: a block device, not checked). */
export function fileIdOf(path: string, dir: string): FileId | null {
  const st = fs.statSync(path, { bigint: true });
  if (!st.isFile()) return null;
  const d = fs.statSync(dir, { bigint: true });
  return { ino: st.ino, birth: st.birthtimeNs, folder: { ino: d.ino, birth: d.birthtimeNs } };
}

/**
 * Was the file replaced since `kept` was written: another file, under the same state
 * folder? (A state folder that is another too was copied or moved with the file.)
 */
export function replacedSince(kept: FileId, now: FileId): boolean {
  return !sameFile(kept, now) && sameFile(kept.folder, now.folder);
}

/** Is `now` the file `kept` was written for? (A birth time of 0 on either side compares the inode alone.) */
export function sameFile(kept: Identity, now: Identity): boolean {
  return kept.ino === now.ino && (kept.birth === 0n || now.birth === 0n || kept.birth === now.birth);
}

export function writeFileId(store: Store, id: FileId): Promise<void> {
  const j = {
    version: FILE_ID_FORMAT.writes, ino: id.ino.toString(), birth: id.birth.toString(),
    folderIno: id.folder.ino.toString(), folderBirth: id.folder.birth.toString(),
  };
  return store.replace(FILE_ID_FILE, Buffer.from(`${JSON.stringify(j)}\n`));
}

/** The identity written down, or null (none: a volume not opened by this release yet). A file that cannot be read stops the start. */
export async function readFileId(store: Store): Promise<FileId | null> {
  const b = await readStateFile(store, FILE_ID_FILE, FILE_ID_FORMAT);
  if (b === null) return null;
  try {
    const j = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
    const n = (x: unknown, digits: number): x is string => typeof x === 'string' && new RegExp(`^\\d{1,${digits}}$`).test(x);
    if (n(j.ino, 20) && n(j.birth, 24) && n(j.folderIno, 20) && n(j.folderBirth, 24)) {
      return { ino: BigInt(j.ino), birth: BigInt(j.birth), folder: { ino: BigInt(j.folderIno), birth: BigInt(j.folderBirth) } };
    }
  } catch {
    // (below)
  }
  throw new Error(`${FILE_ID_FILE}: no identity in it (${b.toString('utf8').trim()})`);
}

/** "inode 5308517, born 2026-12-04 21:13:57 UTC" */
export function describeFileId(id: Identity): string {
  const born = id.birth === 0n ? '' : `, made ${new Date(Number(id.birth / 1_000_000n)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`;
  return `inode ${id.ino}${born}`;
}
