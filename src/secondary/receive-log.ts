// The receive log as the secondary reads and fills it: a journal that keeps the
// primary's seqs (src/journal/, onDamage: KEEP_PREFIX). At a start, what it holds past
// the applied point tells the receiver where the barriers, round ends and coalesced
// units are, and the receiver is made from it; a frame from the peer is appended
// record by record until it ends, the log is full or the log fails. The receiver
// (receiver.ts) decides what follows.
import type { Journal } from '../journal/journal.js';
import { FLAG_ROUND_END, RECORD_HEADER_SIZE, RecordKind, groupPointOf, type JournalRecord } from '../journal/record.js';
import { READ_BATCH_BYTES, MIN_RECEIVE_LOG_BYTES } from '../limits/limits.js';
import { formatBytes } from '../units/units.js';
import type { Logger } from '../log/log.js';
import type { Store } from '../journal/store.js';
import { Receiver, type ReceivedRecord, type ReceiverAction } from './receiver.js';
import type { ReplicaRound } from './replica-round.js';
import { readGroupPoint } from './group-point-file.js';

/** What a receive log holds past the applied point, as the receiver is told it at a start. */
export interface LogContents {
  lastBarrier: number;
  roundEnds: number[];
  barriers: number[];
  skips: Array<{ seq: number; until: number }>;
  /** Group points the log holds (from its release point: the one at `applied` says where the replica stands). */
  groupPoints: Array<{ seq: number; point: number }>;
  /** Round ends the log holds at or below the applied point, not yet released (a round whose end was applied). */
  appliedRoundEnds: number[];
}

/** Reads `log` from past its released and applied points to its end. */
export async function scanReceiveLog(log: Journal): Promise<LogContents> {
  let lastBarrier = 0;
  const roundEnds: number[] = [];
  const barriers: number[] = [];
  const skips: Array<{ seq: number; until: number }> = [];
  const groupPoints: Array<{ seq: number; point: number }> = [];
  const appliedRoundEnds: number[] = [];
  const after = Math.max(log.released, log.appliedOnDisk);
  // From the release point: records applied but not yet released may name the group point the replica stands at.
  for (let seq = log.released + 1; seq <= log.lastSeq;) {
    const batch = await log.read(seq, READ_BATCH_BYTES);
    if (batch.length === 0) break;
    for (const r of batch) {
      const point = groupPointOf(r);
      if (point !== null) groupPoints.push({ seq: r.seq, point });
      if (r.seq <= after) {
        if (r.kind === RecordKind.Barrier && (r.flags & FLAG_ROUND_END)) appliedRoundEnds.push(r.seq);
        continue;
      }
      if (r.kind === RecordKind.Barrier) lastBarrier = r.seq;
      if (r.kind === RecordKind.Barrier && (r.flags & FLAG_ROUND_END)) roundEnds.push(r.seq);
      if (r.kind === RecordKind.Barrier) barriers.push(r.seq);
      if (r.kind === RecordKind.Skip) skips.push({ seq: r.seq, until: r.offset });
    }
    seq = batch[batch.length - 1]!.seq + 1;
  }
  return { lastBarrier, roundEnds, barriers, skips, groupPoints, appliedRoundEnds };
}

/** What reading the receive log at a start needs besides the log. */
export interface LogStart {
  readonly name: string;
  readonly logger: Logger;
  /** The round's marker and undo area: a round whose end was applied before the stop is completed here. */
  readonly round: Pick<ReplicaRound, 'mark' | 'complete' | 'completed'>;
  /** The checkpoint held now, if any. */
  checkpoint(): { readonly appliedSeq: number } | null;
  /** A group member's state folder, with the point its last unit ends at (null: not a member). */
  readonly groupStore: Store | null;
  readonly receiverOptions: { unitBytes?: number | undefined; group?: boolean | undefined };
  /** Takes the receiver as soon as it is made, with no await between (an action then reaches the new one, not the old). */
  made(receiver: Receiver): void;
}

/**
 * Recovers the receive log at a start (or when a broken one is reopened) and makes the
 * receiver from what it holds durably (held, if a checkpoint is); says where the
 * replica stands (`applied`) and the group point a unit a crash interrupted is redone
 * to (null: none).
 */
export async function receiverAtStart(log: Journal, start: LogStart): Promise<{ applied: number; redoTo: number | null }> {
  const report = await log.recover();
  for (const n of report.notes) start.logger.info({ volume: start.name }, n);
  if (report.damaged) {
    start.logger.error({ volume: start.name },
      `volume ${start.name}: the receive log is damaged; records after the damage are dropped and will be fetched again`);
  }
  const { lastBarrier, roundEnds, barriers, skips, groupPoints, appliedRoundEnds } = await scanReceiveLog(log);
  const mark = start.groupStore ? await readGroupPoint(start.groupStore) : null;
  // (A held checkpoint was taken after its last apply was durable on the volume; the
  // applied counter may lag it, but that is where the frozen image stands.)
  const applied = Math.max(log.appliedOnDisk, log.released, start.checkpoint()?.appliedSeq ?? 0);
  // A round whose end was applied before the stop, its marker not yet removed: the
  // volume is the image at the round's end; the round is completed now.
  // (Only a marker flagged ending: a round the primary opened again from the same start
  // after an earlier one ended here has that earlier end below the applied point too.)
  const round = start.round.mark;
  const endedAt = round?.ending && !roundEnds.some((s) => s >= round.startSeq) ?
    appliedRoundEnds.find((s) => s >= round.startSeq && s <= applied) : undefined;
  if (endedAt !== undefined) {
    const wasInitial = await start.round.complete();
    await start.round.completed();
    start.logger.info({ volume: start.name }, `volume ${start.name}: the resync round ending at record ${endedAt} was applied before the stop; ` +
      `completed now${wasInitial ? ' (the first sync is done: the replica is consistent)' : ''}`);
  }
  if (applied > log.lastSeq) {
    // The log was cut back below `applied` (or a jump reached the applied counter
    // but not the log): it holds nothing the replica needs; continue after `applied`.
    await log.release(log.lastSeq);
    if (log.unreleasedRecords === 0) log.jumpTo(applied);
  }
  const held = Math.max(log.lastSeq, applied);
  const receiver = new Receiver({ logged: held, logDurable: held, applied, lastBarrier, round: start.round.mark !== null, roundEnds, barriers, skips,
    groupPoints, appliedPoint: mark }, start.receiverOptions);
  start.made(receiver);
  // A group member's unit that a crash interrupted ends at the group point written
  // down before it began: that point is durable here (the group's limit is held by
  // every member), so it is redone now, before the export serves.
  const redoTo = mark && mark.seq > applied && receiver.seqOfPoint(mark.point) === mark.seq ? mark.point : null;
  // A checkpoint held before the stop stays held: nothing is applied until it is released.
  if (start.checkpoint()) receiver.handle({ type: 'hold', held: true });
  return { applied, redoTo };
}

/** Records of a frame as the receiver sees them. */
export function received(records: JournalRecord[]): ReceivedRecord[] {
  return records.map((r) => {
    const size = r.payload.length + RECORD_HEADER_SIZE;
    // (Literals, no spreads: V8 takes a slow path for those, and this runs for every record received.)
    if (r.kind === RecordKind.Skip) return { seq: r.seq, barrier: false, roundEnd: false, skipUntil: r.offset, size };
    if (r.kind !== RecordKind.Barrier) return { seq: r.seq, barrier: false, roundEnd: false, size };
    const roundEnd = (r.flags & FLAG_ROUND_END) !== 0;
    return groupPointOf(r) !== null ? { seq: r.seq, barrier: true, roundEnd, groupPoint: r.offset, size } : { seq: r.seq, barrier: true, roundEnd, size };
  });
}

/**
 * How an append of records from..to ended. `failed`: the log failed, or a record
 * would not fit it even empty (the link closes with `error`); `full`: the log is full,
 * and `next` is what the receiver does about it (nothing: the link closes).
 */
export type AppendEnd = { kind: 'done' } | { kind: 'failed'; error: Error } | { kind: 'full'; next: ReceiverAction[] };

/**
 * Appends records from..to of `frame` to `log`. On a full or failed log the rest of
 * the frame is dropped and the receiver is told where the log really ends.
 */
export function appendFrame(log: Journal, receiver: Receiver, from: number, to: number, frame: Map<number, JournalRecord>): AppendEnd {
  for (let seq = from; seq <= to; seq++) {
    const r = frame.get(seq)!;
    let res;
    try {
      // (The payload's CRC was checked as the frame was decoded: not computed again.)
      res = log.appendReceived(r, r.kind === RecordKind.Write ? r.payload : null, r.payloadCrc);
    } catch (e) {
      receiver.handle({ type: 'appendStopped', upTo: log.lastSeq });
      return { kind: 'failed', error: e as Error };
    }
    if (res === 'full') {
      if (log.unreleasedRecords === 0 && r.payload.length + RECORD_HEADER_SIZE >= log.capacity / 2) {
        // It would not fit an empty log either: say so, rather than reconnect forever in silence.
        receiver.handle({ type: 'appendStopped', upTo: log.lastSeq });
        const needed = formatBytes(Math.max(MIN_RECEIVE_LOG_BYTES, 4 * r.payload.length));
        return { kind: 'failed',
          error: new Error(`a ${formatBytes(r.payload.length)} write does not fit the receive log of ${formatBytes(log.capacity)}; give this node's volume ` +
          `a journal: of at least ${needed}`) };
      }
      return { kind: 'full', next: receiver.handle({ type: 'appendStopped', upTo: log.lastSeq, full: true }) };
    }
  }
  return { kind: 'done' };
}
