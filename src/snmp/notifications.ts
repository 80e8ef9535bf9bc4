// What deserves a notification: two looks at the node's volumes, a second apart,
// in; the notifications their difference calls for, out. Pure, so every rule is
// unit-tested (test/unit/snmp-notifications.test.ts).
import type { NodeStatus, UnavailableVolumeStatus, VolumeStatus } from '../contract/status.js';
import { formatBytes, formatDuration } from '../units/units.js';
import { JOURNAL_FILL_NOTICES } from '../limits/limits.js';
import {
  NOTIFICATIONS, NOTIFICATION_TYPES, NOTIFY_TEXT, displayString, instanceOid, nodeValues, volumeValues,
  type MibValue, type NoticeKind,
} from './mib.js';

/** A link that has not come up this long after the agent started is reported down. */
export const START_GRACE_MS = 30_000;

/** What the watcher keeps of a volume between two looks. */
export interface WatchedVolume {
  name: string;
  role: 'primary' | 'secondary';
  peer: string | null;
  /** "connected", "disconnected", "none" (no peer), or "starting": not up yet, within START_GRACE_MS of the start. */
  link: string;
  lagSeconds: number;
  tracking: string;
  overflows: number;
  backlogBytes: number;
  /** The journal's bytes used and its capacity (a primary's; 0 and 0: none). */
  journalUsed: number;
  journalCapacity: number;
  /** Why the volume is not paired: a split brain (null: it is not, or the link came up since a refusal). */
  splitBrain: string | null;
}

export interface Notice {
  kind: NoticeKind;
  volume: string;
  /** What happened, in words (offsiteNotifyText). */
  text: string;
}

/** A look at the node: `starting` is true while within START_GRACE_MS of the start; `everUp` holds the volumes whose link has been up since. */
export function watchVolumes(
  volumes: readonly VolumeStatus[],
  look: { starting: boolean; everUp: ReadonlySet<string>; splitBrain: ReadonlyMap<string, string> },
): WatchedVolume[] {
  return volumes.map((v) => ({
    name: v.name,
    role: v.role,
    peer: v.peer,
    link: v.link === 'disconnected' && look.starting && !look.everUp.has(v.name) ? 'starting' : v.link,
    lagSeconds: v.lagSeconds,
    tracking: v.tracking,
    overflows: v.overflows,
    backlogBytes: v.backlogBytes,
    journalUsed: v.journalUsedBytes,
    journalCapacity: v.journalCapacityBytes,
    // (A split brain keeps the volume unpaired on a link that is up, docs/LINK.md; a peer of
    // the release before refuses the whole link for it instead, which the look passes in.)
    splitBrain: (v.peers ?? []).find((p) => p.conflict?.code === 'split-brain')?.conflict?.message ?? look.splitBrain.get(v.name) ?? null,
  }));
}

/**
 * The look the first real one is compared with: links "starting" (so the first link
 * up is reported, and one that stays down past the grace), lag 0 (so a lag already
 * above the alarm at the start is reported); roles and tracking as they are.
 */
export function baseline(volumes: readonly WatchedVolume[]): WatchedVolume[] {
  return volumes.map((v) => ({ ...v, link: v.link === 'none' ? 'none' : 'starting', lagSeconds: 0, splitBrain: null }));
}

/** The notifications that the change from `prev` to `next` calls for, volume by volume. */
export function notices(prev: readonly WatchedVolume[], next: readonly WatchedVolume[], lagAlarmSeconds: number | null): Notice[] {
  const out: Notice[] = [];
  for (const n of next) {
    const p = prev.find((x) => x.name === n.name);
    if (!p) continue;
    const add = (kind: NoticeKind, text: string): void => {
      out.push({ kind, volume: n.name, text });
    };
    const name = n.name;
    if (p.role === 'secondary' && n.role === 'primary') add('promoted', `volume ${name} promoted: primary on this node, read-write`);
    if (p.role === 'primary' && n.role === 'secondary') add('demoted', `volume ${name} demoted: secondary on this node, read-only`);
    if (n.peer !== null) {
      if (n.link === 'connected' && p.link !== 'connected') {
        add('linkUp', `volume ${name}: link to ${n.peer} up`);
      } else if (p.link === 'connected' && n.link !== 'connected' && n.link !== 'starting') {
        add('linkDown', `volume ${name}: link to ${n.peer} down; backlog ${formatBytes(n.backlogBytes)}`);
      } else if (p.link === 'starting' && n.link === 'disconnected') {
        add('linkDown', `volume ${name}: link to ${n.peer} not up ${formatDuration(START_GRACE_MS / 1000)} after the start; backlog ` +
          `${formatBytes(n.backlogBytes)}`);
      }
    }
    // A primary's journal filling, before it overflows (as the log says it: src/node/journal-fill.ts).
    const fill = (v: WatchedVolume): number => (v.journalCapacity > 0 ? v.journalUsed / v.journalCapacity : 0);
    const crossed = JOURNAL_FILL_NOTICES.filter((t) => fill(p) < t && fill(n) >= t);
    if (n.role === 'primary' && n.tracking === 'journal' && crossed.length > 0) {
      add('journalFilling', `volume ${name}: journal ${formatBytes(n.journalUsed)} of ${formatBytes(n.journalCapacity)} ` +
        `(${Math.floor(fill(n) * 100)}%)${n.peer !== null && n.link !== 'connected' ? `, link to ${n.peer} down` : ''}; full, it overflows into ` +
        'the dirty bitmap: raise its journal: and offsite reload, or bring the link back');
    }
    if ((n.tracking === 'bitmap' && p.tracking !== 'bitmap') || n.overflows > p.overflows) {
      add('journalOverflow', `volume ${name}: journal overflowed; changes are tracked in the dirty bitmap (${formatBytes(n.backlogBytes)} to resync)`);
    }
    if (lagAlarmSeconds !== null) {
      const t = lagAlarmSeconds;
      if (p.lagSeconds <= t && n.lagSeconds > t) {
        add('lagHigh', `volume ${name}: lag ${formatDuration(n.lagSeconds)} is above the alarm threshold of ${formatDuration(t)}; backlog ` +
          `${formatBytes(n.backlogBytes)}`);
      } else if (p.lagSeconds > t && n.lagSeconds <= t) {
        add('lagNormal', `volume ${name}: lag ${formatDuration(n.lagSeconds)} is back within the alarm threshold of ${formatDuration(t)}`);
      }
    }
    if (n.splitBrain !== null && p.splitBrain === null) add('splitBrain', n.splitBrain);
  }
  return out;
}

/** What the watcher keeps of a volume set aside (not opened) between two looks. */
export interface WatchedUnavailable {
  name: string;
  error: string;
  /** Opens tried: a larger count is a reload's try that failed again. */
  attempts: number;
}

export function watchUnavailable(unavailable: readonly UnavailableVolumeStatus[] | undefined): WatchedUnavailable[] {
  // (A volume a reload reopens is no failure: a notification only if its open fails, set aside then.)
  return (unavailable ?? []).filter((u) => u.reopening !== true).map((u) => ({ name: u.name, error: u.error, attempts: u.attempts }));
}

/**
 * The notifications for volumes set aside (src/node/set-aside.ts): one when a volume
 * did not open (at the start: the first look is compared with none set aside), again
 * when a reload's try failed too (with its newest reason); one when a volume set
 * aside is served again (in `served`, the names of the node's volume rows).
 */
export function availabilityNotices(prev: readonly WatchedUnavailable[], next: readonly WatchedUnavailable[],
  served: readonly string[]): Notice[] {
  const out: Notice[] = [];
  for (const n of next) {
    const p = prev.find((x) => x.name === n.name);
    if (p && p.attempts >= n.attempts) continue;
    const tries = n.attempts > 1 ? ` (${n.attempts} tries)` : '';
    out.push({ kind: 'volumeUnavailable', volume: n.name, text: `volume ${n.name} is not served: it did not open${tries}: ` +
      `${n.error}; once this is put right, offsite reload (or SIGHUP) opens it` });
  }
  for (const p of prev) {
    if (next.some((x) => x.name === p.name) || !served.includes(p.name)) continue;
    out.push({ kind: 'volumeAvailable', volume: p.name, text: `volume ${p.name} opened at a reload: served again` });
  }
  return out;
}

export interface NotificationVarbind extends MibValue {
  oid: string;
}

/**
 * A notice as a notification: its snmpTrapOID value and its objects (instances of the
 * volume's row and the node's scalars, then offsiteNotifyText); null when it names
 * columns of a volume that has no row (any more).
 */
export function notificationOf(notice: Notice, status: NodeStatus, lagAlarmSeconds: number | null): {
  trapOid: string; varbinds: NotificationVarbind[] } | null {
  const index = status.volumes.findIndex((v) => v.name === notice.volume) + 1;
  const t = NOTIFICATION_TYPES[notice.kind];
  const scalars = nodeValues(status, lagAlarmSeconds);
  if (index === 0 && t.objects.some((name) => !(name in scalars))) return null;
  const row: Record<string, MibValue> = { ...(index === 0 ? {} : volumeValues(status.volumes[index - 1]!)), ...scalars };
  const varbinds: NotificationVarbind[] = t.objects.map((name) => ({ oid: instanceOid(name, index), ...row[name]! }));
  varbinds.push({ oid: `${NOTIFY_TEXT}.0`, kind: 'string', value: displayString(notice.text) });
  return { trapOid: `${NOTIFICATIONS}.${t.id}`, varbinds };
}
