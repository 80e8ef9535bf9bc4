// The node's status (src/contract/status.ts), built from its volumes and links: what
// GET /api/v1/status serves and `offsite status`, the dashboard, /metrics and SNMP read.
import type { IscsiSessionStatus, IscsiStatus, NodeStatus, PeerStatus, VolumeStatus } from '../contract/status.js';
import type { VolumeEntry } from './volume-entry.js';
import type { LinkManager } from './links.js';
import type { VerifyRun } from '../sync/verify.js';
import { formatCompression } from '../compress/setting.js';

/** What the status reads of the iSCSI front end: target names, and the sessions logged in now. */
export interface IscsiView {
  nameOf(exportName: string): string;
  sessions(): Array<{ exportName: string; initiator: string; address: string }>;
  /** The exports served now (a volume, VOLUME@checkpoint, VOLUME@drill). */
  exports(): string[];
}

/** The whole node's status now. */
export function nodeStatus(
  node: string,
  version: string,
  startedAt: number,
  entries: readonly VolumeEntry[],
  links: LinkManager | null,
  now = Date.now(),
  iscsi: IscsiView | null = null,
): NodeStatus {
  const sessions = iscsi?.sessions() ?? [];
  const served = iscsi?.exports() ?? [];
  return {
    node,
    version,
    uptimeSeconds: Math.round((now - startedAt) / 1000),
    volumes: entries.map((e) => ({ ...volumeStatus(e, links, now), iscsi: iscsi ? iscsiStatus(e.config.name, iscsi, sessions, served) : null })),
  };
}

function iscsiStatus(volume: string, view: IscsiView, sessions: ReturnType<IscsiView['sessions']>, served: string[]): IscsiStatus {
  const of = (exportName: string): IscsiSessionStatus[] =>
    sessions.filter((s) => s.exportName === exportName).map((s) => ({ initiator: s.initiator, address: s.address }));
  return {
    target: view.nameOf(volume),
    lun: 0,
    sessions: of(volume),
    exports: served.filter((x) => x.startsWith(`${volume}@`)).map((x) => ({ export: x, target: view.nameOf(x), sessions: of(x) })),
  };
}

export function volumeStatus(e: VolumeEntry, links: LinkManager | null = null, now = Date.now()): Omit<VolumeStatus, 'iscsi'> {
  const j = e.journaled;
  // A secondary's peer is the primary it follows (with several peers, one of its set: docs/PEERS.md).
  const peer = e.role === 'secondary' && e.config.peers.length > 1 ? (links?.followedOf(e.config.name) ?? e.config.peer) : e.config.peer;
  const link = peer ? (links?.linkState(peer) ?? 'disconnected') : 'none';
  const common = {
    name: e.config.name,
    role: e.role,
    peer: peer ?? null,
    sizeBytes: e.volume.size,
    uuid: e.identity?.uuid ?? '',
    generation: e.identity?.generations ?? [],
    // (A first sync about to open, or a peer starting again to be compared at its next link, is not current either.)
    resyncing: Boolean(e.journaled?.roundStart || e.journaled?.seed.pending || e.replica?.round || (e.journaled && links?.isStartingAgain(e.config.name))),
    resyncLeftBytes: e.journaled ? e.journaled.resyncLeftBytes : 0,
    resyncTotalBytes: e.journaled?.roundStart ? e.journaled.round.totalBytes : 0,
    resyncBytes: e.journaled?.journal.resyncBytes ?? 0,
    resyncSeededBytes: e.journaled?.seed.seededBytes ?? 0,
    resyncHashBytes: e.journaled?.seed.hashBytes ?? 0,
    ...resyncRate(e, now),
    wireBytes: links?.figures.wireBytes(e.config.name) ?? 0,
    shipping: e.journaled && e.config.peer && links ? shippingStatus(e.config.name, e.config.peer, e.journaled.journal.backlogBytes, links) : null,
    paused: links?.isPaused(e.config.name) ?? false,
    verify: verifyStatus(links?.verifyOf(e.config.name) ?? null, now),
    linkRateBytesPerSecond: e.config.peer && links ? links.rateNow(e.config.peer, now) : null,
    checkpoint: e.replica?.checkpoint ? { ...e.replica.checkpoint, export: `${e.config.name}@checkpoint` } : null,
    history: historyStatus(e),
    drill: e.drill ? { export: e.drill.name, bytesWritten: e.drill.bytesWritten } : null,
    applying: e.replica?.applyingUnit
      ? {
        fromSeq: e.replica.applyingUnit.from,
        toSeq: e.replica.applyingUnit.to,
        seconds: Math.round((now - e.replica.applyingUnit.since) / 100) / 10,
      }
      : null,
  };
  const base = { ...common, peers: peersStatus(e, links, now) };
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
    lagSeconds: Math.round((links?.figures.lagMsOf(e.config.name, now) ?? journal.lagMs(now)) / 100) / 10,
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

/** Each peer of the volume (a primary's secondaries from its cursors, peer-cursors.ts; a secondary's primary). */
function peersStatus(e: VolumeEntry, links: LinkManager | null, now: number): PeerStatus[] {
  const linkOf = (peer: string): string => links?.linkState(peer) ?? 'disconnected';
  const j = e.journaled;
  if (j) {
    return j.cursors.peers.map((name) => {
      const acked = j.cursors.of(name);
      const lagMs = links?.lagMsOf(e.config.name, name, now) ?? j.journal.lagMsAfter(acked, now);
      // A detached peer (docs/PEERS.md): its own bitmap, and the journal after what is marked there.
      const own = j.detached?.bitmapOf(name);
      const marked = j.cursors.detached.find((d) => d.peer === name)?.markedUpTo ?? acked;
      return {
        name, link: linkOf(name), ackedSeq: acked,
        backlogBytes: j.mode === 'bitmap' ? j.bitmap.dirtyBytes : j.journal.bytesAfter(marked) + (own?.dirtyBytes ?? 0),
        backlogRecords: Math.max(0, j.journal.lastSeq - Math.max(acked, j.journal.released)),
        lagSeconds: Math.round(lagMs / 100) / 10, resyncing: j.roundStartFor(name) !== 0 || (links?.isStartingAgain(e.config.name, name) ?? false),
        paused: links?.isPaused(e.config.name) ?? false,
        detached: j.cursors.isDetached(name), firstSyncWaitsFor: links?.firstSyncWaitsFor(e.config.name, name) ?? null,
        unavailable: links?.peerUnavailable(e.config.name, name) ?? null, conflict: links?.conflictOf(e.config.name, name) ?? null,
      };
    });
  }
  const primary = e.config.peers.length > 1 ? (links?.followedOf(e.config.name) ?? e.config.peer) : e.config.peer;
  if (!primary) return [];
  const rp = e.replica;
  return [{
    name: primary, link: linkOf(primary), ackedSeq: rp ? rp.receiver.resumeAfter : 0, backlogBytes: rp ? rp.log.backlogBytes : 0,
    backlogRecords: rp ? rp.log.backlogRecords : 0, lagSeconds: 0, resyncing: Boolean(rp?.round), paused: false, detached: false,
    firstSyncWaitsFor: null, unavailable: links?.peerUnavailable(e.config.name, primary) ?? null,
    conflict: links?.conflictOf(e.config.name, primary) ?? null,
  }];
}

function resyncRate(e: VolumeEntry, now: number): { resyncRateBytesPerSecond: number; resyncEtaSeconds: number } {
  const j = e.journaled;
  if (!j?.roundStart) return { resyncRateBytesPerSecond: 0, resyncEtaSeconds: 0 };
  const done = Math.max(0, j.round.totalBytes - j.resyncLeftBytes);
  const secs = Math.max(0.001, (now - j.round.startedAt) / 1000);
  const rate = done / secs;
  return { resyncRateBytesPerSecond: Math.round(rate), resyncEtaSeconds: rate > 0 ? Math.round(j.resyncLeftBytes / rate) : 0 };
}

function verifyStatus(v: VerifyRun | null, now: number): VolumeStatus['verify'] {
  if (!v) return null;
  // (A verify that ended keeps the rate of its run, not one that falls as time goes on.)
  const elapsedMs = Math.max(0, (v.endedAt ?? now) - v.startedAt);
  const rate = (v.checkedRegions * v.regionSize) / Math.max(0.001, elapsedMs / 1000);
  const left = (v.end - v.checkedRegions) * v.regionSize;
  return {
    state: v.state, checkedRegions: v.checkedRegions, totalRegions: v.end, regionSize: v.regionSize, differingRegions: v.differing.slice(0, 1000),
    repair: v.repair, message: v.message, rateBytesPerSecond: Math.round(rate), etaSeconds: v.state === 'running' && rate > 0 ? Math.round(left / rate) : 0,
    elapsedMs,
  };
}

function shippingStatus(volume: string, peer: string, backlog: number, links: LinkManager): VolumeStatus['shipping'] {
  const st = links.figures.packStats(volume);
  const c = links.compressionOf(peer);
  const r = links.figures.ratesOf(volume);
  const wire = links.figures.wireBytes(volume);
  const draining = r.records - r.host;
  const coalesced = links.figures.coalescedOf(volume);
  return {
    compression: formatCompression(c.setting), level: c.level,
    coalesce: links.coalesceOn(peer), coalescedRecords: coalesced.records, coalescedBytes: coalesced.bytes,
    rttMs: links.rttOf(peer), ackRttMs: links.figures.ackRttOf(volume), windowBytes: links.figures.windowOf(volume),
    capacityBytesPerSecond: ((c) => (c === null ? null : Math.round(c)))(links.capacityOf(peer)), batchBytes: links.figures.batchOf(volume),
    recordBytes: st.recordBytes, zeroBytes: st.zeroBytes, compressedInBytes: st.compressedIn, compressedOutBytes: st.compressedOut,
    compressionRatio: wire > 0 ? Math.round(((st.recordBytes + coalesced.bytes) / wire) * 100) / 100 : 1,
    hostRateBytesPerSecond: Math.round(r.host), recordRateBytesPerSecond: Math.round(r.records), wireRateBytesPerSecond: Math.round(r.wire),
    drainSeconds: backlog === 0 ? 0 : draining > 1 ? Math.round(backlog / draining) : null,
  };
}

/** A secondary's history window (docs/HISTORY.md), or null when it keeps none. */
function historyStatus(e: VolumeEntry): VolumeStatus['history'] {
  const h = e.replica?.history;
  if (!h) return null;
  const points = e.replica!.historyPoints();
  return {
    points: points.length, oldest: points[0] ?? null, newest: points[points.length - 1] ?? null, bytes: h.bytes,
    keepSeconds: h.settings.keepMs === null ? null : h.settings.keepMs / 1000, maxBytes: h.settings.maxBytes, droppedForSize: h.droppedForSize,
  };
}
