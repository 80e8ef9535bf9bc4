// The pacer of one link: frames from the volumes sharing it wait in a queue per
// volume and go out at the peer's rate (a token bucket), fairly by weight (the
// volume that has sent least for its weight goes next), whole frames in order
// per volume, bytes in chunks so a large frame is paced too. Without a rate, frames
// go straight to the socket. Its queues are bounded by each shipper's window.
import { MAX_SOCKET_BYTES } from './capacity.js';
import { TokenBucket } from './rate.js';

const CHUNK = 16 * 1024;
/**
 * Most bytes left in the socket's own buffer (unless `maxBuffered` says less): past it
 * the pacer waits for 'drain', so record frames queue here, where acks, heartbeats and
 * hash replies can pass them.
 */
export const MAX_SOCKET_BUFFERED = MAX_SOCKET_BYTES;
/** The Records and PackedRecords frame types (docs/PEER-PROTOCOL.md): byte 5 of a frame's header. */
const RECORDS_FRAME = 3;
const PACKED_RECORDS_FRAME = 10;

interface Queue {
  volume: string;
  weight: number;
  frames: Buffer[][];
  sent: number;
}

export interface PacerOptions {
  write(b: Buffer): void;
  /** Bytes per second now (null: unlimited). Read at every chunk. */
  rate(): number | null;
  now(): number;
  /** Schedules a wake-up (setTimeout in the daemon). */
  later(ms: number, f: () => void): void;
  /** Record bytes of `volume` written to the socket. */
  onWritten?(volume: string, bytes: number): void;
  /** Bytes the socket holds unsent, and a call once it has drained (backpressure). */
  buffered?(): number;
  onDrain?(f: () => void): void;
  /** Most bytes the socket may hold now (a slow link: less; default MAX_SOCKET_BUFFERED). */
  maxBuffered?(): number;
}

export class Pacer {
  private readonly queues = new Map<string, Queue>();
  /** Small frames (acks, heartbeats, hashes) that go at the next frame boundary, ahead of records. */
  private readonly controls: Buffer[][] = [];
  private current: { parts: Buffer[]; part: number; offset: number; volume: string } | null = null;
  private bucket: TokenBucket | null = null;
  private waiting = false;
  private closed = false;

  constructor(private readonly opts: PacerOptions) {}

  send(volume: string, weight: number, parts: Buffer[]): void {
    if (this.closed) return;
    let q = this.queues.get(volume);
    if (!q) {
      q = { volume, weight, frames: [], sent: 0 };
      this.queues.set(volume, q);
    }
    q.weight = weight;
    if (q.frames.length === 0) {
      // A volume back from idle starts level with the busiest share, not far behind it.
      let least = Infinity;
      for (const o of this.queues.values()) if (o !== q && o.frames.length > 0) least = Math.min(least, o.sent / o.weight);
      if (least !== Infinity) q.sent = Math.max(q.sent, least * q.weight);
    }
    const n = parts.reduce((k, p) => k + p.length, 0);
    // Straight to the socket when nothing waits and the whole frame fits in its
    // allowance; a larger frame goes in chunks, so control frames can still pass it.
    if (this.opts.rate() === null && !this.current && !this.waiting && this.pending() === 0 && this.fits(n)) {
      for (const p of parts) this.write(p);
      q.sent += n;
      this.opts.onWritten?.(volume, n);
      return;
    }
    q.frames.push(parts);
    this.pump();
  }

  /** A control frame: never waits for the rate, only for the frame being written to end. */
  control(parts: Buffer[]): void {
    if (this.closed) return;
    // (Behind control frames already waiting: they keep their order.)
    if (!this.current && this.controls.length === 0) {
      for (const p of parts) this.write(p);
      this.bucket?.take(parts.reduce((n, p) => n + p.length, 0), this.opts.now());
      return;
    }
    this.controls.push(parts);
  }

  /**
   * Forgets `volume`'s Records frames not yet begun (its shipping paused: they are
   * read again later); its other frames (Resync, hash requests) still go.
   */
  drop(volume: string): void {
    const q = this.queues.get(volume);
    if (q) q.frames = q.frames.filter((f) => f[0]?.[5] !== RECORDS_FRAME && f[0]?.[5] !== PACKED_RECORDS_FRAME);
  }

  /** A record frame is being written, waits for the rate or the socket, or is queued. */
  active(): boolean {
    return this.current !== null || this.waiting || this.pending() > 0;
  }

  /** Frames waiting, over all volumes. */
  pending(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.frames.length;
    return n;
  }

  close(): void {
    this.closed = true;
    this.queues.clear();
    this.controls.length = 0;
    this.current = null;
  }

  private write(b: Buffer): void {
    this.opts.write(b);
  }

  private waitForDrain(): void {
    this.waiting = true;
    this.opts.onDrain!(() => {
      this.waiting = false;
      this.pump();
    });
  }

  /** `n` more bytes keep the socket within its allowance (always, without a view of the socket). */
  private fits(n: number): boolean {
    if (this.opts.buffered === undefined || this.opts.onDrain === undefined) return true;
    return this.opts.buffered() + n <= (this.opts.maxBuffered?.() ?? MAX_SOCKET_BUFFERED);
  }

  /** The socket's buffer is past its allowance (a link slower than we write). */
  private full(): boolean {
    return this.opts.buffered !== undefined && this.opts.onDrain !== undefined && this.opts.buffered() >= (this.opts.maxBuffered?.() ?? MAX_SOCKET_BUFFERED);
  }

  /** The next frame: from the volume that has sent the least for its weight. */
  private next(): { parts: Buffer[]; volume: string } | null {
    let best: Queue | null = null;
    for (const q of this.queues.values()) {
      if (q.frames.length === 0) continue;
      if (!best || q.sent / q.weight < best.sent / best.weight) best = q;
    }
    if (!best) return null;
    const f = best.frames.shift()!;
    best.sent += f.reduce((n, p) => n + p.length, 0);
    // Keep the counts small (only their ratios matter).
    if (best.sent > 2 ** 40) for (const q of this.queues.values()) q.sent /= 2;
    return { parts: f, volume: best.volume };
  }

  private pump(): void {
    if (this.waiting || this.closed) return;
    for (;;) {
      if (!this.current) {
        for (const parts of this.controls.splice(0)) this.control(parts);
        // Between frames the socket drains first: a control frame sent meanwhile goes
        // straight out, ahead of the next record frame.
        if (this.full() && this.pending() > 0) {
          this.waitForDrain();
          return;
        }
        const f = this.next();
        if (!f) return;
        this.current = { parts: f.parts, part: 0, offset: 0, volume: f.volume };
      }
      if (this.full()) {
        this.waitForDrain();
        return;
      }
      const c = this.current;
      const part = c.parts[c.part]!;
      const n = Math.min(CHUNK, part.length - c.offset);
      const rate = this.opts.rate();
      let wait = 0;
      if (rate !== null) {
        const now = this.opts.now();
        const burst = Math.max(CHUNK, rate / 10);
        if (!this.bucket) this.bucket = new TokenBucket(rate, burst, now);
        else if (this.bucket.bytesPerSecond !== rate) this.bucket.setRate(rate, burst, now);
        wait = this.bucket.take(n, now);
      }
      this.write(n === part.length && c.offset === 0 ? part : part.subarray(c.offset, c.offset + n));
      this.opts.onWritten?.(c.volume, n);
      c.offset += n;
      if (c.offset >= part.length) {
        c.part++;
        c.offset = 0;
        if (c.part >= c.parts.length) this.current = null;
      }
      if (wait > 0) {
        this.waiting = true;
        this.opts.later(wait, () => {
          this.waiting = false;
          this.pump();
        });
        return;
      }
    }
  }
}
