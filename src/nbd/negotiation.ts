// The option haggling phase of fixed newstyle, as a state machine: it takes one
// option (number and payload) and returns the replies to send and what comes next.
// No sockets here, so every branch is testable on fixed bytes.
import * as C from './codec.js';
import * as P from './protocol.js';
import type { ExportBackend } from '../export/backend.js';

export interface ExportTable {
  /** Export by name; '' selects the default export. */
  lookup(name: string): ExportBackend | undefined;
  list(): ExportBackend[];
}

export interface Session {
  backend: ExportBackend;
  structured: boolean;
  /** base:allocation selected for this export. */
  allocationContext: boolean;
  flags: number;
}

export type Step =
  | { kind: 'continue'; replies: Buffer[] }
  | { kind: 'close'; replies: Buffer[]; reason: string }
  | { kind: 'transmission'; replies: Buffer[]; session: Session };

/** The transmission flags: exactly what the backend says it can do (src/export/backend.ts). */
export function transmissionFlags(backend: ExportBackend, structured: boolean): number {
  const c = backend.capabilities();
  let f = P.NBD_FLAG_HAS_FLAGS;
  // A read-only export still takes FLUSH (a no-op there): clients flush before they close.
  f |= P.NBD_FLAG_SEND_FLUSH;
  if (c.fua) f |= P.NBD_FLAG_SEND_FUA;
  if (c.cache) f |= P.NBD_FLAG_SEND_CACHE;
  if (c.multiConn) f |= P.NBD_FLAG_CAN_MULTI_CONN;
  if (structured) f |= P.NBD_FLAG_SEND_DF;
  if (c.readOnly) f |= P.NBD_FLAG_READ_ONLY;
  if (c.trim) f |= P.NBD_FLAG_SEND_TRIM;
  if (c.zero) f |= P.NBD_FLAG_SEND_WRITE_ZEROES;
  if (c.fastZero) f |= P.NBD_FLAG_SEND_FAST_ZERO;
  return f;
}

export class Negotiation {
  private structured = false;
  /** Export name the last SET_META_CONTEXT applied to, and whether it selected base:allocation. */
  private metaExport: string | null = null;
  private metaAllocation = false;

  constructor(private readonly exports: ExportTable, private readonly noZeroes: boolean) {}

  handle(option: number, data: Buffer): Step {
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME:
        return this.exportName(data);
      case P.NBD_OPT_ABORT:
        return { kind: 'close', replies: [C.encodeOptionReply(option, P.NBD_REP_ACK)], reason: 'client aborted' };
      case P.NBD_OPT_LIST:
        return this.list(data);
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.infoOrGo(option, data);
      case P.NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.error(option, P.NBD_REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        if (this.structured) return this.error(option, P.NBD_REP_ERR_INVALID, 'structured replies already negotiated');
        this.structured = true;
        return this.ok(option);
      case P.NBD_OPT_LIST_META_CONTEXT:
      case P.NBD_OPT_SET_META_CONTEXT:
        return this.metaContext(option, data);
      case P.NBD_OPT_STARTTLS:
        return this.error(option, P.NBD_REP_ERR_UNSUP, 'TLS is not offered on the NBD listener; use a unix socket or a trusted network');
      default:
        return this.error(option, P.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private exportName(data: Buffer): Step {
    const name = data.toString('utf8');
    const backend = this.exports.lookup(name);
    if (!backend) return { kind: 'close', replies: [], reason: `unknown export "${name}"` };
    const flags = transmissionFlags(backend, this.structured);
    return {
      kind: 'transmission',
      replies: [C.encodeExportNameReply(BigInt(backend.size), flags, this.noZeroes)],
      session: this.session(backend, name, flags),
    };
  }

  private list(data: Buffer): Step {
    if (data.length !== 0) return this.error(P.NBD_OPT_LIST, P.NBD_REP_ERR_INVALID, 'LIST takes no data');
    const replies = this.exports.list().map((b) =>
      C.encodeOptionReply(P.NBD_OPT_LIST, P.NBD_REP_SERVER, C.encodeServerEntry(b.name, b.description)));
    replies.push(C.encodeOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ACK));
    return { kind: 'continue', replies };
  }

  private infoOrGo(option: number, data: Buffer): Step {
    let req: C.InfoRequest;
    try {
      req = C.decodeInfoRequest(data);
    } catch (e) {
      return this.error(option, P.NBD_REP_ERR_INVALID, (e as Error).message);
    }
    const backend = this.exports.lookup(req.name);
    if (!backend) return this.error(option, P.NBD_REP_ERR_UNKNOWN, `no export named "${req.name}"`);
    const flags = transmissionFlags(backend, this.structured);
    const info = (payload: Buffer): Buffer => C.encodeOptionReply(option, P.NBD_REP_INFO, payload);
    const replies = [info(C.encodeInfoExport(BigInt(backend.size), flags))];
    if (req.infos.includes(P.NBD_INFO_NAME)) replies.push(info(C.encodeInfoString(P.NBD_INFO_NAME, backend.name)));
    if (req.infos.includes(P.NBD_INFO_DESCRIPTION)) {
      replies.push(info(C.encodeInfoString(P.NBD_INFO_DESCRIPTION, backend.description)));
    }
    // Always sent: the backend's block sizes (any alignment, 4 KiB preferred, up to 32 MiB a request).
    const bs = backend.capabilities().blockSize;
    replies.push(info(C.encodeInfoBlockSize(bs.minimum, bs.preferred, Math.min(bs.maximum, P.MAX_PAYLOAD))));
    replies.push(C.encodeOptionReply(option, P.NBD_REP_ACK));
    if (option === P.NBD_OPT_INFO) return { kind: 'continue', replies };
    return { kind: 'transmission', replies, session: this.session(backend, req.name, flags) };
  }

  private metaContext(option: number, data: Buffer): Step {
    const set = option === P.NBD_OPT_SET_META_CONTEXT;
    if (set) {
      // Every SET replaces the previous selection, even when it fails.
      this.metaExport = null;
      this.metaAllocation = false;
    }
    if (!this.structured) {
      return this.error(option, P.NBD_REP_ERR_INVALID, 'negotiate STRUCTURED_REPLY before meta contexts');
    }
    let req: C.MetaContextRequest;
    try {
      req = C.decodeMetaContextRequest(data);
    } catch (e) {
      return this.error(option, P.NBD_REP_ERR_INVALID, (e as Error).message);
    }
    if (!this.exports.lookup(req.exportName)) {
      return this.error(option, P.NBD_REP_ERR_UNKNOWN, `no export named "${req.exportName}"`);
    }
    const matches = set
      ? req.queries.some((q) => q === P.BASE_ALLOCATION)
      : req.queries.length === 0 || req.queries.some((q) => q === 'base:' || q === P.BASE_ALLOCATION);
    const replies: Buffer[] = [];
    if (matches) {
      replies.push(C.encodeOptionReply(option, P.NBD_REP_META_CONTEXT,
        C.encodeMetaContext(set ? P.BASE_ALLOCATION_ID : 0, P.BASE_ALLOCATION)));
    }
    if (set) {
      this.metaExport = req.exportName;
      this.metaAllocation = matches;
    }
    replies.push(C.encodeOptionReply(option, P.NBD_REP_ACK));
    return { kind: 'continue', replies };
  }

  private session(backend: ExportBackend, requestedName: string, flags: number): Session {
    // Contexts chosen for another export do not carry over to this one.
    const sameExport = this.metaExport !== null && this.exports.lookup(this.metaExport) === backend
      && (this.metaExport === requestedName || this.exports.lookup(requestedName) === backend);
    return { backend, structured: this.structured, allocationContext: sameExport && this.metaAllocation, flags };
  }

  private ok(option: number): Step {
    return { kind: 'continue', replies: [C.encodeOptionReply(option, P.NBD_REP_ACK)] };
  }

  private error(option: number, type: number, message: string): Step {
    return { kind: 'continue', replies: [C.encodeOptionError(option, type, message)] };
  }
}
