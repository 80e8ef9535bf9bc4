// Per-minute history of the host write rate and the journal fill, kept in the
// state dir as CSV (minute, host bytes, records, journal bytes used, capacity,
// backlog bytes, mode). The link-sizing planner and the dashboard read it.
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

  constructor(private readonly file: string) {
    if (!fs.existsSync(file)) fs.writeFileSync(file, HISTORY_HEADER + '\n');
    this.lines = fs.readFileSync(file, 'utf8').split('\n').length - 2;
  }

  /** Appends one line for the minute ending at `now`. */
  record(now: number, s: HistorySource): void {
    if (this.lastHostBytes === null) {
      this.lastHostBytes = s.hostBytes;
      this.lastRecords = s.records;
      return;
    }
    const minute = new Date(Math.floor(now / 60000) * 60000).toISOString();
    const line = [minute, s.hostBytes - this.lastHostBytes, s.records - this.lastRecords, s.used, s.capacity, s.backlog, s.mode].join(',');
    this.lastHostBytes = s.hostBytes;
    this.lastRecords = s.records;
    fs.appendFileSync(this.file, line + '\n');
    if (++this.lines > HISTORY_MINUTES * 1.25) this.trim();
  }

  private trim(): void {
    const rows = fs.readFileSync(this.file, 'utf8').trim().split('\n').slice(1);
    const keep = rows.slice(-HISTORY_MINUTES);
    fs.writeFileSync(this.file + '.tmp', [HISTORY_HEADER, ...keep].join('\n') + '\n');
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

export function readHistory(file: string): HistoryRow[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).filter(Boolean).map((l) => {
    const [minute, hb, rec, used, cap, backlog, mode] = l.split(',');
    return {
      minute: minute!, hostBytes: Number(hb), records: Number(rec), journalUsed: Number(used),
      journalCapacity: Number(cap), backlogBytes: Number(backlog), mode: mode ?? 'journal',
    };
  });
}
