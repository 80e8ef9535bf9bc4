// Replies of the transmission phase as they leave on the socket: corked per turn of
// the event loop, counted, and the reader paused when they pile up unread. Simple
// replies, error replies (an error chunk where structured replies are on and the
// command takes one), and a backend's failure turned into an NBD error.
import type { Socket } from 'node:net';
import type { Logger } from '../log/log.js';
import { DiskError } from '../export/backend.js';
import * as C from './codec.js';
import * as P from './protocol.js';

/** Replies waiting for a slow reader past this many bytes stop this side reading the socket. */
export const MAX_UNSENT_REPLY_BYTES = 32 * 1024 * 1024;

export class ReplyWriter {
  /** Structured replies were negotiated (set when the transmission phase starts). */
  structured = false;
  /** The connection closed: nothing more is written. */
  closed = false;
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** `backlogged`: replies pile up unread past MAX_UNSENT_REPLY_BYTES (the connection pauses its reading). */
  constructor(
    private readonly socket: Socket,
    private readonly log: Logger,
    private readonly peer: string,
    private readonly stats: { bytesWritten: number },
    private readonly backlogged: () => void,
  ) {}

  /**
   * Replies completed in one turn of the event loop leave in one writev: the socket
   * is corked at the first reply and uncorked in the check phase, after every I/O
   * callback of this turn has run. One syscall per reply was the top cost at QD32.
   */
  /** `done`: called once the socket no longer holds `b` (written, or dropped with the connection). */
  send(b: Buffer, done?: () => void): void {
    if (this.closed) {
      done?.();
      return;
    }
    this.stats.bytesWritten += b.length;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    if (done) this.socket.write(b, () => done());
    else this.socket.write(b);
    if (this.socket.writableLength > MAX_UNSENT_REPLY_BYTES) this.backlogged();
  }

  /** The chunks `write` sends leave together (one reply in several chunks). */
  together(write: () => void): void {
    this.socket.cork();
    write();
    this.socket.uncork();
  }

  ok(r: C.Request): void {
    this.send(C.encodeSimpleReply(0, r.handle));
  }

  error(r: C.Request, error: number, message: string): void {
    this.log.debug({ peer: this.peer }, `NBD ${P.commandName[r.type] ?? r.type} from ${this.peer}: ${message}`);
    const structuredOnly = r.type === P.NBD_CMD_READ || r.type === P.NBD_CMD_BLOCK_STATUS;
    if (this.structured && structuredOnly) this.send(C.encodeErrorChunk(r.handle, error, message));
    else this.send(C.encodeSimpleReply(error, r.handle));
  }

  /** A backend's failure: its errno as the NBD error (EIO also logged, naming the export). */
  failure(r: C.Request, e: unknown, exportName: string | undefined): void {
    const code = e instanceof DiskError || (e as NodeJS.ErrnoException)?.code ? (e as { code: string }).code : 'EIO';
    const message = e instanceof Error ? e.message : String(e);
    const error = errnoToNbd(code);
    if (error === P.NBD_EIO) this.log.error({ export: exportName }, `I/O error: ${message}`);
    this.error(r, error, message);
  }
}

export function errnoToNbd(code: string): number {
  switch (code) {
    case 'ENOSPC': case 'EDQUOT': case 'EFBIG': return P.NBD_ENOSPC;
    case 'EPERM': case 'EROFS': case 'EACCES': return P.NBD_EPERM;
    case 'EINVAL': return P.NBD_EINVAL;
    case 'ENOTSUP': case 'EOPNOTSUPP': return P.NBD_ENOTSUP;
    case 'ENOMEM': return P.NBD_ENOMEM;
    case 'ESHUTDOWN': return P.NBD_ESHUTDOWN;
    default: return P.NBD_EIO;
  }
}
