// Which volume's frame goes next on a link: a deficit round robin over the volumes'
// frame queues, by weight and priority, in two classes. Pure: no clock, no I/O; the
// pacer (pacer.ts) asks it for the next frame at every frame boundary.
//
// - Each volume's frames leave in the order they came (a volume's records are one
//   stream: the peer takes them in seq order).
// - A volume's class is its first waiting frame's: `live` (Records frames of host
//   writes) go before any `resync` (a resync round's records, Resync frames, the hash
//   requests of a first sync or a verify) whenever both wait. A volume's own live
//   records after its resync frames still wait for them (one stream).
// - Within a class, volumes take turns; each turn adds the volume's quantum
//   (SHARE_QUANTUM_BYTES × weight × priority factor) to its deficit, and it sends
//   frames while its deficit covers the next one. A volume whose queue empties loses
//   what is left of its deficit: idle time is not banked, so a volume back from idle
//   starts level with the others, neither ahead nor behind.
import { assert } from '../invariants/assert.js';
import { PRIORITY_FACTOR, SHARE_QUANTUM_BYTES } from '../limits/limits.js';

export type Priority = 'high' | 'normal' | 'low';
export type FrameClass = 'live' | 'resync';
/** The classes in the order they are served. */
const CLASSES: readonly FrameClass[] = ['live', 'resync'];

/** What a volume's weight and priority count for, against other volumes of the link. */
export function effectiveWeight(weight: number, priority: Priority = 'normal'): number {
  return weight * (priority === 'high' ? PRIORITY_FACTOR : priority === 'low' ? 1 / PRIORITY_FACTOR : 1);
}

/**
 * A volume's share of the link (0..1] while it and `others` (the other volumes with
 * something to send) want it: its effective weight over theirs and its own.
 */
export function shareOf(mine: number, others: number[]): number {
  const total = others.reduce((s, w) => s + w, mine);
  return total > 0 ? mine / total : 1;
}

export interface Share {
  weight: number;
  priority?: Priority;
}

interface Waiting<T> {
  item: T;
  bytes: number;
  cls: FrameClass;
}

interface Flow<T> {
  volume: string;
  quantum: number;
  frames: Waiting<T>[];
  deficit: number;
  /** The round it waits in (its first frame's class), or null: nothing waits. */
  round: FrameClass | null;
}

export interface Scheduled<T> {
  volume: string;
  item: T;
  bytes: number;
  cls: FrameClass;
}

export class LinkScheduler<T> {
  private readonly flows = new Map<string, Flow<T>>();
  /** Per class, the volumes with frames waiting, in turn order (the first one's turn is on). */
  private readonly rounds = new Map<FrameClass, Flow<T>[]>(CLASSES.map((c) => [c, []]));
  /** Per class, the flow whose turn is on (its quantum added already). */
  private readonly turn = new Map<FrameClass, Flow<T> | null>();
  private waiting = 0;

  /** Queues a frame of `volume` behind its others. Weight and priority take effect at once. */
  enqueue(volume: string, item: T, bytes: number, share: Share, cls: FrameClass = 'live'): void {
    let f = this.flows.get(volume);
    if (!f) this.flows.set(volume, (f = { volume, quantum: 0, frames: [], deficit: 0, round: null }));
    f.quantum = Math.max(1, SHARE_QUANTUM_BYTES * effectiveWeight(share.weight, share.priority));
    f.frames.push({ item, bytes, cls });
    this.waiting++;
    if (f.round === null) this.join(f);
  }

  /** The next frame to send (null: none waits). */
  next(): Scheduled<T> | null {
    const cls = CLASSES.find((c) => this.rounds.get(c)!.length > 0);
    if (cls === undefined) return null;
    const round = this.rounds.get(cls)!;
    let unserved = 0;
    for (;;) {
      const f = round[0]!;
      if (this.turn.get(cls) !== f) {
        f.deficit += f.quantum;
        this.turn.set(cls, f);
      }
      const head = f.frames[0]!;
      if (head.bytes <= f.deficit) return this.take(f, cls);
      // Its turn is over: the next volume's begins.
      round.push(round.shift()!);
      this.turn.set(cls, null);
      if (++unserved >= round.length) {
        // A whole round served nobody (frames larger than a quantum): add the rounds
        // that would pass before the first volume can send, at once.
        let k = Infinity;
        for (const g of round) k = Math.min(k, Math.ceil((g.frames[0]!.bytes - g.deficit) / g.quantum) - 1);
        if (k > 0) for (const g of round) g.deficit += k * g.quantum;
        unserved = 0;
      }
    }
  }

  /** Forgets the frames of `volume` that `keep` refuses (its shipping paused: they are read again). */
  drop(volume: string, keep: (item: T) => boolean): void {
    const f = this.flows.get(volume);
    if (!f || f.round === null) return;
    const before = f.frames.length;
    f.frames = f.frames.filter((w) => keep(w.item));
    this.waiting -= before - f.frames.length;
    this.leave(f);
    if (f.frames.length > 0) this.join(f);
    else f.deficit = 0;
  }

  /** Frames waiting, over all volumes. */
  get pending(): number {
    return this.waiting;
  }

  clear(): void {
    this.flows.clear();
    for (const r of this.rounds.values()) r.length = 0;
    this.turn.clear();
    this.waiting = 0;
  }

  private take(f: Flow<T>, cls: FrameClass): Scheduled<T> {
    const w = f.frames.shift()!;
    f.deficit -= w.bytes;
    this.waiting--;
    if (f.frames.length === 0) {
      // Idle time is not banked: what is left of its turn goes with it.
      this.leave(f);
      f.deficit = 0;
    } else if (f.frames[0]!.cls !== cls) {
      // Its next frame is of the other class: it waits in that round, from its end.
      this.leave(f);
      this.join(f);
    }
    this.check(f);
    return { volume: f.volume, item: w.item, bytes: w.bytes, cls: w.cls };
  }

  private join(f: Flow<T>): void {
    f.round = f.frames[0]!.cls;
    this.rounds.get(f.round)!.push(f);
  }

  private leave(f: Flow<T>): void {
    if (f.round === null) return;
    const round = this.rounds.get(f.round)!;
    const i = round.indexOf(f);
    if (i >= 0) round.splice(i, 1);
    if (this.turn.get(f.round) === f) this.turn.set(f.round, null);
    f.round = null;
  }

  /** A volume waits in exactly the round of its first frame's class, or in none when nothing of it waits. */
  private check(f: Flow<T>): void {
    assert(f.frames.length === 0 ? f.round === null : f.round === f.frames[0]!.cls && this.rounds.get(f.round)!.includes(f),
      () => `link scheduler: volume ${f.volume} has ${f.frames.length} frames waiting but waits in round ${f.round}`);
    assert(this.waiting >= 0, () => `link scheduler: ${this.waiting} frames waiting`);
  }
}
