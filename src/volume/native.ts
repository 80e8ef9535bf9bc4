// The Linux file calls Node.js does not expose, from native/offsite_fs.c.
import { createRequire } from 'node:module';

export interface NativeFs {
  /** fallocate(2) on the thread pool. Rejects with err.code = errno name. */
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  /** lseek(2) with SEEK_DATA/SEEK_HOLE; resolves -1 on ENXIO (no more data). */
  seek(fd: number, offset: number, whence: number): Promise<number>;
  fadvise(fd: number, offset: number, length: number, advice: number): Promise<void>;
  /** Size of a block device (BLKGETSIZE64) or a regular file; -1 on error. */
  deviceSize(fd: number): number;
  /** flock(LOCK_EX|LOCK_NB); false when another process holds it. */
  lock(fd: number): boolean;
  /** preadv2(RWF_NOWAIT), synchronous: bytes read, -1 if it would block, -2 if unsupported. */
  preadNoWait(fd: number, buf: Buffer, at: number, length: number, position: number): number;
  /** pwritev2(RWF_NOWAIT), synchronous: bytes written, -1 if it would block, -2 if unsupported. */
  pwriteNoWait(fd: number, buf: Buffer, at: number, length: number, position: number): number;
  /**
   * glibc mallopt: buffers of at least `mmapThreshold` bytes are mmapped (freed, they
   * leave RSS at once), at most `arenas` malloc arenas. False where it is not glibc.
   * Optional: an addon built before it lacks it.
   */
  tuneAllocator?(mmapThreshold: number, arenas: number): boolean;
  /**
   * pwrite(2) of each buffer whole at its position, in order, in one thread-pool job;
   * resolves with 0 or the errno of each. Optional: an addon built before it lacks it.
   * This and the two below keep their buffers alive through one reference to each array
   * (native/offsite_fs.c): the caller makes the arrays for the call and never changes
   * them, nor transfers a buffer in them, until the job ends.
   */
  pwriteBatch?(fd: number, bufs: Buffer[], positions: number[]): Promise<number[]>;
  /**
   * pwritev(2) of `parts` back to back at `headPosition` of `headFd`, whole, then
   * pwriteBatch's writes, in one thread-pool job: resolves with the first write's 0 or
   * errno, then each following write's 0, errno, or -1 (not tried: the first failed).
   * Optional: an addon built before it lacks it.
   */
  pwritevThen?(headFd: number, headPosition: number, parts: Buffer[], fd: number, bufs: Buffer[], positions: number[]): Promise<number[]>;
  /**
   * pwritevThen with the first write through `directFd` (opened O_DIRECT): `prefix` (the
   * bytes of headPosition's 4 KiB block before it) and `parts`, padded with zeros to a
   * whole block; `bufs` may be empty. Optional: an addon built before it lacks it.
   */
  pwritevDirectThen?(directFd: number, headPosition: number, prefix: Buffer, parts: Buffer[], fd: number, bufs: Buffer[],
    positions: number[]): Promise<number[]>;
  /**
   * CRC32C of `data` continuing `initial` (as @node-rs/crc32's), with the SSE4.2
   * instruction (native/crc32c.c); src/checksum/crc32c.ts picks it where crc32cHardware.
   * Optional: an addon built before it lacks it.
   */
  crc32c?(data: Uint8Array, initial?: number): number;
  /** This CPU has the instruction crc32c uses (without it, crc32c computes byte by byte). */
  crc32cHardware?(): boolean;
}

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const POSIX_FADV_WILLNEED = 3;

const require = createRequire(import.meta.url);
export const nativeFs: NativeFs = require('../../../native/build/Release/offsite_fs.node') as NativeFs;
