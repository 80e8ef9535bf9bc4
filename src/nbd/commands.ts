// The transmission phase's commands: what each one checks before the export sees it
// (flags known, the range in bigint so offset + length near 2^64 cannot wrap, what
// the export did not advertise refused here, before the backend's contract), and the
// backend call whose completion is the reply. The connection counts them in flight.
import type { Capabilities, ExportBackend } from '../export/backend.js';
import type * as C from './codec.js';
import type { Session } from './negotiation.js';
import * as P from './protocol.js';
import type { ReplyWriter } from './reply-writer.js';
import { READ_HEADROOM, sendBlockStatus, sendRead } from './structured-replies.js';
import { hostBuffers } from '../memory/owned-buffers.js';
import { MALLOC_MMAP_THRESHOLD_BYTES } from '../limits/limits.js';

const MAX_EXTENTS = 1024;
const KNOWN_FLAGS = P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_DF
  | P.NBD_CMD_FLAG_REQ_ONE | P.NBD_CMD_FLAG_FAST_ZERO;

/** What a command needs of its connection. */
export interface CommandFlow {
  /**
   * Counts `r` in flight (`bytes` toward the cap) until `done` settles; a failure is
   * replied as an NBD error, and success with the simple reply when `replyOk` (a read
   * and a block status reply themselves).
   */
  track(r: C.Request, bytes: number, done: Promise<void>, replyOk?: boolean): void;
  /** NBD_CMD_DISC: stop reading, let what is in flight finish and its replies go, then close. */
  disconnect(): void;
}

export class Commands {
  readonly backend: ExportBackend;
  private readonly caps: Capabilities;

  constructor(
    private readonly session: Session,
    private readonly replies: ReplyWriter,
    private readonly stats: { bytesRead: number },
    private readonly flow: CommandFlow,
  ) {
    this.backend = session.backend;
    this.caps = session.backend.capabilities();
  }

  /** Starts request `r` (`data`: a write's payload), or replies with the error that refuses it. */
  dispatch(r: C.Request, data: Buffer | null): void {
    const backend = this.backend;
    const type = r.type;
    if (type === P.NBD_CMD_DISC) return this.flow.disconnect();
    const replies = this.replies;
    if ((r.flags & ~KNOWN_FLAGS) !== 0) return replies.error(r, P.NBD_EINVAL, `unknown command flags 0x${r.flags.toString(16)}`);
    const end = r.offset + BigInt(r.length);
    const size = BigInt(backend.size);
    const fua = (r.flags & P.NBD_CMD_FLAG_FUA) !== 0;
    const offset = Number(r.offset); // exact whenever the range check below passes
    // What the export did not advertise is refused here, before the backend's contract.
    const caps = this.caps;
    if (fua && !caps.fua) return replies.error(r, P.NBD_EINVAL, 'FUA was not advertised for this export');
    const flow = this.flow;
    switch (type) {
      case P.NBD_CMD_READ:
        if (end > size) return replies.error(r, P.NBD_EINVAL, 'read beyond the end of the export');
        if (r.length > P.MAX_PAYLOAD) return replies.error(r, P.NBD_EINVAL, `read of ${r.length} bytes is over the maximum`);
        return flow.track(r, r.length, this.read(r, offset));
      case P.NBD_CMD_WRITE:
        if (backend.readOnly) return replies.error(r, P.NBD_EPERM, 'export is read-only');
        if (end > size) return replies.error(r, P.NBD_ENOSPC, 'write beyond the end of the export');
        return flow.track(r, r.length, backend.write(offset, data!, fua), true);
      case P.NBD_CMD_FLUSH:
        return flow.track(r, 0, backend.flush(), true);
      case P.NBD_CMD_TRIM:
        if (backend.readOnly) return replies.error(r, P.NBD_EPERM, 'export is read-only');
        if (!caps.trim) return replies.error(r, P.NBD_EINVAL, 'trim was not advertised for this export');
        if (end > size) return replies.error(r, P.NBD_EINVAL, 'trim beyond the end of the export');
        return flow.track(r, 0, backend.trim(offset, r.length, fua), true);
      case P.NBD_CMD_WRITE_ZEROES: {
        if (backend.readOnly) return replies.error(r, P.NBD_EPERM, 'export is read-only');
        if (end > size) return replies.error(r, P.NBD_ENOSPC, 'write beyond the end of the export');
        if (!caps.zero) return replies.error(r, P.NBD_EINVAL, 'write zeroes was not advertised for this export');
        if ((r.flags & P.NBD_CMD_FLAG_FAST_ZERO) !== 0 && !caps.fastZero) return replies.error(r, P.NBD_EINVAL, 'fast zero was not advertised for this export');
        const opts = {
          fua,
          mayTrim: (r.flags & P.NBD_CMD_FLAG_NO_HOLE) === 0,
          fast: (r.flags & P.NBD_CMD_FLAG_FAST_ZERO) !== 0,
        };
        return flow.track(r, 0, backend.writeZeroes(offset, r.length, opts), true);
      }
      case P.NBD_CMD_CACHE:
        if (end > size) return replies.error(r, P.NBD_EINVAL, 'cache beyond the end of the export');
        return flow.track(r, 0, backend.cache(offset, r.length), true);
      case P.NBD_CMD_BLOCK_STATUS:
        if (!this.session.allocationContext) {
          return replies.error(r, P.NBD_EINVAL, 'no meta context selected (SET_META_CONTEXT base:allocation)');
        }
        if (r.length === 0 || end > size) return replies.error(r, P.NBD_EINVAL, 'block status range is empty or beyond the end');
        return flow.track(r, 0, this.blockStatus(r, offset));
      default:
        return replies.error(r, P.NBD_EINVAL, `unknown command ${type}`);
    }
  }

  private async read(r: C.Request, offset: number): Promise<void> {
    const len = r.length;
    // A large read goes into one of the node's buffers, back once the socket has written
    // it (limits.ts HOST_BUFFERS_KEPT_BYTES); a read that failed keeps it, for the
    // collector (a backend reading in parts may still write into it).
    const owned = READ_HEADROOM + len >= MALLOC_MMAP_THRESHOLD_BYTES ? hostBuffers.take(READ_HEADROOM + len) : null;
    const buf = owned ? owned.bytes : Buffer.allocUnsafe(READ_HEADROOM + len);
    await this.backend.read(offset, buf, READ_HEADROOM, len);
    this.stats.bytesRead += len;
    sendRead(this.replies, r, buf, len, owned ? () => owned.give() : undefined);
  }

  private async blockStatus(r: C.Request, offset: number): Promise<void> {
    const one = (r.flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0;
    sendBlockStatus(this.replies, r, await this.backend.extents(offset, r.length, one ? 1 : MAX_EXTENTS));
  }
}
