// What a front end (NBD today, iSCSI next) needs from a disk, and what the disk can
// do: the contract between protocol and storage. A plain volume implements it; the
// journaled write path, the replica, a checkpoint and a drill overlay wrap one and
// implement it too. The front end asks `capabilities()` once per connection and
// advertises only what the backend does (NBD transmission flags, SCSI VPD pages);
// src/export/contract.ts checks every call against them.

export interface Extent {
  length: number;
  /** Unallocated: reads as zeros and costs no space. */
  hole: boolean;
}

export interface ZeroOptions {
  fua: boolean;
  /** The client allows deallocating (NBD: no NBD_CMD_FLAG_NO_HOLE; SCSI: UNMAP bit of WRITE SAME). */
  mayTrim: boolean;
  /** Fail with ENOTSUP rather than write zeros slowly (NBD_CMD_FLAG_FAST_ZERO). */
  fast: boolean;
}

/** What a backend can do (nbdkit's can_* queries). Fixed for the backend's life. */
export interface Capabilities {
  /** Writes, zeroes and trims are refused (a replica, a checkpoint). */
  readOnly: boolean;
  /** FLUSH makes every acknowledged write durable (false: there is nothing to flush). */
  flush: boolean;
  /** A write or zeroing may ask to be durable before it is acknowledged. */
  fua: boolean;
  /** Deallocation (NBD TRIM, SCSI UNMAP); on a replicated volume it reads back as zeros. */
  trim: boolean;
  /** Zeroing a range without sending zeros (NBD WRITE_ZEROES, SCSI WRITE SAME). */
  zero: boolean;
  /** A zeroing asked to be fast fails with ENOTSUP when it would be slow. */
  fastZero: boolean;
  /**
   * A FLUSH on any connection covers writes acknowledged on every connection to this
   * backend (one file descriptor, one journal): NBD_FLAG_CAN_MULTI_CONN, and what lets
   * a SYNCHRONIZE CACHE on iSCSI cover writes acknowledged over NBD.
   */
  multiConn: boolean;
  /** The allocation map says something (false: everything reads as data). */
  extents: boolean;
  /** Prefetching a range (NBD_CMD_CACHE) is useful. */
  cache: boolean;
  /** Block sizes in bytes: the smallest the backend can address, the best, the largest request. */
  blockSize: { minimum: number; preferred: number; maximum: number };
}

/**
 * Every offset and length arriving here has been checked against `size` by the front
 * end, so offset + length <= size < 2^53 and plain numbers are exact.
 * Methods reject with an Error whose `code` is an errno name (ENOSPC, EIO, ...).
 */
export interface ExportBackend {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly description: string;
  capabilities(): Capabilities;
  read(offset: number, into: Buffer, at: number, length: number): Promise<void>;
  /** Once it has succeeded, nothing of the backend holds `data` any more: the caller may reuse it (src/nbd/connection.ts does). */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, opts: ZeroOptions): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  cache(offset: number, length: number): Promise<void>;
  /** Allocation map of [offset, offset+length), at most `max` extents, covering from offset. */
  extents(offset: number, length: number, max: number): Promise<Extent[]>;
}

/** Errors carry the errno name the front end maps to a wire error (NBD error, SCSI sense). */
export class DiskError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The largest single request a front end may hand a backend (NBD's 32 MiB payload limit). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** The capabilities of a writable disk file or block device (one descriptor shared by every connection). */
export function diskCapabilities(readOnly: boolean): Capabilities {
  return {
    readOnly, flush: true, fua: true, trim: !readOnly, zero: !readOnly, fastZero: !readOnly, multiConn: true, extents: true, cache: true,
    blockSize: { minimum: 1, preferred: 4096, maximum: MAX_REQUEST_BYTES },
  };
}

/** A read-only view (a replica, a checkpoint): nothing to flush, nothing written. */
export function readOnlyCapabilities(extents: boolean): Capabilities {
  return {
    readOnly: true, flush: false, fua: false, trim: false, zero: false, fastZero: false, multiConn: true, extents, cache: true,
    blockSize: { minimum: 1, preferred: 4096, maximum: MAX_REQUEST_BYTES },
  };
}
