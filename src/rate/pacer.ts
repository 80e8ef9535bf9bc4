// The pacer of one link: frames from the volumes sharing it wait in a queue per
// volume and go out at the peer's rate (a token bucket), in the order the link's
// scheduler (scheduler.ts: deficit round robin by weight and priority, live records
// before resync and verify traffic) gives, whole frames in order per volume, bytes
// in chunks so a large frame is paced too. Without a rate, frames go straight to the
// socket when nothing waits. Its queues are bounded by each shipper's window.
import { MAX_SOCKET_BYTES } from './capacity.js';
import { assert } from '../invariants/assert.js';
import { TokenBucket } from './rate.js';
import { LinkScheduler, type FrameClass, type Priority } from './scheduler.js';

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

/**
 * What a frame's bytes belong to (a shipper's frame room, src/link/records-frame.ts): the
 * frame is written only while `live`, and released once the socket's writes of it are
 * done, or when it is dropped before any of it was written. A frame cut off by the link's
 * close is not released here (the socket may still hold views of it): the socket's own
 * write callbacks release it once its destroy has dropped the writes.
 */
export interface FrameHold {
  readonly live: boolean;
  release(): void;
}

interface Queued {
  parts: Buffer[];
  hold?: FrameHold;
}

/** A Records or PackedRecords frame (byte 5 of its header is the frame type). */
function isRecords(parts: Buffer[]): boolean {
  const t = parts[0]?.[5];
  return t === RECORDS_FRAME || t === PACKED_RECORDS_FRAME;
}

export interface PacerOptions {
  /** Writes to the socket; `done`, when given, is called once the socket is done with `b` (its write callback). */
  write(b: Buffer, done?: () => void): void;
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
  private readonly scheduler = new LinkScheduler<Queued>();
  /** Small frames (acks, heartbeats, hashes) that go at the next frame boundary, ahead of records. */
  private readonly controls: Buffer[][] = [];
  private current: { parts: Buffer[]; hold?: FrameHold; part: number; offset: number; volume: string } | null = null;
  private bucket: TokenBucket | null = null;
  private waiting = false;
  private closed = false;

  constructor(private readonly opts: PacerOptions) {}

  /**
   * Queues a frame of `volume`. `cls`: its class (default: a Records frame is live
   * traffic, anything else a volume sends, a Resync or a hash request, is resync).
   * `hold`: what the frame's bytes belong to (released once written or dropped).
   */
  send(volume: string, weight: number, parts: Buffer[], opts: { priority?: Priority; cls?: FrameClass; hold?: FrameHold } = {}): void {
    if (this.closed) {
      opts.hold?.release();
      return;
    }
    const n = parts.reduce((k, p) => k + p.length, 0);
    // Straight to the socket when nothing waits and the whole frame fits in its
    // allowance; a larger frame goes in chunks, so control frames can still pass it.
    if (this.opts.rate() === null && !this.current && !this.waiting && this.pending() === 0 && this.fits(n)) {
      assertFrameLive(opts.hold, volume);
      for (let i = 0; i < parts.length; i++) this.write(parts[i]!, i === parts.length - 1 ? opts.hold : undefined);
      this.opts.onWritten?.(volume, n);
      return;
    }
    this.scheduler.enqueue(volume, { parts, hold: opts.hold }, n, { weight, priority: opts.priority }, opts.cls ?? (isRecords(parts) ? 'live' : 'resync'));
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
    this.scheduler.drop(volume, (f) => {
      if (!isRecords(f.parts)) return true;
      f.hold?.release(); // (none of it written)
      return false;
    });
  }

  /**
   * Forgets every frame of `volume` not yet begun, of any kind: its pairing on the link
   * ended (a VolumeHello, which goes as a control frame and would pass them), so none of
   * them may follow it. The frame being written, if one, ends first.
   */
  dropAll(volume: string): void {
    this.scheduler.drop(volume, (f) => {
      f.hold?.release();
      return false;
    });
  }

  /** A record frame is being written, waits for the rate or the socket, or is queued. */
  active(): boolean {
    return this.current !== null || this.waiting || this.pending() > 0;
  }

  /** Frames waiting, over all volumes. */
  pending(): number {
    return this.scheduler.pending;
  }

  close(): void {
    this.closed = true;
    // Frames not begun go back; the one being written may still be in the socket's buffer.
    for (let f = this.scheduler.next(); f; f = this.scheduler.next()) f.item.hold?.release();
    this.scheduler.clear();
    this.controls.length = 0;
    this.current = null;
  }

  /** `hold`: the frame's last write; released from the socket's callback. */
  private write(b: Buffer, hold?: FrameHold): void {
    if (!hold) {
      this.opts.write(b);
      return;
    }
    let once = false;
    this.opts.write(b, () => {
      if (once) return;
      once = true;
      hold.release();
    });
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

  /** The next frame: the scheduler's pick. */
  private next(): { parts: Buffer[]; hold?: FrameHold; volume: string } | null {
    const f = this.scheduler.next();
    return f ? { parts: f.item.parts, hold: f.item.hold, volume: f.volume } : null;
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
        this.current = { parts: f.parts, hold: f.hold, part: 0, offset: 0, volume: f.volume };
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
      assertFrameLive(c.hold, c.volume);
      const last = c.part === c.parts.length - 1 && c.offset + n >= part.length;
      this.write(n === part.length && c.offset === 0 ? part : part.subarray(c.offset, c.offset + n), last ? c.hold : undefined);
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

/** A frame's bytes are written only while what they belong to holds them (invariant 12). */
export function assertFrameLive(hold: FrameHold | undefined, volume: string): void {
  assert(hold === undefined || hold.live, () => `a frame of ${volume} written after its buffer was released`);
}
