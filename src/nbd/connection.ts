// One client connection: the handshake, then the transmission phase with many
// requests in flight, replies in completion order, and bounded memory.
import type { Socket } from 'node:net';
import type { Logger } from '../log/log.js';
import { ByteQueue } from './byte-queue.js';
import * as C from './codec.js';
import { DiskError, type ExportBackend, type Capabilities } from '../export/backend.js';
import { Negotiation, type ExportTable, type Session } from './negotiation.js';
import * as P from './protocol.js';
import { RequestBudget, type BudgetWaiter } from './budget.js';

/** Per-connection limits: past either one we stop reading the socket until replies drain. */
export const MAX_IN_FLIGHT = 128;
export const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
const MAX_UNSENT_REPLY_BYTES = 32 * 1024 * 1024;
/**
 * From the accept to the transmission phase. A deadline, not an idle timer: real
 * clients finish the handshake in milliseconds, and a connection parked before it
 * holds a descriptor and a slot of the connection caps for nothing.
 */
export const NBD_HANDSHAKE_TIMEOUT_MS = 30_000;
const MAX_OPTIONS = 1024;
const MAX_EXTENTS = 1024;
const ZERO_BLOCK = 4096;
const ZEROES = Buffer.alloc(ZERO_BLOCK);
/** Bytes reserved in front of read data for a reply header (20-byte chunk header + u64 offset). */
const READ_HEADROOM = 28;

const KNOWN_FLAGS = P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_DF
  | P.NBD_CMD_FLAG_REQ_ONE | P.NBD_CMD_FLAG_FAST_ZERO;

type Phase = 'greeting' | 'options' | 'option-data' | 'option-skip' | 'header' | 'payload' | 'discard' | 'closing';

/** What connections share, from the server. */
export interface ConnectionLimits {
  /** Node-wide bytes of write payloads held (src/nbd/budget.ts). */
  budget: RequestBudget;
  handshakeTimeoutMs: number;
  /** Logs a disconnection the limits made (once per kind and address, then counted); absent: a warning each. */
  report?: (c: NbdConnection, kind: string, reason: string) => void;
}

export interface ConnectionStats {
  requests: number;
  bytesRead: number;
  bytesWritten: number;
}

export class NbdConnection {
  private readonly queue = new ByteQueue();
  private phase: Phase = 'greeting';
  private negotiation: Negotiation | null = null;
  private session: Session | null = null;
  private backend: ExportBackend | null = null;
  private caps: Capabilities | null = null;
  private clientNoZeroes = false;
  private options = 0;
  private pendingOption = 0;
  private pendingLength = 0;
  private pendingRequest: C.Request | null = null;
  private inFlight = 0;
  private inFlightBytes = 0;
  private paused = false;
  /** The current write's payload waits for the node's request budget; the socket is not read meanwhile. */
  private budgetWait: BudgetWaiter | null = null;
  /** Budget bytes held for the payload being received (released once the disk has it, or at close). */
  private payloadHeld = 0;
  /** Budget bytes of the request being dispatched, handed to track() (0: not budgeted). */
  private dispatchHeld = 0;
  /** The last time bytes came in, or this side started reading again after a pause (ms). */
  lastActivityAt = Date.now();
  private disconnecting = false;
  private closed = false;
  private readonly drained: Array<() => void> = [];
  private handshakeTimer: NodeJS.Timeout | null;
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
  readonly stats: ConnectionStats = { requests: 0, bytesRead: 0, bytesWritten: 0 };

  constructor(
    private readonly socket: Socket,
    private readonly exports: ExportTable,
    private readonly log: Logger,
    readonly peer: string,
    private readonly onClose: (c: NbdConnection) => void,
    private readonly limits: ConnectionLimits = { budget: new RequestBudget(), handshakeTimeoutMs: NBD_HANDSHAKE_TIMEOUT_MS },
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.lastActivityAt = Date.now();
      this.maybeResume();
    });
    socket.on('error', (err) => this.log.debug({ peer }, `NBD client ${peer}: ${err.message}`));
    socket.on('close', () => this.finish());
    this.handshakeTimer = setTimeout(() => {
      const reason = `did not finish the handshake within ${limits.handshakeTimeoutMs / 1000} s`;
      limits.report?.(this, 'handshake timeout', reason);
      this.abort(reason, !limits.report);
    }, limits.handshakeTimeoutMs);
    socket.write(C.encodeGreeting());
  }

  get exportName(): string | null {
    return this.backend?.name ?? null;
  }

  /**
   * How long a write's payload has been stalled: the client sent part of it and
   * nothing since, while this side was reading (ms; 0: not in that state). Such a
   * connection holds budget bytes that others may be waiting for.
   */
  stalledPayloadMs(now: number): number {
    if (this.phase !== 'payload' || this.payloadHeld === 0 || this.paused || this.budgetWait || this.disconnecting || this.closed) return 0;
    return now - this.lastActivityAt;
  }

  /** Bytes of the write whose payload is being received (0: none). */
  get payloadBytes(): number {
    return this.payloadHeld;
  }

  /**
   * How long the connection has been idle in the transmission phase: nothing in
   * flight, nothing received, nothing drained (ms; 0: busy, or still in the handshake,
   * which has its own deadline).
   */
  idleMs(now: number): number {
    if (this.session === null || this.inFlight > 0 || this.budgetWait || this.disconnecting || this.closed) return 0;
    return now - this.lastActivityAt;
  }

  /** Closes the connection at once (the server's limits); `log`: with a warning that says why (else the caller logs). */
  cut(reason: string, log = true): void {
    this.abort(reason, log);
  }

  /** Stops taking requests, lets in-flight ones finish and their replies go out, then closes. */
  shutdown(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.phase !== 'header' && this.phase !== 'payload' && this.phase !== 'discard') {
      this.socket.destroy();
      return Promise.resolve();
    }
    this.disconnecting = true;
    this.socket.pause();
    return this.whenIdle().then(() => this.endGracefully());
  }

  /** Half-closes, gives the client a moment to read the last replies, then closes for good. */
  private endGracefully(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      // A paused, half-closed socket does not keep Node's event loop alive; this timer does.
      const timer = setTimeout(() => this.socket.destroy(), 2000);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  private whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.phase = 'closing';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.queue.clear();
    // A payload cut short never reaches the disk: its bytes go back to the budget now
    // (writes already dispatched give theirs back when the disk is done with them).
    if (this.budgetWait) this.limits.budget.cancel(this.budgetWait);
    this.budgetWait = null;
    if (this.payloadHeld > 0) this.limits.budget.release(this.payloadHeld);
    this.payloadHeld = 0;
    this.onClose(this);
  }

  private abort(reason: string, log = true): void {
    if (this.closed) return;
    if (log) this.log.warn({ peer: this.peer }, `NBD client ${this.peer} disconnected: ${reason}`);
    this.phase = 'closing';
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'closing' || this.disconnecting) return;
    this.lastActivityAt = Date.now();
    this.queue.push(chunk);
    this.pump();
  }

  private pump(): void {
    while (!this.paused && !this.budgetWait && !this.disconnecting) {
      switch (this.phase) {
        case 'greeting': {
          if (this.queue.length < 4) return;
          const flags = this.queue.take(4).readUInt32BE(0);
          const known = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES;
          if ((flags & ~known) !== 0) return this.abort(`sent unknown client flags 0x${flags.toString(16)}`);
          if ((flags & P.NBD_FLAG_C_FIXED_NEWSTYLE) === 0) {
            return this.abort('does not speak fixed newstyle (the only handshake Offsite offers)');
          }
          this.clientNoZeroes = (flags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
          this.negotiation = new Negotiation(this.exports, this.clientNoZeroes);
          this.phase = 'options';
          break;
        }
        case 'options': {
          if (this.queue.length < P.OPTION_HEADER_SIZE) return;
          const h = C.decodeOptionHeader(this.queue.take(P.OPTION_HEADER_SIZE));
          if (h.magic !== P.IHAVEOPT) return this.abort('sent an option without the IHAVEOPT magic');
          if (++this.options > MAX_OPTIONS) return this.abort(`sent more than ${MAX_OPTIONS} options`);
          this.pendingOption = h.option;
          this.pendingLength = h.length;
          this.phase = h.length > P.MAX_OPTION_LENGTH ? 'option-skip' : 'option-data';
          break;
        }
        case 'option-skip': {
          this.pendingLength -= this.queue.skip(this.pendingLength);
          if (this.pendingLength > 0) return;
          if (this.pendingOption === P.NBD_OPT_EXPORT_NAME) return this.abort('sent an export name too long to be one');
          this.socket.write(C.encodeOptionError(this.pendingOption, P.NBD_REP_ERR_TOO_BIG,
            `option data longer than ${P.MAX_OPTION_LENGTH} bytes`));
          this.phase = 'options';
          break;
        }
        case 'option-data': {
          if (this.queue.length < this.pendingLength) return;
          const data = this.queue.take(this.pendingLength);
          const step = this.negotiation!.handle(this.pendingOption, data);
          for (const r of step.replies) this.socket.write(r);
          if (step.kind === 'close') {
            this.log.debug({ peer: this.peer }, `NBD client ${this.peer}: ${step.reason}`);
            if (step.replies.length > 0) this.socket.end();
            else this.abort(step.reason);
            this.phase = 'closing';
            return;
          }
          if (step.kind === 'transmission') this.startTransmission(step.session);
          else this.phase = 'options';
          break;
        }
        case 'header': {
          if (this.queue.length < P.REQUEST_SIZE) return;
          const r = C.decodeRequest(this.queue.take(P.REQUEST_SIZE));
          if (r.magic !== P.REQUEST_MAGIC) {
            return this.abort(`sent a request with bad magic 0x${r.magic.toString(16)}; the stream cannot be trusted`);
          }
          this.stats.requests++;
          if (r.type === P.NBD_CMD_WRITE) {
            if (r.length > P.MAX_PAYLOAD) {
              this.pendingRequest = r;
              this.pendingLength = r.length;
              this.phase = 'discard';
              break;
            }
            this.pendingRequest = r;
            this.phase = 'payload';
            if (r.length > 0) this.reserve(r.length);
            break;
          }
          this.dispatch(r, null);
          break;
        }
        case 'payload': {
          const r = this.pendingRequest!;
          if (this.queue.length < r.length) return;
          const data = this.queue.take(r.length);
          this.pendingRequest = null;
          this.phase = 'header';
          // The payload is a view of the received buffers: its bytes stay held until the
          // disk has them (track() takes them over), or go back at once if refused.
          this.dispatchHeld = this.payloadHeld;
          this.payloadHeld = 0;
          this.dispatch(r, data);
          if (this.dispatchHeld > 0) this.limits.budget.release(this.dispatchHeld);
          this.dispatchHeld = 0;
          break;
        }
        case 'discard': {
          this.pendingLength -= this.queue.skip(this.pendingLength);
          if (this.pendingLength > 0) return;
          const r = this.pendingRequest!;
          this.pendingRequest = null;
          this.phase = 'header';
          this.replyError(r, P.NBD_EINVAL, `write of ${r.length} bytes is over the ${P.MAX_PAYLOAD}-byte maximum`);
          break;
        }
        case 'closing':
          return;
      }
    }
  }

  /**
   * Takes the payload's bytes from the node's budget before reading it. If they are
   * not free, the socket is not read (the client's bytes wait in the kernel) until
   * other connections give theirs back.
   */
  private reserve(bytes: number): void {
    const w = this.limits.budget.take(bytes, () => {
      if (this.closed) {
        this.limits.budget.release(bytes);
        return;
      }
      this.budgetWait = null;
      this.payloadHeld = bytes;
      this.lastActivityAt = Date.now();
      if (!this.paused) this.socket.resume();
      this.pump();
    });
    if (w === null) {
      this.payloadHeld = bytes;
      return;
    }
    this.budgetWait = w;
    this.socket.pause();
    this.log.debug({ peer: this.peer }, `NBD client ${this.peer}: a ${bytes}-byte write waits for the node's request budget (${this.limits.budget.used} of ${this.limits.budget.limit} bytes held)`);
  }

  private startTransmission(session: Session): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.session = session;
    this.backend = session.backend;
    this.caps = session.backend.capabilities();
    this.phase = 'header';
    this.log.debug({ peer: this.peer, export: session.backend.name }, `NBD client ${this.peer} opened export ${session.backend.name}`);
  }

  // --- transmission -------------------------------------------------------

  private dispatch(r: C.Request, data: Buffer | null): void {
    const backend = this.backend!;
    const type = r.type;
    if (type === P.NBD_CMD_DISC) {
      this.disconnecting = true;
      this.socket.pause();
      void this.whenIdle().then(() => this.endGracefully());
      return;
    }
    if ((r.flags & ~KNOWN_FLAGS) !== 0) return this.replyError(r, P.NBD_EINVAL, `unknown command flags 0x${r.flags.toString(16)}`);
    const end = r.offset + BigInt(r.length);
    const size = BigInt(backend.size);
    const fua = (r.flags & P.NBD_CMD_FLAG_FUA) !== 0;
    const offset = Number(r.offset); // exact whenever the range check below passes
    // What the export did not advertise is refused here, before the backend's contract.
    const caps = this.caps!;
    if (fua && !caps.fua) return this.replyError(r, P.NBD_EINVAL, 'FUA was not advertised for this export');
    switch (type) {
      case P.NBD_CMD_READ:
        if (end > size) return this.replyError(r, P.NBD_EINVAL, 'read beyond the end of the export');
        if (r.length > P.MAX_PAYLOAD) return this.replyError(r, P.NBD_EINVAL, `read of ${r.length} bytes is over the maximum`);
        return this.track(r, r.length, this.read(r, offset));
      case P.NBD_CMD_WRITE:
        if (backend.readOnly) return this.replyError(r, P.NBD_EPERM, 'export is read-only');
        if (end > size) return this.replyError(r, P.NBD_ENOSPC, 'write beyond the end of the export');
        return this.track(r, r.length, backend.write(offset, data!, fua).then(() => this.replyOk(r)));
      case P.NBD_CMD_FLUSH:
        return this.track(r, 0, backend.flush().then(() => this.replyOk(r)));
      case P.NBD_CMD_TRIM:
        if (backend.readOnly) return this.replyError(r, P.NBD_EPERM, 'export is read-only');
        if (!caps.trim) return this.replyError(r, P.NBD_EINVAL, 'trim was not advertised for this export');
        if (end > size) return this.replyError(r, P.NBD_EINVAL, 'trim beyond the end of the export');
        return this.track(r, 0, backend.trim(offset, r.length, fua).then(() => this.replyOk(r)));
      case P.NBD_CMD_WRITE_ZEROES: {
        if (backend.readOnly) return this.replyError(r, P.NBD_EPERM, 'export is read-only');
        if (end > size) return this.replyError(r, P.NBD_ENOSPC, 'write beyond the end of the export');
        if (!caps.zero) return this.replyError(r, P.NBD_EINVAL, 'write zeroes was not advertised for this export');
        if ((r.flags & P.NBD_CMD_FLAG_FAST_ZERO) !== 0 && !caps.fastZero) return this.replyError(r, P.NBD_EINVAL, 'fast zero was not advertised for this export');
        const opts = {
          fua,
          mayTrim: (r.flags & P.NBD_CMD_FLAG_NO_HOLE) === 0,
          fast: (r.flags & P.NBD_CMD_FLAG_FAST_ZERO) !== 0,
        };
        return this.track(r, 0, backend.writeZeroes(offset, r.length, opts).then(() => this.replyOk(r)));
      }
      case P.NBD_CMD_CACHE:
        if (end > size) return this.replyError(r, P.NBD_EINVAL, 'cache beyond the end of the export');
        return this.track(r, 0, backend.cache(offset, r.length).then(() => this.replyOk(r)));
      case P.NBD_CMD_BLOCK_STATUS:
        if (!this.session!.allocationContext) {
          return this.replyError(r, P.NBD_EINVAL, 'no meta context selected (SET_META_CONTEXT base:allocation)');
        }
        if (r.length === 0 || end > size) return this.replyError(r, P.NBD_EINVAL, 'block status range is empty or beyond the end');
        return this.track(r, 0, this.blockStatus(r, offset));
      default:
        return this.replyError(r, P.NBD_EINVAL, `unknown command ${type}`);
    }
  }

  /** Counts a request in flight, applies backpressure, and turns failures into NBD errors. */
  private track(r: C.Request, bytes: number, p: Promise<void>): void {
    this.inFlight++;
    this.inFlightBytes += bytes;
    const held = this.dispatchHeld; // a write's budget bytes, given back when the disk is done
    this.dispatchHeld = 0;
    if (this.inFlight >= MAX_IN_FLIGHT || this.inFlightBytes >= MAX_IN_FLIGHT_BYTES) this.pause();
    p.catch((e: unknown) => this.replyFailure(r, e)).finally(() => {
      if (held > 0) this.limits.budget.release(held);
      this.inFlight--;
      this.inFlightBytes -= bytes;
      this.maybeResume();
      if (this.inFlight === 0) for (const f of this.drained.splice(0)) f();
    });
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  private maybeResume(): void {
    if (!this.paused || this.closed || this.disconnecting) return;
    if (this.inFlight >= MAX_IN_FLIGHT || this.inFlightBytes >= MAX_IN_FLIGHT_BYTES) return;
    if (this.socket.writableLength > MAX_UNSENT_REPLY_BYTES) return;
    this.paused = false;
    this.lastActivityAt = Date.now(); // time this side did not read is not the client's stall
    if (this.budgetWait) return; // still waiting for the budget: not read until it is granted
    this.socket.resume();
    this.pump();
  }

  /**
   * Replies completed in one turn of the event loop leave in one writev: the socket
   * is corked at the first reply and uncorked in the check phase, after every I/O
   * callback of this turn has run. One syscall per reply was the top cost at QD32.
   */
  private send(b: Buffer): void {
    if (this.closed) return;
    this.stats.bytesWritten += b.length;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    this.socket.write(b);
    if (this.socket.writableLength > MAX_UNSENT_REPLY_BYTES) this.pause();
  }

  private replyOk(r: C.Request): void {
    this.send(C.encodeSimpleReply(0, r.handle));
  }

  private replyError(r: C.Request, error: number, message: string): void {
    this.log.debug({ peer: this.peer }, `NBD ${P.commandName[r.type] ?? r.type} from ${this.peer}: ${message}`);
    const structuredOnly = r.type === P.NBD_CMD_READ || r.type === P.NBD_CMD_BLOCK_STATUS;
    if (this.session?.structured && structuredOnly) this.send(C.encodeErrorChunk(r.handle, error, message));
    else this.send(C.encodeSimpleReply(error, r.handle));
  }

  private replyFailure(r: C.Request, e: unknown): void {
    const code = e instanceof DiskError || (e as NodeJS.ErrnoException)?.code ? (e as { code: string }).code : 'EIO';
    const message = e instanceof Error ? e.message : String(e);
    const error = errnoToNbd(code);
    if (error === P.NBD_EIO) this.log.error({ export: this.backend?.name }, `I/O error: ${message}`);
    this.replyError(r, error, message);
  }

  private async read(r: C.Request, offset: number): Promise<void> {
    const len = r.length;
    const buf = Buffer.allocUnsafe(READ_HEADROOM + len);
    await this.backend!.read(offset, buf, READ_HEADROOM, len);
    this.stats.bytesRead += len;
    if (!this.session!.structured) {
      C.writeSimpleReply(buf, READ_HEADROOM - 16, 0, r.handle);
      return this.send(buf.subarray(READ_HEADROOM - 16));
    }
    if (len === 0) return this.send(C.encodeChunk(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_NONE, r.handle));
    const df = (r.flags & P.NBD_CMD_FLAG_DF) !== 0;
    const runs = df ? null : zeroRuns(buf, READ_HEADROOM, len);
    if (runs === null) {
      C.writeChunkHeader(buf, 0, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_OFFSET_DATA, r.handle, 8 + len);
      buf.writeBigUInt64BE(r.offset, 20);
      return this.send(buf);
    }
    // Mixed data and zeros: data chunks and hole chunks, DONE on the last.
    this.socket.cork();
    runs.forEach((run, i) => {
      const flags = i === runs.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
      const at = r.offset + BigInt(run.start);
      if (run.zero) {
        this.send(C.encodeOffsetHole(flags, r.handle, at, run.length));
      } else {
        const h = Buffer.allocUnsafe(28);
        C.writeChunkHeader(h, 0, flags, P.NBD_REPLY_TYPE_OFFSET_DATA, r.handle, 8 + run.length);
        h.writeBigUInt64BE(at, 20);
        this.send(h);
        this.send(buf.subarray(READ_HEADROOM + run.start, READ_HEADROOM + run.start + run.length));
      }
    });
    this.socket.uncork();
  }

  private async blockStatus(r: C.Request, offset: number): Promise<void> {
    const one = (r.flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0;
    const extents = await this.backend!.extents(offset, r.length, one ? 1 : MAX_EXTENTS);
    const list = (one ? extents.slice(0, 1) : extents).map((e) => ({
      length: e.length,
      flags: e.hole ? P.NBD_STATE_HOLE | P.NBD_STATE_ZERO : 0,
    }));
    this.send(C.encodeBlockStatus(P.NBD_REPLY_FLAG_DONE, r.handle, P.BASE_ALLOCATION_ID, list));
  }
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
