// A resync round's adapter on the primary (docs/RESYNC.md): it drives one volume's
// pump, handing dirty regions to the journal at the pace src/sync/round.ts's pumpStep
// sets and making what it handed over durable so it ships, and a first sync's
// comparison by hash (src/sync/seeding.ts): the MapRequest and HashRequests on the link, a
// MapRequest alone, HashRequests a few at once (SEED_ASKS_IN_FLIGHT) with their replies
// compared one after the other, in order, and the peer's hashes to the write path. VolumeShipper owns one and ticks it;
// what the link is doing it reads through ResyncLink. With several peers, a new
// secondary gets a first sync of its own at link-up (or waits, its link up and
// nothing shipped, for another peer's round to end: docs/PEERS.md); only the peer a round compares with is
// asked for hashes, and the others keep streaming meanwhile.
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { MAX_HASH_REGIONS, encodeHashRequest, encodeMapRequest, encodeResync } from './frame.js';
import { SEED_ASKS_IN_FLIGHT } from '../sync/seeding.js';
import { regionHashOf, type Span } from '../sync/region-hashes.js';
import { pumpStep } from '../sync/round.js';

/** The link as the resync uses it; `version`: the protocol version it agreed (absent: 1). */
type ResyncSession = { send(parts: Buffer[]): void; close(reason: string): void; version?: number };

/** The shipper's link, as the resync sees it. */
export interface ResyncLink {
  /** The link now (null: down, or shipping waits for a resync of a gap). */
  session(): ResyncSession | null;
  /** Shipping on this link waits (a gap only a resync fills, or the link is closing): the shipper lets it go. */
  detach(): void;
  /** The link's rate cap (bytes per second; null: none). */
  rate(): number | null;
  /** Records were made durable here: the shipper's machine hears of those it has not yet. */
  durable(): void;
}

export class ResyncDriver {
  /** A step of the pump is being read into the journal. */
  private resyncing = false;
  /** A flush of what the pump handed over is under way. */
  private flushing = false;
  /** A MapRequest is out (first sync by checksum): what it asked. (The HashRequests out are the Seeding's.) */
  private mapAsked: { offset: number; length: number } | null = null;
  /** The replies taken, compared one after the other in the order they came. */
  private comparing: Promise<void> = Promise.resolve();
  /** The gap that keeps shipping waiting was said (once until a link resumes). */
  private gapReported = false;
  /**
   * The link on which a new secondary's first sync waits for another peer's round
   * (firstSyncOfItsOwn): it stays up, nothing shipped, and the shipper begins it again
   * once that round ended (mayBeginAgain). Null: none waits.
   */
  waiting: ResyncSession | null = null;
  /** Whose round that is, in the operator's words ("site-b", or "every peer (site-b, site-c)"), while `waiting`. */
  waitingFor: string | null = null;
  /** The wait was said (once until shipping resumes). */
  private waitReported = false;

  constructor(
    private readonly name: string,
    private readonly jv: JournaledVolume,
    private readonly log: Logger,
    /** The configured window (bytes): pumpStep keeps what waits to be acked within it. */
    private readonly windowBytes: number,
    private readonly link: ResyncLink,
    /** The peer this link ships to (a round of another peer's own is none of its business, docs/PEERS.md). */
    private readonly peer: string,
  ) {}

  /**
   * A new link's beginning, up to where shipping resumes: the peer holds records up to
   * `peerDurable` and has the round starting at `peerRound` open (0: none). A new pair
   * begins a first sync; a volume in bitmap mode begins a round; a round the peer has
   * not opened is announced with a Resync frame, and one is restarted for records the
   * journal let go of without the peer's ack. Then `resumeAt` is called with the seq
   * the peer resumes after, in the same turn as the last check of the link; it is not
   * called if the link went meanwhile, on a gap (records the peer lacks that no round
   * covers: shipping waits for a resync), or for a peer ahead of this journal (closed).
   */
  async begin(s: ResyncSession, peerDurable: number, peerRound: number, peerFirstMeeting: boolean, resumeAt: (seq: number) => void): Promise<void> {
    const j = this.jv.journal;
    // A peer that holds no record and has no round open may hold anything (a new replica,
    // an old primary just demoted, a replaced disk): whatever this volume tracks, by its
    // journal or by its dirty bitmap after an overflow, says nothing of what that replica
    // lacks, so its first round covers every region (compared by hash).
    const newPeer = peerFirstMeeting && this.jv.canResync && peerDurable === 0 && peerRound === 0;
    // A peer a reload took away during a round of its own and put back (its bitmap marks
    // every region): its replica is between flush points, in a round no longer open here;
    // as a new secondary's, its own round compares by hash and ends it (replication simulation seed 3400).
    const own = this.jv.detached?.bitmapOf(this.peer);
    const unknown = own !== undefined && own.count === own.regions && this.jv.cursors.count > 1;
    const midRound = unknown && this.jv.canResync && peerRound !== 0 && peerRound !== this.jv.roundStartFor(this.peer);
    if ((newPeer || midRound) && this.jv.cursors.count > 1) {
      // A new secondary of a volume with several: a first sync of its own (docs/PEERS.md).
      if (!await this.firstSyncOfItsOwn(s)) return;
    } else if (newPeer && !this.jv.roundCoversAllFor(this.peer)) {
      // A new pair (the secondary has never held this volume): the first sync sends all of it.
      // (With one peer, an open round of every region is this peer's first sync whose
      // Resync never reached it, and is announced below; a round of some regions is not.)
      await this.jv.beginInitialSync();
    }
    if (this.jv.mode === 'bitmap' && this.jv.canResync) await this.jv.startResync();
    if (this.link.session() !== s) return;
    let resume = peerDurable;
    const round = this.jv.roundStartFor(this.peer);
    // The peer must open the round (or finish its jump into it), unless it already holds the round's end.
    const peerPassedRound = this.jv.roundEnd > 0 && peerDurable >= this.jv.roundEnd;
    if (round && !peerPassedRound && (peerRound !== round || peerDurable < round - 1)) {
      // Everything before the round that the peer lacks is in the round's regions.
      s.send(encodeResync(this.name, round));
      // A peer short of the round's start jumps to it; one past it (it already holds
      // records of the round) continues where it is, inside the round.
      resume = Math.max(peerDurable, round - 1);
    }
    if (resume < j.released && this.jv.canResync && this.jv.mode === 'journal') {
      // The peer lacks records this journal let go of without its ack: detached into a
      // bitmap of its own, a round of its own sends it while the other peers stream on
      // (docs/PEERS.md); else (folded into the bitmap on a full disk) a new round covers them.
      const why = `the peer holds up to record ${resume} but the journal starts at ${j.released + 1}`;
      // (A bitmap of its own marking every region, a peer a reload put back: what its replica
      // holds is not known, so its round compares by hash first, as a new secondary's.)
      const round2 = (unknown && this.jv.cursors.isDetached(this.peer) ? await this.jv.firstSyncFor(this.peer) : 0) ||
        (this.jv.cursors.isDetached(this.peer) ? await this.jv.startRoundFor(this.peer) : 0) || await this.jv.restartRound(why);
      if (this.link.session() !== s) return;
      s.send(encodeResync(this.name, round2));
      resume = Math.max(peerDurable, round2 - 1);
    }
    // Records the peer lacks must still be in the journal (or covered by a round).
    const gap = this.jv.mode === 'bitmap' || resume < j.released;
    if (gap) {
      if (!this.gapReported) {
        this.gapReported = true;
        const what = this.jv.mode === 'bitmap'
          ? `${this.jv.bitmap.count} regions are tracked in the dirty bitmap`
          : `the peer holds up to record ${peerDurable} but the journal starts at ${j.released + 1}`;
        this.log.warn({ volume: this.name }, `volume ${this.name}: ${what}; shipping waits for a resync of those regions`);
      }
      this.link.detach();
      return;
    }
    if (resume > j.lastSeq) {
      // The peer holds records this journal never wrote durably: a split or a lost journal.
      s.close(`volume ${this.name}: the peer holds up to record ${resume} but this journal ends at ${j.lastSeq}`);
      this.link.detach();
      return;
    }
    if (this.jv.seedingFor(this.peer) && resume >= this.jv.roundStart) {
      // The peer already holds records of this round: its replica is no longer what
      // the round began with, so regions are sent whole rather than compared.
      this.jv.seed.stop();
      this.log.info({ volume: this.name }, `volume ${this.name}: the first sync resumes after records reached the peer; the remaining regions are sent whole`);
    }
    this.gapReported = this.waitReported = false;
    resumeAt(resume);
  }

  /**
   * A new secondary of a volume with several peers links (docs/PEERS.md, "The first sync
   * with several peers"): a first sync of its own, compared by hash with its replica,
   * while the other peers stream on (JournaledVolume.firstSyncFor). While another peer's
   * round (or a round of all) is open it cannot be: this peer leaves the journal, its
   * bitmap all marked (so that round ends without its acks), and waits, its link up and
   * nothing shipped (`waiting`): the shipper begins again once that round ended. Only
   * when no round of its own can be (the volume tracks by bitmap, no peer store) does
   * the first sync of the whole volume begin for every peer, nothing compared. False:
   * nothing more to begin now (it waits, or the link went).
   */
  private async firstSyncOfItsOwn(s: ResyncSession): Promise<boolean> {
    const jv = this.jv;
    // Its own first sync is open (a link that dropped before its Resync reached the peer),
    // or a first sync of all that sends it every region (two new secondaries of a new
    // volume, its Resync never reached it either): announced in begin().
    const joins = (): boolean => jv.firstSyncOpenFor(this.peer) || jv.roundCoversAllFor(this.peer);
    if (joins()) return true;
    if (jv.roundStart === 0 && await jv.firstSyncFor(this.peer) !== 0) return true;
    // (An earlier link of this peer's, whose beginning was still under way, may have opened it meanwhile.)
    if (joins()) return true;
    if (this.link.session() !== s) return false;
    const owner = jv.roundOwner;
    if (jv.roundStart !== 0 && owner !== this.peer && jv.mode === 'journal') {
      const other = owner ?? `every peer (${jv.cursors.peers.filter((p) => p !== this.peer).join(', ')})`;
      const left = await jv.detachNew(this.peer);
      if (this.link.session() !== s) return false;
      // The last peer following the journal cannot leave it, and a round of all is carried
      // by the peers that follow it: waiting, nobody would end that round (replication
      // simulation seed 645 of the first grows' schedules: two new secondaries, the journal
      // folded; test/unit/first-sync-last-peer.test.ts). It falls to the first sync of the whole volume below.
      const last = !left && owner === null && jv.cursors.attached.length === 1 && jv.cursors.attached[0] === this.peer;
      if (!last) return this.wait(s, other, left);
    }
    // No round of its own can be (or a round of its own that is no first sync is open:
    // it does not cover every region): the whole volume is sent to every peer.
    this.log.info({ volume: this.name, peer: this.peer }, `volume ${this.name}: ${this.peer} is a new secondary and no first sync ` +
      `of its own can begin (${jv.mode === 'bitmap' ? 'the volume tracks changes in its dirty bitmap' : 'a round is open or no peer store'}); ` +
      'the first sync of the whole volume begins, for every peer');
    await jv.beginInitialSync();
    return true;
  }

  /** This peer's first sync waits for the round of `other` to end (firstSyncOfItsOwn); `left`: it left the journal for its own bitmap. */
  private wait(s: ResyncSession, other: string, left: boolean): false {
    // (The link stays: it carries this peer's other volumes. This one's beginning runs again when that round ended.)
    this.waiting = s;
    this.waitingFor = other;
    if (!this.waitReported) {
      this.waitReported = true;
      this.log.info({ volume: this.name, peer: this.peer }, `volume ${this.name}: ${this.peer}'s first sync waits for the resync ` +
        `round of ${other} to end; it begins then` + (left ? ` (meanwhile ${this.peer} holds the journal back no more)` : ''));
    }
    return false;
  }

  /** A first sync that waited (`waiting`) may begin now: the round it waited for has ended (or is one it joins). */
  mayBeginAgain(): boolean {
    const jv = this.jv;
    return jv.roundStart === 0 || jv.firstSyncOpenFor(this.peer) || jv.roundCoversAllFor(this.peer);
  }

  /** The link went down: the requests out on it get no reply. */
  down(): void {
    this.waiting = null;
    this.waitingFor = null;
    this.mapAsked = null;
    // (Another peer's first sync of its own compares with that peer's replica: its requests are its link's.)
    if (this.comparesHere()) this.jv.seed.linkDown();
  }

  /** The open round's comparison (if any) is with this link's peer: a round of all, or this peer's own. */
  private comparesHere(): boolean {
    const owner = this.jv.roundOwner;
    return owner === null || owner === this.peer;
  }

  /**
   * Hands dirty regions to the journal while a round is open and the link is up, as
   * fast as src/sync/round.ts's pumpStep allows: what waits to be acked stays under a
   * quarter of the journal (so live writes keep their room) and within the link's
   * window, and on a rate-capped link at most about two seconds of the link's time is
   * ahead of live writes (a resync yields to them, and the RPO of new writes holds).
   */
  pump(): void {
    this.askHashes();
    // (A round of one peer's own is pumped by that peer's link, at its pace.)
    if (this.resyncing || !this.link.session() || !this.jv.roundStartFor(this.peer)) return;
    const j = this.jv.journal;
    const step = pumpStep({
      journalCapacity: j.capacity, backlogBytes: j.backlogBytes, windowBytes: this.windowBytes, rate: this.link.rate(),
      regionSize: this.jv.bitmap.regionSize, maxEpochBytes: this.jv.maxEpochBytes,
    });
    if (step === null) {
      this.makeDurable();
      return;
    }
    this.resyncing = true;
    this.jv.resyncStep(step).then((more) => {
      this.resyncing = false;
      if (!more) {
        // Make what was handed over durable, so its regions leave the bitmap.
        if (this.jv.roundStartFor(this.peer)) this.makeDurable();
        return;
      }
      this.makeDurable();
      this.pump();
    }, (e: Error) => {
      this.resyncing = false;
      this.log.error({ volume: this.name }, `volume ${this.name}: resync read failed: ${e.message}`);
    });
  }

  /**
   * Resync records ship only once durable here: one group-committed flush at a time
   * keeps them moving (rather than waiting for the primary-chosen boundary's timer),
   * and the shipper hears of them at once.
   */
  private makeDurable(): void {
    if (this.flushing) return;
    const j = this.jv.journal;
    if (j.lastSeq <= j.durableSeq && !this.jv.resyncUnsettled) return;
    this.flushing = true;
    let failed = false;
    this.jv.flush().catch(() => (failed = true)).finally(() => {
      this.flushing = false;
      if (failed) return; // (the write path has said why; the next tick tries again)
      if (this.link.session()) this.link.durable();
      if (this.link.session() && (j.lastSeq > j.durableSeq || this.jv.resyncUnsettled)) this.makeDurable();
      else this.pump();
    }).catch((e: Error) => this.log.error({ volume: this.name }, `volume ${this.name}: after a resync flush: ${e.message}`));
  }

  /**
   * Asks the peer for what the comparison needs next (a first sync by checksum): where
   * its replica holds holes (a link at protocol version 2), alone, or the hashes of the
   * next regions still marked, up to SEED_ASKS_IN_FLIGHT requests out.
   */
  private askHashes(): void {
    const s = this.link.session();
    // (Only the peer the round compares with is asked; its own bitmap, in a first sync of its own.)
    if (!s || !this.jv.roundStartFor(this.peer) || !this.comparesHere()) return;
    const bitmap = this.jv.roundBitmap;
    const rs = bitmap.regionSize;
    const nextMarked = (from: number): number => {
      for (const r of bitmap.dirtyRegions(from)) if (!this.jv.seed.knownToDiffer(r)) return r;
      return bitmap.regions;
    };
    while (!this.mapAsked) {
      const ask = this.jv.seed.nextAsk(rs, this.jv.size, MAX_HASH_REGIONS, (s.version ?? 1) >= 2, nextMarked, SEED_ASKS_IN_FLIGHT);
      if (!ask) return;
      if (ask.type === 'map') {
        this.mapAsked = { offset: ask.offset, length: ask.length };
        s.send(encodeMapRequest({ volume: this.name, offset: ask.offset, length: ask.length }));
        return;
      }
      s.send(encodeHashRequest({ volume: this.name, regionSize: rs, first: ask.first, count: ask.count }));
    }
  }

  /** The peer's hashes for a first sync arrived: compared in turn, equal regions leave the round, then the pump goes on. */
  hashReply(first: number, regionSize: number, hashes: Buffer[]): void {
    const seed = this.jv.seed;
    if (!seed.asked(first)) return; // a reply from an older link, or an older comparison
    seed.heard(hashes.length);
    const [s, comparison] = [this.link.session(), seed.comparison];
    this.settle(() => {
      // (The link or the round went meanwhile: the requests were let go of, and are asked again.)
      if (this.link.session() !== s || seed.comparison !== comparison) return Promise.resolve(0);
      if (regionSize !== this.jv.bitmap.regionSize || !seed.accepts(first, regionSize, regionSize) || hashes.length !== seed.nextCount) {
        s?.close(`volume ${this.name}: the peer answered the hashes of ${hashes.length} regions of ${regionSize} bytes from region ${first}; ` +
          `the request out next was ${seed.nextCount} regions from another`);
        return Promise.resolve(0);
      }
      return this.jv.compareRegions(first, regionSize, hashes, regionHashOf(s?.version));
    }, 'comparing regions by hash');
  }

  /** The peer's holes arrived: regions that are holes on both sides leave the round, then the comparison goes on. */
  mapReply(offset: number, covered: number, holes: Span[]): void {
    const a = this.mapAsked;
    if (!a || a.offset !== offset) return; // a reply from an older link
    if (covered > a.length) {
      this.link.session()?.close(`volume ${this.name}: the peer's map covers ${covered} bytes from ${offset}, more than the ${a.length} asked`);
      return;
    }
    this.jv.seed.heard(0, 20 + holes.length * 16);
    this.settle(() => this.jv.clearHoles(offset, covered, holes).finally(() => {
      if (this.mapAsked === a) this.mapAsked = null;
    }), 'comparing holes with the peer');
  }

  /** Runs a reply's step after the ones before it, then asks for more and pumps. */
  private settle(step: () => Promise<number>, what: string): void {
    this.comparing = this.comparing.then(step).then(() => {
      this.askHashes();
      this.pump();
    }, (e: Error) => {
      this.link.session()?.close(`volume ${this.name}: ${what} failed: ${e.message}`);
    });
  }
}
