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
  private readonly listeners = new Set<(e: OperatorEvent) => void>();
  /** `limit`: events kept; `maxListeners`: subscribers at once (the dashboard's streams). */
  constructor(readonly limit = 1000, readonly maxListeners = 64) {}

  /**
   * Calls `fn` with every new event, synchronously, until the returned function is
   * called. Null when `maxListeners` already listen. `fn` must not block; a throw is ignored.
   */
  subscribe(fn: (e: OperatorEvent) => void): (() => void) | null {
    if (this.listeners.size >= this.maxListeners) return null;
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

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
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a listener's failure must not break the log call that fed it
      }
    }
  }

  /** The newest `n`, oldest first. */
  recent(n = 100): OperatorEvent[] {
    return this.ring.slice(-Math.max(0, Math.min(n, this.limit)));
  }
}

/** The daemon's events (every logger createLogger makes records into it). */
export const operatorEvents = new EventLog();
