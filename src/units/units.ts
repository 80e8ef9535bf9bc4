// Sizes and durations as operators write them ("1GiB", "64 KiB", "90s", "2h").

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
  p: 1024 ** 5, pb: 1000 ** 5, pib: 1024 ** 5,
};

/** Parses "1GiB", "512M", "4096" to bytes; throws a readable message when it cannot. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw new Error(`${input} is not a whole number of bytes`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new Error(`"${input}" is not a size; write it like 1GiB, 512MiB, 64KiB or a number of bytes`);
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new Error(`"${input}" is not a whole number of bytes or is too large`);
  return bytes;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86400,
};

/** Parses "500ms", "30s", "5m", "2h", "1d" (or a number of seconds) to seconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') return input;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = m ? DURATION_UNITS[(m[2] || 's').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`"${input}" is not a duration; write it like 30s, 5m, 2h`);
  return Number(m[1]) * unit;
}

/**
 * A moment as an operator writes it (history: `--at`): ISO 8601 ("2026-12-03T10:14:00Z",
 * a date and time without a zone is the daemon's local time), "15m ago", "now", or a
 * number of milliseconds since the Unix epoch. Milliseconds since the epoch.
 */
export function parseMoment(input: string | number, now = Date.now()): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new Error(`${input} is not a time`);
    return input;
  }
  const text = input.trim();
  if (text === 'now') return now;
  if (/^\d{10,16}$/.test(text)) return Number(text); // milliseconds since the epoch, as a command line gives them
  const ago = /^(.+?)\s+ago$/.exec(text);
  if (ago) return now - parseDuration(ago[1]!) * 1000;
  // ISO 8601 only (Date.parse takes much else, differently per engine).
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
    throw new Error(`"${input}" is not a time; write it like 2026-12-03T10:14:00Z, "15m ago" or now`);
  }
  const t = Date.parse(text.replace(' ', 'T'));
  if (Number.isNaN(t)) throw new Error(`"${input}" is not a time`);
  return t;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** "3 h 12 min", "45 s": how long, for a person. */
export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
