// One link to a peer over its TLS socket: the adapter that runs the link's state
// machine (src/link/peer-session.ts) with the socket, its timers, the pacer the frames
// leave through, the intake that holds the peer's frames to the memory budget, and the
// zstd workers that unpack them. It does what the machine says; what the node does
// with a link (wiring volumes at Hello, forgetting them at close) is the link
// manager's (links.ts), reached through LinkHost.
import type tls from 'node:tls';
import type { Logger } from '../log/log.js';
import { FrameDecoder, FrameError, FrameType, MAX_MAP_HOLES, atVersion, encodeHashReply, encodeMapReply, type Frame } from '../link/frame.js';
import type { HelloCheck } from '../link/hello.js';
import { decodePackedRecordsFrameOff, parsePackedRecordsFrame } from '../compress/codec.js';
import type { Packer } from '../compress/packer.js';
import type { CompressionPool } from '../compress/pool.js';
import type { MemoryBudget } from '../memory/budget.js';
import { FrameIntake } from '../memory/intake.js';
import { frameBuffers } from '../memory/owned-buffers.js';
import type { VolumeShipper } from '../link/volume-shipper.js';
import { LinkCapacity, socketAllowance } from '../rate/capacity.js';
import { Pacer } from '../rate/pacer.js';
import type { Replica } from '../secondary/replica.js';
import { regionHashOf } from '../sync/region-hashes.js';
import { PeerSession, type PeerSessionOptions, type SessionAction } from '../link/peer-session.js';
import type { PairOutcome } from '../link/hello.js';

/** A link that is open, as the link manager and the volumes wired to it hold it. */
export interface LinkSession {
  peer: string;
  socket: tls.TLSSocket;
  /** The link's state machine: Hello, routing, heartbeats, round trip, dead peer. */
  machine: PeerSession;
  /** Control frames (ahead of records, never held by the rate). */
  send(parts: Buffer[]): void;
  /**
   * Closes the link and logs why (at warn, or at error for a peer that broke the
   * protocol's rules; null: not logged, the reason was said already).
   */
  close(reason: string, level?: 'warn' | 'error' | null): void;
  readonly closed: boolean;
  /** Records frames go through it, at the peer's rate, fairly by volume weight. */
  pacer: Pacer;
  /** Packs record batches for this link (zero writes, zstd if the peer decodes it); set at Hello. */
  packer: Packer | null;
  /** Frame bytes written to the socket, and what the link carried while it was the bottleneck. */
  wireBytes: number;
  capacity: LinkCapacity;
  /**
   * This side's `volume` changed: its pairing on the link is let go (volumeDown) and the
   * peer asked to pair it again (PeerSession.rehello). False: the link speaks protocol 1
   * or 2, and only a new link pairs it again (the caller closes this one).
   */
  rehello(volume: string): boolean;
}

/** How a link ended: `up`, both Hellos passed and neither side refused; `refused`, the refusal's reason, if any. */
export interface LinkEnd {
  up: boolean;
  refused: string | null;
}

/** What a link needs of the node around it (the link manager). */
export interface LinkHost {
  readonly log: Logger;
  /** The node's memory budget: the peer's records frames take `receive` leases from it. */
  readonly memory: MemoryBudget;
  /** This node's certificate fingerprint (said when a peer hangs up before its Hello). */
  readonly fingerprint: string;
  /** The peer's rate cap now (bytes per second; null: none), schedule included. */
  rateNow(peer: string): number | null;
  /** The pacer wrote `bytes` of `volume`'s frames to the socket. */
  wrote(volume: string, bytes: number): void;
  /** The replica of `volume` here (undefined: not a replica here). */
  replica(volume: string): Replica | undefined;
  /** The shipper of primary `volume` (undefined: none yet). */
  /** The shipper of `volume` to `peer` (one per pair: a volume may have several peers, docs/PEERS.md). */
  shipper(volume: string, peer: string): VolumeShipper | undefined;
  /** Every shipper (those on this link are matched by their session's `link`). */
  shippers(): Iterable<VolumeShipper>;
  /** The zstd workers that unpack the peer's PackedRecords frames. */
  unpackPool(): CompressionPool;
  /** Both Hellos passed: the link joins the node's links and its volumes are wired to it. */
  up(s: LinkSession, check: Extract<HelloCheck, { ok: true }>, version: number): void;
  /** `volume`'s pairing on the link `s` ends (a VolumeHello, either side's): what is wired of it to the link goes (idempotent). */
  volumeDown(s: LinkSession, volume: string): void;
  /** `volume` paired again on the link `s` from the two sides' VolumeHellos: wired as a Hello wires it. */
  volumeUp(s: LinkSession, volume: string, outcome: PairOutcome | null): void;
  /** The link was refused (said in the log already): the operator's events. */
  refused(peer: string, a: Extract<SessionAction, { type: 'refused' }>): void;
  /** The socket closed: the link leaves the node's links, if it is still the one there. */
  closed(s: LinkSession): void;
}

/**
 * Runs one link until it closes: the socket, timers and workers around the link's
 * state machine (src/link/peer-session.ts, made from `o`), which decides everything
 * else. Resolves `up`: both Hellos passed and neither side refused (the dialer then
 * redials at once if it drops; otherwise it backs off), and `refused`: the refusal's
 * reason, if any.
 */
export function runLink(socket: tls.TLSSocket, o: PeerSessionOptions, host: LinkHost): Promise<LinkEnd> {
  const peer = o.peer;
  return new Promise((resolve) => {
    // (Large record frames are gathered into the node's buffers and given back once logged: invariant 12.)
    const decoder = new FrameDecoder(o.speaks, frameBuffers);
    const machine = new PeerSession(o);
    const pacer = new Pacer({
      write: (b, done) => socket.write(b, done ? () => done() : undefined),
      rate: () => host.rateNow(peer),
      now: Date.now,
      later: (ms, f) => setTimeout(f, ms).unref(),
      onWritten: (volume, n) => {
        host.wrote(volume, n);
        s.wireBytes += n;
      },
      buffered: () => socket.writableLength,
      onDrain: (f) => socket.once('drain', f),
      maxBuffered: () => socketAllowance(s.capacity.estimate(host.rateNow(peer))),
    });
    let ended = false;
    // Records frames take their bytes from the node's budget as they arrive, in order;
    // while one waits, the socket is not read (the peer's bytes wait in the kernel and
    // on the link, not here). Released once the receive log has written the records.
    const intake = new FrameIntake<Frame>(host.memory, {
      bytesOf: recordFrameBytes,
      passes: (f) => f.type === FrameType.Heartbeat,
      take: (f) => {
        try {
          run(machine.handle({ type: 'frame', frame: f, now: Date.now() }));
        } catch (e) {
          s.close(e instanceof FrameError ? `${peer} sent a bad frame: ${e.message}` : (e as Error).message);
        }
      },
      closed: () => machine.closed,
      pause: (paused) => (paused ? socket.pause() : socket.resume()),
    });
    const s: LinkSession = {
      peer, socket, machine, pacer, packer: null, wireBytes: 0, capacity: new LinkCapacity(),
      get closed() { return machine.closed; },
      send: (parts) => {
        if (!machine.closed) pacer.control(atVersion(parts, machine.version));
      },
      close: (reason, level = 'warn') => run(machine.close(reason, level)),
      rehello: (volume) => {
        if (!machine.rehelloes) return false;
        run(machine.rehello(volume));
        return true;
      },
    };
    // How busy the link is (data waiting for it), sampled 4 times a second; the
    // packer's auto level follows it once a second.
    // The capacity counts seconds in which records always waited to go out: a frame
    // in the pacer, bytes in node's socket buffer (the kernel's is full), or a
    // shipper whose window is full or whose oldest batch in flight is over a second
    // old (what it sent waits in the kernel's buffer, which holds seconds of a slow
    // line, or on the line itself).
    const queued = (): boolean => {
      for (const sh of host.shippers()) if (sh.session?.link === s && (sh.windowFull || sh.unackedAgeMs() > 1000)) return true;
      return false;
    };
    let busySamples = 0;
    let saturatedSamples = 0;
    let samples = 0;
    // (The node's CPU over each second, all threads: whether packing costs anything that waits.)
    let cpuAt = { usage: process.cpuUsage(), at: process.hrtime.bigint() };
    const meter = setInterval(() => {
      if (pacer.pending() > 0 || socket.writableLength >= socketAllowance(s.capacity.estimate(host.rateNow(peer)))) busySamples++;
      if (pacer.active() || socket.writableLength > 0 || queued()) saturatedSamples++;
      if (++samples < 4) return;
      const cpuNow = { usage: process.cpuUsage(), at: process.hrtime.bigint() };
      const usedMicros = cpuNow.usage.user - cpuAt.usage.user + cpuNow.usage.system - cpuAt.usage.system;
      const cores = usedMicros / Math.max(1, Number(cpuNow.at - cpuAt.at) / 1000);
      cpuAt = cpuNow;
      s.packer?.observe(busySamples / samples, cores);
      s.capacity.observe(Date.now(), s.wireBytes - socket.writableLength, saturatedSamples / samples, host.rateNow(peer));
      busySamples = saturatedSamples = samples = 0;
    }, 250);
    meter.unref();
    const timer = setInterval(() => run(machine.handle({ type: 'tick', now: Date.now() })), machine.heartbeatMs);

    /** While `volume`'s pairing on the link is the one of now (a VolumeHello ends it): work begun under it may answer. */
    const whilePaired = (volume: string): (() => boolean) => {
      const pairing = machine.pairingOf(volume);
      return () => !machine.closed && machine.pairingOf(volume) === pairing;
    };
    /** Does what the machine says. */
    const run = (actions: SessionAction[]): void => {
      for (const a of actions) {
        try {
          act(a);
        } catch (e) {
          run(machine.close(e instanceof FrameError ? `${peer} sent a bad frame: ${e.message}` : (e as Error).message));
        }
      }
    };
    const act = (a: SessionAction): void => {
      switch (a.type) {
        case 'send':
          pacer.control(atVersion(a.parts, machine.version));
          return;
        case 'close':
          if (a.level !== null) host.log[a.level]({ peer }, `link to ${peer} closed: ${a.reason}`);
          if (a.afterMs !== undefined) {
            setTimeout(() => { pacer.close(); socket.destroy(); }, a.afterMs);
            return;
          }
          pacer.close();
          socket.destroy();
          return;
        case 'refused':
          if (a.byPeer) host.log.error({ peer }, `${peer} refused the link: ${a.message} (${a.code})`);
          else host.log.error({ peer }, `link to ${peer} refused: ${a.message}`);
          host.refused(peer, a);
          return;
        case 'up':
          decoder.settle(a.version);
          host.up(s, a.check, a.version);
          return;
        case 'records': {
          const lease = intake.leaseOf(a.frame);
          const rp = host.replica(a.volume);
          const owned = a.owned;
          if (!rp) {
            owned?.give();
            lease();
            return s.close(`${peer} sent records for ${a.volume}, which is not a replica here`);
          }
          void rp.receive(a.records, lease, () => owned?.give()).catch((e: Error) => s.close(`applying records for ${a.volume}: ${e.message}`));
          return;
        }
        case 'unpack': {
          // Its head and the zstd frame's header are checked here (no allocation); the
          // decompression, bounded to the declared size, runs in a worker.
          const lease = intake.leaseOf(a.payload);
          const owned = a.owned;
          let packed;
          try {
            packed = parsePackedRecordsFrame(a.payload);
          } catch (e) {
            owned?.give();
            lease();
            throw e;
          }
          const volume = packed.volume;
          const rp = host.replica(volume);
          if (!rp) {
            owned?.give();
            lease();
            return s.close(`${peer} sent records for ${volume}, which is not a replica here`);
          }
          const same = whilePaired(volume);
          decodePackedRecordsFrameOff(packed, host.unpackPool(), frameBuffers).then(({ records, owned: unpacked }) => {
            // (Its records are views of the node's buffer `unpacked`: the worker unpacked a copy, and
            // payloads that went raw were copied out with their headers, src/compress/codec.ts.
            // The frame is read no more; `unpacked` goes back once the receive log wrote them.)
            owned?.give();
            if (machine.closed || !same()) {
              // (The volume's pairing ended meanwhile, a VolumeHello: its records are of that pairing, and go.)
              unpacked?.give();
              lease();
            } else void rp.receive(records, lease, () => unpacked?.give()).catch((e: Error) => s.close(`applying records for ${volume}: ${e.message}`));
            if (machine.closed) return;
            run(machine.handle({ type: 'unpacked' }));
          }, (e: Error) => {
            owned?.give();
            lease();
            s.close(e instanceof FrameError ? `${peer} sent a bad frame: ${e.message}` : `unpacking records for ${volume}: ${e.message}`);
          });
          return;
        }
        case 'resync': {
          const rp = host.replica(a.volume);
          if (!rp) return s.close(`${peer} opened a resync round for ${a.volume}, which is not a replica here`);
          void rp.openRound(a.startSeq).catch((e: Error) => s.close(`opening the resync round of ${a.volume}: ${e.message}`));
          return;
        }
        case 'hashRequest': {
          const r = a.request;
          const rp = host.replica(r.volume);
          if (!rp) return s.close(`${peer} asked for hashes of ${r.volume}, which is not a replica here`);
          const same = whilePaired(r.volume);
          void rp.hashRegions(regionHashOf(machine.version), r.regionSize, r.first, r.count, same, r.afterSeq ?? 0).then(
            (hashes) => {
              if (hashes && same()) s.send(encodeHashReply(r, hashes));
            },
            (e: Error) => s.close(`hashing ${r.volume}: ${e.message}`),
          );
          return;
        }
        case 'hashReply':
          host.shipper(a.reply.volume, peer)?.hashReply(a.reply.first, a.reply.regionSize, a.reply.hashes);
          return;
        case 'mapRequest': {
          const r = a.request;
          const rp = host.replica(r.volume);
          if (!rp) return s.close(`${peer} asked for the holes of ${r.volume}, which is not a replica here`);
          const same = whilePaired(r.volume);
          void rp.mapHoles(r.offset, r.length, MAX_MAP_HOLES, same).then(
            (map) => {
              if (map && same()) s.send(encodeMapReply({ volume: r.volume, offset: r.offset, ...map }));
            },
            (e: Error) => s.close(`mapping the holes of ${r.volume}: ${e.message}`),
          );
          return;
        }
        case 'mapReply':
          host.shipper(a.reply.volume, peer)?.mapReply(a.reply.offset, a.reply.covered, a.reply.holes);
          return;
        case 'hold':
          host.shipper(a.hold.volume, peer)?.peerHold(a.hold.held, a.hold.resumeAfter);
          return;
        case 'ack':
          host.shipper(a.volume, peer)?.ack(a.seq);
          return;
        case 'pauseReading':
          intake.pause('unpacking', true);
          return;
        case 'resumeReading':
          intake.pause('unpacking', false);
          return;
        case 'dropped':
          // (A records frame's lease and gathered buffer go back; other frames hold none.)
          intake.leaseOf(a.frame.payload)();
          a.frame.owned?.give();
          return;
        case 'volumeDown':
          host.volumeDown(s, a.volume);
          return;
        case 'volumeUp':
          host.volumeUp(s, a.volume, a.outcome);
          return;
        case 'droppedBeforeHello':
          // A TLS 1.3 client finishes its handshake before the server has checked its
          // certificate, so a peer that does not pin this node hangs up right after it,
          // with no Refuse: that is the likely cause of a drop before any Hello came.
          host.log.warn({ peer }, `link to ${peer} dropped before its Hello: does ${peer} pin this node's fingerprint (${host.fingerprint})?`);
          return;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      const now = Date.now();
      run(machine.handle({ type: 'heard', now }));
      decoder.push(chunk);
      try {
        for (let f = decoder.next(); f && !machine.closed; f = decoder.next()) intake.arrive(f);
      } catch (e) {
        s.close(e instanceof FrameError ? `${peer} sent a bad frame: ${e.message}` : (e as Error).message);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      clearInterval(meter);
      pacer.close();
      intake.close();
      run(machine.handle({ type: 'closed' }));
      host.closed(s);
      resolve({ up: machine.up && machine.refused === null, refused: machine.refused });
    });
    run(machine.handle({ type: 'open', now: Date.now() }));
  });
}

/**
 * The memory a frame from the peer holds until its records are logged: a Records
 * frame its payload; a PackedRecords frame its payload and what it unpacks to (as its
 * head declares; a head that does not parse is refused when the frame is taken, and
 * holds only its bytes until then). Other frames take no lease.
 */
function recordFrameBytes(f: Frame): number {
  if (f.type === FrameType.Records) return f.payload.length;
  if (f.type !== FrameType.PackedRecords) return 0;
  try {
    return f.payload.length + parsePackedRecordsFrame(f.payload).unpackedSize;
  } catch {
    return f.payload.length;
  }
}
