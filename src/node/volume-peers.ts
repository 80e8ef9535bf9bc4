// A served volume's peers changed at a reload (docs/PEERS.md, "Adding and removing a
// secondary"): a new DR site for a volume, or a site retired, without a restart and
// without touching the volume's hosts. At a primary the journal takes the new list
// (JournaledVolume.setPeers: a secondary added waits detached for its first sync of its
// own, one taken away holds the journal back no more); at either role the links to the
// peers added and taken away are made again, so each Hello says what is paired now.
// What cannot change live is said, and waits for a restart: a volume given its first
// peer or losing its last (one with peers has a journal, one without has none), a
// member of a consistency group (its members replicate with the same peers).
import type { VolumeConfig } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';

/** What a change of peers does to the links (LinkManager). */
export interface PeerLinks {
  /** The shippers of `volume` to `peers` stop (before the journal lets go of their cursors). */
  stopShipping(volume: string, peers: readonly string[]): void;
  /** The links to `peers` are made again: the next Hello pairs `volume` with each as the config now says. */
  relink(volume: string, peers: readonly string[]): void;
}

export interface PeerChangeHost {
  /** Null: this daemon runs no links (none configured at its start). */
  links: PeerLinks | null;
  /**
   * The list each volume's latest change asks for, until it has run (the daemon's): a
   * reload before the change of an earlier one ran compares with it, and the earlier
   * change gives way to the later.
   */
  wanted: Map<string, string[]>;
  log: Logger;
}

/**
 * `e`'s peers as a reload's `next` has them. Returns the notes and the change to run
 * (none: nothing to run, or it waits for a restart), which the caller runs in the node's
 * action queue (roles.ts: no promote, demote or checkpoint meanwhile) after the reload's
 * removals; the entry's role is read then.
 */
export function volumePeersReloaded(e: { readonly config: VolumeConfig; readonly journaled: JournaledVolume | null },
  next: VolumeConfig, host: PeerChangeHost): { notes: string[]; change?: () => Promise<void> } {
  const v = e.config;
  const name = v.name;
  const before = host.wanted.get(name) ?? v.peers;
  const after = next.peers;
  if (before.join() === after.join()) return { notes: [] };
  const added = after.filter((p) => !before.includes(p));
  const removed = before.filter((p) => !after.includes(p));
  if (added.length === 0 && removed.length === 0 && !host.wanted.has(name)) {
    // (Reordered: the first is the one the one-peer status fields describe.)
    v.peers = [...after];
    v.peer = after[0];
    return { notes: [`volume ${name}: peers in the order ${after.join(', ')}`] };
  }
  const restart = (why: string): { notes: string[] } =>
    ({ notes: [`volume ${name}: peers changed to ${after.join(', ') || 'none'}: ${why}: that takes a restart`] });
  if (before.length === 0) return restart('a volume without a peer has no journal, and one with a peer journals every write from its start');
  if (after.length === 0) return restart('a volume with no peer left keeps no journal');
  // (A consistency group's members: the config has them all with the same peers, so each member's change is made, one after the other.)
  if (!host.links) return restart('no peer link runs on this daemon (none was configured, or no identity, at its start)');
  const links = host.links;
  host.wanted.set(name, after);
  const change = async (): Promise<void> => {
    // (A later reload asked for another list: its change, queued after this one, makes it.)
    if (host.wanted.get(name) !== after) return;
    host.wanted.delete(name);
    const jv = e.journaled;
    // (Against the list it has now: an earlier reload's change may have made part of this one.)
    const leaving = v.peers.filter((p) => !after.includes(p));
    const joining = after.filter((p) => !v.peers.includes(p));
    try {
      if (jv) {
        if (leaving.length > 0) links.stopShipping(name, leaving);
        await jv.setPeers(after);
      }
    } finally {
      // (What the journal has, should its change have failed part-way: the links pair as it ships.)
      const has = jv ? jv.cursors.peers : after;
      v.peers = has.length === after.length && after.every((p) => has.includes(p)) ? [...after] : has;
      v.peer = v.peers[0];
      if (joining.length + leaving.length > 0) links.relink(name, [...joining, ...leaving]);
    }
    host.log.info({ volume: name }, `volume ${name}: its peers are ${after.join(', ')} now` +
      (joining.length > 0 ? `; ${joining.join(', ')} ${jv ? 'get a first sync of their own when they link' : 'may be followed'}` : '') +
      (leaving.length > 0 ? `; ${leaving.join(', ')} no longer ${jv ? 'sent its changes' : 'followed'}` : ''));
  };
  return {
    notes: [`volume ${name}: peers now ${after.join(', ')}` + (added.length > 0 ? ` (${added.join(', ')} added: a first sync of its own at a primary)` : '') +
      (removed.length > 0 ? ` (${removed.join(', ')} taken away)` : '')],
    change: () => change().catch((err: Error) => {
      host.log.error({ volume: name }, `volume ${name}: its peers were not changed to ${after.join(', ')}: ${err.message}`);
    }),
  };
}
