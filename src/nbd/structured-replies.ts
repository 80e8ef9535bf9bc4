// The replies that carry data: a read's (a simple reply, or with structured replies
// one data chunk, or data and hole chunks where whole 4 KiB blocks are zero) and a
// block status's extents of base:allocation.
import type { Extent } from '../export/backend.js';
import * as C from './codec.js';
import * as P from './protocol.js';
import type { ReplyWriter } from './reply-writer.js';

/** Bytes reserved in front of read data for a reply header (20-byte chunk header + u64 offset). */
export const READ_HEADROOM = 28;
const ZERO_BLOCK = 4096;
const ZEROES = Buffer.alloc(ZERO_BLOCK);

/**
 * Sends the reply to read `r` whose `len` bytes of data are in `buf` from READ_HEADROOM.
 * `done`: called once the socket no longer holds `buf` (its last write of it ended).
 */
export function sendRead(w: ReplyWriter, r: C.Request, buf: Buffer, len: number, done?: () => void): void {
  if (!w.structured) {
    C.writeSimpleReply(buf, READ_HEADROOM - 16, 0, r.handle);
    return w.send(buf.subarray(READ_HEADROOM - 16), done);
  }
  if (len === 0) {
    done?.();
    return w.send(C.encodeChunk(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_NONE, r.handle));
  }
  const df = (r.flags & P.NBD_CMD_FLAG_DF) !== 0;
  const runs = df ? null : zeroRuns(buf, READ_HEADROOM, len);
  if (runs === null) {
    C.writeChunkHeader(buf, 0, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_OFFSET_DATA, r.handle, 8 + len);
    buf.writeBigUInt64BE(r.offset, 20);
    return w.send(buf, done);
  }
  // (The socket's writes end in order: the last one sent ends after every view of buf before it.)
  const last = runs.length - 1;
  // Mixed data and zeros: data chunks and hole chunks, DONE on the last.
  w.together(() => runs.forEach((run, i) => {
    const flags = i === runs.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
    const at = r.offset + BigInt(run.start);
    if (run.zero) {
      w.send(C.encodeOffsetHole(flags, r.handle, at, run.length), i === last ? done : undefined);
    } else {
      const h = Buffer.allocUnsafe(28);
      C.writeChunkHeader(h, 0, flags, P.NBD_REPLY_TYPE_OFFSET_DATA, r.handle, 8 + run.length);
      h.writeBigUInt64BE(at, 20);
      w.send(h);
      w.send(buf.subarray(READ_HEADROOM + run.start, READ_HEADROOM + run.start + run.length), i === last ? done : undefined);
    }
  }));
}

/** Sends the reply to block status `r`: the first extent only with REQ_ONE. */
export function sendBlockStatus(w: ReplyWriter, r: C.Request, extents: Extent[]): void {
  const one = (r.flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0;
  const list = (one ? extents.slice(0, 1) : extents).map((e) => ({
    length: e.length,
    flags: e.hole ? P.NBD_STATE_HOLE | P.NBD_STATE_ZERO : 0,
  }));
  w.send(C.encodeBlockStatus(P.NBD_REPLY_FLAG_DONE, r.handle, P.BASE_ALLOCATION_ID, list));
}

interface Run {
  start: number;
  length: number;
  zero: boolean;
}

/**
 * Splits read data into runs of data and all-zero 4 KiB blocks. Returns null when
 * there is no zero run (the common case), so the data goes as one chunk.
 */
function zeroRuns(buf: Buffer, base: number, len: number): Run[] | null {
  if (len < ZERO_BLOCK) return null;
  const runs: Run[] = [];
  let anyZero = false;
  for (let at = 0; at < len; at += ZERO_BLOCK) {
    const n = Math.min(ZERO_BLOCK, len - at);
    const zero = n === ZERO_BLOCK && ZEROES.compare(buf, base + at, base + at + n) === 0;
    anyZero ||= zero;
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += n;
    else runs.push({ start: at, length: n, zero });
  }
  return anyZero ? runs : null;
}
