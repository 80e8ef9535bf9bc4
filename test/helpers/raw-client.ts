// A deliberately low-level NBD client for tests that must send what real clients
// never would: truncated handshakes, bad magic, out-of-range offsets, garbage.
import net from 'node:net';
import * as C from '../../src/nbd/codec.js';
import * as P from '../../src/nbd/protocol.js';

export class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(opts: net.NetConnectOpts): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(opts, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Reads exactly n bytes, or rejects if the server closes first or timeoutMs passes. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`connection closed after ${this.buf.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true when the server closes the connection within timeoutMs. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  close(): void {
    this.socket.destroy();
  }

  async greeting(clientFlags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES): Promise<Buffer> {
    const g = await this.read(18);
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags, 0);
    this.write(f);
    return g;
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(P.IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== P.OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len) };
  }

  /** Option replies up to and including the final ACK or error. */
  async optionReplies(): Promise<Array<{ option: number; type: number; data: Buffer }>> {
    const out = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === P.NBD_REP_ACK || r.type >= 0x80000000) return out;
    }
  }

  static infoRequest(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((i, k) => b.writeUInt16BE(i, 6 + n.length + 2 * k));
    return b;
  }

  static metaRequest(name: string, queries: string[]): Buffer {
    const parts = [u32(Buffer.byteLength(name)), Buffer.from(name), u32(queries.length)];
    for (const q of queries) parts.push(u32(Buffer.byteLength(q)), Buffer.from(q));
    return Buffer.concat(parts);
  }

  /** Full handshake to transmission with NBD_OPT_GO; returns size and flags. */
  async go(name: string, opts: { structured?: boolean; allocation?: boolean } = {}): Promise<{ size: bigint; flags: number }> {
    await this.greeting();
    if (opts.structured) {
      this.sendOption(P.NBD_OPT_STRUCTURED_REPLY);
      const r = await this.optionReply();
      if (r.type !== P.NBD_REP_ACK) throw new Error('structured reply refused');
      if (opts.allocation) {
        this.sendOption(P.NBD_OPT_SET_META_CONTEXT, RawClient.metaRequest(name, [P.BASE_ALLOCATION]));
        await this.optionReplies();
      }
    }
    this.sendOption(P.NBD_OPT_GO, RawClient.infoRequest(name));
    const replies = await this.optionReplies();
    const last = replies[replies.length - 1]!;
    if (last.type !== P.NBD_REP_ACK) throw new Error(`GO failed: 0x${last.type.toString(16)} ${last.data.toString()}`);
    const info = replies.find((r) => r.type === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT)!;
    return { size: info.data.readBigUInt64BE(2), flags: info.data.readUInt16BE(10) };
  }

  request(type: number, offset: bigint, length: number, opts: { flags?: number; handle?: bigint; data?: Buffer } = {}): void {
    const h = C.encodeRequest({ flags: opts.flags ?? 0, type, handle: opts.handle ?? 1n, offset, length });
    this.write(opts.data ? Buffer.concat([h, opts.data]) : h);
  }

  async simpleReply(): Promise<{ error: number; handle: bigint }> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== P.SIMPLE_REPLY_MAGIC) throw new Error(`expected a simple reply, got magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { error: h.readUInt32BE(4), handle: h.readBigUInt64BE(8) };
  }

  /** Reads any reply: a simple reply or a structured chunk. */
  async anyReply(): Promise<
    { kind: 'simple'; error: number; handle: bigint } | { kind: 'chunk'; flags: number; type: number; handle: bigint; payload: Buffer }
  > {
    const m = await this.read(4);
    if (m.readUInt32BE(0) === P.SIMPLE_REPLY_MAGIC) {
      const rest = await this.read(12);
      return { kind: 'simple', error: rest.readUInt32BE(0), handle: rest.readBigUInt64BE(4) };
    }
    if (m.readUInt32BE(0) !== P.STRUCTURED_REPLY_MAGIC) throw new Error('bad reply magic');
    const rest = await this.read(16);
    const len = rest.readUInt32BE(12);
    return { kind: 'chunk', flags: rest.readUInt16BE(0), type: rest.readUInt16BE(2), handle: rest.readBigUInt64BE(4), payload: await this.read(len) };
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}
