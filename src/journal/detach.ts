// Peers detached from the journal (docs/PEERS.md): when the journal passes
// PEER_DETACH_FILL of its capacity and the slowest peer is behind another, that peer
// leaves the journal for a dirty bitmap of its own, so the others keep streaming and
// the journal is released as they ack. Before the journal lets go of records a
// detached peer lacks, their ranges are marked in its bitmap and the bitmap is synced:
// every record a peer lacks is in the journal, its bitmap, or the volume's bitmap.
//
// The peer's bitmap file exists exactly while it is detached or in a round of its own.
// It comes back to the journal when it acks past what its bitmap marks (caughtUp), or
// when a resync round begins: its bitmap joins the volume's and the round sends it
// (rejoinAll; at a start, mergeAtStart, the same), or through a round of its own
// (beginOwnRound).
//
// A new secondary of a volume with several gets a first sync of its own
// (beginFirstSync): its bitmap, every region marked, is that round's list, compared by
// hash with its replica; the other peers keep streaming. One that must wait for
// another's round leaves the journal meanwhile (detachNew), its bitmap all marked.
// A peer a reload adds to a volume served here joins the same way (addNew); one a
// reload takes away leaves with its bitmap, and a round of its own ends (remove).
import { formatBytes } from '../units/units.js';
import type { Logger } from '../log/log.js';
import type { Store } from '../store/store.js';
import { assert } from '../invariants/assert.js';
import { READ_BATCH_BYTES, PEER_DETACH_FILL } from '../limits/limits.js';
import { DirtyBitmap, peerBitmapFile } from './bitmap.js';
import type { Journal } from './journal.js';
import type { PeerCursors } from './peer-cursors.js';
import { RecordKind } from './record.js';

export interface DetachHost {
  name: string;
  log: Logger;
  journal: Journal;
  cursors: PeerCursors;
  /** The volume's bitmap (every peer lacks what it marks). */
  bitmap: DirtyBitmap;
  /** The volume size a peer's bitmap opened now is made for (the new one from the start of a grow). */
  readonly size: number;
  /** The volume's state folder, where each detached peer's bitmap lives. */
  store: Store;
  /** A peer was detached: the journal may release up to the lowest attached peer now. */
  detachedOne(): void;
}

export class DetachedPeers {
  private readonly bitmaps = new Map<string, DirtyBitmap>();
  private detaching: Promise<void> | null = null;
  /** A first sync of one peer's own is opening its bitmap file: no laggard is detached (beginFirstSync). */
  private opening = false;
  /**
   * A peer resynced by a round of its own (docs/PEERS.md): it follows the journal again
   * from the round's start, and its bitmap is the list of regions the round sends
   * (`first`: a new secondary's first sync, every region marked at its start).
   */
  ownRound: { peer: string; bitmap: DirtyBitmap; first: boolean } | null = null;

  constructor(private readonly v: DetachHost) {}

  /** The bitmap of detached `peer`, or of the peer in a round of its own (undefined: neither). */
  bitmapOf(peer: string): DirtyBitmap | undefined {
    return this.bitmaps.get(peer) ?? (this.ownRound?.peer === peer ? this.ownRound.bitmap : undefined);
  }

  /**
   * Detached `peer` is to be resynced by a round of its own: the records it lacks up to
   * the journal's written end (`upTo`) are marked in its bitmap (synced), and it follows
   * the journal again from `upTo`, its bitmap now the round's list (ownRound), which
   * begins at `upTo + 1`. Null when `peer` is not detached (any more), or a fold came
   * meanwhile (the next round, of all, takes its bitmap).
   */
  beginOwnRound(peer: string): Promise<{ bitmap: DirtyBitmap; upTo: number } | null> {
    const p = this.marking.then(async () => {
      const { cursors, journal } = this.v;
      const own = this.bitmaps.get(peer);
      const marked = (): number => cursors.detached.find((d) => d.peer === peer)?.markedUpTo ?? -1;
      if (!own || !cursors.isDetached(peer) || this.ownRound) return null;
      const upTo = Math.max(journal.writtenSeq, marked());
      await this.mark(upTo);
      // (A fold meanwhile moved its marked point past `upTo`: the volume's bitmap holds the rest.)
      if (marked() !== upTo) return null;
      cursors.rejoinAt(peer, upTo);
      this.bitmaps.delete(peer);
      this.ownRound = { peer, bitmap: own, first: false };
      return { bitmap: own, upTo };
    });
    this.marking = p.then(() => undefined, () => undefined);
    return p;
  }

  /**
   * A first sync of `peer`'s own (a new secondary of a volume with several, docs/PEERS.md):
   * its bitmap file, every region marked, is made durable with the folder, so a stop from
   * here merges it into the volume's at the start (a round of all: correct, if costly).
   * Then, in one turn, `open(upTo, bitmap)` opens the round from `upTo + 1` (the journal's
   * last record U + 1; false: it cannot be), the peer follows the journal from U (what it
   * lacks before is in the bitmap) and the bitmap becomes the round's list (ownRound).
   * Null when it cannot be (a round of one peer's own is open, or `open` said no). A peer
   * detached (waiting for another's round, detachNew) takes its bitmap along, all marked.
   */
  beginFirstSync(peer: string, open: (upTo: number, bitmap: DirtyBitmap) => boolean): Promise<{ bitmap: DirtyBitmap; upTo: number } | null> {
    const p = this.marking.then(async () => {
      const { cursors, journal, store, name } = this.v;
      // (No laggard is detached meanwhile: that would open the same file, check().)
      await this.settled();
      if (this.ownRound) return null;
      this.opening = true;
      const file = peerBitmapFile(peer);
      let own: DirtyBitmap;
      try {
        own = await this.allMarked(peer, this.bitmaps.get(peer));
      } finally {
        this.opening = false;
      }
      const detached = cursors.detached.find((d) => d.peer === peer);
      const upTo = Math.max(journal.lastSeq, detached?.markedUpTo ?? 0);
      // (No await from here to the round's opening: every record after U is journaled
      // while the round compares, and touches the regions it writes, src/sync/seeding.ts.)
      if (this.ownRound || !open(upTo, own)) {
        if (!this.bitmaps.has(peer)) {
          own.close();
          store.remove(file);
          await store.syncDir();
        }
        return null;
      }
      if (detached) {
        cursors.rejoinAt(peer, upTo);
        this.bitmaps.delete(peer);
      } else {
        cursors.followFrom(peer, upTo);
      }
      this.ownRound = { peer, bitmap: own, first: true };
      assert(own.count === own.regions, () => `volume ${name}: ${peer}'s first sync begins with ${own.count} of ${own.regions} regions marked`);
      return { bitmap: own, upTo };
    });
    this.marking = p.then(() => undefined, () => undefined);
    return p;
  }

  /**
   * New `peer` waits for another peer's round to end before its first sync of its own:
   * it leaves the journal for a bitmap of its own with every region marked (what its
   * replica holds is not known), so its cursor holds back no release and that round can
   * end without its acks. False when it cannot be (detached already, in a round of its
   * own, or the only peer following the journal): it holds the journal meanwhile.
   */
  async detachNew(peer: string): Promise<boolean> {
    await this.settled();
    const p = this.doDetachNew(peer);
    this.detaching = p.then(() => undefined, () => undefined).finally(() => {
      this.detaching = null;
    });
    return p;
  }

  private async doDetachNew(peer: string): Promise<boolean> {
    const { cursors, store, log, name } = this.v;
    const can = (): boolean => !cursors.isDetached(peer) && cursors.attached.length >= 2 && this.ownRound?.peer !== peer;
    if (!can()) return false;
    const own = await this.allMarked(peer);
    if (!can()) {
      own.close();
      store.remove(peerBitmapFile(peer));
      return false;
    }
    this.bitmaps.set(peer, own);
    cursors.detach(peer);
    log.info({ volume: name, peer }, `volume ${name}: ${peer} is a new secondary waiting for its first sync; ` +
      `it holds the journal back no more (its bitmap marks every region), and ${cursors.attached.join(', ')} keep streaming`);
    this.v.detachedOne();
    return true;
  }

  /**
   * A reload added `peer` to this volume (docs/PEERS.md, "Adding and removing a
   * secondary"): what its replica holds is not known, so it joins detached, its bitmap
   * every region marked and durable first, as a new secondary waiting for its first
   * sync of its own (detachNew): it holds the journal back from nothing meanwhile.
   */
  addNew(peer: string): Promise<void> {
    const p = this.marking.then(async () => {
      const { cursors, journal, log, name } = this.v;
      await this.settled();
      const own = await this.allMarked(peer, this.bitmaps.get(peer));
      this.bitmaps.set(peer, own);
      cursors.addDetached(peer, journal.released);
      log.info({ volume: name, peer }, `volume ${name}: ${peer} is a new secondary; its first sync begins when it links ` +
        `(meanwhile its bitmap marks every region, and it holds the journal back from nothing)`);
    });
    this.marking = p.catch(() => undefined);
    return p;
  }

  /**
   * A reload took `peer` away from this volume: a round of its own ends first
   * (`endOwnRound`, the caller's: the round's state is not this object's), its bitmap
   * goes, and its cursor: the journal releases up to the lowest of the others. Another
   * peer stays (the caller checked).
   */
  remove(peer: string, endOwnRound: () => Promise<void>): Promise<void> {
    const p = this.marking.then(async () => {
      const { cursors, store } = this.v;
      await this.settled();
      const own = this.ownRound;
      if (own?.peer === peer) {
        await endOwnRound();
        assert(this.ownRound === own, () => `volume ${this.v.name}: ${peer}'s round changed while it ended`);
        this.ownRound = null;
        this.bitmaps.set(peer, own.bitmap);
      }
      this.forget(peer);
      cursors.remove(peer);
      await store.syncDir();
    });
    this.marking = p.catch(() => undefined);
    return p;
  }

  /**
   * The volume grows to `size` (JournaledVolume.grow): every detached peer's bitmap, and
   * a round of one peer's own, grows with it, durable, after a detach under way (one
   * that opens a bitmap from here on makes it of `size`, DetachHost.size).
   */
  grow(size: number): Promise<void> {
    const p = this.marking.then(async () => {
      await this.settled();
      for (const b of this.bitmaps.values()) await b.grow(size);
      if (this.ownRound) await this.ownRound.bitmap.grow(size);
    });
    this.marking = p.catch(() => undefined);
    return p;
  }

  /** `peer`'s bitmap (`own`, or its file opened) with every region marked, durable with the folder: what a new secondary lacks. */
  private async allMarked(peer: string, own?: DirtyBitmap): Promise<DirtyBitmap> {
    const { store, size, bitmap } = this.v;
    const b = own ?? (await DirtyBitmap.open(store, size, bitmap.regionSize, peerBitmapFile(peer))).bitmap;
    b.markAll();
    await b.sync();
    await store.syncDir();
    return b;
  }

  /** The round of `ownRound`'s peer is complete (every region sent, its end acked): its bitmap goes. */
  async endOwnRound(): Promise<void> {
    const r = this.ownRound;
    if (!r) return;
    assert(r.bitmap.count === 0, () => `volume ${this.v.name}: ${r.peer}'s round ended with ${r.bitmap.count} regions unsent`);
    this.ownRound = null;
    r.bitmap.close();
    this.v.store.remove(peerBitmapFile(r.peer));
    await this.v.store.syncDir();
  }

  /**
   * At a start: a detached peer's bitmap is merged into the volume's and made durable
   * before its file goes (a crash in between merges it again). Returns how many were.
   */
  async mergeAtStart(): Promise<number> {
    const { store, bitmap, size, log, name } = this.v;
    let merged = 0;
    for (const peer of this.v.cursors.peers) {
      const file = peerBitmapFile(peer);
      if (peer === '' || !store.list().includes(file)) continue;
      const { bitmap: own, notes } = await DirtyBitmap.open(store, size, bitmap.regionSize, file);
      for (const n of notes) log.warn({ volume: name, peer }, `volume ${name}: ${peer}'s bitmap: ${n}`);
      for (const r of own.dirtyRegions()) bitmap.mark(r * bitmap.regionSize, 1);
      await bitmap.sync();
      own.close();
      store.remove(file);
      await store.syncDir();
      log.warn({ volume: name, peer },
        `volume ${name}: ${peer} was detached from the journal before the stop; its ${own.count} regions join the volume's bitmap ` +
        `and the next resync round sends them to every peer`);
      merged++;
    }
    return merged;
  }

  /** Called after an append: past PEER_DETACH_FILL of the journal with a peer behind another, that peer is detached. */
  check(): void {
    const j = this.v.journal;
    const laggard = this.v.cursors.laggard;
    // (Not a peer in a round of its own: its bitmap is the round's list. A journal it fills overflows.)
    if (this.detaching || this.opening || j.usedBytes < PEER_DETACH_FILL * j.capacity || laggard === null || laggard === this.ownRound?.peer) return;
    this.detaching = this.detach().catch((e: Error) => {
      this.v.log.error({ volume: this.v.name }, `volume ${this.v.name}: detaching a peer from the journal failed: ${e.message}`);
    }).finally(() => {
      this.detaching = null;
    });
  }

  /** Resolves when no detach is under way. */
  async settled(): Promise<void> {
    while (this.detaching) await this.detaching;
  }

  private async detach(): Promise<void> {
    const { cursors, journal, store, size, bitmap, log, name } = this.v;
    const peer = cursors.laggard;
    if (peer === null) return;
    // The file first, durable: from here on a start knows the peer's changes may be only in it.
    const { bitmap: own } = await DirtyBitmap.open(store, size, bitmap.regionSize, peerBitmapFile(peer));
    await own.sync();
    await store.syncDir();
    if (cursors.laggard !== peer) {
      // (Its acks came meanwhile: it is no longer behind.)
      own.close();
      store.remove(peerBitmapFile(peer));
      return;
    }
    const behind = journal.bytesAfter(cursors.of(peer));
    cursors.detach(peer);
    this.bitmaps.set(peer, own);
    log.warn({ volume: name, peer },
      `volume ${name}: ${peer} is ${formatBytes(behind)} behind (journal ${formatBytes(journal.usedBytes)} of ${formatBytes(journal.capacity)}); ` +
      `its changes from record ${cursors.of(peer) + 1} on are kept in its own bitmap, and ${cursors.attached.join(', ')} keep streaming`);
    this.v.detachedOne();
  }

  /**
   * Before the journal releases up to `target`: the records each detached peer lacks up
   * to it are marked in that peer's bitmap, which is then synced. One marking at a time.
   */
  markUpTo(target: number): Promise<void> {
    const p = this.marking.then(() => this.mark(target));
    this.marking = p.catch(() => undefined);
    return p;
  }

  private marking: Promise<void> = Promise.resolve();

  private async mark(target: number): Promise<void> {
    const { cursors, journal } = this.v;
    for (const { peer, markedUpTo } of cursors.detached) {
      if (markedUpTo >= target) continue;
      const own = this.bitmaps.get(peer);
      assert(own !== undefined, () => `volume ${this.v.name}: ${peer} is detached without a bitmap`);
      for (let from = Math.max(markedUpTo, journal.released) + 1; from <= target;) {
        // (Headers only: where each record wrote is all the bitmap needs.)
        const batch = await journal.readHeaders(from, READ_BATCH_BYTES);
        // (Empty when a release overtook the read: the loop goes on from past it.)
        if (batch.length === 0 && from > journal.released) break;
        for (const r of batch) {
          if (r.seq > target) break;
          if (r.kind !== RecordKind.Barrier && r.kind !== RecordKind.Skip) own.mark(r.offset, r.length);
        }
        from = Math.max(batch.length > 0 ? batch[batch.length - 1]!.seq + 1 : from, journal.released + 1);
      }
      await own.sync();
      cursors.markedTo(peer, target);
    }
  }

  /**
   * Detached `peer` acked `seq`: once that reaches where its bitmap is marked, it holds
   * every record the bitmap stands for, so the bitmap goes and the peer follows the
   * journal again (its cursor at or past the release point, which never passed the
   * marked point). Its ack, not its cursor: a fold moves the cursor of a detached peer
   * too (the volume's bitmap holds what it lacked of the journal), but not what its own
   * bitmap holds, which only rejoinAll may hand over.
   */
  caughtUp(peer: string, seq: number): Promise<void> {
    const p = this.marking.then(async () => {
      const { cursors, store, log, name } = this.v;
      const d = cursors.detached.find((x) => x.peer === peer);
      if (!d || seq < d.markedUpTo) return;
      cursors.attach(peer);
      this.forget(peer);
      await store.syncDir();
      log.info({ volume: name, peer }, `volume ${name}: ${peer} caught up with the journal (record ${cursors.of(peer)}); its bitmap is no longer needed`);
    });
    this.marking = p.catch(() => undefined);
    return p;
  }

  /**
   * A resync round begins (the journal was folded into the volume's bitmap, which
   * every peer lacks): each detached peer's bitmap joins the volume's, made durable
   * before its file goes, and the peer follows the journal again from the fold. The
   * round sends its regions to every peer (rounds for one peer: docs/PEERS.md).
   */
  rejoinAll(): Promise<number> {
    const p = this.marking.then(async () => {
      const { cursors, bitmap, store, log, name } = this.v;
      const detached = cursors.detached;
      const own = this.ownRound;
      if (own) {
        // A round of its own was folded away with the journal: what it had left to send joins the volume's.
        for (const r of own.bitmap.dirtyRegions()) bitmap.mark(r * bitmap.regionSize, 1);
        await bitmap.sync();
        this.ownRound = null;
        this.bitmaps.set(own.peer, own.bitmap);
        this.forget(own.peer);
        log.info({ volume: name, peer: own.peer }, `volume ${name}: the round of ${own.peer} alone was folded away; its regions join the volume's`);
        await store.syncDir();
      }
      if (detached.length === 0) return own ? 1 : 0;
      for (const { peer } of detached) {
        const own = this.bitmaps.get(peer);
        assert(own !== undefined, () => `volume ${name}: ${peer} is detached without a bitmap`);
        for (const r of own.dirtyRegions()) bitmap.mark(r * bitmap.regionSize, 1);
      }
      await bitmap.sync();
      for (const { peer, markedUpTo } of detached) {
        const regions = this.bitmaps.get(peer)!.count;
        // From its marked point on (a fold moved it there, unless the fold failed and marked
        // every region): what it lacks before is in the volume's bitmap now, the rest in the journal.
        cursors.rejoinAt(peer, Math.max(cursors.of(peer), markedUpTo));
        this.forget(peer);
        log.info({ volume: name, peer }, `volume ${name}: ${peer}'s bitmap (${regions} regions) joins the volume's for the resync round; ` +
          `${peer} follows the journal again`);
      }
      await store.syncDir();
      return detached.length;
    });
    this.marking = p.then(() => undefined, () => undefined);
    return p;
  }

  /** Closes and removes detached `peer`'s bitmap file (the caller syncs the folder). */
  private forget(peer: string): void {
    // (No bitmap: its file may still be there, from a stop before it could go.)
    this.bitmaps.get(peer)?.close();
    this.bitmaps.delete(peer);
    this.v.store.remove(peerBitmapFile(peer));
  }

  /** After a release: the journal never let go of a record a detached peer lacks and its bitmap does not hold. */
  checkReleased(): void {
    for (const { peer, markedUpTo } of this.v.cursors.detached) {
      assert(this.v.journal.released <= markedUpTo,
        () => `volume ${this.v.name}: the journal released up to ${this.v.journal.released} but ${peer}'s bitmap is marked only up to ${markedUpTo}`);
    }
  }

  close(): void {
    for (const b of this.bitmaps.values()) b.close();
    this.ownRound?.bitmap.close();
  }
}
