// One link to a peer, as a state machine: events in (frames, ticks of the clock, the
// socket's end), actions out (frames to send, where each received frame goes, when to
// close and why). No sockets, timers or workers here: src/node/link-session.ts runs
// it over TLS, the seeded simulation runs it over its simulated link, so both drive the same
// Hello gating, frame routing, heartbeats, round trips and dead-peer detection.
//
// Order: frames are taken in the order they came. A PackedRecords frame is unpacked
// by the adapter (in a worker); the frames behind it wait here until it says the
// records were handed over (heartbeats excepted: they carry liveness, no order), and
// past MAX_FRAME_PAYLOAD of them the adapter is told to stop reading the socket.
import {
  FrameError, FrameType, MAX_FRAME_PAYLOAD, decodeAck, decodeHashReply, decodeHashRequest, decodeHeartbeat, decodeHold, decodeMapReply, decodeMapRequest,
  decodeResync,
  encodeFrame, encodeHeartbeat, frameVolume, type Frame, type ProtocolRange,
} from './frame.js';
import { checkHello, encodeHelloFrame, type HelloCheck, type HelloVolume } from './hello.js';
import { decodeRecordsFrame } from './records-frame.js';
import type { JournalRecord } from '../journal/record.js';
import { assert } from '../invariants/assert.js';
import type { Owned } from '../memory/owned-buffers.js';
import { formatDuration } from '../units/units.js';

/** Round-trip samples kept: the least of them is the path's round trip (a heartbeat that waited behind records measures the queue). */
export const RTT_SAMPLES = 16;
/** A heartbeat goes out this often: a fifth of the dead-peer time, at least every 100 ms. */
export const HEARTBEATS_PER_TIMEOUT = 5;
export const MIN_HEARTBEAT_MS = 100;
/** After a Refuse is sent, the link stays this long so the peer can read it. */
export const REFUSE_LINGER_MS = 100;
/** Round-trip samples beyond this are clock trouble, not the path. */
const MAX_RTT_SAMPLE_MS = 600_000;

export interface PeerSessionOptions {
  /** This node's name and the peer's, as the config knows them. */
  node: string;
  peer: string;
  /** This side dialed: it sends its Hello after the peer's (the acceptor speaks first). */
  initiator: boolean;
  /** The protocol versions this node speaks. */
  speaks: ProtocolRange;
  /** No word from the peer for this long: dead (or the link is cut). */
  deadAfterMs: number;
  /** The volumes shared with this peer, as Hello describes them now. */
  shared: () => HelloVolume[];
  /** Volumes configured with this peer that this node could not open, with why (Hello's `unavailable`); absent: none. */
  unavailable?: () => Array<{ name: string; reason: string }>;
  /** The peers a volume of this node is paired with, in the config's order (none: no such volume). */
  pairedWith: (volume: string) => readonly string[];
}

export type SessionEvent =
  | { type: 'open'; now: number }
  /** Bytes arrived (a whole frame or not): the peer is alive. */
  | { type: 'heard'; now: number }
  | { type: 'frame'; frame: Frame; now: number }
  /** The records of the PackedRecords frame being unpacked were handed to the replica. */
  | { type: 'unpacked' }
  /** The heartbeat timer fired. */
  | { type: 'tick'; now: number }
  /** The socket is gone. */
  | { type: 'closed' };

export type SessionAction =
  /** A control frame (already at the agreed version, or at the Hello's for Hello and Refuse). */
  | { type: 'send'; parts: Buffer[] }
  /** Close the link (after `afterMs`, if set); `level` null: already said. */
  | { type: 'close'; reason: string; level: 'warn' | 'error' | null; afterMs?: number }
  /** A refusal, by this side (`byPeer` false) or by the peer: for the log and the operator's events. */
  | { type: 'refused'; code: string; message: string; byPeer: boolean }
  /** Both Hellos passed: frames from here on at `version`; wire the volumes of `check.pairs`. */
  | { type: 'up'; version: number; check: Extract<HelloCheck, { ok: true }> }
  /**
   * `frame`: the Records frame's payload the records are views of (the adapter's memory lease
   * follows it); `owned`: the node's buffer it lies in (given back once the records are logged).
   */
  | { type: 'records'; volume: string; records: JournalRecord[]; frame: Buffer; owned?: Owned }
  /**
   * Unpack this PackedRecords frame payload (its volume is paired with this peer): parse
   * and check its head, decompress (in a worker), hand the records over, then send
   * 'unpacked'. Frames behind it wait here meanwhile.
   */
  | { type: 'unpack'; payload: Buffer; owned?: Owned }
  | { type: 'resync'; volume: string; startSeq: number }
  | { type: 'hashRequest'; request: ReturnType<typeof decodeHashRequest> }
  | { type: 'hashReply'; reply: ReturnType<typeof decodeHashReply> }
  /** Version 2: where the replica holds holes (a first sync skips regions that are holes on both sides). */
  | { type: 'mapRequest'; request: ReturnType<typeof decodeMapRequest> }
  | { type: 'mapReply'; reply: ReturnType<typeof decodeMapReply> }
  | { type: 'hold'; hold: ReturnType<typeof decodeHold> }
  | { type: 'ack'; volume: string; seq: number }
  | { type: 'pauseReading' }
  | { type: 'resumeReading' }
  /** The link dropped before the peer's Hello, with no refusal: likely the peer does not pin this node. */
  | { type: 'droppedBeforeHello' };

export class PeerSession {
  /** Both Hellos passed and nobody refused. */
  up = false;
  /** The volumes the Hello paired on this link (a primary here and a secondary there, or the other way). */
  private carried = new Set<string>();
  closed = false;
  /** Why the link was refused (by either side), if it was. */
  refused: string | null = null;
  /** The agreed protocol version (the lowest this node speaks until Hello settles it). */
  version: number;
  /** The path's round trip (ms; null: not measured yet). */
  rttMs: number | null = null;
  private readonly rttSamples: number[] = [];
  private lastHeard = 0;
  private peerBeat: { clock: number; at: number } | null = null;
  private unpacking = false;
  private readonly waiting: Frame[] = [];
  private waitingBytes = 0;
  private readPaused = false;

  constructor(private readonly o: PeerSessionOptions) {
    this.version = o.speaks.min;
  }

  /** How often the adapter ticks the heartbeat timer. */
  get heartbeatMs(): number {
    return Math.max(MIN_HEARTBEAT_MS, this.o.deadAfterMs / HEARTBEATS_PER_TIMEOUT);
  }

  handle(e: SessionEvent): SessionAction[] {
    if (this.closed && e.type !== 'closed') return [];
    switch (e.type) {
      case 'open':
        this.lastHeard = e.now;
        return this.o.initiator ? [] : [this.hello()];
      case 'heard':
        this.lastHeard = e.now;
        return [];
      case 'tick':
        if (e.now - this.lastHeard > this.o.deadAfterMs) {
          return this.close(`no word from ${this.o.peer} for ${formatDuration(this.o.deadAfterMs / 1000)}: peer dead or link cut`, 'warn');
        }
        // (Not before Hello: until the version is agreed only Hello and Refuse travel,
        // which a peer takes at any version.)
        if (!this.up) return [];
        return [{
          type: 'send',
          parts: encodeHeartbeat({ clock: e.now, ...(this.peerBeat ? { echo: { clock: this.peerBeat.clock, heldMs: e.now - this.peerBeat.at } } : {}) }),
        }];
      case 'frame':
        this.lastHeard = e.now;
        return this.arrive(e.frame, e.now);
      case 'unpacked': {
        assert(this.unpacking, 'unpacked reported with no PackedRecords frame being unpacked');
        this.unpacking = false;
        const out: SessionAction[] = [];
        while (!this.unpacking && !this.closed && this.waiting.length > 0) {
          const f = this.waiting.shift()!;
          this.waitingBytes -= f.payload.length;
          out.push(...this.take(f, this.lastHeard));
        }
        if (this.readPaused && this.waitingBytes <= MAX_FRAME_PAYLOAD && !this.closed) {
          this.readPaused = false;
          out.push({ type: 'resumeReading' });
        }
        return out;
      }
      case 'closed': {
        const out: SessionAction[] = [];
        if (!this.up && !this.closed && this.refused === null) out.push({ type: 'droppedBeforeHello' });
        this.closed = true;
        return out;
      }
    }
  }

  /** Closes the link from this side (the adapter's own reasons: replaced, node stopping, a volume's failure). */
  close(reason: string, level: 'warn' | 'error' | null = 'warn'): SessionAction[] {
    if (this.closed) return [];
    this.closed = true;
    return [{ type: 'close', reason, level }];
  }

  private hello(): SessionAction {
    return { type: 'send', parts: encodeHelloFrame({
      node: this.o.node, codecs: ['zstd'], volumes: this.o.shared(), unavailable: this.o.unavailable?.(),
    }, this.o.speaks) };
  }

  private arrive(f: Frame, now: number): SessionAction[] {
    if (!this.unpacking || f.type === FrameType.Heartbeat) return this.take(f, now);
    this.waiting.push(f);
    this.waitingBytes += f.payload.length;
    if (this.waitingBytes > MAX_FRAME_PAYLOAD && !this.readPaused) {
      this.readPaused = true;
      return [{ type: 'pauseReading' }];
    }
    return [];
  }

  private take(f: Frame, now: number): SessionAction[] {
    if (this.closed) return [];
    try {
      return this.route(f, now);
    } catch (e) {
      return this.close(e instanceof FrameError ? `${this.o.peer} sent a bad frame: ${e.message}` : (e as Error).message);
    }
  }

  private route(f: Frame, now: number): SessionAction[] {
    const peer = this.o.peer;
    if (f.type === FrameType.Heartbeat) {
      const h = decodeHeartbeat(f.payload);
      this.peerBeat = { clock: h.clock, at: now };
      if (h.echo) {
        const sample = now - h.echo.clock - h.echo.heldMs;
        if (sample >= 0 && sample < MAX_RTT_SAMPLE_MS) {
          this.rttSamples.push(sample);
          if (this.rttSamples.length > RTT_SAMPLES) this.rttSamples.shift();
          this.rttMs = Math.min(...this.rttSamples);
        }
      }
      return [];
    }
    if (f.type === FrameType.Hello) return this.helloFrom(f);
    if (f.type === FrameType.Refuse) {
      let why = f.payload.toString('utf8');
      let code = 'refused';
      let message = why;
      try {
        const r = JSON.parse(why) as { code?: string; message?: string };
        code = r.code ?? 'refused';
        message = r.message ?? why;
        why = `${message} (${code})`;
      } catch {
        // not JSON: show it as it came
      }
      this.refused = why;
      return [{ type: 'refused', code, message, byPeer: true }, ...this.close(`${peer} refused the link`, null)];
    }
    if (!this.up) return this.close(`${peer} sent frame type ${f.type} before Hello`);
    // A frame that names a volume is taken only from the peer that volume is paired
    // with. Every configured peer's key opens a link, so without this a peer paired
    // for one volume could read another pair's replica (HashRequest), jam it (Resync,
    // Records) or release a primary's journal for records the real peer never got
    // (Ack, Hold). Checked before anything else is done with the frame.
    const named = frameVolume(f);
    if (named !== null) {
      const paired = this.o.pairedWith(named);
      if (!paired.includes(peer)) {
        const whose = paired.length === 0 ? 'which is not a volume of this node'
          : `which is paired with ${paired.join(', ')}, not ${peer} (volumes.${named}.peer)`;
        return this.close(`${peer} sent a ${FrameType[f.type]} frame for volume ${named}, ${whose}; ` +
          'a peer may only send frames for the volumes paired with it', 'error');
      }
      if (!this.carried.has(named)) {
        // (A volume of a set of three that is secondary on both sides, or whose secondary
        // starts again for a new primary: its Hello paired nothing on this link.)
        return this.close(`${peer} sent a ${FrameType[f.type]} frame for volume ${named}, which this link does not carry ` +
          '(its Hello paired no primary with a secondary for it)', 'error');
      }
    }
    switch (f.type) {
      case FrameType.Records: {
        const { volume, records } = decodeRecordsFrame(f.payload);
        return [{ type: 'records', volume, records, frame: f.payload, ...(f.owned ? { owned: f.owned } : {}) }];
      }
      case FrameType.PackedRecords:
        // The adapter checks its head and the zstd frame's header (no allocation) and
        // decompresses, bounded to the declared size, in a worker (src/compress/codec.ts).
        this.unpacking = true;
        return [{ type: 'unpack', payload: f.payload, ...(f.owned ? { owned: f.owned } : {}) }];
      case FrameType.Resync: {
        const { volume, startSeq } = decodeResync(f.payload);
        return [{ type: 'resync', volume, startSeq }];
      }
      case FrameType.HashRequest:
        return [{ type: 'hashRequest', request: decodeHashRequest(f.payload) }];
      case FrameType.HashReply:
        return [{ type: 'hashReply', reply: decodeHashReply(f.payload) }];
      case FrameType.MapRequest:
        return [{ type: 'mapRequest', request: decodeMapRequest(f.payload) }];
      case FrameType.MapReply:
        return [{ type: 'mapReply', reply: decodeMapReply(f.payload) }];
      case FrameType.Hold:
        return [{ type: 'hold', hold: decodeHold(f.payload) }];
      case FrameType.Ack: {
        const { volume, seq } = decodeAck(f.payload);
        return [{ type: 'ack', volume, seq }];
      }
      default:
        return [];
    }
  }

  private helloFrom(f: Frame): SessionAction[] {
    if (this.up) return this.close(`${this.o.peer} sent a second Hello`);
    const check = checkHello(f.payload, this.o.peer, this.o.shared(), {
      frame: f, speaks: this.o.speaks, self: this.o.node, inSet: (v) => this.o.pairedWith(v).length > 1,
    });
    if (!check.ok) {
      // Said once, here: the peer closes on our Refuse (usually before the linger ends),
      // and that close must not be taken for a fingerprint problem. At the version of
      // the Hello it answers: the lowest the peer speaks, so it can read why.
      this.refused = check.message;
      this.closed = true;
      return [
        { type: 'send', parts: encodeFrame(FrameType.Refuse, Buffer.from(JSON.stringify({ code: check.code, message: check.message })), 0, f.version) },
        { type: 'refused', code: check.code, message: check.message, byPeer: false },
        { type: 'close', reason: check.message, level: null, afterMs: REFUSE_LINGER_MS },
      ];
    }
    // From here on both sides send and take only the agreed version.
    this.version = check.protocol;
    this.carried = new Set(check.pairs.map((p) => p.local.name));
    this.up = true;
    return [...(this.o.initiator ? [this.hello()] : []), { type: 'up', version: check.protocol, check }];
  }
}
