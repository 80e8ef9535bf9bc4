// The RPO as it is: what a promote at the secondary would lose now. The secondary
// can present only a durable barrier that no Skip record before it reaches past (a
// coalesced unit goes whole or not at all, docs/PEER-PROTOCOL.md), so records it has
// acked after its newest such barrier are durable there and still lost on a promote.
// This tracker follows what the primary sent and what the peer acked and gives the
// time of the oldest record after the newest barrier the peer could present: the lag
// an operator reads is measured from it (docs/API.md, lagSeconds). Pure: no I/O.
//
// Memory: one mark per barrier sent and not yet behind the presentable point, so at
// most the records in flight (the window), in two number arrays.
import { RecordKind } from '../journal/record.js';
import { assert } from '../invariants/assert.js';

export interface SentRecord { kind: RecordKind; seq: number; offset: number; time: number }

export class ExposureTracker {
  /** Barriers sent, oldest first from `head`: their seq, and the time of the record after each (NaN: none sent yet). */
  private markSeq: number[] = [];
  private markNext: number[] = [];
  private head = 0;
  /** Coalesced units sent: from the first Skip record's seq, no barrier before `until` may be presented. */
  private spans: Array<{ seq: number; until: number }> = [];
  /** The newest barrier the peer could present (its acked records up to it are safe). */
  presentable = 0;
  /** The time of the first record after `presentable` that the peer has acked (null: none acked past it). */
  private lostSince: number | null = null;
  private lastSent = 0;

  /**
   * A new link resumes after `acked`: what the peer holds before is not known in
   * detail, so `acked` counts as presentable (until the next presentable barrier is
   * acked, the lag may read low by the records acked between the two).
   */
  reset(acked: number): void {
    this.markSeq = [acked];
    this.markNext = [Number.NaN];
    this.head = 0;
    this.spans = [];
    this.presentable = acked;
    this.lostSince = null;
    this.lastSent = acked;
  }

  /** Records as sent (after coalescing), in seq order. */
  sent(records: readonly SentRecord[]): void {
    for (const r of records) {
      if (r.seq <= this.lastSent) continue; // a resend of what this link already counted
      // A jump (a resync round starts the stream again further on): begin from there.
      if (r.seq !== this.lastSent + 1) this.reset(r.seq - 1);
      this.lastSent = r.seq;
      const last = this.markSeq.length - 1;
      if (last >= this.head && Number.isNaN(this.markNext[last]!)) this.markNext[last] = r.time;
      if (r.kind === RecordKind.Barrier) {
        this.markSeq.push(r.seq);
        this.markNext.push(Number.NaN);
      } else if (r.kind === RecordKind.Skip) {
        const s = this.spans[this.spans.length - 1];
        if (s && s.until === r.offset) continue;
        this.spans.push({ seq: r.seq, until: r.offset });
      }
    }
  }

  /** The peer holds everything up to `seq` durably. */
  acked(seq: number): void {
    let best = -1;
    for (let i = this.head; i < this.markSeq.length && this.markSeq[i]! <= seq; i++) {
      const b = this.markSeq[i]!;
      if (!this.spans.some((s) => s.seq <= b && s.until > b)) best = i;
    }
    if (best >= 0) {
      assert(this.markSeq[best]! >= this.presentable, () => `the presentable point went back from ${this.presentable} to ${this.markSeq[best]}`);
      this.presentable = this.markSeq[best]!;
      this.head = best;
      this.spans = this.spans.filter((s) => s.until > this.presentable);
      if (this.head > 1024 && this.head * 2 > this.markSeq.length) {
        this.markSeq = this.markSeq.slice(this.head);
        this.markNext = this.markNext.slice(this.head);
        this.head = 0;
      }
    }
    const next = this.markNext[this.head];
    this.lostSince = seq > this.presentable && next !== undefined && !Number.isNaN(next) ? next : null;
  }

  /** How long ago the oldest write a promote would lose now (among those the peer acked) was made; 0: none. */
  lostAgeMs(now: number): number {
    return this.lostSince === null ? 0 : Math.max(0, now - this.lostSince);
  }
}
