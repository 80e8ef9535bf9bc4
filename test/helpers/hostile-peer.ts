// A hostile peer: a test double that holds a paired key and speaks the real peer
// protocol (TLS with its pinned certificate, Hello, frames with good checksums), then
// sends what an honest node never would. Also the payloads it sends: zstd bombs and
// PackedRecords frames built by hand.
import type tls from 'node:tls';
import { FrameDecoder, FrameType, encodeFrame, encodeVolumePayload, type Frame } from '../../src/link/frame.js';
import { encodeHello, type Hello } from '../../src/link/hello.js';
import type { Identity } from '../../src/link/identity.js';
import { connectLink } from '../../src/link/tls.js';

/**
 * A zstd frame that declares no content size, made of `blocks` RLE blocks of
 * `blockSize` bytes each (4 bytes apiece on the wire): 4096 blocks of 128 KiB are
 * 16 KiB that decompress to 512 MiB.
 */
export function zstdBomb(blocks = 4096, blockSize = 128 * 1024, byte = 0x41): Buffer {
  // Frame_Header_Descriptor 0: no content size, not single-segment, no checksum; the
  // Window_Descriptor then says 2^(10 + exponent) bytes, at least one block.
  const exponent = Math.max(0, Math.ceil(Math.log2(blockSize)) - 10);
  const parts = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, exponent << 3])];
  for (let i = 0; i < blocks; i++) {
    // Block_Header: Last_Block (bit 0), Block_Type 1 = RLE (bits 1-2), Block_Size (bits 3-23).
    const h = (blockSize << 3) | (1 << 1) | (i === blocks - 1 ? 1 : 0);
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, byte]));
  }
  return Buffer.concat(parts);
}

/** A PackedRecords payload as the wire has it: head (codec, level, declared length), then `body` as given. */
export function packedPayload(volume: string, codec: number, rawLength: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(codec, 0);
  h.writeUInt8(3, 1);
  h.writeUInt32LE(rawLength, 4);
  return encodeVolumePayload(volume, Buffer.concat([h, body]));
}

export interface HostileOptions {
  identity: Identity;
  /** The node dialled: its name and fingerprint as `offsite init` printed it. */
  to: { name: string; fingerprint: string };
  port: number;
  hello: Hello;
}

export class HostilePeer {
  readonly frames: Frame[] = [];
  closed = false;
  readonly done: Promise<void>;
  private constructor(readonly socket: tls.TLSSocket) {
    const decoder = new FrameDecoder();
    socket.on('data', (b: Buffer) => {
      decoder.push(b);
      try {
        for (let f = decoder.next(); f; f = decoder.next()) this.frames.push(f);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    this.done = new Promise((resolve) => socket.on('close', () => {
      this.closed = true;
      resolve();
    }));
  }

  /** Dials, waits for the node's Hello (the accepting side speaks first) and answers with ours. */
  static async connect(o: HostileOptions): Promise<HostilePeer> {
    const socket = await connectLink({ identity: o.identity, peer: o.to, host: '127.0.0.1', port: o.port });
    const p = new HostilePeer(socket);
    if (!(await p.waitFor(FrameType.Hello, 10_000))) throw new Error(`${o.to.name} sent no Hello`);
    p.send(encodeFrame(FrameType.Hello, encodeHello(o.hello)));
    return p;
  }

  send(parts: Buffer[]): void {
    for (const b of parts) this.socket.write(b);
  }

  /** The first frame of `type` heard, waiting up to `ms` for it (null: none, or the link closed first). */
  async waitFor(type: FrameType, ms: number): Promise<Frame | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.find((x) => x.type === type);
      if (f) return f;
      if (this.closed || Date.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Waits up to `ms` for the node to close the link; true if it did. */
  async closedWithin(ms: number): Promise<boolean> {
    await Promise.race([this.done, new Promise((r) => setTimeout(r, ms))]);
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
