// One client connection: the handshake, then the transmission phase with many
// requests in flight, replies in completion order, and bounded memory. The bytes
// received are taken apart here, phase by phase (greeting, options, request headers,
// write payloads held against the node's budget); what each command checks and does
// is commands.ts, the replies leave through reply-writer.ts (those carrying data:
// structured-replies.ts), and the option phase's decisions are negotiation.ts.
import type { Socket } from 'node:net';
import type { Logger } from '../log/log.js';
import { ByteQueue } from './byte-queue.js';
import * as C from './codec.js';
import { Negotiation, type ExportTable, type Session } from './negotiation.js';
import * as P from './protocol.js';
import { RequestBudget, type BudgetWaiter } from './budget.js';
import { Commands, type CommandFlow } from './commands.js';
import { MAX_UNSENT_REPLY_BYTES, ReplyWriter } from './reply-writer.js';
import { InvariantError } from '../invariants/assert.js';
import { hostBuffers, type Owned } from '../memory/owned-buffers.js';
import { MALLOC_MMAP_THRESHOLD_BYTES } from '../limits/limits.js';

export { errnoToNbd } from './reply-writer.js';

/** Per-connection limits: past either one we stop reading the socket until replies drain. */
export const MAX_IN_FLIGHT = 128;
export const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/**
 * From the accept to the transmission phase. A deadline, not an idle timer: real
 * clients finish the handshake in milliseconds, and a connection parked before it
 * holds a descriptor and a slot of the connection caps for nothing.
 */
export const NBD_HANDSHAKE_TIMEOUT_MS = 30_000;
const MAX_OPTIONS = 1024;

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
  /** The transmission phase's commands (null before it). */
  private commands: Commands | null = null;
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
  /** The node's buffer the payload being dispatched was gathered into, handed to track() (null: none). */
  private dispatchOwned: Owned | null = null;
  /** The last time bytes came in, or this side started reading again after a pause (ms). */
  lastActivityAt = Date.now();
  private disconnecting = false;
  private closed = false;
  private readonly drained: Array<() => void> = [];
  private handshakeTimer: NodeJS.Timeout | null;
  readonly stats: ConnectionStats = { requests: 0, bytesRead: 0, bytesWritten: 0 };
  private readonly replies: ReplyWriter;
  private readonly flow: CommandFlow = {
    track: (r, bytes, done, replyOk) => this.track(r, bytes, done, replyOk === true),
    disconnect: () => {
      this.disconnecting = true;
      this.socket.pause();
      void this.whenIdle().then(() => this.endGracefully());
    },
  };

  constructor(
    private readonly socket: Socket,
    private readonly exports: ExportTable,
    private readonly log: Logger,
    readonly peer: string,
    private readonly onClose: (c: NbdConnection) => void,
    private readonly limits: ConnectionLimits = { budget: new RequestBudget(), handshakeTimeoutMs: NBD_HANDSHAKE_TIMEOUT_MS },
  ) {
    this.replies = new ReplyWriter(socket, log, peer, this.stats, () => this.pause());
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
    return this.commands?.backend.name ?? null;
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
    this.replies.closed = true;
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
          this.commands!.dispatch(r, null);
          break;
        }
        case 'payload': {
          const r = this.pendingRequest!;
          if (this.queue.length < r.length) return;
          // A large payload that came in several reads is gathered into one of the node's
          // buffers, not a fresh one (limits.ts HOST_BUFFERS_KEPT_BYTES).
          const owned = r.length >= MALLOC_MMAP_THRESHOLD_BYTES && !this.queue.inOneChunk(r.length) ? hostBuffers.take(r.length) : null;
          const data = this.queue.take(r.length, owned?.bytes);
          this.pendingRequest = null;
          this.phase = 'header';
          // The payload is a view of the received buffers (or the node's): its bytes stay held
          // until the disk has them (track() takes them over), or go back at once if refused.
          this.dispatchHeld = this.payloadHeld;
          this.payloadHeld = 0;
          this.dispatchOwned = owned;
          this.commands!.dispatch(r, data);
          if (this.dispatchHeld > 0) this.limits.budget.release(this.dispatchHeld);
          this.dispatchHeld = 0;
          // (Refused before any disk saw it: the buffer is free again.)
          this.dispatchOwned?.give();
          this.dispatchOwned = null;
          break;
        }
        case 'discard': {
          this.pendingLength -= this.queue.skip(this.pendingLength);
          if (this.pendingLength > 0) return;
          const r = this.pendingRequest!;
          this.pendingRequest = null;
          this.phase = 'header';
          this.replies.error(r, P.NBD_EINVAL, `write of ${r.length} bytes is over the ${P.MAX_PAYLOAD}-byte maximum`);
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
    this.log.debug({ peer: this.peer },
      `NBD client ${this.peer}: a ${bytes}-byte write waits for the node's request budget (${this.limits.budget.used} of ` +
      `${this.limits.budget.limit} bytes held)`);
  }

  private startTransmission(session: Session): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.session = session;
    this.replies.structured = session.structured;
    this.commands = new Commands(session, this.replies, this.stats, this.flow);
    this.phase = 'header';
    this.log.debug({ peer: this.peer, export: session.backend.name }, `NBD client ${this.peer} opened export ${session.backend.name}`);
  }

  // --- transmission: requests in flight and backpressure ----------------------

  /** Counts a request in flight, applies backpressure, and turns failures into NBD errors. */
  private track(r: C.Request, bytes: number, p: Promise<void>, replyOk: boolean): void {
    this.inFlight++;
    this.inFlightBytes += bytes;
    const held = this.dispatchHeld; // a write's budget bytes, given back when the disk is done
    this.dispatchHeld = 0;
    // A write's buffer of the node's goes back once the write succeeded: the backend is done
    // with its bytes then (ExportBackend.write). After a failure a part of the write path may
    // still hold it (a journal append behind a volume write that failed): the collector's.
    const owned = this.dispatchOwned;
    this.dispatchOwned = null;
    if (this.inFlight >= MAX_IN_FLIGHT || this.inFlightBytes >= MAX_IN_FLIGHT_BYTES) this.pause();
    const settled = (): void => {
      if (held > 0) this.limits.budget.release(held);
      this.inFlight--;
      this.inFlightBytes -= bytes;
      this.maybeResume();
      if (this.inFlight === 0) for (const f of this.drained.splice(0)) f();
    };
    // (One reaction, the reply in it: not then, catch and finally, four promises a request
    // more on the host's hot path. Nothing escapes it: a throw here would be a rejection no
    // one handles.)
    const ended = (e: unknown, failed: boolean): void => {
      if (!failed) owned?.give();
      try {
        try {
          if (failed) this.replies.failure(r, e, this.commands?.backend.name);
          else if (replyOk) this.replies.ok(r);
        } catch (err) {
          if (!failed) this.replies.failure(r, err, this.commands?.backend.name);
          else throw err;
        } finally {
          settled();
        }
      } catch (err) {
        if (err instanceof InvariantError) throw err;
        this.log.error({ peer: this.peer }, `NBD client ${this.peer}: after request ${r.handle}: ${(err as Error).message}`);
      }
    };
    p.then((v) => ended(v, false), (e: unknown) => ended(e, true));
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
}
