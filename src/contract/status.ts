// The node's status as operators and tools see it: GET /api/v1/status, `offsite status`,
// `offsite top`, the dashboard, /metrics and OFFSITE-MIB. The node builds it
// (src/node/status.ts); the API serves it; the CLI, the dashboard and the SNMP agent
// read it. Types only: this module imports nothing, so every side may depend on it.

/**
 * One peer of a volume (docs/API.md, docs/PEERS.md): on a primary, each secondary it
 * ships to, with what that secondary still lacks; on a secondary, its primary.
 */
export interface PeerStatus {
  name: string;
  /** "connected" or "disconnected". */
  link: string;
  /**
   * Primary: the highest record this peer acked as durable (at a start: the journal's
   * release point until it says). Secondary: the highest record it holds durably.
   */
  ackedSeq: number;
  /** Primary: journal data this peer has not acked (in bitmap tracking: the dirty regions). Secondary: its receive log's backlog. */
  backlogBytes: number;
  backlogRecords: number;
  /** Primary: the age of the oldest write a promote at this peer would lose now (0: none). Secondary: 0. */
  lagSeconds: number;
  /** A resync round with this peer is open. */
  resyncing: boolean;
  /** Primary: shipping to this peer paused by the operator. */
  paused: boolean;
  /**
   * Primary: the peer fell far behind and is kept in a dirty bitmap of its own, not the
   * journal (docs/PEERS.md); it is resynced from that bitmap when it links again.
   */
  detached: boolean;
  /**
   * Primary: this peer is a new secondary whose first sync waits for another peer's
   * resync round to end (whose: "site-b", or "every peer (site-b, site-c)"); it begins
   * then, its link up meanwhile (docs/PEERS.md). null: it waits for none.
   */
  firstSyncWaitsFor: string | null;
  /**
   * The peer could not open this volume (its Hello says so, with why: its file gone, its
   * disk full, …): nothing of the volume flows until it opens there. null: it serves it,
   * or no link has said otherwise.
   */
  unavailable?: string | null;
  /**
   * The link is up but does not carry this volume: its roles or identities on the two
   * nodes conflict (`code`: "split-brain", "two-primaries", "peer-promoted", "old-primary",
   * "two-secondaries", "uuid"), and `message` says what the operator does about it
   * (docs/LINK.md, "Conflicts of one volume"). null: none, or no link.
   */
  conflict?: { code: string; message: string } | null;
}

export interface VolumeStatus {
  name: string;
  role: 'primary' | 'secondary';
  /** The volume's (first) peer; every peer is in `peers`. */
  peer: string | null;
  /** Each peer of the volume and where it stands (empty: not replicated). */
  peers: PeerStatus[];
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
  verify: {
    state: 'running' | 'done' | 'failed';
    checkedRegions: number;
    totalRegions: number;
    regionSize: number;
    differingRegions: number[];
    repair: boolean;
    message: string;
    rateBytesPerSecond: number;
    etaSeconds: number;
    /** Milliseconds from its start to its end (to now while it runs). */
    elapsedMs: number;
  } | null;
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
    /**
     * The link's round trip (heartbeat echoes, smoothed; null: not measured yet), the
     * durable-ack round trip (send to the peer's ack, its sync included: what sizes the
     * window; null: no batch acked yet) and the shipper's window now.
     */
    rttMs: number | null; ackRttMs: number | null; windowBytes: number | null;
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
  /**
   * Secondary: the held checkpoint (export VOLUME@checkpoint), or null: the frozen
   * replica, or with `point` a restore point of the history (the replica stays current).
   */
  checkpoint: { label: string; createdAt: number; holdUntil: number | null; appliedSeq: number; export: string; point?: { seq: number; time: number } } | null;
  /**
   * Secondary keeping history (docs/HISTORY.md): how far back it opens, or null when it
   * keeps none. `oldest`/`newest`: restore points (record, the primary's time in ms).
   */
  history: {
    points: number; oldest: { seq: number; time: number } | null; newest: { seq: number; time: number } | null;
    bytes: number; keepSeconds: number | null; maxBytes: number | null; droppedForSize: number;
  } | null;
  /** Secondary: the DR drill running over the checkpoint (writable export VOLUME@drill), or null. */
  drill: { export: string; bytesWritten: number } | null;
  /**
   * The volume's iSCSI target (LUN 0) and who is logged in to it, or null when the node
   * serves no iSCSI (docs/ISCSI.md). Sessions to VOLUME@checkpoint and VOLUME@drill are
   * listed under those exports' own targets in `exports`.
   */
  iscsi: IscsiStatus | null;
}

export interface IscsiSessionStatus {
  initiator: string;
  /** The initiator's address, host:port. */
  address: string;
}

export interface IscsiStatus {
  target: string;
  lun: number;
  sessions: IscsiSessionStatus[];
  /** VOLUME@checkpoint and VOLUME@drill, when served: their targets and sessions. */
  exports: Array<{ export: string; target: string; sessions: IscsiSessionStatus[] }>;
}

/** A consistency group (docs/GROUPS.md) as this node sees it. */
export interface GroupStatus {
  name: string;
  members: string[];
  /** The members' role here; 'mixed' while a promote or demote of the group is half done. */
  role: 'primary' | 'secondary' | 'mixed';
  /**
   * Secondary: every member stands at a group point and none is in a resync round or
   * first sync, so a checkpoint or promote of the group presents one moment. Primary:
   * every member journals (none tracks by its dirty bitmap), so every group point
   * reaches every member.
   */
  consistent: boolean;
  /** Why not, in words; null when consistent. */
  reason: string | null;
  /**
   * Secondary: the group point every member holds durably and is brought to (the
   * group's limit), its number; primary: the last group point made. Null: none yet.
   */
  groupPoint: number | null;
  /** The members stand at that group point together now (secondary). */
  together: boolean;
  /** The largest lag of the members (seconds). */
  lagSeconds: number;
}

export interface NodeStatus {
  node: string;
  version: string;
  uptimeSeconds: number;
  volumes: VolumeStatus[];
  /** Consistency groups (empty when the config has none). */
  groups?: GroupStatus[];
  /**
   * Configured volumes this daemon could not open: not served, not linked, not in
   * `volumes` (src/node/set-aside.ts). Empty when every volume opened.
   */
  unavailable?: UnavailableVolumeStatus[];
}

/** A configured volume set aside at start: why, for how long, and whether a reload is trying it now. */
export interface UnavailableVolumeStatus {
  name: string;
  /** The open's error, as it was said in the log. */
  error: string;
  /** Since the first failure (seconds). */
  forSeconds: number;
  /** Opens tried: the start's, then one per reload. */
  attempts: number;
  /** A reload is opening it now. */
  opening: boolean;
  /** Served until a reload let it go to open it again with its new file, journal folder or bitmap granularity (src/node/volume-reopen.ts). */
  reopening?: boolean;
}
