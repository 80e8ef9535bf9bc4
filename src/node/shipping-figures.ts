// What each primary volume's shipping did, for the status (src/node/status.ts): the
// bytes its Records frames took on the wire, what packing did to its batches, its
// rates (sampled each second, which also hands each shipper its link's measurement),
// and its shipper's window, batch, round trip, lag and coalescing now. The link
// manager (links.ts) owns one and feeds it; it reads the rest through FigureSources.
import type { JournaledVolume } from '../journal/write-path.js';
import { emptyPackStats, type PackStats } from '../compress/packer.js';
import type { VolumeShipper } from '../link/volume-shipper.js';
import { RateMeter } from '../rate/meter.js';

/** What the figures read of the link manager. */
export interface FigureSources {
  /** The primary volumes here now. */
  primaries(): Iterable<[string, JournaledVolume]>;
  /** The shipper of primary `volume` (undefined: it has not linked since the daemon started). */
  shipper(volume: string): VolumeShipper | undefined;
  /** The peer `volume` is paired with (undefined: none). */
  peerOf(volume: string): string | undefined;
  /** The peer's rate cap at `now` (bytes per second; null: none), schedule included. */
  rateNow(peer: string, now: number): number | null;
  /** The link's measured round trip (ms; null: not measured or no link). */
  rttOf(peer: string): number | null;
  /** What the link to `peer` carries when it is the bottleneck, bounded by `cap` (bytes per second; null: unknown or down). */
  capacity(peer: string, cap: number | null): number | null;
}

export class ShippingFigures {
  /** Bytes the pacers wrote to sockets, per volume. */
  private readonly wireSent = new Map<string, number>();
  private readonly packed = new Map<string, PackStats>();
  /** Per volume: host writes, journal records shipped and wire bytes, as rates (sampled each second). */
  private readonly meters = new Map<string, { host: RateMeter; records: RateMeter; wire: RateMeter }>();
  private meterTimer: NodeJS.Timeout | null = null;

  constructor(private readonly from: FigureSources) {}

  /** Samples the rates each second until stop(). */
  start(): void {
    this.meterTimer = setInterval(() => this.sampleRates(), 1000);
    this.meterTimer.unref();
  }

  stop(): void {
    if (this.meterTimer) clearInterval(this.meterTimer);
  }

  /** A volume let go (src/node/volume-removal.ts): its figures go (added back, it counts from zero). */
  forget(volume: string): void {
    this.wireSent.delete(volume);
    this.packed.delete(volume);
    this.meters.delete(volume);
  }

  /** A pacer wrote `bytes` of `volume`'s frames to its socket. */
  wrote(volume: string, bytes: number): void {
    this.wireSent.set(volume, (this.wireSent.get(volume) ?? 0) + bytes);
  }

  /** Bytes of Records frames sent for `volume` since the daemon started. */
  wireBytes(volume: string): number {
    return this.wireSent.get(volume) ?? 0;
  }

  /** What packing did to each volume's batches since the daemon started (compression and zero figures). */
  packStats(volume: string): PackStats {
    let st = this.packed.get(volume);
    if (!st) this.packed.set(volume, (st = emptyPackStats()));
    return st;
  }

  /** The window a volume's shipper keeps in flight now (bytes; null: no shipper yet). */
  windowOf(volume: string): number | null {
    return this.from.shipper(volume)?.windowBytes ?? null;
  }

  /** A volume's durable-ack round trip (ms; null: no shipper, or no batch acked yet). */
  ackRttOf(volume: string): number | null {
    return this.from.shipper(volume)?.ackRttMs ?? null;
  }

  /** The lag an operator reads: the age of the oldest write a promote at the peer would lose now (ms; null: no shipper). */
  lagMsOf(volume: string, now: number): number | null {
    return this.from.shipper(volume)?.lagMs(now) ?? null;
  }

  /** The volume's batch size now (null: no shipper). */
  batchOf(volume: string): number | null {
    return this.from.shipper(volume)?.batchBytes ?? null;
  }

  /** Records a volume's shipper sent as Skip records (coalescing), and their payload bytes. */
  coalescedOf(volume: string): { records: number; bytes: number } {
    const sh = this.from.shipper(volume);
    return { records: sh?.coalescedRecords ?? 0, bytes: sh?.coalescedBytes ?? 0 };
  }

  /** Rates of a primary volume (bytes per second, smoothed over about 5 s). */
  ratesOf(volume: string): { host: number; records: number; wire: number } {
    const m = this.meters.get(volume);
    return { host: m?.host.rate ?? 0, records: m?.records.rate ?? 0, wire: m?.wire.rate ?? 0 };
  }

  private sampleRates(now = Date.now()): void {
    for (const [name, jv] of this.from.primaries()) {
      let m = this.meters.get(name);
      if (!m) this.meters.set(name, (m = { host: new RateMeter(), records: new RateMeter(), wire: new RateMeter() }));
      m.host.sample(now, jv.journal.hostBytes);
      m.records.sample(now, this.packStats(name).recordBytes + this.coalescedOf(name).bytes);
      m.wire.sample(now, this.wireBytes(name));
      // The shipper's window follows the link's bandwidth-delay product (src/link/window.ts).
      // It counts record bytes: uncapped, the rate is the faster of records and wire
      // (compression makes the records' the larger).
      const sh = this.from.shipper(name);
      const peer = this.from.peerOf(name);
      if (sh?.session && peer) {
        const cap = this.from.rateNow(peer, now);
        sh.linkMeasured(cap ?? Math.max(m.wire.rate, m.records.rate), this.from.rttOf(peer), this.from.capacity(peer, cap));
      }
    }
  }
}
