// Turns a batch of journal records into the frame that goes on one link: zero
// writes as Zeroes records, then zstd in the worker pool when the link's setting
// and the peer allow it, raw when compressing does not pay. Counts what it saved.
import type { JournalRecord } from '../journal/record.js';
import { RECORD_HEADER_SIZE } from '../journal/record.js';
import { encodeHeadersPackedFrame, encodePackedRecordsFrame, encodeRawRecordsFrame, encodeRawRecordsFrameOf, headersWorthIt, recordsBody, splitRecords,
  zeroWritesAsZeroes } from './codec.js';
import { LevelController } from './level.js';
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
}

export function emptyPackStats(): PackStats {
  return { recordBytes: 0, zeroBytes: 0, compressedIn: 0, compressedOut: 0, incompressibleBatches: 0, fallbackBatches: 0 };
}

export interface PackerOptions {
  pool: CompressionPool | null;
  setting: () => Compression;
  /** The peer said in its Hello that it decodes zstd. */
  peerZstd: boolean;
  stats: (volume: string) => PackStats;
  /** Told once when a batch had to go raw because compression failed. */
  onFallback?: (why: string) => void;
}

export class Packer {
  private readonly auto = new LevelController();

  constructor(private readonly opts: PackerOptions) {}

  /** The zstd level batches get now (0: none). */
  get level(): number {
    const s = this.opts.setting();
    if (!this.opts.pool || !this.opts.peerZstd || s.mode === 'off') return 0;
    return s.mode === 'fixed' ? s.level : this.auto.level;
  }

  /** Once a second: how busy the link was (0..1). Moves the auto level. */
  observe(linkBusy: number): void {
    if (this.opts.pool && this.opts.setting().mode === 'auto') this.auto.observe({ linkBusy, workersBusy: this.opts.pool.busy });
  }

  /** `room`: the buffer the records were read into, where a raw frame is built around them (records-frame.ts). */
  async encode(volume: string, records: JournalRecord[], room?: FrameRoom): Promise<Buffer[]> {
    const st = this.opts.stats(volume);
    for (const r of records) st.recordBytes += RECORD_HEADER_SIZE + r.payload.length;
    const z = zeroWritesAsZeroes(records);
    st.zeroBytes += z.zeroBytes;
    const level = this.level;
    // (Raw: the frame is built where the records were read, or in one buffer, the payloads copied once.)
    if (level === 0) return encodeRawRecordsFrameOf(volume, z.records, room);
    const body = recordsBody(z.records);
    if (body.length < MIN_COMPRESS_BYTES) return encodeRawRecordsFrame(volume, body);
    // (The body may move to the worker, leaving this Buffer empty: keep its length,
    // and build it again if the batch goes raw after all.)
    const rawLength = body.length;
    let packed: Buffer;
    try {
      packed = await this.opts.pool!.compress(body, level);
    } catch (e) {
      st.fallbackBatches++;
      this.opts.onFallback?.((e as Error).message);
      return encodeRawRecordsFrameOf(volume, z.records);
    }
    if (packed.length >= rawLength - (rawLength >> 5)) {
      st.incompressibleBatches++;
      // Random payloads: the headers alone still compress (a 56-byte header is most of
      // a small write's overhead on the line).
      const split = splitRecords(z.records);
      const headerBytes = split.headerBytes;
      let h: Buffer | null = null;
      try {
        h = await this.opts.pool!.compress(split.columns, level);
      } catch {
        h = null;
      }
      if (h && headersWorthIt(headerBytes, h.length, rawLength)) {
        st.compressedIn += headerBytes;
        st.compressedOut += h.length;
        return encodeHeadersPackedFrame(volume, rawLength, level, h, split.payloads);
      }
      return encodeRawRecordsFrameOf(volume, z.records);
    }
    st.compressedIn += rawLength;
    st.compressedOut += packed.length;
    return encodePackedRecordsFrame(volume, rawLength, level, packed);
  }
}
