// The Hello exchange that opens every link (docs/PEER-PROTOCOL.md): each side says
// who it is and which volumes it holds; each pair of volumes must match, with one
// primary. A mismatch is refused with a reason an operator can act on.
//
// Protocol versions (docs/VERSIONING.md). The Hello frame carries the range its sender
// speaks: the lowest in the frame's version byte and in the JSON's `protocol`, the
// highest in the frame's flags (0: only the lowest). Not in a new JSON key: the
// previous release parses Hello strictly and refuses a key it does not know, and it
// checks only that byte 4 and `protocol` are 1, never the flags. So a node that speaks
// 1..2 sends the previous release a Hello it reads as its own, and both settle on 1.
import { z } from 'zod';
import { FrameError, FrameType, PROTOCOL_RANGE, encodeFrame, formatRange, type ProtocolRange } from './frame.js';
import { formatBytes } from '../units/units.js';

// Keys this build does not know are dropped, not refused (the previous release
// refused them): a later release may add a field this one can do without. A field
// this one must understand comes with a new protocol version instead.
const volumeSchema = z.object({
  name: z.string().min(1).max(63),
  /** Born on the primary; the secondary adopts it on first sync. Empty until then. */
  uuid: z.string().max(64),
  size: z.number().int().nonnegative(),
  role: z.enum(['primary', 'secondary']),
  /** Generation identifiers for split-brain detection (current, previous). */
  generation: z.array(z.string().max(64)).max(8),
  /** Highest seq durable here (receive log on a secondary, acked on a primary). */
  durableSeq: z.number().int().nonnegative(),
  /** Capacity of the journal (primary) or receive log (secondary): the primary keeps epochs well below the peer's. */
  logBytes: z.number().int().nonnegative(),
  /** First seq of the resync round this side has open (0: none). */
  round: z.number().int().nonnegative(),
  /** Bytes of changes here the peer may not hold (a primary's journal backlog and dirty regions); for a split brain's report. */
  changedBytes: z.number().int().nonnegative().optional(),
  /**
   * The stream of records this side's journal (primary) or receive log (secondary) holds
   * (src/stream/stream.ts); absent: none yet, or a release before streams.
   */
  stream: z.string().max(64).optional(),
});

const helloSchema = z.object({
  node: z.string().min(1).max(63),
  /** The lowest protocol version the sender speaks (the same as its frame's version byte). */
  protocol: z.number().int(),
  /** Record codecs this side decodes (absent: none; "zstd": PackedRecords frames). */
  codecs: z.array(z.string().max(16)).max(8).optional(),
  volumes: z.array(volumeSchema).max(1024),
  /**
   * Volumes configured with the peer that this node could not open (src/node/set-aside.ts),
   * with why: not described above, and not refused for it (the link serves the others).
   * Sent only when there are some.
   */
  unavailable: z.array(z.object({ name: z.string().min(1).max(63), reason: z.string().max(2048) })).max(1024).optional(),
});

export type HelloVolume = z.infer<typeof volumeSchema>;
export type Hello = z.infer<typeof helloSchema>;

export function encodeHello(h: Hello): Buffer {
  return Buffer.from(JSON.stringify(h), 'utf8');
}

/**
 * The Hello frame of a node that speaks `speaks`: JSON keys in the order the previous
 * release wrote them, the frame at the lowest version, the highest in its flags. For a
 * node that speaks 1 only, the bytes are the previous release's exactly.
 */
export function encodeHelloFrame(h: Omit<Hello, 'protocol'>, speaks: ProtocolRange = PROTOCOL_RANGE): Buffer[] {
  const json = encodeHello({
    node: h.node, protocol: speaks.min, codecs: h.codecs, volumes: h.volumes,
    ...(h.unavailable && h.unavailable.length > 0 ? { unavailable: h.unavailable } : {}),
  });
  return encodeFrame(FrameType.Hello, json, speaks.max > speaks.min ? speaks.max : 0, speaks.min);
}

/** The range a Hello frame declares: its version byte and flags (see the top of this file). */
export function helloRange(frame: { version?: number; flags: number }): ProtocolRange | string {
  const min = frame.version ?? PROTOCOL_RANGE.min;
  if (frame.flags === 0) return { min, max: min };
  if (frame.flags > 255 || frame.flags < min) return `its frame says it speaks protocol versions ${min}..${frame.flags}`;
  return { min, max: frame.flags };
}

export type Negotiation = { ok: true; version: number } | { ok: false; message: string };

/**
 * The version a link speaks: the highest both sides speak. Without one in common the
 * operator is told what each side speaks and which to upgrade: the side whose newest
 * version is older than everything the other still speaks.
 */
export function negotiate(local: ProtocolRange, remote: ProtocolRange, names: { self: string; peer: string }): Negotiation {
  const version = Math.min(local.max, remote.max);
  if (version >= Math.max(local.min, remote.min)) return { ok: true, version };
  const [older, newer] = remote.max < local.min ? [names.peer, names.self] : [names.self, names.peer];
  const needed = Math.max(local.min, remote.min);
  const speaks = (r: ProtocolRange): string => `protocol version${r.min === r.max ? '' : 's'} ${formatRange(r)}`;
  return {
    ok: false,
    message: `${names.peer} speaks ${speaks(remote)} and ${names.self} speaks ${speaks(local)}: no version in common. ` +
      `Upgrade ${older} to a release that speaks protocol version ${needed} (${newer} has dropped the older versions); ` +
      'releases one apart always share a version (docs/VERSIONING.md)',
  };
}

export type HelloCheck =
  | {
    ok: true; hello: Hello; pairs: Array<{ local: HelloVolume; remote: HelloVolume }>; protocol: number;
    /**
     * Pairs whose secondary holds records of another journal than the primary's (a new
     * primary after a failover): nothing flows; the secondary starts again from its last
     * flush point as a new replica of this primary (RoleChanges.follow) and links again.
     */
    follows: Array<{ local: HelloVolume; remote: HelloVolume }>;
    /**
     * Volumes of ours the peer could not open, with its reason, or that are not in its
     * config at all (`missing`: one site's config changed before the other's): not
     * paired; the link serves the others. `resized`: its size differs on the two sites.
     */
    unavailable: Array<{ name: string; reason: string; missing?: true; resized?: true }>;
    /**
     * Volumes whose roles or identities conflict (two primaries, a split brain, two
     * secondaries, different volumes under one name, a primary older than the one the
     * secondary follows): not paired, each with the reason and the operator's way out;
     * the link serves the others. Both sides find the same conflicts, each from its own side.
     */
    conflicts: VolumeConflict[];
  }
  | { ok: false; code: string; message: string };

/** One volume the Hello could not pair for its roles or identities; `code` as a Refuse frame's ("split-brain", ...). */
export interface VolumeConflict {
  volume: string;
  code: string;
  message: string;
}

export interface HelloContext {
  /** The Hello frame's header (its version byte and flags give the peer's range); absent: the JSON's `protocol` alone. */
  frame?: { version?: number; flags: number };
  /** What this node speaks. */
  speaks?: ProtocolRange;
  /** This node's name, for the operator's message. */
  self?: string;
  /**
   * The volume has several peers here (a set of three sites, docs/PEERS.md): two
   * secondaries of it meet without a refusal (nothing flows between them).
   */
  inSet?: (volume: string) => boolean;
}

/**
 * Checks the peer's Hello against ours: `expectedNode` is the name the config gives
 * the peer; `shared` are the volumes this node replicates with it. On success,
 * `protocol` is the version the link speaks from here on.
 */
export function checkHello(payload: Buffer, expectedNode: string, shared: HelloVolume[], ctx: HelloContext = {}): HelloCheck {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, code: 'bad-hello', message: 'the peer\'s Hello is not JSON' };
  }
  const parsed = helloSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    return { ok: false, code: 'bad-hello', message: `the peer's Hello is malformed at ${i.path.join('.') || '(top)'}: ${i.message}` };
  }
  const hello = parsed.data;
  const remote = ctx.frame ? helloRange(ctx.frame) : { min: hello.protocol, max: hello.protocol };
  if (typeof remote === 'string') return { ok: false, code: 'bad-hello', message: `the peer's Hello is malformed: ${remote}` };
  if (hello.protocol !== remote.min) {
    return { ok: false, code: 'bad-hello', message: `the peer's Hello says protocol ${hello.protocol} but its frame says version ${remote.min}` };
  }
  const agreed = negotiate(ctx.speaks ?? PROTOCOL_RANGE, remote, { self: ctx.self ?? 'this node', peer: expectedNode });
  if (!agreed.ok) return { ok: false, code: 'version', message: agreed.message };
  if (hello.node !== expectedNode) {
    return { ok: false, code: 'wrong-node', message: `the peer calls itself "${hello.node}" but this node's config knows it as "${expectedNode}"` };
  }
  const pairs: Array<{ local: HelloVolume; remote: HelloVolume }> = [];
  const follows: Array<{ local: HelloVolume; remote: HelloVolume }> = [];
  const unavailable: Array<{ name: string; reason: string; missing?: true; resized?: true }> = [];
  const conflicts: VolumeConflict[] = [];
  for (const local of shared) {
    const conflict = pairOf(local, hello, expectedNode, ctx);
    if (conflict === null) continue;
    if ('code' in conflict) conflicts.push(conflict);
    else if ('reason' in conflict) unavailable.push(conflict);
    else if (conflict.follows) follows.push(conflict.pair);
    else pairs.push(conflict.pair);
  }
  return { ok: true, hello, pairs, protocol: agreed.version, follows, unavailable, conflicts };
}

/**
 * A volume's Hello again (protocol 3, docs/PEER-PROTOCOL.md): its sender has let go its
 * pairing of `volume` on the link, and says how it holds the volume now: `described` as
 * a Hello would, or `unavailable` with why (being changed, set aside), or neither (not a
 * volume it shares with the receiver). A request (`reply` false) is answered by the
 * receiver's own; both sides then pair the volume from the two, as a Hello pairs it.
 */
export interface VolumeHello {
  volume: string;
  reply: boolean;
  described?: HelloVolume;
  unavailable?: string;
}

const volumeHelloSchema = z.strictObject({
  volume: z.string().min(1).max(63),
  reply: z.boolean(),
  described: volumeSchema.optional(),
  unavailable: z.string().max(2048).optional(),
});

export function encodeVolumeHello(h: VolumeHello): Buffer[] {
  const json = {
    volume: h.volume, reply: h.reply,
    ...(h.described ? { described: h.described } : {}), ...(h.unavailable !== undefined ? { unavailable: h.unavailable } : {}),
  };
  return encodeFrame(FrameType.VolumeHello, Buffer.from(JSON.stringify(json), 'utf8'), 0, 3);
}

/** A VolumeHello frame's payload; throws (a bad frame: the link closes) on anything else. */
export function decodeVolumeHello(payload: Buffer): VolumeHello {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new FrameError('a VolumeHello that is not JSON');
  }
  const parsed = volumeHelloSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new FrameError(`a VolumeHello malformed at ${i.path.join('.') || '(top)'}: ${i.message}`);
  }
  const h = parsed.data;
  if (h.described && h.described.name !== h.volume) throw new FrameError(`a VolumeHello for ${h.volume} that describes ${h.described.name}`);
  if (h.described && h.unavailable !== undefined) throw new FrameError(`a VolumeHello for ${h.volume} both described and unavailable`);
  return {
    volume: h.volume, reply: h.reply,
    ...(h.described ? { described: h.described } : {}), ...(h.unavailable !== undefined ? { unavailable: h.unavailable } : {}),
  };
}

/**
 * What a volume's Hello again makes of `local` (this side's description of it) against
 * the peer's (`remote`), as checkHello makes of it in a whole Hello: the same outcome on
 * both sides, each from its own.
 */
export function checkVolume(local: HelloVolume, remote: Omit<VolumeHello, 'reply'>, expectedNode: string, ctx: HelloContext = {}): PairOutcome | null {
  const hello: Hello = {
    node: expectedNode, protocol: 3, volumes: remote.described ? [remote.described] : [],
    ...(remote.unavailable !== undefined ? { unavailable: [{ name: remote.volume, reason: remote.unavailable }] } : {}),
  };
  return pairOf(local, hello, expectedNode, ctx);
}

export type PairOutcome =
  | VolumeConflict
  | { name: string; reason: string; missing?: true; resized?: true }
  | { pair: { local: HelloVolume; remote: HelloVolume }; follows: boolean };

/**
 * What the Hello makes of one of our volumes: paired, following a new primary, waiting
 * (the peer lacks it, or its size differs), in conflict, or nothing (null: two
 * secondaries of a set of three, which follow a third).
 */
function pairOf(local: HelloVolume, hello: Hello, expectedNode: string, ctx: HelloContext): PairOutcome | null {
  const remote = hello.volumes.find((v) => v.name === local.name);
  const setAside = remote ? undefined : hello.unavailable?.find((u) => u.name === local.name);
  if (setAside) return setAside;
  if (!remote) {
    // A volume added to (or removed from) one site's config before the other's: that
    // one volume waits, as one the peer could not open does; the others link
    // (refusing the link, as releases before 2026-12-05 did, stopped every volume's
    // replication over one config edit).
    return {
      name: local.name, missing: true,
      reason: `not in ${expectedNode}'s config as a volume paired with this node (add it there, then \`offsite reload\` on ${expectedNode})`,
    };
  }
  if (remote.size !== local.size) {
    // One volume grown at one site before the other (docs/CONFIG.md, "Growing a volume"),
    // or two different disks: that one volume waits, the others link (refusing the
    // link, as releases before 2026-12-06 did, stopped every volume's replication).
    const grow = local.size < remote.size ? 'here and reload' : `on ${expectedNode} and reload there`;
    return {
      name: local.name, resized: true,
      reason: `it is ${formatBytes(local.size)} (${local.size} bytes) here and ${formatBytes(remote.size)} (${remote.size} bytes) on ` +
        `${expectedNode}; the sizes must match: raise its size: ${grow} (docs/CONFIG.md, "Growing a volume")`,
    };
  }
  if (remote.role === local.role && local.role === 'secondary' && ctx.inSet?.(local.name)) return null; // both follow a third
  if (remote.role === local.role) {
    return local.role === 'primary'
      ? twoPrimaries(local, remote, expectedNode)
      : {
        volume: local.name, code: 'two-secondaries',
        message: `volume ${local.name} is secondary on both nodes; one must be primary (offsite promote ${local.name} on the node whose data is to be kept)`,
      };
  }
  if (local.uuid && remote.uuid && local.uuid !== remote.uuid) {
    return {
      volume: local.name, code: 'uuid', message: `volume ${local.name} here (${local.uuid}) and on ${expectedNode} (${remote.uuid}) are different volumes`,
    };
  }
  const primary = local.role === 'primary' ? local : remote;
  const secondary = local.role === 'primary' ? remote : local;
  const sgen = secondary.generation[0];
  const pgen = primary.generation[0];
  if (sgen !== undefined && pgen !== undefined && !primary.generation.includes(sgen) && secondary.generation.slice(1).includes(pgen)) {
    // The secondary follows a primary promoted after this primary's last write (three sites).
    return local.role === 'primary'
      ? {
        volume: local.name, code: 'peer-promoted',
        message: `volume ${local.name}: ${expectedNode} follows a primary promoted after this node's last write (its generation ${sgen} ` +
          `came after ${pgen}, this node's); fail back with \`offsite demote ${local.name}\` here, and this node follows that primary ` +
          'too (or set failback: auto)',
      }
      : {
        volume: local.name, code: 'old-primary',
        message: `volume ${local.name}: ${expectedNode} is primary of an older generation (${pgen}); this node follows the primary ` +
          `promoted after it (generation ${sgen}): run \`offsite demote ${local.name}\` on ${expectedNode}`,
      };
  }
  if (sgen !== undefined && primary.generation.length > 0 && !primary.generation.includes(sgen)) {
    // The secondary's data carries writes the primary's history never had.
    const where = local.role === 'secondary' ? 'this node' : expectedNode;
    const other = local.role === 'secondary' ? expectedNode : 'this node';
    return {
      volume: local.name, code: 'split-brain',
      message: `volume ${local.name}: split brain: the secondary (${where}) took writes the primary (${other}) never saw ` +
        `(${changes(primary, local.role === 'primary' ? 'this node' : expectedNode)}) ` +
        `(its generation ${sgen} is not in the primary's history ${primary.generation.join(', ')}). Nothing is synced until you choose: ` +
        `to keep the primary's data run \`offsite demote ${local.name} --discard-my-data\` on ${where}; ` +
        "to keep the secondary's, demote the primary and promote the secondary",
    };
  }
  const follows = Boolean(primary.stream && secondary.stream && primary.stream !== secondary.stream && (secondary.durableSeq > 0 || secondary.round > 0));
  return { pair: { local, remote }, follows };
}

function twoPrimaries(local: HelloVolume, remote: HelloVolume, peer: string): VolumeConflict {
  const name = local.name;
  const lgen = local.generation[0];
  const rgen = remote.generation[0];
  if (lgen === rgen || local.uuid !== remote.uuid) {
    return {
      volume: name, code: 'two-primaries',
      message: `volume ${name} is primary on both nodes (same generation ${lgen ?? '-'}); demote one (offsite demote ${name}) before they can sync`,
    };
  }
  if (lgen !== undefined && remote.generation.slice(1).includes(lgen)) {
    return {
      volume: name, code: 'peer-promoted',
      message: `volume ${name} is primary on both nodes: ${peer} was promoted after this node's last write (failover); ` +
        `fail back with \`offsite demote ${name}\` here, and this node's volume becomes ${peer}'s secondary (or set failback: auto)`,
    };
  }
  if (rgen !== undefined && local.generation.slice(1).includes(rgen)) {
    return {
      volume: name, code: 'two-primaries',
      message: `volume ${name} is primary on both nodes: this node was promoted after ${peer}'s last write (failover); ` +
        `run \`offsite demote ${name}\` on ${peer} to make it the secondary`,
    };
  }
  return {
    volume: name, code: 'split-brain',
    message: `volume ${name}: split brain: primary on both nodes, and both took writes while apart ` +
      `(generations ${lgen ?? '-'} here, ${rgen ?? '-'} on ${peer}; ` +
      `${changes(local, 'this node')}, ${changes(remote, peer)}). ` +
      `Nothing is synced until you choose: on the node whose data is to be dropped run \`offsite demote ${name} --discard-my-data\``,
  };
}

/** "site-b has 1.0 MiB of changes the other never received" (what a side knows of its own divergence). */
function changes(v: HelloVolume, who: string): string {
  if (v.changedBytes === undefined) return `${who}: changes unknown`;
  return `${who} has ${formatBytes(v.changedBytes)} of changes its peer never received`;
}
