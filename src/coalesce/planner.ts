// The shipper's side of coalescing (docs/LINK.md): a batch that spans several epochs
// goes coalesced (coalesce.ts), and far behind, one unit is planned over the backlog
// ahead (up to COALESCE_SCOPE of it), reading the records' headers once (not their payloads), so
// a range rewritten anywhere in the unit travels once. VolumeShipper owns one.
import type { Journal } from '../journal/journal.js';
import { FLAG_RESYNC, FLAG_ROUND_END, RECORD_HEADER_SIZE, RecordKind, type JournalRecord, type RecordHeader } from '../journal/record.js';
import { applyPlan, coalesce, planUnit, type UnitPlan } from './coalesce.js';
import { COALESCE_MAX_RECORDS, COALESCE_SCOPE } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

export interface PlannerOptions {
  /** Coalesce at all (read at every batch). */
  coalesce?: () => boolean;
  /** Most journal bytes one unit plans over (default COALESCE_SCOPE). */
  scopeBytes?: number;
  /** Bytes one read of the journal takes while planning (the configured batch). */
  readBytes: number;
}

/** What the volume says now: a resync round is open (nothing is coalesced), and the largest epoch the peer takes whole. */
export interface UnitBounds {
  roundOpen: boolean;
  maxEpochBytes: number;
}

export class UnitPlanner {
  /** Records sent as Skip records, and their payload bytes, since the daemon started. */
  records = 0;
  bytes = 0;
  /** The unit the batches being read belong to, planned over the backlog ahead (null: per batch). */
  private plan: UnitPlan | null = null;
  /**
   * The stretch of the backlog a planning found no unit in (fewer than two barriers in
   * its scope, and no record that ends a unit early): a batch starting inside it, before
   * the first barrier planning saw, would find none either but at its far end, so it is
   * not planned again. Without this every
   * batch of a backlog with barriers far apart (a host that never flushes: the primary's
   * own barriers, an eighth of the journal apart) read the headers of the whole scope
   * again, and shipping waited on that, not on the link (issue 22: 50-110 ms a batch).
   */
  private noUnit: { from: number; until: number } | null = null;
  /**
   * The headers the last planning read, consecutive from its start: the next planning
   * (from the last plan's end, or a later batch) takes those from its start on and reads
   * only what follows, so far behind each header is read once however far ahead a plan
   * looks. Dropped once the backlog is near (no planning then).
   */
  private ahead: Array<RecordHeader & { size: number }> = [];

  constructor(private readonly o: PlannerOptions) {}

  /**
   * A batch spanning several epochs (the link is behind) goes coalesced, unless a
   * resync round is open or the batch is more than the peer takes as one unit.
   */
  coalesced(records: JournalRecord[], plan: UnitPlan | null, b: UnitBounds): JournalRecord[] {
    if (!this.o.coalesce?.() || b.roundOpen) return records;
    let c;
    if (plan) c = applyPlan(records, plan);
    else {
      let bytes = 0;
      for (const r of records) bytes += RECORD_HEADER_SIZE + r.payload.length;
      if (bytes > b.maxEpochBytes) return records;
      c = coalesce(records);
    }
    this.records += c.skipped;
    this.bytes += c.skippedBytes;
    return c.records;
  }

  /**
   * The unit the batch at `fromSeq` belongs to. Far behind (the backlog ahead holds
   * several batches of `batchBytes`), one unit is planned over up to the scope of
   * journal bytes (and COALESCE_MAX_RECORDS records), ending at a barrier where what it
   * sends is at most half what the peer takes as a unit, the one of those whose unit is
   * written again least after it (coalesce.ts, leastRewritten); each batch of the unit
   * then goes with the plan's Skips.
   */
  async unitFor(journal: Pick<Journal, 'readHeaders' | 'backlogBytes'>, fromSeq: number, limitSeq: number, batchBytes: number,
    b: UnitBounds): Promise<UnitPlan | null> {
    if (!this.o.coalesce?.() || b.roundOpen) {
      this.dropKept();
      return null;
    }
    if (this.plan && fromSeq >= this.plan.from && fromSeq <= this.plan.until) return this.plan;
    this.plan = null;
    if (this.noUnit && fromSeq >= this.noUnit.from && fromSeq <= this.noUnit.until) return null;
    this.noUnit = null;
    const unitBytes = Math.floor(b.maxEpochBytes / 2);
    // The stretch planned over is bounded too, by two of the largest epochs the peer takes
    // (a half of its receive log at most): a primary that restarts mid-unit plans afresh
    // from the peer's resume point, and until the old unit's end arrives the peer holds what
    // the old plan sent (at most unitBytes) and what follows, which even sent raw is then at
    // most this stretch. So the peer's log never fills with records it may not apply yet.
    const scope = Math.min(this.o.scopeBytes ?? COALESCE_SCOPE, 2 * b.maxEpochBytes);
    // (Batches follow the link: on a slow one a backlog of a few of its batches is
    // already minutes of the line, worth planning over.)
    if (journal.backlogBytes < 3 * batchBytes || unitBytes < 2 * batchBytes) {
      this.dropKept();
      return null;
    }
    const headers = this.reuse(fromSeq, limitSeq);
    let bytes = 0;
    for (const h of headers) bytes += h.size;
    let seq = headers.length > 0 ? headers[headers.length - 1]!.seq + 1 : fromSeq;
    while (bytes < scope && headers.length < COALESCE_MAX_RECORDS && seq <= limitSeq) {
      // (Headers only: the payloads are read, and checked, with their batch.)
      // (Every record is at least a header: this many bytes hold at most the records still allowed.)
      const room = (COALESCE_MAX_RECORDS - headers.length) * RECORD_HEADER_SIZE;
      const batch = await journal.readHeaders(seq, Math.min(this.o.readBytes, scope - bytes, room), limitSeq);
      if (batch.length === 0) break;
      for (const r of batch) {
        headers.push({ kind: r.kind, flags: r.flags, seq: r.seq, epoch: r.epoch, offset: r.offset, length: r.length, time: r.time, size: r.size });
        bytes += r.size;
      }
      seq = batch[batch.length - 1]!.seq + 1;
    }
    assert(headers.length <= COALESCE_MAX_RECORDS, () => `coalesce: planned over ${headers.length} records, over ${COALESCE_MAX_RECORDS}`);
    this.ahead = headers;
    // (Its end where least of it is written again after: what follows the end in its batch goes uncoalesced, about a batch.)
    this.plan = headers.length > 0 ? planUnit(headers, unitBytes, batchBytes) : null;
    if (!this.plan && headers.length > 0) this.rememberNoUnit(fromSeq, headers);
    return this.plan;
  }

  /**
   * Drops the headers kept for the next planning (the link went down, coalescing stopped):
   * memory only. The plan itself stays: a link that comes back inside its unit sends the
   * same Skips, naming the same end, as before.
   */
  dropKept(): void {
    this.ahead = [];
  }

  /** Headers kept for the next planning. */
  get keptHeaders(): number {
    return this.ahead.length;
  }

  /** The headers from `fromSeq` on (not past `limitSeq`) that the last planning read, if it read that far. */
  private reuse(fromSeq: number, limitSeq: number): Array<RecordHeader & { size: number }> {
    const a = this.ahead;
    this.ahead = [];
    if (a.length === 0) return [];
    const i = fromSeq - a[0]!.seq;
    if (i < 0 || i >= a.length || a[i]!.seq !== fromSeq) return [];
    let end = a.length;
    while (end > i && a[end - 1]!.seq > limitSeq) end--;
    return a.slice(i, end);
  }

  /** No unit in `headers` (read from `fromSeq`): remembered when that holds for batches further in too. */
  private rememberNoUnit(fromSeq: number, headers: RecordHeader[]): void {
    const barriers = headers.filter((h) => h.kind === RecordKind.Barrier);
    const ends = headers.some((h) => (h.flags & (FLAG_RESYNC | FLAG_ROUND_END)) !== 0 || h.kind === RecordKind.Skip);
    if (ends) return;
    // Two barriers or more, yet no unit (its first two epochs send more than the peer
    // takes as a unit): a batch before the first barrier would find the same.
    if (barriers.length >= 2) {
      this.noUnit = { from: fromSeq, until: barriers[0]!.seq - 1 };
      return;
    }
    // (Up to the first barrier seen, or all that was read: a batch from the barrier on plans again.)
    this.noUnit = { from: fromSeq, until: barriers.length > 0 ? barriers[0]!.seq - 1 : headers[headers.length - 1]!.seq };
  }
}
