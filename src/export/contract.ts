// The checked contract between a front end and a backend (as nbdkit's server/backend.c
// checks its plugins): every call is held to the backend's size and capabilities
// before it runs, and what comes back is checked too. A front end that lets a request
// through the contract has a bug (it must refuse the client first, with a protocol
// error), so a broken rule is an assertion: the daemon stops before the request can
// reach the disk (docs/INVARIANTS.md).
import { assert } from '../invariants/assert.js';
import type { Capabilities, Extent, ExportBackend, ZeroOptions } from './backend.js';

export class CheckedBackend implements ExportBackend {
  private readonly caps: Capabilities;

  constructor(readonly inner: ExportBackend) {
    this.caps = inner.capabilities();
    const b = this.caps.blockSize;
    assert(b.minimum >= 1 && b.minimum <= b.preferred && b.preferred <= b.maximum, () => `export ${inner.name}: block sizes ${b.minimum}/${b.preferred}/${b.maximum} out of order`);
    assert(inner.readOnly === this.caps.readOnly, () => `export ${inner.name}: readOnly ${inner.readOnly} but its capabilities say ${this.caps.readOnly}`);
    assert(!this.caps.readOnly || (!this.caps.trim && !this.caps.zero && !this.caps.fastZero), () => `export ${inner.name}: read-only yet able to trim or zero`);
    assert(!this.caps.fastZero || this.caps.zero, () => `export ${inner.name}: fast zero without zero`);
    assert(Number.isSafeInteger(inner.size) && inner.size >= 0, () => `export ${inner.name}: size ${inner.size}`);
  }

  get name(): string { return this.inner.name; }
  get size(): number { return this.inner.size; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get description(): string { return this.inner.description; }
  capabilities(): Capabilities { return this.caps; }

  private range(op: string, offset: number, length: number): void {
    assert(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.inner.size,
      () => `export ${this.inner.name}: ${op} at ${offset}+${length} reached the backend outside its ${this.inner.size} bytes`);
  }

  private writable(op: string): void {
    assert(!this.caps.readOnly, () => `export ${this.inner.name}: ${op} reached a read-only backend`);
  }

  read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.range('read', offset, length);
    assert(at >= 0 && at + length <= into.length, () => `export ${this.inner.name}: read of ${length} bytes into a buffer of ${into.length} at ${at}`);
    assert(length <= this.caps.blockSize.maximum, () => `export ${this.inner.name}: read of ${length} bytes over the maximum ${this.caps.blockSize.maximum}`);
    return this.inner.read(offset, into, at, length);
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.writable('write');
    this.range('write', offset, data.length);
    assert(data.length <= this.caps.blockSize.maximum, () => `export ${this.inner.name}: write of ${data.length} bytes over the maximum ${this.caps.blockSize.maximum}`);
    assert(!fua || this.caps.fua, () => `export ${this.inner.name}: FUA asked of a backend without it`);
    return this.inner.write(offset, data, fua);
  }

  writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    this.writable('write zeroes');
    this.range('write zeroes', offset, length);
    assert(this.caps.zero, () => `export ${this.inner.name}: zeroing asked of a backend without it`);
    assert(!opts.fast || this.caps.fastZero, () => `export ${this.inner.name}: a fast zero asked of a backend without it`);
    assert(!opts.fua || this.caps.fua, () => `export ${this.inner.name}: FUA asked of a backend without it`);
    return this.inner.writeZeroes(offset, length, opts);
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.writable('trim');
    this.range('trim', offset, length);
    assert(this.caps.trim, () => `export ${this.inner.name}: trim asked of a backend without it`);
    assert(!fua || this.caps.fua, () => `export ${this.inner.name}: FUA asked of a backend without it`);
    return this.inner.trim(offset, length, fua);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  cache(offset: number, length: number): Promise<void> {
    this.range('cache', offset, length);
    return this.inner.cache(offset, length);
  }

  async extents(offset: number, length: number, max: number): Promise<Extent[]> {
    this.range('extents', offset, length);
    assert(length > 0 && max >= 1, () => `export ${this.inner.name}: extents of ${length} bytes, at most ${max}`);
    const out = await this.inner.extents(offset, length, max);
    // Postcondition: at least one extent, each non-empty, covering from offset and no further than asked.
    let total = 0;
    for (const e of out) {
      assert(e.length > 0, () => `export ${this.inner.name}: an empty extent at ${offset + total}`);
      total += e.length;
    }
    assert(out.length >= 1 && out.length <= max && total <= length, () => `export ${this.inner.name}: ${out.length} extents of ${total} bytes for ${length} bytes, at most ${max}`);
    return out;
  }
}
