// The node's limits, named in one place (docs/INVARIANTS.md says which relations
// between them the code asserts). A figure here bounds memory, latency or disk use;
// the comment says what it bounds and why it is the size it is.

const KiB = 1 << 10;
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
 * A journal read of a batch asks the disk for the whole batch at once (one buffer, its
 * payloads views of it); a read of headers alone (coalescing plans) takes chunks of
 * this while records are small, and one header at a time after larger ones.
 */
export const JOURNAL_HEADER_CHUNK_BYTES = 64 * 1024;
/**
 * A segment keeps the place of a record about every this many bytes (src/journal/segment.ts,
 * `SegmentMarks`): a read of a record no cursor points at walks the headers from the last
 * mark before it, at most this far (four header chunks), not from the segment's start.
 */
export const SEGMENT_MARK_BYTES = 256 * 1024;
/**
 * Recovery (a start, a reopen) scans each segment in reads of this, records decoded
 * from the buffer: one thread-pool job per MiB instead of two per record, which held a
 * start with 3.6 GiB of 4 KiB records (900k) for 50 s of CPU. One buffer per scan.
 */
export const RECOVERY_READ_BYTES = 1 * MiB;
/** A start whose journal takes longer than this to scan says how far it got, this often. */
export const RECOVERY_PROGRESS_MS = 5000;

/**
 * The node's memory budget for replication data (config `memory`, src/memory/budget.ts):
 * the shippers' batches from their read until acked, the peers' frames until logged,
 * the applies' reads, all volumes together. 40 MiB lets a volume alone keep 8 MiB in
 * flight (its class takes at most 40%, and a window at most half of that:
 * MIN_SHIPPERS_SHARING_SEND_MEMORY), what 670 Mbit/s holds over a 100 ms round trip
 * (6.7 Gbit/s over 10 ms; a longer or faster path sets `memory` higher: 64 MiB holds
 * 1 Gbit/s over 100 ms), and keeps a daemon under 150 MiB of RSS while a 10 GiB backlog
 * drains, and under 256 MiB with a hundred volumes through a burst (docs/BENCHMARKS.md,
 * "A hundred volumes"): freed batches wait for the garbage collector, so RSS moves by
 * more than the budget lets through. 64 MiB (the default until 2026-12-06) drained no
 * faster on this machine's loopback (bench:catchup 111 and 132 MB/s against 111 and 115)
 * and peaked 10-20 MiB higher. Apart from the NBD/iSCSI write budget (src/nbd/budget.ts),
 * which bounds host writes before they reach the journal.
 */
export const MEMORY_BUDGET_BYTES = 40 * MiB;

/**
 * A volume's writes that go to the thread pool (src/volume/write-batch.ts): at most
 * this many jobs at once, each of at most this many writes or bytes. Writes that
 * arrive while the jobs run go together in the next one (one wake-up of a pool thread
 * for many small writes), a lone write goes at once.
 */
export const WRITE_BATCHES_IN_FLIGHT = 8;
export const WRITE_BATCH_MAX_WRITES = 64;
export const WRITE_BATCH_MAX_BYTES = 8 * MiB;
/**
 * Writes that must land in their order (a secondary's apply of a read of its receive
 * log: Disk.writeInOrder) go in one thread-pool job of at most this many writes (or
 * WRITE_BATCH_MAX_BYTES), the jobs one after the other. Before, each record of the read
 * was its own job, awaited before the next: a pool round trip per 4 KiB write.
 */
export const IN_ORDER_WRITES_PER_JOB = 1024;
/**
 * A journal or receive log append of at least this many bytes goes through an O_DIRECT
 * descriptor (src/journal/store.ts), past the page cache: a run of large records would
 * otherwise be copied into pages made for it and written back by the kernel's flusher,
 * which cost more than the disk write (docs/BENCHMARKS.md, "Journal on the write path").
 * Smaller appends stay in the page cache: a direct write waits for the disk, and the
 * records queued behind it with it.
 */
export const DIRECT_APPEND_MIN_BYTES = 256 * KiB;
/** O_DIRECT's unit: a direct write's offset, length and buffer are whole blocks of it (native/offsite_fs.c's DIRECT_ALIGN). */
export const DIRECT_BLOCK_BYTES = 4096;
/**
 * The largest host write whose volume write follows its journal record in the record's
 * job (src/journal/append-queue.ts `follow`): what that saves is a job's hand-off, which
 * only small writes feel; larger ones keep their own jobs, in parallel with the journal's.
 */
export const FOLLOW_MAX_BYTES = 64 * 1024;
/**
 * Nor for this long after a peer's ack released the journal with a sync of the volume
 * that could not wait (the journal over half full, a round, the bitmap; not the due sync
 * at VOLUME_SYNC_INTERVAL_MS): a follower waiting for that writeback holds up the journal. Measured on bench:replication
 * (docs/JOURNAL.md): followers help while no release syncs the volume, not while releases do.
 */
export const FOLLOW_AFTER_RELEASE_MS = 10_000;
/**
 * A peer's ack past what the volume's last sync covered releases the journal at once,
 * syncing the volume first, only while the journal is more than this fraction full (or a
 * resync round is open, or the volume is tracked by the bitmap); below it, what the ack
 * frees waits for the volume's next sync: a FLUSH, an epoch close past redoBytesFor, the
 * shipper's tick once VOLUME_SYNC_INTERVAL_MS passed since the last, or an append past
 * this fraction (docs/JOURNAL.md, "Releases wait for the volume's sync"; src/journal/release.ts).
 * Waiting took about a tenth off a replicating primary's CPU per 4 KiB write, writes
 * following their records meanwhile (docs/BENCHMARKS.md).
 */
export const RELEASE_AT_ONCE_ABOVE = 1 / 2;
/**
 * Region hashing (a first sync's comparison, an online verify, both sides) reads this
 * much at once, into one of at most HASH_BUFFERS buffers shared by every volume of the
 * node: hashing holds at most HASH_BUFFERS x HASH_READ_BYTES (16 MiB) whatever the
 * number of volumes syncing or verifying at once (src/sync/region-hashes.ts).
 */
export const HASH_READ_BYTES = 4 * MiB;
export const HASH_BUFFERS = 4;
/**
 * Worker threads that hash what is read into those buffers (src/sync/hash-workers.ts),
 * off the event loop; one idle for HASH_WORKER_IDLE_MS stops (a V8 isolate each).
 */
export const HASH_WORKERS = 2;
export const HASH_WORKER_IDLE_MS = 30_000;
/** Hashing workers that die (or cannot start) this many times within 10 s are not started again for HASH_WORKER_PAUSE_MS. */
export const HASH_WORKER_DEATHS = 5;
export const HASH_WORKER_PAUSE_MS = 60_000;
/**
 * A secondary works on this many of a link's hash requests at once (one reads while
 * another hashes: src/secondary/replica-requests.ts), and answers them in the order
 * asked; each holds one of the HASH_BUFFERS while it reads.
 */
export const HASH_REQUESTS_AT_ONCE = 2;
/**
 * A zstd worker (src/compress/pool.ts) idle this long stops; the next job that finds
 * none free starts one again (about 25 MiB each, a V8 isolate).
 */
export const COMPRESSION_WORKER_IDLE_MS = 30_000;
/**
 * With several peers (docs/PEERS.md, src/journal/detach.ts): once the journal holds this
 * share of its capacity and the slowest peer is behind another, the slowest leaves the
 * journal for a bitmap of its own, so the journal keeps room for the others.
 */
export const PEER_DETACH_FILL = 0.75;
/**
 * A primary's journal filling (a link down, a peer far behind) is told past each of these
 * shares of its capacity (src/node/journal-fill.ts), before it overflows into the dirty
 * bitmap; told again once it has fallen below JOURNAL_FILL_RESET.
 */
export const JOURNAL_FILL_NOTICES: readonly number[] = [0.75, 0.9];
export const JOURNAL_FILL_RESET = 0.5;
/** Most secondaries one primary volume has (`volumes.NAME.peers`, docs/PEERS.md): each is a shipper, a cursor and, detached, a bitmap. */
export const MAX_PEERS_PER_VOLUME = 4;
/**
 * An online verify keeps this many batches out at once (src/sync/verify.ts): each is a
 * round trip to the peer (its hashes, once it has applied the batch's flush point), so
 * the link's latency, the peer's apply and the hashing on both sides overlap. Each holds
 * host writes to its 4 MiB until answered (16 MiB after a batch that lay in a hole:
 * src/sync/verify.ts), so at most this times 16 MiB is held.
 */
export const VERIFY_BATCHES_IN_FLIGHT = 4;
/**
 * Buffers an apply reads the receive log into are reused (src/memory/buffer-pool.ts): at
 * most this many idle ones are kept per read size, for the node.
 */
export const APPLY_BUFFERS_KEPT = 4;
/**
 * Frame buffers the node owns (src/memory/owned-buffers.ts): batches read, frames
 * gathered, the zstd workers' bodies and unpacked frames, each reused rather than mapped
 * anew (a page fault per 4 KiB). At most this many idle bytes are kept, and never more
 * than the memory budget has free (`keepWithin`): 10 MiB held two of a replicating
 * pair's 4.5 MiB batches, a third of its takes mapped fresh (docs/BENCHMARKS.md, "Page
 * faults on the packing path"). Sizes go in 1/8 steps between powers of two, the least below.
 */
export const OWNED_BUFFERS_KEPT_BYTES = 32 * MiB;
/**
 * Most idle bytes kept by the node's pool of host I/O buffers: an NBD write payload of
 * MALLOC_MMAP_THRESHOLD_BYTES or more that came in several socket reads is gathered into
 * one (src/nbd/connection.ts), and a read reply that large is read into one (src/nbd/commands.ts),
 * rather than a fresh buffer each (an mmap and a page fault per 4 KiB, about 3 ms a MiB
 * on the project's test machine). Eight 1 MiB writes and eight 1 MiB reads in flight.
 */
export const HOST_BUFFERS_KEPT_BYTES = 16 * MiB;
export const OWNED_BUFFER_CLASS_MIN_BYTES = 64 * 1024;
/** One read of the receive log being applied when the node keeps a memory budget (each an `apply` lease). */
export const APPLY_READ_BYTES = 1 * MiB;
/**
 * Buffers this large or larger are mmapped by glibc's malloc at a fixed threshold
 * (native/offsite_fs.c tuneAllocator), so a freed batch leaves the RSS at once rather
 * than staying in an arena: with 20 volumes after a burst, 121 MiB settled instead of
 * 257. And at most this many malloc arenas (glibc makes up to 8 per core).
 */
export const MALLOC_MMAP_THRESHOLD_BYTES = 128 * 1024;
export const MALLOC_ARENAS = 2;
/**
 * How much V8 grows its young generation each time it would (src/memory/collector.ts
 * boundYoungGeneration): 1 keeps it at its first size, 1 MiB semi-spaces, where V8's own
 * default (2) takes it to 16 MiB semi-spaces under a drain, a fifth of a daemon's RSS.
 */
export const YOUNG_GENERATION_GROWTH = 1;
/**
 * The room V8's old generation may grow past what is live before a full collection
 * (src/memory/collector.ts boundOldGeneration). V8's own limit sat about 9 MB above a
 * drain's 19 MB live heap: a full collection every 45 ms at both sites, 30-40% of their
 * CPU. With this much room (and at most 3x what is live) a 2 GiB drain made 6 to 13
 * full collections where it made about 200, and drained 270 MB/s where it drained 190
 * (docs/BENCHMARKS.md, catch-up).
 */
export const OLD_GENERATION_HEADROOM_BYTES = 40 * MiB;
/** ... and at most this many times what is live (V8's growing factor, 1 + percent / 100). */
export const OLD_GENERATION_MAX_GROWTH_PERCENT = 200;
/** The smallest budget `memory` may set: an apply's read and a batch must fit a class (40%). */
export const MIN_MEMORY_BUDGET_BYTES = 32 * MiB;

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

// --- history at the secondary (docs/HISTORY.md) -------------------------------------

/**
 * A history segment is sealed at about this size and a new one begun: retention drops
 * whole segments, so this is the grain of what it frees (smaller when the volume's
 * `history.max` is small: an eighth of it, at least HISTORY_MIN_SEGMENT_BYTES).
 */
export const HISTORY_SEGMENT_BYTES = 64 * MiB;
export const HISTORY_MIN_SEGMENT_BYTES = 64 * 1024;
/**
 * Old bytes are read from the replica in pieces of at most this (a trim of a whole
 * volume saves what it overwrites a piece at a time, each durable before the next).
 */
export const HISTORY_READ_BYTES = 1 * MiB;
/**
 * Buffers of HISTORY_READ_BYTES kept for reuse by the node's history captures (more are
 * made while more volumes capture at once, and let go after): saving 1 GiB of old bytes
 * allocates nothing, so no collector runs for it.
 */
export const HISTORY_SCRATCH_KEPT = 4;
/**
 * A sealed history segment gets a heads file (src/history/heads.ts) when its heads take
 * at most this share of it: a segment of smaller entries is read as fast by scanning it.
 */
export const HISTORY_HEADS_SHARE = 1 / 8;
/** The most extents (holes and data) a range being saved is mapped into at once; past them it is read. */
export const HISTORY_EXTENTS_MAX = 4096;
/**
 * One read of the receive log being applied to a replica that keeps history: what it
 * overwrites is saved, with one sync of the history, while the read before it waits for
 * its sync and the one before that is written to the replica (src/secondary/apply-unit.ts);
 * HISTORY_APPLY_READS at most are held, on one `apply` lease. Larger than
 * APPLY_READ_BYTES: each costs a sync (docs/BENCHMARKS.md bench:history).
 */
export const HISTORY_APPLY_READ_BYTES = 4 * MiB;
export const HISTORY_APPLY_READS = 3;
/**
 * Restore points kept listed per volume: thinning (an hour of every flush point, then
 * one per 10 minutes, per hour, per day) keeps a month under a few thousand; a burst of
 * flushes past this drops every other one of the oldest half (24 bytes each in memory).
 */
export const HISTORY_POINTS_MAX = 100_000;
/**
 * Ranges a past point being read may map to the history (changed since that point):
 * 40 bytes each, so an open point holds at most about 40 MiB. A point further back
 * than this is refused with the reason; a newer one opens.
 */
export const HISTORY_VIEW_EXTENTS_MAX = 1_000_000;
/**
 * A scan of history entry heads (opening a point, a start) reads the segments in chunks
 * of this while entries are small, and HISTORY_SCAN_HEAD_BYTES at the head after an
 * entry at least that large (not its neighbour's saved bytes).
 */
export const HISTORY_SCAN_BYTES = 1 * MiB;
/**
 * A sealed history segment whose points thinning hid is rewritten with what the listed
 * points still need (src/history/compaction.ts) when that frees at least this share of it.
 */
export const HISTORY_COMPACT_MIN_GAIN = 1 / 8;
export const HISTORY_SCAN_HEAD_BYTES = 16 * 1024;

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
/**
 * The most one volume's shipper keeps sent and not yet acked, whatever the link: the
 * window follows the durable-ack round trip (src/link/window.ts), and at 250 MB/s a
 * half-second sync at the peer needs this much in flight to keep the disks busy.
 */
export const MAX_WINDOW_BYTES = 128 * MiB;
/** The smallest window and epoch bound whatever the peer's log (a log smaller than this cannot take a large write anyway). */
export const MIN_WINDOW_BYTES = 1 * MiB;
/**
 * A shipper's window holds at most the node's send memory (the budget's `send` class)
 * divided among the shippers linked now, and never more than half of it: a window is
 * memory held until the peer acks, and a slow line's window once took all of it, so a
 * near site's shipper waited seconds for a lease behind a far one (bench:peers, the
 * shaped case). Half leaves the rest to whoever links next.
 */
export const MIN_SHIPPERS_SHARING_SEND_MEMORY = 2;
/**
 * With `compression: auto`, a batch zstd did not shrink is followed by batches sent
 * without trying it: 1 after the first, then twice as many after each more in a row,
 * up to this many, until one tried shrinks (random or encrypted data cost the CPU
 * of zstd and a copy of every batch for nothing: bench:catchup).
 */
export const MAX_UNTRIED_BATCHES = 32;
/**
 * With `compression: auto`, each batch is first judged by a sample: this many slices
 * of this many bytes, spread evenly over its payloads, compressed on the event loop
 * at zstd level 1 (about 0.1 ms). A sample zstd does not shrink sends the batch raw
 * without a trip to a worker (but for the headers of small writes, packer.ts
 * `incompressible`): random or encrypted data in large writes then keeps no worker alive
 * (a V8 isolate of about 25 MiB, and a copy of each batch tried: the 1 TiB drain's
 * site-a peaked at 190-209 MiB with the worker and 147 MiB with compression off,
 * bench:fleet).
 */
export const COMPRESS_SAMPLE_SLICES = 4;
export const COMPRESS_SAMPLE_SLICE_BYTES = 16 * 1024;
/**
 * `compression: auto` (src/compress/level.ts) tries sending raw after this many seconds
 * in a row of a link idle while shipping; each time raw loses a try, or loses at a
 * recheck, the wait doubles, up to AUTO_RAW_TRY_MAX_AFTER_SECONDS (a try raw wins
 * resets it). Raw tries level 1 after this many seconds in a row of a busy link, always.
 */
export const AUTO_RAW_TRY_AFTER_SECONDS = 5;
export const AUTO_RAW_TRY_MAX_AFTER_SECONDS = 640;
/**
 * `auto` tries raw only while the node uses this many cores of CPU or more (all its
 * threads): below it packing costs nothing anyone waits for, and a thin line idle
 * between bursts, with a trickle of writes, would try raw for nothing (bench:figure2
 * sent 12% more bytes at its average rate without this).
 */
export const AUTO_RAW_CPU_CORES = 0.5;
/**
 * `auto` with CPU to spare (its workers compressing under this share of their time, the
 * node under AUTO_RAW_CPU_CORES) climbs AUTO_FAST_CLIMB_LEVELS a second up a busy line and
 * holds its level on an idle one, for the next burst (src/compress/level.ts, docs/LINK.md).
 */
export const AUTO_IDLE_WORKERS = 0.1;
export const AUTO_FAST_CLIMB_LEVELS = 3;
/** A try of raw (or, from raw, of level 1) lasts this many seconds; its first is not counted (batches packed before it still go). */
export const AUTO_TRY_SECONDS = 4;
/** Raw is kept only while it ships this many times what compressing does: a tie keeps the bytes compressed. */
export const AUTO_RAW_GAIN = 1.25;
/** Raw tries level 1 again after this many seconds (the data, or what else the CPU does, may have changed). */
export const AUTO_RAW_RECHECK_SECONDS = 120;
/** A resync round keeps what waits to be acked under this fraction of the journal, so live writes keep their room. */
export const RESYNC_JOURNAL_FRACTION = 1 / 4;
/** One resync step reads at most this much of the volume. */
export const RESYNC_STEP_BYTES = 1 * MiB;

/**
 * A primary-chosen epoch close makes the journal durable, not the volume (what shipping
 * needs). The volume is synced with a host FLUSH, for a release that cannot wait, and
 * once this many bytes were journaled since its last sync (the most recovery replays after a crash) ...
 */
export const REDO_MAX_BYTES = 1024 * MiB;
/** ... or this fraction of the journal, if smaller (so releases are never held back long) ... */
export const REDO_JOURNAL_FRACTION = 1 / 8;
/** ... or this long after its last sync, with writes since (what the kernel's own writeback would do). */
export const VOLUME_SYNC_INTERVAL_MS = 10_000;

/** How much a volume with this journal may journal before its volume is synced. */
export function redoBytesFor(journalBytes: number): number {
  return Math.min(REDO_MAX_BYTES, Math.floor(journalBytes * REDO_JOURNAL_FRACTION));
}

// --- coalescing far behind (docs/LINK.md) ----------------------------------------------

/**
 * Far behind, a coalesced unit is planned over at most this much of the backlog (journal
 * bytes). What the unit sends is bounded apart, by half the largest epoch the peer takes
 * (src/coalesce/coalesce.ts planUnit): a range rewritten anywhere in the span travels once.
 */
export const COALESCE_SCOPE = 1024 * MiB;
/** ... and over at most this many records (the headers planned over are held in memory: about 100 bytes each). */
export const COALESCE_MAX_RECORDS = 65536;

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
export function volumeLimitWarnings(
  v: { name: string; journal: number; bitmapRegion: number; maxHashRegion: number },
  fmt: (bytes: number) => string,
): string[] {
  const out: string[] = [];
  if (v.journal < MIN_RECEIVE_LOG_BYTES) {
    out.push(`volume ${v.name}: journal ${fmt(v.journal)} is less than twice the largest host write (${fmt(MAX_HOST_WRITE_BYTES)}); ` +
      'as a secondary (after a failover) its receive log could not take such a write and the link would stop: ' +
      `give it at least ${fmt(MIN_RECEIVE_LOG_BYTES)}`);
  }
  if (v.bitmapRegion > v.maxHashRegion) {
    out.push(`volume ${v.name}: bitmap_region ${fmt(v.bitmapRegion)} is larger than a hash request may name (${fmt(v.maxHashRegion)}); ` +
      `offsite verify and a first sync by checksum will refuse it: use at most ${fmt(v.maxHashRegion)}`);
  }
  return out;
}

// --- iSCSI (src/iscsi/, docs/ISCSI-PROTOCOL.md "Limits") ---------------------------

/**
 * The largest data segment of one PDU we accept (MaxRecvDataSegmentLength we declare)
 * and the most we send in one PDU whatever the initiator declares: 256 KiB is what
 * Linux and ESXi use; one PDU is read whole before it is handled, so this bounds what
 * a connection holds between PDUs.
 */
export const ISCSI_MAX_RECV_DATA_SEGMENT = 256 * 1024;
/** The smallest MaxRecvDataSegmentLength the RFC allows (7143 section 13.12). */
export const ISCSI_MIN_RECV_DATA_SEGMENT = 512;
/**
 * The largest data-out of one command (maxDataOut handed to the logical unit): the
 * same as NBD's largest write, so a host write has the same bound on both front ends.
 */
export const ISCSI_MAX_DATA_OUT_BYTES = MAX_HOST_WRITE_BYTES;
/** MaxBurstLength we accept and offer (one R2T's worth): 1 MiB, as Linux LIO offers. */
export const ISCSI_MAX_BURST_BYTES = 1 * MiB;
/** FirstBurstLength we accept (unsolicited data of one command, immediate data included). */
export const ISCSI_FIRST_BURST_BYTES = 256 * 1024;
/** Commands in flight per session: the CmdSN window (MaxCmdSN - ExpCmdSN + 1 when idle). */
export const ISCSI_QUEUE_DEPTH = 64;
/** Immediate commands (I bit: TMF, NOP-Out) in flight per session beside the window; more get a Reject. */
export const ISCSI_MAX_IMMEDIATE = 8;
/** R2Ts outstanding per command (MaxOutstandingR2T we answer at most). */
export const ISCSI_MAX_OUTSTANDING_R2T = 4;
/** Key=value text of one Login or Text exchange, continuations included (bytes). */
export const ISCSI_MAX_TEXT_BYTES = 64 * 1024;
/** Sessions at once on one target, from all initiators. */
export const ISCSI_MAX_SESSIONS_PER_TARGET = 64;
/** Connections at once from one IP address (sessions and logins in progress). */
export const ISCSI_MAX_CONNECTIONS_PER_ADDRESS = 32;
/** Connections at once in all. */
export const ISCSI_MAX_CONNECTIONS = 256;
/** Connections still logging in at once, all addresses (a login is short: a flood of half-open ones is refused). */
export const ISCSI_MAX_PENDING_LOGINS = 64;
/** ... and from one IP address, so that a few callers cannot hold every login slot for the login timeout. */
export const ISCSI_MAX_PENDING_LOGINS_PER_ADDRESS = 8;
/** From the accept to the full feature phase (a real initiator logs in within milliseconds). */
export const ISCSI_LOGIN_TIMEOUT_MS = 30_000;
/** A connection with nothing received this long gets a NOP-In ping; unanswered as long again, it is closed. */
export const ISCSI_NOP_INTERVAL_MS = 30_000;
/** Node-wide bytes of data-out held in memory, all connections (src/nbd/budget.ts RequestBudget). */
export const ISCSI_DATA_OUT_BUDGET_BYTES = 256 * MiB;
/**
 * Data-out one session may hold at once: past it a write gets TASK SET FULL (the
 * initiator retries), so one session cannot take the node's whole budget. Linux
 * queues 32 writes of 512 KiB (16 MiB); this is four times that.
 */
export const ISCSI_MAX_SESSION_DATA_OUT_BYTES = 64 * MiB;
/**
 * A session whose write stopped receiving its data this long, while others wait for
 * the data-out budget, is cut: it holds bytes they need (NBD does the same).
 */
export const ISCSI_STALLED_DATA_OUT_MS = 10_000;

// --- the SCSI logical unit (src/scsi/) -----------------------------------------------
// What an iSCSI initiator may make one command cost: every buffer the logical unit
// allocates is bounded by one of these, whatever the CDB or parameter list says.

/** The logical block a SCSI initiator addresses (READ CAPACITY's block length). */
export const SCSI_BLOCK_BYTES = 512;
/** The largest READ/WRITE/VERIFY transfer (VPD B0 MAXIMUM TRANSFER LENGTH): one command's data buffer. */
export const SCSI_MAX_TRANSFER_BYTES = 8 * MiB;
/**
 * The most blocks one UNMAP (all its descriptors together) may name (VPD B0 MAXIMUM UNMAP LBA COUNT): 512 MiB
 * (libiscsi calls more than 2^20 blocks insane).
 */
export const SCSI_MAX_UNMAP_BLOCKS = (512 * MiB) / SCSI_BLOCK_BYTES;
/** The most block descriptors one UNMAP may carry (VPD B0 MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT). */
export const SCSI_MAX_UNMAP_DESCRIPTORS = 256;
/**
 * The most blocks one WRITE SAME may name (VPD B0 MAXIMUM WRITE SAME LENGTH): 16 MiB, written
 * in chunks; initiators zero larger ranges with more commands. Kept under 65536 blocks:
 * libiscsi takes a larger one as a promise that a READ/WRITE of 65536 blocks fits too.
 */
export const SCSI_MAX_WRITE_SAME_BLOCKS = (16 * MiB) / SCSI_BLOCK_BYTES;
/** WRITE SAME writes its pattern this much at a time: the one buffer it fills. */
export const SCSI_WRITE_SAME_CHUNK_BYTES = 1 * MiB;
/** The most blocks one COMPARE AND WRITE may name (VPD B0, one byte): its data-out is twice that. */
export const SCSI_MAX_COMPARE_AND_WRITE_BLOCKS = 128;
/** The largest parameter list (MODE SELECT, PERSISTENT RESERVE OUT, UNMAP) the logical unit takes. */
export const SCSI_MAX_PARAMETER_LIST_BYTES = 64 * 1024;
/** The most descriptors one GET LBA STATUS answers with (the initiator asks again from where it ends). */
export const SCSI_MAX_LBA_STATUS_DESCRIPTORS = 1024;
/** The most persistent reservation registrations a logical unit keeps (more: INSUFFICIENT REGISTRATION RESOURCES). */
export const SCSI_MAX_REGISTRATIONS = 128;
/** The most unit attentions queued for one I_T nexus (older ones are kept; SPC-4 allows dropping the rest). */
export const SCSI_MAX_UNIT_ATTENTIONS = 16;

// Relations between the figures above, checked when the module loads: a change that
// breaks one stops every daemon and test at once rather than misbehaving under load.
if (!(GROUP_POINT_MIN_GAP_MS < GROUP_POINT_INTERVAL_MS)) throw new Error('limits: a flush-driven group point must not be rarer than the cadence');
if (!(APPLY_UNIT_BYTES <= EPOCH_MAX_BYTES)) throw new Error('limits: an apply unit must not be larger than the largest epoch');
if (!(MIN_RECEIVE_LOG_BYTES >= 2 * MAX_HOST_WRITE_BYTES)) throw new Error('limits: the receive log must hold two of the largest host writes');
if (!(MAX_WINDOW_BYTES >= MIN_WINDOW_BYTES)) throw new Error('limits: the largest window must hold the smallest');
if (!(READ_BATCH_BYTES >= MIN_WINDOW_BYTES)) throw new Error('limits: a read batch must hold at least the smallest window');
if (!(ISCSI_FIRST_BURST_BYTES <= ISCSI_MAX_BURST_BYTES && ISCSI_MAX_BURST_BYTES <= ISCSI_MAX_DATA_OUT_BYTES)) {
  throw new Error('limits: iSCSI first burst <= max burst <= largest data-out');
}
if (!(ISCSI_MAX_DATA_OUT_BYTES <= ISCSI_DATA_OUT_BUDGET_BYTES)) throw new Error('limits: the iSCSI data-out budget must hold the largest command');
if (!(EPOCH_PEER_LOG_FRACTION < WINDOW_PEER_LOG_FRACTION && WINDOW_PEER_LOG_FRACTION <= 1 / 2)) {
  throw new Error('limits: an epoch must fit in the window, the window in half the peer log');
}
if (!(SCSI_WRITE_SAME_CHUNK_BYTES % SCSI_BLOCK_BYTES === 0 && SCSI_MAX_TRANSFER_BYTES % SCSI_BLOCK_BYTES === 0)) {
  throw new Error('limits: SCSI buffers must hold whole logical blocks');
}
if (!(SCSI_MAX_COMPARE_AND_WRITE_BLOCKS <= 255 && 2 * SCSI_MAX_COMPARE_AND_WRITE_BLOCKS * SCSI_BLOCK_BYTES <= SCSI_MAX_TRANSFER_BYTES)) {
  throw new Error('limits: COMPARE AND WRITE must fit its one-byte field and one transfer');
}
if (!(8 + 16 * SCSI_MAX_UNMAP_DESCRIPTORS <= SCSI_MAX_PARAMETER_LIST_BYTES)) {
  throw new Error('limits: an UNMAP parameter list with every descriptor must fit the parameter list bound');
}

// --- sharing a link between volumes (src/rate/scheduler.ts, docs/LINK.md) ---------------

/**
 * Bytes a volume of weight 1 and normal priority may send per turn of the link's deficit
 * round robin: its share of each round. Frames larger than a turn wait for several turns'
 * worth (the round skips ahead), so the figure sets how finely bytes are shared, not
 * how large a frame may be: 64 KiB is the smallest batch (src/rate/capacity.ts).
 */
export const SHARE_QUANTUM_BYTES = 64 * 1024;
/**
 * How much a volume's priority weighs against the next: a `high` volume counts as this
 * many times its weight, a `low` one as its weight divided by it. A factor, not strict
 * precedence: a low volume beside busy high ones still gets 1/64 of its weight's
 * worth, so its RPO stays bounded where strict precedence would starve it.
 */
export const PRIORITY_FACTOR = 8;
/**
 * Seconds of its own share of the link one volume's batch holds when several volumes
 * share it: every volume with a backlog then gets a turn within about this long (a
 * frame is written whole, so the batch is the grain of the sharing).
 */
export const SHARE_BATCH_SECONDS = 1;
/**
 * The smallest batch of a volume sharing a link: below it zstd frames and record
 * headers start to cost (on a 1 Mbit/s line shared by 50 volumes a turn each is then
 * about 7 s apart, not 1).
 */
export const MIN_SHARED_BATCH_BYTES = 16 * 1024;

/**
 * The daemon writes down that it is alive this often (src/node/alive-mark.ts): after a
 * crash, a volume's file modified more than ALIVE_MARK_SLACK_MS after the last mark was
 * written by something else once the daemon was gone (docs/CONFIG.md, "A volume's file
 * replaced"). A mark on disk is never older than half the slack (one the disk holds up
 * goes), so the daemon's own last writes come within the slack of it.
 */
export const ALIVE_MARK_INTERVAL_MS = 10_000;
export const ALIVE_MARK_SLACK_MS = 60_000;

/**
 * Every shipper ticks this often (src/node/shippers.ts; one not linked does nothing): it
 * ships what became durable, makes the journal durable itself when the host has not
 * flushed for a second (DEFAULT_SHIPPING's selfSyncMs), and steps a resync round, a first
 * sync waiting for another peer's round, and a verify's wait for its replies. Short: what
 * is durable waits at most this long for a tick to ship it.
 */
export const SHIPPER_TICK_MS = 50;
