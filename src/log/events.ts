// The recent operator events (log lines at info and above), kept in memory for the
// API and the dashboard: a ring of the last 1000, oldest dropped first.

export interface OperatorEvent {
  time: number;
  level: 'info' | 'warn' | 'error' | 'fatal';
  msg: string;
  volume?: string;
  peer?: string;
}

const LEVELS: Record<number, OperatorEvent['level']> = { 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export class EventLog {
  private readonly ring: OperatorEvent[] = [];
  constructor(readonly limit = 1000) {}

  /** A pino log call's arguments: (msg) or (fields, msg). */
  record(level: number, args: unknown[]): void {
    const name = LEVELS[level];
    if (!name) return;
    const fields = typeof args[0] === 'object' && args[0] !== null ? (args[0] as Record<string, unknown>) : {};
    const msg = typeof args[0] === 'string' ? args[0] : typeof args[1] === 'string' ? args[1] : '';
    const e: OperatorEvent = { time: Date.now(), level: name, msg };
    if (typeof fields.volume === 'string') e.volume = fields.volume;
    if (typeof fields.peer === 'string') e.peer = fields.peer;
    this.ring.push(e);
    if (this.ring.length > this.limit) this.ring.shift();
  }

  /** The newest `n`, oldest first. */
  recent(n = 100): OperatorEvent[] {
    return this.ring.slice(-Math.max(0, Math.min(n, this.limit)));
  }
}

/** The daemon's events (every logger createLogger makes records into it). */
export const operatorEvents = new EventLog();
