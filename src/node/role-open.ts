// Opening a volume in its role, at the start, a reopen, a promote or a demote: a
// primary's journal, dirty bitmap and activity log, or a secondary's receive log and
// replica, each in a folder this daemon holds locked (VolumeFolders).
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/config.js';
import { journalDirOf } from '../config/config.js';
import { formatBytes } from '../units/units.js';
import type { Logger } from '../log/log.js';
import { BITMAP_FILE, DirtyBitmap, RegionSet } from '../journal/bitmap.js';
import { History } from '../journal/history.js';
import { ForeignSegmentError, Journal, KEEP_PREFIX, type JournalVolume } from '../journal/journal.js';
import { DirStore, FolderLock } from '../journal/store.js';
import { JournaledVolume } from '../journal/write-path.js';
import type { VolumeEntry } from './volume-entry.js';
import { Replica } from '../secondary/replica.js';
import { newStreamId, readStream, removeStream, writeStream, type StreamMark } from '../stream/stream.js';
import { judgePlace, readJournalAt, segmentsIn, writeJournalAt, type JournalPlace } from '../journal/placement.js';
import { moveJournal, removeJournalFiles } from '../journal/journal-move.js';
import {
  DEVICE_ACCEPTED_FILE, DEVICE_REFUSED_FILE, FILE_ID_FILE, describeAfterCrash, describeChange, describeFileId, fileIdOf, forgetStopped, readFileId,
  replacedSince, sameFile, stampedAtStop, timesOf, writeFileId, writtenAfterCrash, writtenWhileStopped, type FileId,
} from '../volume/file-identity.js';
import { PROMOTE_AT_FILE } from '../secondary/promote-at-file.js';
import { GROW_FILE } from '../journal/grow.js';
import { peersToOpenWith, readPeers } from '../journal/peers-file.js';
import { RoundMarker } from '../sync/round-marker.js';
import type { LinkVolumes } from './links.js';
import { DRILL_FILE, fsyncDir } from './volume-actions.js';
import { JOURNAL_FOLDER_FILES, VOLUME_FOLDER_FILES, refuseNewerState } from './state-versions.js';
import { NewerFormatError } from '../versioning/format.js';
import type { MemoryBudget } from '../memory/budget.js';
import type { HashBuffers } from '../sync/region-hashes.js';
import type { AliveMark } from './alive-mark.js';
import { RECOVERY_PROGRESS_MS } from '../limits/limits.js';

/** What opening a role takes of the daemon. */
export interface RoleOpening {
  config: Config;
  log: Logger;
  memory: MemoryBudget;
  hashBuffers: HashBuffers;
  linkVolumes: LinkVolumes;
  /** Each replicated volume's stream (src/stream/stream.ts), read when its role opens. */
  streams: Map<string, StreamMark>;
  folders: VolumeFolders;
  /** The daemon's alive mark (src/node/alive-mark.ts): when the run that last had a volume open was last alive. */
  alive: Pick<AliveMark, 'lastAliveOf' | 'openedOne'>;
}

/** The journal and receive-log folders the daemon holds locked, one per volume. */
export class VolumeFolders {
  private readonly locks = new Map<string, FolderLock>();

  constructor(private readonly config: Config) {}

  /** Locks `dir` for volume `name` (FolderLock.take's refusal names the holder). */
  take(name: string, dir: string, what?: string, hint?: string): FolderLock {
    const lock = FolderLock.take(dir, name, what, hint);
    this.locks.set(name, lock);
    return lock;
  }

  release(name: string): void {
    this.locks.get(name)?.release();
    this.locks.delete(name);
  }

  releaseAll(): void {
    for (const lock of this.locks.values()) lock.release();
    this.locks.clear();
  }

  /**
   * Runs the opening of a journal in a locked folder: if it fails, the folder is let
   * go; a segment of another volume is refused with the folder and, when the other
   * is one of this node's, its name. `check` runs first: a file a newer release
   * wrote is refused before anything is opened (docs/VERSIONING.md).
   */
  async holding<T>(name: string, lock: FolderLock, check: () => Promise<void>, open: () => Promise<T>): Promise<T> {
    try {
      await check();
      return await open();
    } catch (err) {
      lock.release();
      if (this.locks.get(name) === lock) this.locks.delete(name);
      if (err instanceof NewerFormatError) throw new Error(`volume ${name}: ${err.message}`);
      if (!(err instanceof ForeignSegmentError)) throw err;
      const other = this.volumeWithUuid(err.owner);
      throw new Error(`volume ${name}: ${lock.what} ${lock.dir}: ${err.detail(other)}`);
    }
  }

  /** The configured volume whose identity.json holds this uuid, if any. */
  private volumeWithUuid(uuid: string): string | undefined {
    for (const v of this.config.volumes) {
      try {
        const id = JSON.parse(fs.readFileSync(path.join(this.config.state, 'volumes', v.name, 'identity.json'), 'utf8')) as { uuid?: unknown };
        if (id.uuid === uuid) return v.name;
      } catch {
        // no identity (yet): not this one
      }
    }
    return undefined;
  }
}

/**
 * Opens the volume in its current role: a primary gets a journal, a dirty bitmap
 * and an activity log under state/volumes/NAME; a secondary its receive log and replica.
 */
export async function openRole(o: RoleOpening, e: VolumeEntry): Promise<void> {
  const v = e.config;
  const { dir, volume } = e;
  if (v.peer === undefined) {
    await servedWithoutPeers(o, e);
    return;
  }
  const lv = o.linkVolumes;
  lv.identities.set(v.name, e.identity!);
  const owner = journalOwner(e);
  // The old role's journal or receive log is closed by now (a promote or demote).
  o.folders.release(v.name);
  const state = new DirStore(dir);
  // Another file than the one the state was kept for starts the pair over by hash (src/volume/file-identity.ts).
  // (As the volume's open found the file, before anything was written to it.)
  const fileId = fileIdOf(v.path, dir, e.volume.statAtOpen, e.volume.diskAtOpen);
  const kept = await readFileId(state);
  const swapped = fileId !== null && kept !== null && replacedSince(kept, fileId);
  // Another disk at a block device's path (disks renamed at boot?) is neither served nor written, unless the operator said it is the volume's.
  // (A disk where a file was, or a file where a disk was, is a path the operator changed: taken as a replaced file.)
  if (swapped && fileId.device !== undefined && kept.device !== undefined) await refuseAnotherDisk(o, v.name, v.path, dir, kept, fileId);
  const replaced = swapped ?
    `volume ${v.name}: ${v.path} is not the ${fileId.device !== undefined ? 'disk' : 'file'} this volume's state was kept for ` +
      `(that was ${describeFileId(kept)}; this is ${describeFileId(fileId)}: ` +
      `${fileId.device !== undefined && kept.device !== undefined ? `a disk replaced, taken as the volume's by ${DEVICE_ACCEPTED_FILE}`
        : 'a copy, or a backup restored'})` : null;
  // The same file written since the last clean stop (a backup restored into it, the replica mounted and fsck'd).
  // (A block device: what the kernel counted written to it, as the open found it.)
  const times = timesOf(e.volume.statAtOpen, e.volume.writesAtOpen);
  // Or, with no clean stop written down, modified well after the daemon was last alive (a crash, then a write by another).
  const lastAlive = o.alive.lastAliveOf(v.name);
  const written = fileId !== null && kept !== null && writtenWhileStopped(kept, fileId, times) ?
    `volume ${v.name}: ${v.path} was written while the daemon was stopped (${describeChange(kept, times)})`
    : fileId !== null && kept !== null && lastAlive !== null && writtenAfterCrash(kept, fileId, times, lastAlive) ?
      `volume ${v.name}: ${v.path} was written after the daemon ended (${describeAfterCrash(times, lastAlive)})` : null;
  if (kept?.stoppedWrites !== undefined && times.writes && kept.stoppedWrites.boot !== times.writes.boot) {
    o.log.info({ volume: v.name }, `volume ${v.name}: ${v.path}: the machine restarted since the daemon's clean stop, and the kernel's ` +
      'count of writes to the disk with it: a write to it while the daemon was stopped before the restart cannot be told');
  }
  // Written down once what the open found is acted on (the new stream, the replica started over), and before the
  // volume is written: the clean stop's times go with it, so a crash later is not taken for a write while stopped.
  const keepFileId = async (): Promise<void> => {
    // (And a disk's name changed with it the same disk: a loop device's file renamed. Or a loop device's file not yet written down.)
    if (fileId !== null && (kept === null || !sameFile(kept, fileId) || !sameFile(kept.folder, fileId.folder) || stampedAtStop(kept) ||
      kept.device !== fileId.device || (fileId.deviceFile !== undefined && kept.deviceFile === undefined))) {
      await writeFileId(state, fileId);
    }
    // (A disk the operator took as the volume's: its acceptance is spent.)
    for (const f of [DEVICE_ACCEPTED_FILE, DEVICE_REFUSED_FILE]) fs.rmSync(path.join(dir, f), { force: true });
    // (What the open found is acted on: the previous run's alive mark says nothing of this file from here on.)
    o.alive.openedOne(v.name);
  };
  if (e.role === 'secondary') {
    if (replaced !== null) {
      o.log.warn({ volume: v.name }, `${replaced}: its receive log, round, checkpoint and restore points describe the other file, so ` +
        'they go, and this replica is compared with its primary by hash as a new one (not consistent until that ends; only the regions ' +
        'that differ are sent)');
      startOverAsReplica(dir);
    } else if (written !== null) {
      o.log.warn({ volume: v.name }, `${written}: it is no longer the flush-point image its receive log, round, checkpoint and ` +
        'restore points build on, so they go, and this replica is compared with its primary by hash as a new one (not consistent ' +
        'until that ends; only the regions that differ are sent)');
      startOverAsReplica(dir);
    }
    fs.rmSync(path.join(dir, DRILL_FILE), { force: true }); // a drill does not outlive the daemon
    const receiveDir = path.join(dir, 'receive');
    const lock = o.folders.take(v.name, receiveDir, 'receive log folder', `the state folder ${o.config.state} must be this daemon's alone`);
    // (Appends through the page cache, however large: the apply reads them back soon after,
    // from the cache rather than the disk; docs/JOURNAL.md, "Direct appends".)
    const store = new DirStore(receiveDir, { directAppends: false });
    const replica = await o.folders.holding(v.name, lock, async () => {
      await refuseNewerState(receiveDir, store, JOURNAL_FOLDER_FILES);
      await refuseNewerState(dir, new DirStore(dir), VOLUME_FOLDER_FILES);
      await keepFileId();
    }, () => Replica.open(volume, () => new Journal({ store, capacity: v.journal, onDamage: KEEP_PREFIX, volume: owner }), o.log, {
      roundStore: new DirStore(dir),
      regionSize: v.bitmap_region,
      group: o.config.groups.some((g) => g.members.includes(v.name)),
      memory: o.memory,
      hashBuffers: o.hashBuffers,
      ...(v.history ? { history: { keepMs: v.history.keep === undefined ? null : v.history.keep * 1000, maxBytes: v.history.max ?? null } } : {}),
    }));
    const followed = await readStream(new DirStore(dir));
    if (followed) o.streams.set(v.name, followed);
    else o.streams.delete(v.name);
    const of = followed?.primary || (v.peers.length === 1 ? v.peer : `one of ${v.peers.join(', ')}`);
    o.log.info({ volume: v.name }, `volume ${v.name}: replica of ${of}, applied up to record ${replica.receiver.applied}, ` +
      `receive log ${formatBytes(replica.log.usedBytes)}${replica.checkpoint ? `, checkpoint "${replica.checkpoint.label}" held` : ''}`);
    if (replica.checkpoint?.ownedByDrill) {
      // The drill that took it ended with the last run of the daemon.
      o.log.info({ volume: v.name }, `volume ${v.name}: releasing the checkpoint of a drill that ended with the last run`);
      await replica.releaseCheckpoint();
    }
    e.replica = replica;
    e.journaled = null;
    // Kept through role changes (read once; the API answers from it): a secondary
    // shows the history of its time as primary, and records nothing.
    e.history ??= new History(path.join(dir, 'history.csv'));
    lv.replicas.set(v.name, replica);
    lv.primaries.delete(v.name);
    return;
  }
  const journalDir = path.resolve(journalDirOf(v, o.config.state));
  // (Before the lock makes the folder: one that is not there is refused.)
  if (replaced === null) await journalPlace(o, v.name, journalDir, state);
  // A journal that began here and has no dirty bitmap lost it: what it marked is not known.
  const bitmapLost = !state.list().includes(BITMAP_FILE) && (await readStream(state))?.primary === o.config.node ?
    `volume ${v.name}: its dirty bitmap (${path.join(dir, BITMAP_FILE)}) is gone, so the regions it marked are not known` : null;
  // What no journal or bitmap holds: regions written where neither saw them (the file written while stopped), or marks lost.
  const untracked = written !== null ? `${written}, so the regions written then are in no journal` : bitmapLost;
  const lock = o.folders.take(v.name, journalDir);
  const journalStore = new DirStore(journalDir, { directAppends: true });
  const journal = new Journal({ store: journalStore, capacity: v.journal, volume: owner });
  // The ranges the journal's records cover, for the start (a bit per region: 2 MiB for
  // 1 TiB at 64 KiB); let go once the start is done (below), so it is not kept by
  // whatever of this call outlives it.
  let recorded: RegionSet | null = new RegionSet(volume.size, v.bitmap_region);
  // A step that fails closes what the ones before it opened (the volume is set aside: src/node/set-aside.ts).
  let bitmap: DirtyBitmap | null = null;
  let journaled: JournaledVolume | null = null;
  try {
    const report = await o.folders.holding(v.name, lock, async () => {
      // Before anything is read: is the journal where the config says, to be moved there, or lost?
      await placeJournal(o, v.name, journalDir, state, replaced, untracked);
      await refuseNewerState(journalDir, journalStore, JOURNAL_FOLDER_FILES);
      await refuseNewerState(dir, new DirStore(dir), VOLUME_FOLDER_FILES);
      await keepFileId();
    }, () => journal.recover((at, l) => recorded!.mark(at, l), recoveryProgress(o.log, v.name)));
    const opened = await DirtyBitmap.open(new DirStore(dir), volume.size, v.bitmap_region);
    bitmap = opened.bitmap;
    const notes = opened.notes;
    for (const n of notes) o.log.warn({ volume: v.name }, n);
    // The peers its journal kept cursors for at its last run (src/journal/peers-file.ts):
    // it opens with them, and a change since is made as a reload makes it (below).
    const had = await readPeers(state);
    journaled = new JournaledVolume({
      disk: volume,
      journal,
      bitmap,
      onFull: v.on_full,
      log: o.log,
      intentStore: journalStore,
      roundStore: new DirStore(dir),
      activityStore: new DirStore(dir),
      hashBuffers: o.hashBuffers,
      peers: [...peersToOpenWith(had, v.peers)],
      peerStore: new DirStore(dir),
    });
    await journaled.start(report, recorded);
    const changed = await journaled.settlePeers(had, v.peers);
    if (had !== null && changed !== null) {
      const { added, removed } = changed;
      o.log.info({ volume: v.name }, `volume ${v.name}: its peers were ${had.join(', ')} at its last run and are ${v.peers.join(', ')} now` +
        (added.length > 0 ? `; ${added.join(', ')} ${added.length === 1 ? 'gets' : 'get'} a first sync of its own, compared by hash, when it links ` +
          '(what the journal let go of meanwhile is in no journal of it)' : '') +
        (removed.length > 0 ? `; ${removed.join(', ')} no longer sent its changes` : ''));
    }
    // The journal's stream: named when it begins (a new volume, a promote; a journal of a release before streams at its first start here).
    let stream = await readStream(new DirStore(dir));
    if (!stream || stream.primary !== o.config.node) {
      stream = { stream: newStreamId(), primary: o.config.node };
      await writeStream(new DirStore(dir), stream);
    }
    o.streams.set(v.name, stream);
    // (After the start: a journal that began here, or was moved here by hand, is written down where it is. A move
    // a crash cut stays written down: the folder it was to holds its copies, an old state of the journal, until it is done again.)
    const at = await readJournalAt(state);
    if (at?.folder !== journalDir) {
      await writeJournalAt(state, { folder: journalDir, ...(at?.moving !== undefined && at.moving !== journalDir ? { moving: at.moving } : {}) });
    }
  } catch (err) {
    try {
      if (journaled) journaled.abandon();
      else {
        journal.close();
        bitmap?.close();
      }
    } catch {
      // (What failed first is what the operator is told.)
    }
    throw err;
  } finally {
    recorded = null;
  }
  o.log.info({ volume: v.name, journal: v.journal },
    `volume ${v.name}: journal ${formatBytes(journal.usedBytes)} of ${formatBytes(v.journal)}, ` +
      `${journal.unreleasedRecords} records unreleased, epoch ${journal.epoch}, tracking by ${journaled.mode}`);
  e.journaled = journaled;
  e.replica = null;
  e.history ??= new History(path.join(dir, 'history.csv'));
  e.history.restart();
  lv.primaries.set(v.name, journaled);
  lv.replicas.delete(v.name);
}

/**
 * A block device whose disk is not the one the volume's state was kept for (src/volume/
 * device-identity.ts: after a reboot /dev/sdb may be another disk) is refused before
 * anything is read or written: served, it would give hosts another disk; as a replica,
 * its primary's data would overwrite it. The refusal writes down the disk it found
 * (DEVICE_REFUSED_FILE); the operator who knows the disk is the volume's now (a disk
 * replaced, its data restored) renames that to DEVICE_ACCEPTED_FILE and reloads, and the
 * volume opens as over a replaced file: its peers are compared with it by hash.
 */
async function refuseAnotherDisk(o: RoleOpening, name: string, where: string, dir: string, kept: FileId, now: FileId): Promise<void> {
  const state = new DirStore(dir);
  const accepted = await readFileId(state, DEVICE_ACCEPTED_FILE);
  if (accepted !== null && sameFile(accepted, now)) return;
  await writeFileId(state, now, DEVICE_REFUSED_FILE);
  throw new Error(`volume ${name}: ${where} is not the disk this volume's state was kept for (that was ${describeFileId(kept)}; ` +
    `this is ${describeFileId(now)}: disks renamed at boot?); not opened, nothing read or written. Name the volume's disk by a ` +
    `path that does not change (/dev/disk/by-id/...) and reload; or, if this disk is the volume's now (a disk replaced, its data ` +
    `restored onto it), rename ${path.join(dir, DEVICE_REFUSED_FILE)} to ${DEVICE_ACCEPTED_FILE} and reload: its peers are then ` +
    `compared with it by hash (only the regions that differ are sent)`);
}

/**
 * A journal the config moved is moved to its new folder (src/journal/journal-move.ts);
 * one lost with its folder begins again in a new stream, so every peer is compared by
 * hash (src/journal/placement.ts). The new folder is locked by now.
 */
async function placeJournal(o: RoleOpening, name: string, folder: string, state: DirStore, replaced: string | null,
  untracked: string | null): Promise<void> {
  let at = await readJournalAt(state);
  if (replaced !== null) {
    // The journal's records are changes to the other file: they go, wherever they are, and a new stream begins.
    o.log.warn({ volume: name }, `${replaced}: its journal describes changes to the other file, so it is dropped, and each peer's ` +
      'replica is compared with this file by hash and brought equal (only the regions that differ are sent)');
    removeJournalFiles(folder);
    if (at !== null) removeJournalFiles(at.folder);
    if (at?.leaving !== undefined) removeJournalFiles(at.leaving);
    if (at?.moving !== undefined) removeJournalFiles(at.moving);
    await writeJournalAt(state, { folder });
    await new RoundMarker(state).remove();
    await writeStream(state, { stream: newStreamId(), primary: o.config.node });
    return;
  }
  if (at?.leaving !== undefined) {
    // A move's commit point passed; a crash stopped the old folder's files being removed.
    removeJournalFiles(at.leaving);
    at = { folder: at.folder };
    await writeJournalAt(state, at);
  }
  const place = await journalPlace(o, name, folder, state);
  if (untracked !== null && place.kind !== 'lost') {
    // (The journal is kept; its records are covered by the round every peer gets.)
    o.log.warn({ volume: name }, `${untracked}: each peer's replica is compared with this volume by hash and brought equal ` +
      '(only the regions that differ are sent)');
    await new RoundMarker(state).remove();
    await writeStream(state, { stream: newStreamId(), primary: o.config.node });
  }
  if (place.kind === 'here') return;
  if (place.kind === 'move') {
    o.log.info({ volume: name }, place.message);
    const t0 = Date.now();
    const moved = await moveJournal(place.from, folder, () => writeJournalAt(state, { folder: place.from, moving: folder }),
      () => writeJournalAt(state, { folder, leaving: place.from }), place.redo);
    await writeJournalAt(state, { folder });
    o.log.info({ volume: name }, `volume ${name}: journal moved to ${folder} in ${Date.now() - t0} ms ` +
      `(${moved.files} files, ${formatBytes(moved.bytes)}, ${moved.copied ? 'copied: another filesystem' : 'linked: the same filesystem'})`);
    return;
  }
  o.log.warn({ volume: name }, place.message);
  // The new stream is written before the new journal's first segment: a crash between
  // the two finds no segment and a stream no peer holds, and judges the same again.
  await new RoundMarker(state).remove();
  await writeStream(state, { stream: newStreamId(), primary: o.config.node });
}

/**
 * A primary that replicated before and is served without peers now journals nothing:
 * its writes from now on reach no journal, so the stream its secondaries hold must end
 * here. Its stream file goes (durably, before any host write), and when it is given a
 * peer again a new stream begins: each secondary goes back to its last flush point and
 * is compared by hash (docs/PEERS.md, "A volume without peers"). Without this, its
 * journal reopened in the old stream and shipped on from where the secondary stood,
 * and the writes made without peers never reached it (a replica called consistent).
 */
async function servedWithoutPeers(o: RoleOpening, e: VolumeEntry): Promise<void> {
  // (Its file is written unwatched from now on: a clean stop's note from a run with peers says nothing any more.)
  if (fs.existsSync(path.join(e.dir, FILE_ID_FILE))) await forgetStopped(new DirStore(e.dir));
  if (e.role !== 'primary') return;
  const state = new DirStore(e.dir);
  const stream = await readStream(state);
  if (stream === null) return;
  await removeStream(state);
  o.log.warn({ volume: e.config.name }, `volume ${e.config.name}: served without peers: its writes from now on are in no journal; ` +
    'when it is given a peer again, each of its secondaries is compared with it by hash (only the regions that differ are sent)');
}

/** Where the journal is (src/journal/placement.ts); a folder that does not exist is refused (the volume set aside). */
async function journalPlace(o: RoleOpening, name: string, folder: string, state: DirStore): Promise<Exclude<JournalPlace, { kind: 'missing' }>> {
  const at = await readJournalAt(state);
  const writtenDown = at?.folder ?? null;
  const stream = await readStream(state);
  const place = judgePlace({
    volume: name,
    folder,
    here: segmentsIn(folder),
    writtenDown,
    there: writtenDown === null || writtenDown === folder ? { count: 0, bytes: 0 } : segmentsIn(writtenDown),
    cutMove: at?.moving === folder,
    ownStream: stream !== null && stream.primary === o.config.node,
    exists: fs.existsSync(folder),
  });
  if (place.kind === 'missing') throw new Error(place.message);
  return place;
}

/** Files of a replica's state folder a replaced file keeps: the volume's identity, its write history, a promote or grow under way. */
const KEPT_FOR_ANOTHER_FILE = new Set(['identity.json', 'history.csv', PROMOTE_AT_FILE, GROW_FILE, FILE_ID_FILE, DEVICE_ACCEPTED_FILE]);

/**
 * A replica whose file was replaced starts over as a new replica of its primary: its
 * receive log, round marker and undo area, stream, first-sync mark, checkpoint, group
 * point and restore points all describe the other file. Made durable before it opens.
 */
function startOverAsReplica(dir: string): void {
  for (const f of fs.readdirSync(dir)) {
    if (!KEPT_FOR_ANOTHER_FILE.has(f)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  }
  fsyncDir(dir);
}

/**
 * The volume a journal's segments name: its uuid, read at each new segment (a secondary
 * gets it at its first link). Made here, not in openRole: a closure keeps every
 * variable its function's closures share, and this one lives as long as the journal.
 */
function journalOwner(e: VolumeEntry): JournalVolume {
  return { name: e.config.name, uuid: () => e.identity?.uuid ?? '' };
}

/** A long journal scan at the start, told every RECOVERY_PROGRESS_MS ("journal recovery: 212 of 1024 segments, 13.2 GiB read, 21 s"). */
export function recoveryProgress(log: Logger, name: string, now = Date.now): (done: number, of: number, bytes: number) => void {
  const began = now();
  let told = began;
  return (done, of, bytes) => {
    const t = now();
    if (t - told < RECOVERY_PROGRESS_MS || done === of) return;
    told = t;
    log.info({ volume: name }, `volume ${name}: journal recovery: ${done} of ${of} segments, ${formatBytes(bytes)} read, ${Math.round((t - began) / 1000)} s`);
  };
}
