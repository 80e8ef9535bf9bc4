// The Hello exchange that opens every link (docs/PEER-PROTOCOL.md): each side says
// who it is and which volumes it holds; each pair of volumes must match, with one
// primary. A mismatch is refused with a reason an operator can act on.
import { z } from 'zod';
import { PROTOCOL_VERSION } from './frame.js';
import { formatBytes } from '../config/units.js';

const volumeSchema = z.strictObject({
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
});

const helloSchema = z.strictObject({
  node: z.string().min(1).max(63),
  protocol: z.number().int(),
  /** Record codecs this side decodes (absent: none; "zstd": PackedRecords frames). */
  codecs: z.array(z.string().max(16)).max(8).optional(),
  volumes: z.array(volumeSchema).max(1024),
});

export type HelloVolume = z.infer<typeof volumeSchema>;
export type Hello = z.infer<typeof helloSchema>;

export function encodeHello(h: Hello): Buffer {
  return Buffer.from(JSON.stringify(h), 'utf8');
}

export type HelloCheck =
  | { ok: true; hello: Hello; pairs: Array<{ local: HelloVolume; remote: HelloVolume }> }
  | { ok: false; code: string; message: string; volume?: string };

/**
 * Checks the peer's Hello against ours: `expectedNode` is the name the config gives
 * the peer; `shared` are the volumes this node replicates with it.
 */
export function checkHello(payload: Buffer, expectedNode: string, shared: HelloVolume[]): HelloCheck {
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
  if (hello.protocol !== PROTOCOL_VERSION) {
    return { ok: false, code: 'version', message: `the peer speaks protocol ${hello.protocol}, this node speaks ${PROTOCOL_VERSION}; upgrade the older side` };
  }
  if (hello.node !== expectedNode) {
    return { ok: false, code: 'wrong-node', message: `the peer calls itself "${hello.node}" but this node's config knows it as "${expectedNode}"` };
  }
  const pairs: Array<{ local: HelloVolume; remote: HelloVolume }> = [];
  for (const local of shared) {
    const remote = hello.volumes.find((v) => v.name === local.name);
    if (!remote) {
      return { ok: false, code: 'unknown-volume', message: `volume ${local.name} is configured with peer ${expectedNode}, but ${expectedNode} has no volume of that name` };
    }
    if (remote.size !== local.size) {
      return { ok: false, code: 'size', message: `volume ${local.name} is ${local.size} bytes here and ${remote.size} bytes on ${expectedNode}; the sizes must match` };
    }
    if (remote.role === local.role) {
      return local.role === 'primary'
        ? twoPrimaries(local, remote, expectedNode)
        : { ok: false, code: 'two-secondaries', message: `volume ${local.name} is secondary on both nodes; one must be primary (offsite promote ${local.name} on the node whose data is to be kept)` };
    }
    if (local.uuid && remote.uuid && local.uuid !== remote.uuid) {
      return { ok: false, code: 'uuid', message: `volume ${local.name} here (${local.uuid}) and on ${expectedNode} (${remote.uuid}) are different volumes` };
    }
    const primary = local.role === 'primary' ? local : remote;
    const secondary = local.role === 'primary' ? remote : local;
    const sgen = secondary.generation[0];
    if (sgen !== undefined && primary.generation.length > 0 && !primary.generation.includes(sgen)) {
      // The secondary's data carries writes the primary's history never had.
      const where = local.role === 'secondary' ? 'this node' : expectedNode;
      const other = local.role === 'secondary' ? expectedNode : 'this node';
      return {
        ok: false, code: 'split-brain',
        message: `volume ${local.name}: split brain: the secondary (${where}) took writes the primary (${other}) never saw ` +
          `(${changes(primary, local.role === 'primary' ? 'this node' : expectedNode)}) ` +
          `(its generation ${sgen} is not in the primary's history ${primary.generation.join(', ')}). Nothing is synced until you choose: ` +
          `to keep the primary's data run \`offsite demote ${local.name} --discard-my-data\` on ${where}; to keep the secondary's, demote the primary and promote the secondary`,
      };
    }
    pairs.push({ local, remote });
  }
  return { ok: true, hello, pairs };
}

function twoPrimaries(local: HelloVolume, remote: HelloVolume, peer: string): HelloCheck {
  const name = local.name;
  const lgen = local.generation[0];
  const rgen = remote.generation[0];
  if (lgen === rgen || local.uuid !== remote.uuid) {
    return { ok: false, code: 'two-primaries', message: `volume ${name} is primary on both nodes (same generation ${lgen ?? '-'}); demote one (offsite demote ${name}) before they can sync` };
  }
  if (lgen !== undefined && remote.generation.slice(1).includes(lgen)) {
    return { ok: false, code: 'peer-promoted', volume: name, message: `volume ${name} is primary on both nodes: ${peer} was promoted after this node's last write (failover); fail back with \`offsite demote ${name}\` here, and this node's volume becomes ${peer}'s secondary (or set failback: auto)` };
  }
  if (rgen !== undefined && local.generation.slice(1).includes(rgen)) {
    return { ok: false, code: 'two-primaries', message: `volume ${name} is primary on both nodes: this node was promoted after ${peer}'s last write (failover); run \`offsite demote ${name}\` on ${peer} to make it the secondary` };
  }
  return {
    ok: false, code: 'split-brain',
    message: `volume ${name}: split brain: primary on both nodes, and both took writes while apart (generations ${lgen ?? '-'} here, ${rgen ?? '-'} on ${peer}; ` +
      `${changes(local, 'this node')}, ${changes(remote, peer)}). ` +
      `Nothing is synced until you choose: on the node whose data is to be dropped run \`offsite demote ${name} --discard-my-data\``,
  };
}

/** "site-b has 1.0 MiB of changes the other never received" (what a side knows of its own divergence). */
function changes(v: HelloVolume, who: string): string {
  if (v.changedBytes === undefined) return `${who}: changes unknown`;
  return `${who} has ${formatBytes(v.changedBytes)} of changes its peer never received`;
}
