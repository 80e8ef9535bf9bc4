// `offsite status`: the node's volumes as a table (colour on a terminal) or JSON.
import { formatBytes, formatDuration } from '../units/units.js';
import type { NodeStatus, VolumeStatus } from '../contract/status.js';

const colour = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number, s: string): string => (colour ? `\x1b[${code}m${s}\x1b[0m` : s);

/** The peers that could not open the volume (their Hello said so): nothing of it flows to them. */
function peersWithout(v: VolumeStatus): string[] {
  return (v.peers ?? []).filter((p) => p.unavailable).map((p) => p.name);
}

/** The peers whose link is up but does not carry the volume: its roles conflict there (a split brain, two primaries, ...). */
function peersInConflict(v: VolumeStatus): string[] {
  return (v.peers ?? []).filter((p) => p.conflict).map((p) => p.name);
}

function linkCell(v: VolumeStatus): string {
  const conflicted = peersInConflict(v);
  if (conflicted.length > 0) return paint(31, `${v.link}, not paired: ${(v.peers ?? []).filter((p) => p.conflict).map((p) => p.conflict!.code).join(',')}`);
  const without = peersWithout(v);
  if (without.length > 0) return paint(31, `${v.link}, not open on ${without.join(',')}`);
  if (v.paused) return paint(33, `${v.link}, paused`);
  if (v.link === 'connected') return paint(32, v.link);
  if (v.link === 'none') return v.link;
  return paint(33, v.link);
}

/** Which volumes `offsite status` shows, and in what order. */
export interface StatusView {
  /** Names or shell-style patterns ("erp*"); empty: every volume. */
  names: string[];
  /** Only volumes needing attention: lag above this many seconds, link down, inconsistent, resyncing or on the bitmap. */
  laggingOver: number | null;
  sort: 'name' | 'lag' | 'backlog';
}

export const ALL_VOLUMES: StatusView = { names: [], laggingOver: null, sort: 'name' };

/**
 * A volume needs the operator's eye: behind by more than `lagOver` seconds, not linked,
 * not consistent, resyncing or tracking by bitmap; with several peers, any of them
 * behind, not linked or detached into a bitmap of its own (docs/PEERS.md).
 */
export function isLagging(v: VolumeStatus, lagOver: number): boolean {
  const linked = v.link === 'connected' || v.link === 'none';
  const peerBehind = (v.peers ?? []).some((p) => p.link !== 'connected' || p.lagSeconds > lagOver || p.detached || Boolean(p.unavailable) ||
    Boolean(p.conflict));
  return v.lagSeconds > lagOver || !linked || v.paused || !v.consistent || v.resyncing || v.tracking === 'bitmap' || peerBehind;
}

function pattern(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

/** The volumes of a view: filtered by name and attention, sorted (worst first for lag and backlog). */
export function selectVolumes(s: NodeStatus, view: StatusView): VolumeStatus[] {
  const pats = view.names.map(pattern);
  const out = s.volumes.filter((v) => (pats.length === 0 || pats.some((p) => p.test(v.name))) && (view.laggingOver === null || isLagging(v, view.laggingOver)));
  const by = view.sort === 'lag' ? (a: VolumeStatus, b: VolumeStatus) => b.lagSeconds - a.lagSeconds || b.backlogBytes - a.backlogBytes
    : view.sort === 'backlog' ? (a: VolumeStatus, b: VolumeStatus) => b.backlogBytes - a.backlogBytes || b.lagSeconds - a.lagSeconds
      : null;
  return by ? out.sort((a, b) => by(a, b) || a.name.localeCompare(b.name)) : out;
}

/** "100 volumes (98 primary, 2 secondary): 3 need attention, 1 link down, 1 resyncing; worst lag erp7 4 min 10 s". */
export function summaryLine(s: NodeStatus): string {
  const vs = s.volumes;
  const primaries = vs.filter((v) => v.role === 'primary').length;
  const parts: string[] = [];
  const count = (n: number, what: string): void => { if (n > 0) parts.push(`${n} ${what}`); };
  count(s.unavailable?.length ?? 0, 'not open here');
  count(vs.filter((v) => peersWithout(v).length > 0).length, 'not open on a peer');
  count(vs.filter((v) => peersInConflict(v).length > 0).length, 'not paired (a conflict)');
  count(vs.filter((v) => v.link !== 'connected' && v.link !== 'none').length, 'link down');
  count(vs.filter((v) => v.paused).length, 'paused');
  count(vs.filter((v) => !v.consistent).length, 'inconsistent');
  count(vs.filter((v) => v.resyncing).length, 'resyncing');
  count(vs.filter((v) => v.tracking === 'bitmap').length, 'on the bitmap');
  count(vs.filter((v) => v.checkpoint !== null).length, 'checkpoint held');
  const sessions = vs.reduce((n, v) => n + (v.iscsi?.sessions.length ?? 0), 0);
  count(sessions, sessions === 1 ? 'iSCSI session' : 'iSCSI sessions');
  const worst = vs.reduce<VolumeStatus | null>((w, v) => (v.lagSeconds > (w?.lagSeconds ?? 0) ? v : w), null);
  const backlog = vs.reduce((n, v) => n + (v.tracking === 'none' ? 0 : v.backlogBytes), 0);
  const tail = [
    backlog > 0 ? `backlog ${formatBytes(backlog)} in all` : '',
    worst ? `worst lag ${worst.name} ${formatDuration(worst.lagSeconds)}` : '',
  ].filter(Boolean);
  return `${vs.length} volume${vs.length === 1 ? '' : 's'} (${primaries} primary, ${vs.length - primaries} secondary)` +
    `${parts.length ? `: ${parts.join(', ')}` : ''}${tail.length ? `; ${tail.join('; ')}` : ''}`;
}

function iscsiCell(v: VolumeStatus): string {
  if (!v.iscsi) return '-';
  const n = v.iscsi.sessions.length + v.iscsi.exports.reduce((k, x) => k + x.sessions.length, 0);
  return n === 0 ? 'no session' : `${n} session${n === 1 ? '' : 's'}`;
}

export function formatStatus(s: NodeStatus, view: StatusView = ALL_VOLUMES): string {
  const shown = selectVolumes(s, view);
  const rows = shown.map((v) => [
    v.name, v.role, formatBytes(v.sizeBytes), severalPeers(v) ? v.peers.map((p) => p.name).join(',') : v.peer ?? '-', linkCell(v),
    v.tracking === 'bitmap' ? paint(31, 'bitmap') : v.tracking,
    v.tracking === 'none' ? '-' : formatBytes(v.backlogBytes),
    v.tracking === 'none' ? '-' : formatDuration(v.lagSeconds),
    v.consistent ? paint(32, 'yes') : paint(31, 'no'),
    v.journalCapacityBytes ? `${formatBytes(v.journalUsedBytes)} of ${formatBytes(v.journalCapacityBytes)}` : '-',
    wireCell(v),
    resyncCell(v),
    v.checkpoint ? paint(36, `"${v.checkpoint.label}" held`) : '-',
    iscsiCell(v),
  ]);
  const head = ['VOLUME', 'ROLE', 'SIZE', 'PEER', 'LINK', 'TRACKING', 'BACKLOG', 'LAG', 'CONSISTENT', 'JOURNAL', 'WIRE', 'RESYNC', 'CHECKPOINT', 'ISCSI'];
  const iscsiOff = s.volumes.every((v) => v.iscsi === null);
  if (iscsiOff) {
    head.pop();
    for (const r of rows) r.pop();
  }
  // eslint-disable-next-line no-control-regex
  const width = (x: string): number => x.replace(/\x1b\[\d+m/g, '').length;
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => width(r[i]!))));
  const line = (cells: string[]): string => cells.map((c, i) => c + ' '.repeat(widths[i]! - width(c))).join('  ').trimEnd();
  const hidden = s.volumes.length - shown.length;
  const foot = hidden > 0 ? [`(${hidden} more not shown${view.laggingOver !== null ? ': nothing needs attention there' : ''})`] : [];
  // A volume with several secondaries: a line under its row for each (docs/PEERS.md).
  const body = shown.length > 0 ? [line(head), ...rows.flatMap((r, i) => [line(r), ...peerLines(shown[i]!)])]
    : [view.laggingOver !== null ? 'no volume needs attention' : 'no volume matches'];
  return [`node ${s.node}, up ${formatDuration(s.uptimeSeconds)}; ${summaryLine(s)}`, ...body, ...foot, ...groupLines(s), ...unavailableLines(s)]
    .join('\n');
}

function severalPeers(v: VolumeStatus): boolean {
  return (v.peers ?? []).length > 1;
}

/** "  to site-c: disconnected, detached (its own bitmap), backlog 12 MiB, lag 3 min 2 s": each secondary of a primary with several. */
export function peerLines(v: VolumeStatus): string[] {
  if (!severalPeers(v)) return [];
  return v.peers.map((p) => {
    const link = p.link === 'connected' ? paint(32, p.link) : paint(33, p.link);
    const state = [
      p.detached ? paint(33, 'detached (its own bitmap)') : '',
      p.resyncing ? 'resyncing' : '',
      p.paused ? 'paused' : '',
      p.firstSyncWaitsFor ? paint(33, `first sync waits for the round of ${p.firstSyncWaitsFor}`) : '',
    ].filter(Boolean);
    const where = `backlog ${formatBytes(p.backlogBytes)}, lag ${formatDuration(p.lagSeconds)}, acked record ${p.ackedSeq}`;
    return `  to ${p.name}: ${[link, ...state].join(', ')}; ${where}`;
  });
}

/**
 * One line per volume this node could not open, with why (src/node/set-aside.ts), one per
 * volume a peer could not, and one per volume its link does not carry for a conflict.
 */
export function unavailableLines(s: NodeStatus): string[] {
  const here = (s.unavailable ?? []).map((u) => u.reopening
    ? paint(33, `volume ${u.name} REOPENING: `) + `${u.error} (not served for ${formatDuration(u.forSeconds)}; served again once it opens)`
    : paint(31, `volume ${u.name} NOT SERVED: `) +
      `${u.opening ? 'opening again now; ' : ''}it did not open ${formatDuration(u.forSeconds)} ago` +
      `${u.attempts > 1 ? ` (${u.attempts} tries)` : ''}: ${u.error}; put that right and run \`offsite reload\``);
  const there = s.volumes.flatMap((v) => (v.peers ?? []).filter((p) => p.unavailable).map((p) =>
    paint(31, `volume ${v.name} NOT OPEN ON ${p.name}: `) + `${p.unavailable}; nothing of it flows until ${p.name} opens it (a reload there tries again)`));
  const conflicts = s.volumes.flatMap((v) => (v.peers ?? []).filter((p) => p.conflict).map((p) =>
    paint(31, `volume ${v.name} NOT PAIRED WITH ${p.name} (${p.conflict!.code}): `) + p.conflict!.message));
  return [...here, ...there, ...conflicts];
}

/** One line per consistency group (docs/GROUPS.md): its members, whether they come from one moment, its group point and lag. */
export function groupLines(s: NodeStatus): string[] {
  return (s.groups ?? []).map((g) => {
    const point = g.groupPoint === null ? 'no group point yet' : `group point ${g.groupPoint}${g.together ? ' (every member there)' : ''}`;
    const state = g.consistent ? paint(32, 'consistent') : paint(31, `not consistent: ${g.reason ?? ''}`);
    return `group ${g.name} (${g.members.join(', ')}), ${g.role}: ${state}; ${point}; lag ${formatDuration(g.lagSeconds)}`;
  });
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
  // No round open yet: one about to begin, or a peer that starts again from its last flush point (docs/PEERS.md).
  if (v.resyncTotalBytes === 0) return paint(33, 'pending: to be compared by hash');
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
