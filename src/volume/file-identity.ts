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
// state still describes the file, so the file is taken as it is. A block device is known
// by its disk instead (below): a device node's inode is made anew at each boot.
//
// The same file written while the daemon was stopped (a backup restored into it with dd,
// the replica mounted read-write and fsck'd, a host pointed at the file by hand) is as
// much another content: a clean stop writes down the file's modification time once it
// is closed (`stopped`), and an open that finds it moved says so and starts the pair
// over by hash, as for a replaced file. Not the change time: a rename, chmod or chown
// moves that, and a file moved while stopped (its config `path` changed) would cost a
// comparison of the whole volume. After a crash, see below.
//
// STATE/volumes/NAME/file-id, JSON: {"version":1,"ino":"5308517","birth":"1796481237337958459",
// "folderIno":"5308001","folderBirth":"1796481230000000000"} (decimal strings: an inode
// number may pass 2^53; birth in ns since the epoch, "0" where the filesystem keeps none),
// and after a clean stop also "stopped":{"mtime":"1796481299000000000"} (ns since the epoch). A reader of version 1 without `stopped` ignores it.
//
// A block device is its disk's identity (src/volume/device-identity.ts), `"device":"wwid
// naa.6001405f..."` with "ino" and "birth" "0": a device node's inode is made anew at
// each boot. One whose disk sysfs names nothing for is not checked. A loop device's disk
// is its backing file: `"deviceIno":"5308517","deviceBirth":"1796481237337958459"` with
// its path in "device", compared instead of the path where both sides have them (a
// rename while attached keeps the file, a backup restored at the path does not; a
// file-id without them, of a release before them, compares the path). A device keeps no
// modification time of its writes, so a clean stop writes down what the kernel counted
// written to it instead (DeviceWrites): `"stoppedWrites":{"boot":"ff46733a-...",
// "written":"20694740","discarded":"0"}` (sectors of 512 bytes since that boot; a key of
// its own, not in `stopped`, which a release before it would compare with the device
// node's time). An open in the same boot that finds more says the disk was written while
// stopped, as for a file; after a reboot the counts start again and nothing is told.
//
// After a crash no clean stop wrote down how the file was left, but the daemon's alive
// mark (src/node/alive-mark.ts) says when it was last alive: a file modified more than
// ALIVE_MARK_SLACK_MS after that was written by something else once the daemon was gone
// (writtenAfterCrash), and the open says so as for a write while stopped. A write within
// the slack, or to a block device, after a crash cannot be told.
import fs from 'node:fs';
import { deviceIdentity, loopBackingOf, sysfsOf, type DeviceWrites } from './device-identity.js';
import { readStateFile, type Store } from '../store/store.js';
import { jsonVersion } from '../versioning/format.js';
import { ALIVE_MARK_SLACK_MS } from '../limits/limits.js';

export const FILE_ID_FILE = 'file-id';
/** Another disk found at a block device's path: the refusal writes down its identity here (the same format; src/node/role-open.ts). */
export const DEVICE_REFUSED_FILE = 'device-refused';
/** The operator renamed DEVICE_REFUSED_FILE to this: that disk is the volume's now, and the volume opens over it as over a replaced file. */
export const DEVICE_ACCEPTED_FILE = 'device-accepted';
export const FILE_ID_FORMAT = jsonVersion('volume file identity', 1, [1]);

export interface Identity {
  ino: bigint;
  /** Birth time in ns (0n: the filesystem keeps none). */
  birth: bigint;
  /** A block device's disk (device-identity.ts); ino and birth are 0n then. Absent: a file. */
  device?: string;
  /** A loop device's backing file, by inode and birth (device-identity.ts loopBackingOf): compared instead of `device` where both have it. */
  deviceFile?: { ino: bigint; birth: bigint };
}

/** The file's modification time (ns), as a clean stop left it or an open found it; a block device's write counts (null: a file). */
export interface FileTimes {
  mtime: bigint;
  writes?: DeviceWrites | null;
}

/** A volume's file, and the state folder that was kept for it. */
export interface FileId extends Identity {
  folder: Identity;
  /** Written by a clean stop once the file was closed (absent: the file is open, or the last run did not stop cleanly). */
  stopped?: FileTimes;
  /** A block device's: what the kernel counted written to it when a clean stop closed it (absent: as for `stopped`). */
  stoppedWrites?: DeviceWrites;
}

/**
 * The identity of the file at `path` (or of `st`, a stat of it taken earlier: the
 * volume's open takes one before it writes anything) and of the state folder `dir`
 * (null: a block device whose disk has no identity in sysfs, not checked).
 */
export function fileIdOf(path: string, dir: string, st: fs.BigIntStats = fs.statSync(path, { bigint: true }),
  disk: string | null = deviceIdentity(st)): FileId | null {
  const d = fs.statSync(dir, { bigint: true });
  const folder = { ino: d.ino, birth: d.birthtimeNs };
  if (st.isBlockDevice()) {
    const device = disk;
    if (device === null) return null;
    const backing = loopBackingOf(sysfsOf(st.rdev));
    return backing === null ? { ino: 0n, birth: 0n, device, folder } : { ino: 0n, birth: 0n, device, deviceFile: backing, folder };
  }
  if (!st.isFile()) return null;
  return { ino: st.ino, birth: st.birthtimeNs, folder };
}

export function timesOf(st: fs.BigIntStats, writes: DeviceWrites | null = null): FileTimes {
  return { mtime: st.mtimeNs, writes };
}

/**
 * Was the same file written while the daemon was stopped: its times moved since the
 * clean stop wrote them down (`kept.stopped`)? False when nothing was written down (a
 * crash), or the file or its state folder is another (replacedSince judges those).
 */
export function writtenWhileStopped(kept: FileId, now: FileId, times: FileTimes): boolean {
  if (!sameFile(kept, now) || !sameFile(kept.folder, now.folder)) return false;
  if (now.device !== undefined) {
    const was = kept.stoppedWrites;
    const is = times.writes;
    // (Counted since a boot: another boot's counts say nothing.)
    if (was === undefined || !is || was.boot !== is.boot) return false;
    // (Counts below the stop's: the device was made again in this boot, a loop device detached and set up anew, say.
    // What was written before that cannot be told, so it is taken as written: a comparison by hash, not a divergence.)
    return is.written !== was.written || is.discarded !== was.discarded;
  }
  if (kept.stopped === undefined) return false;
  return kept.stopped.mtime !== times.mtime;
}

/**
 * Was the same file written after the daemon ended without a clean stop (a crash): nothing
 * written down of how it was left, and modified more than ALIVE_MARK_SLACK_MS after
 * `lastAlive`, the daemon's last alive mark (ns; null: none, nothing told)? A block
 * device keeps no time of its writes: not told.
 */
export function writtenAfterCrash(kept: FileId, now: FileId, times: FileTimes, lastAlive: bigint | null): boolean {
  if (lastAlive === null || stampedAtStop(kept) || now.device !== undefined) return false;
  if (!sameFile(kept, now) || !sameFile(kept.folder, now.folder)) return false;
  return times.mtime > lastAlive + BigInt(ALIVE_MARK_SLACK_MS) * 1_000_000n;
}

/** A clean stop wrote down how it left the file or device (an open then compares, and clears it). */
export function stampedAtStop(kept: FileId): boolean {
  return kept.stopped !== undefined || kept.stoppedWrites !== undefined;
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
  // (A disk is its identity; a file is never a disk. A loop device's is its backing file where both sides know it.)
  if (kept.device !== undefined || now.device !== undefined) {
    if (kept.device === undefined || now.device === undefined) return false;
    // (The file by inode and birth for the path sysfs shows; where in it, its offset and partition, as the device says.)
    if (kept.deviceFile && now.deviceFile) return sameFile(kept.deviceFile, now.deviceFile) && loopPlace(kept.device) === loopPlace(now.device);
    return kept.device === now.device;
  }
  return kept.ino === now.ino && (kept.birth === 0n || now.birth === 0n || kept.birth === now.birth);
}

/**
 * Where in its backing file a loop device's disk lies, from its identity ("loop /srv/d.raw
 * offset 0 partition 2 at 2048" gives "offset 0 partition 2 at 2048"): the path before it
 * is compared by the file's inode instead. Null: not a loop device's identity.
 */
export function loopPlace(device: string): string | null {
  return /^loop .* (offset \d+(?: partition \S+ at \S+)?)$/.exec(device)?.[1] ?? null;
}

export function writeFileId(store: Store, id: FileId, file = FILE_ID_FILE): Promise<void> {
  const j = {
    version: FILE_ID_FORMAT.writes, ino: id.ino.toString(), birth: id.birth.toString(),
    folderIno: id.folder.ino.toString(), folderBirth: id.folder.birth.toString(),
    ...(id.device !== undefined ? { device: id.device } : {}),
    ...(id.deviceFile ? { deviceIno: id.deviceFile.ino.toString(), deviceBirth: id.deviceFile.birth.toString() } : {}),
    ...(id.stopped ? { stopped: { mtime: id.stopped.mtime.toString() } } : {}),
    ...(id.stoppedWrites ? {
      stoppedWrites: { boot: id.stoppedWrites.boot, written: id.stoppedWrites.written.toString(), discarded: id.stoppedWrites.discarded.toString() },
    } : {}),
  };
  return store.replace(file, Buffer.from(`${JSON.stringify(j)}\n`));
}

/**
 * A clean stop (or a reload that let the volume go) closed the file: its identity and
 * its times as the close left them are written down (`stopped`), for the next open to
 * compare (writtenWhileStopped). `st`: the stat the close took once the file was synced.
 */
export async function writeStopped(store: Store, path: string, dir: string, st: fs.BigIntStats, writes: DeviceWrites | null = null): Promise<void> {
  const id = fileIdOf(path, dir, st);
  if (id === null) return;
  if (id.device === undefined) await writeFileId(store, { ...id, stopped: timesOf(st) });
  else if (writes !== null) await writeFileId(store, { ...id, stoppedWrites: writes });
}

/** A clean stop's note goes (the file is written unwatched from now on: a volume served without peers). */
export async function forgetStopped(store: Store): Promise<void> {
  const id = await readFileId(store);
  if (!id || !stampedAtStop(id)) return;
  delete id.stopped;
  delete id.stoppedWrites;
  await writeFileId(store, id);
}

/** The identity written down, or null (none: a volume not opened by this release yet). A file that cannot be read stops the start. */
export async function readFileId(store: Store, file = FILE_ID_FILE): Promise<FileId | null> {
  const b = await readStateFile(store, file, FILE_ID_FORMAT);
  if (b === null) return null;
  try {
    const j = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
    const n = (x: unknown, digits: number): x is string => typeof x === 'string' && new RegExp(`^\\d{1,${digits}}$`).test(x);
    const st = j.stopped as Record<string, unknown> | undefined;
    const stoppedOk = st === undefined || (typeof st === 'object' && st !== null && n(st.mtime, 24));
    if (n(j.ino, 20) && n(j.birth, 24) && n(j.folderIno, 20) && n(j.folderBirth, 24) && stoppedOk) {
      const id: FileId = { ino: BigInt(j.ino), birth: BigInt(j.birth), folder: { ino: BigInt(j.folderIno), birth: BigInt(j.folderBirth) } };
      if (st !== undefined) id.stopped = { mtime: BigInt(st.mtime as string) };
      const w = j.stoppedWrites as Record<string, unknown> | undefined;
      if (w !== undefined) {
        if (typeof w !== 'object' || w === null || typeof w.boot !== 'string' || w.boot.length === 0 || !n(w.written, 24) || !n(w.discarded, 24)) {
          throw new Error('stoppedWrites without a boot and its counts');
        }
        id.stoppedWrites = { boot: w.boot, written: BigInt(w.written), discarded: BigInt(w.discarded) };
      }
      if (typeof j.device === 'string' && j.device.length > 0) id.device = j.device;
      else if (j.device !== undefined) throw new Error('a device that is no string');
      if (j.deviceIno !== undefined || j.deviceBirth !== undefined) {
        if (id.device === undefined || !n(j.deviceIno, 20) || !n(j.deviceBirth, 24)) throw new Error('a device file without its disk, inode and birth');
        id.deviceFile = { ino: BigInt(j.deviceIno), birth: BigInt(j.deviceBirth) };
      }
      return id;
    }
  } catch {
    // (below)
  }
  throw new Error(`${file}: no identity in it (${b.toString('utf8').trim()})`);
}

/** "inode 5308517, born 2026-12-04 21:13:57 UTC" */
export function describeFileId(id: Identity): string {
  if (id.device !== undefined) return `disk ${id.device}`;
  const born = id.birth === 0n ? '' : `, made ${new Date(Number(id.birth / 1_000_000n)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`;
  return `inode ${id.ino}${born}`;
}

/** "modified 2026-12-06 14:02:11.113 UTC; the daemon was last alive at 2026-12-06 13:58:40.052 UTC, and did not stop cleanly" */
export function describeAfterCrash(now: FileTimes, lastAlive: bigint): string {
  return `modified ${utc(now.mtime)}; the daemon was last alive at ${utc(lastAlive)}, and did not stop cleanly`;
}

const utc = (ns: bigint): string => new Date(Number(ns / 1_000_000n)).toISOString().replace('T', ' ').replace(/Z$/, ' UTC');

/**
 * "modified 2026-12-06 14:02:11.113 UTC; the daemon's clean stop left it modified 2026-12-06 13:58:40.052 UTC" (a file's times),
 * or "the kernel counted 2.0 MiB written to the disk since the daemon's clean stop" (a block device's counts).
 */
export function describeChange(kept: FileId, now: FileTimes): string {
  if (kept.stoppedWrites !== undefined && now.writes) {
    const mib = (sectors: bigint): string => `${(Number(sectors) * 512 / 2 ** 20).toFixed(1)} MiB`;
    const written = now.writes.written - kept.stoppedWrites.written;
    const discarded = now.writes.discarded - kept.stoppedWrites.discarded;
    if (written < 0n || discarded < 0n) {
      return 'the kernel\'s count of writes to the disk is below what the daemon\'s clean stop left: the device was made again since, ' +
        'and what was written to it before cannot be told';
    }
    return `the kernel counted ${mib(written)} written${discarded !== 0n ? ` and ${mib(discarded)} discarded` : ''} to the disk ` +
      'since the daemon\'s clean stop';
  }
  const stopped = kept.stopped!;
  return `modified ${utc(now.mtime)}; the daemon's clean stop left it modified ${utc(stopped.mtime)}`;
}
