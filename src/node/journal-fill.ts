// A primary's journal filling is told before it overflows (docs/JOURNAL.md, "Its size"):
// an outage of weeks fills it slowly, and once full, the volume tracks changes in its
// dirty bitmap, where the order of the writes is gone until a resync. Past each of
// JOURNAL_FILL_NOTICES of its capacity, once, the log says how full it is, who it waits
// for and how far behind each is, and what to do: raise `journal:` and reload (no
// restart), or bring the link back. Told again after it fell below JOURNAL_FILL_RESET.
import type { Logger } from '../log/log.js';
import { JOURNAL_FILL_NOTICES, JOURNAL_FILL_RESET } from '../limits/limits.js';
import { formatBytes, formatDuration } from '../units/units.js';
import { assert } from '../invariants/assert.js';

/** Which notice a journal's fill calls for now, per volume (pure: the thresholds crossed since the last one). */
export class FillNotices {
  /** Per volume: how many of the thresholds were told. */
  private readonly told = new Map<string, number>();

  /** The share past which `volume` is to be told now (null: none new). */
  check(volume: string, used: number, capacity: number): number | null {
    assert(capacity > 0 && used >= 0, () => `journal fill of ${volume}: ${used} of ${capacity}`);
    const fill = used / capacity;
    const told = this.told.get(volume) ?? 0;
    if (fill < JOURNAL_FILL_RESET) {
      this.told.delete(volume);
      return null;
    }
    let crossed = told;
    while (crossed < JOURNAL_FILL_NOTICES.length && fill >= JOURNAL_FILL_NOTICES[crossed]!) crossed++;
    if (crossed === told) return null;
    this.told.set(volume, crossed);
    return JOURNAL_FILL_NOTICES[crossed - 1]!;
  }

  forget(volume: string): void {
    this.told.delete(volume);
  }
}

/** What the notice says of a volume's journal and of each peer it waits for. */
export interface FillFigures {
  volume: string;
  used: number;
  capacity: number;
  /**
   * Each peer: its link, and how old the oldest write it lacks is (ms; null: not known);
   * `conflict`, the code of a conflict that keeps the volume unpaired on a link that is up (docs/LINK.md).
   */
  peers: Array<{ name: string; link: string; lagMs: number | null; conflict?: string | null }>;
}

/** "volume db: journal 6.1 GiB of 8.0 GiB (76%); site-b: link down, 3 h 12 min behind; ...". */
export function fillMessage(f: FillFigures): string {
  const pct = Math.floor((f.used / f.capacity) * 100);
  const linked = (p: FillFigures['peers'][number]): string =>
    p.link !== 'connected' ? 'link down' : p.conflict ? `linked, but the volume not paired (${p.conflict}: the status says what to do)` : 'linked';
  const who = f.peers.map((p) => `${p.name}: ${linked(p)}` +
    (p.lagMs !== null && p.lagMs > 0 ? `, ${formatDuration(p.lagMs / 1000)} behind` : '')).join('; ');
  return `volume ${f.volume}: journal ${formatBytes(f.used)} of ${formatBytes(f.capacity)} (${pct}%)${who ? `; ${who}` : ''}. ` +
    `Full, it overflows into the dirty bitmap and the order of the writes is kept no more until a resync: raise its journal: ` +
    'in the config and `offsite reload` (no restart), or bring the link back';
}

/** Checks every primary's journal (each second, from the daemon's ticker) and logs what FillNotices calls for. */
export function tellJournalFill(notices: FillNotices, volumes: Iterable<FillFigures>, log: Logger): void {
  for (const f of volumes) {
    const at = notices.check(f.volume, f.used, f.capacity);
    if (at !== null) log.warn({ volume: f.volume }, fillMessage(f));
  }
}
