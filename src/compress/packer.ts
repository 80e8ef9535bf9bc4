// Turns a batch of journal records into the frame that goes on one link: zero
// writes as Zeroes records, then zstd in the worker pool when the link's setting
// and the peer allow it, raw when compressing does not pay. Counts what it saved.
import type { JournalRecord } from '../journal/record.js';
import { RECORD_HEADER_SIZE } from '../journal/record.js';
import { encodeHeadersPackedFrame, encodePackedRecordsFrame, encodeRawRecordsFrame, encodeRawRecordsFrameOf, headersWorthIt, recordsBody, splitRecords,
  zeroWritesAsZeroes } from './codec.js';
import { LevelController } from './level.js';
import { sampleCompresses } from './sample.js';
import { MALLOC_MMAP_THRESHOLD_BYTES, MAX_UNTRIED_BATCHES } from '../limits/limits.js';
import { recordsBodyLength } from '../link/records-frame.js';
import type { OwnedBuffers } from '../memory/owned-buffers.js';
import type { CompressionPool } from './pool.js';
import type { FrameRoom } from '../link/records-frame.js';
import type { Compression } from './setting.js';

/** Smaller batches (a barrier, a few small records) are not worth a trip to a worker. */
const MIN_COMPRESS_BYTES = 1024;

/** What a volume's batches were, before and after packing, since the daemon started. */
export interface PackStats {
  /** Journal record bytes shipped (headers + payloads, as stored). */
  recordBytes: number;
  /** Payload bytes of all-zero writes sent as Zeroes records. */
  zeroBytes: number;
  /** Bytes handed to zstd, and what came back. */
  compressedIn: number;
  compressedOut: number;
  /** Batches sent raw because zstd did not shrink them. */
  incompressibleBatches: number;
  /** Batches sent raw because a worker failed or the queue was full. */
  fallbackBatches: number;
  /** Batches `auto` sent without trying zstd: their sample did not shrink, or batches before them did not. */
  untriedBatches: number;
}

export function emptyPackStats(): PackStats {
  return { recordBytes: 0, zeroBytes: 0, compressedIn: 0, compressedOut: 0, incompressibleBatches: 0, fallbackBatches: 0, untriedBatches: 0 };
}

export interface PackerOptions {
  pool: CompressionPool | null;
  setting: () => Compression;
  /** The peer said in its Hello that it decodes zstd. */
  peerZstd: boolean;
  stats: (volume: string) => PackStats;
  /** Told when `auto` starts sending raw (`raw`) or compressing again, with what each way shipped (record bytes a second). */
  onAuto?: (raw: boolean, rawRate: number, zstdRate: number) => void;
  /** The node's buffers, for bodies of `ownedFrom` bytes or more (MALLOC_MMAP_THRESHOLD_BYTES) on their way to a worker. */
  buffers?: OwnedBuffers;
  ownedFrom?: number;
  /** Told once when a batch had to go raw because compression failed. */
  onFallback?: (why: string) => void;
}

export class Packer {
  private readonly auto = new LevelController();

  constructor(private readonly opts: PackerOptions) {}

  /** The zstd level batches get now (0: none; with `auto`, raw where a try showed raw ships more: level.ts). */
  get level(): number {
    const s = this.opts.setting();
    if (!this.opts.pool || !this.opts.peerZstd || s.mode === 'off') return 0;
    return s.mode === 'fixed' ? s.level : this.auto.level;
  }

  /** Record bytes encoded since the last observe (what the link shipped, before packing). */
  private shipped = 0;

  /** Once a second: how busy the link was (0..1), and the cores of CPU this node used (process.cpuUsage). Moves the auto level. */
  observe(linkBusy: number, cpuBusy = 0): void {
    const recordBytes = this.shipped;
    this.shipped = 0;
    // (A peer that does not decode zstd gets raw batches anyway: nothing to weigh.)
    if (!this.opts.pool || !this.opts.peerZstd || this.opts.setting().mode !== 'auto') return;
    this.auto.observe({ linkBusy, workersBusy: this.opts.pool.busy, recordBytes, cpuBusy });
    const c = this.auto.changed;
    this.auto.changed = null;
    if (c) this.opts.onAuto?.(c.raw, c.rawRate, c.zstdRate);
  }

  /**
   * Per volume, with `auto`: batches in a row zstd did not shrink, and how many more go
   * without trying it (MAX_UNTRIED_BATCHES): they go raw, built where they were read.
   */
  private readonly untried = new Map<string, { streak: number; left: number }>();

  /** `room`: the buffer the records were read into, where a raw frame is built around them (records-frame.ts). */
  async encode(volume: string, records: JournalRecord[], room?: FrameRoom): Promise<Buffer[]> {
    const st = this.opts.stats(volume);
    let rawLength = 0;
    for (const r of records) rawLength += RECORD_HEADER_SIZE + r.payload.length;
    st.recordBytes += rawLength;
    this.shipped += rawLength;
    const z = zeroWritesAsZeroes(records);
    st.zeroBytes += z.zeroBytes;
    const level = this.level;
    // (Raw: the frame is built where the records were read, or in one buffer, the payloads copied once.)
    if (level === 0) return encodeRawRecordsFrameOf(volume, z.records, room);
    const auto = this.opts.setting().mode === 'auto';
    const untried = auto ? this.untried.get(volume) : undefined;
    if (untried && untried.left > 0) {
      untried.left--;
      st.untriedBatches++;
      if (rawLength - z.zeroBytes < MIN_COMPRESS_BYTES) return encodeRawRecordsFrameOf(volume, z.records, room);
      return this.incompressible(volume, z.records, rawLength - z.zeroBytes, level, st, room);
    }
    // (auto: a batch whose sample does not shrink goes raw without a trip to a worker: sample.ts.)
    if (auto && rawLength - z.zeroBytes >= MIN_COMPRESS_BYTES && !sampleCompresses(z.records)) {
      st.untriedBatches++;
      return this.incompressible(volume, z.records, rawLength - z.zeroBytes, level, st, room);
    }
    const bodyLength = recordsBodyLength(z.records);
    if (bodyLength < MIN_COMPRESS_BYTES) return encodeRawRecordsFrame(volume, recordsBody(z.records));
    // (A large body is built in the node's buffer, which goes to the worker and back: a new
    // one each batch mapped fresh memory, page by page. A small one may move to the worker,
    // leaving this Buffer empty: its length is kept.)
    const buffers = this.opts.buffers;
    const owned = buffers && bodyLength >= (this.opts.ownedFrom ?? MALLOC_MMAP_THRESHOLD_BYTES) ? buffers.take(bodyLength) : null;
    let packed: Buffer;
    try {
      if (owned) recordsBody(z.records, owned.bytes);
      packed = await this.opts.pool!.compress(owned ?? recordsBody(z.records), level);
    } catch (e) {
      st.fallbackBatches++;
      this.opts.onFallback?.((e as Error).message);
      return encodeRawRecordsFrameOf(volume, z.records, room);
    } finally {
      owned?.give();
    }
    if (packed.length >= bodyLength - (bodyLength >> 5)) {
      st.incompressibleBatches++;
      if (auto) {
        const streak = (untried?.streak ?? 0) + 1;
        this.untried.set(volume, { streak, left: Math.min(MAX_UNTRIED_BATCHES, 2 ** (streak - 1)) });
      }
      return this.incompressible(volume, z.records, bodyLength, level, st, room, true);
    }
    this.untried.delete(volume);
    st.compressedIn += bodyLength;
    st.compressedOut += packed.length;
    return encodePackedRecordsFrame(volume, bodyLength, level, packed);
  }

  /**
   * A batch whose payloads do not compress: the payloads go raw, and only the records'
   * headers are compressed when that saves at least 1/256 of the batch (small writes: a
   * 56-byte header is most of their overhead on the line); otherwise the batch goes raw.
   * `tried`: zstd just failed on the whole body (else the headers are tried only when
   * they are 1/128 of the batch or more, the size where they can save that much).
   */
  private async incompressible(volume: string, records: JournalRecord[], rawLength: number, level: number, st: PackStats, room: FrameRoom | undefined,
    tried = false): Promise<Buffer[]> {
    const split = splitRecords(records);
    if (tried || split.headerBytes >= rawLength >> 7) {
      let h: Buffer | null = null;
      try {
        h = await this.opts.pool!.compress(split.columns, level);
      } catch {
        h = null;
      }
      if (h && headersWorthIt(split.headerBytes, h.length, rawLength)) {
        st.compressedIn += split.headerBytes;
        st.compressedOut += h.length;
        return encodeHeadersPackedFrame(volume, rawLength, level, h, split.payloads);
      }
    }
    return encodeRawRecordsFrameOf(volume, records, room);
  }
}
