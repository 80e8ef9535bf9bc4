// The resync round's steps on the primary (docs/RESYNC.md): what a round does to this
// volume and its journal. The round's state and decisions are src/sync/round.ts (which
// run next, what leaves the bitmap, when it is complete) and src/sync/seeding.ts (the
// first sync's comparison by hash); here is what they touch of the host write path:
// the range lock that orders a read against host writes, the read, the journal append,
// the switch back to journal tracking. JournaledVolume (write-path.ts) owns one.
// With several peers (docs/PEERS.md) a round may be one peer's own: a detached peer's
// return (startFor) or a new secondary's first sync, compared by hash with its replica
// alone (firstSyncFor); the others keep streaming. A comparison clears the round's
// bitmap (roundBitmap), never the volume's in a round of one peer's own.
import { formatBytes } from '../units/units.js';
import { READ_BATCH_BYTES } from '../limits/limits.js';
import type { RangeLocks } from '../sync/range-lock.js';
import type { ResyncRound } from '../sync/round.js';
import type { Seeding } from '../sync/seeding.js';
import { HASH_MAP_EXTENTS, hashRegions, holesOf, sharedHoleRegions, type HashBuffers, type RegionHash, type Span } from '../sync/region-hashes.js';
import { RegionSet } from './bitmap.js';
import { isZero } from './disk.js';
import { FLAG_ROUND_END, RecordKind } from './record.js';
import type { Starting } from './startup.js';
import type { Tracking } from './tracking.js';
import type { DirtyBitmap } from './bitmap.js';
import type { DetachedPeers } from './detach.js';
import { THE_PEER, type PeerCursors } from './peer-cursors.js';
import { assert } from '../invariants/assert.js';
import { frameBuffers, type Owned } from '../memory/owned-buffers.js';

/** What a round's steps use of the write path. */
export interface RoundVolume extends Starting {
  ranges: RangeLocks;
  round: ResyncRound;
  seed: Seeding;
  tracking: Tracking;
  /** FLUSH: a barrier, then volume, journal and bitmap durable together. */
  flush(): Promise<void>;
  /** Host writes are journaled again (a round began): the intent ring opens. */
  journalAgain(): void;
  /** The node's hashing buffers (src/sync/region-hashes.ts; null: one per hashing). */
  hashBuffers: HashBuffers | null;
  /** A round begins: detached peers' bitmaps join the volume's, and they follow the journal again (detach.ts). */
  rejoinDetached(): Promise<unknown>;
  /** Peers detached from the journal (detach.ts; null: none may be): a round of one peer's own sends its bitmap. */
  detached: DetachedPeers | null;
  /** Where each peer stands. */
  cursors: PeerCursors;
}

export class RoundSteps {
  private starting: Promise<unknown> = Promise.resolve();

  constructor(private readonly v: RoundVolume) {}

  /**
   * Begins (or begins again) a resync round: bitmap tracking ends, host writes are
   * journaled again from the next seq, and the regions still marked in the bitmap
   * will be handed to the journal one run at a time by step(). Returns the round's
   * first seq; records before it that the peer lacks are superseded.
   */
  start(): Promise<number> {
    // One at a time: two links (or a link and a restart) must not start rounds at once.
    const p = this.starting.then(() => this.doStart());
    this.starting = p.catch(() => undefined);
    return p;
  }

  private async doStart(): Promise<number> {
    const { journal, bitmap, round, seed, tracking, log, name } = this.v;
    await tracking.quiesce();
    if (tracking.mode !== 'bitmap') return round.start;
    if (!round.canResync) throw new Error('resync needs a round store');
    if (tracking.clearPending) await tracking.emptyPending();
    // The round is every peer's: what a detached peer lacks joins the volume's bitmap.
    await this.v.rejoinDetached();
    let start = 0;
    while (start !== journal.lastSeq + 1) {
      start = journal.lastSeq + 1;
      await round.writeMark({ startSeq: start, initial: seed.pending });
      await tracking.quiesce();
      if (tracking.mode !== 'bitmap') return round.start;
    }
    round.open(start, bitmap.dirtyBytes, Date.now(), null, bitmap.count === bitmap.regions);
    seed.begin(seed.pending, new RegionSet(this.v.disk.size, bitmap.regionSize), new RegionSet(this.v.disk.size, bitmap.regionSize));
    seed.pending = false;
    this.v.journalAgain();
    log.info({ volume: name }, `volume ${name}: resync round from record ${start}: ${formatBytes(bitmap.dirtyBytes)} in ${bitmap.count} regions to send`);
    return start;
  }

  /**
   * A round of `peer`'s own (docs/PEERS.md, "Rounds for one peer"): detached `peer` links
   * holding less than the journal starts at. Its bitmap, marked up to the journal's
   * written end, becomes the round's list, and the peer follows the journal again from
   * there; the other peers keep streaming and are sent the round's records as padding
   * (JournaledVolume.padFor). No marker: a stop ends the round, and the peer's bitmap
   * joins the volume's at the start (detach.ts). Returns the round's first seq, or 0
   * when it cannot be (a round is open, the volume tracks by bitmap or has marked
   * regions, the peer is not detached): the caller folds and begins a round for all.
   */
  startFor(peer: string): Promise<number> {
    const p = this.starting.then(() => this.doStartFor(peer));
    this.starting = p.catch(() => undefined);
    return p;
  }

  private async doStartFor(peer: string): Promise<number> {
    const { journal, bitmap, round, seed, tracking, log, name, detached } = this.v;
    const can = (): boolean => tracking.mode === 'journal' && round.start === 0 && bitmap.count === 0 && !tracking.folding;
    if (!detached || !can() || !round.canResync) return 0;
    const begun = await detached.beginOwnRound(peer);
    if (!begun) return 0;
    const { bitmap: own, upTo } = begun;
    // (A fold meanwhile ends it before it began: the next round of all takes its bitmap, rejoinDetached.)
    if (!can()) return 0;
    round.open(upTo + 1, own.dirtyBytes, Date.now(), peer);
    seed.begin(false, new RegionSet(this.v.disk.size, bitmap.regionSize));
    log.info({ volume: name, peer }, `volume ${name}: resync round of ${peer} alone from record ${upTo + 1}: ` +
      `${formatBytes(own.dirtyBytes)} in ${own.count} regions to send; the other peers keep streaming`);
    return upTo + 1;
  }

  /**
   * A first sync of new `peer`'s own, compared by hash (docs/PEERS.md, "The first sync
   * with several peers"): a secondary that has never held this volume (or was reset)
   * links to a volume with several peers. Its bitmap, every region marked, becomes the
   * round's list (DetachedPeers.beginFirstSync), the peer follows the journal again from
   * the journal's last record U, and the round opens at U + 1, owned by it, with a
   * comparison: a region found equal on its replica leaves its bitmap alone, so the
   * comparison may run with several peers. The other peers keep streaming, sent the
   * round's records as padding. No marker: a stop merges its bitmap into the volume's at
   * the start (a round of all). Returns the round's first seq, or 0 when it cannot be
   * (a round is open, the volume tracks by bitmap or has marked regions, a fold is under
   * way, no round store or peer store).
   */
  firstSyncFor(peer: string): Promise<number> {
    const p = this.starting.then(() => this.doFirstSyncFor(peer));
    this.starting = p.catch(() => undefined);
    return p;
  }

  private async doFirstSyncFor(peer: string): Promise<number> {
    const { bitmap, round, seed, tracking, log, name, detached, disk } = this.v;
    const can = (): boolean => tracking.mode === 'journal' && round.start === 0 && bitmap.count === 0 && !tracking.folding;
    if (!detached || !can() || !round.canResync) return 0;
    const begun = await detached.beginFirstSync(peer, (upTo, own) => {
      // (In the turn the peer's cursor moves to U: every record of the round touches what it writes.)
      if (!can()) return false;
      round.open(upTo + 1, own.dirtyBytes, Date.now(), peer, true);
      seed.begin(true, new RegionSet(disk.size, own.regionSize), new RegionSet(disk.size, own.regionSize), true);
      return true;
    });
    if (!begun) return 0;
    log.info({ volume: name, peer }, `volume ${name}: first sync of ${peer} alone from record ${begun.upTo + 1}: the volume ` +
      `(${formatBytes(disk.size)}) will be compared with its replica by hash; regions that differ are sent, holes on both sides ` +
      'are skipped; the other peers keep streaming');
    return begun.upTo + 1;
  }

  /**
   * A reload changed the volume's peers (docs/PEERS.md, "Adding and removing a
   * secondary"). Each one added joins detached, its bitmap every region marked
   * (DetachedPeers.addNew): its first sync of its own begins when it links. Each one
   * taken away leaves: a round of its own ends where it is (under the lock of every
   * range, so no run of it is being read or journaled), its records still padding for
   * the others, and its bitmap and cursor go. In turn with the rounds' beginnings and
   * after any fold. Added first: the volume never has no peer.
   */
  setPeers(next: readonly string[]): Promise<{ added: string[]; removed: string[] }> {
    const { cursors, detached, round, seed, journal, ranges, disk, tracking } = this.v;
    assert(detached !== null && next.length > 0 && new Set(next).size === next.length && !next.includes(THE_PEER) && !cursors.has(THE_PEER),
      () => `volume ${this.v.name}: its peers ${cursors.peers.join(', ')} cannot become ${next.join(', ')}`);
    const p = this.starting.then(async () => {
      const added = next.filter((peer) => !cursors.has(peer));
      const removed = cursors.peers.filter((peer) => !next.includes(peer));
      await tracking.quiesce();
      for (const peer of added) await detached.addNew(peer);
      // A round of all comparing with its one peer (a first sync by hash) compares no more:
      // a region found equal there would leave the bitmap every peer's round reads, and
      // the hash requests are the comparing peer's alone. What is left goes whole.
      if (added.length > 0 && round.start !== 0 && round.owner === null && seed.active) seed.stop();
      for (const peer of removed) {
        await detached.remove(peer, async () => {
          const unlock = await ranges.lock(0, disk.size);
          try {
            // (A fold meanwhile dropped the round: nothing of it is left to end.)
            if (round.owner !== peer) return;
            round.abandon(peer, journal.lastSeq);
            seed.stop();
          } finally {
            unlock();
          }
        });
      }
      seed.alone = cursors.count === 1;
      assert(cursors.peers.length === next.length && next.every((peer) => cursors.has(peer)),
        () => `volume ${this.v.name}: its peers are ${cursors.peers.join(', ')} where ${next.join(', ')} were set`);
      return { added, removed };
    });
    this.starting = p.catch(() => undefined);
    return p;
  }

  /** The bitmap the open round sends: its peer's own in a round for one peer, else the volume's. */
  roundBitmap(): DirtyBitmap {
    const own = this.v.round.owner !== null ? this.v.detached?.ownRound : null;
    return own?.bitmap ?? this.v.bitmap;
  }

  /** Bytes the open round has left to hand over. */
  leftBytes(): number {
    const b = this.roundBitmap();
    return this.v.round.leftBytes(b.count, b.regionSize);
  }

  /**
   * The first sync of a new pair: every region is marked, and the first round compares
   * them with the peer's before it sends (src/sync/seeding.ts): what differs goes
   * (regions that read as zeros as Zeroes records), holes on both sides are skipped.
   * Two new secondaries linking at once (docs/PEERS.md) wait for the same one.
   */
  beginInitialSync(): Promise<void> {
    // In turn with start() (another peer's link in bitmap mode): a round it opened meanwhile
    // would take a bitmap not yet all marked, and the comparison this one asks for.
    if (this.initial) return this.initial;
    const p = this.starting.then(() => this.doBeginInitialSync()).finally(() => {
      if (this.initial === p) this.initial = null;
    });
    this.initial = p;
    this.starting = p.catch(() => undefined);
    return p;
  }

  private initial: Promise<void> | null = null;

  private async doBeginInitialSync(): Promise<void> {
    const { bitmap, tracking, log, name } = this.v;
    this.v.seed.pending = true;
    await this.v.flush();
    bitmap.markAll();
    await bitmap.sync();
    // (As `folding`: a round a link begins meanwhile waits for it, rather than open under the fold.)
    await tracking.foldOnPurpose();
    if (this.v.cursors.count > 1) {
      log.info({ volume: name }, `volume ${name}: first sync: the volume (${formatBytes(this.v.disk.size)}) will be sent to every peer ` +
        '(with several secondaries nothing is compared by hash, docs/PEERS.md); regions that read as zeros go as Zeroes records');
    } else {
      log.info({ volume: name }, `volume ${name}: first sync: the volume (${formatBytes(this.v.disk.size)}) will be compared with the peer's ` +
        'when the link comes up; regions that differ are sent, holes on both sides are skipped');
    }
  }

  /** Folds the journal into the bitmap and begins a new round (the peer is behind what the journal holds). */
  async restart(reason: string): Promise<number> {
    this.v.tracking.toBitmap(reason);
    await this.v.tracking.quiesce();
    return this.start();
  }

  /**
   * Hands the next run of dirty regions (at most maxBytes) to the journal: the run
   * is locked against host writes, read from the volume, and journaled as a resync
   * record (all zeros: a Zeroes record). When no region is left, appends the
   * round-end barrier. Returns false when there was nothing to do.
   */
  async step(maxBytes: number): Promise<boolean> {
    const { journal, round, tracking } = this.v;
    if (!round.start || tracking.mode !== 'journal' || round.endSeq) return false;
    const bitmap = this.roundBitmap();
    const next = round.nextRun(bitmap.dirtyRegions(), bitmap.regionSize, maxBytes, this.v.seed.active);
    if (next.type === 'wait') return false;
    if (next.type === 'end') {
      const r = journal.barrier(FLAG_ROUND_END, true);
      if (r === 'full') {
        tracking.overflow();
        return false;
      }
      if (typeof r === 'number') round.endSeq = r;
      return true;
    }
    const { first, count } = next;
    const offset = first * bitmap.regionSize;
    const length = Math.min(count * bitmap.regionSize, this.v.disk.size - offset);
    // (Regions a grow's bitmaps count before its disk answers with the new size, src/journal/grow.ts: sent once it does.)
    if (length <= 0) return false;
    const unlock = await this.v.ranges.lock(offset, length);
    try {
      if (!round.start || tracking.mode !== 'journal') return false;
      // A run wholly in a hole here reads as zeros: a Zeroes record, nothing read.
      const map = await this.v.disk.extents(offset, length, 1);
      const hole = map.length === 1 && map[0]!.hole && map[0]!.length >= length;
      // The run is read into one of the node's frame buffers (src/memory/owned-buffers.ts),
      // back in the pool once the journal has written its record: a fresh megabyte per
      // run cost an mmap and 256 page faults, most of the first sync's event loop
      // (docs/RESYNC.md, "The first sync's own CPU").
      let owned: Owned | null = null;
      let seq: number | 'full';
      try {
        let data: Buffer | null = null;
        if (!hole) {
          owned = frameBuffers.take(length);
          data = owned.bytes;
          await this.v.disk.read(offset, data, 0, length);
        }
        const zero = data === null || isZero(data);
        try {
          seq = zero ? journal.appendResync(RecordKind.Zeroes, offset, length, null) : journal.appendResync(RecordKind.Write, offset, length, data);
        } catch (e) {
          tracking.toBitmap(`cannot append to the journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
          return false;
        }
        if (typeof seq === 'number' && !zero && owned) {
          // (A failed write keeps the handle: only the collector frees what a broken queue may still hold.)
          const mine = owned;
          owned = null;
          journal.whenWritten(seq).then(() => mine.give(), () => undefined);
        }
      } finally {
        owned?.give();
      }
      if (seq === 'full') {
        tracking.overflow();
        return false;
      }
      round.handedOver(seq, first, count);
      // (A round's records fill the journal as host writes do: a peer far behind leaves it.)
      if (this.v.detached && this.v.cursors.count > 1) this.v.detached.check();
      return true;
    } finally {
      unlock();
    }
  }

  /**
   * At a start inside a round: the round-end barrier a previous life already journaled
   * (its seq, or 0). A round resumed without it would append a second end, and tell
   * a peer that had passed the first to open the round again (docs/RESYNC.md).
   */
  async journaledEnd(from: number): Promise<number> {
    const { journal, tracking } = this.v;
    // (A journal folded into the bitmap at the start, for want of room, holds no end
    // that matters: the round starts over. A fold in progress releases what it folds.)
    await tracking.quiesce();
    if (tracking.mode !== 'journal') return 0;
    for (let seq = Math.max(from, journal.released + 1); seq <= journal.lastSeq; seq = Math.max(seq, journal.released + 1)) {
      const batch = await journal.readHeaders(seq, READ_BATCH_BYTES, journal.lastSeq);
      if (batch.length === 0) break;
      const end = batch.find((h) => h.kind === RecordKind.Barrier && (h.flags & FLAG_ROUND_END) !== 0);
      if (end) return end.seq;
      seq = batch[batch.length - 1]!.seq + 1;
    }
    return 0;
  }

  /** After a sync: regions whose resync records are durable leave the bitmap; a durable round end closes the round. */
  async settle(): Promise<void> {
    const { journal, round, log, name } = this.v;
    if (!round.start) return;
    const bitmap = this.roundBitmap();
    if (this.v.tracking.mode !== 'journal') {
      // Overflowed again: the fold marked everything unreleased; the round starts over.
      round.forgetRuns();
      return;
    }
    const durable = journal.durableSeq;
    bitmap.clearAll(round.settle(durable));
    // A round of one peer's own is complete once that peer holds its end: another peer
    // (down, perhaps for good after a failover) may hold the journal back, and the round
    // is not its business (it is sent the round as padding).
    const held = round.owner !== null ? Math.max(journal.released, this.v.cursors.of(round.owner)) : journal.released;
    if (round.complete(durable, held, bitmap.count)) {
      await bitmap.sync();
      const owner = round.owner;
      if (owner !== null) await this.v.detached?.endOwnRound();
      else if (round.canResync) await round.removeMark();
      log.info({ volume: name }, `volume ${name}: resync round${owner !== null ? ` of ${owner}` : ''} from record ${round.start} ` +
        `is complete at record ${round.endSeq}`);
      round.close();
    }
  }

  /**
   * The peer's hashes of regions first.. (a first sync by checksum): each region
   * still to send whose bytes here hash the same is equal on both sides, and leaves
   * the bitmap without travelling (src/sync/seeding.ts says which may). Compared
   * under the range lock, against what the volume holds now; later host writes there
   * are journaled and follow in order. `algorithm`: the hash the peer's were made with (its link's).
   */
  async compareRegions(first: number, regionSize: number, hashes: Buffer[], algorithm: RegionHash): Promise<number> {
    const { disk, seed, round } = this.v;
    // (The round's bitmap: a peer's own in its first sync of its own, where an equal region leaves it for that peer alone.)
    const bitmap = this.roundBitmap();
    if (!round.start || !seed.accepts(first, regionSize, bitmap.regionSize)) return 0;
    const comparison = seed.comparison;
    let equal = 0;
    // The whole span at once: one lock and large reads (host writes there wait for one
    // read); regions in a hole here are not read (src/sync/region-hashes.ts).
    const offset = first * regionSize;
    const length = Math.max(0, Math.min(hashes.length * regionSize, disk.size - offset));
    const unlock = await this.v.ranges.lock(offset, length);
    try {
      const here = (await hashRegions(algorithm, disk, regionSize, first, Math.ceil(length / regionSize), () => true, this.v.hashBuffers))!;
      // Waiting for the lock and the reads, the round may have been folded away and
      // another begun: this reply, of the peer's replica as the old round knew it, must
      // not clear the new round's regions (src/sync/seeding.ts). Checked in the turn of the clears.
      // (And the round folded away, none begun since: the comparison is still open, but
      // the bitmap is no longer the round's.)
      if (!round.start || bitmap !== this.roundBitmap() || !seed.accepts(first, regionSize, bitmap.regionSize, comparison)) return 0;
      // (Cleared together: each page of the bitmap written once, not once a region.)
      const same: number[] = [];
      here.forEach((h, i) => {
        const r = first + i;
        if (!seed.comparable(r, bitmap.isSet(r), round.isHanded(r))) return;
        if (h.equals(hashes[i]!)) same.push(r);
      });
      bitmap.clearAll(same);
      equal += same.length;
    } finally {
      unlock();
    }
    seed.compared(first, hashes.length, equal, regionSize, bitmap.regions);
    return equal;
  }

  /**
   * The peer's holes from `offset` to `offset + covered` (a first sync by checksum on
   * a link at protocol version 2): a region still to compare that is a hole on both
   * sides reads as zeros on both, and leaves the bitmap unread (src/sync/seeding.ts
   * says which may). Under the range lock, against this volume's allocation map now,
   * as compareRegions; the map here is asked for at most HASH_MAP_EXTENTS extents,
   * and what it does not reach is mapped by the next request.
   */
  async clearHoles(offset: number, covered: number, peerHoles: Span[]): Promise<number> {
    const { disk, seed, round } = this.v;
    const bitmap = this.roundBitmap();
    const rs = bitmap.regionSize;
    if (!round.start || !seed.acceptsMap(offset, rs, rs)) return 0;
    const comparison = seed.comparison;
    const length = Math.max(0, Math.min(covered, disk.size - offset));
    let equal = 0;
    let reach = offset + length;
    if (length > 0) {
      const unlock = await this.v.ranges.lock(offset, length);
      try {
        const here = holesOf(await disk.extents(offset, length, HASH_MAP_EXTENTS), offset, HASH_MAP_EXTENTS);
        // As in compareRegions: only for the comparison that accepted the map, still waiting for it.
        if (!round.start || bitmap !== this.roundBitmap() || !seed.acceptsMap(offset, rs, rs, comparison)) return 0;
        reach = offset + here.covered;
        for (const run of sharedHoleRegions(here.holes, peerHoles, rs, disk.size)) {
          equal += bitmap.clearRun(run.first, run.end, (r) => seed.comparable(r, true, round.isHanded(r)));
        }
        // What is still marked inside the peer's holes holds data here (or is not
        // comparable): it is sent, and its hash is not asked for (no second read of it).
        for (const run of sharedHoleRegions(peerHoles, [{ offset, length: here.covered }], rs, disk.size)) {
          for (let r = run.first; r < run.end; r++) if (bitmap.isSet(r)) seed.differs(r * rs, rs);
        }
      } finally {
        unlock();
      }
    }
    seed.mapped(reach >= disk.size ? bitmap.regions : Math.floor(reach / rs), equal, rs);
    return equal;
  }

  /**
   * Online verify, one batch: host writes to regions first..first+count wait while
   * they are read and hashed after a flush, so the peer, once it has applied through
   * `afterSeq`, must hold exactly these bytes. The caller unlocks once the peer's
   * hashes are in (or the attempt is given up). `algorithm`: the link's, which the peer hashes with.
   */
  async verifyHashes(
    first: number, count: number, algorithm: RegionHash,
  ): Promise<{ hashes: Buffer[]; afterSeq: number; unlock: () => void; readBytes: number }> {
    const { disk, bitmap } = this.v;
    const rs = bitmap.regionSize;
    const offset = first * rs;
    const length = Math.max(0, Math.min(count * rs, disk.size - offset));
    const unlock = await this.v.ranges.lock(offset, length);
    try {
      // The batch's flush point: the host's writes to it are in the journal up to the
      // last seq, shipped once durable and applied once a barrier ends them. A journal
      // already durable through its last record with no write in its open epoch has
      // that point already (a quiet volume: no sync per batch).
      const j = this.v.journal;
      if (j.openEpochHasWrites || j.durableSeq < j.lastSeq) await this.v.flush();
      const afterSeq = j.lastSeq;
      const read = { bytes: 0 };
      const hashes = (await hashRegions(algorithm, disk, rs, first, Math.ceil(length / rs), () => true, this.v.hashBuffers, read))!;
      return { hashes, afterSeq, unlock, readBytes: read.bytes };
    } catch (e) {
      unlock();
      throw e;
    }
  }

  /** Verify found these regions different on the peer: they go to the bitmap, and the next link resyncs them. */
  markForResync(regions: number[], reason: string): void {
    for (const r of regions) this.v.bitmap.mark(r * this.v.bitmap.regionSize, 1);
    this.v.tracking.toBitmap(reason);
  }
}
