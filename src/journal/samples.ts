// Where the journal's backlog bytes and lag come from: a bounded set of samples of the
// record stream, one per 100 ms or 1 MiB, at most MAX_SAMPLES (thinned by half when
// full). Figures over-estimate by at most one step, and are exact when nothing is
// unreleased (docs/JOURNAL.md, "Figures").

/** Samples for lag and backlog: one per 100 ms or 1 MiB of journal, at most this many. */
const MAX_SAMPLES = 65536;

export interface Sample {
  seq: number;
  /** Journal stream position before this record. */
  pos: number;
  time: number;
}

export class Samples {
  private list: Sample[] = [];
  /** Stream position: bytes ever appended (the backlog is this less the position of the oldest unreleased record). */
  end = 0;

  /** A record of `size` bytes, appended at `time`. */
  add(seq: number, time: number, size: number): void {
    const last = this.list[this.list.length - 1];
    if (!last || time - last.time >= 100 || this.end - last.pos >= 1 << 20) {
      this.list.push({ seq, pos: this.end, time });
      if (this.list.length > MAX_SAMPLES) this.list = this.list.filter((_, i) => i % 2 === 0 || i === this.list.length - 1);
    }
    this.end += size;
  }

  /** The latest sample at or before `seq`: its time and position bound the record's from below. */
  covering(seq: number): Sample | undefined {
    let lo = 0;
    let hi = this.list.length - 1;
    let found: Sample | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.list[mid]!.seq <= seq) {
        found = this.list[mid];
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found ?? this.list[0];
  }

  /** Bytes from record `seq` to the stream's end (over-estimates by at most one step). */
  bytesFrom(seq: number): number {
    return this.end - (this.covering(seq)?.pos ?? 0);
  }

  /** Age at `now` of record `seq` (over-estimates by at most one step; 0 without samples). */
  ageOf(seq: number, now: number): number {
    const s = this.covering(seq);
    return s ? Math.max(0, now - s.time) : 0;
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  /** Forgets every sample (the stream position stays). */
  clear(): void {
    this.list = [];
  }

  /** Drops samples wholly behind the release point, keeping the one covering released + 1. */
  released(upTo: number): void {
    let keepFrom = 0;
    for (let i = 0; i < this.list.length; i++) if (this.list[i]!.seq <= upTo + 1) keepFrom = i;
    if (keepFrom > 0) this.list.splice(0, keepFrom);
  }
}
