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
    const e: OperatorEvent = { time: Date.now(), level: name, msg: escapeControl(msg) };
    if (typeof fields.volume === 'string') e.volume = escapeControl(fields.volume);
    if (typeof fields.peer === 'string') e.peer = escapeControl(fields.peer);
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

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Control characters (C0, DEL, C1) and the bidirectional marks, written out as
 * `\n`, `\x1b`, `\u202e`. An event's text can carry what a caller sent (a URL's
 * path, a volume name in a refused call), and a terminal, the dashboard or a
 * script reading GET /api/v1/events must show it, never act on it: no escape
 * sequence reaches a terminal, no line is split in two, no text is shown reversed.
 */
export function escapeControl(s: string): string {
  return s.replace(CONTROL, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** The daemon's events (every logger createLogger makes records into it). */
export const operatorEvents = new EventLog();
