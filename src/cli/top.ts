// `offsite top`: the front panel. A full-screen view of the node that refreshes
// every interval: per volume its role, link, backlog, lag, consistency, the host's
// write rate beside the link's send rate, and sync, verify and checkpoint state.
// q or Ctrl-C leaves it (the terminal is restored).
import type { ClientConfig } from '../config/client.js';
import { formatBytes, formatDuration } from '../units/units.js';
import { formatRate } from '../rate/rate.js';
import type { NodeStatus, VolumeStatus } from '../contract/status.js';
import { resyncCell } from './status.js';
import { fetchStatus } from './api-client.js';

interface Sample { at: number; host: number; wire: number }

export function renderTop(s: NodeStatus, prev: Map<string, Sample>, now: number, width: number): string[] {
  const lines: string[] = [];
  lines.push(`offsite top: node ${s.node}   up ${formatDuration(s.uptimeSeconds)}   ${new Date(now).toISOString().slice(0, 19).replace('T', ' ')}   (q quits)`);
  lines.push('');
  for (const v of s.volumes) {
    const p = prev.get(v.name);
    const secs = p ? Math.max(0.001, (now - p.at) / 1000) : 0;
    const hostRate = p ? Math.max(0, v.hostBytes - p.host) / secs : 0;
    const wireRate = p ? Math.max(0, v.wireBytes - p.wire) / secs : 0;
    prev.set(v.name, { at: now, host: v.hostBytes, wire: v.wireBytes });
    lines.push(...volumeLines(v, hostRate, wireRate));
    lines.push('');
  }
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l));
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
  if (v.checkpoint) out.push(
    `  checkpoint "${v.checkpoint.label}" held since ${new Date(v.checkpoint.createdAt).toISOString().slice(0, 19)} (export ${v.checkpoint.export})`);
  if (v.drill) out.push(`  drill running: export ${v.drill.export}, ${formatBytes(v.drill.bytesWritten)} written`);
  return out;
}

export async function runTop(c: ClientConfig, intervalMs: number): Promise<void> {
  const out = process.stdout;
  const prev = new Map<string, Sample>();
  let stop = false;
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
    });
  }
  process.on('SIGTERM', leave);
  try {
    while (!stop) {
      let lines: string[];
      try {
        lines = renderTop(await fetchStatus(c), prev, Date.now(), out.columns ?? 120);
      } catch (e) {
        lines = [`offsite top: ${(e as Error).message}`, '', 'retrying…'];
      }
      if (stop) break;
      out.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
      for (let waited = 0; waited < intervalMs && !stop; waited += 100) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    if (!stop) leave();
  }
}
