// A peer at the other end of a link, for tests of the primary's resync driver: the real
// VolumeShipper, a fake link that decodes the frames, applies the records to a replica in
// memory, answers hash requests and acks (test/unit/first-sync-own.test.ts,
// test/unit/first-sync-reset.test.ts).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { JournaledVolume } from '../../src/journal/write-path.js';
import { FLAG_RESYNC, RecordKind, type JournalRecord } from '../../src/journal/record.js';
import { FrameDecoder, FrameType, decodeHashRequest, decodeResync, type HashRequest } from '../../src/link/frame.js';
import { decodeRecordsFrame } from '../../src/link/records-frame.js';
import { VolumeShipper, type ShipperSession } from '../../src/link/volume-shipper.js';
import { silentLogger, type Logger } from '../../src/log/log.js';

const KiB = 1024;

/** A peer at the other end of a link: applies what it is sent to its replica, acks on deliver(), answers hash requests when told. */
export class FakePeer {
  readonly received: JournalRecord[] = [];
  readonly resyncs: number[] = [];
  readonly asks: HashRequest[] = [];
  closed: string | null = null;
  private ackUpTo = 0;
  readonly sh: VolumeShipper;

  /** `regionSize`: the volume's bitmap regions; `onlyPeer`: the volume's one peer (no peer list: the shipper names none). */
  constructor(jv: JournaledVolume, readonly name: string, readonly replica: Buffer, private readonly regionSize: number, log: Logger = silentLogger,
    onlyPeer = false) {
    this.sh = new VolumeShipper('m', jv, log, {
      windowBytes: 4096 * KiB, batchBytes: 256 * KiB, selfSyncMs: 1000, now: Date.now, ...(onlyPeer ? {} : { peer: name }),
    });
  }

  /** The link comes up; the peer's Hello says it holds up to `durable` (0 and 0: a new secondary). */
  up(durable: number, round = 0, fresh = false): void {
    this.closed = null;
    const dec = new FrameDecoder();
    const s: ShipperSession = {
      send: (parts, _cls, hold) => {
        dec.push(Buffer.concat(parts));
        hold?.release(); // (copied: nothing reads the frame's bytes any more, as after a socket's write)
        for (let f = dec.next(); f; f = dec.next()) {
          if (f.type === FrameType.Records) this.apply(decodeRecordsFrame(f.payload).records);
          else if (f.type === FrameType.Resync) this.resyncs.push(decodeResync(f.payload).startSeq);
          else if (f.type === FrameType.HashRequest) this.asks.push(decodeHashRequest(f.payload));
          else assert.fail(`${this.name} was sent a frame of type ${FrameType[f.type]}`);
        }
      },
      close: (reason) => {
        this.closed = reason;
      },
    };
    this.sh.up(s, durable, round, fresh);
  }

  private apply(records: JournalRecord[]): void {
    for (const r of records) {
      this.received.push(r);
      if (r.kind === RecordKind.Write) r.payload.copy(this.replica, r.offset);
      else if (r.kind === RecordKind.Zeroes || r.kind === RecordKind.Trim) this.replica.fill(0, r.offset, r.offset + r.length);
      this.ackUpTo = Math.max(this.ackUpTo, r.seq);
    }
  }

  /** Acks what it received (its receive log is durable at once). */
  deliver(): void {
    if (this.ackUpTo > this.sh.acked) this.sh.ack(this.ackUpTo);
  }

  /** Answers the hash requests out with its replica's hashes. */
  answer(): number {
    const asks = this.asks.splice(0);
    for (const a of asks) {
      const hashes = Array.from({ length: a.count }, (_, i) => {
        const o = (a.first + i) * a.regionSize;
        return createHash('sha256').update(this.replica.subarray(o, Math.min(o + a.regionSize, this.replica.length))).digest();
      });
      this.sh.hashReply(a.first, a.regionSize, hashes);
    }
    return asks.length;
  }

  /** The resync records this peer was sent whole (not as padding): the regions each covers. */
  resyncRegions(): number[] {
    const out: number[] = [];
    for (const r of this.received) {
      if ((r.flags & FLAG_RESYNC) === 0 || r.kind === RecordKind.Skip) continue;
      for (let g = r.offset / this.regionSize; g < (r.offset + r.length) / this.regionSize; g++) out.push(g);
    }
    return out.sort((a, b) => a - b);
  }
}

export const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Ticks the shippers, acks and (answering) hash replies until `done`: at least `max` turns of
 * the event loop, and on a slow machine (file I/O in the thread pool taking longer than a turn)
 * for up to `seconds` of wall time, so the bound is liveness, not speed (`what`: the condition).
 */
export async function drive(what: string, peers: FakePeer[], done: () => boolean, answering: boolean, also: () => Promise<void> = async () => undefined,
  max = 3000, seconds = 60): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let i = 0;
  for (; !done() && (i < max || Date.now() < deadline); i++) {
    for (const p of peers) p.sh.tick();
    for (const p of peers) p.deliver();
    if (answering) for (const p of peers) p.answer();
    await also();
    // Past the turn budget, let the thread pool's reads and syncs land between ticks.
    if (i < max) await turn(); else await new Promise((r) => setTimeout(r, 1));
  }
  assert.ok(done(), `${what}, within ${i} turns and ${seconds} s`);
}

