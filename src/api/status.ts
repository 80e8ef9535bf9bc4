// The node's status as operators and tools see it: GET /api/v1/status, `offsite status`.
import type { VolumeEntry } from '../node/daemon.js';
import type { LinkManager } from '../node/links.js';
import type { VerifyRun } from '../link/volume-shipper.js';
import { formatCompression } from '../compress/setting.js';

export interface VolumeStatus {
  name: string;
  role: 'primary' | 'secondary';
  peer: string | null;
  /** "connected", "disconnected", or "none" for a volume without a peer. */
  link: string;
  /** Journal data not yet acked by the peer. */
  backlogBytes: number;
  backlogRecords: number;
  /**
   * Primary: the RPO now: the age of the oldest write a promote at the peer would lose
   * (not yet acked, or acked but past the newest flush point the peer could present,
   * such as inside a coalesced unit); 0 when none.
   */
  lagSeconds: number;
  /**
   * This side serves a flush-point image of the primary (a secondary: false only before
   * its first sync ends, or while an apply that failed part-way waits to be redone).
   */
  consistent: boolean;
  /** Secondary: the unit being applied now (readers wait for it; it is no inconsistency), or null. */
  applying: { fromSeq: number; toSeq: number; seconds: number } | null;
  sizeBytes: number;
  /** "journal", "bitmap" (after an overflow: regions await resync) or "none". */
  tracking: string;
  journalUsedBytes: number;
  journalCapacityBytes: number;
  epoch: number;
  dirtyBytes: number;
  hostBytes: number;
  /** Primary: bytes sent to the peer for this volume since the daemon started (record frames and its control frames, before TLS). */
  wireBytes: number;
  /** Primary: the online verify of this daemon's run (null: none yet). */
  verify: { state: 'running' | 'done' | 'failed'; checkedRegions: number; totalRegions: number; regionSize: number; differingRegions: number[]; repair: boolean; message: string; rateBytesPerSecond: number; etaSeconds: number } | null;
  /**
   * Primary: what shipping does to the link (since the daemon started): journal record
   * bytes shipped, zero writes sent as Zeroes records, what zstd took in and gave back,
   * records coalescing sent as Skip records (their payload stayed home), the ratio of
   * the host's journal bytes to wire bytes, rates (smoothed over about 5 s) and the
   * time the backlog takes to drain at them (null: it is not draining).
   */
  shipping: {
    compression: string; level: number | null;
    recordBytes: number; zeroBytes: number; compressedInBytes: number; compressedOutBytes: number; compressionRatio: number;
    coalesce: boolean; coalescedRecords: number; coalescedBytes: number;
    /** The link's round trip (heartbeat echoes, smoothed; null: not measured yet) and the shipper's window now. */
    rttMs: number | null; windowBytes: number | null;
    /**
     * What the link carries when it is the bottleneck (its cap, or its rate measured
     * while data waited for it; null: not known yet) and the batch that follows from it.
     */
    capacityBytesPerSecond: number | null; batchBytes: number | null;
    hostRateBytesPerSecond: number; recordRateBytesPerSecond: number; wireRateBytesPerSecond: number; drainSeconds: number | null;
  } | null;
  /** Primary: shipping paused by the operator (offsite pause). */
  paused: boolean;
  /** The link's rate cap now, schedule included (bytes per second; null: none). */
  linkRateBytesPerSecond: number | null;
  overflows: number;
  /** The volume's UUID (born on the primary; empty on a secondary that has not met it yet). */
  uuid: string;
  /** Generation identifiers, newest first (for split-brain detection). */
  generation: string[];
  /** A resync round is open (the first sync, or after an overflow). */
  resyncing: boolean;
  /** Primary: bytes of the round not yet sent, and the round's size when it began. */
  resyncLeftBytes: number;
  resyncTotalBytes: number;
  /** Primary: data bytes resync rounds have sent since the daemon started. */
  resyncBytes: number;
  /** Primary: bytes a first sync found equal by hash on both sides (not sent), since the daemon started. */
  resyncSeededBytes: number;
  /** Primary: bytes of region hashes the peer sent for a first sync by checksum. */
  resyncHashBytes: number;
  /** Primary: the round's average rate so far (bytes of regions per second) and the time left at that rate. */
  resyncRateBytesPerSecond: number;
  resyncEtaSeconds: number;
  /** Secondary: the held checkpoint (frozen image, export VOLUME@checkpoint), or null. */
  checkpoint: { label: string; createdAt: number; holdUntil: number | null; appliedSeq: number; export: string } | null;
  /** Secondary: the DR drill running over the checkpoint (writable export VOLUME@drill), or null. */
  drill: { export: string; bytesWritten: number } | null;
}

export interface NodeStatus {
  node: string;
  version: string;
  uptimeSeconds: number;
  volumes: VolumeStatus[];
}

export function volumeStatus(e: VolumeEntry, links: LinkManager | null = null, now = Date.now()): VolumeStatus {
  const j = e.journaled;
  const link = e.config.peer ? (links?.linkState(e.config.peer) ?? 'disconnected') : 'none';
  const base = {
    name: e.config.name,
    role: e.role,
    peer: e.config.peer ?? null,
    sizeBytes: e.volume.size,
    uuid: e.identity?.uuid ?? '',
    generation: e.identity?.generations ?? [],
    resyncing: Boolean(e.journaled?.roundStart || e.replica?.round),
    resyncLeftBytes: e.journaled ? e.journaled.resyncLeftBytes : 0,
    resyncTotalBytes: e.journaled?.roundStart ? e.journaled.roundTotalBytes : 0,
    resyncBytes: e.journaled?.journal.resyncBytes ?? 0,
    resyncSeededBytes: e.journaled?.seededBytes ?? 0,
    resyncHashBytes: e.journaled?.hashBytes ?? 0,
    ...resyncRate(e, now),
    wireBytes: links?.wireBytes(e.config.name) ?? 0,
    shipping: e.journaled && e.config.peer && links ? shippingStatus(e.config.name, e.config.peer, e.journaled.journal.backlogBytes, links) : null,
    paused: links?.isPaused(e.config.name) ?? false,
    verify: verifyStatus(links?.verifyOf(e.config.name) ?? null, now),
    linkRateBytesPerSecond: e.config.peer && links ? links.rateNow(e.config.peer, now) : null,
    checkpoint: e.replica?.checkpoint ? { ...e.replica.checkpoint, export: `${e.config.name}@checkpoint` } : null,
    drill: e.drill ? { export: e.drill.name, bytesWritten: e.drill.bytesWritten } : null,
    applying: e.replica?.applyingUnit ? { fromSeq: e.replica.applyingUnit.from, toSeq: e.replica.applyingUnit.to, seconds: Math.round((now - e.replica.applyingUnit.since) / 100) / 10 } : null,
  };
  if (e.replica) {
    const log = e.replica.log;
    return {
      ...base, link, backlogBytes: log.backlogBytes, backlogRecords: log.backlogRecords, lagSeconds: 0,
      // Between two flush points only while a failed apply waits to be redone.
      consistent: e.replica.consistent, tracking: 'replica', journalUsedBytes: log.usedBytes, journalCapacityBytes: log.capacity,
      epoch: log.epoch, dirtyBytes: 0, hostBytes: log.hostBytes, overflows: 0,
    };
  }
  if (!j) {
    return {
      ...base, link, backlogBytes: 0, backlogRecords: 0, lagSeconds: 0,
      // A primary's own volume is its own flush-point image; a replica is not known
      // to be one until replication says so.
      consistent: e.role === 'primary', tracking: 'none', journalUsedBytes: 0, journalCapacityBytes: 0,
      epoch: 0, dirtyBytes: 0, hostBytes: 0, overflows: 0,
    };
  }
  const journal = j.journal;
  return {
    ...base,
    link,
    backlogBytes: j.mode === 'bitmap' ? j.bitmap.dirtyBytes : journal.backlogBytes,
    backlogRecords: journal.backlogRecords,
    // What a promote at the peer would lose now (acked records inside a coalesced unit count).
    lagSeconds: Math.round((links?.lagMsOf(e.config.name, now) ?? journal.lagMs(now)) / 100) / 10,
    consistent: true,
    tracking: j.mode,
    journalUsedBytes: journal.usedBytes,
    journalCapacityBytes: journal.capacity,
    epoch: journal.epoch,
    dirtyBytes: j.bitmap.dirtyBytes,
    hostBytes: journal.hostBytes,
    overflows: j.overflows,
  };
}

function resyncRate(e: VolumeEntry, now: number): { resyncRateBytesPerSecond: number; resyncEtaSeconds: number } {
  const j = e.journaled;
  if (!j?.roundStart) return { resyncRateBytesPerSecond: 0, resyncEtaSeconds: 0 };
  const done = Math.max(0, j.roundTotalBytes - j.resyncLeftBytes);
  const secs = Math.max(0.001, (now - j.roundStartedAt) / 1000);
  const rate = done / secs;
  return { resyncRateBytesPerSecond: Math.round(rate), resyncEtaSeconds: rate > 0 ? Math.round(j.resyncLeftBytes / rate) : 0 };
}

function verifyStatus(v: VerifyRun | null, now: number): VolumeStatus['verify'] {
  if (!v) return null;
  const secs = Math.max(0.001, (now - v.startedAt) / 1000);
  const rate = (v.checkedRegions * v.regionSize) / secs;
  const left = (v.end - v.checkedRegions) * v.regionSize;
  return {
    state: v.state, checkedRegions: v.checkedRegions, totalRegions: v.end, regionSize: v.regionSize, differingRegions: v.differing.slice(0, 1000),
    repair: v.repair, message: v.message, rateBytesPerSecond: Math.round(rate), etaSeconds: v.state === 'running' && rate > 0 ? Math.round(left / rate) : 0,
  };
}

function shippingStatus(volume: string, peer: string, backlog: number, links: LinkManager): VolumeStatus['shipping'] {
  const st = links.packStats(volume);
  const c = links.compressionOf(peer);
  const r = links.ratesOf(volume);
  const wire = links.wireBytes(volume);
  const draining = r.records - r.host;
  const coalesced = links.coalescedOf(volume);
  return {
    compression: formatCompression(c.setting), level: c.level,
    coalesce: links.coalesceOn(peer), coalescedRecords: coalesced.records, coalescedBytes: coalesced.bytes,
    rttMs: links.rttOf(peer), windowBytes: links.windowOf(volume),
    capacityBytesPerSecond: ((c) => (c === null ? null : Math.round(c)))(links.capacityOf(peer)), batchBytes: links.batchOf(volume),
    recordBytes: st.recordBytes, zeroBytes: st.zeroBytes, compressedInBytes: st.compressedIn, compressedOutBytes: st.compressedOut,
    compressionRatio: wire > 0 ? Math.round(((st.recordBytes + coalesced.bytes) / wire) * 100) / 100 : 1,
    hostRateBytesPerSecond: Math.round(r.host), recordRateBytesPerSecond: Math.round(r.records), wireRateBytesPerSecond: Math.round(r.wire),
    drainSeconds: backlog === 0 ? 0 : draining > 1 ? Math.round(backlog / draining) : null,
  };
}
