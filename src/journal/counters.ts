// The journal's two counter files (docs/JOURNAL.md, "Formats"): `released`, the
// release point, durable before a segment is removed (so a segment that comes back
// after a power loss is known as released), and `applied`, the redo point: the seq up
// to which every volume write was durable, written after each sync round, so whatever
// value is on disk after any crash was true. 20 bytes each: 8-byte magic (its last
// byte the format version), u64 LE value, u32 LE CRC32C of the first 16 bytes.
import { crc32c } from '../checksum/crc32c.js';
import type { Store, StoreFile } from '../store/store.js';
import { NewerFormatError, isNewer, magicDigit, type FileFormat } from '../versioning/format.js';

const COUNTER_SIZE = 20;
const RELEASED_FILE = 'released';
const RELEASED_MAGIC = Buffer.from('OFFSREL1', 'latin1');
const APPLIED_FILE = 'applied';
const APPLIED_MAGIC = Buffer.from('OFFSAPL1', 'latin1');
/** Their magic ends in their version (docs/VERSIONING.md). */
export const RELEASED_FORMAT = magicDigit('release point', 'OFFSREL', 1, [1]);
export const APPLIED_FORMAT = magicDigit('redo point', 'OFFSAPL', 1, [1]);

function encodeCounter(magic: Buffer, value: number): Buffer {
  const b = Buffer.alloc(COUNTER_SIZE);
  magic.copy(b, 0);
  b.writeBigUInt64LE(BigInt(value), 8);
  b.writeUInt32LE(crc32c(b.subarray(0, 16)), 16);
  return b;
}

async function readCounter(store: Store, name: string, magic: Buffer, format: FileFormat): Promise<number> {
  if (!store.list().includes(name)) return 0;
  const f = store.open(name);
  try {
    const b = await f.read(0, COUNTER_SIZE);
    // A newer release's counter is refused, not read as 0 (what a damaged one means):
    // its layout may differ, and going back a release is the operator's choice.
    const version = format.version(b);
    if (isNewer(format, version)) throw new NewerFormatError(format, name, version);
    if (b.length < COUNTER_SIZE || !b.subarray(0, 8).equals(magic) || crc32c(b.subarray(0, 16)) !== b.readUInt32LE(16)) return 0;
    return Number(b.readBigUInt64LE(8));
  } finally {
    f.close();
  }
}

/** The release point: written and synced (one write at a time) before a segment it covers is removed. */
export class ReleasePoint {
  /** Highest released seq known to be on disk. */
  durable = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly store: Store) {}

  /** The value on disk (0: none, or damaged). */
  async read(): Promise<number> {
    return readCounter(this.store, RELEASED_FILE, RELEASED_MAGIC, RELEASED_FORMAT);
  }

  /** Makes `upTo` the durable release point (if it is past it). */
  persist(upTo: number): Promise<void> {
    // A failed write of the counter must not poison the chain: the next release retries.
    this.chain = this.chain.catch(() => undefined).then(async () => {
      if (upTo <= this.durable) return;
      const b = encodeCounter(RELEASED_MAGIC, upTo);
      const created = !this.store.list().includes(RELEASED_FILE);
      const f: StoreFile = created ? this.store.create(RELEASED_FILE) : this.store.open(RELEASED_FILE);
      try {
        f.writeSync(0, b);
        await f.sync();
        if (created) await this.store.syncDir();
      } finally {
        f.close();
      }
      this.durable = Math.max(this.durable, upTo);
    });
    return this.chain;
  }
}

/** The redo point: written to the page cache after each sync round, synced with the next journal sync. */
export class RedoPoint {
  /** From the file at recovery: replay starts after it. */
  onDisk = 0;
  private marked = 0;
  private file: StoreFile | null = null;
  private unsynced = false;

  /** `created`: the file was created (the journal's folder changed). */
  constructor(private readonly store: Store, private readonly created: () => void) {}

  /** The value on disk (0: none, or damaged). */
  read(): Promise<number> {
    return readCounter(this.store, APPLIED_FILE, APPLIED_MAGIC, APPLIED_FORMAT);
  }

  /** Recovery read `value` from the file. */
  restored(value: number): void {
    this.onDisk = value;
    this.marked = value;
  }

  /** The highest value recorded (on disk or in the page cache). */
  get value(): number {
    return this.marked;
  }

  /** Records `seq` (higher than `value`), durable with the next sync. */
  mark(seq: number): void {
    this.marked = seq;
    if (!this.file) {
      if (this.store.list().includes(APPLIED_FILE)) this.file = this.store.open(APPLIED_FILE);
      else {
        this.created();
        this.file = this.store.create(APPLIED_FILE);
      }
    }
    try {
      this.file.writeSync(0, encodeCounter(APPLIED_MAGIC, seq));
      this.unsynced = true;
    } catch {
      // Disk full: the older value stays, which only means a longer replay.
    }
  }

  /** For a sync: the file, if a value was written since the last sync (then unsynced() again if that sync fails). */
  takeUnsynced(): StoreFile | null {
    const f = this.unsynced ? this.file : null;
    this.unsynced = false;
    return f;
  }

  unsyncedAgain(): void {
    this.unsynced = true;
  }

  close(): void {
    this.file?.close();
    this.file = null;
  }
}
