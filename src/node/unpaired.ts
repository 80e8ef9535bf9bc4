// Why a volume is not paired with a peer on a link that is up, as either side said it
// (docs/LINK.md): the peer's words (its Hello's or VolumeHello's `unavailable`: it could
// not open the volume, lacks it, has another size, or is changing its role), and this
// node's own, which its Hellos and VolumeHellos say to the peer (a role change under way
// here, a second primary this secondary does not follow). Conflicts of roles are
// volume-conflicts.ts's. The link manager (links.ts) keeps one and tells it what
// happens: a link up or closed, a volume gone; its pairing (pairing.ts), a pairing ended.
import type { Logger } from '../log/log.js';

/** Why the peer said it cannot pair a volume: `sizeApart`, its size differs (it may still be a primary taking writes). */
export interface PeerCannot {
  reason: string;
  sizeApart: boolean;
}

export class UnpairedVolumes {
  /** By volume, then peer: what the peer last said (its words). */
  private readonly peerSaid = new Map<string, Map<string, PeerCannot>>();
  /** Volumes being changed here (a promote or demote under way), with why. */
  private readonly changing = new Map<string, string>();
  /**
   * A secondary's second primaries (three sites: a failover that left the old primary
   * running): by volume, the peers primary of it that this node does not pair with while
   * it follows another, with why. Once the followed primary's pairing ends, they are asked again.
   */
  private readonly secondPrimaries = new Map<string, Map<string, string>>();

  constructor(private readonly log: Logger) {}

  /** The peer cannot pair `u` (it could not open it, lacks it, its size differs, or it is being changed there): said in the log. */
  peerCannot(peer: string, u: { name: string; reason: string; missing?: true; resized?: true }, level: 'warn' | 'info'): void {
    const byPeer = this.peerSaid.get(u.name) ?? new Map<string, PeerCannot>();
    this.peerSaid.set(u.name, byPeer.set(peer, { reason: u.reason, sizeApart: u.resized === true }));
    this.log[level]({ volume: u.name, peer }, u.missing || u.resized
      ? `volume ${u.name}: ${u.reason}; the link serves the other volumes, and nothing of ${u.name} flows until ${peer} ` +
        `${u.missing ? 'has it' : 'has its size'} (its changes are kept here meanwhile)`
      : level === 'info'
        ? `volume ${u.name}: not paired with ${peer} now (${u.reason}); nothing of ${u.name} flows until ${peer} says otherwise`
        : `volume ${u.name}: ${peer} could not open it (${u.reason}); the link serves the other volumes, ` +
          `and nothing of ${u.name} flows until ${peer} opens it (a reload there tries again)`);
  }

  /** What `peer` last said of `volume` (undefined: nothing, it pairs, or no link). */
  said(volume: string, peer: string): PeerCannot | undefined {
    return this.peerSaid.get(volume)?.get(peer);
  }

  /** Why this node does not pair `volume` with `peer` now, as its Hellos say it (null: no reason of these). */
  ourReason(volume: string, peer: string): string | null {
    return this.changing.get(volume) ?? this.secondPrimaries.get(volume)?.get(peer) ?? null;
  }

  /** `peer` is a second primary of `volume` this node does not pair with (its Hellos leave the volume out for it). */
  refusesPrimary(volume: string, peer: string): boolean {
    return this.secondPrimaries.get(volume)?.has(peer) === true;
  }

  /** `peer`, primary of `volume`, is not paired with while this node follows another, for `why`. */
  refusePrimary(volume: string, peer: string, why: string): void {
    const byPeer = this.secondPrimaries.get(volume) ?? new Map<string, string>();
    this.secondPrimaries.set(volume, byPeer.set(peer, why));
  }

  /** The primary `volume` followed is paired no more: the second primaries not paired with, to ask again (forgotten here). */
  takeRefusedPrimaries(volume: string): string[] {
    const byPeer = this.secondPrimaries.get(volume);
    this.secondPrimaries.delete(volume);
    return byPeer ? [...byPeer.keys()] : [];
  }

  /** `volume`'s role is being changed here (its Hellos say `why`): the second primaries its old role refused go with it. */
  changeBegins(volume: string, why: string): void {
    this.changing.set(volume, why);
    this.secondPrimaries.delete(volume);
  }

  /** The change of `volume`'s role is done (or was refused): its Hellos describe it again. */
  changeEnds(volume: string): void {
    this.changing.delete(volume);
  }

  /** A new Hello from `peer`, or its link closed: what it said before holds no longer; `closed` forgets its refusals here too. */
  peerAnew(peer: string, closed: boolean): void {
    for (const byPeer of this.peerSaid.values()) byPeer.delete(peer);
    if (closed) for (const byPeer of this.secondPrimaries.values()) byPeer.delete(peer);
  }

  /** `volume`'s pairing with `peer` ended (a VolumeHello), or the peer was taken from it: what the peer said of it goes. */
  pairEnded(volume: string, peer: string): void {
    this.peerSaid.get(volume)?.delete(peer);
  }

  /** `volume` left the config here: everything said of it goes. */
  forget(volume: string): void {
    this.peerSaid.delete(volume);
    this.changing.delete(volume);
    this.secondPrimaries.delete(volume);
  }
}
