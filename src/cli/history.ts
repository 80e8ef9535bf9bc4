// `offsite history VOLUME`: the restore points of a secondary's history, for a person
// choosing a time for `checkpoint create --at` or `drill start --at` (docs/HISTORY.md).
import type { HistoryInfo } from '../contract/actions.js';
import { formatBytes, formatDuration } from '../units/units.js';

/** Lines printed at most: the oldest, the newest, and those between spread evenly. */
const MAX_LINES = 40;

/** The record a point is at, and whose journal it was once the replica has followed a new primary (docs/HISTORY.md). */
function recordOf(p: HistoryInfo['points'][number]): string {
  return `record ${p.record ?? p.seq}${p.primary !== undefined ? ` of ${p.primary}` : ''}`;
}

export function formatHistory(h: HistoryInfo, now = Date.now()): string {
  const limits = [h.keepSeconds === null ? null : `keep ${formatDuration(h.keepSeconds)}`, h.maxBytes === null ? null : `max ${formatBytes(h.maxBytes)}`]
    .filter((x) => x !== null).join(', ');
  const out = [`${h.volume}: ${h.points.length} restore points, ${formatBytes(h.bytes)} of history${limits ? ` (${limits})` : ''}` +
    (h.droppedForSize > 0 ? `; ${h.droppedForSize} dropped at its max since the start` : '')];
  if (h.points.length === 0) {
    out.push('  none yet: the first is the flush point the replica stands at when it next applies');
    return out.join('\n');
  }
  const oldest = h.points[0]!;
  out.push(`  reaches back to ${new Date(oldest.time).toISOString()} (${formatDuration((now - oldest.time) / 1000)} ago)`);
  const step = Math.max(1, Math.ceil(h.points.length / MAX_LINES));
  for (let i = 0; i < h.points.length; i += step) {
    const p = h.points[Math.min(i, h.points.length - 1)]!;
    out.push(`  ${new Date(p.time).toISOString()}  ${recordOf(p)}`);
  }
  const newest = h.points[h.points.length - 1]!;
  if ((h.points.length - 1) % step !== 0) out.push(`  ${new Date(newest.time).toISOString()}  ${recordOf(newest)}`);
  return out.join('\n');
}
