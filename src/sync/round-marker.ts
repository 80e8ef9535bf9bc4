// The durable mark of an open resync round (docs/RESYNC.md). One small file in a
// Store: 8-byte magic "OFFSRND1", u64 LE first seq of the round, u32 LE flags,
// u32 LE CRC32C of the first 20 bytes. Written and synced (with its directory)
// before the round begins, removed (durably) once the round is complete. A torn or
// damaged marker reads as absent: the primary then folds the journal into the
// bitmap and starts a new round, which is always safe.
import { crc32c } from '../checksum/crc32c.js';
import type { Store } from '../store/store.js';
import { magicDigit, refuseNewer } from '../versioning/format.js';

const MAGIC = Buffer.from('OFFSRND1', 'latin1');
/**
 * The magic's last byte is the version. A newer release's marker is refused (docs/
 * VERSIONING.md), not read as absent: a secondary would drop its undo area and serve
 * a replica halfway through a round.
 */
export const ROUND_FORMAT = magicDigit('resync round marker', 'OFFSRND', 1, [1]);
export const ROUND_MARKER_SIZE = 24;

export interface RoundMark {
  /** The first seq of the round: records before it are superseded by the round. */
  startSeq: number;
  /** Secondary only: the round is the first sync, so there is no earlier image to keep. */
  initial: boolean;
  /**
   * Secondary only: the unit that ends the round is on the volume (flushed) and its
   * applied counter is being made durable; the marker goes next. A start that finds
   * this flag and no round end left to apply completes the round (docs/RESYNC.md).
   * Flag bit 1: an older release ignores it and redoes the end, which is safe.
   */
  ending?: boolean;
}

export function encodeRoundMark(m: RoundMark): Buffer {
  const b = Buffer.alloc(ROUND_MARKER_SIZE);
  MAGIC.copy(b, 0);
  b.writeBigUInt64LE(BigInt(m.startSeq), 8);
  b.writeUInt32LE((m.initial ? 1 : 0) | (m.ending ? 2 : 0), 16);
  b.writeUInt32LE(crc32c(b.subarray(0, 20)), 20);
  return b;
}

export function decodeRoundMark(b: Buffer): RoundMark | null {
  if (b.length < ROUND_MARKER_SIZE || !b.subarray(0, 8).equals(MAGIC)) return null;
  if (crc32c(b.subarray(0, 20)) !== b.readUInt32LE(20)) return null;
  const flags = b.readUInt32LE(16);
  return { startSeq: Number(b.readBigUInt64LE(8)), initial: (flags & 1) !== 0, ...((flags & 2) !== 0 ? { ending: true } : {}) };
}

export class RoundMarker {
  constructor(private readonly store: Store, private readonly name = 'round') {}

  async read(): Promise<RoundMark | null> {
    if (!this.store.list().includes(this.name)) return null;
    const f = this.store.open(this.name);
    try {
      const b = await f.read(0, ROUND_MARKER_SIZE);
      refuseNewer(ROUND_FORMAT, b, this.name);
      return decodeRoundMark(b);
    } finally {
      f.close();
    }
  }

  write(m: RoundMark): Promise<void> {
    return this.store.replace(this.name, encodeRoundMark(m));
  }

  async remove(): Promise<void> {
    if (!this.store.list().includes(this.name)) return;
    this.store.remove(this.name);
    await this.store.syncDir();
  }
}
