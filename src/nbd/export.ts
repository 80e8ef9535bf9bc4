// What the NBD server needs from a disk. A plain volume implements it; the
// journaled write path (journal/) wraps a volume and implements it too.

export interface Extent {
  length: number;
  /** Unallocated: reads as zeros and costs no space. */
  hole: boolean;
}

export interface ZeroOptions {
  fua: boolean;
  /** The client allows deallocating (no NBD_CMD_FLAG_NO_HOLE). */
  mayTrim: boolean;
  /** NBD_CMD_FLAG_FAST_ZERO: fail with ENOTSUP rather than write zeros slowly. */
  fast: boolean;
}

/**
 * Every offset and length arriving here has already been checked against `size`
 * by the NBD layer, so offset + length <= size < 2^53 and plain numbers are exact.
 * Methods reject with an Error whose `code` is an errno name (ENOSPC, EIO, ...).
 */
export interface ExportBackend {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly description: string;
  read(offset: number, into: Buffer, at: number, length: number): Promise<void>;
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  cache(offset: number, length: number): Promise<void>;
  /** Allocation map of [offset, offset+length), at most `max` extents, covering from offset. */
  extents(offset: number, length: number, max: number): Promise<Extent[]>;
}

/** Errors carry the errno name the NBD layer maps to a wire error. */
export class DiskError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}
