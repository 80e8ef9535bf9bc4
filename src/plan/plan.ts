// Link sizing (offsite plan): given what the host wrote per interval, the link rate
// that keeps the RPO (the age of the oldest change not yet at the peer) under a target,
// beside the peak and average write rates. The link is modelled as a FIFO queue
// draining at a constant rate, the writes of an interval spread evenly over it.

export interface Interval {
  /** Seconds since the trace began, at the interval's end. */
  end: number;
  /** Seconds the interval lasts. */
  seconds: number;
  /** Bytes the host wrote in it. */
  bytes: number;
}

export interface Plan {
  seconds: number;
  totalBytes: number;
  averageBytesPerSecond: number;
  /** The busiest interval's rate. */
  peakBytesPerSecond: number;
  /** The lowest rate whose worst lag stays within the RPO. */
  neededBytesPerSecond: number;
  /** The worst lag at that rate, and when (seconds into the trace). */
  worstLagSeconds: number;
  worstLagAt: number;
}

/** The worst lag (seconds) and when, for a link of `rate` bytes per second. */
export function worstLag(intervals: Interval[], rate: number): { lag: number; at: number } {
  let backlog = 0;
  let worst = { lag: 0, at: 0 };
  for (const iv of intervals) {
    // The backlog moves linearly within an interval: its largest value is at an end.
    backlog = Math.max(0, backlog + iv.bytes - rate * iv.seconds);
    const lag = backlog / rate;
    if (lag > worst.lag) worst = { lag, at: iv.end };
  }
  return worst;
}

export function planLink(intervals: Interval[], rpoSeconds: number): Plan {
  const seconds = intervals.reduce((n, i) => n + i.seconds, 0);
  const totalBytes = intervals.reduce((n, i) => n + i.bytes, 0);
  const peak = intervals.reduce((m, i) => Math.max(m, i.seconds > 0 ? i.bytes / i.seconds : 0), 0);
  const average = seconds > 0 ? totalBytes / seconds : 0;
  if (totalBytes === 0) {
    return { seconds, totalBytes, averageBytesPerSecond: 0, peakBytesPerSecond: 0, neededBytesPerSecond: 0, worstLagSeconds: 0, worstLagAt: 0 };
  }
  // Below the average the backlog grows without end (a finite trace would hide it):
  // the answer is at least the average. The lag only falls as the rate rises: bisect
  // between the average and the peak.
  if (worstLag(intervals, average).lag <= rpoSeconds) {
    const w = worstLag(intervals, average);
    return {
      seconds, totalBytes, averageBytesPerSecond: average, peakBytesPerSecond: peak, neededBytesPerSecond: average,
      worstLagSeconds: w.lag, worstLagAt: w.at,
    };
  }
  let lo = average;
  let hi = Math.max(peak, average) * 1.0001 + 1;
  for (let k = 0; k < 100 && hi - lo > Math.max(1e-6, hi * 1e-6); k++) {
    const mid = (lo + hi) / 2;
    if (worstLag(intervals, mid).lag <= rpoSeconds) hi = mid;
    else lo = mid;
  }
  const w = worstLag(intervals, hi);
  return { seconds, totalBytes, averageBytesPerSecond: average, peakBytesPerSecond: peak, neededBytesPerSecond: hi, worstLagSeconds: w.lag, worstLagAt: w.at };
}

/**
 * A CSV trace: lines of `time,bytes` (time in seconds, or an ISO date; bytes the host
 * wrote since the previous line). A header line and blank lines are skipped. Throws
 * naming the line when one cannot be read.
 */
export function parseTrace(text: string, name: string): Interval[] {
  const out: Interval[] = [];
  let first: number | null = null;
  let prev: number | null = null;
  let seen = false;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [t = '', b = ''] = line.split(',').map((x) => x.trim());
    const time = /^\d+(\.\d+)?$/.test(t) ? Number(t) : Date.parse(t) / 1000;
    const bytes = Number(b);
    if (!seen && (!Number.isFinite(time) || b === '' || Number.isNaN(bytes))) {
      seen = true; // a header line
      return;
    }
    seen = true;
    if (!Number.isFinite(time) || b === '' || !Number.isFinite(bytes) || bytes < 0) {
      throw new Error(`${name}:${i + 1}: "${line}" is not time,bytes (seconds or an ISO time, then bytes written since the line before)`);
    }
    if (prev !== null && time <= prev) throw new Error(`${name}:${i + 1}: time ${t} does not come after the line before`);
    if (first === null) {
      // The first line marks the start (its bytes, if any, count in the first interval).
      first = prev = time;
      if (bytes > 0) out.push({ end: 0, seconds: 0, bytes });
      return;
    }
    out.push({ end: time - first, seconds: time - prev!, bytes });
    prev = time;
  });
  if (out.filter((x) => x.seconds > 0).length === 0) throw new Error(`${name}: no intervals (at least two lines of time,bytes)`);
  return out;
}

/** The per-minute history the daemon keeps (state/volumes/NAME/history.csv) as intervals. */
export function historyIntervals(rows: Array<{ minute: string; hostBytes: number }>): Interval[] {
  if (rows.length === 0) return [];
  const start = Date.parse(rows[0]!.minute) / 1000 - 60;
  return rows.map((r) => ({ end: Date.parse(r.minute) / 1000 - start, seconds: 60, bytes: r.hostBytes }));
}
