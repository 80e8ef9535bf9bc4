// What a reload does with the peers (docs/CONFIG.md, "Reloading"), for the link manager
// (links.ts): rates, schedules, compression and coalescing apply at once on the link up;
// a peer new to the file is known from now on (its certificate pinned by the caller); a
// peer's new fingerprint or address makes its link again; a peer dropped retires once
// the volumes paired with it are let go or paired with others (LinkManager.dropRetiring).
import type { Config } from '../config/config.js';
import { formatCompression } from '../compress/setting.js';
import { formatRate } from '../rate/rate.js';

/** What the link manager does for a peer the reload changed. */
export interface PeerReloadHost {
  /** Closes the link up to `peer`, if any, and dials again now (`why` for the log). */
  relink(peer: string, why: string): void;
  /** `peer`'s batches may be compressed from now on: the workers that pack them are made if a link is up. */
  compresses(peer: string): void;
}

/**
 * The running config's peers (changed in place: the dialer and the sessions hold these
 * objects) against a reload's. Peers to drop are added to `retiring`. Returns the notes.
 */
export function peersReloaded(config: Pick<Config, 'peers' | 'volumes'>, next: Pick<Config, 'peers' | 'volumes'>,
  retiring: Set<string>, host: PeerReloadHost): string[] {
  const notes: string[] = [];
  // A peer new to the file is known from now on; a volume paired with it, added by this
  // reload, links to it once served (LinkManager.volumeAdded). Its site: a new DR site.
  for (const q of next.peers) {
    if (config.peers.some((p) => p.name === q.name)) continue;
    config.peers.push({ ...q });
    notes.push(`peer ${q.name}: added (at ${q.address}${q.fingerprint ? '' : '; no fingerprint yet: set it, then reload, to link'})`);
  }
  for (const p of config.peers) {
    const q = next.peers.find((x) => x.name === p.name);
    if (!q) {
      // Dropped with every volume paired with it, or taken away from the volumes kept
      // (src/node/volume-peers.ts): its link goes once they are let go (dropRetiring).
      if (!retiring.has(p.name)) {
        retiring.add(p.name);
        notes.push(`peer ${p.name}: dropped (its link closes once no volume here pairs with it)`);
      }
      continue;
    }
    if (p.fingerprint !== q.fingerprint || p.address !== q.address || p.timeout !== q.timeout) {
      // (Re-keyed by `offsite init` at its site, or moved: the next link uses the new ones; one up now is made again.)
      const what = [p.fingerprint !== q.fingerprint ? 'fingerprint' : '', p.address !== q.address ? `address ${q.address}` : '',
        p.timeout !== q.timeout ? `timeout ${q.timeout} s` : ''].filter((x) => x).join(', ');
      const relink = p.fingerprint !== q.fingerprint || p.address !== q.address;
      p.fingerprint = q.fingerprint;
      p.address = q.address;
      p.timeout = q.timeout;
      notes.push(`peer ${p.name}: ${what}${relink ? '; its link is made again' : ''}`);
      if (relink) host.relink(p.name, `peer ${p.name}'s ${what} changed at a reload`);
    }
    if (p.rate !== q.rate || JSON.stringify(p.schedule) !== JSON.stringify(q.schedule)) {
      notes.push(`peer ${p.name}: rate ${q.rate ? formatRate(q.rate) : 'unlimited'}${q.schedule.length ? `, ${q.schedule.length} scheduled windows` : ''}`);
    }
    p.rate = q.rate;
    p.schedule = q.schedule;
    if (JSON.stringify(p.compression) !== JSON.stringify(q.compression)) notes.push(`peer ${p.name}: compression ${formatCompression(q.compression)}`);
    p.compression = q.compression;
    if (p.coalesce !== q.coalesce) notes.push(`peer ${p.name}: coalescing ${q.coalesce ? 'on' : 'off'}`);
    p.coalesce = q.coalesce;
    if (q.compression.mode !== 'off') host.compresses(p.name);
  }
  return notes;
}
