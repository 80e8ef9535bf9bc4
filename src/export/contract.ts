// The checked contract between a front end and a backend (as nbdkit's server/backend.c
// checks its plugins): every call is held to the backend's size and capabilities
// before it runs, and what comes back is checked too. A front end that lets a request
// through the contract has a bug (it must refuse the client first, with a protocol
// error), so a broken rule is an assertion: the daemon stops before the request can
// reach the disk (docs/INVARIANTS.md).
import { assert } from '../invariants/assert.js';

/** A broken rule of the contract (the condition is tested at the call site: no closure is made per request). */
function broken(message: string): never {
  assert(false, message);
}
import type { Capabilities, Extent, ExportBackend, ZeroOptions } from './backend.js';

export class CheckedBackend implements ExportBackend {
  private readonly caps: Capabilities;

  constructor(readonly inner: ExportBackend) {
    this.caps = inner.capabilities();
    const b = this.caps.blockSize;
    if (!(b.minimum >= 1 && b.minimum <= b.preferred && b.preferred <= b.maximum)) {
      broken(`export ${inner.name}: block sizes ${b.minimum}/${b.preferred}/${b.maximum} out of order`);
    }
    if (!(inner.readOnly === this.caps.readOnly)) broken(`export ${inner.name}: readOnly ${inner.readOnly} but its capabilities say ${this.caps.readOnly}`);
    if (!(!this.caps.readOnly || (!this.caps.trim && !this.caps.zero && !this.caps.fastZero))) {
      broken(`export ${inner.name}: read-only yet able to trim or zero`);
    }
    if (!(!this.caps.fastZero || this.caps.zero)) broken(`export ${inner.name}: fast zero without zero`);
    if (!(Number.isSafeInteger(inner.size) && inner.size >= 0)) broken(`export ${inner.name}: size ${inner.size}`);
  }

  get name(): string { return this.inner.name; }
  get size(): number { return this.inner.size; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get description(): string { return this.inner.description; }
  capabilities(): Capabilities { return this.caps; }

  private range(op: string, offset: number, length: number): void {
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.inner.size)) {
      broken(`export ${this.inner.name}: ${op} at ${offset}+${length} reached the backend outside its ${this.inner.size} bytes`);
    }
  }

  private writable(op: string): void {
    if (this.caps.readOnly) broken(`export ${this.inner.name}: ${op} reached a read-only backend`);
  }

  read(offset: number, into: Buffer, at: number, length: number): Promise<void> {
    this.range('read', offset, length);
    if (!(at >= 0 && at + length <= into.length)) broken(`export ${this.inner.name}: read of ${length} bytes into a buffer of ${into.length} at ${at}`);
    if (!(length <= this.caps.blockSize.maximum)) broken(`export ${this.inner.name}: read of ${length} bytes over the maximum ${this.caps.blockSize.maximum}`);
    return this.inner.read(offset, into, at, length);
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.writable('write');
    this.range('write', offset, data.length);
    if (!(data.length <= this.caps.blockSize.maximum)) {
      broken(`export ${this.inner.name}: write of ${data.length} bytes over the maximum ${this.caps.blockSize.maximum}`);
    }
    if (!(!fua || this.caps.fua)) broken(`export ${this.inner.name}: FUA asked of a backend without it`);
    return this.inner.write(offset, data, fua);
  }

  writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    this.writable('write zeroes');
    this.range('write zeroes', offset, length);
    if (!(this.caps.zero)) broken(`export ${this.inner.name}: zeroing asked of a backend without it`);
    if (!(!opts.fast || this.caps.fastZero)) broken(`export ${this.inner.name}: a fast zero asked of a backend without it`);
    if (!(!opts.fua || this.caps.fua)) broken(`export ${this.inner.name}: FUA asked of a backend without it`);
    return this.inner.writeZeroes(offset, length, opts);
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.writable('trim');
    this.range('trim', offset, length);
    if (!(this.caps.trim)) broken(`export ${this.inner.name}: trim asked of a backend without it`);
    if (!(!fua || this.caps.fua)) broken(`export ${this.inner.name}: FUA asked of a backend without it`);
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
    if (!(length > 0 && max >= 1)) broken(`export ${this.inner.name}: extents of ${length} bytes, at most ${max}`);
    const out = await this.inner.extents(offset, length, max);
    // Postcondition: at least one extent, each non-empty, covering from offset and no further than asked.
    let total = 0;
    for (const e of out) {
      if (!(e.length > 0)) broken(`export ${this.inner.name}: an empty extent at ${offset + total}`);
      total += e.length;
    }
    if (!(out.length >= 1 && out.length <= max && total <= length)) {
      broken(`export ${this.inner.name}: ${out.length} extents of ${total} bytes for ${length} bytes, at most ${max}`);
    }
    return out;
  }
}
