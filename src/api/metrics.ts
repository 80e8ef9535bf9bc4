// GET /metrics in the Prometheus text format (prom-client). Every figure is read
// from the node's status when scraped: no timers, nothing kept between scrapes.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { NodeStatus, PeerStatus, VolumeStatus } from '../contract/status.js';

export function metricsRegistry(status: () => NodeStatus): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'offsite_' });
  const volumes = (): VolumeStatus[] => status().volumes;
  const gauge = (name: string, help: string, value: (v: VolumeStatus) => number): void => {
    new Gauge({
      name, help, labelNames: ['volume'], registers: [registry],
      collect() {
        this.reset();
        for (const v of volumes()) this.set({ volume: v.name }, value(v));
      },
    });
  };
  const counter = (name: string, help: string, value: (v: VolumeStatus) => number): void => {
    new Counter({
      name, help, labelNames: ['volume'], registers: [registry],
      collect() {
        this.reset();
        for (const v of volumes()) this.inc({ volume: v.name }, value(v));
      },
    });
  };
  // Each peer of each volume (status `peers`, docs/PEERS.md): on a primary one per secondary.
  const peerGauge = (name: string, help: string, value: (p: PeerStatus) => number): void => {
    new Gauge({
      name, help, labelNames: ['volume', 'peer'], registers: [registry],
      collect() {
        this.reset();
        for (const v of volumes()) for (const p of v.peers) this.set({ volume: v.name, peer: p.name }, value(p));
      },
    });
  };
  peerGauge('offsite_peer_link_up', 'The link to this peer of the volume is up (1) or not (0).', (p) => (p.link === 'connected' ? 1 : 0));
  peerGauge('offsite_peer_backlog_bytes', 'Primary: journal bytes this peer has not acked (dirty regions in bitmap tracking); secondary: its receive log\'s.',
    (p) => p.backlogBytes);
  peerGauge('offsite_peer_lag_seconds', 'Primary: the age of the oldest change a promote at this peer would lose now.', (p) => p.lagSeconds);
  peerGauge('offsite_peer_acked_seq', 'Primary: the highest record this peer acked as durable; secondary: the highest it holds durably.', (p) => p.ackedSeq);
  peerGauge('offsite_peer_resync_active', 'A resync round with this peer is open (1) or not (0).', (p) => (p.resyncing ? 1 : 0));
  peerGauge('offsite_peer_detached', 'Primary: this peer fell far behind and is kept in a dirty bitmap of its own (1), not the journal (0).',
    (p) => (p.detached ? 1 : 0));
  peerGauge('offsite_peer_first_sync_waiting', 'Primary: this new secondary\'s first sync waits for another peer\'s resync round to end (1), or not (0).',
    (p) => (p.firstSyncWaitsFor ? 1 : 0));
  peerGauge('offsite_peer_volume_unavailable', 'The peer could not open this volume (1; its Hello said so): nothing of it flows to it, or it serves it (0).',
    (p) => (p.unavailable ? 1 : 0));
  peerGauge('offsite_peer_volume_conflict', 'The link to this peer is up but does not carry the volume: its roles conflict there ' +
    '(a split brain, two primaries, ...; the status says which and what to do) (1), or not (0).', (p) => (p.conflict ? 1 : 0));
  new Gauge({
    name: 'offsite_volume_unavailable',
    help: 'A configured volume this node could not open (1): not served, not linked; the status says why and a reload tries again.',
    labelNames: ['volume'], registers: [registry],
    collect() {
      this.reset();
      for (const u of status().unavailable ?? []) this.set({ volume: u.name }, 1);
    },
  });
  new Gauge({
    name: 'offsite_volume_info', help: 'One per volume: its role, peer and UUID as labels.',
      labelNames: ['volume', 'role', 'peer', 'uuid'], registers: [registry],
    collect() {
      this.reset();
      for (const v of volumes()) this.set({ volume: v.name, role: v.role, peer: v.peer ?? '', uuid: v.uuid }, 1);
    },
  });
  gauge('offsite_volume_size_bytes', 'The volume\'s size as its hosts see it (it grows at a reload that raises size:, docs/CONFIG.md).',
    (v) => v.sizeBytes);
  gauge('offsite_volume_link_up', 'The link to the volume\'s peer is up (1) or not (0).', (v) => (v.link === 'connected' ? 1 : 0));
  gauge('offsite_volume_backlog_bytes', 'Journal (primary) or receive-log (secondary) bytes not yet acked or applied.', (v) => v.backlogBytes);
  gauge('offsite_volume_lag_seconds',
    'The RPO now: age of the oldest change a promote at the peer would lose (unacked, or acked past the newest flush point the peer could ' +
    'present).', (v) => v.lagSeconds);
  gauge('offsite_volume_consistent', 'The volume is a flush-point image of the primary (1) or not (0).', (v) => (v.consistent ? 1 : 0));
  gauge('offsite_volume_bitmap_mode', 'Changes are tracked in the dirty bitmap (the journal overflowed) (1) or journaled (0).',
    (v) => (v.tracking === 'bitmap' ? 1 : 0));
  gauge('offsite_volume_dirty_bytes', 'Bytes of regions marked in the dirty bitmap, waiting for a resync.', (v) => v.dirtyBytes);
  gauge('offsite_volume_journal_used_bytes', 'Bytes the journal or receive log holds.', (v) => v.journalUsedBytes);
  gauge('offsite_volume_journal_capacity_bytes', 'The journal\'s or receive log\'s bound.', (v) => v.journalCapacityBytes);
  gauge('offsite_volume_resync_active', 'A sync or resync round is open (1) or not (0).', (v) => (v.resyncing ? 1 : 0));
  gauge('offsite_volume_resync_left_bytes', 'Bytes of the open round not yet sent.', (v) => v.resyncLeftBytes);
  gauge('offsite_volume_resync_total_bytes', 'Bytes of the open round when it began.', (v) => v.resyncTotalBytes);
  gauge('offsite_volume_checkpoint_held', 'A checkpoint is held on this (secondary) volume (1) or not (0).', (v) => (v.checkpoint ? 1 : 0));
  gauge('offsite_volume_checkpoint_created_seconds', 'When the held checkpoint was taken (Unix time; 0: none).',
    (v) => (v.checkpoint ? v.checkpoint.createdAt / 1000 : 0));
  gauge('offsite_volume_history_bytes', 'Bytes of history a secondary keeps (docs/HISTORY.md; 0: none).', (v) => v.history?.bytes ?? 0);
  gauge('offsite_volume_history_points', 'Restore points the secondary\'s history opens.', (v) => v.history?.points ?? 0);
  gauge('offsite_volume_history_oldest_seconds', 'The primary\'s time of the oldest restore point (Unix time; 0: none).',
    (v) => (v.history?.oldest ? v.history.oldest.time / 1000 : 0));
  counter('offsite_volume_history_dropped_points_total', 'Restore points dropped because the history reached its max, since the daemon started.',
    (v) => v.history?.droppedForSize ?? 0);
  counter('offsite_volume_host_bytes_total',
    'Bytes the host wrote (primary) or the receive log took (secondary), since the daemon started.', (v) => v.hostBytes);
  counter('offsite_volume_wire_bytes_total', 'Bytes of record frames sent to the peer, since the daemon started.', (v) => v.wireBytes);
  counter('offsite_volume_resync_bytes_total', 'Data bytes resync rounds sent, since the daemon started.', (v) => v.resyncBytes);
  counter('offsite_volume_record_bytes_total', 'Journal record bytes shipped to the peer (before compression, after coalescing), since the daemon started.',
    (v) => v.shipping?.recordBytes ?? 0);
  counter('offsite_volume_coalesced_bytes_total', 'Payload bytes coalescing kept off the link (records a later one covered), since the daemon started.',
    (v) => v.shipping?.coalescedBytes ?? 0);
  counter('offsite_volume_zero_bytes_total', 'Bytes of all-zero writes sent as 56-byte Zeroes records, since the daemon started.',
    (v) => v.shipping?.zeroBytes ?? 0);
  gauge('offsite_volume_link_rtt_seconds', 'The link\'s round trip from heartbeat echoes, smoothed (0: not measured yet).',
    (v) => (v.shipping?.rttMs ?? 0) / 1000);
  gauge('offsite_volume_drain_seconds', 'Time the backlog takes to drain at the current rates (-1: not draining).',
    (v) => (v.shipping ? v.shipping.drainSeconds ?? -1 : 0));
  gauge('offsite_volume_iscsi_sessions', 'iSCSI sessions logged in to the volume\'s target and its checkpoint and drill targets (0 also when iSCSI is off).',
    (v) => (v.iscsi?.sessions.length ?? 0) + (v.iscsi?.exports.reduce((n, x) => n + x.sessions.length, 0) ?? 0));
  counter('offsite_volume_overflows_total', 'Times the journal overflowed into the dirty bitmap, since the daemon started.', (v) => v.overflows);
  return registry;
}
