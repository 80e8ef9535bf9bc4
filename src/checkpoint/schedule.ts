// Checkpoints on a schedule (volumes.NAME.checkpoints in the config): each entry is
// a cron expression (5 or 6 fields, the daemon's local time; croner parses it), how
// long the checkpoint is held, and its label. A state machine over a clock the caller
// passes in: due(now) says which entries fire, so tests drive it without waiting.
import { Cron } from 'croner';
import { MAX_HOLD_SECONDS } from '../limits/limits.js';

export interface ScheduledCheckpoint {
  cron: string;
  /** Seconds the checkpoint is held before it is released by itself (null: until released). */
  holdSeconds: number | null;
  label: string;
}

export class CheckpointSchedule {
  private readonly entries: Array<ScheduledCheckpoint & { job: Cron; next: number }>;

  /** Throws on an expression croner cannot parse (the config check reports it with its line). */
  constructor(entries: ScheduledCheckpoint[], now: number) {
    this.entries = entries.map((e) => {
      const job = new Cron(e.cron, { paused: true });
      return { ...e, job, next: nextAfter(job, now) };
    });
  }

  /** The entries whose time has come at `now` (each fires once per time, however late the call). */
  due(now: number): ScheduledCheckpoint[] {
    const out: ScheduledCheckpoint[] = [];
    for (const e of this.entries) {
      if (now < e.next) continue;
      out.push({ cron: e.cron, holdSeconds: e.holdSeconds, label: e.label });
      e.next = nextAfter(e.job, now);
    }
    return out;
  }

  /** When each entry fires next (ms since the epoch; Infinity: never). */
  get nextTimes(): Array<{ label: string; at: number }> {
    return this.entries.map((e) => ({ label: e.label, at: e.next }));
  }
}

function nextAfter(job: Cron, now: number): number {
  const d = job.nextRun(new Date(now));
  return d ? d.getTime() : Infinity;
}

/** Checks a cron expression; returns the parser's complaint, or null. */
export function cronError(expr: string): string | null {
  try {
    new Cron(expr, { paused: true });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Checks a checkpoint's hold in seconds (`--hold`, the API's `hold`, a schedule's
 * `hold`); returns what is wrong with it, or null. Checked before anything is held:
 * a checkpoint whose release time is not a date was held, persisted and then
 * unlisted, with no export.
 */
export function holdError(seconds: number): string | null {
  if (!Number.isFinite(seconds) || seconds <= 0) {
    return 'must be a positive duration such as 30m, 2h or 7d (give no hold to keep the checkpoint until it is released)';
  }
  if (seconds > MAX_HOLD_SECONDS) {
    return `must be at most 10 years (${MAX_HOLD_SECONDS / 86_400}d); give no hold to keep the checkpoint until it is released`;
  }
  return null;
}
