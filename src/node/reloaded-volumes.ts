// What a reload does with volumes the file adds or drops (docs/CONFIG.md, "Reloading").
// An appliance serves a hundred servers: the hundred-and-first, or the end of one, must
// not cost the others a restart (every NBD and iSCSI session of the node cut, every link
// made again). A volume new to the file is opened in the background as a start opens it,
// then served and linked (SetAside.add); a volume dropped from the file is let go as a
// stop lets it go, its files and state kept (src/node/volume-removal.ts); the others go
// on; a new consistency group comes with its members, all new, and goes with them, all
// dropped. What the running daemon cannot take without a restart is said, and waits for
// one: a new member of a group it serves, or a member dropped (the group's points are
// formed over the members it had), a peer the daemon does not run links with, a file or
// iSCSI name a served volume keeps.
import fs from 'node:fs';
import type { Config, GroupConfig, VolumeConfig } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { Replica } from '../secondary/replica.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { SEGMENT_HEADER_SIZE } from '../journal/record.js';
import { formatBytes, formatDuration } from '../units/units.js';
import { sameFileKey } from '../config/config.js';
import { targetPart } from '../iscsi/config.js';

/** A group's members before and after a reload (`was` empty: a group new to the file; `now` empty: a group dropped, its members served on). */
export interface Regroup {
  group: string;
  was: string[];
  now: string[];
}

export interface ReloadedVolumes {
  /** Volumes to open now, as the reload's file has them (but for `default`, which waits for a restart). */
  add: VolumeConfig[];
  /** Volumes to let go now: gone from the file (src/node/volume-removal.ts). Let go before those added open. */
  remove: string[];
  /** Consistency groups new to the file whose members are all added now (opened together). */
  addGroups: GroupConfig[];
  /** Consistency groups gone from the file with all their members (dropped once the members are let go). */
  removeGroups: string[];
  /**
   * Served volumes whose file, journal folder or bitmap granularity changed: each is let
   * go and opened again with them, alone (src/node/volume-reopen.ts). The reload's config of each.
   */
  reopen: VolumeConfig[];
  /**
   * Consistency groups whose members change among volumes served before and after the
   * reload (one added to a group or taken out, a group new over served volumes, a group
   * dropped while its members stay): their members are let go and opened together under
   * the new grouping (src/node/regroup.ts).
   */
  regroup: Regroup[];
  /** What the reload says of the volumes added, refused or dropped. */
  notes: string[];
}

/**
 * Keys of a served volume a reload applies by letting that volume go and opening it again
 * (its host sessions close and reconnect; the node's other volumes go on): where its data
 * and journal live, and its bitmap's granularity (its marks carried over: DirtyBitmap.open).
 */
export const REOPEN_KEYS: ReadonlySet<string> = new Set(['path', 'journal_dir', 'bitmap_region']);

/**
 * Keys of a served volume a reload applies: src/node/links.ts weight and priority,
 * daemon.ts history's limits, src/node/volume-peers.ts its peers, src/node/volume-size.ts its size, applyVolumeKeys (below) the rest.
 */
const LIVE_KEYS: ReadonlySet<string> = new Set(['weight', 'priority', 'history', 'checkpoints', 'failback', 'on_full', 'iscsi', 'peer', 'peers',
  'journal', 'size', 'description']);

/** What applyVolumeKeys changes on a served volume. */
export interface LiveVolume {
  readonly config: VolumeConfig;
  readonly journaled: { setOnFull(mode: VolumeConfig['on_full']): void } | null;
  readonly volume: { description: string };
}

/**
 * A served volume's keys that a reload changes in place, without touching its sessions
 * or links: its checkpoint schedule (`forgetSchedule` drops the one in use; the next
 * tick plans the new one), failback, on_full (a primary's journal), and its iSCSI access
 * (CHAP, initiators: read at each login; sessions logged in stay). Returns the notes.
 */
export function applyVolumeKeys(e: LiveVolume, next: VolumeConfig, forgetSchedule: () => void): string[] {
  const v = e.config;
  const notes: string[] = [];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  if (!same(v.checkpoints, next.checkpoints)) {
    v.checkpoints = next.checkpoints;
    forgetSchedule();
    const plan = next.checkpoints.length === 0 ? 'none' : next.checkpoints.map((c) => `"${c.label}" (${c.cron})`).join(', ');
    notes.push(`volume ${v.name}: checkpoint schedule now ${plan}`);
  }
  if (v.failback !== next.failback) {
    v.failback = next.failback;
    notes.push(`volume ${v.name}: failback ${next.failback}`);
  }
  if (v.on_full !== next.on_full) {
    v.on_full = next.on_full;
    e.journaled?.setOnFull(next.on_full);
    notes.push(`volume ${v.name}: on_full ${next.on_full}${e.journaled ? '' : ' (when it is primary)'}`);
  }
  if (v.description !== next.description) {
    v.description = next.description;
    e.volume.description = next.description ?? e.volume.description;
    notes.push(`volume ${v.name}: description changed (for the next NBD connections and iSCSI inquiries)`);
  }
  if (!same(v.iscsi, next.iscsi)) {
    v.iscsi = next.iscsi;
    notes.push(`volume ${v.name}: iSCSI access changed (for the next logins; sessions logged in stay)`);
  }
  return notes;
}

/**
 * A served volume's `journal:` size as a reload's `next` has it (docs/JOURNAL.md, "Its
 * size"): a primary's journal, or a secondary's receive log, takes it at once, its
 * records kept, unless it holds more than that now (then it stays, and the reload says
 * so). A smaller receive log is told to the primary at a new Hello (`relink`): its
 * epochs and window fit the receive log. Returns the notes.
 */
export function journalReloaded(e: { readonly config: VolumeConfig; readonly journaled: JournaledVolume | null; readonly replica: Replica | null },
  next: VolumeConfig, relink: () => void): string[] {
  const v = e.config;
  if (v.journal === next.journal) return [];
  const log = e.journaled?.journal ?? e.replica?.log ?? null;
  const was = v.journal;
  const what = e.journaled ? 'journal' : e.replica ? 'receive log' : 'journal (when it is primary or secondary)';
  // (A segment header more: room kept for the segment a full journal rolls to, src/journal/segment-set.ts.)
  if (log && log.usedBytes + SEGMENT_HEADER_SIZE > next.journal) {
    return [`volume ${v.name}: ${what} stays ${formatBytes(log.capacity)}: it holds ${formatBytes(log.usedBytes)} now; ` +
      `one of ${formatBytes(next.journal)} is taken once it holds less (reload again then)`];
  }
  v.journal = next.journal;
  if (e.journaled) e.journaled.resizeJournal(next.journal);
  else if (log) {
    log.resize(next.journal);
    if (next.journal < was) relink();
  }
  return [`volume ${v.name}: ${what} ${formatBytes(next.journal)} (was ${formatBytes(was)})`];
}

/**
 * A served secondary's history (docs/HISTORY.md) as a reload's `next` has it: its limits
 * apply at once; turned on, it begins at the record applied then, and turned off, its
 * files go, each between two units (Replica.setHistory) in the node's action queue
 * (`exclusive`: no checkpoint or promote at a past point runs meanwhile). Returns the notes.
 */
export function historyReloaded(e: { readonly config: VolumeConfig; readonly replica: Replica | null }, next: VolumeConfig,
  exclusive: (f: () => Promise<void>) => Promise<void>, log: Logger): string[] {
  const rp = e.replica;
  const v = e.config;
  if (!rp) {
    v.history = next.history; // (a primary keeps none; it opens with it if demoted)
    return [];
  }
  const name = v.name;
  const h = rp.history;
  const settings = next.history ? { keepMs: next.history.keep === undefined ? null : next.history.keep * 1000, maxBytes: next.history.max ?? null } : null;
  if (settings && h) {
    v.history = next.history;
    if (settings.keepMs === h.settings.keepMs && settings.maxBytes === h.settings.maxBytes) return [];
    h.settings = { ...h.settings, ...settings };
    return [`volume ${name}: history keep ${settings.keepMs === null ? 'unlimited' : formatDuration(settings.keepMs / 1000)}, ` +
      `max ${settings.maxBytes === null ? 'unlimited' : formatBytes(settings.maxBytes)}`];
  }
  if (!settings && !h) return [];
  if (!settings && rp.checkpoint?.point) {
    return [`volume ${name}: history stays on: checkpoint "${rp.checkpoint.label}" holds a past point; release it, then reload`];
  }
  v.history = next.history;
  void exclusive(() => rp.setHistory(settings)).then(
    () => log.info({ volume: name }, settings ? `volume ${name}: history on; its restore points begin at the next flush point applied` :
      `volume ${name}: history off; its restore points and files are removed`),
    (err: Error) => log.error({ volume: name }, `volume ${name}: history not turned ${settings ? 'on' : 'off'}: ${err.message}`),
  );
  return [settings ? `volume ${name}: history turned on` : `volume ${name}: history turned off (its restore points go)`];
}

/**
 * The running daemon's config against a reload's: which new volumes open now, which go, and what
 * waits for a restart. `setAside`: a volume not open here, whose changes SetAside.adopt says.
 */
export function volumesReloaded(current: Pick<Config, 'volumes' | 'peers' | 'iscsi' | 'groups'>, next: Pick<Config, 'volumes' | 'groups'>,
  linked: boolean, setAside: (name: string) => boolean = () => false): ReloadedVolumes {
  const add: VolumeConfig[] = [];
  const remove: string[] = [];
  const reopen: VolumeConfig[] = [];
  const notes: string[] = [];
  const known = new Set(current.volumes.map((v) => v.name));
  // A group comes with its members, all new, and goes with them, all dropped. Among
  // volumes served before and after, its members change by a regroup: they are let go
  // and opened together under the new grouping (src/node/regroup.ts). A change that
  // mixes the two (a new volume into a served group) takes two reloads.
  const addGroups: GroupConfig[] = [];
  const removeGroups: string[] = [];
  const regroup: Regroup[] = [];
  const staying = (m: string): boolean => known.has(m) && next.volumes.some((v) => v.name === m);
  for (const g of next.groups) {
    const was = current.groups.find((x) => x.name === g.name);
    if (was) {
      if (was.members.join() === g.members.join()) continue;
      if ([...was.members, ...g.members].every(staying)) regroup.push({ group: g.name, was: [...was.members], now: [...g.members] });
      else if (g.members.every((m) => known.has(m))) notes.push(`consistency group ${g.name}: its members changed: that takes a restart`);
    } else if (g.members.every((m) => !known.has(m))) {
      addGroups.push(g);
    } else if (g.members.every(staying)) {
      regroup.push({ group: g.name, was: [], now: [...g.members] });
    } else {
      notes.push(`consistency group ${g.name} is new, but ${g.members.filter((m) => known.has(m)).join(', ')} ` +
        'already served here: add the new volumes at one reload, then the group at another');
    }
  }
  for (const g of current.groups) {
    if (next.groups.some((x) => x.name === g.name)) continue;
    if (g.members.every((m) => !next.volumes.some((v) => v.name === m))) removeGroups.push(g.name);
    else if (g.members.every(staying)) regroup.push({ group: g.name, was: [...g.members], now: [] });
    else notes.push(`consistency group ${g.name} is gone from the config: that takes a restart (its members stay grouped until then)`);
  }
  // A volume in two regroups (moved from one group to another, groups swapping members, a
  // group renamed): at this reload those groups only let their leaving members go (each keeps
  // the members that stay, or goes with fewer than two), and the joins wait for the next
  // reload. So no volume is ever in two groups, and no change waits on another for good.
  const seen = new Map<string, number>();
  for (const r of regroup) for (const m of new Set([...r.was, ...r.now])) seen.set(m, (seen.get(m) ?? 0) + 1);
  for (const r of [...regroup]) {
    const twice = [...new Set([...r.was, ...r.now])].filter((m) => seen.get(m)! > 1);
    if (twice.length === 0) continue;
    const staying = r.was.filter((m) => r.now.includes(m));
    const leaving: Regroup = { group: r.group, was: r.was, now: staying.length >= 2 ? staying : [] };
    regroup.splice(regroup.indexOf(r), 1, ...(leaving.was.length > 0 && leaving.was.join() !== leaving.now.join() ? [leaving] : []));
    notes.push(`consistency group ${r.group}: ${twice.join(', ')} also ${twice.length === 1 ? 'changes' : 'change'} another group at this reload: ` +
      (leaving.was.length > 0 && leaving.was.join() !== leaving.now.join()
        ? `only ${leaving.now.length > 0 ? `its leaving members go now (→ ${leaving.now.join(', ')})` : 'its dropping goes now'}; `
        : '') + 'reload again to finish');
  }
  for (const v of current.volumes) {
    const w = next.volumes.find((x) => x.name === v.name);
    if (!w) {
      const group = current.groups.find((g) => g.members.includes(v.name));
      if (group && !removeGroups.includes(group.name)) {
        notes.push(`volume ${v.name} is gone from the config, but it is a member of consistency group ${group.name}: ` +
          'it is served until the next restart');
      } else {
        remove.push(v.name);
      }
      continue;
    }
    if (setAside(v.name)) continue;
    const changed = (Object.keys({ ...v, ...w }) as (keyof VolumeConfig)[])
      .filter((k) => !LIVE_KEYS.has(k) && k !== 'role' && JSON.stringify(v[k]) !== JSON.stringify(w[k]));
    const reopened = changed.filter((k) => REOPEN_KEYS.has(k));
    const restart = changed.filter((k) => !REOPEN_KEYS.has(k));
    const group = current.groups.find((g) => g.members.includes(v.name));
    if (reopened.length > 0 && sameFileKey(v.path) !== sameFileKey(w.path) && isServedFile(current.volumes, v.name, w.path)) {
      notes.push(`volume ${v.name}: ${w.path} is the file of volume ${isServedFile(current.volumes, v.name, w.path)}, served here: not reopened`);
    } else if (reopened.length > 0 && sameFileKey(v.path) !== sameFileKey(w.path) && fileRefused(v, w) !== null) {
      notes.push(`volume ${v.name}: ${fileRefused(v, w)}: not reopened (it is served from ${v.path} as it was)`);
    } else if (reopened.length > 0) {
      reopen.push(w);
      const others = group ? group.members.filter((m) => m !== v.name) : [];
      notes.push(`volume ${v.name}: ${reopened.map((k) => `${k} ${show(v[k])} → ${show(w[k])}`).join(', ')}: ` + (group
        ? `reopening it with the other members of consistency group ${group.name} (${others.join(', ')}), which open together ` +
          '(their NBD connections and iSCSI sessions close, and hosts connect again; the node\'s other volumes go on)'
        : 'reopening it alone (its NBD connections and iSCSI sessions close, and hosts connect again; the node\'s other volumes go on)'));
    }
    if (restart.length > 0) notes.push(`volume ${v.name}: ${restart.join(', ')} changed: that takes a restart`);
    if (v.role !== w.role) {
      // (The volume's identity keeps the role a promote or demote gave it, and a start reads the file's only without one: src/volume/identity.ts.)
      notes.push(`volume ${v.name}: role: ${w.role} in the file: a served volume's role changes by \`offsite promote\` and \`offsite demote\` ` +
        '(docs/FAILOVER.md), at once and safely; a restart takes the file\'s role: only if neither ever ran on it here');
    }
  }
  // (A volume let go frees its file and target name for one the same reload adds: a rename.)
  const kept = current.volumes.filter((v) => !remove.includes(v.name));
  const files = new Map(kept.map((v) => [sameFileKey(v.path), v.name]));
  const targets = new Map(kept.map((v) => [targetPart(v.name), v.name]));
  for (const v of next.volumes) {
    if (known.has(v.name)) continue;
    const group = next.groups.find((g) => g.members.includes(v.name));
    if (group && !addGroups.includes(group)) {
      notes.push(`volume ${v.name}: a new member of consistency group ${group.name}: not added; add the volume at one reload, ` +
        'then put it in the group at another');
      continue;
    }
    const newPeers = v.peers.filter((p) => !current.peers.some((q) => q.name === p));
    if (newPeers.length > 0) {
      notes.push(`volume ${v.name}: ${newPeers.map((p) => `peer ${p}`).join(', ')} ${newPeers.length > 1 ? 'are' : 'is'} new to this daemon: ` +
        'that takes a restart');
      continue;
    }
    const sameFile = files.get(sameFileKey(v.path));
    if (sameFile !== undefined) {
      notes.push(`volume ${v.name}: ${v.path} is the file of volume ${sameFile}, served here: not added`);
      continue;
    }
    const sameTarget = current.iscsi ? targets.get(targetPart(v.name)) : undefined;
    if (sameTarget !== undefined) {
      notes.push(`volume ${v.name}: its iSCSI target name would be volume ${sameTarget}'s, served here: not added`);
      continue;
    }
    if (v.default === true) notes.push(`volume ${v.name}: default: true takes a restart (the default export stays as it is)`);
    if (v.peers.length > 0 && !linked) {
      notes.push(`volume ${v.name}: no peer link runs on this daemon (none was configured, or no identity, at its start): ` +
        'its changes are journaled, and shipped after a restart');
    }
    add.push(v.default === true ? { ...v, default: false } : v);
    files.set(sameFileKey(v.path), v.name);
    targets.set(targetPart(v.name), v.name);
  }
  // A new group opens whole or not at all.
  for (const g of [...addGroups]) {
    const left = g.members.filter((m) => !add.some((v) => v.name === m));
    if (left.length === 0) continue;
    addGroups.splice(addGroups.indexOf(g), 1);
    for (const m of g.members) {
      const i = add.findIndex((v) => v.name === m);
      if (i < 0) continue;
      add.splice(i, 1);
      notes.push(`volume ${m}: not added: consistency group ${g.name} opens whole, and ${left.join(', ')} ${left.length === 1 ? 'is' : 'are'} not added`);
    }
  }
  // A member whose keys change at the same reload is reopened by its regroup, not alone.
  for (const r of [...regroup]) {
    const members = [...new Set([...r.was, ...r.now])];
    const keys = reopen.filter((v) => members.includes(v.name));
    if (keys.length > 0) {
      regroup.splice(regroup.indexOf(r), 1);
      notes.push(`consistency group ${r.group}: its members change at the reload that reopens ${keys.map((v) => v.name).join(', ')}: ` +
        'reload again once that is done');
    }
  }
  for (const r of regroup) notes.push(regroupNote(r));
  return { add, remove, addGroups, removeGroups, reopen, regroup, notes };
}

/** "consistency group erp: logs joins (db, wal → db, wal, logs); its members open again together". */
export function regroupNote(r: Regroup): string {
  const joins = r.now.filter((m) => !r.was.includes(m));
  const leaves = r.was.filter((m) => !r.now.includes(m));
  const what = r.was.length === 0 ? `new over ${r.now.join(', ')}`
    : r.now.length === 0 ? `dropped (${r.was.join(', ')} served on, each alone)`
      : [joins.length > 0 ? `${joins.join(', ')} ${joins.length === 1 ? 'joins' : 'join'}` : '',
        leaves.length > 0 ? `${leaves.join(', ')} ${leaves.length === 1 ? 'leaves' : 'leave'}` : ''].filter(Boolean).join(', ') +
        ` (${r.was.join(', ')} → ${r.now.join(', ')})`;
  return `consistency group ${r.group}: ${what}; ${[...new Set([...r.was, ...r.now])].join(', ')} are ` +
    'let go and opened again together (their NBD connections and iSCSI sessions close, and hosts connect again; the node\'s other volumes go on)';
}

/**
 * Why a served volume cannot be reopened on its new file, else null: a file is made only
 * at a volume's first start (an empty one here would serve a blank disk under the
 * volume's journal and bitmap), and a file of another size would not open.
 */
function fileRefused(v: VolumeConfig, w: VolumeConfig): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(w.path);
  } catch (err) {
    return `${w.path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`;
  }
  if (st.isFile() && v.size !== undefined && st.size !== v.size) {
    return `${w.path} holds ${formatBytes(st.size)}, and the volume is ${formatBytes(v.size)}`;
  }
  return null;
}

/** The served volume other than `name` whose file is `file`, if any. */
function isServedFile(volumes: readonly VolumeConfig[], name: string, file: string): string | undefined {
  return volumes.find((x) => x.name !== name && sameFileKey(x.path) === sameFileKey(file))?.name;
}

function show(x: unknown): string {
  return x === undefined ? '(default)' : typeof x === 'number' ? formatBytes(x) : String(x);
}
