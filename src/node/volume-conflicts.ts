// Volumes a link's Hello could not pair for their roles or identities (two primaries,
// a split brain, two secondaries, different volumes under one name, a primary older
// than the one its secondary follows: src/link/hello.ts). Each such volume waits, with
// its reason and the operator's way out, while the link serves the node's other
// volumes: one volume's failover or split brain does not stop a hundred others'
// replication (docs/LINK.md, "Conflicts of one volume").
//
// What the last Hello of each link said is kept until that link closes, or the volume
// is paired again on it (a VolumeHello, after the operator's demote or promote; on a
// link of protocol 1 or 2 the action closes the link and the next Hello says afresh).
// Each conflict is logged when first seen and again only if it changes, not at every
// link that finds it still there.
import type { VolumeConflict } from '../link/hello.js';
import type { Logger } from '../log/log.js';

export class VolumeConflicts {
  /** By volume, then peer: the conflict the link to that peer found at its Hello. */
  private readonly now = new Map<string, Map<string, VolumeConflict>>();
  /** What was last logged, by volume and peer (kept across links, so a link that finds the same conflict again says nothing). */
  private readonly said = new Map<string, string>();

  constructor(private readonly log: Logger) {}

  /**
   * The Hello of a link to `peer` found `conflicts` and paired `paired`: the conflicts
   * replace what that peer's last link said. New ones are logged, and `onEach` sees
   * every one (the node's notifications, an automatic failback).
   */
  linked(peer: string, conflicts: readonly VolumeConflict[], paired: readonly string[], onEach: (c: VolumeConflict) => void): void {
    this.closed(peer);
    for (const name of paired) this.paired(name, peer);
    for (const c of conflicts) this.found(peer, c, onEach);
  }

  /** A link to `peer` found conflict `c` (its Hello, or the volume's Hello again): logged if new; `onEach` sees it. */
  found(peer: string, c: VolumeConflict, onEach: (c: VolumeConflict) => void): void {
    const byPeer = this.now.get(c.volume) ?? new Map<string, VolumeConflict>();
    this.now.set(c.volume, byPeer.set(peer, c));
    const k = key(c.volume, peer);
    if (this.said.get(k) !== c.message) {
      this.said.set(k, c.message);
      this.log.error({ volume: c.volume, peer, code: c.code },
        `${c.message}; nothing of ${c.volume} flows between this node and ${peer} until then (the link serves the other volumes)`);
    }
    onEach(c);
  }

  /** `volume` paired with `peer`: a conflict found later is said again. */
  paired(volume: string, peer: string): void {
    this.said.delete(key(volume, peer));
  }

  /** `volume`'s pairing with `peer` on the link ended (a VolumeHello): what the link said of it holds no longer. */
  unpaired(volume: string, peer: string): void {
    this.now.get(volume)?.delete(peer);
  }

  /** The link to `peer` closed: what its Hello said holds no longer. */
  closed(peer: string): void {
    for (const byPeer of this.now.values()) byPeer.delete(peer);
  }

  /** The volume left the config here, or changed role: its next Hello says afresh. */
  forget(volume: string): void {
    this.now.delete(volume);
    for (const k of [...this.said.keys()]) if (k.startsWith(`${volume}\0`)) this.said.delete(k);
  }

  /** The conflict that keeps `volume` from pairing with `peer` on the link now; null: none, or no link. */
  of(volume: string, peer: string): VolumeConflict | null {
    return this.now.get(volume)?.get(peer) ?? null;
  }
}

function key(volume: string, peer: string): string {
  return `${volume}\0${peer}`;
}
