// Restore points across a follow (docs/HISTORY.md, "After a follow"). A primary's journal
// numbers its records from 1 when it begins, so after a failover elsewhere, when this
// replica follows the new primary (RoleChanges.follow), the new stream's record seqs
// repeat those of the points its history holds. The history keeps those points and
// numbers on: a point's seq is its record's seq plus the base of the stream it came
// from, and each follow begins a stream whose base is one past the newest point. So
// points stay in order, a seq names one point for good (checkpoint and promote-at
// files hold it), and the record and primary a point came from stay known.
//
// STATE/volumes/NAME/history.streams, JSON, written whole (atomic replace):
//   {"version":1,"streams":[{"base":0,"primary":"site-a","until":4990},{"base":5001,"primary":"site-b"}]}
// `until`: the point the replica stood at when it left that stream; its points after it
// were marked by a unit never applied (a failed attempt) and are not listed. Absent: one
// stream of base 0, its primary not written down (no follow yet). A history dropped after
// a failed write begins again with one stream whose base is past every seq it used, so a
// seq never names two points (a checkpoint's file holds it).
import type { Store } from '../store/store.js';
import { jsonVersion, refuseNewer } from '../versioning/format.js';
import { assert } from '../invariants/assert.js';

export const STREAMS_FILE = 'history.streams';
export const STREAMS_FORMAT = jsonVersion('history streams file', 1, [1]);

/** A stream of records the history saved points of: its points' seqs are `base` plus their record seqs. */
export interface HistoryStream {
  base: number;
  /** The node that was primary (null: not written down, the history's first stream before any follow). */
  primary: string | null;
  /** The point the replica stood at when it followed the next stream's primary (its later points are not listed); absent: the stream received now. */
  until?: number;
}

export class HistoryStreams {
  private constructor(private list: HistoryStream[]) {}

  /** One stream of base 0: a history that never followed a new primary. */
  static first(): HistoryStreams {
    return new HistoryStreams([{ base: 0, primary: null }]);
  }

  /** Those written down in `store`; null when the file is damaged (the points' numbering is lost with it). */
  static async read(store: Store): Promise<HistoryStreams | null> {
    if (!store.list().includes(STREAMS_FILE)) return HistoryStreams.first();
    const f = store.open(STREAMS_FILE);
    let b: Buffer;
    try {
      b = await f.read(0, Math.min(f.size(), 1 << 20));
    } finally {
      f.close();
    }
    refuseNewer(STREAMS_FORMAT, b, STREAMS_FILE);
    return HistoryStreams.decode(b);
  }

  /** Decodes the file's bytes; null when they are not a valid list (bases rising; each `until` within its stream, all but the last's). */
  static decode(b: Buffer): HistoryStreams | null {
    try {
      const j = JSON.parse(b.toString('utf8')) as { streams?: unknown };
      if (!Array.isArray(j.streams) || j.streams.length === 0) return null;
      const list: HistoryStream[] = [];
      const raw = j.streams as Array<{ base?: unknown; primary?: unknown; until?: unknown }>;
      for (let i = 0; i < raw.length; i++) {
        const s = raw[i]!;
        if (typeof s.base !== 'number' || !Number.isSafeInteger(s.base) || s.base < 0) return null;
        if (s.primary !== null && typeof s.primary !== 'string') return null;
        if (list.length > 0 && s.base <= list[list.length - 1]!.base) return null;
        const last = i === raw.length - 1;
        const next = raw[i + 1]?.base;
        if (s.until !== undefined && (last || typeof s.until !== 'number' || !Number.isSafeInteger(s.until) || s.until < s.base - 1 ||
          typeof next !== 'number' || s.until >= next)) return null;
        list.push({ base: s.base, primary: s.primary, ...(typeof s.until === 'number' ? { until: s.until } : {}) });
      }
      return new HistoryStreams(list);
    } catch {
      return null;
    }
  }

  encode(): Buffer {
    return Buffer.from(`${JSON.stringify({ version: STREAMS_FORMAT.writes, streams: this.list })}\n`);
  }

  /** The base of the stream the replica receives now: its records' seqs plus this are the history's. */
  get base(): number {
    return this.list[this.list.length - 1]!.base;
  }

  /** The stream point `seq` came from (the newest whose base is at or below it). */
  of(seq: number): HistoryStream {
    for (let i = this.list.length - 1; i > 0; i--) if (this.list[i]!.base <= seq) return this.list[i]!;
    return this.list[0]!;
  }

  /** Point `seq` was marked past where the replica stood when it left its stream (never listed). */
  unreached(seq: number): boolean {
    const s = this.of(seq);
    return s.until !== undefined && seq > s.until;
  }

  /**
   * The replica follows `next` now, standing at point `until` (null: none), its newest
   * marked point being `newest` (-1: none; a failed unit may have marked points past
   * `until`): a stream begins with a base past it. `previous`: the primary it followed
   * until now, written down for the stream before if that had none.
   */
  follow(newest: number, until: number | null, previous: string | null, next: string): HistoryStreams {
    const last = this.list[this.list.length - 1]!;
    const base = Math.max(last.base, newest + 1);
    assert(Number.isSafeInteger(base), () => `history: a stream base of ${base} is past what a seq can hold`);
    assert(until === null || until <= newest, () => `history: the follow stands at point ${until}, past the newest ${newest}`);
    // (Standing at a point of an earlier stream, or none: none of this stream's points was reached.)
    const stands = until === null || until < last.base ? last.base - 1 : until;
    const before: HistoryStream = { ...last, primary: last.primary ?? previous, ...(stands < newest ? { until: stands } : {}) };
    // (No point since the last follow: that stream held none, and the new one takes its place.)
    const list = base === last.base ? this.list.slice(0, -1) : [...this.list.slice(0, -1), before];
    return new HistoryStreams([...list, { base, primary: next }]);
  }

  /**
   * The history was dropped after a failed write: one stream, the one received now, its base
   * raised past `newest` (the newest seq it used) so that no seq names two points.
   */
  restartPast(newest: number): HistoryStreams {
    const last = this.list[this.list.length - 1]!;
    return new HistoryStreams([{ base: Math.max(last.base, newest + 1), primary: last.primary }]);
  }

  /** Writes them down, durably (replace: whole or not at all). */
  write(store: Store): Promise<void> {
    return store.replace(STREAMS_FILE, this.encode());
  }
}
