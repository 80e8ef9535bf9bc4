// The intent ring: before a journaled write goes to the volume, its range is written
// (page cache, one small synchronous write) into a fixed ring of slots. The journal
// append and the volume write then run at the same time. If the process dies with
// writes in flight, recovery finds the intents whose records never reached the
// journal and re-journals the volume's current bytes for those ranges, so the journal
// again describes the volume exactly. Without the ring the volume write would have to
// wait for the journal append.
//
// Slot (32 bytes, little-endian): "OFIN", CRC32C of bytes 8..32, u64 seq, u64 offset,
// u32 length, u32 format version (1; 0 in slots written before issue 14, where these
// bytes were reserved, and read as 1).
import { crc32c } from '../checksum/crc32c.js';
import type { Store, StoreFile } from './store.js';
import { NewerFormatError, isNewer, type FileFormat } from '../versioning/format.js';
import { assert } from '../invariants/assert.js';

export const INTENT_FILE = 'intent';
export const INTENT_SLOTS = 16384;
const SLOT = 32;
const MAGIC = 0x4e49464f; // "OFIN"
const VERSION = 1;

/** A whole slot's version, or null if it holds no intent (never written, torn, damaged). */
function slotVersion(all: Buffer, at: number): number | null {
  if (all.readUInt32LE(at) !== MAGIC || crc32c(all.subarray(at + 8, at + SLOT)) !== all.readUInt32LE(at + 4)) return null;
  return all.readUInt32LE(at + 28) || 1;
}

/**
 * The ring's version is each slot's. A slot of a newer release is refused (docs/
 * VERSIONING.md): skipped, the write it guards could be on the volume and not in the
 * journal, and the replica would never get it.
 */
export const INTENT_FORMAT: FileFormat = {
  what: 'intent ring', writes: VERSION, reads: [VERSION], headBytes: Infinity,
  version: (all) => {
    let v = 0;
    for (let at = 0; at + SLOT <= all.length; at += SLOT) v = Math.max(v, slotVersion(all, at) ?? 0);
    return v || null;
  },
};

export interface Intent {
  seq: number;
  offset: number;
  length: number;
}

export class IntentRing {
  private constructor(private readonly file: StoreFile, readonly created: boolean, private readonly slots: number) {}

  /**
   * Opens or creates (preallocated, so later writes need no new space) the ring.
   * `slots` must exceed the most writes ever in flight at once (NBD limits them).
   */
  static open(store: Store, slots = INTENT_SLOTS): IntentRing | null {
    try {
      if (store.list().includes(INTENT_FILE)) {
        const f = store.open(INTENT_FILE);
        if (f.size() === slots * SLOT) return new IntentRing(f, false, slots);
        f.close();
      }
      const f = store.create(INTENT_FILE);
      f.writeSync(0, Buffer.alloc(slots * SLOT));
      return new IntentRing(f, true, slots);
    } catch {
      return null; // disk full: the write path falls back to ordered writes
    }
  }

  /**
   * Writes several intents (one turn's writes), one write per run of neighbouring slots:
   * the seqs of one turn mostly follow each other, so usually one write for them all.
   * Throws if the file cannot be written; then none of them may be relied on.
   */
  recordAll(intents: readonly Intent[]): void {
    assert(intents.length > 0, () => 'intent ring: an empty batch');
    const b = Buffer.allocUnsafe(intents.length * SLOT);
    let runStart = 0;
    for (let i = 0; i < intents.length; i++) {
      const { seq, offset, length } = intents[i]!;
      assert(Number.isSafeInteger(seq) && seq > 0, () => `intent ring: seq ${seq}`);
      const at = i * SLOT;
      b.writeUInt32LE(MAGIC, at);
      b.writeBigUInt64LE(BigInt(seq), at + 8);
      b.writeBigUInt64LE(BigInt(offset), at + 16);
      b.writeUInt32LE(length, at + 24);
      b.writeUInt32LE(VERSION, at + 28);
      b.writeUInt32LE(crc32c(b.subarray(at + 8, at + SLOT)), at + 4);
      const next = intents[i + 1];
      if (next === undefined || next.seq % this.slots !== (seq + 1) % this.slots || next.seq % this.slots === 0) {
        const first = intents[runStart]!.seq % this.slots;
        this.file.writeSync(first * SLOT, b.subarray(runStart * SLOT, at + SLOT));
        runStart = i + 1;
      }
    }
  }

  /** Intents with seq in (after, after + slots), in seq order. */
  async after(after: number): Promise<Intent[]> {
    const all = await this.file.read(0, this.slots * SLOT);
    const out: Intent[] = [];
    for (let at = 0; at + SLOT <= all.length; at += SLOT) {
      const version = slotVersion(all, at);
      if (version === null) continue;
      if (isNewer(INTENT_FORMAT, version)) throw new NewerFormatError(INTENT_FORMAT, INTENT_FILE, version);
      const seq = Number(all.readBigUInt64LE(at + 8));
      if (seq > after && seq < after + this.slots) {
        out.push({ seq, offset: Number(all.readBigUInt64LE(at + 16)), length: all.readUInt32LE(at + 24) });
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  sync(): Promise<void> {
    return this.file.sync();
  }

  close(): void {
    this.file.close();
  }
}
