// The operator's log: one line per event, in words. JSON (pino) for machines,
// or plain "time level message" lines when stderr is a terminal or OFFSITE_LOG=text.
import { pino, type Logger } from 'pino';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import { escapeControl, operatorEvents } from './events.js';

export type { Logger };

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export function createLogger(opts: { level?: string; format?: 'json' | 'text'; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = opts.level ?? process.env.OFFSITE_LOG_LEVEL ?? 'info';
  const dest = opts.destination ?? process.stderr;
  const format = opts.format ?? (process.env.OFFSITE_LOG === 'json' ? 'json'
    : process.env.OFFSITE_LOG === 'text' || (dest as NodeJS.WriteStream).isTTY ? 'text' : 'json');
  // Synchronous writes to fd 2: log lines are few, and none is lost when the process exits.
  const sink: { write(s: string): unknown } = opts.destination ?? {
    write: (s: string) => {
      try {
        fs.writeSync(2, s);
      } catch {
        // stderr gone (EPIPE): nowhere left to report to
      }
    },
  };
  // Info and above also go to the recent-events ring (GET /api/v1/events, the dashboard).
  const hooks = {
    logMethod(this: Logger, args: Parameters<pino.LogFn>, method: pino.LogFn, lv: number): void {
      operatorEvents.record(lv, args as unknown[]);
      method.apply(this, args);
    },
  };
  if (format === 'json') return pino({ level, base: undefined, hooks }, sink as pino.DestinationStream);
  const text = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        try {
          const o = JSON.parse(line) as Record<string, unknown>;
          const { time, level: lv, msg, ...rest } = o;
          const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
          sink.write(`${new Date(Number(time)).toISOString()} ${LEVEL_NAMES[Number(lv)] ?? lv} ${escapeControl(String(msg ?? ''))}${extra}\n`);
        } catch {
          sink.write(line + '\n');
        }
      }
      done();
    },
  });
  return pino({ level, base: undefined, hooks }, text);
}

/** A logger that drops everything, for unit tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
