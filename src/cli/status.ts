// `offsite status`: the node's volumes as a table (colour on a terminal) or JSON.
import { formatBytes, formatDuration } from '../units/units.js';
import type { NodeStatus, VolumeStatus } from '../contract/status.js';

const colour = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number, s: string): string => (colour ? `\x1b[${code}m${s}\x1b[0m` : s);

function linkCell(v: VolumeStatus): string {
  if (v.paused) return paint(33, `${v.link}, paused`);
  if (v.link === 'connected') return paint(32, v.link);
  if (v.link === 'none') return v.link;
  return paint(33, v.link);
}

export function formatStatus(s: NodeStatus): string {
  const rows = s.volumes.map((v) => [
    v.name, v.role, v.peer ?? '-', linkCell(v),
    v.tracking === 'bitmap' ? paint(31, 'bitmap') : v.tracking,
    v.tracking === 'none' ? '-' : formatBytes(v.backlogBytes),
    v.tracking === 'none' ? '-' : formatDuration(v.lagSeconds),
    v.consistent ? paint(32, 'yes') : paint(31, 'no'),
    v.journalCapacityBytes ? `${formatBytes(v.journalUsedBytes)} of ${formatBytes(v.journalCapacityBytes)}` : '-',
    wireCell(v),
    resyncCell(v),
    v.checkpoint ? paint(36, `"${v.checkpoint.label}" held`) : '-',
  ]);
  const head = ['VOLUME', 'ROLE', 'PEER', 'LINK', 'TRACKING', 'BACKLOG', 'LAG', 'CONSISTENT', 'JOURNAL', 'WIRE', 'RESYNC', 'CHECKPOINT'];
  // eslint-disable-next-line no-control-regex
  const width = (x: string): number => x.replace(/\x1b\[\d+m/g, '').length;
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => width(r[i]!))));
  const line = (cells: string[]): string => cells.map((c, i) => c + ' '.repeat(widths[i]! - width(c))).join('  ').trimEnd();
  return [`node ${s.node}, up ${formatDuration(s.uptimeSeconds)}`, line(head), ...rows.map(line)].join('\n');
}

/** "310 KiB/s x2.9, drains in 4 min 0 s": the link's send rate, record bytes per wire byte, the backlog's outlook. */
export function wireCell(v: VolumeStatus): string {
  const sh = v.shipping;
  if (!sh) return '-';
  const drain = v.backlogBytes === 0 ? '' : sh.drainSeconds === null ? `, ${paint(33, 'not draining')}` : `, drains in ${formatDuration(sh.drainSeconds)}`;
  return `${formatBytes(sh.wireRateBytesPerSecond)}/s x${sh.compressionRatio.toFixed(1)}${drain}`;
}

/** "[######....] 61% 40 MiB left, 12 MiB/s, 3s" on the primary; "receiving" on the secondary. */
export function resyncCell(v: VolumeStatus): string {
  if (!v.resyncing && v.verify?.state === 'running') return verifyCell(v);
  if (!v.resyncing) return '-';
  if (v.role !== 'primary') return v.consistent ? 'receiving (old image served)' : paint(33, 'receiving first sync');
  const total = Math.max(v.resyncTotalBytes, 1);
  const done = Math.min(1, Math.max(0, (v.resyncTotalBytes - v.resyncLeftBytes) / total));
  const bar = '#'.repeat(Math.round(done * 10)).padEnd(10, '.');
  const rate = v.resyncRateBytesPerSecond > 0 ? `, ${formatBytes(v.resyncRateBytesPerSecond)}/s, ${formatDuration(v.resyncEtaSeconds)} left` : '';
  return `[${bar}] ${Math.floor(done * 100)}% ${formatBytes(v.resyncLeftBytes)} to send${rate}`;
}

/** "verify [####......] 42% 2 differ, 120 MiB/s, 9s left" while an online verify runs. */
export function verifyCell(v: VolumeStatus): string {
  const r = v.verify!;
  const done = r.totalRegions > 0 ? r.checkedRegions / r.totalRegions : 1;
  const bar = '#'.repeat(Math.round(done * 10)).padEnd(10, '.');
  const differ = r.differingRegions.length > 0 ? paint(31, `${r.differingRegions.length} differ`) : '0 differ';
  return `verify [${bar}] ${Math.floor(done * 100)}% ${differ}, ${formatBytes(r.rateBytesPerSecond)}/s, ${formatDuration(r.etaSeconds)} left`;
}
