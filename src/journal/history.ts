// Per-minute history of the host write rate and the journal fill, kept in the
// state dir as CSV (minute, host bytes, records, journal bytes used, capacity,
// backlog bytes, mode). The link-sizing planner reads the file; the API answers
// from the copy the daemon keeps in memory (HistoryRing), read from the file once
// at start and appended to with each minute: re-reading 30 days of CSV per request
// took 1.2 s of the event loop each, and four clients polling it raised NBD read
// latency from 7 ms to 1.6 s.
import fs from 'node:fs';

export const HISTORY_HEADER = 'minute,host_bytes,records,journal_used,journal_capacity,backlog_bytes,mode';
/** 30 days of minutes; the file is trimmed back to this when it grows past 1.25x. */
export const HISTORY_MINUTES = 30 * 24 * 60;

export interface HistorySource {
  hostBytes: number;
  records: number;
  used: number;
  capacity: number;
  backlog: number;
  mode: string;
}

export class History {
  private lastHostBytes: number | null = null;
  private lastRecords = 0;
  private lines = 0;
  /** The last HISTORY_MINUTES rows, as the file holds them. */
  readonly rows = new HistoryRing(HISTORY_MINUTES);

  constructor(private readonly file: string) {
    if (!fs.existsSync(file)) fs.writeFileSync(file, HISTORY_HEADER + '\n', { mode: 0o600 });
    const text = fs.readFileSync(file, 'utf8');
    this.lines = text.split('\n').length - 2;
    // A line cut short (a power loss during an append) is left out: its minute or its
    // figures do not parse. The next trim rewrites the file without it.
    for (const row of parseHistory(text)) if (wholeRow(row)) this.rows.push(row);
  }

  /**
   * The volume becomes primary (again): the next minute is a new baseline, since the
   * journal it counts from is a new one.
   */
  restart(): void {
    this.lastHostBytes = null;
    this.lastRecords = 0;
  }

  /** Appends one line for the minute ending at `now`. */
  record(now: number, s: HistorySource): void {
    if (this.lastHostBytes === null) {
      this.lastHostBytes = s.hostBytes;
      this.lastRecords = s.records;
      return;
    }
    const row: HistoryRow = {
      minute: new Date(Math.floor(now / 60000) * 60000).toISOString(),
      hostBytes: s.hostBytes - this.lastHostBytes, records: s.records - this.lastRecords,
      journalUsed: s.used, journalCapacity: s.capacity, backlogBytes: s.backlog, mode: s.mode,
    };
    this.lastHostBytes = s.hostBytes;
    this.lastRecords = s.records;
    // In memory first: the API answers what the daemon recorded even if the file cannot be written.
    this.rows.push(row);
    fs.appendFileSync(this.file, historyLine(row) + '\n');
    if (++this.lines > HISTORY_MINUTES * 1.25) this.trim();
  }

  /** Rewrites the file with the rows in memory (the last HISTORY_MINUTES), not by reading it again. */
  private trim(): void {
    const keep = this.rows.last(HISTORY_MINUTES).map(historyLine);
    fs.rmSync(this.file + '.tmp', { force: true }); // (a leftover would keep its mode)
    fs.writeFileSync(this.file + '.tmp', [HISTORY_HEADER, ...keep].join('\n') + '\n', { mode: 0o600 });
    fs.renameSync(this.file + '.tmp', this.file);
    this.lines = keep.length;
  }
}

export interface HistoryRow {
  minute: string;
  hostBytes: number;
  records: number;
  journalUsed: number;
  journalCapacity: number;
  backlogBytes: number;
  mode: string;
}

function wholeRow(r: HistoryRow): boolean {
  return Number.isFinite(Date.parse(r.minute)) && [r.hostBytes, r.records, r.journalUsed, r.journalCapacity, r.backlogBytes].every(Number.isFinite);
}

function historyLine(r: HistoryRow): string {
  return [r.minute, r.hostBytes, r.records, r.journalUsed, r.journalCapacity, r.backlogBytes, r.mode].join(',');
}

function parseHistory(text: string): HistoryRow[] {
  return text.trim().split('\n').slice(1).filter(Boolean).map((l) => {
    const [minute, hb, rec, used, cap, backlog, mode] = l.split(',');
    return {
      minute: minute!, hostBytes: Number(hb), records: Number(rec), journalUsed: Number(used),
      journalCapacity: Number(cap), backlogBytes: Number(backlog), mode: mode ?? 'journal',
    };
  });
}

export function readHistory(file: string): HistoryRow[] {
  if (!fs.existsSync(file)) return [];
  return parseHistory(fs.readFileSync(file, 'utf8'));
}

/** The modes a row names, stored as their index; others (an older or newer release's) are added as met. */
const KNOWN_MODES = ['journal', 'bitmap'];

/** Rows a ring allocates at first (a day of minutes); it doubles as rows come, up to its capacity. */
const FIRST_ROWS = 1440;

/**
 * History rows in a ring of typed arrays, one per column: 49 bytes a row, 2 MiB
 * for 30 days of minutes, where as many row objects take about 10 MiB and a
 * garbage collector's attention. The arrays grow with the rows held (doubling from a
 * day's worth), so a volume's history costs what it holds, not 30 days from its
 * first minute: 100 new volumes held 200 MiB of empty rings. Oldest rows are
 * overwritten past `capacity`. `appended` counts every push, so a reader can tell
 * its copy is current.
 */
export class HistoryRing {
  private minute: Float64Array;
  private hostBytes: Float64Array;
  private records: Float64Array;
  private used: Float64Array;
  private capacityBytes: Float64Array;
  private backlog: Float64Array;
  private mode: Uint8Array;
  private readonly modes = [...KNOWN_MODES];
  private start = 0;
  length = 0;
  appended = 0;

  constructor(readonly capacity: number) {
    const n = Math.min(capacity, FIRST_ROWS);
    this.minute = new Float64Array(n);
    this.hostBytes = new Float64Array(n);
    this.records = new Float64Array(n);
    this.used = new Float64Array(n);
    this.capacityBytes = new Float64Array(n);
    this.backlog = new Float64Array(n);
    this.mode = new Uint8Array(n);
  }

  /** Rows the arrays have room for now (at most `capacity`). */
  get allocated(): number {
    return this.minute.length;
  }

  /** Doubles the arrays (up to `capacity`); only before the ring wraps, so its rows start at 0. */
  private grow(): void {
    const n = Math.min(this.capacity, this.allocated * 2);
    const more = <T extends Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    const f64 = (k: number): Float64Array => new Float64Array(k);
    this.minute = more(this.minute, f64);
    this.hostBytes = more(this.hostBytes, f64);
    this.records = more(this.records, f64);
    this.used = more(this.used, f64);
    this.capacityBytes = more(this.capacityBytes, f64);
    this.backlog = more(this.backlog, f64);
    this.mode = more(this.mode, (k) => new Uint8Array(k));
  }

  push(r: HistoryRow): void {
    if (this.length === this.allocated && this.allocated < this.capacity) this.grow();
    const at = (this.start + this.length) % this.capacity;
    if (this.length === this.capacity) this.start = (this.start + 1) % this.capacity;
    else this.length++;
    this.minute[at] = Date.parse(r.minute);
    this.hostBytes[at] = r.hostBytes;
    this.records[at] = r.records;
    this.used[at] = r.journalUsed;
    this.capacityBytes[at] = r.journalCapacity;
    this.backlog[at] = r.backlogBytes;
    let m = this.modes.indexOf(r.mode);
    if (m < 0 && this.modes.length < 256) m = this.modes.push(r.mode) - 1;
    this.mode[at] = m < 0 ? 0 : m;
    this.appended++;
  }

  /** The newest `n` rows (all when fewer), oldest first. */
  last(n: number): HistoryRow[] {
    const count = Math.max(0, Math.min(n, this.length));
    const out: HistoryRow[] = new Array(count);
    for (let k = 0; k < count; k++) {
      const at = (this.start + this.length - count + k) % this.capacity;
      out[k] = {
        minute: new Date(this.minute[at]!).toISOString(),
        hostBytes: this.hostBytes[at]!, records: this.records[at]!, journalUsed: this.used[at]!,
        journalCapacity: this.capacityBytes[at]!, backlogBytes: this.backlog[at]!, mode: this.modes[this.mode[at]!]!,
      };
    }
    return out;
  }
}
