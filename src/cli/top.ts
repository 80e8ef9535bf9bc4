// `offsite top`: the front panel. A full-screen view of the node that refreshes
// every interval: per volume its role, link, backlog, lag, consistency, the host's
// write rate beside the link's send rate, and sync, verify and checkpoint state.
// q or Ctrl-C leaves it (the terminal is restored).
import type { ClientConfig } from '../config/client.js';
import { formatBytes, formatDuration } from '../units/units.js';
import { formatRate } from '../rate/rate.js';
import type { NodeStatus, VolumeStatus } from '../contract/status.js';
import { groupLines, isLagging, resyncCell, summaryLine, unavailableLines } from './status.js';
import { fetchStatus } from './api-client.js';

interface Sample { at: number; host: number; wire: number }

/** Worst first: needing attention, then by lag, then by backlog. */
function worstFirst(vs: readonly VolumeStatus[]): VolumeStatus[] {
  const attention = (v: VolumeStatus): number => (isLagging(v, 60) ? 1 : 0);
  return [...vs].sort((a, b) => attention(b) - attention(a) || b.lagSeconds - a.lagSeconds || b.backlogBytes - a.backlogBytes || a.name.localeCompare(b.name));
}

/**
 * The screen. When every volume's panel fits in `rows`, each volume gets its panel; at
 * more volumes (a fleet) the selected one gets its panel and every volume a line of a
 * compact list, worst first. `selected` is a volume name (null: the worst).
 */
export function renderTop(s: NodeStatus, prev: Map<string, Sample>, now: number, width: number, rows = Infinity, selected: string | null = null): string[] {
  const lines: string[] = [];
  lines.push(`offsite top: node ${s.node}   up ${formatDuration(s.uptimeSeconds)}   ${new Date(now).toISOString().slice(0, 19).replace('T', ' ')}   ` +
    `(q quits${s.volumes.length > 1 ? ', j/k or arrows select' : ''})`);
  lines.push(summaryLine(s));
  // Consistency groups (docs/GROUPS.md): one line each, above the volumes.
  lines.push(...groupLines(s));
  // Volumes not opened here or on a peer, with why (docs/API.md, "A volume that does not open").
  lines.push(...unavailableLines(s));
  lines.push('');
  const rates = new Map<string, { host: number; wire: number }>();
  for (const v of s.volumes) {
    const p = prev.get(v.name);
    const secs = p ? Math.max(0.001, (now - p.at) / 1000) : 0;
    rates.set(v.name, { host: p ? Math.max(0, v.hostBytes - p.host) / secs : 0, wire: p ? Math.max(0, v.wireBytes - p.wire) / secs : 0 });
    prev.set(v.name, { at: now, host: v.hostBytes, wire: v.wireBytes });
  }
  const panels = s.volumes.map((v) => volumeLines(v, rates.get(v.name)!.host, rates.get(v.name)!.wire));
  const full = panels.reduce((n, p) => n + p.length + 1, lines.length);
  if (full <= rows) {
    for (const p of panels) lines.push(...p, '');
  } else {
    const order = worstFirst(s.volumes);
    const pick = order.find((v) => v.name === selected) ?? order[0]!;
    lines.push(...volumeLines(pick, rates.get(pick.name)!.host, rates.get(pick.name)!.wire), '');
    lines.push(`  ${'VOLUME'.padEnd(20)} ${'ROLE'.padEnd(9)} ${'LINK'.padEnd(13)} ${'BACKLOG'.padStart(10)} ${'LAG'.padStart(12)} ` +
      `${'HOST'.padStart(11)} ${'LINK SENDS'.padStart(11)}  STATE`);
    const room = Math.max(1, rows - lines.length - 1);
    for (const v of order.slice(0, room)) {
      const r = rates.get(v.name)!;
      const state = [
        v.consistent ? '' : 'NOT consistent',
        v.resyncing ? 'resyncing' : '',
        v.tracking === 'bitmap' ? 'BITMAP' : '',
        v.paused ? 'PAUSED' : '',
        v.checkpoint ? 'checkpoint' : '',
      ].filter(Boolean).join(', ');
      lines.push(`${v.name === pick.name ? '>' : ' '} ${v.name.slice(0, 20).padEnd(20)} ${v.role.padEnd(9)} ${v.link.slice(0, 13).padEnd(13)} ` +
        `${formatBytes(v.backlogBytes).padStart(10)} ${formatDuration(v.lagSeconds).padStart(12)} ` +
        `${formatRate(r.host).padStart(11)} ${formatRate(r.wire).padStart(11)}  ${state}`);
    }
    if (order.length > room) lines.push(`  … ${order.length - room} more (offsite status --sort lag lists them all)`);
  }
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l));
}

/** The volume after (or before) `current` in the worst-first order, for the selection keys. */
export function nextSelection(s: NodeStatus, current: string | null, step: 1 | -1): string | null {
  const order = worstFirst(s.volumes);
  if (order.length === 0) return null;
  const i = Math.max(0, order.findIndex((v) => v.name === current));
  return order[(i + step + order.length) % order.length]!.name;
}

function volumeLines(v: VolumeStatus, hostRate: number, wireRate: number): string[] {
  const state = [v.role, v.paused ? 'PAUSED' : null, v.tracking === 'bitmap' ? 'BITMAP (journal overflowed)' : null,
    v.consistent ? 'consistent' : 'NOT consistent'].filter(Boolean).join(', ');
  const out = [
    `${v.name}  ${formatBytes(v.sizeBytes)}  ${state}`,
    `  link ${v.link}${v.peer ? ` to ${v.peer}` : ''}${v.linkRateBytesPerSecond ? ` (cap ${formatRate(v.linkRateBytesPerSecond)})` : ''}`,
    `  backlog ${formatBytes(v.backlogBytes)} (${v.backlogRecords} records)   lag ${formatDuration(v.lagSeconds)}   journal ` +
      `${formatBytes(v.journalUsedBytes)} of ${formatBytes(v.journalCapacityBytes)}`,
    `  host writes ${formatRate(hostRate)}   link sends ${formatRate(wireRate)}`,
  ];
  const sync = resyncCell(v);
  if (sync !== '-') out.push(`  sync ${sync}`);
  if (v.verify && v.verify.state !== 'running') out.push(`  last verify: ${v.verify.state}: ${v.verify.message}`);
  if (v.checkpoint) {
    const of = v.checkpoint.point ? ` of the point at ${new Date(v.checkpoint.point.time).toISOString().slice(0, 19)}` : '';
    const since = new Date(v.checkpoint.createdAt).toISOString().slice(0, 19);
    out.push(`  checkpoint "${v.checkpoint.label}"${of} held since ${since} (export ${v.checkpoint.export})`);
  }
  if (v.history) {
    const h = v.history;
    out.push(`  history ${h.points} points` + (h.oldest ? ` back to ${new Date(h.oldest.time).toISOString().slice(0, 19)}` : '') +
      `, ${formatBytes(h.bytes)}${h.maxBytes !== null ? ` of ${formatBytes(h.maxBytes)}` : ''}` +
      (h.droppedForSize > 0 ? `, ${h.droppedForSize} dropped at its max` : ''));
  }
  if (v.drill) out.push(`  drill running: export ${v.drill.export}, ${formatBytes(v.drill.bytesWritten)} written`);
  if (v.iscsi) {
    const who = v.iscsi.sessions.map((x) => `${x.initiator} from ${x.address}`);
    out.push(`  iSCSI ${v.iscsi.target}: ${who.length === 0 ? 'no session' : who.join(', ')}`);
    for (const x of v.iscsi.exports) {
      out.push(`  iSCSI ${x.target} (${x.export}): ` +
        `${x.sessions.length === 0 ? 'no session' : x.sessions.map((y) => `${y.initiator} from ${y.address}`).join(', ')}`);
    }
  }
  return out;
}

export async function runTop(c: ClientConfig, intervalMs: number): Promise<void> {
  const out = process.stdout;
  const prev = new Map<string, Sample>();
  let stop = false;
  let last: NodeStatus | null = null;
  let selected: string | null = null;
  let redraw: (() => void) | null = null;
  const leave = (): void => {
    stop = true;
    out.write('\x1b[?25h\x1b[?1049l');
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.pause();
  };
  out.write('\x1b[?1049h\x1b[?25l');
  if (process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (b: Buffer) => {
      if (b.includes(0x71) || b.includes(0x03)) leave(); // q or Ctrl-C
      const key = b.toString('latin1');
      const step = key === 'j' || key === '\x1b[B' ? 1 : key === 'k' || key === '\x1b[A' ? -1 : 0;
      if (step !== 0 && last) {
        selected = nextSelection(last, selected ?? worstFirst(last.volumes)[0]?.name ?? null, step);
        redraw?.();
      }
    });
  }
  process.on('SIGTERM', leave);
  try {
    while (!stop) {
      let lines: string[];
      const before = new Map(prev);
      const at = Date.now();
      try {
        last = await fetchStatus(c);
        lines = renderTop(last, prev, at, out.columns ?? 120, out.rows ?? Infinity, selected);
      } catch (e) {
        lines = [`offsite top: ${(e as Error).message}`, '', 'retrying…'];
      }
      if (stop) break;
      out.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
      // A selection key redraws at once from the last status, with the rates of the last refresh.
      redraw = () => {
        if (!last || stop) return;
        out.write(`\x1b[H\x1b[2J${renderTop(last, new Map(before), at, out.columns ?? 120, out.rows ?? Infinity, selected).join('\n')}\n`);
      };
      for (let waited = 0; waited < intervalMs && !stop; waited += 100) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    if (!stop) leave();
  }
}
