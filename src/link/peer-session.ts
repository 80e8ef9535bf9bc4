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
import {
  checkHello, checkVolume, decodeVolumeHello, encodeHelloFrame, encodeVolumeHello, type HelloCheck, type HelloVolume, type PairOutcome, type VolumeHello,
} from './hello.js';
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
  | { type: 'droppedBeforeHello' }
  /** A frame of a pairing that ended, dropped unread: what it holds (its memory lease, its buffer) goes back. */
  | { type: 'dropped'; frame: Frame }
  /** The volume's pairing on this link ends (a VolumeHello, either side's): unwire it (idempotent). */
  | { type: 'volumeDown'; volume: string }
  /** Both sides said how they hold the volume now: what Hello would make of it (null: nothing; this side does not share it). */
  | { type: 'volumeUp'; volume: string; outcome: PairOutcome | null };

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
  /** Volumes whose Hello again this side sent, waiting for the peer's answer (`dirty`: changed again meanwhile). */
  private readonly asking = new Map<string, { sent: VolumeHello; dirty: boolean }>();
  /** One more each time a volume's pairing on this link ends or begins (pairingOf). */
  private readonly pairings = new Map<string, number>();

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

  /** The link speaks protocol 3 or later: a volume's pairing changes by a VolumeHello (rehello), not by a new link. */
  get rehelloes(): boolean {
    return this.up && !this.closed && this.version >= 3;
  }

  /** Is `volume` paired on this link now (a primary here and its secondary there, or the other way)? */
  carries(volume: string): boolean {
    return this.carried.has(volume);
  }

  /**
   * Which pairing of `volume` on this link this is: work begun under one (a hash of the
   * replica, records being unpacked) is not sent or handed on under another.
   */
  pairingOf(volume: string): number {
    return this.pairings.get(volume) ?? 0;
  }

  /**
   * This side's `volume` changed (its role, peers or size; added or removed): its pairing
   * on this link is let go (the adapter has stopped what it sent of it), and the peer is
   * asked to pair it again from how each side holds it now (docs/PEER-PROTOCOL.md, "A
   * volume's Hello again"). Asked already: asked again once the answer comes.
   */
  rehello(volume: string): SessionAction[] {
    assert(this.rehelloes, () => `volume ${volume}: a Hello again on a link to ${this.o.peer} at protocol ${this.version} (3 or later needed)`);
    const out = this.letGo(volume);
    const asked = this.asking.get(volume);
    if (asked) {
      asked.dirty = true;
      return out;
    }
    const sent = this.describe(volume, false);
    this.asking.set(volume, { sent, dirty: false });
    out.push({ type: 'send', parts: encodeVolumeHello(sent) });
    return out;
  }

  private letGo(volume: string): SessionAction[] {
    this.carried.delete(volume);
    this.pairings.set(volume, this.pairingOf(volume) + 1);
    return [{ type: 'volumeDown', volume }];
  }

  /** How this side holds `volume` now, as its Hello would say it. */
  private describe(volume: string, reply: boolean): VolumeHello {
    const described = this.o.shared().find((v) => v.name === volume);
    const unavailable = described ? undefined : this.o.unavailable?.().find((u) => u.name === volume)?.reason;
    return { volume, reply, ...(described ? { described } : {}), ...(unavailable !== undefined ? { unavailable } : {}) };
  }

  private volumeHelloFrom(f: Frame): SessionAction[] {
    const theirs = decodeVolumeHello(f.payload);
    const volume = theirs.volume;
    const asked = this.asking.get(volume);
    if (!theirs.reply) {
      // Both asked at once: the request of the node whose name sorts first stands, and the other answers it.
      if (asked && this.o.node < this.o.peer) return [];
      this.asking.delete(volume);
      const out = this.letGo(volume);
      const mine = this.describe(volume, true);
      out.push({ type: 'send', parts: encodeVolumeHello(mine) }, ...this.pairAgain(mine, theirs));
      return out;
    }
    if (!asked) return this.close(`${this.o.peer} answered a VolumeHello for ${volume} that this node did not send`, 'error');
    this.asking.delete(volume);
    if (asked.dirty) {
      // (Changed again since it asked: the peer paired the old description; ask again with the new.)
      const sent = this.describe(volume, false);
      this.asking.set(volume, { sent, dirty: false });
      return [{ type: 'send', parts: encodeVolumeHello(sent) }];
    }
    return this.pairAgain(asked.sent, theirs);
  }

  /** The volume paired again from the two descriptions, as a Hello pairs it: the same outcome on both sides. */
  private pairAgain(mine: VolumeHello, theirs: VolumeHello): SessionAction[] {
    const volume = mine.volume;
    this.pairings.set(volume, this.pairingOf(volume) + 1);
    const outcome = mine.described
      ? checkVolume(mine.described, theirs, this.o.peer, { self: this.o.node, inSet: (v) => this.o.pairedWith(v).length > 1 })
      : null;
    if (outcome !== null && 'pair' in outcome && !outcome.follows) this.carried.add(volume);
    return [{ type: 'volumeUp', volume, outcome }];
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
    if (f.type === FrameType.VolumeHello) return this.volumeHelloFrom(f);
    // A frame that names a volume is taken only from the peer that volume is paired
    // with. Every configured peer's key opens a link, so without this a peer paired
    // for one volume could read another pair's replica (HashRequest), jam it (Resync,
    // Records) or release a primary's journal for records the real peer never got
    // (Ack, Hold). Checked before anything else is done with the frame.
    const named = frameVolume(f);
    // (Sent before the peer read this side's VolumeHello: of the pairing that ended. Dropped, by stream order;
    // before the config is asked, which may have dropped the volume or the peer by then.)
    if (named !== null && this.asking.has(named)) return [{ type: 'dropped', frame: f }];
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
