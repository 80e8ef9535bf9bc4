// The node's shippers: one per pair (volume, peer) of a primary volume here (a volume
// may have several peers, docs/PEERS.md). A shipper is made at the pair's first link
// and kept across links (its figures, its pause), wired to a link while the pair is up
// (src/node/pairing.ts pairs it), and let go when the volume changes role or a reload
// takes the peer away. One timer ticks them all. The share of its link each one's
// batches are sized to is worked out here from the volumes' weights (docs/LINK.md).
import type { Config } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import type { MemoryBudget } from '../memory/budget.js';
import type { LinkSession } from './link-session.js';
import { DEFAULT_SHIPPING, VolumeShipper } from '../link/volume-shipper.js';
import { effectiveWeight, shareOf } from '../rate/scheduler.js';
import { SHIPPER_TICK_MS } from '../limits/limits.js';

/** The key of a pair (volume, peer) in the shippers' map. */
function pairKey(volume: string, peer: string): string {
  return `${volume}\u0000${peer}`;
}

/** What the shippers use of the node. */
export interface ShippersHost {
  config: Config;
  log: Logger;
  memory: MemoryBudget;
  /** A volume's config by name (its weight, priority and first peer). */
  volumeConfig(name: string): Config['volumes'][number] | undefined;
  /** The peer's rate cap now (bytes per second; null: none), its schedule included. */
  rateNow(peer: string): number | null;
  /** Paused by the operator: a shipper made for it starts paused. */
  isPaused(volume: string): boolean;
}

export class Shippers {
  private readonly byPair = new Map<string, VolumeShipper>();
  private ticker: NodeJS.Timeout | null = null;

  constructor(private readonly host: ShippersHost) {}

  /** The shipper of the pair, if it has linked since the daemon started. */
  get(volume: string, peer: string): VolumeShipper | undefined {
    return this.byPair.get(pairKey(volume, peer));
  }

  has(volume: string, peer: string): boolean {
    return this.byPair.has(pairKey(volume, peer));
  }

  /** The shipper of `volume` to its (first) peer, if it has linked since the daemon started. */
  first(volume: string): VolumeShipper | undefined {
    const peer = this.host.volumeConfig(volume)?.peer;
    return peer === undefined ? undefined : this.get(volume, peer);
  }

  /** Every shipper of `volume`, one per peer it has linked with. */
  *of(volume: string): Iterable<VolumeShipper> {
    for (const sh of this.byPair.values()) if (sh.volume === volume) yield sh;
  }

  all(): Iterable<VolumeShipper> {
    return this.byPair.values();
  }

  /** The pair's shipper, made at its first link. */
  ensure(name: string, jv: JournaledVolume, peer: string): VolumeShipper {
    const key = pairKey(name, peer);
    const had = this.byPair.get(key);
    if (had) return had;
    const coalesce = (): boolean => this.host.config.peers.find((p) => p.name === peer)?.coalesce ?? true;
    const sh = new VolumeShipper(name, jv, this.host.log, { ...DEFAULT_SHIPPING, now: Date.now, coalesce, memory: this.host.memory, peer });
    if (this.host.isPaused(name)) sh.pause(true);
    sh.rate = () => this.host.rateNow(peer);
    sh.share = () => this.shareOf(name, peer);
    sh.shippersLinked = () => {
      let n = 0;
      for (const x of this.byPair.values()) if (x.session) n++;
      return n;
    };
    this.byPair.set(key, sh);
    if (!this.stopped) this.ticker ??= setInterval(() => {
      for (const x of this.byPair.values()) x.tick();
    }, SHIPPER_TICK_MS);
    return sh;
  }

  /** The link `s` closed: every shipper wired to it stops sending (each is kept for the next link). */
  linkClosed(s: LinkSession): void {
    for (const sh of this.byPair.values()) if (sh.session?.link === s) sh.down();
  }

  /** The pair is no more (a reload took the peer away): its shipper stops and goes. */
  drop(volume: string, peer: string): void {
    this.get(volume, peer)?.down();
    this.byPair.delete(pairKey(volume, peer));
  }

  /** `volume` changes role or goes: every shipper of it stops and goes. */
  dropVolume(volume: string): void {
    for (const [key, sh] of this.byPair) {
      if (sh.volume !== volume) continue;
      sh.down();
      this.byPair.delete(key);
    }
  }

  /**
   * `volume`'s share of its link now (0..1): its weight and priority against those of
   * the link's other volumes with something to send (scheduler.ts's shareOf). It sizes
   * the volume's batches: several volumes with a backlog each get a turn within about
   * a second (docs/LINK.md).
   */
  shareOf(volume: string, peer: string): number {
    const sh = this.get(volume, peer);
    const link = sh?.session?.link;
    if (!sh || !link) return 1;
    const weightOf = (name: string): number => {
      const v = this.host.volumeConfig(name);
      return effectiveWeight(v?.weight ?? 1, v?.priority ?? 'normal');
    };
    const others: number[] = [];
    for (const x of this.byPair.values()) if (x !== sh && x.session?.link === link && x.wantsLink) others.push(weightOf(x.volume));
    return others.length === 0 ? 1 : shareOf(weightOf(volume), others);
  }

  /** The node stops: the tick ends, and a shipper made after it (a link whose Hello ends meanwhile) gets none. */
  stop(): void {
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
  }

  private stopped = false;
}
