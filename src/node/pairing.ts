// A volume's pairing on a link: what a link's Hello (or the volume's Hello again, a
// VolumeHello) pairs is wired here, a primary's shipper to the link or a secondary's
// replica to it, and let go when the pairing ends; which primary each secondary here
// follows now; which peers start again from their last flush point. The link manager
// (links.ts) owns one and holds the links themselves.
import type { Config } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { atVersion, encodeAck, encodeHold } from '../link/frame.js';
import type { HelloVolume, PairOutcome, VolumeConflict } from '../link/hello.js';
import type { JournalRecord } from '../journal/record.js';
import type { FrameRoom } from '../link/records-frame.js';
import type { FrameHold } from '../rate/pacer.js';
import type { FrameClass } from '../rate/scheduler.js';
import type { Replica } from '../secondary/replica.js';
import type { VolumeIdentity } from '../volume/identity.js';
import type { StreamMark } from '../stream/stream.js';
import { epochBytesFor } from '../limits/limits.js';
import type { LinkSession } from './link-session.js';
import { assert } from '../invariants/assert.js';
import type { VolumeConflicts } from './volume-conflicts.js';
import type { UnpairedVolumes } from './unpaired.js';
import type { Shippers } from './shippers.js';

/** The volumes served here, as the link manager and the pairing see them. */
export interface LinkVolumes {
  primaries: Map<string, JournaledVolume>;
  replicas: Map<string, Replica>;
  identities: Map<string, VolumeIdentity>;
  /** The stream of records each volume's journal or receive log holds (src/stream/stream.ts). */
  streams: VolumeStreams;
  /** Why a configured volume could not be opened here (src/node/set-aside.ts), also while a reload opens it again; null: it is served. */
  unavailable?: (volume: string) => string | null;
}

/** Each replicated volume's stream (src/stream/stream.ts), as the daemon keeps it. */
export interface VolumeStreams {
  /** The stream the volume's journal (primary) or receive log (secondary) holds; null: none yet. */
  of(volume: string): StreamMark | null;
  /** A secondary writes down the stream whose records its receive log is about to take (durable on return). */
  adopt(volume: string, mark: StreamMark): Promise<void>;
}

/** What the pairing reaches of the link manager. */
export interface PairingHost {
  config: Config;
  log: Logger;
  volumes: LinkVolumes;
  shippers: Shippers;
  unpaired: UnpairedVolumes;
  conflicts: VolumeConflicts;
  /** The link to `peer` the node holds now, if any. */
  session(peer: string): LinkSession | undefined;
  volumeConfig(name: string): Config['volumes'][number] | undefined;
  /** Arms the volume's first write while apart from its peer to start a new generation (LinkManager.armApart). */
  armApart(name: string): void;
  /** `name` is paired again with `peer` (a VolumeHello; an older link closes, `redial`: dialed again at once). */
  pairAgain(name: string, peer: string, why: string, redial: boolean): void;
  /** A secondary here is to start again from its last flush point (LinkManager.onFollow). */
  follow(volume: string, peer: string): void;
  /** The peer was promoted after this node's last write to `volume` (LinkManager.onPeerPromoted). */
  peerPromoted(volume: string): void;
}

export class Pairings {
  /** Each secondary volume's primary now: the peer whose link carries it (none: not linked). */
  private readonly primaryNow = new Map<string, string>();

  constructor(private readonly h: PairingHost) {}

  /**
   * Peers of a primary's volume whose Hello showed records of another stream (this
   * primary began a new one: its file replaced, its journal or bitmap lost, served
   * without peers): each starts again from its last flush point and is compared by hash
   * at its next link. Until that link pairs it, the volume is not current with it (the
   * status says resyncing, not drained). By volume, then peer.
   */
  private readonly startingAgain = new Map<string, Set<string>>();

  /** `peer` starts again from its last flush point and is compared by hash when it links again (startingAgain). */
  isStartingAgain(volume: string, peer?: string): boolean {
    const set = this.startingAgain.get(volume);
    return set !== undefined && (peer === undefined ? set.size > 0 : set.has(peer));
  }

  /** The peer whose link carries secondary `volume` now (undefined: not linked, or not a secondary here). */
  followsNow(volume: string): string | undefined {
    return this.primaryNow.get(volume);
  }

  /** Secondary `volume` follows no primary now (its role changes, its link is made again); no other is asked meanwhile. */
  unfollow(volume: string): void {
    this.primaryNow.delete(volume);
  }

  /** `peer` (absent: every peer) of `volume` no longer waits to start again (the volume changes or goes, the peer is taken away). */
  startsAgainNoMore(volume: string, peer?: string): void {
    if (peer === undefined) this.startingAgain.delete(volume);
    else this.startingAgain.get(volume)?.delete(peer);
  }

  /** A conflict of a volume's roles found on a link (its Hello, or the volume's Hello again). */
  conflictFound(c: VolumeConflict): void {
    // (After this turn: a failback closes or re-pairs this link, which is not the node's yet.)
    if (c.code === 'peer-promoted') setImmediate(() => this.h.peerPromoted(c.volume));
  }

  /** The pair's secondary holds records of another journal than the primary's: it starts again (src/node/roles.ts, follow). */
  followOn(peer: string, local: HelloVolume): void {
    if (local.role === 'primary') {
      this.startingAgain.set(local.name, (this.startingAgain.get(local.name) ?? new Set<string>()).add(peer));
      this.h.log.info({ volume: local.name, peer }, `volume ${local.name}: ${peer} holds records of another primary's journal; ` +
        'it starts again from its last flush point and is compared by hash when it links again');
    } else {
      this.h.follow(local.name, peer);
    }
  }

  /** Wires a pair the link's Hello (or the volume's Hello again) made: its shipper to the link, or its replica. False: the link closed. */
  pairVolume(s: LinkSession, local: HelloVolume, remote: HelloVolume): boolean {
    const peer = s.peer;
    if (local.role === 'primary') {
      const jv = this.h.volumes.primaries.get(local.name);
      if (!jv) return true;
      // (Paired now: its beginning below opens its comparison before any status is read.)
      this.startingAgain.get(local.name)?.delete(peer);
      // The secondary applies whole epochs out of its receive log: keep them to a quarter of it.
      jv.maxEpochBytes = Math.min(jv.maxEpochBytes, epochBytesFor(Infinity, remote.logBytes));
      // A peer with nothing in its receive log and no round open (a new replica, or
      // an old primary just demoted) gets a first sync: every region compared by hash.
      jv.apart = null;
      try {
        this.h.volumes.identities.get(local.name)?.markShared();
      } catch (e) {
        this.h.log.error({ volume: local.name }, `volume ${local.name}: cannot record that the peer holds this generation: ${(e as Error).message}`);
      }
      const sh = this.h.shippers.ensure(local.name, jv, peer);
      sh.fitWindow(remote.logBytes);
      const cfg = this.h.config.volumes.find((v) => v.name === local.name);
      const paced = {
        link: s,
        send: (parts: Buffer[], cls?: FrameClass, hold?: FrameHold) => {
          if (!s.closed) s.pacer.send(local.name, cfg?.weight ?? 1, atVersion(parts, s.machine.version), { priority: cfg?.priority, cls, hold });
          else hold?.release();
        },
        drop: () => s.pacer.drop(local.name),
        encode: (records: JournalRecord[], room?: FrameRoom) => s.packer!.encode(local.name, records, room),
        close: (why: string) => s.close(why),
        version: s.machine.version,
      };
      sh.up(paced, remote.durableSeq, remote.round, remote.durableSeq === 0 && remote.round === 0);
    } else {
      const now = this.primaryNow.get(local.name);
      if (now !== undefined && now !== peer && this.h.session(now) !== undefined) {
        // Two primaries of one volume each reach this node (a failover that left the old one running).
        const why = `volume ${local.name}: ${peer} is primary, and so is ${now}, which this node follows; two primaries take writes apart: ` +
          `demote one of them (offsite demote ${local.name})`;
        if (!s.machine.rehelloes) {
          s.close(why);
          return false;
        }
        // Not paired with this one: a VolumeHello says so, and the link serves its other volumes.
        this.h.unpaired.refusePrimary(local.name, peer, why);
        this.h.log.error({ volume: local.name, peer }, `${why}; nothing of ${local.name} flows from ${peer} meanwhile (the link serves its other volumes)`);
        s.rehello(local.name);
        return true;
      }
      // A receive log takes records of one journal only (src/stream/stream.ts): Hello paired no other.
      assert(!remote.stream || !local.stream || remote.stream === local.stream || (local.durableSeq === 0 && local.round === 0),
        () => `volume ${local.name}: paired with ${peer}'s journal ${remote.stream} while its receive log holds records of ${local.stream}`);
      this.primaryNow.set(local.name, peer);
      // The secondary takes the primary's volume identity (its UUID and generations).
      try {
        this.h.volumes.identities.get(local.name)?.adopt(remote.uuid, remote.generation);
        this.h.volumes.identities.get(local.name)?.markShared();
      } catch (e) {
        this.h.log.error({ volume: local.name }, `volume ${local.name}: cannot record the primary's identity: ${(e as Error).message}`);
      }
      const rp = this.h.volumes.replicas.get(local.name);
      if (!rp) return true;
      // The stream its receive log takes records of, written down before the first (none said: a release before streams).
      const stream = remote.stream;
      rp.attach({
        ack: (seq) => s.send(encodeAck(local.name, seq)),
        hold: (held, after) => s.send(encodeHold(local.name, after, held)),
        close: (why) => s.close(why),
      }, stream && !local.stream ? () => this.h.volumes.streams.adopt(local.name, { stream, primary: peer }) : undefined)
        .catch((e: Error) => s.close(`volume ${local.name}: attaching the replica failed: ${e.message}`));
    }
    return true;
  }

  /** `name`'s pairing on the link `s` ended (a VolumeHello, either side's): what is wired of it to `s` goes; the rest of the link goes on. */
  volumeDown(s: LinkSession, name: string): void {
    if (this.h.session(s.peer) !== s) return;
    const peer = s.peer;
    this.h.unpaired.pairEnded(name, peer);
    this.h.conflicts.unpaired(name, peer);
    const sh = this.h.shippers.get(name, peer);
    if (sh?.session?.link === s) sh.down();
    // (Its frames not written yet go, of every kind: the VolumeHello, a control frame, would pass them.)
    s.pacer.dropAll(name);
    if (this.primaryNow.get(name) === peer) {
      this.primaryNow.delete(name);
      this.h.volumes.replicas.get(name)?.detach();
      this.followAnother(name);
    }
    if (this.h.volumeConfig(name)?.peers.includes(peer)) this.h.armApart(name);
  }

  /** The link to `peer` closed: each secondary that followed it follows none, and may follow another. */
  linkClosed(peer: string): void {
    for (const v of this.h.config.volumes) {
      if (this.primaryNow.get(v.name) !== peer) continue;
      this.primaryNow.delete(v.name);
      this.h.volumes.replicas.get(v.name)?.detach();
      this.followAnother(v.name);
    }
  }

  /** The primary `name` followed is paired no more: a second primary this node did not pair with is asked again (after this turn). */
  private followAnother(name: string): void {
    const refused = this.h.unpaired.takeRefusedPrimaries(name);
    if (refused.length === 0) return;
    setImmediate(() => {
      for (const peer of refused) {
        if (this.primaryNow.has(name) || !this.h.volumes.replicas.has(name)) return;
        this.h.pairAgain(name, peer, `volume ${name}: the primary it followed is paired no more`, true);
      }
    });
  }

  /** `name` paired again on the link `s` from both sides' VolumeHellos: wired as a Hello wires it. */
  volumeUp(s: LinkSession, name: string, outcome: PairOutcome | null): void {
    if (this.h.session(s.peer) !== s || outcome === null) return;
    const peer = s.peer;
    if ('code' in outcome) {
      this.h.conflicts.found(peer, outcome, (c) => this.conflictFound(c));
    } else if ('reason' in outcome) {
      this.h.unpaired.peerCannot(peer, outcome, 'info');
    } else {
      this.h.conflicts.paired(name, peer);
      if (outcome.follows) this.followOn(peer, outcome.pair.local);
      else if (this.pairVolume(s, outcome.pair.local, outcome.pair.remote)) {
        this.h.log.info({ volume: name, peer }, `volume ${name}: paired with ${peer} again`);
      }
    }
  }
}
