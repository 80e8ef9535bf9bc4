// The link manager: one TLS link per peer, Hello, then frames between each primary
// volume's shipper and the peer's replica. Reconnects forever with capped backoff;
// a silent peer is declared dead after `deadAfterMs`.
import type tls from 'node:tls';
import type { Config } from '../config/config.js';
import { formatDuration } from '../units/units.js';
import type { Logger } from '../log/log.js';
import type { JournaledVolume } from '../journal/write-path.js';
import { FrameDecoder, FrameError, FrameType, PROTOCOL_RANGE, atVersion, encodeAck, encodeHold, encodeHashReply, encodeMapReply, MAX_MAP_HOLES, type Frame, type ProtocolRange } from '../link/frame.js';
import type { HelloCheck, HelloVolume } from '../link/hello.js';
import type { Identity } from '../link/identity.js';
import { decodePackedRecordsFrameOff, parsePackedRecordsFrame } from '../compress/codec.js';
import { Packer, emptyPackStats, type PackStats } from '../compress/packer.js';
import { CompressionPool } from '../compress/pool.js';
import { MemoryBudget } from '../memory/budget.js';
import { FrameIntake } from '../memory/intake.js';
import { formatCompression, type Compression } from '../compress/setting.js';
import type { JournalRecord } from '../journal/record.js';
import { DEFAULT_SHIPPING, VolumeShipper } from '../link/volume-shipper.js';
import type { VerifyRun } from '../sync/verify.js';
import { LinkListener, connectLink, type PinnedPeer } from '../link/tls.js';
import { parseListenAddress } from '../export/listen-address.js';
import { LinkCapacity, socketAllowance } from '../rate/capacity.js';
import { Pacer } from '../rate/pacer.js';
import { effectiveWeight, shareOf, type FrameClass } from '../rate/scheduler.js';
import { formatRate, rateAt } from '../rate/rate.js';
import { RateMeter } from '../rate/meter.js';
import type { Replica } from '../secondary/replica.js';
import type { VolumeIdentity } from '../volume/identity.js';
import { MEMORY_BUDGET_BYTES, epochBytesFor } from '../limits/limits.js';
import { PeerSession, type SessionAction } from '../link/peer-session.js';

/**
 * The dialer's wait before redialling: from MIN_BACKOFF_MS, doubling after every
 * attempt that did not bring the link up (no answer, a TLS failure, a link dropped or
 * refused before both Hellos passed), up to MAX_BACKOFF_MS. A refusal after Hello
 * (sizes, two primaries, ...) needs the operator: redialling every half second only
 * repeated it in both logs twice a second.
 */
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;

export interface LinkVolumes {
  primaries: Map<string, JournaledVolume>;
  replicas: Map<string, Replica>;
  identities: Map<string, VolumeIdentity>;
}

interface Session {
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
}

export class LinkManager {
  private listener: LinkListener | null = null;
  private stopping = false;
  private readonly sessions = new Map<string, Session>();
  /** Per peer this node dials: cuts the wait before the next dial short, with the backoff back at its start. */
  private readonly redialNow = new Map<string, () => void>();
  private readonly shippers = new Map<string, VolumeShipper>();
  private ticker: NodeJS.Timeout | null = null;
  /** The peer was promoted after this node's last write to `volume` (a failback is due). */
  onPeerPromoted: ((volume: string) => void) | null = null;
  /** A link to `peer` was refused, by this side or the peer; `code` as in the Refuse frame ("split-brain", ...). */
  onRefused: ((peer: string, code: string, message: string) => void) | null = null;
  /** The protocol versions this node offers in Hello (tests try other ranges). */
  protocol: ProtocolRange = PROTOCOL_RANGE;

  constructor(
    private readonly config: Config,
    private readonly identity: Identity,
    private readonly volumes: LinkVolumes,
    private readonly log: Logger,
    /** The node's memory budget (src/memory/budget.ts): shippers' batches and the peers' frames draw from it. */
    readonly memory: MemoryBudget = new MemoryBudget(config.memory ?? MEMORY_BUDGET_BYTES),
  ) {}

  private pinned(): PinnedPeer[] {
    return this.config.peers.filter((p) => p.fingerprint).map((p) => ({ name: p.name, fingerprint: p.fingerprint! }));
  }

  /** The volumes this node shares with `peer`, as Hello describes them. */
  private shared(peer: string): HelloVolume[] {
    // (A volume changing role is in neither map: the peer hears nothing of it until it is done.)
    return this.config.volumes.filter((v) => v.peer === peer && (this.volumes.primaries.has(v.name) || this.volumes.replicas.has(v.name))).map((v) => {
      const jv = this.volumes.primaries.get(v.name);
      const rp = this.volumes.replicas.get(v.name);
      const id = this.volumes.identities.get(v.name);
      return {
        name: v.name, uuid: id?.uuid ?? '', size: (jv ?? rp)?.size ?? 0, role: jv ? 'primary' : 'secondary', generation: id?.generations ?? [],
        durableSeq: rp ? rp.receiver.resumeAfter : jv ? jv.journal.released : 0,
        logBytes: rp ? rp.log.capacity : jv ? jv.journal.capacity : 0,
        round: rp ? rp.roundStart : jv ? jv.roundStart : 0,
        changedBytes: jv ? jv.journal.backlogBytes + jv.bitmap.count * jv.bitmap.regionSize : 0,
      };
    });
  }

  /** Bytes of Records frames sent for `volume` since the daemon started. */
  wireBytes(volume: string): number {
    return this.wireSent.get(volume) ?? 0;
  }

  /** Bytes the pacers wrote to sockets, per volume. */
  private readonly wireSent = new Map<string, number>();

  /** What packing did to each volume's batches since the daemon started (compression and zero figures). */
  packStats(volume: string): PackStats {
    let st = this.packed.get(volume);
    if (!st) this.packed.set(volume, (st = emptyPackStats()));
    return st;
  }

  private readonly packed = new Map<string, PackStats>();

  /** The zstd workers, for a peer's PackedRecords frames (made at the first, whatever this node's own compression setting). */
  private unpackPool(): CompressionPool {
    return (this.pool ??= new CompressionPool());
  }
  /** Per volume: host writes, journal records shipped and wire bytes, as rates (sampled each second). */
  private readonly meters = new Map<string, { host: RateMeter; records: RateMeter; wire: RateMeter }>();
  private meterTimer: NodeJS.Timeout | null = null;

  coalesceOn(peer: string): boolean {
    return this.config.peers.find((p) => p.name === peer)?.coalesce ?? true;
  }

  /** The window a volume's shipper keeps in flight now (bytes; null: no shipper yet). */
  windowOf(volume: string): number | null {
    return this.shippers.get(volume)?.windowBytes ?? null;
  }

  /** A volume's durable-ack round trip (ms; null: no shipper, or no batch acked yet). */
  ackRttOf(volume: string): number | null {
    return this.shippers.get(volume)?.ackRttMs ?? null;
  }

  /** The lag an operator reads: the age of the oldest write a promote at the peer would lose now (ms; null: no shipper). */
  lagMsOf(volume: string, now: number): number | null {
    return this.shippers.get(volume)?.lagMs(now) ?? null;
  }

  /** The volume's batch size now (null: no shipper). */
  batchOf(volume: string): number | null {
    return this.shippers.get(volume)?.batchBytes ?? null;
  }

  /** What the link to `peer` carries when it is the bottleneck (bytes per second; null: unknown or down). */
  capacityOf(peer: string): number | null {
    return this.sessions.get(peer)?.capacity.estimate(this.rateNow(peer)) ?? null;
  }

  /** Records a volume's shipper sent as Skip records (coalescing), and their payload bytes. */
  coalescedOf(volume: string): { records: number; bytes: number } {
    const sh = this.shippers.get(volume);
    return { records: sh?.coalescedRecords ?? 0, bytes: sh?.coalescedBytes ?? 0 };
  }

  /** Rates of a primary volume (bytes per second, smoothed over about 5 s). */
  ratesOf(volume: string): { host: number; records: number; wire: number } {
    const m = this.meters.get(volume);
    return { host: m?.host.rate ?? 0, records: m?.records.rate ?? 0, wire: m?.wire.rate ?? 0 };
  }

  private sampleRates(now = Date.now()): void {
    for (const [name, jv] of this.volumes.primaries) {
      let m = this.meters.get(name);
      if (!m) this.meters.set(name, (m = { host: new RateMeter(), records: new RateMeter(), wire: new RateMeter() }));
      m.host.sample(now, jv.journal.hostBytes);
      m.records.sample(now, this.packStats(name).recordBytes + this.coalescedOf(name).bytes);
      m.wire.sample(now, this.wireBytes(name));
      // The shipper's window follows the link's bandwidth-delay product (src/link/window.ts).
      // It counts record bytes: uncapped, the rate is the faster of records and wire
      // (compression makes the records' the larger).
      const sh = this.shippers.get(name);
      const peer = this.config.volumes.find((v) => v.name === name)?.peer;
      if (sh?.session && peer) {
        const cap = this.rateNow(peer, now);
        sh.linkMeasured(cap ?? Math.max(m.wire.rate, m.records.rate), this.rttOf(peer), this.sessions.get(peer)?.capacity.estimate(cap) ?? null);
      }
    }
  }
  /** zstd workers shared by every link (null: every peer has compression: off). */
  private pool: CompressionPool | null = null;
  private fallbackSaidAt = 0;

  /** The link's compression setting and the zstd level its batches get now (0: none; null: no link). */
  compressionOf(peer: string): { setting: Compression; level: number | null } {
    const setting = this.config.peers.find((p) => p.name === peer)?.compression ?? { mode: 'auto' as const };
    const s = this.sessions.get(peer);
    return { setting, level: s?.packer ? s.packer.level : null };
  }

  /** The peer's rate cap now (bytes per second; null: none), schedule included. */
  rateNow(peer: string, now = Date.now()): number | null {
    const p = this.config.peers.find((x) => x.name === peer);
    if (!p) return null;
    return rateAt(p.rate ?? null, p.schedule, now);
  }

  /**
   * A reloaded config: rates, schedules and weights take effect at once, without
   * reconnecting. Anything else needs a restart (said in the log).
   */
  reload(next: Config): string[] {
    const notes: string[] = [];
    for (const p of this.config.peers) {
      const q = next.peers.find((x) => x.name === p.name);
      if (!q) {
        notes.push(`peer ${p.name} is gone from the config: restart to drop it`);
        continue;
      }
      if (p.rate !== q.rate || JSON.stringify(p.schedule) !== JSON.stringify(q.schedule)) {
        notes.push(`peer ${p.name}: rate ${q.rate ? formatRate(q.rate) : 'unlimited'}${q.schedule.length ? `, ${q.schedule.length} scheduled windows` : ''}`);
      }
      p.rate = q.rate;
      p.schedule = q.schedule;
      if (JSON.stringify(p.compression) !== JSON.stringify(q.compression)) notes.push(`peer ${p.name}: compression ${formatCompression(q.compression)}`);
      p.compression = q.compression;
      if (p.coalesce !== q.coalesce) notes.push(`peer ${p.name}: coalescing ${q.coalesce ? 'on' : 'off'}`);
      p.coalesce = q.coalesce;
      if (q.compression.mode !== 'off' && this.sessions.get(p.name)) this.pool ??= new CompressionPool();
    }
    for (const v of this.config.volumes) {
      const w = next.volumes.find((x) => x.name === v.name);
      if (w && w.weight !== v.weight) {
        notes.push(`volume ${v.name}: weight ${w.weight}`);
        v.weight = w.weight;
      }
      if (w && w.priority !== v.priority) {
        notes.push(`volume ${v.name}: priority ${w.priority}`);
        v.priority = w.priority;
      }
    }
    return notes;
  }

  /** Starts an online verify of a primary volume with its peer (throws why it cannot). */
  verify(volume: string, repair: boolean): VerifyRun {
    const sh = this.shippers.get(volume);
    if (!sh) throw new Error(`volume ${volume} has not linked with its peer since the daemon started; verify waits for the link`);
    return sh.startVerify(repair);
  }

  verifyOf(volume: string): VerifyRun | null {
    return this.shippers.get(volume)?.verify ?? null;
  }

  /** Stops shipping `volume` (the host keeps writing; the journal keeps the backlog). */
  pause(volume: string, paused: boolean): boolean {
    const sh = this.shippers.get(volume);
    sh?.pause(paused);
    return sh !== undefined;
  }

  isPaused(volume: string): boolean {
    return this.pausedVolumes.has(volume);
  }

  /** Volumes paused by the operator (kept across links; the daemon restores them at start). */
  readonly pausedVolumes = new Set<string>();

  linkState(peer: string): string {
    return this.sessions.has(peer) ? 'connected' : 'disconnected';
  }

  /** The link's measured round trip (ms, from heartbeat echoes; null: not measured or no link). */
  rttOf(peer: string): number | null {
    const r = this.sessions.get(peer)?.machine.rttMs;
    return r === null || r === undefined ? null : Math.round(r * 10) / 10;
  }

  /** Arms the volume's first write while apart from its peer to start a new generation. */
  private armApart(name: string): void {
    const jv = this.volumes.primaries.get(name);
    const id = this.volumes.identities.get(name);
    if (!jv || !id) return;
    const peer = this.config.volumes.find((v) => v.name === name)?.peer ?? 'its peer';
    jv.apart = () => {
      // Once per time apart: a generation the peer never saw needs no successor.
      if (!id.shared) return;
      try {
        const g = id.newGeneration();
        this.log.info({ volume: name }, `volume ${name}: writes while apart from ${peer} begin generation ${g}`);
      } catch (e) {
        this.log.error({ volume: name }, `volume ${name}: cannot record a new generation: ${(e as Error).message}`);
      }
    };
  }

  async start(): Promise<void> {
    for (const name of this.volumes.primaries.keys()) this.armApart(name);
    this.meterTimer = setInterval(() => this.sampleRates(), 1000);
    this.meterTimer.unref();
    if (this.config.link) {
      this.listener = new LinkListener({
        identity: this.identity, peers: this.pinned(), log: this.log,
        onLink: ({ socket, peer }) => this.session(socket, peer.name, false),
      });
      await this.listener.listen(this.config.link);
    }
    for (const p of this.config.peers) {
      const sharesVolumes = this.config.volumes.some((v) => v.peer === p.name);
      // One connection per pair: the node whose name sorts first dials.
      if (sharesVolumes && this.config.node < p.name) void this.dial(p.name);
    }
  }

  private async dial(peer: string): Promise<void> {
    const p = this.config.peers.find((x) => x.name === peer)!;
    let backoff = MIN_BACKOFF_MS;
    let lastError = '';
    while (!this.stopping) {
      if (!this.sessions.has(peer)) {
        try {
          if (!p.fingerprint) throw new Error(`peers.${peer}.fingerprint is not set (run offsite init on ${peer} and copy its fingerprint)`);
          const addr = parseListenAddress(p.address);
          if (addr.kind !== 'tcp') throw new Error('peer address must be host:port');
          const socket = await connectLink({ identity: this.identity, peer: { name: peer, fingerprint: p.fingerprint }, host: addr.host, port: addr.port });
          const link = await this.session(socket, peer, true);
          if (link.up) {
            backoff = MIN_BACKOFF_MS;
            lastError = '';
          } else {
            // TLS worked, the link did not: refused at Hello (said by the session, with
            // its reason, once per attempt) or dropped before it. Like any failure.
            this.log.debug({ peer }, `link to ${peer}: ${link.refused ?? 'dropped before Hello'}; next dial in ${formatDuration(backoff / 1000)}`);
            backoff = (await this.backoff(peer, backoff)) ? MIN_BACKOFF_MS : Math.min(MAX_BACKOFF_MS, backoff * 2);
            continue;
          }
        } catch (e) {
          const msg = (e as Error).message;
          // Say each distinct failure once at warn; repeats go to debug.
          (msg !== lastError ? this.log.warn : this.log.debug).call(this.log, { peer }, `link to ${peer} at ${p.address}: ${msg}; retrying (backoff up to ${formatDuration(MAX_BACKOFF_MS / 1000)})`);
          lastError = msg;
          backoff = (await this.backoff(peer, backoff)) ? MIN_BACKOFF_MS : Math.min(MAX_BACKOFF_MS, backoff * 2);
          continue;
        }
      }
      await sleep(backoff);
    }
  }

  /**
   * Waits `ms` before the next dial to `peer`; resolves true when a change on this
   * node cut the wait short (a promote or demote here may have cleared what the peer
   * refused: the operator should not wait out 30 s of backoff for it).
   */
  private backoff(peer: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.redialNow.delete(peer);
        resolve(false);
      }, ms);
      this.redialNow.set(peer, () => {
        clearTimeout(timer);
        this.redialNow.delete(peer);
        resolve(true);
      });
    });
  }

  /**
   * Runs one link until it closes: the socket, timers and workers around the link's
   * state machine (src/link/peer-session.ts), which decides everything else. Resolves
   * `up`: both Hellos passed and neither side refused (the dialer then redials at once
   * if it drops; otherwise it backs off), and `refused`: the refusal's reason, if any.
   */
  private session(socket: tls.TLSSocket, peer: string, initiator: boolean): Promise<{ up: boolean; refused: string | null }> {
    const old = this.sessions.get(peer);
    if (old) old.close('replaced by a new connection');
    return new Promise((resolve) => {
      const decoder = new FrameDecoder(this.protocol);
      const machine = new PeerSession({
        node: this.config.node, peer, initiator, speaks: this.protocol,
        deadAfterMs: (this.config.peers.find((p) => p.name === peer)?.timeout ?? 5) * 1000,
        shared: () => this.shared(peer),
        pairedWith: (volume) => this.config.volumes.find((v) => v.name === volume)?.peer,
      });
      const pacer = new Pacer({
        write: (b) => socket.write(b),
        rate: () => this.rateNow(peer),
        now: Date.now,
        later: (ms, f) => setTimeout(f, ms).unref(),
        onWritten: (volume, n) => {
          this.wireSent.set(volume, (this.wireSent.get(volume) ?? 0) + n);
          s.wireBytes += n;
        },
        buffered: () => socket.writableLength,
        onDrain: (f) => socket.once('drain', f),
        maxBuffered: () => socketAllowance(s.capacity.estimate(this.rateNow(peer))),
      });
      let ended = false;
      // Records frames take their bytes from the node's budget as they arrive, in order;
      // while one waits, the socket is not read (the peer's bytes wait in the kernel and
      // on the link, not here). Released once the receive log has written the records.
      const intake = new FrameIntake<Frame>(this.memory, {
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
      const s: Session = {
        peer, socket, machine, pacer, packer: null, wireBytes: 0, capacity: new LinkCapacity(),
        get closed() { return machine.closed; },
        send: (parts) => {
          if (!machine.closed) pacer.control(atVersion(parts, machine.version));
        },
        close: (reason, level = 'warn') => run(machine.close(reason, level)),
      };
      // How busy the link is (data waiting for it), sampled 4 times a second; the
      // packer's auto level follows it once a second.
      // The capacity counts seconds in which records always waited to go out: a frame
      // in the pacer, bytes in node's socket buffer (the kernel's is full), or a
      // shipper whose window is full or whose oldest batch in flight is over a second
      // old (what it sent waits in the kernel's buffer, which holds seconds of a slow
      // line, or on the line itself).
      const queued = (): boolean => {
        for (const sh of this.shippers.values()) if (sh.session?.link === s && (sh.windowFull || sh.unackedAgeMs() > 1000)) return true;
        return false;
      };
      let busySamples = 0;
      let saturatedSamples = 0;
      let samples = 0;
      const meter = setInterval(() => {
        if (pacer.pending() > 0 || socket.writableLength >= socketAllowance(s.capacity.estimate(this.rateNow(peer)))) busySamples++;
        if (pacer.active() || socket.writableLength > 0 || queued()) saturatedSamples++;
        if (++samples < 4) return;
        s.packer?.observe(busySamples / samples);
        s.capacity.observe(Date.now(), s.wireBytes - socket.writableLength, saturatedSamples / samples, this.rateNow(peer));
        busySamples = saturatedSamples = samples = 0;
      }, 250);
      meter.unref();
      const timer = setInterval(() => run(machine.handle({ type: 'tick', now: Date.now() })), machine.heartbeatMs);

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
            if (a.level !== null) this.log[a.level]({ peer }, `link to ${peer} closed: ${a.reason}`);
            if (a.afterMs !== undefined) {
              setTimeout(() => { pacer.close(); socket.destroy(); }, a.afterMs);
              return;
            }
            pacer.close();
            socket.destroy();
            return;
          case 'refused':
            if (a.byPeer) this.log.error({ peer }, `${peer} refused the link: ${a.message} (${a.code})`);
            else this.log.error({ peer }, `link to ${peer} refused: ${a.message}`);
            this.onRefused?.(peer, a.code, a.message);
            if (!a.byPeer && a.code === 'peer-promoted' && a.volume) this.onPeerPromoted?.(a.volume);
            return;
          case 'up':
            decoder.settle(a.version);
            this.linkUp(s, a.check, a.version);
            return;
          case 'records': {
            const lease = intake.leaseOf(a.frame);
            const rp = this.volumes.replicas.get(a.volume);
            if (!rp) {
              lease();
              return s.close(`${peer} sent records for ${a.volume}, which is not a replica here`);
            }
            void rp.receive(a.records, lease).catch((e: Error) => s.close(`applying records for ${a.volume}: ${e.message}`));
            return;
          }
          case 'unpack': {
            // Its head and the zstd frame's header are checked here (no allocation); the
            // decompression, bounded to the declared size, runs in a worker.
            const lease = intake.leaseOf(a.payload);
            let packed;
            try {
              packed = parsePackedRecordsFrame(a.payload);
            } catch (e) {
              lease();
              throw e;
            }
            const volume = packed.volume;
            const rp = this.volumes.replicas.get(volume);
            if (!rp) {
              lease();
              return s.close(`${peer} sent records for ${volume}, which is not a replica here`);
            }
            decodePackedRecordsFrameOff(packed, this.unpackPool()).then(({ records }) => {
              if (machine.closed) return lease();
              void rp.receive(records, lease).catch((e: Error) => s.close(`applying records for ${volume}: ${e.message}`));
              run(machine.handle({ type: 'unpacked' }));
            }, (e: Error) => {
              lease();
              s.close(e instanceof FrameError ? `${peer} sent a bad frame: ${e.message}` : `unpacking records for ${volume}: ${e.message}`);
            });
            return;
          }
          case 'resync': {
            const rp = this.volumes.replicas.get(a.volume);
            if (!rp) return s.close(`${peer} opened a resync round for ${a.volume}, which is not a replica here`);
            void rp.openRound(a.startSeq).catch((e: Error) => s.close(`opening the resync round of ${a.volume}: ${e.message}`));
            return;
          }
          case 'hashRequest': {
            const r = a.request;
            const rp = this.volumes.replicas.get(r.volume);
            if (!rp) return s.close(`${peer} asked for hashes of ${r.volume}, which is not a replica here`);
            void rp.hashRegions(r.regionSize, r.first, r.count, () => !machine.closed, r.afterSeq ?? 0).then(
              (hashes) => {
                if (hashes) s.send(encodeHashReply(r, hashes));
              },
              (e: Error) => s.close(`hashing ${r.volume}: ${e.message}`),
            );
            return;
          }
          case 'hashReply':
            this.shippers.get(a.reply.volume)?.hashReply(a.reply.first, a.reply.regionSize, a.reply.hashes);
            return;
          case 'mapRequest': {
            const r = a.request;
            const rp = this.volumes.replicas.get(r.volume);
            if (!rp) return s.close(`${peer} asked for the holes of ${r.volume}, which is not a replica here`);
            void rp.mapHoles(r.offset, r.length, MAX_MAP_HOLES, () => !machine.closed).then(
              (map) => {
                if (map) s.send(encodeMapReply({ volume: r.volume, offset: r.offset, ...map }));
              },
              (e: Error) => s.close(`mapping the holes of ${r.volume}: ${e.message}`),
            );
            return;
          }
          case 'mapReply':
            this.shippers.get(a.reply.volume)?.mapReply(a.reply.offset, a.reply.covered, a.reply.holes);
            return;
          case 'hold':
            this.shippers.get(a.hold.volume)?.peerHold(a.hold.held, a.hold.resumeAfter);
            return;
          case 'ack':
            this.shippers.get(a.volume)?.ack(a.seq);
            return;
          case 'pauseReading':
            intake.pause('unpacking', true);
            return;
          case 'resumeReading':
            intake.pause('unpacking', false);
            return;
          case 'droppedBeforeHello':
            // A TLS 1.3 client finishes its handshake before the server has checked its
            // certificate, so a peer that does not pin this node hangs up right after it,
            // with no Refuse: that is the likely cause of a drop before any Hello came.
            this.log.warn({ peer }, `link to ${peer} dropped before its Hello: does ${peer} pin this node's fingerprint (${this.identity.fingerprint})?`);
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
        if (this.sessions.get(peer) === s) {
          this.sessions.delete(peer);
          for (const sh of this.shippers.values()) if (sh.session?.link === s) sh.down();
          for (const v of this.config.volumes) if (v.peer === peer) this.armApart(v.name);
          for (const v of this.config.volumes) if (v.peer === peer) this.volumes.replicas.get(v.name)?.detach();
        }
        resolve({ up: machine.up && machine.refused === null, refused: machine.refused });
      });
      run(machine.handle({ type: 'open', now: Date.now() }));
    });
  }

  /** Both Hellos passed: the link joins the node's links, and each shared volume is wired to it. */
  private linkUp(s: Session, check: Extract<HelloCheck, { ok: true }>, version: number): void {
    const peer = s.peer;
    const setting = (): Compression => this.config.peers.find((p) => p.name === peer)?.compression ?? { mode: 'auto' };
    if (setting().mode !== 'off') this.pool ??= new CompressionPool();
    s.packer = new Packer({
      pool: this.pool, setting, peerZstd: check.hello.codecs?.includes('zstd') ?? false,
      stats: (v) => this.packStats(v),
      onFallback: (why) => {
        if (Date.now() - this.fallbackSaidAt < 60_000) return;
        this.fallbackSaidAt = Date.now();
        this.log.warn({ peer }, `link to ${peer}: a batch went uncompressed (${why}); shipping goes on`);
      },
    });
    this.sessions.set(peer, s);
    this.log.info({ peer, protocol: version }, `link to ${peer} up`);
    for (const { local, remote } of check.pairs) {
      if (local.role === 'primary') {
        const jv = this.volumes.primaries.get(local.name);
        if (!jv) continue;
        // The secondary applies whole epochs out of its receive log: keep them to a quarter of it.
        jv.maxEpochBytes = Math.min(jv.maxEpochBytes, epochBytesFor(Infinity, remote.logBytes));
        // A peer with nothing in its receive log and no round open (a new replica, or
        // an old primary just demoted) gets a first sync: every region compared by hash.
        jv.apart = null;
        try {
          this.volumes.identities.get(local.name)?.markShared();
        } catch (e) {
          this.log.error({ volume: local.name }, `volume ${local.name}: cannot record that the peer holds this generation: ${(e as Error).message}`);
        }
        const sh = this.shipperFor(local.name, jv);
        sh.fitWindow(remote.logBytes);
        const cfg = this.config.volumes.find((v) => v.name === local.name);
        const paced = {
          link: s,
          send: (parts: Buffer[], cls?: FrameClass) => {
            if (!s.closed) s.pacer.send(local.name, cfg?.weight ?? 1, atVersion(parts, s.machine.version), { priority: cfg?.priority, cls });
          },
          drop: () => s.pacer.drop(local.name),
          encode: (records: JournalRecord[]) => s.packer!.encode(local.name, records),
          close: (why: string) => s.close(why),
          version: s.machine.version,
        };
        sh.up(paced, remote.durableSeq, remote.round, remote.durableSeq === 0 && remote.round === 0);
      } else {
        // The secondary takes the primary's volume identity (its UUID and generations).
        try {
          this.volumes.identities.get(local.name)?.adopt(remote.uuid, remote.generation);
          this.volumes.identities.get(local.name)?.markShared();
        } catch (e) {
          this.log.error({ volume: local.name }, `volume ${local.name}: cannot record the primary's identity: ${(e as Error).message}`);
        }
        const rp = this.volumes.replicas.get(local.name);
        rp?.attach({ ack: (seq) => s.send(encodeAck(local.name, seq)), hold: (held, after) => s.send(encodeHold(local.name, after, held)), close: (why) => s.close(why) })
          .catch((e: Error) => s.close(`volume ${local.name}: attaching the replica failed: ${e.message}`));
      }
    }
  }

  /**
   * A volume changed role here (promote, demote): its shipper goes, and the link to
   * its peer is closed so the next Hello describes the new roles.
   */
  volumeChanged(name: string, reason: string): void {
    const sh = this.shippers.get(name);
    if (sh) {
      sh.down();
      this.shippers.delete(name);
    }
    this.volumes.replicas.get(name)?.detach();
    // Out of both maps until the change is done: a link that comes back meanwhile neither
    // attaches the old replica nor ships from the old journal.
    this.volumes.replicas.delete(name);
    this.volumes.primaries.delete(name);
    const peer = this.config.volumes.find((v) => v.name === name)?.peer;
    if (peer) this.sessions.get(peer)?.close(reason);
  }

  /** The change is done (the maps hold the volume in its new role): the next Hello says so. */
  volumeReady(name: string, reason: string): void {
    const peer = this.config.volumes.find((v) => v.name === name)?.peer;
    if (peer) this.sessions.get(peer)?.close(reason);
    if (peer) this.redialNow.get(peer)?.();
  }

  /**
   * `volume`'s share of its link now (0..1): its weight and priority against those of
   * the link's other volumes with something to send (scheduler.ts's shareOf). It sizes
   * the volume's batches: several volumes with a backlog each get a turn within about
   * a second (docs/LINK.md).
   */
  shareOf(volume: string): number {
    const sh = this.shippers.get(volume);
    const link = sh?.session?.link;
    if (!sh || !link) return 1;
    const weightOf = (name: string): number => {
      const v = this.volumeConfig(name);
      return effectiveWeight(v?.weight ?? 1, v?.priority ?? 'normal');
    };
    const others: number[] = [];
    for (const [name, x] of this.shippers) if (x !== sh && x.session?.link === link && x.wantsLink) others.push(weightOf(name));
    return others.length === 0 ? 1 : shareOf(weightOf(volume), others);
  }

  /** A volume's config by name (a map rebuilt when the list changes: asked at every read of every shipper). */
  private volumeConfig(name: string): Config['volumes'][number] | undefined {
    if (this.byName?.list !== this.config.volumes) this.byName = { list: this.config.volumes, map: new Map(this.config.volumes.map((v) => [v.name, v])) };
    return this.byName.map.get(name);
  }

  private byName: { list: Config['volumes']; map: Map<string, Config['volumes'][number]> } | null = null;

  private shipperFor(name: string, jv: JournaledVolume): VolumeShipper {
    let sh = this.shippers.get(name);
    if (!sh) {
      const peer = this.config.volumes.find((v) => v.name === name)?.peer;
      const coalesce = (): boolean => this.config.peers.find((p) => p.name === peer)?.coalesce ?? true;
      sh = new VolumeShipper(name, jv, this.log, { ...DEFAULT_SHIPPING, now: Date.now, coalesce, memory: this.memory });
      if (this.pausedVolumes.has(name)) sh.pause(true);
      if (peer) sh.rate = () => this.rateNow(peer);
      sh.share = () => this.shareOf(name);
      this.shippers.set(name, sh);
      this.ticker ??= setInterval(() => {
        for (const x of this.shippers.values()) x.tick();
      }, 50);
    }
    return sh;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of [...this.redialNow.values()]) wake(); // dialers waiting out a backoff end now
    if (this.ticker) clearInterval(this.ticker);
    if (this.meterTimer) clearInterval(this.meterTimer);
    for (const s of this.sessions.values()) s.close('node stopping');
    await this.listener?.close();
    await this.pool?.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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
