// offsite.yaml: parsed with `yaml` (which keeps line numbers) and validated with
// zod, so every error names the key and the line ("offsite.yaml:7: volumes.db.size: ...").
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, visit, type Alias, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { parseListenAddress, type ListenAddress } from '../export/listen-address.js';
import { parseDuration, parseSize } from '../units/units.js';
import { cronError, holdError } from '../checkpoint/schedule.js';
import { parseRate, parseWindow } from '../rate/rate.js';
import { snmpSchema, type SnmpConfig } from '../snmp/config.js';
import { iscsiConfigOf, iscsiSchema, targetPart, volumeIscsiSchema, type IscsiConfig } from '../iscsi/config.js';
import { parseCompression } from '../compress/setting.js';
import { MAX_GROUP_MEMBERS, MAX_PEERS_PER_VOLUME, MEMORY_BUDGET_BYTES, MIN_MEMORY_BUDGET_BYTES, MIN_VOLUME_BYTES } from '../limits/limits.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** A field an operator writes as text ("1GiB", "30s", "1mbit", "host:port"), parsed; a parse error is the issue's message. */
function parsed<T>(input: z.ZodType<string | number>, parse: (v: never) => T) {
  return input.transform((v, ctx) => {
    try {
      return parse(v as never);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });
}

const text = z.string();
const textOrNumber = z.union([z.string(), z.number()]);
const size = parsed(textOrNumber, parseSize);
const listen = parsed(text, parseListenAddress);
const duration = parsed(textOrNumber, parseDuration);
const rate = parsed(textOrNumber, parseRate);

const volumeSchema = z.strictObject({
  path: z.string().min(1),
  size: size.refine((v) => v >= MIN_VOLUME_BYTES, 'a volume must be at least 4KiB (one block)').optional(),
  role: z.enum(['primary', 'secondary']),
  default: z.boolean().optional(),
  description: z.string().optional(),
  /** The node this volume replicates with; a volume with a peer has a journal. */
  peer: z.string().regex(NAME).optional(),
  /** A primary's secondaries when it has several (docs/PEERS.md); `peer:` is the one-peer form. */
  peers: z.array(z.string().regex(NAME)).min(1).max(MAX_PEERS_PER_VOLUME).optional(),
  journal: size.default(8 * 1024 ** 3),
  /** Where the journal's segments live; best on a disk of its own (default: under state). */
  journal_dir: z.string().min(1).optional(),
  on_full: z.enum(['bitmap', 'block']).default('bitmap'),
  bitmap_region: size.default(64 * 1024).refine((v) => v >= 4096 && (v & (v - 1)) === 0, 'must be a power of two of at least 4KiB'),
  /**
   * When this node (primary) finds its peer was promoted after its last write here:
   * manual waits for `offsite demote`; auto demotes it and resyncs from the peer
   * (never in a split brain, which always waits for the operator).
   */
  failback: z.enum(['manual', 'auto']).default('manual'),
  /** Share of a rate-capped link when several volumes use it (by bytes sent). */
  weight: z.number().positive().max(1000).default(1),
  /**
   * On top of the weight (docs/LINK.md): a high volume counts as PRIORITY_FACTOR (8)
   * times its weight, a low one as its weight divided by it; no volume is starved.
   */
  priority: z.enum(['high', 'normal', 'low']).default('normal'),
  /** Checkpoints on a schedule (secondary): cron (daemon's local time), hold, label. */
  checkpoints: z.array(z.strictObject({
    cron: z.string().superRefine((v, ctx) => {
      const err = cronError(v);
      if (err) ctx.addIssue({ code: 'custom', message: `"${v}" is not a cron expression: ${err}` });
    }),
    hold: duration.superRefine((v, ctx) => {
      const err = holdError(v);
      if (err) ctx.addIssue({ code: 'custom', message: err });
    }).optional(),
    label: z.string().min(1).max(128),
  })).max(32).default([]),
  /** Who may log in to this volume's iSCSI target, over the node's `iscsi:` (docs/ISCSI.md). */
  iscsi: volumeIscsiSchema.optional(),
  /**
   * Secondary: keep what each apply overwrites, so every past flush point opens
   * (docs/HISTORY.md). `keep`: how long (the oldest points go after it); `max`: at most
   * this much disk (the oldest points go first, with a warning). Absent: no history.
   */
  history: z.strictObject({
    keep: duration.refine((v) => v >= 60, 'must be at least 1m').optional(),
    max: size.refine((v) => v >= 1024 * 1024, 'must be at least 1MiB').optional(),
  }).optional(),
});


const peerSchema = z.strictObject({
  address: z.string(),
  fingerprint: z.string().optional(),
  /** A peer silent this long is declared dead and the link is redialled. Heartbeats go at a fifth of it. */
  timeout: duration.default(5).refine((v) => v >= 0.5 && v <= 3600, 'must be between 0.5s and 1h'),
  /** The link's rate cap (bytes per second once parsed: "1mbit", "10MB/s"); absent: unlimited. */
  rate: rate.optional(),
  /** How record batches are compressed on this link: auto (the level follows the link and CPU), off, or zstd:N. */
  compression: parsed(text, parseCompression).default({ mode: 'auto' }),
  /** When the link is behind, merge the epochs of a batch into one unit that carries only the last version of each overwritten range. */
  coalesce: z.boolean().default(true),
  /** Rates for parts of the day (local time), the first that matches wins. */
  schedule: z.array(z.strictObject({ at: z.string().superRefine((v, ctx) => {
    try {
      parseWindow(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  }), rate })).max(32).default([]),
});

const schema = z.strictObject({
  node: z.string().regex(NAME, 'a node name is letters, digits, ".", "_" or "-" (at most 63)'),
  state: z.string().min(1),
  nbd: listen,
  /**
   * An NBD connection idle this long (nothing in flight, nothing received) is closed.
   * Off by default: hosts keep NBD connections open and idle for long (a mounted
   * filesystem with nothing to write), and closing them costs the host an error or a reconnect.
   */
  nbd_idle_timeout: duration.refine((v) => v >= 1, 'must be at least 1s (or leave it out: never)').optional(),
  /** Where this node accepts peer links (host:port). */
  link: listen.optional(),
  /** The HTTP API listener (host:port). */
  api: listen.optional(),
  /**
   * Serve the API (and the dashboard) over HTTPS with the node's certificate from
   * `offsite init`: over plain HTTP the bearer token crosses the network in clear.
   */
  api_tls: z.boolean().default(false),
  /**
   * Host names the API answers to, besides IP literals, localhost and the name it
   * listens on: a page on another site that rebinds its name to this address (DNS
   * rebinding) sends its own name as Host, and is refused.
   */
  api_hosts: z.array(z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/, 'a host name is letters, digits, "." and "-"')).max(64).default([]),
  peers: z.record(z.string().regex(NAME), peerSchema).default({}),
  volumes: z.record(z.string().regex(NAME, 'a volume name is letters, digits, ".", "_" or "-" (at most 63)'), volumeSchema)
    .refine((v) => Object.keys(v).length > 0, 'at least one volume is needed'),
  /** The SNMP agent and its notifications (docs/SNMP.md). */
  snmp: snmpSchema.optional(),
  /** The iSCSI target (docs/ISCSI.md); absent: no iSCSI. */
  iscsi: iscsiSchema.optional(),
  /**
   * Consistency groups (docs/GROUPS.md): volumes of one application that fail over
   * to one common moment. NAME: [volume, volume, ...].
   */
  groups: z.record(z.string().regex(NAME, 'a group name is letters, digits, ".", "_" or "-" (at most 63)'),
    z.array(z.string().regex(NAME))
      .min(2, 'a group has at least two volumes')
      .max(MAX_GROUP_MEMBERS, `a group has at most ${MAX_GROUP_MEMBERS} volumes`)).default({}),
  /**
   * The node's memory budget for replication data (src/memory/budget.ts): batches
   * being shipped until acked, frames from the peer until logged, reads being applied,
   * all volumes together (docs/CONFIG.md).
   */
  memory: size.default(MEMORY_BUDGET_BYTES).refine((v) => v >= MIN_MEMORY_BUDGET_BYTES, `must be at least ${MIN_MEMORY_BUDGET_BYTES / 2 ** 20}MiB`),
});

/**
 * A volume as the node uses it. `peers`: every node it replicates with, in the config's
 * order (`peer:` or `peers:`; empty: not replicated): a primary's secondaries, or the
 * other members of a secondary's set, any of which may be (or become) its primary
 * (docs/PEERS.md); `peer`: the first of them, the one the one-peer status fields describe.
 */
export type VolumeConfig = Omit<z.infer<typeof volumeSchema>, 'peers'> & { name: string; peers: string[] };

export type PeerConfig = z.infer<typeof peerSchema> & { name: string };

/** A consistency group (docs/GROUPS.md): its members replicate with one peer in one role. */
export interface GroupConfig {
  name: string;
  /** Volume names, as the config lists them. */
  members: string[];
}

export type { SnmpConfig };

export interface Config {
  file: string;
  node: string;
  link?: ListenAddress | undefined;
  api?: ListenAddress | undefined;
  /** api_tls: the API speaks HTTPS with the node's certificate. */
  apiTls: boolean;
  /** api_hosts, lower case. */
  apiHosts: string[];
  peers: PeerConfig[];
  /** Absolute. */
  state: string;
  nbd: ListenAddress;
  /** Seconds; undefined: NBD connections are never closed for being idle. */
  nbdIdleTimeout?: number | undefined;
  volumes: VolumeConfig[];
  snmp?: SnmpConfig | undefined;
  /** The iSCSI front end; undefined: off. */
  iscsi?: IscsiConfig | undefined;
  /** Consistency groups (docs/GROUPS.md). */
  groups: GroupConfig[];
  /** `memory`: bytes of the node's memory budget (undefined: MEMORY_BUDGET_BYTES). */
  memory?: number | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(code === 'ENOENT'
      ? `${file}: no such config file (give one with -c FILE or $OFFSITE_CONFIG)`
      : `${file}: ${(e as Error).message}`);
  }
  return parseConfig(text, file);
}

/** Relative paths in the config are relative to the config file's folder. */
export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lines.linePos(e.pos[0]);
    throw new ConfigError(`${file}:${pos.line}: ${e.message.split('\n')[0]}`);
  }
  const raw = plainValues(doc, lines, file);
  const result = schema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const keyPath = issue.path.map(String);
    const unknownKey = issue.code === 'unrecognized_keys' ? issue.keys[0] : undefined;
    const where = unknownKey !== undefined ? [...keyPath, unknownKey] : keyPath;
    const line = lineOf(doc.contents, where, lines, unknownKey !== undefined);
    const key = where.join('.') || '(top level)';
    const missing = issue.code === 'invalid_type' && valueAt(raw, keyPath) === undefined;
    const message = unknownKey !== undefined ? `unknown key "${unknownKey}"`
      : missing ? 'is required but missing' : issue.message;
    throw new ConfigError(`${file}${line ? `:${line}` : ''}: ${key}: ${message}`);
  }
  const c = result.data;
  const dir = path.dirname(path.resolve(file));
  const volumes: VolumeConfig[] = Object.entries(c.volumes).map(([name, v]) => {
    const at = (key: string): string => {
      const line = lineOf(doc.contents, ['volumes', name, key], lines, true);
      return `${file}${line ? `:${line}` : ''}: volumes.${name}.${key}`;
    };
    if (v.peer !== undefined && v.peers !== undefined) throw new ConfigError(`${at('peers')}: give peer: (one) or peers: (several), not both`);
    const peers = v.peers ?? (v.peer === undefined ? [] : [v.peer]);
    if (new Set(peers).size !== peers.length) throw new ConfigError(`${at('peers')}: a peer is named twice`);
    for (const p of peers) {
      if (p === c.node) throw new ConfigError(`${at(v.peers ? 'peers' : 'peer')}: "${p}" is this node; a peer is another node`);
      if (!(p in c.peers)) throw new ConfigError(`${at(v.peers ? 'peers' : 'peer')}: no peer named "${p}" under peers:`);
    }
    const { peers: _listed, ...rest } = v;
    return {
      ...rest,
      name,
      peers,
      peer: peers[0],
      path: path.resolve(dir, v.path),
      journal_dir: v.journal_dir === undefined ? undefined : path.resolve(dir, v.journal_dir),
    };
  });
  for (const v of volumes) {
    if (v.journal < 1024 * 1024) throw new ConfigError(`${file}: volumes.${v.name}.journal: at least 1MiB`);
  }
  const files = new Map<string, string>();
  for (const v of volumes) {
    // Two volumes on one file would each take the other's writes, and each replicate them as its own.
    const other = files.get(sameFileKey(v.path));
    if (other !== undefined) {
      const line = lineOf(doc.contents, ['volumes', v.name, 'path'], lines, true);
      throw new ConfigError(`${file}${line ? `:${line}` : ''}: volumes.${v.name}.path: ${v.path} is volume ${other}'s file too; ` +
        'each volume needs a file (or device) of its own');
    }
    files.set(sameFileKey(v.path), v.name);
  }
  const state = path.resolve(dir, c.state);
  checkJournalFolders(volumes, state, (v) => {
    const line = lineOf(doc.contents, ['volumes', v, 'journal_dir'], lines, false);
    return `${file}${line ? `:${line}` : ''}`;
  });
  const targets = new Map<string, string>();
  for (const v of volumes) {
    const where = (key: string[]): string => {
      const line = lineOf(doc.contents, key, lines, true);
      return `${file}${line ? `:${line}` : ''}`;
    };
    if (v.iscsi !== undefined && c.iscsi === undefined) {
      throw new ConfigError(`${where(['volumes', v.name, 'iscsi'])}: volumes.${v.name}.iscsi: ` +
        'the node has no iscsi: section, so no volume is served over iSCSI; add one (docs/ISCSI.md)');
    }
    const part = targetPart(v.name);
    const other = targets.get(part);
    if (c.iscsi !== undefined && other !== undefined) {
      throw new ConfigError(`${where(['volumes', v.name])}: volumes.${v.name}: its iSCSI target name would be the same as volume ${other}'s ` +
        `("${part}": iSCSI names are lower case and have no "_"); rename one`);
    }
    targets.set(part, v.name);
  }
  const defaults = volumes.filter((v) => v.default);
  if (defaults.length > 1) {
    throw new ConfigError(`${file}: volumes: ${defaults.map((v) => v.name).join(' and ')} are both marked default: true`);
  }
  const groups = checkGroups(c.groups, volumes, (key) => {
    const line = lineOf(doc.contents, key, lines, false);
    return `${file}${line ? `:${line}` : ''}`;
  });
  const nbd = c.nbd.kind === 'unix' ? { kind: 'unix' as const, path: path.resolve(dir, c.nbd.path) } : c.nbd;
  const peers = Object.entries(c.peers).map(([name, p]) => ({ ...p, name }));
  return {
    file, node: c.node, link: c.link, api: c.api, apiTls: c.api_tls, apiHosts: c.api_hosts.map((h) => h.toLowerCase().replace(/\.$/, '')),
    peers, state, nbd, nbdIdleTimeout: c.nbd_idle_timeout, volumes, snmp: c.snmp,
    iscsi: c.iscsi ? iscsiConfigOf(c.iscsi, c.node) : undefined, memory: c.memory,
    groups,
  };
}

/**
 * A group's members exist, each is in one group only, they replicate with the same
 * peer in the same role, and no group is named like a volume (a name on the command
 * line means one thing). Errors name the line.
 */
function checkGroups(raw: Record<string, string[]>, volumes: VolumeConfig[], at: (key: string[]) => string): GroupConfig[] {
  const byName = new Map(volumes.map((v) => [v.name, v]));
  const memberOf = new Map<string, string>();
  const out: GroupConfig[] = [];
  for (const [name, members] of Object.entries(raw)) {
    if (byName.has(name)) throw new ConfigError(`${at(['groups', name])}: groups.${name}: a volume is named ${name} too; a group needs a name of its own`);
    if (new Set(members).size !== members.length) throw new ConfigError(`${at(['groups', name])}: groups.${name}: a volume is listed twice`);
    members.forEach((m, i) => {
      const where = at(['groups', name, String(i)]);
      const v = byName.get(m);
      if (!v) throw new ConfigError(`${where}: groups.${name}: no volume named "${m}" under volumes:`);
      const other = memberOf.get(m);
      if (other !== undefined) throw new ConfigError(`${where}: groups.${name}: volume ${m} is already in group ${other}; a volume is in at most one group`);
      memberOf.set(m, name);
      if (v.peer === undefined) throw new ConfigError(`${where}: groups.${name}: volume ${m} has no peer; a group's members replicate (volumes.${m}.peer)`);
      const first = byName.get(members[0]!)!;
      if (v.peers.join() !== first.peers.join()) {
        throw new ConfigError(`${where}: groups.${name}: volume ${m} replicates with ${v.peers.join(', ')}, ${first.name} with ${first.peers.join(', ')}; ` +
          "a group's members share one peer");
      }
      if (v.role !== first.role) {
        throw new ConfigError(`${where}: groups.${name}: volume ${m} is ${v.role}, ${first.name} is ${first.role}; a group's members have one role`);
      }
    });
    out.push({ name, members: [...members] });
  }
  return out;
}

/**
 * At most this many values reached through aliases in one file (the yaml library's
 * own limit, named here). An offsite.yaml needs few aliases if any; aliases of
 * aliases of aliases (a "billion laughs") would expand a few lines into gigabytes.
 */
const MAX_ALIAS_COUNT = 100;

/**
 * The document as plain values. yaml refuses aliases past MAX_ALIAS_COUNT, but its
 * error names no place: each alias notes itself as it is resolved, so the one that
 * crossed the limit is known and the error has its line, like any config error.
 */
function plainValues(doc: Document.Parsed, lines: LineCounter, file: string): unknown {
  let resolving: Alias | null = null;
  visit(doc, {
    Alias(_key, node) {
      const resolve = node.resolve.bind(node);
      // (Only with a context: counting aliases inside an anchor resolves them without one.)
      node.resolve = (d, ctx) => {
        if (ctx) resolving = node;
        return resolve(d, ctx);
      };
    },
  });
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    const at = (resolving as Alias | null)?.range;
    const where = at ? `${file}:${lines.linePos(at[0]).line}` : file;
    const alias = resolving ? `*${(resolving as Alias).source}: ` : '';
    throw new ConfigError(/Excessive alias count/.test(e.message)
      ? `${where}: ${alias}aliases expand to more than ${MAX_ALIAS_COUNT} values in all (aliases of aliases grow exponentially); write the values out`
      : `${where}: ${alias}${e.message}`);
  }
}

/** Where a replicated volume's journal lives when `journal_dir` is not given (docs/JOURNAL.md). */
export function journalDirOf(v: VolumeConfig, state: string): string {
  return v.journal_dir ?? path.join(volumeStateDir(v.name, state), 'journal');
}

/** STATE/volumes/NAME: the volume's identity, bitmap, activity log, receive log, default journal. */
export function volumeStateDir(name: string, state: string): string {
  return path.join(state, 'volumes', name);
}

/**
 * Two volumes in one journal folder corrupt a replica without a word: both number
 * their records from 1, so one's segment files replace the other's, and after a
 * restart one volume ships the other's writes. So every replicated volume's journal
 * folder must not be the same as, inside, or around another volume's journal folder
 * or state folder (where the default journals, receive logs, bitmaps and identities
 * live). Compared after resolving `..` and symlinks of the parts that exist. The
 * error points at the journal_dir that makes the overlap (the later one of two).
 */
function checkJournalFolders(volumes: VolumeConfig[], state: string, at: (volume: string) => string): void {
  interface Claim { volume: string; kind: 'journal' | 'state'; dir: string; real: string; explicit: boolean }
  const claims: Claim[] = [];
  for (const v of volumes) {
    // Every volume's state folder counts, with a peer or not: it is reserved by its name.
    const own: Claim[] = [{ volume: v.name, kind: 'state', dir: volumeStateDir(v.name, state), real: '', explicit: false }];
    if (v.peer !== undefined) own.push({ volume: v.name, kind: 'journal', dir: journalDirOf(v, state), real: '', explicit: v.journal_dir !== undefined });
    for (const c of own) {
      c.real = realPath(c.dir);
      for (const earlier of claims) {
        if (earlier.volume === c.volume || (c.kind === 'state' && earlier.kind === 'state')) continue;
        const how = overlap(c.real, earlier.real);
        if (!how) continue;
        // The journal_dir that makes the overlap: this volume's, or else the earlier one's.
        // (Two default folders overlap only through a symlink: then this volume is named.)
        const blamedIsC = (c.kind === 'journal' && c.explicit) || !(earlier.kind === 'journal' && earlier.explicit);
        const [blamed, other] = blamedIsC ? [c, earlier] : [earlier, c];
        const relation = how === 'same' ? 'is also' : (how === 'inside') === blamedIsC ? 'is inside' : 'contains';
        const otherKey = other.kind === 'journal' && other.explicit ? ` (volumes.${other.volume}.journal_dir${lineNote(at(other.volume))})` : '';
        const otherDir = how === 'same' && other.dir === blamed.dir ? '' : ` ${other.dir}`;
        const key = blamed.kind === 'journal' && blamed.explicit
          ? `volumes.${blamed.volume}.journal_dir: ${blamed.dir}`
          : `volumes.${blamed.volume}: its ${blamed.kind} folder ${blamed.dir}`;
        throw new ConfigError(`${at(blamed.volume)}: ${key} ${relation} ` +
          `volume ${other.volume}'s ${other.kind} folder${otherDir}${otherKey}; two volumes sharing a journal folder mix their ` +
          'records, and one\'s writes reach the other\'s replica: give each volume a folder of its own');
      }
      claims.push(c);
    }
  }
}

/** ", line 9" from "offsite.yaml:9". */
function lineNote(where: string): string {
  const m = /:(\d+)$/.exec(where);
  return m ? `, line ${m[1]}` : '';
}

/** Is `a` the same folder as `b` ('same'), inside it ('inside'), or around it ('around')? */
function overlap(a: string, b: string): 'same' | 'inside' | 'around' | null {
  if (a === b) return 'same';
  const within = (x: string, y: string): boolean => {
    const rel = path.relative(y, x);
    return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
  };
  if (within(a, b)) return 'inside';
  if (within(b, a)) return 'around';
  return null;
}

/** `p` with symlinks resolved in the part of it that exists (the rest does not yet). */
function realPath(p: string): string {
  const rest: string[] = [];
  let at = p;
  for (;;) {
    try {
      return path.join(fs.realpathSync(at), ...rest);
    } catch {
      const up = path.dirname(at);
      if (up === at) return p;
      rest.unshift(path.basename(at));
      at = up;
    }
  }
}

function valueAt(root: unknown, keys: string[]): unknown {
  let v = root;
  for (const k of keys) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** Line of the value at `keys` (or of the key itself), for error messages. */
function lineOf(root: unknown, keys: string[], lines: LineCounter, wantKey: boolean): number | null {
  let node = root as Node | null | undefined;
  let keyNode: Node | null = null;
  let lastGood: Node | null = node ?? null;
  for (const k of keys) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === k);
      if (!pair) {
        // A missing key: point at the key of the map that lacks it.
        if (keyNode) lastGood = keyNode;
        break;
      }
      keyNode = pair.key as Node;
      node = pair.value as Node | null;
      lastGood = (node ?? keyNode);
    } else if (isSeq(node)) {
      node = node.items[Number(k)] as Node | undefined;
      if (node) lastGood = node;
      keyNode = null;
    } else {
      break;
    }
  }
  const target = wantKey && keyNode ? keyNode : lastGood;
  const range = target?.range;
  return range ? lines.linePos(range[0]).line : null;
}

/**
 * What tells two volume paths apart: the file they name once links are followed (two
 * paths to one device are one volume), or the path itself where nothing exists yet.
 */
export function sameFileKey(p: string): string {
  const abs = path.resolve(p);
  // (The nearest part that exists, its links followed, and the rest as written.)
  for (let head = abs, tail = ''; ; tail = path.join(path.basename(head), tail), head = path.dirname(head)) {
    try {
      return path.join(fs.realpathSync(head), tail);
    } catch {
      if (head === path.dirname(head)) return abs;
    }
  }
}
