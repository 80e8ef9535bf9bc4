// OFFSITE-MIB (mibs/OFFSITE-MIB.txt) in code: its OIDs, its enumerations, and the
// mapping from the node's status (GET /api/v1/status) to MIB values. Pure: no
// sockets, so it is unit-tested against the MIB file itself.
import type { GroupStatus, NodeStatus, PeerStatus, VolumeStatus } from '../contract/status.js';

/**
 * enterprises.32473: the Private Enterprise Number IANA reserves for documentation
 * (RFC 5612). A placeholder until Offsite registers its own.
 */
export const OFFSITE_MIB = '1.3.6.1.4.1.32473';
export const NOTIFICATIONS = `${OFFSITE_MIB}.0`;
export const NODE = `${OFFSITE_MIB}.1.1`;
export const VOLUME_ENTRY = `${OFFSITE_MIB}.1.2.1`;
export const NOTIFY_TEXT = `${OFFSITE_MIB}.1.3`;
export const GROUP_ENTRY = `${OFFSITE_MIB}.1.4.1`;
export const PEER_ENTRY = `${OFFSITE_MIB}.1.5.1`;

/** SNMPv2-MIB's sysUpTime.0 and snmpTrapOID.0, the first two varbinds of every notification. */
export const SYS_UPTIME_0 = '1.3.6.1.2.1.1.3.0';
export const SNMP_TRAP_OID_0 = '1.3.6.1.6.3.1.1.4.1.0';

/** Value kinds, as the agent and the trap sender encode them. */
export type Kind = 'string' | 'integer' | 'unsigned' | 'gauge' | 'timeticks' | 'counter' | 'counter64' | 'oid';

/** SNMPv2-MIB's system group (RFC 3418), which every agent serves: sub-identifier under `system`, name, kind. */
export const SYSTEM = '1.3.6.1.2.1.1';
export const SYSTEM_SCALARS = [
  { id: 1, name: 'sysDescr', kind: 'string' },
  { id: 2, name: 'sysObjectID', kind: 'oid' },
  { id: 3, name: 'sysUpTime', kind: 'timeticks' },
  { id: 4, name: 'sysContact', kind: 'string' },
  { id: 5, name: 'sysName', kind: 'string' },
  { id: 6, name: 'sysLocation', kind: 'string' },
  { id: 7, name: 'sysServices', kind: 'integer' },
] as const satisfies ReadonlyArray<{ id: number; name: string; kind: Kind }>;

export type SystemName = (typeof SYSTEM_SCALARS)[number]['name'];

/** The node's scalars: sub-identifier under offsiteNode, name, kind. */
export const NODE_SCALARS = [
  { id: 1, name: 'offsiteNodeName', kind: 'string' },
  { id: 2, name: 'offsiteNodeVersion', kind: 'string' },
  { id: 3, name: 'offsiteNodeUptime', kind: 'timeticks' },
  { id: 4, name: 'offsiteNodeVolumeCount', kind: 'unsigned' },
  { id: 5, name: 'offsiteNodeLagAlarmThreshold', kind: 'unsigned' },
  { id: 6, name: 'offsiteNodeUnavailableCount', kind: 'unsigned' },
  { id: 7, name: 'offsiteNodeUnavailable', kind: 'string' },
] as const satisfies ReadonlyArray<{ id: number; name: string; kind: Kind }>;

/** The columns of offsiteVolumeTable (offsiteVolumeIndex, column 1, is not-accessible). */
export const VOLUME_COLUMNS = [
  { id: 2, name: 'offsiteVolumeName', kind: 'string' },
  { id: 3, name: 'offsiteVolumeRole', kind: 'integer' },
  { id: 4, name: 'offsiteVolumePeer', kind: 'string' },
  { id: 5, name: 'offsiteVolumeLinkState', kind: 'integer' },
  { id: 6, name: 'offsiteVolumeBacklogBytes', kind: 'counter64' },
  { id: 7, name: 'offsiteVolumeLagSeconds', kind: 'gauge' },
  { id: 8, name: 'offsiteVolumeConsistent', kind: 'integer' },
  { id: 9, name: 'offsiteVolumeTracking', kind: 'integer' },
  { id: 10, name: 'offsiteVolumeCheckpointState', kind: 'integer' },
  { id: 11, name: 'offsiteVolumeCheckpointLabel', kind: 'string' },
  { id: 12, name: 'offsiteVolumeHostBytes', kind: 'counter64' },
  { id: 13, name: 'offsiteVolumeWireBytes', kind: 'counter64' },
  { id: 14, name: 'offsiteVolumeCheckpointControl', kind: 'integer' },
  { id: 15, name: 'offsiteVolumeIscsiTarget', kind: 'string' },
  { id: 16, name: 'offsiteVolumeIscsiSessions', kind: 'gauge' },
  { id: 17, name: 'offsiteVolumeHistoryPoints', kind: 'gauge' },
  { id: 18, name: 'offsiteVolumeHistoryBytes', kind: 'counter64' },
  { id: 19, name: 'offsiteVolumeHistoryOldest', kind: 'unsigned' },
  { id: 20, name: 'offsiteVolumeHistoryDropped', kind: 'counter' },
  { id: 21, name: 'offsiteVolumeSize', kind: 'counter64' },
] as const satisfies ReadonlyArray<{ id: number; name: string; kind: Kind }>;

/** The columns of offsiteGroupTable, one row per consistency group (offsiteGroupIndex, column 1, is not-accessible). */
export const GROUP_COLUMNS = [
  { id: 2, name: 'offsiteGroupName', kind: 'string' },
  { id: 3, name: 'offsiteGroupMembers', kind: 'string' },
  { id: 4, name: 'offsiteGroupRole', kind: 'integer' },
  { id: 5, name: 'offsiteGroupConsistent', kind: 'integer' },
  { id: 6, name: 'offsiteGroupReason', kind: 'string' },
  { id: 7, name: 'offsiteGroupPoint', kind: 'counter64' },
  { id: 8, name: 'offsiteGroupTogether', kind: 'integer' },
  { id: 9, name: 'offsiteGroupLagSeconds', kind: 'gauge' },
] as const satisfies ReadonlyArray<{ id: number; name: string; kind: Kind }>;

export type GroupColumnName = (typeof GROUP_COLUMNS)[number]['name'];

/**
 * The columns of offsitePeerTable, one row per peer of each volume, indexed by the
 * volume's offsiteVolumeIndex and offsitePeerIndex (column 1, not-accessible).
 */
export const PEER_COLUMNS = [
  { id: 2, name: 'offsitePeerName', kind: 'string' },
  { id: 3, name: 'offsitePeerLinkState', kind: 'integer' },
  { id: 4, name: 'offsitePeerBacklogBytes', kind: 'counter64' },
  { id: 5, name: 'offsitePeerLagSeconds', kind: 'gauge' },
  { id: 6, name: 'offsitePeerAckedSeq', kind: 'counter64' },
  { id: 7, name: 'offsitePeerResyncing', kind: 'integer' },
  { id: 8, name: 'offsitePeerDetached', kind: 'integer' },
  { id: 9, name: 'offsitePeerFirstSyncWaiting', kind: 'integer' },
] as const satisfies ReadonlyArray<{ id: number; name: string; kind: Kind }>;

export type PeerColumnName = (typeof PEER_COLUMNS)[number]['name'];
export type ColumnName = (typeof VOLUME_COLUMNS)[number]['name'];
export type ScalarName = (typeof NODE_SCALARS)[number]['name'];

export const CHECKPOINT_CONTROL_COLUMN = 14;

export const ROLE = { primary: 1, secondary: 2 } as const;
export const GROUP_ROLE = { primary: 1, secondary: 2, mixed: 3 } as const;
export const LINK_STATE = { connected: 1, disconnected: 2, none: 3 } as const;
export const TRUTH = { true: 1, false: 2 } as const;
export const TRACKING = { none: 1, journal: 2, bitmap: 3, replica: 4 } as const;
export const CHECKPOINT_STATE = { none: 1, held: 2, drill: 3 } as const;
export const CHECKPOINT_CONTROL = { none: 1, create: 2, release: 3, held: 4 } as const;

/** The notifications (sub-identifier under offsiteNotifications) and the objects each carries, in MIB order. */
export const NOTIFICATION_TYPES = {
  linkDown: { id: 1, name: 'offsiteLinkDown', objects: ['offsiteVolumeName', 'offsiteVolumePeer', 'offsiteVolumeLinkState', 'offsiteVolumeBacklogBytes'] },
  linkUp: { id: 2, name: 'offsiteLinkUp', objects: ['offsiteVolumeName', 'offsiteVolumePeer', 'offsiteVolumeLinkState', 'offsiteVolumeBacklogBytes'] },
  journalOverflow: { id: 3, name: 'offsiteJournalOverflow', objects: ['offsiteVolumeName', 'offsiteVolumeTracking', 'offsiteVolumeBacklogBytes'] },
  lagHigh: { id: 4, name: 'offsiteLagHigh', objects: ['offsiteVolumeName', 'offsiteVolumeLagSeconds', 'offsiteVolumeBacklogBytes',
    'offsiteNodeLagAlarmThreshold'] },
  lagNormal: { id: 5, name: 'offsiteLagNormal', objects: ['offsiteVolumeName', 'offsiteVolumeLagSeconds', 'offsiteVolumeBacklogBytes',
    'offsiteNodeLagAlarmThreshold'] },
  promoted: { id: 6, name: 'offsitePromoted', objects: ['offsiteVolumeName', 'offsiteVolumeRole'] },
  demoted: { id: 7, name: 'offsiteDemoted', objects: ['offsiteVolumeName', 'offsiteVolumeRole'] },
  splitBrain: { id: 8, name: 'offsiteSplitBrain', objects: ['offsiteVolumeName', 'offsiteVolumePeer', 'offsiteVolumeRole'] },
  // (A volume set aside has no row: the node's scalars say which and why.)
  volumeUnavailable: { id: 9, name: 'offsiteVolumeUnavailable', objects: ['offsiteNodeUnavailableCount', 'offsiteNodeUnavailable'] },
  volumeAvailable: { id: 10, name: 'offsiteVolumeAvailable', objects: ['offsiteVolumeName', 'offsiteVolumeRole', 'offsiteNodeUnavailableCount'] },
  journalFilling: { id: 11, name: 'offsiteJournalFilling', objects: ['offsiteVolumeName', 'offsiteVolumeLinkState', 'offsiteVolumeBacklogBytes'] },
} as const satisfies Record<string, { id: number; name: string; objects: ReadonlyArray<ColumnName | ScalarName> }>;

export type NoticeKind = keyof typeof NOTIFICATION_TYPES;

/** A value with its kind: what the agent serves and a notification carries. */
export interface MibValue {
  kind: Kind;
  /** Strings for `string`; numbers (whole, at least 0 but for `integer`) otherwise. */
  value: string | number;
}

const MAX_U32 = 0xffff_ffff;

/** A whole number in 0..2^32-1 (Gauge32, Unsigned32, TimeTicks, Counter32): rounded, clamped. */
export function u32(n: number): number {
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(MAX_U32, Math.round(n));
}

/**
 * A Counter64's BER content: big-endian, minimal, with a leading zero byte when the
 * top bit is set (an INTEGER-like encoding, as net-snmp writes it raw). Numbers
 * beyond 2^53 cannot occur in a status (volumes are at most 2^53-1 bytes).
 */
export function counter64(n: number | bigint): Buffer {
  let v = typeof n === 'bigint' ? n : BigInt(Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
  if (v < 0n) v = 0n;
  if (v > 0xffff_ffff_ffff_ffffn) v = 0xffff_ffff_ffff_ffffn;
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return Buffer.from(bytes);
}

/** Decodes what `counter64` encodes (and what net-snmp hands back for a Counter64). */
export function counter64Value(b: Buffer): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

/** A DisplayString holds at most `max` octets (255 by its definition): longer text is cut and ends in "...". */
export function displayString(s: string, max = 255): string {
  if (Buffer.byteLength(s) <= max) return s;
  let cut = s.slice(0, max - 3);
  while (Buffer.byteLength(cut) > max - 3) cut = cut.slice(0, -1);
  return `${cut}...`;
}

function checkpointState(v: VolumeStatus): number {
  if (!v.checkpoint) return CHECKPOINT_STATE.none;
  return v.drill ? CHECKPOINT_STATE.drill : CHECKPOINT_STATE.held;
}

/** One volume's row of offsiteVolumeTable, by column name. */
export function volumeValues(v: VolumeStatus): Record<ColumnName, MibValue> {
  const link = v.link === 'connected' ? LINK_STATE.connected : v.link === 'none' ? LINK_STATE.none : LINK_STATE.disconnected;
  const tracking = TRACKING[v.tracking as keyof typeof TRACKING] ?? TRACKING.none;
  const h = v.history ?? null;
  return {
    offsiteVolumeName: { kind: 'string', value: displayString(v.name, 63) },
    offsiteVolumeRole: { kind: 'integer', value: ROLE[v.role] },
    offsiteVolumePeer: { kind: 'string', value: displayString(v.peer ?? '', 63) },
    offsiteVolumeLinkState: { kind: 'integer', value: link },
    offsiteVolumeBacklogBytes: { kind: 'counter64', value: Math.max(0, Math.floor(v.backlogBytes)) },
    offsiteVolumeLagSeconds: { kind: 'gauge', value: u32(v.lagSeconds) },
    offsiteVolumeConsistent: { kind: 'integer', value: v.consistent ? TRUTH.true : TRUTH.false },
    offsiteVolumeTracking: { kind: 'integer', value: tracking },
    offsiteVolumeCheckpointState: { kind: 'integer', value: checkpointState(v) },
    offsiteVolumeCheckpointLabel: { kind: 'string', value: displayString(v.checkpoint?.label ?? '', 128) },
    offsiteVolumeHostBytes: { kind: 'counter64', value: Math.max(0, Math.floor(v.hostBytes)) },
    offsiteVolumeWireBytes: { kind: 'counter64', value: Math.max(0, Math.floor(v.wireBytes)) },
    offsiteVolumeCheckpointControl: { kind: 'integer', value: v.checkpoint ? CHECKPOINT_CONTROL.held : CHECKPOINT_CONTROL.none },
    offsiteVolumeIscsiTarget: { kind: 'string', value: displayString(v.iscsi?.target ?? '', 223) },
    offsiteVolumeIscsiSessions: {
      kind: 'gauge',
      value: u32((v.iscsi?.sessions.length ?? 0) + (v.iscsi?.exports.reduce((n, x) => n + x.sessions.length, 0) ?? 0)),
    },
    // A secondary's history (docs/HISTORY.md): 0 where the volume keeps none.
    offsiteVolumeHistoryPoints: { kind: 'gauge', value: u32(h?.points ?? 0) },
    offsiteVolumeHistoryBytes: { kind: 'counter64', value: Math.max(0, Math.floor(h?.bytes ?? 0)) },
    offsiteVolumeHistoryOldest: { kind: 'unsigned', value: u32(Math.floor((h?.oldest?.time ?? 0) / 1000)) },
    offsiteVolumeHistoryDropped: { kind: 'counter', value: u32(h?.droppedForSize ?? 0) },
    offsiteVolumeSize: { kind: 'counter64', value: Math.max(0, Math.floor(v.sizeBytes)) },
  };
}

/** One consistency group's row of offsiteGroupTable, by column name. */
export function groupValues(g: GroupStatus): Record<GroupColumnName, MibValue> {
  return {
    offsiteGroupName: { kind: 'string', value: displayString(g.name, 63) },
    offsiteGroupMembers: { kind: 'string', value: displayString(g.members.join(',')) },
    offsiteGroupRole: { kind: 'integer', value: GROUP_ROLE[g.role] },
    offsiteGroupConsistent: { kind: 'integer', value: g.consistent ? TRUTH.true : TRUTH.false },
    offsiteGroupReason: { kind: 'string', value: displayString(g.reason ?? '') },
    offsiteGroupPoint: { kind: 'counter64', value: Math.max(0, Math.floor(g.groupPoint ?? 0)) },
    offsiteGroupTogether: { kind: 'integer', value: g.together ? TRUTH.true : TRUTH.false },
    offsiteGroupLagSeconds: { kind: 'gauge', value: u32(g.lagSeconds) },
  };
}

/** One peer's row of offsitePeerTable, by column name. */
export function peerValues(p: PeerStatus): Record<PeerColumnName, MibValue> {
  return {
    offsitePeerName: { kind: 'string', value: displayString(p.name, 63) },
    offsitePeerLinkState: { kind: 'integer', value: p.link === 'connected' ? LINK_STATE.connected : LINK_STATE.disconnected },
    offsitePeerBacklogBytes: { kind: 'counter64', value: Math.max(0, Math.floor(p.backlogBytes)) },
    offsitePeerLagSeconds: { kind: 'gauge', value: u32(p.lagSeconds) },
    offsitePeerAckedSeq: { kind: 'counter64', value: Math.max(0, Math.floor(p.ackedSeq)) },
    offsitePeerResyncing: { kind: 'integer', value: p.resyncing ? TRUTH.true : TRUTH.false },
    offsitePeerDetached: { kind: 'integer', value: p.detached ? TRUTH.true : TRUTH.false },
    offsitePeerFirstSyncWaiting: { kind: 'integer', value: p.firstSyncWaitsFor ? TRUTH.true : TRUTH.false },
  };
}

/** The system group: sysObjectID is offsiteMIB itself; contact and location are not configured (empty). */
export function systemValues(s: NodeStatus): Record<SystemName, MibValue> {
  return {
    sysDescr: { kind: 'string', value: displayString(`Offsite ${s.version}: disaster-recovery block mirroring, node ${s.node}`) },
    sysObjectID: { kind: 'oid', value: OFFSITE_MIB },
    sysUpTime: { kind: 'timeticks', value: u32(s.uptimeSeconds * 100) },
    sysContact: { kind: 'string', value: '' },
    sysName: { kind: 'string', value: displayString(s.node) },
    sysLocation: { kind: 'string', value: '' },
    // applications (64) + end-to-end (8)
    sysServices: { kind: 'integer', value: 72 },
  };
}

/** The node's scalars. */
export function nodeValues(s: NodeStatus, lagAlarmSeconds: number | null): Record<ScalarName, MibValue> {
  return {
    offsiteNodeName: { kind: 'string', value: displayString(s.node, 63) },
    offsiteNodeVersion: { kind: 'string', value: displayString(s.version, 64) },
    offsiteNodeUptime: { kind: 'timeticks', value: u32(s.uptimeSeconds * 100) },
    offsiteNodeVolumeCount: { kind: 'unsigned', value: u32(s.volumes.length) },
    offsiteNodeLagAlarmThreshold: { kind: 'unsigned', value: u32(lagAlarmSeconds ?? 0) },
    // Volumes set aside (docs/API.md, "A volume that does not open"): not rows of the volume table.
    offsiteNodeUnavailableCount: { kind: 'unsigned', value: u32(s.unavailable?.length ?? 0) },
    offsiteNodeUnavailable: { kind: 'string', value: displayString((s.unavailable ?? []).map((u) => `${u.name}: ${u.error}`).join('; ')) },
  };
}

/** The instance OID of a column for the volume at `index` (1-based), or of a scalar. */
export function instanceOid(name: ColumnName | GroupColumnName | ScalarName, index: number): string {
  const col = VOLUME_COLUMNS.find((c) => c.name === name);
  if (col) return `${VOLUME_ENTRY}.${col.id}.${index}`;
  const gcol = GROUP_COLUMNS.find((c) => c.name === name);
  if (gcol) return `${GROUP_ENTRY}.${gcol.id}.${index}`;
  const sc = NODE_SCALARS.find((c) => c.name === name)!;
  return `${NODE}.${sc.id}.0`;
}
