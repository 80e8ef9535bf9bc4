// The node's limits, named in one place (docs/INVARIANTS.md says which relations
// between them the code asserts). A figure here bounds memory, latency or disk use;
// the comment says what it bounds and why it is the size it is.

const MiB = 1 << 20;

/**
 * The secondary applies at most about this much of the receive log as one unit
 * (more only when a coalesced unit must go whole). Readers of the replica and an
 * operator's checkpoint or drill wait for at most one unit, so this bounds how long
 * they wait: 64 MiB is a fraction of a second at disk speed. A unit still ends at a
 * durable barrier, so the replica moves from one flush point to another.
 */
export const APPLY_UNIT_BYTES = 64 * MiB;

/** One read of journal or receive-log records into memory (a batch to ship or to apply). */
export const READ_BATCH_BYTES = 8 * MiB;

/**
 * The longest hold a checkpoint may be given (`--hold`, the API's `hold`, a
 * schedule's `hold`): 10 years. A checkpoint held that long is one nobody means to
 * release by time; longer figures are typing slips (`99999999999h`), and past about
 * 285,000 years the release time is no longer a date at all, which once left a
 * checkpoint held with no export and `checkpoint list` failing. Holding until
 * released is said by giving no hold.
 */
export const MAX_HOLD_SECONDS = 10 * 365 * 86_400;

/**
 * The smallest volume: one 4 KiB block, the block size the NBD export advertises
 * as preferred, the dirty bitmap's page and the smallest region it tracks. A
 * `size: 0` volume served nothing a host could use.
 */
export const MIN_VOLUME_BYTES = 4096;

// --- epochs, windows and the receive log ------------------------------------------
// The secondary applies whole epochs from its receive log, and acks only what that log
// holds durably, so the primary's epochs and window are sized from the peer's log.

/** An epoch larger than this is closed by the primary with a barrier of its own. */
export const EPOCH_MAX_BYTES = 256 * MiB;
/** ... and no larger than this fraction of the volume's own journal. */
export const EPOCH_JOURNAL_FRACTION = 1 / 8;
/** ... nor of the peer's receive log (which must take a whole epoch, twice over). */
export const EPOCH_PEER_LOG_FRACTION = 1 / 4;
/** At most this fraction of the peer's receive log is sent and not yet acked. */
export const WINDOW_PEER_LOG_FRACTION = 1 / 2;
/** The smallest window and epoch bound whatever the peer's log (a log smaller than this cannot take a large write anyway). */
export const MIN_WINDOW_BYTES = 1 * MiB;
/** A resync round keeps what waits to be acked under this fraction of the journal, so live writes keep their room. */
export const RESYNC_JOURNAL_FRACTION = 1 / 4;
/** One resync step reads at most this much of the volume. */
export const RESYNC_STEP_BYTES = 1 * MiB;

/** The largest epoch a volume with this journal, facing a peer log of this size, may open. */
export function epochBytesFor(journalBytes: number, peerLogBytes: number | null = null): number {
  let b = Math.min(EPOCH_MAX_BYTES, Math.floor(journalBytes * EPOCH_JOURNAL_FRACTION));
  if (peerLogBytes !== null) b = Math.min(b, Math.max(MIN_WINDOW_BYTES, Math.floor(peerLogBytes * EPOCH_PEER_LOG_FRACTION)));
  return b;
}

/** The most a shipper may keep in flight to a peer whose receive log holds this much. */
export function windowCapFor(peerLogBytes: number): number {
  return Math.max(MIN_WINDOW_BYTES, Math.floor(peerLogBytes * WINDOW_PEER_LOG_FRACTION));
}

// --- consistency groups (docs/GROUPS.md) ----------------------------------------------

/**
 * A group's primary makes a group point (a barrier on every member at one instant)
 * this often while any member has records after the last one. The secondary applies
 * a member only up to a group point every member holds, so this bounds the group's
 * RPO from below: a promote loses at least the writes since the last group point.
 * Each point costs one 56-byte barrier record and one sync round per member.
 */
export const GROUP_POINT_INTERVAL_MS = 1000;
/** A member's host flush asks for a group point at once, but at most this often. */
export const GROUP_POINT_MIN_GAP_MS = 100;
/** The most volumes in one group (the point is made in one turn of the event loop over all of them). */
export const MAX_GROUP_MEMBERS = 16;

// --- what a volume's config must allow ---------------------------------------------

/** The largest single write a host may send (NBD's limit, advertised as the maximum block size). */
export const MAX_HOST_WRITE_BYTES = 32 * MiB;
/** A receive log must hold the largest host write twice over (one being applied, one arriving). */
export const MIN_RECEIVE_LOG_BYTES = 2 * MAX_HOST_WRITE_BYTES;

/**
 * What a replicated volume's sizes mean for the operator, said at startup: a journal
 * too small to serve as a receive log after a failover, a region too large to verify.
 * Returns warnings (the daemon still starts: a primary with a small journal works, it
 * overflows into the bitmap sooner).
 */
export function volumeLimitWarnings(v: { name: string; journal: number; bitmapRegion: number; maxHashRegion: number }, fmt: (bytes: number) => string): string[] {
  const out: string[] = [];
  if (v.journal < MIN_RECEIVE_LOG_BYTES) {
    out.push(`volume ${v.name}: journal ${fmt(v.journal)} is less than twice the largest host write (${fmt(MAX_HOST_WRITE_BYTES)}); as a secondary (after a failover) its receive log could not take such a write and the link would stop: give it at least ${fmt(MIN_RECEIVE_LOG_BYTES)}`);
  }
  if (v.bitmapRegion > v.maxHashRegion) {
    out.push(`volume ${v.name}: bitmap_region ${fmt(v.bitmapRegion)} is larger than a hash request may name (${fmt(v.maxHashRegion)}); offsite verify and a first sync by checksum will refuse it: use at most ${fmt(v.maxHashRegion)}`);
  }
  return out;
}

// Relations between the figures above, checked when the module loads: a change that
// breaks one stops every daemon and test at once rather than misbehaving under load.
if (!(GROUP_POINT_MIN_GAP_MS < GROUP_POINT_INTERVAL_MS)) throw new Error('limits: a flush-driven group point must not be rarer than the cadence');
if (!(APPLY_UNIT_BYTES <= EPOCH_MAX_BYTES)) throw new Error('limits: an apply unit must not be larger than the largest epoch');
if (!(MIN_RECEIVE_LOG_BYTES >= 2 * MAX_HOST_WRITE_BYTES)) throw new Error('limits: the receive log must hold two of the largest host writes');
if (!(READ_BATCH_BYTES >= MIN_WINDOW_BYTES)) throw new Error('limits: a read batch must hold at least the smallest window');
if (!(EPOCH_PEER_LOG_FRACTION < WINDOW_PEER_LOG_FRACTION && WINDOW_PEER_LOG_FRACTION <= 1 / 2)) throw new Error('limits: an epoch must fit in the window, the window in half the peer log');
