// A segment read front to back in large reads (recovery's scan): each read() is a view
// of one buffer, valid until the next read(). Positions only move forward in a scan, and
// a read past what is buffered refills from that position.
import type { StoreFile } from '../store/store.js';
import { RECOVERY_READ_BYTES } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

export class ScanReader {
  /** The buffer the chunks are read into, reused. */
  private readonly room: Buffer;
  /** What the last refill read, and the file position of its first byte. */
  private view: Buffer;
  private at = 0;
  private file: StoreFile | null = null;

  constructor(chunk = RECOVERY_READ_BYTES) {
    assert(chunk > 0, 'a scan reads at least a byte at a time');
    this.room = Buffer.allocUnsafe(chunk);
    this.view = this.room.subarray(0, 0);
  }

  /** Scan `file` from here on: nothing of the last one stays buffered. */
  start(file: StoreFile): void {
    this.file = file;
    this.view = this.room.subarray(0, 0);
    this.at = 0;
  }

  /** Up to `length` bytes at `position` (short only at the end of the file). */
  async read(position: number, length: number): Promise<Buffer> {
    const file = this.file;
    assert(file !== null, 'a scan reads a file it started');
    assert(position >= 0 && length >= 0, () => `scan read ${length} at ${position}`);
    const from = position - this.at;
    if (from >= 0 && from + length <= this.view.length) return this.view.subarray(from, from + length);
    if (from >= 0 && from <= this.view.length && this.at + this.view.length >= file.size()) {
      return this.view.subarray(from, this.view.length); // the end of the file is buffered: short, as file.read is
    }
    // A record larger than the chunk gets a buffer of its own (it is checked and dropped).
    const into = length > this.room.length ? Buffer.allocUnsafe(length) : this.room;
    const got = await file.read(position, into.length, into);
    this.view = got;
    this.at = position;
    return got.subarray(0, Math.min(length, got.length));
  }
}
