// The `compression:` setting of a peer link: auto (the level follows the link and
// the CPU), off, or zstd:N (a fixed level).

export type Compression = { mode: 'off' } | { mode: 'auto' } | { mode: 'fixed'; level: number };

/** Levels `auto` moves between: past 12 zstd spends many times the CPU for a few percent. */
/** zstd's fastest level compresses several hundred MB/s per core: more than a WAN link carries. */
export const AUTO_MIN_LEVEL = 1;
export const AUTO_MAX_LEVEL = 12;
export const AUTO_START_LEVEL = 3;

export function parseCompression(v: string): Compression {
  const s = v.trim().toLowerCase();
  if (s === 'auto') return { mode: 'auto' };
  if (s === 'off' || s === 'none') return { mode: 'off' };
  const m = /^zstd(?::(\d{1,2}))?$/.exec(s);
  if (m) {
    const level = m[1] === undefined ? AUTO_START_LEVEL : Number(m[1]);
    if (level < 1 || level > 19) throw new Error(`zstd level ${level} is out of range: use 1 to 19 (3 is zstd's default; above 12 is rarely worth its CPU)`);
    return { mode: 'fixed', level };
  }
  throw new Error(`"${v}" is not a compression setting: use auto, off or zstd:N (N from 1 to 19)`);
}

export function formatCompression(c: Compression): string {
  return c.mode === 'fixed' ? `zstd:${c.level}` : c.mode;
}
