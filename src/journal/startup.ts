// What the write path does at start, before it serves (docs/JOURNAL.md, "Recovery";
// docs/RESYNC.md): the activity log's suspects after a power loss, the writes that
// were in flight at a crash (their intents), and redo: journal records whose volume
// writes may not have completed are replayed. startUp() puts them in order (for
// JournaledVolume.start()); each step here only reads and writes what it is handed.
import type { Logger } from '../log/log.js';
import type { Store } from '../store/store.js';
import { formatBytes } from '../units/units.js';
import { READ_BATCH_BYTES } from '../limits/limits.js';
import type { ResyncRound } from '../sync/round.js';
import type { Seeding } from '../sync/seeding.js';
import { ActivityLog } from './activity-log.js';
import { RegionSet, type DirtyBitmap } from './bitmap.js';
import { zeroRange, type Disk } from './disk.js';
import { IntentRing } from './intent.js';
import type { Journal, RecoveryReport } from './journal.js';
import { RecordKind } from './record.js';
import type { Tracking } from './tracking.js';

/** The volume being started. */
export interface Starting {
  name: string;
  log: Logger;
  disk: Disk;
  journal: Journal;
  bitmap: DirtyBitmap;
}

/**
 * After a power loss, extents with writes in flight (the activity log's suspects) may
 * hold writes the journal lost: they are marked for resync (the caller syncs the bitmap).
 */
export function markSuspects(v: Starting, suspect: Array<{ offset: number; length: number }>): void {
  for (const r of suspect) v.bitmap.mark(r.offset, Math.min(r.length, v.disk.size - r.offset));
  if (suspect.length > 0) {
    v.log.warn({ volume: v.name },
      `volume ${v.name}: the machine restarted without a clean stop; ${suspect.length} recently written extents ` +
      `(${formatBytes(suspect.reduce((n, r) => n + r.length, 0))}) are marked for resync`);
  }
}

/** The intent ring, if the write path keeps one (its folder is the journal's). */
export interface Intents {
  store: Store | null;
  slots: number | undefined;
}

/** Where the activity log lives and its shape (the write path's options). */
export interface ActivityPlace {
  /** Without it a power loss is not covered. */
  activityStore?: Store;
  /** Extent size (default 4 MiB) and slots (default 1024). */
  activityExtent?: number;
  activitySlots?: number;
  bootId?: () => string;
}

/** What the start-up order works on: the volume, and the parts of its write path it sets up. */
export interface Restarting extends Starting {
  round: ResyncRound;
  seed: Seeding;
  tracking: Tracking;
  intents: Intents;
  activity: ActivityPlace;
  /** The write path's epoch bound now (its maxEpochBytes). */
  epochBytes(): number;
  /** The round-end barrier a previous life journaled after `from`, or 0 (RoundSteps.journaledEnd). */
  journaledEnd(from: number): Promise<number>;
  /** The activity log is open and reset: the write path's volume writes enter it from now on. */
  activityOpened(log: ActivityLog): void;
  /** The last step: the write path opens its intent ring (if tracking by journal) and flushes. */
  ready(): Promise<void>;
}

/**
 * Brings volume, journal and bitmap into agreement after a start (clean or not):
 * damage found by journal recovery goes to the bitmap; a non-empty bitmap means
 * bitmap mode; otherwise records after the `applied` counter are replayed. Then
 * `ready`: the write path's intent ring opens, and a FLUSH (through the activity log,
 * open by then) makes it all durable.
 */
export async function startUp(v: Restarting, report: RecoveryReport, recorded?: RegionSet): Promise<void> {
  const { log, name, bitmap, round, seed, tracking } = v;
  for (const n of report.notes) (report.damaged ? log.warn : log.info).call(log, { volume: name }, n);
  for (const r of report.lost) bitmap.mark(r.offset, r.length);
  if (report.unknownLoss || (report.damaged && !recorded)) bitmap.markAll();
  if (report.damaged) {
    // The journal cannot be read through: fold it from what recovery saw.
    recorded?.copyTo(bitmap);
    tracking.skipRead = true;
  }
  const a = v.activity;
  if (a.activityStore) {
    // After a power loss, extents with writes in flight may hold writes the journal lost.
    const { log: activity, suspect } = await ActivityLog.open({ store: a.activityStore, extentSize: a.activityExtent ?? 4 << 20,
      slots: a.activitySlots ?? 1024, bootId: a.bootId });
    markSuspects(v, suspect);
    await bitmap.sync();
    await activity.reset();
    v.activityOpened(activity);
  }
  const mark = round.canResync ? await round.readMark() : null;
  if (mark && !report.damaged) {
    // A resync round was under way: the journal ships on, the bitmap holds what is left.
    round.open(mark.startSeq, bitmap.dirtyBytes, Date.now(), null, mark.initial);
    const touched = new RegionSet(v.disk.size, bitmap.regionSize);
    recorded?.copyToSet(touched);
    // Without the recovered records' ranges the round cannot compare safely.
    seed.begin(mark.initial && recorded !== undefined, touched, new RegionSet(v.disk.size, bitmap.regionSize));
    await redo(v);
    await rejournalAll(v);
    // The round's end may be journaled already (the stop came before the peer acked it).
    const end = await v.journaledEnd(mark.startSeq);
    if (end !== 0 && bitmap.count === 0) round.endSeq = end;
    log.info({ volume: name }, `volume ${name}: resync round from record ${mark.startSeq} resumes; ` +
      (end !== 0 && bitmap.count === 0 ? `its end, record ${end}, is journaled and waits for the peer` : `${formatBytes(bitmap.dirtyBytes)} left to send`));
    // Regions marked after the end was journaled (writes a power loss may have kept from
    // the journal): a second end in the same round would close the peer's round twice; a
    // new round covers them.
    if (end !== 0 && bitmap.count > 0) {
      tracking.toBitmap(`the resync round's end (record ${end}) was journaled before the stop, and ${bitmap.count} regions were marked since`);
    }
  } else if (bitmap.count > 0) {
    // Writes in flight at the crash may be on the volume without a journal record:
    // their intents say where, and those ranges are resynced too.
    const ring = v.intents.store ? IntentRing.open(v.intents.store, v.intents.slots) : null;
    if (ring) {
      for (const i of await ring.after(v.journal.lastSeq)) bitmap.mark(i.offset, i.length);
      ring.close();
    }
    log.warn({ volume: name },
      `volume ${name}: ${bitmap.count} regions (${formatBytes(bitmap.dirtyBytes)}) are marked for resync; tracking ` +
        `changes in the dirty bitmap`);
    tracking.mode = 'bitmap';
    await tracking.fold();
  } else {
    await redo(v);
    await rejournalAll(v);
  }
  await v.ready();
}

/** The writes in flight at a crash are journaled again from the volume (rejournal, below). */
function rejournalAll(v: Restarting): Promise<void> {
  return rejournal(v, v.intents, v.epochBytes(), (o, l) => v.seed.touch(o, l), (why) => v.tracking.toBitmap(why));
}

/**
 * Writes that were in flight when the process died may be on the volume although
 * their journal records are not: their intents say where. The volume's bytes there
 * are journaled again (as new records), so the journal describes the volume exactly.
 * `touch` hears of each range (a round's records touch it). When the journal has no
 * room, the ranges not journaled are marked in the bitmap and `toBitmap` is called.
 */
export async function rejournal(v: Starting, intents: Intents, maxEpochBytes: number, touch: (offset: number, length: number) => void,
  toBitmap: (reason: string) => void): Promise<void> {
  if (!intents.store) return;
  const ring = IntentRing.open(intents.store, intents.slots);
  if (!ring) return;
  const lost = await ring.after(v.journal.lastSeq);
  ring.close();
  for (const i of lost) {
    const data = Buffer.alloc(i.length);
    await v.disk.read(i.offset, data, 0, i.length);
    const zero = data.every((b) => b === 0);
    touch(i.offset, i.length);
    let r: number | 'full';
    try {
      r = zero ? v.journal.append(RecordKind.Zeroes, i.offset, i.length, null) : v.journal.append(RecordKind.Write, i.offset, i.length, data);
    } catch {
      r = 'full';
    }
    if (r !== 'full' && v.journal.openEpochBytes > maxEpochBytes) {
      // In-flight writes had no order among them: a boundary between them is a valid image.
      v.journal.barrier();
    }
    if (r === 'full') {
      for (const rest of lost.slice(lost.indexOf(i))) v.bitmap.mark(rest.offset, rest.length);
      toBitmap('no journal space for the writes that were in flight at the crash');
      return;
    }
  }
  if (lost.length > 0) {
    v.log.info({ volume: v.name }, `volume ${v.name}: ${lost.length} writes were in flight at the crash; their ranges were journaled again from the volume`);
  }
}

/** Replays journal records whose volume writes may not have completed before a crash. */
export async function redo(v: Starting): Promise<void> {
  const { journal, disk } = v;
  // The `applied` counter on disk says up to where the volume surely had everything.
  const from = Math.max(journal.released, journal.appliedOnDisk) + 1;
  let replayed = 0;
  let skipped = 0;
  for (let seq = from; seq <= journal.lastSeq;) {
    const batch = await journal.read(seq, READ_BATCH_BYTES);
    if (batch.length === 0) break;
    for (const r of batch) {
      if (r.kind === RecordKind.Barrier || r.kind === RecordKind.Skip) continue;
      // A region marked for resync is sent from the volume as it is, and may hold a
      // newer write than this record: after an overflow the host's writes go to the
      // volume with only a bitmap mark, and the applied counter stops moving, so
      // replaying the journal there would put older data over a flushed write
      // (found by the replication simulation: a kill -9 while a fold was pending).
      // Only the parts of the record outside marked regions are replayed.
      for (const [o, l] of unmarkedParts(v.bitmap, r.offset, r.length)) {
        if (r.kind === RecordKind.Write) await disk.write(o, r.payload.subarray(o - r.offset, o - r.offset + l), false);
        else if (r.kind === RecordKind.Zeroes) await disk.writeZeroes(o, l, { fua: false, mayTrim: true, fast: false });
        else await zeroRange(disk, o, l);
      }
      if (unmarkedParts(v.bitmap, r.offset, r.length).length === 0) skipped++;
      else replayed++;
    }
    seq = batch[batch.length - 1]!.seq + 1;
  }
  if (replayed > 0 || skipped > 0) {
    v.log.info({ volume: v.name },
      `volume ${v.name}: replayed ${replayed} journal records onto the volume after an unclean ` +
      `stop${skipped > 0 ? ` (${skipped} more lie in regions marked for resync: those are sent as the volume holds them)` : ''}`);
  }
}

/** [offset, length] pieces of a range that lie outside regions marked in the dirty bitmap. */
export function unmarkedParts(bitmap: DirtyBitmap, offset: number, length: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const rs = bitmap.regionSize;
  const end = offset + length;
  for (let at = offset; at < end;) {
    const region = Math.floor(at / rs);
    const stop = Math.min(end, (region + 1) * rs);
    if (!bitmap.isSet(region)) {
      const last = out[out.length - 1];
      if (last && last[0] + last[1] === at) last[1] += stop - at;
      else out.push([at, stop - at]);
    }
    at = stop;
  }
  return out;
}
