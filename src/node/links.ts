// The link manager: one TLS link per peer, Hello, then frames between each primary
// volume's shipper and the peer's replica. It accepts links and dials them (dialer.ts:
// reconnects forever with capped backoff); each link runs over its socket in
// link-session.ts (a silent peer is declared dead after `deadAfterMs`); its shared
// volumes are wired to shippers and replicas at Hello and let go at its close by the
// pairing (pairing.ts), and the shippers are kept across links in shippers.ts.
// What each volume's shipping did, for the status, is counted in shipping-figures.ts.
import type tls from 'node:tls';
import type { Config } from '../config/config.js';
import type { Logger } from '../log/log.js';
import { PROTOCOL_RANGE, type ProtocolRange } from '../link/frame.js';
import type { HelloCheck, HelloVolume } from '../link/hello.js';
import type { Identity } from '../link/identity.js';
import { Packer } from '../compress/packer.js';
import { frameBuffers } from '../memory/owned-buffers.js';
import { formatBytes } from '../units/units.js';
import { CompressionPool } from '../compress/pool.js';
import { MemoryBudget } from '../memory/budget.js';
import type { Compression } from '../compress/setting.js';
import type { VerifyRun } from '../sync/verify.js';
import { LinkListener, type PinnedPeer } from '../link/tls.js';
import { rateAt } from '../rate/rate.js';
import type { Replica } from '../secondary/replica.js';
import { MEMORY_BUDGET_BYTES } from '../limits/limits.js';
import { runLink, type LinkEnd, type LinkHost, type LinkSession } from './link-session.js';
import { ShippingFigures } from './shipping-figures.js';
import { peersReloaded } from './reloaded-peers.js';
import { assert } from '../invariants/assert.js';
import { Dialer } from './dialer.js';
import { VolumeConflicts } from './volume-conflicts.js';
import { UnpairedVolumes } from './unpaired.js';
import { Shippers } from './shippers.js';
import { Pairings, type LinkVolumes } from './pairing.js';

export type { LinkVolumes, VolumeStreams } from './pairing.js';

export class LinkManager {
  private listener: LinkListener | null = null;
  private readonly sessions = new Map<string, LinkSession>();
  /** One shipper per pair (volume, peer) of a primary volume here (shippers.ts). */
  private readonly shippers: Shippers;
  /** The peer was promoted after this node's last write to `volume` (a failback is due). */
  onPeerPromoted: ((volume: string) => void) | null = null;
  /**
   * A secondary here holds records of another journal than its primary `peer`'s (a new
   * primary after a failover): it is to start again from its last flush point (RoleChanges.follow).
   */
  onFollow: ((volume: string, peer: string) => void) | null = null;
  /** What each link pairs of the volumes, and whom each secondary here follows (pairing.ts). */
  private readonly pairings: Pairings;
  /** A link to `peer` was refused, by this side or the peer; `code` as in the Refuse frame ("bad-hello", "version", ...). */
  onRefused: ((peer: string, code: string, message: string) => void) | null = null;
  /** Volumes a link's Hello could not pair for their roles or identities, with why (src/node/volume-conflicts.ts). */
  readonly conflicts: VolumeConflicts;
  /** The protocol versions this node offers in Hello (tests try other ranges). */
  protocol: ProtocolRange = PROTOCOL_RANGE;

  constructor(
    private readonly config: Config,
    private readonly identity: Identity,
    private readonly volumes: LinkVolumes,
    private readonly log: Logger,
    /** The node's memory budget (src/memory/budget.ts): shippers' batches and the peers' frames draw from it. */
    readonly memory: MemoryBudget = new MemoryBudget(config.memory ?? MEMORY_BUDGET_BYTES),
  ) {
    this.shippers = new Shippers({
      config, log, memory: this.memory, volumeConfig: (name) => this.volumeConfig(name), rateNow: (peer) => this.rateNow(peer),
      isPaused: (volume) => this.pausedVolumes.has(volume),
    });
    this.figures = new ShippingFigures({
      primaries: () => this.volumes.primaries.entries(),
      shipper: (volume) => this.shippers.first(volume),
      peerOf: (volume) => this.config.volumes.find((v) => v.name === volume)?.peer,
      rateNow: (peer, now) => this.rateNow(peer, now),
      rttOf: (peer) => this.rttOf(peer),
      capacity: (peer, cap) => this.sessions.get(peer)?.capacity.estimate(cap) ?? null,
    });
    this.conflicts = new VolumeConflicts(log);
    this.unpaired = new UnpairedVolumes(log);
    // (After the shippers, conflicts and unpaired volumes: the pairing keeps them as they are now.)
    this.pairings = new Pairings({
      config, log, volumes, shippers: this.shippers, unpaired: this.unpaired, conflicts: this.conflicts,
      session: (peer) => this.sessions.get(peer),
      volumeConfig: (name) => this.volumeConfig(name),
      armApart: (name) => this.armApart(name),
      pairAgain: (name, peer, why, redial) => this.pairAgain(name, peer, why, redial),
      follow: (volume, peer) => this.onFollow?.(volume, peer),
      peerPromoted: (volume) => this.onPeerPromoted?.(volume),
    });
    this.dialer = new Dialer({
      identity, log, linked: (peer) => this.sessions.has(peer), run: (socket, peer) => this.session(socket, peer, true),
    });
    this.host = {
      log, memory: this.memory, get fingerprint() { return identity.fingerprint; },
      rateNow: (peer) => this.rateNow(peer),
      wrote: (volume, n) => this.figures.wrote(volume, n),
      replica: (volume) => this.volumes.replicas.get(volume),
      shipper: (volume, peer) => this.shippers.get(volume, peer),
      shippers: () => this.shippers.all(),
      unpackPool: () => this.unpackPool(),
      up: (s, check, version) => this.linkUp(s, check, version),
      volumeDown: (s, volume) => this.pairings.volumeDown(s, volume),
      volumeUp: (s, volume, outcome) => this.pairings.volumeUp(s, volume, outcome),
      refused: (peer, a) => this.onRefused?.(peer, a.code, a.message),
      closed: (s) => {
        if (this.sessions.get(s.peer) !== s) return;
        this.sessions.delete(s.peer);
        // (What its last Hello said of volumes it could not open holds no longer: the next one says afresh.)
        this.unpaired.peerAnew(s.peer, true);
        this.conflicts.closed(s.peer);
        this.shippers.linkClosed(s);
        for (const v of this.config.volumes) if (v.peers.includes(s.peer)) this.armApart(v.name);
        this.pairings.linkClosed(s.peer);
      },
    };
  }

  /** What each primary volume's shipping did: wire bytes, packing, rates, window, batch (for the status). */
  readonly figures: ShippingFigures;
  /** What each link's adapter (link-session.ts) reaches of this manager. */
  private readonly host: LinkHost;
  /** Dials the peers whose names sort after this node's (one link per pair). */
  private readonly dialer: Dialer;

  private pinned(): PinnedPeer[] {
    return this.config.peers.filter((p) => p.fingerprint).map((p) => ({ name: p.name, fingerprint: p.fingerprint! }));
  }

  /** The volumes this node shares with `peer`, as Hello describes them. */
  private shared(peer: string): HelloVolume[] {
    // (A volume changing role is in neither map: the peer hears nothing of it until it is done.)
    // (Nor one set aside, also while a reload opens it again: Hello lists it as not opened until it is served.)
    const setAside = (name: string): boolean => (this.volumes.unavailable?.(name) ?? null) !== null || this.unpaired.refusesPrimary(name, peer);
    return this.config.volumes.filter((v) => v.peers.includes(peer) && !setAside(v.name) &&
      (this.volumes.primaries.has(v.name) || this.volumes.replicas.has(v.name))).map((v) => {
      const jv = this.volumes.primaries.get(v.name);
      const rp = this.volumes.replicas.get(v.name);
      const id = this.volumes.identities.get(v.name);
      return {
        name: v.name, uuid: id?.uuid ?? '', size: (jv ?? rp)?.size ?? 0, role: jv ? 'primary' : 'secondary', generation: id?.generations ?? [],
        durableSeq: rp ? rp.receiver.resumeAfter : jv ? jv.journal.released : 0,
        logBytes: rp ? rp.log.capacity : jv ? jv.journal.capacity : 0,
        round: rp ? rp.roundStart : jv ? jv.roundStartFor(peer) : 0,
        changedBytes: jv ? jv.journal.backlogBytes + jv.bitmap.count * jv.bitmap.regionSize : 0,
        stream: this.volumes.streams.of(v.name)?.stream,
      };
    });
  }

  /** The volumes shared with `peer` that this node could not open, with why: Hello lists them so the peer links the others. */
  private setAside(peer: string): Array<{ name: string; reason: string }> {
    const why = this.volumes.unavailable;
    return this.config.volumes.filter((v) => v.peers.includes(peer)).flatMap((v) => {
      // (Or being changed here, a promote or demote under way: said so, rather than missing. Or
      // a second primary of a volume this secondary follows another for: pairing.ts's pairVolume.)
      const reason = why?.(v.name) ?? this.unpaired.ourReason(v.name, peer);
      return reason === null ? [] : [{ name: v.name, reason: reason.slice(0, 2048) }];
    });
  }

  /** Why volumes are not paired with peers on links that are up, as either side said it (unpaired.ts). */
  private readonly unpaired: UnpairedVolumes;

  /** Why `volume` is not paired with `peer` on the link now for its roles or identities (a split brain, ...); null: no conflict, or no link. */
  conflictOf(volume: string, peer: string): { code: string; message: string } | null {
    const c = this.conflicts.of(volume, peer);
    return c ? { code: c.code, message: c.message } : null;
  }

  /** Why `peer` does not serve `volume` now (its Hello listed it as not opened); null: it does, or no link says. */
  peerUnavailable(volume: string, peer: string): string | null {
    return this.unpaired.said(volume, peer)?.reason ?? null;
  }

  /** `peer` starts again from its last flush point and is compared by hash when it links again (pairing.ts). */
  isStartingAgain(volume: string, peer?: string): boolean {
    return this.pairings.isStartingAgain(volume, peer);
  }

  /** The zstd workers, for a peer's PackedRecords frames (made at the first, whatever this node's own compression setting). */
  private unpackPool(): CompressionPool {
    return (this.pool ??= new CompressionPool());
  }

  coalesceOn(peer: string): boolean {
    return this.config.peers.find((p) => p.name === peer)?.coalesce ?? true;
  }

  /** What the link to `peer` carries when it is the bottleneck (bytes per second; null: unknown or down). */
  capacityOf(peer: string): number | null {
    return this.sessions.get(peer)?.capacity.estimate(this.rateNow(peer)) ?? null;
  }

  /** zstd workers shared by every link (null: every peer has compression: off). */
  private pool: CompressionPool | null = null;
  private fallbackSaidAt = 0;

  /** The link's compression setting and the zstd level its batches get now (0: none; null: no link). */
  compressionOf(peer: string): { setting: Compression; level: number | null } {
    const setting = this.config.peers.find((p) => p.name === peer)?.compression ?? { mode: 'auto' as const };
    const s = this.sessions.get(peer);
    return { setting, level: s?.packer ? s.packer.level : null };
  }

  /** The peer's rate cap now (bytes per second; null: none), schedule included. */
  rateNow(peer: string, now = Date.now()): number | null {
    const p = this.config.peers.find((x) => x.name === peer);
    if (!p) return null;
    return rateAt(p.rate ?? null, p.schedule, now);
  }

  /**
   * A reloaded config: rates, schedules and weights take effect at once, without
   * reconnecting; a new peer is pinned, and a peer's new fingerprint or address makes
   * its link again; a peer dropped with its volumes goes once they are let go
   * (dropRetiring). A peer dropped while a volume still pairs with it needs a restart.
   */
  reload(next: Config): string[] {
    const notes = peersReloaded(this.config, next, this.retiring, {
      relink: (peer, why) => {
        this.sessions.get(peer)?.close(why);
        this.dialer.redial(peer);
      },
      compresses: (peer) => {
        if (this.sessions.get(peer)) this.pool ??= new CompressionPool();
      },
    });
    this.listener?.pin(this.pinned());
    for (const v of this.config.volumes) {
      const w = next.volumes.find((x) => x.name === v.name);
      if (w && w.weight !== v.weight) {
        notes.push(`volume ${v.name}: weight ${w.weight}`);
        v.weight = w.weight;
      }
      if (w && w.priority !== v.priority) {
        notes.push(`volume ${v.name}: priority ${w.priority}`);
        v.priority = w.priority;
      }
    }
    return notes;
  }

  /** Starts an online verify of a primary volume with its peer (throws why it cannot). */
  verify(volume: string, repair: boolean): VerifyRun {
    const sh = this.shippers.first(volume);
    if (!sh) throw new Error(`volume ${volume} has not linked with its peer since the daemon started; verify waits for the link`);
    return sh.startVerify(repair);
  }

  verifyOf(volume: string): VerifyRun | null {
    return this.shippers.first(volume)?.verify ?? null;
  }

  /** Stops shipping `volume` (the host keeps writing; the journal keeps the backlog). */
  pause(volume: string, paused: boolean): boolean {
    let any = false;
    for (const sh of this.shippers.of(volume)) {
      sh.pause(paused);
      any = true;
    }
    return any;
  }

  isPaused(volume: string): boolean {
    return this.pausedVolumes.has(volume);
  }

  /** Volumes paused by the operator (kept across links; the daemon restores them at start). */
  readonly pausedVolumes = new Set<string>();

  /** The peer this node's secondary of `volume` follows now (its link carries the volume), or null. */
  primaryOf(volume: string): string | null {
    const p = this.pairings.followsNow(volume);
    return p !== undefined && this.sessions.has(p) ? p : null;
  }

  /** The peer a secondary of `volume` follows: the one linked now, else the one whose records its receive log holds (null: neither). */
  followedOf(volume: string): string | null {
    return this.primaryOf(volume) ?? (this.volumes.streams.of(volume)?.primary || null);
  }

  linkState(peer: string): string {
    return this.sessions.has(peer) ? 'connected' : 'disconnected';
  }

  /**
   * A promote of `volume` here would make two primaries that both take writes: the link
   * to `peer`, its primary, is up, and no conflict keeps the volume apart on it (two
   * secondaries, say, or a split brain the operator is resolving by this promote).
   */
  primaryLinked(volume: string, peer: string): boolean {
    // (Not while the peer says it cannot pair the volume, being changed there, set aside or not in its config:
    // no primary of it takes writes there. Its size apart from this one's is no such word: it may be.)
    const cannot = this.unpaired.said(volume, peer);
    return this.sessions.has(peer) && this.conflicts.of(volume, peer) === null && (cannot === undefined || cannot.sizeApart);
  }

  /** The link's measured round trip (ms, from heartbeat echoes; null: not measured or no link). */
  rttOf(peer: string): number | null {
    const r = this.sessions.get(peer)?.machine.rttMs;
    return r === null || r === undefined ? null : Math.round(r * 10) / 10;
  }

  /** Arms the volume's first write while apart from its peer to start a new generation (at the start, a link's close, a volume opened at a reload). */
  armApart(name: string): void {
    const jv = this.volumes.primaries.get(name);
    const id = this.volumes.identities.get(name);
    if (!jv || !id) return;
    const peers = this.volumeConfig(name)?.peers ?? [];
    const peer = peers.length > 0 ? peers.join(' or ') : 'its peer';
    jv.apart = () => {
      // Once per time apart: a generation the peer never saw needs no successor.
      if (!id.shared) return;
      try {
        const g = id.newGeneration();
        this.log.info({ volume: name }, `volume ${name}: writes while apart from ${peer} begin generation ${g}`);
      } catch (e) {
        this.log.error({ volume: name }, `volume ${name}: cannot record a new generation: ${(e as Error).message}`);
      }
    };
  }

  async start(): Promise<void> {
    for (const name of this.volumes.primaries.keys()) this.armApart(name);
    this.figures.start();
    if (this.config.link) {
      this.listener = new LinkListener({
        identity: this.identity, peers: this.pinned(), log: this.log,
        onLink: ({ socket, peer }) => this.session(socket, peer.name, false),
      });
      await this.listener.listen(this.config.link);
    }
    for (const p of this.config.peers) {
      const sharesVolumes = this.config.volumes.some((v) => v.peers.includes(p.name));
      // One connection per pair: the node whose name sorts first dials.
      if (sharesVolumes) this.dialIfFirst(p.name);
    }
  }

  /** Runs one link until it closes (link-session.ts); an older link to the same peer is closed first. */
  private session(socket: tls.TLSSocket, peer: string, initiator: boolean): Promise<LinkEnd> {
    const old = this.sessions.get(peer);
    if (old) old.close('replaced by a new connection');
    return runLink(socket, {
      node: this.config.node, peer, initiator, speaks: this.protocol,
      deadAfterMs: (this.config.peers.find((p) => p.name === peer)?.timeout ?? 5) * 1000,
      shared: () => this.shared(peer),
      unavailable: () => this.setAside(peer),
      pairedWith: (volume) => this.volumeConfig(volume)?.peers ?? [],
    }, this.host);
  }

  /** Both Hellos passed: the link joins the node's links, and each shared volume is wired to it. */
  private linkUp(s: LinkSession, check: Extract<HelloCheck, { ok: true }>, version: number): void {
    const peer = s.peer;
    this.unpaired.peerAnew(peer, false);
    for (const u of check.unavailable) this.unpaired.peerCannot(peer, u, 'warn');
    this.conflicts.linked(peer, check.conflicts, check.pairs.map((p) => p.local.name), (c) => this.pairings.conflictFound(c));
    const setting = (): Compression => this.config.peers.find((p) => p.name === peer)?.compression ?? { mode: 'auto' };
    if (setting().mode !== 'off') this.pool ??= new CompressionPool();
    s.packer = new Packer({
      pool: this.pool, setting, peerZstd: check.hello.codecs?.includes('zstd') ?? false, buffers: frameBuffers,
      stats: (v) => this.figures.packStats(v),
      onFallback: (why) => {
        if (Date.now() - this.fallbackSaidAt < 60_000) return;
        this.fallbackSaidAt = Date.now();
        this.log.warn({ peer }, `link to ${peer}: a batch went uncompressed (${why}); shipping goes on`);
      },
      onAuto: (raw, rawRate, zstdRate) => {
        const rates = `${formatBytes(rawRate)}/s of records raw against ${formatBytes(zstdRate)}/s compressed`;
        if (raw) this.log.info({ peer }, `link to ${peer}: compression auto sends raw: it shipped ${rates} (the line takes more than this node packs)`);
        else this.log.info({ peer }, `link to ${peer}: compression auto compresses again: it shipped ${rates}`);
      },
    });
    this.sessions.set(peer, s);
    this.log.info({ peer, protocol: version }, `link to ${peer} up`);
    for (const { local } of check.follows) this.pairings.followOn(peer, local);
    for (const { local, remote } of check.pairs) if (!this.pairings.pairVolume(s, local, remote)) return;
  }

  /**
   * `name` changed here (its role, peers or size): its pairing on the link to `peer` is
   * let go and the peer asked to pair it again (a VolumeHello); a link of protocol 1 or 2
   * closes instead, and the next Hello pairs it (`redial`: dialed again at once).
   */
  private pairAgain(name: string, peer: string, why: string, redial: boolean): void {
    const s = this.sessions.get(peer);
    if (s?.rehello(name)) return;
    s?.close(why);
    if (redial) this.dialer.redial(peer);
  }

  /**
   * A volume changed role here (promote, demote), or a reload lets it go: its shipper
   * goes, and its peers are told it is being changed (a VolumeHello; a link of protocol
   * 1 or 2 closes, and the next Hello describes the new roles).
   */
  volumeChanged(name: string, reason: string): void {
    this.shippers.dropVolume(name);
    this.volumes.replicas.get(name)?.detach();
    this.pairings.unfollow(name);
    // (Its next Hello says again who starts again, and what conflicts: the role or the journal may be another by then.)
    this.pairings.startsAgainNoMore(name);
    this.conflicts.forget(name);
    // Out of both maps until the change is done: a link that comes back meanwhile neither
    // attaches the old replica nor ships from the old journal.
    this.volumes.replicas.delete(name);
    this.volumes.primaries.delete(name);
    this.tellChanging(name, reason);
  }

  /** `name`'s peers hear that it is being changed here, for `why` (a VolumeHello; on an older link, the link closes): the rest of each link goes on. */
  private tellChanging(name: string, why: string): void {
    this.unpaired.changeBegins(name, why);
    for (const peer of this.volumeConfig(name)?.peers ?? []) this.pairAgain(name, peer, why, false);
  }

  /**
   * A role change refused after volumeChanged: the secondary's replica is in the map
   * again, and the link to its peer comes back with it (the next Hello describes it).
   */
  volumeKept(name: string, replica: Replica, reason: string): void {
    this.volumes.replicas.set(name, replica);
    this.volumeReady(name, reason);
  }

  /**
   * A role change that stopped part-way after volumeChanged (a full disk, an I/O error):
   * the volume stays out of both maps, for what it holds may be neither role's, and its
   * peers hear `why` (a VolumeHello describing it unavailable), which says what completes it.
   */
  changeStopped(name: string, why: string): void {
    assert(!this.volumes.replicas.has(name) && !this.volumes.primaries.has(name), () => `volume ${name}: a stopped role change still paired`);
    this.tellChanging(name, why);
  }

  /**
   * A reload let `name` go (src/node/volume-removal.ts), after volumeChanged: what the
   * manager kept of it goes, and `peers` hear it is gone (its VolumeHello describes
   * nothing: the peer says it is missing here; or the next Hello does not describe it).
   */
  volumeRemoved(name: string, peers: readonly string[]): void {
    this.unpaired.forget(name);
    this.pausedVolumes.delete(name);
    this.conflicts.forget(name);
    this.pairings.startsAgainNoMore(name);
    this.figures.forget(name);
    for (const peer of peers) if (!this.retiring.has(peer)) this.pairAgain(name, peer, `volume ${name} was removed here`, true);
  }

  /** A reload took `peers` away from `volume` (src/node/volume-peers.ts): its shippers to them stop, and what was kept of them goes. */
  stopShipping(volume: string, peers: readonly string[]): void {
    for (const peer of peers) {
      this.shippers.drop(volume, peer);
      this.unpaired.pairEnded(volume, peer);
      this.pairings.startsAgainNoMore(volume, peer);
    }
  }

  /**
   * A reload changed `volume`'s peers (or its size, src/node/volume-size.ts): the links to
   * `peers` are made again, and the next Hello pairs it as the config says now.
   */
  relink(volume: string, peers: readonly string[], why = `volume ${volume}'s peers changed at a reload here`): void {
    for (const peer of peers) {
      if (this.pairings.followsNow(volume) === peer) {
        this.pairings.unfollow(volume);
        this.volumes.replicas.get(volume)?.detach();
      }
      if (this.sessions.get(peer)?.rehello(volume)) continue;
      this.sessions.get(peer)?.close(why);
      if (this.config.node < peer && !this.dialing.has(peer)) this.dialIfFirst(peer);
      else this.dialer.redial(peer);
    }
  }

  /** Is `volume` paired with `peer` on a link now: its secondary shipped to, or its primary received from? */
  paired(volume: string, peer: string): boolean {
    return this.pairings.followsNow(volume) === peer || (this.shippers.has(volume, peer) && this.sessions.has(peer) &&
      this.unpaired.said(volume, peer) === undefined);
  }

  /** Peers a reload dropped with their volumes, until dropRetiring. */
  private readonly retiring = new Set<string>();

  /**
   * The peers a reload dropped, once the volumes paired with them are let go: no more
   * dials, their links close, their certificates are no longer accepted.
   */
  dropRetiring(): void {
    for (const peer of this.retiring) {
      // (A volume the reload could not let go, a consistency group's member dropped alone, keeps its peer.)
      const still = this.config.volumes.filter((v) => v.peers.includes(peer));
      if (still.length > 0) {
        this.log.warn({ peer }, `peer ${peer} stays until the next restart: ${still.map((v) => `volume ${v.name}`).join(', ')} ` +
          `still ${still.length === 1 ? 'pairs' : 'pair'} with it here`);
        continue;
      }
      this.dialer.forget(peer);
      this.dialing.delete(peer);
      this.sessions.get(peer)?.close(`peer ${peer} was removed from the config here`);
      this.unpaired.peerAnew(peer, false);
      this.config.peers.splice(this.config.peers.findIndex((p) => p.name === peer), 1);
      this.log.info({ peer }, `peer ${peer}: removed from the config; no link to it any more`);
    }
    this.retiring.clear();
    this.listener?.pin(this.pinned());
  }

  /** The peers this node dials (one dial loop each, for as long as the daemon runs). */
  private readonly dialing = new Set<string>();

  /** One connection per pair: the node whose name sorts first dials (from the start, or once a volume shares the peer). */
  private dialIfFirst(peer: string): void {
    const p = this.config.peers.find((x) => x.name === peer);
    if (!p || this.config.node >= peer || this.dialing.has(peer)) return;
    this.dialing.add(peer);
    void this.dialer.dial(p);
  }

  /**
   * A reload added `name` (served here now): its peers are dialed if no volume shared
   * them before (volumeReady, next, makes the link again with it).
   */
  volumeAdded(name: string): void {
    for (const peer of this.volumeConfig(name)?.peers ?? []) this.dialIfFirst(peer);
  }

  /** The change is done (the maps hold the volume in its new role): the next Hello says so. */
  volumeReady(name: string, reason: string): void {
    this.unpaired.changeEnds(name);
    for (const peer of this.volumeConfig(name)?.peers ?? []) this.pairAgain(name, peer, reason, true);
  }

  /** What a promote of `volume` at `peer` would lose now (ms; null: that pair has not linked since the daemon started). */
  lagMsOf(volume: string, peer: string, now: number): number | null {
    return this.shippers.get(volume, peer)?.lagMs(now) ?? null;
  }

  /** Whose resync round the first sync of `volume` at `peer` waits for (docs/PEERS.md), or null. */
  firstSyncWaitsFor(volume: string, peer: string): string | null {
    return this.shippers.get(volume, peer)?.firstSyncWaitsFor ?? null;
  }

  /** A volume's config by name (a map rebuilt when the list changes: asked at every read of every shipper). */
  private volumeConfig(name: string): Config['volumes'][number] | undefined {
    // (A reload adds volumes to the list in place: it only grows.)
    const list = this.config.volumes;
    if (this.byName?.list !== list || this.byName.map.size !== list.length) this.byName = { list, map: new Map(list.map((v) => [v.name, v])) };
    return this.byName.map.get(name);
  }

  private byName: { list: Config['volumes']; map: Map<string, Config['volumes'][number]> } | null = null;

  async stop(): Promise<void> {
    this.dialer.stop(); // dialers waiting out a backoff end now
    this.shippers.stop();
    this.figures.stop();
    for (const s of this.sessions.values()) s.close('node stopping');
    await this.listener?.close();
    await this.pool?.close();
  }
}
