// The seeded simulation of replication: the primary's journal and write path, the
// shipper (state machine and its adapter), the link (real frames, real checksums),
// the receiver, the receive log and apply on the secondary. One seed is one
// schedule of host writes, flushes, I/O completion orders, link cuts, stalls,
// flipped bytes, full disks, and kill -9 / power loss of either side.
//
// A third of the seeds run three sites: the primary ships to site-b and site-c, each
// with its own link, faults and crashes, and site-c has long outages, so the primary
// detaches it into a bitmap of its own and joins it again (docs/PEERS.md); every
// check below holds for each secondary. In the odd ones a secondary whose Hello says it
// holds nothing is a new secondary, as in the daemon: a first sync of its own, compared
// by hash, while the other streams on (or waits for the other's round, its link up).
// Now and then a reload takes site-c away from the volume's peers and another puts it
// back (JournaledVolume.setPeers), its replica compared by hash then.
//
// A quarter of the seeds fail over part-way: the primary is lost for good, a secondary
// whose replica is a flush-point image is promoted (its image must be one of the old
// primary's flush points) and starts a new journal; the other follows it, serving its
// own flush-point image until its first round from the new primary ends; the old
// primary comes back demoted with what the loss left on its disk. The checks below then
// hold for the new primary's record stream.
//
// Checked (docs/INVARIANTS.md):
//   2  the primary never releases a record the secondary does not hold durably;
//   3  the replica is always exactly the primary's record stream up to a barrier
//      (after every recovery, and whenever a reader looks), never half a unit,
//      never a corrupt byte;
//   4  once faults stop, the pair converges and the replica equals the primary
//      (after overflows through resync rounds, after a power loss at the primary
//      through the activity log);
//   7  queues, the journal, the receive log and the wire stay within their limits.
import { MemoryBudget } from '../../src/memory/budget.js';
import { createHash } from 'node:crypto';
import { createLogger, silentLogger, type Logger } from '../../src/log/log.js';
import { DirtyBitmap, RegionSet } from '../../src/journal/bitmap.js';
import { peersToOpenWith, readPeers } from '../../src/journal/peers-file.js';
import { Journal, KEEP_PREFIX } from '../../src/journal/journal.js';
import { RecordKind, type JournalRecord, type RecordHeader } from '../../src/journal/record.js';
import { compress } from 'zstd-napi';
import { parsePackedRecordsFrame, unpackPackedOwned, type OwnedRecords } from '../../src/compress/codec.js';
import { Packer, emptyPackStats } from '../../src/compress/packer.js';
import type { CompressionPool } from '../../src/compress/pool.js';
import type { FrameRoom } from '../../src/link/records-frame.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import {
  FrameDecoder, FrameType, MAX_MAP_HOLES, PROTOCOL_RANGE, atVersion, encodeAck, encodeHashReply, encodeHold, encodeMapReply,
} from '../../src/link/frame.js';
import { regionHashOf } from '../../src/sync/region-hashes.js';
import type { HelloVolume } from '../../src/link/hello.js';
import { PeerSession, type SessionAction } from '../../src/link/peer-session.js';
import { VolumeShipper } from '../../src/link/volume-shipper.js';
import type { VerifyRun } from '../../src/sync/verify.js';
import { LinkScheduler } from '../../src/rate/scheduler.js';
import { assertFrameLive, type FrameHold } from '../../src/rate/pacer.js';
import { Owned, OwnedBuffers, frameBuffers } from '../../src/memory/owned-buffers.js';
import { OWNED_BUFFERS_KEPT_BYTES } from '../../src/limits/limits.js';
import { Replica, SYNCED_FILE } from '../../src/secondary/replica.js';
import { isHistoryFile } from '../../src/history/history.js';
import { writePromoteAt } from '../../src/secondary/promote-at-file.js';
import { MemDisk, MemStore, Rng, Scheduler, fence, flushMicrotasks, settleOn } from './disk-model.js';
import { readGrowing, removeGrowing } from '../../src/journal/grow.js';
import { SimFailure } from './journal-sim.js';
import { watchInvariants } from './invariant-watch.js';

const SECTOR = 512;
const BLOCK = 4096;
const VOLUME = 'sim';
const STEP_MS = 100;

export interface ReplicationSimConfig {
  volumeBlocks: number;
  steps: number;
}

export const DEFAULT_REPLICATION_SIM: ReplicationSimConfig = { volumeBlocks: 48, steps: 220 };

export interface ReplicationSimStats {
  crashes: number;
  cuts: number;
  flips: number;
  /** Volumes paired again by a VolumeHello on a link that stayed up. */
  rehellos: number;
  converged: boolean;
  overflowed: boolean;
  powerLost: boolean;
  applied: number;
  /** Checkpoints taken (and held across faults). */
  checkpoints: number;
  /** Times the secondary paused shipping (its log full under a checkpoint). */
  pauses: number;
  /** Batches compressed into PackedRecords frames. */
  packed: number;
  /** Records sent as Skip records (coalesced). */
  coalesced: number;
  /** Maps of the secondary's holes a first sync got (protocol version 2). */
  mapped: number;
  /** Restore points of the secondary's history opened and compared with the primary's image there. */
  historyChecks: number;
  /** History turned off or on again by a reload (Replica.setHistory). */
  historyToggles: number;
  /** ... of them kept across the replica's follow of a new primary (docs/HISTORY.md, "After a follow"). */
  keptAcrossFollow: number;
  /** History segments rewritten without what their thinned points alone needed (docs/HISTORY.md, "Compaction"). */
  historyCompactions: number;
  /** Seeds with two secondaries (site-b and site-c), and times one was detached from the primary's journal into its own bitmap. */
  threeSites: number;
  detached: number;
  /** Resync rounds of one peer's own (the detached one's), the other streaming on (docs/PEERS.md). */
  ownRounds: number;
  /** First syncs of a new secondary's own (a round of its own, compared by hash), the other streaming on (docs/PEERS.md). */
  ownFirstSyncs: number;
  /** Site-c taken away from the primary's peers by a reload, and put back by another (docs/PEERS.md, "Adding and removing a secondary"). */
  peersRemoved: number;
  /** Opens of the primary that found its peers changed since its last run (put back at a restart: docs/PEERS.md, "Peers changed across a restart"). */
  peersChangedAtRestart: number;
  /** ... of them during a round of site-c's own, which ended where it was. */
  ownRoundsAbandoned: number;
  /** Volumes grown (docs/CONFIG.md, "Growing a volume"): the secondaries first, then the primary, the faults going on. */
  grown: number;
  /** Links whose Hello found the sizes apart while a grow was under way: the volume unpaired until they matched. */
  unpairedBySize: number;
  /** Crashes of a site whose grow had begun and not ended (its next open grows its file). */
  growsCrashed: number;
  /** Failovers: the primary lost, a secondary promoted, the other following it, the old primary back demoted. */
  failovers: number;
  /** ... of them to a restore point of the promoted replica's history (`promote --at`). */
  pastPromotes: number;
  /** ... cut part-way by a power loss at the promoted site, and completed at its start. */
  promoteCrashes: number;
  /** Batches read into a frame room reused from an earlier batch (src/memory/owned-buffers.ts). */
  roomsReused: number;
  /** Record frames that came in pieces, gathered into the node's buffers at the secondary (given back once logged). */
  framesGathered: number;
  /** Promotes that failed on a full disk at the promoted site and were done again once it had room. */
  promotesOnFullDisk: number;
  /** Online verifies that ran to their end (host writes and faults going on, or at the end): each found nothing. */
  verifies: number;
  /** A region of a replica corrupted behind the replication's back at the end: found by a verify, and repaired. */
  verifyRepairs: number;
}

/** Bytes the simulated socket takes from the shipper's queue before they go on the wire. */
const SOCKET_ROOM = 16 * 1024;

interface Conn {
  /** Primary to secondary, and back: chunks of bytes in flight. */
  ab: Buffer[];
  ba: Buffer[];
  decA: FrameDecoder;
  decB: FrameDecoder;
  /** Each side's link state machine (src/link/peer-session.ts), the same the daemon runs. */
  atA: PeerSession;
  atB: PeerSession;
}

/** The sites' names: the primary (site-a) dials, the secondaries accept. */
const SITE_A = 'site-a';
const SITE_B = 'site-b';
const SITE_C = 'site-c';
/** What both sides' Hellos say of the volume's identity (one volume, one generation). */
const SIM_UUID = 'sim-volume';
const SIM_GENERATION = ['sim-generation'];

/** A secondary site as the simulation runs it: its disks, its replica, the primary's shipper to it and the link between them. */
interface SiteSim {
  name: string;
  /** A reload raised its size: (Replica.grow, between two units); a crash meanwhile grows it at the next open. */
  grow(size: number): void;
  sched: Scheduler;
  sdisk: MemDisk;
  sjstore: MemStore;
  ssstore: MemStore;
  readonly replica: Replica;
  /** openSecondary ran once (the replica exists). */
  readonly opened: boolean;
  readonly shipper: VolumeShipper;
  readonly conn: Conn | null;
  /** An apply that brought the replica to a barrier with an image not the primary's there (said at the next step). */
  readonly tornApply: string | null;
  /** The primary (re)opened: a new shipper to this site. */
  newShipper(): void;
  openSecondary(): Promise<void>;
  connect(): void;
  cut(why: string): void;
  /** Bytes stop moving on this link until `until` (the clock). */
  stall(until: number): void;
  /** Each side's link machine hears the clock (heartbeats, dead-peer detection). */
  tickLink(): void;
  deliver(toSecondary: boolean): boolean;
  flip(): void;
  /** One side's volume paired again on the link that stays up (a VolumeHello, protocol 3: a role or config change's). */
  rehello(primary: boolean): void;
  crash(powerLoss: boolean): Promise<void>;
  checkHistory(why: string, count?: number): Promise<void>;
  readReplica(): Promise<void>;
  checkCheckpoint(): Promise<void>;
  toggleCheckpoint(): Promise<void>;
  toggleHistory(): Promise<void>;
  /** Invariants 2 and 7 for this site, live: its receive log and link within bounds, nothing released it lacks. */
  checkLink(): void;
  /**
   * Promoted (`toPast`: to a restore point of its history, if it has one; `crashAfter`:
   * a power loss that many I/O steps into it, then completed at the start): the image the
   * new primary starts from.
   */
  promote(toPast: boolean, crashAfter: number | null): Promise<Buffer>;
  /** Follows the new primary (`former`: the old primary's flush-point images, by record). */
  follow(former: ReadonlyMap<number, string>): Promise<void>;
}

export function runReplicationSeed(seed: number, cfg: ReplicationSimConfig = DEFAULT_REPLICATION_SIM): Promise<ReplicationSimStats> {
  return watchInvariants(seed, () => runOneSeed(seed, cfg), (msg) => new SimFailure(msg));
}

async function runOneSeed(seed: number, cfg: ReplicationSimConfig): Promise<ReplicationSimStats> {
  const rng = new Rng(seed);
  OwnedBuffers.poison = true;
  // (The secondaries gather frames into a pool of their own: the node's counts the shippers' rooms alone.)
  const gatherBuffers = new OwnedBuffers(OWNED_BUFFERS_KEPT_BYTES);
  const reusedBefore = frameBuffers.reused;
  const debug = Boolean(process.env.OFFSITE_SIM_DEBUG);
  const log: Logger = debug ? createLogger({ level: 'debug', format: 'text' }) : silentLogger;
  // The volume's size as the primary's config says it, and as the secondaries' do: a grow
  // (docs/CONFIG.md, "Growing a volume", below) raises the secondaries' first. A start
  // after a crash mid-grow finishes it at the open (src/node/daemon.ts): openPrimary and
  // openSecondary do it too.
  let size = cfg.volumeBlocks * BLOCK;
  let secondarySize = size;
  // (The primary's machine: after a failover, the promoted site's disk and scheduler.)
  let psched = new Scheduler(rng);
  let pdisk = new MemDisk(size, psched);
  // A third of the seeds let the primary's volume writes follow their records in the
  // records' job (docs/JOURNAL.md), on every site's disk; from the seed, so the
  // generator draws as before.
  pdisk.follows = seed % 3 === 1;
  // Half the seeds' disks take a secondary's apply a run of writes at a time (Disk.writeInOrder), the others one at a time.
  if (seed % 2 === 0) pdisk.takesRunsInOrder();
  let pjstore = new MemStore(psched, { directAppends: true });
  let pmstore = new MemStore(psched);
  // A third of the seeds have a second secondary, site-c (docs/PEERS.md): the primary
  // ships to both, each on its own link with its own faults, and site-c has long
  // outages, so the journal detaches it into a bitmap of its own while site-b streams
  // on. Everything at site-c draws from its own generator: the other seeds replay as
  // before. Its journal is one that fills while site-c is away, and overflows less
  // often than the smallest: site-c comes back by a round of its own, not the fold's.
  const rngC = new Rng(seed ^ 0x3517e);
  const threeSites = rngC.chance(1 / 3);
  // (From the seed, not a generator: the schedules drawn stay as they were.)
  const newSecondaries = threeSites && seed % 2 === 1;
  const drawnCapacity = [64 * 1024, 512 * 1024, 4 << 20, 4 << 20][rng.int(4)]!;
  const journalCapacity = threeSites ? [192 * 1024, 256 * 1024, 384 * 1024][rngC.int(3)]! : drawnCapacity;
  // A quarter of the seeds may lose the primary's power or fill its journal disk;
  // those end in the dirty bitmap, which only a resync can ship, so they check
  // invariants 2, 3 and 7 but not convergence.
  const primaryHazards = rng.chance(0.25);
  const receiveCapacity = [64 * 1024, 128 * 1024, 1 << 20][rng.int(3)]!;
  const windowBytes = [8 * 1024, 64 * 1024, 1 << 20][rng.int(3)]!;
  // Half the seeds (odd ones: no draw from the seed's stream, so other seeds replay as
  // before) hold each side to a memory budget of the window (src/memory/budget.ts): the
  // shipper's batches and the replica's applies wait for leases, across every crash and cut.
  const budgeted = seed % 2 === 1;
  const useIntents = rng.chance(0.5);
  // Half the seeds pack batches as the daemon does (zero writes as Zeroes, zstd frames).
  const packing = rng.chance(0.5);
  // Packing seeds run the daemon's packer, its zstd on the spot (a pool's worker in the daemon): a fixed level, or auto.
  // (A third of the seeds build every body to pack in the node's buffers, as the daemon does
  // large ones, given back and poisoned once packed. Its own generator: the other draws stay.)
  const packBuffers = new Rng(seed ^ 0xb0d1).chance(1 / 3) ? gatherBuffers : undefined;
  const packer = new Packer({
    pool: {
      compress: (b: Buffer | Owned, level: number) =>
        Promise.resolve(compress(b instanceof Owned ? b.bytes : b, { compressionLevel: level, checksumFlag: true })),
      busy: 0,
    } as unknown as CompressionPool,
    buffers: packBuffers, ownedFrom: 0,
    setting: () => ((seed & 2) !== 0 ? { mode: 'auto' } : { mode: 'fixed', level: 1 }),
    peerZstd: true,
    stats: () => packStats,
  });
  const packStats = emptyPackStats();
  // Half coalesce batches that span several epochs (Skip records; the replica waits for the unit's end).
  const coalescing = rng.chance(0.5);
  // A third of the seeds share the link with other volumes (src/rate/scheduler.ts): the
  // shipper's share of it changes as they come and go, and its batches with it (from
  // 16 KiB to the whole batch) between crashes, cuts and reads. (Its own generator:
  // the other seeds' schedules stay as they were.)
  const shareRng = new Rng(seed ^ 0x5ba7e);
  // A quarter of the seeds have a secondary of the previous release (protocol version
  // 1 only): the first sync compares by hash alone, with no map of holes. (Its own
  // generator too.)
  const speaksB = new Rng(seed ^ 0x7e25).chance(1 / 4) ? { min: 1, max: 1 } : PROTOCOL_RANGE;
  const sharing = shareRng.chance(1 / 3);
  let shareNow = 1;
  let step = 0;
  let clock = 1;
  const fail = (msg: string): never => {
    throw new SimFailure(`seed ${seed} step ${step}: ${msg}`);
  };
  const trace = (msg: string): void => {
    if (debug) console.log(`  [${step}] ${msg}`);
  };

  // The record stream as the primary's journal holds it, and the image at each barrier.
  const stream = new Map<number, { kind: RecordKind; offset: number; length: number; payload: Buffer | null }>();
  const imageAt = new Map<number, string>([[0, hash(Buffer.alloc(size))]]);
  let primaryLost = false; // a power loss: the activity log must cover what the journal lost
  let boots = 1;
  let overflowed = false;
  const stats: ReplicationSimStats = { crashes: 0, cuts: 0, flips: 0, rehellos: 0, converged: false, overflowed: false, powerLost: false, applied: 0,
    checkpoints: 0, pauses: 0, packed: 0, coalesced: 0, mapped: 0,
    historyChecks: 0, historyToggles: 0, keptAcrossFollow: 0, historyCompactions: 0, threeSites: 0,
    peersRemoved: 0, peersChangedAtRestart: 0, ownRoundsAbandoned: 0, grown: 0, unpairedBySize: 0, growsCrashed: 0, detached: 0, ownRounds: 0, ownFirstSyncs: 0,
    failovers: 0, pastPromotes: 0, promoteCrashes: 0, roomsReused: 0, framesGathered: 0, promotesOnFullDisk: 0,
    verifies: 0, verifyRepairs: 0 };
  // Half the seeds keep history at the secondary (docs/HISTORY.md), some with a max that
  // drops old segments; past points are opened and compared with the primary's image
  // there (invariant 8). Its own generator: the other seeds replay as before.
  const histRng = new Rng(seed ^ 0x4157);
  /** Online verifies: when one starts, and what the one at the end corrupts (its own generator: the schedules stay as they were). */
  const verifyRng = new Rng(seed ^ 0x7e51f);
  const keepsHistory = histRng.chance(1 / 2);
  const hostFlushesAtEnd = new Rng(seed ^ 0xf105).chance(1 / 2);
  const historyMax = [null, 256 * 1024, 1 << 20][histRng.int(3)]!;
  // A third of them age their history fast (an hour passes in 3.6 s of the simulation's
  // clock): thinning hides most older points, and compaction rewrites the segments
  // without what those alone needed, under the same crashes and checks.
  const aging = histRng.chance(1 / 3);
  const historyNow = aging ? (): number => clock * 1000 : (): number => clock;
  const historySettings = { keepMs: null, maxBytes: historyMax, now: historyNow, ...(aging ? { segmentBytes: 8 * 1024 } : {}) };

  let seededNotes = 0;
  // The image the stream starts from: zeros, or after a failover the promoted replica's.
  let baseImage: Buffer = Buffer.alloc(size);
  const imageUpTo = (seq: number): Buffer => {
    // (At the size the volume has now: records past an older size are from after a grow.)
    const img = Buffer.alloc(Math.max(size, baseImage.length));
    baseImage.copy(img);
    for (const [s, r] of [...stream.entries()].sort((a, b) => a[0] - b[0])) {
      if (s > seq) break;
      if (r.kind === RecordKind.Write) r.payload!.copy(img, r.offset);
      else if (r.kind !== RecordKind.Barrier) img.fill(0, r.offset, r.offset + r.length);
    }
    return img;
  };

  /** Watches every record the primary's journal takes, in seq order. */
  const observe = (j: Journal): void => {
    const put = (j as unknown as { put(h: RecordHeader, p: Buffer | null): number | 'full' }).put.bind(j);
    (j as unknown as { put: typeof put }).put = (h, p) => {
      const r = put(h, p);
      if (r !== 'full') {
        stream.set(r, { kind: h.kind, offset: h.offset, length: h.length, payload: p ? Buffer.from(p) : null });
        trace(`primary journal: record ${r} kind ${h.kind} flags ${h.flags} blocks ${h.offset / BLOCK}+${h.length / BLOCK} tag ` +
          `${p && p.length >= 4 ? p.readUInt32LE(0) : "-"} (open epoch ${j.openEpochBytes} bytes)`);
        if (h.kind === RecordKind.Barrier) imageAt.set(r, hash(imageUpTo(r)));
      }
      return r;
    };
  };

  const settle = <T>(p: Promise<T>): Promise<T> => settleOn(p, stepAny, fail);

  const stepAny = (): boolean => {
    if (sites.length > 1) {
      // (Three sites: any of them first, so none starves while the others stay busy.)
      const all = [psched, ...sites.map((s) => s.sched)];
      const k = rngC.int(all.length);
      return all.some((_, i) => all[(k + i) % all.length]!.step());
    }
    if (sites.length === 0) return psched.step(); // (after a failover, before the old primary returns)
    const ssched = sites[0]!.sched;
    const first = rng.chance(0.5) ? psched : ssched;
    return first.step() || (first === psched ? ssched : psched).step();
  };

  const sites: SiteSim[] = [];
  /** The primary's name, and the secondaries its journal keeps a cursor for (the peers of its config). */
  let primaryName = SITE_A;
  let peerNames: string[] = [];
  /** The primary names its peers (a cursor each): with two secondaries, also while one is taken away (retired, below). */
  const named = (): boolean => threeSites || peerNames.length > 1;


  // --- the primary ------------------------------------------------------------
  let jv!: JournaledVolume;
  let pgen = 0;
  // Each life of either process sees its disks through a fence that dies with it.
  let plife = 0;
  const openPrimary = async (): Promise<void> => {
    await growAtOpen(pdisk, pmstore, settle);
    const life = ++plife;
    const alive = (): boolean => life === plife;
    const jstore = fence(pjstore, alive);
    const mstore = fence(pmstore, alive);
    const disk = fence(pdisk, alive);
    const journal = new Journal({ store: jstore, capacity: journalCapacity, segmentSize: 16 * 1024, now: () => clock });
    const recorded = new RegionSet(size, BLOCK);
    const report = await settle(journal.recover((o, l) => recorded.mark(o, l)));
    // Records past what survived are gone: the stream (and its barrier images) ends there.
    // (What the secondary holds survived unless the journal was folded into the bitmap,
    // which ships nothing until a resync: those images stay valid.)
    const survived = Math.max(journal.lastSeq, ...sites.map((s) => s.opened ? s.replica.receiver.logged : 0));
    for (const s of [...stream.keys()]) if (Math.floor(s) > survived) stream.delete(s); // (a region found equal by hash sits between two records)
    for (const s of [...imageAt.keys()]) if (s > survived) imageAt.delete(s);
    observe(journal);
    const { bitmap } = await settle(DirtyBitmap.open(mstore, size, BLOCK));
    // The peers its journal kept cursors for at its last run (src/journal/peers-file.ts): a
    // change of peerNames across this restart is made after the start, as a reload makes it.
    const had = named() ? await settle(readPeers(mstore)) : null;
    jv = new JournaledVolume({
      disk, journal, bitmap, onFull: 'bitmap', intentStore: useIntents ? jstore : undefined, intentSlots: 64, log, roundStore: mstore,
      activityStore: mstore, activityExtent: BLOCK * (1 << rng.int(4)), activitySlots: 2 + rng.int(8), bootId: () => `boot-${boots}`,
      // (Several secondaries: a cursor each, and a far one detached into a bitmap of its own.)
      ...(named() ? { peers: [...peersToOpenWith(had, peerNames)], peerStore: mstore } : {}),
    });
    jv.maxEpochBytes = receiveCapacity / 4; // what the link sets from the peer's Hello
    // A first sync by checksum leaves out regions whose hashes match the secondary's: from
    // then on the replica holds the primary's bytes there without a record of them. The
    // stream notes them as a write of what the primary held, between the record before
    // and the next (the region is then not in the round's touched set, so no record
    // before it changes it later without the round seeing it).
    const compare = jv.compareRegions.bind(jv);
    jv.compareRegions = async (first, regionSize, hashes, algorithm) => {
      const was = hashes.map((_, i) => jv.bitmap.isSet(first + i));
      const equal = await compare(first, regionSize, hashes, algorithm);
      for (let i = 0; i < hashes.length; i++) {
        if (!was[i] || jv.bitmap.isSet(first + i)) continue;
        const offset = (first + i) * regionSize;
        const length = Math.min(regionSize, size - offset);
        stream.set(jv.journal.lastSeq + 0.5 - 0.4 / ++seededNotes, { kind: RecordKind.Write, offset, length,
          payload: Buffer.from(pdisk.file.current.subarray(offset, offset + length)) });
      }
      return equal;
    };
    // So does a first sync that finds a region a hole on both sides (protocol version 2's
    // map of the secondary's holes): equal without a hash, and without a record.
    const clearHoles = jv.clearHoles.bind(jv);
    jv.clearHoles = async (offset, covered, holes) => {
      const regions = jv.bitmap.regions;
      const was = Array.from({ length: regions }, (_, i) => jv.bitmap.isSet(i));
      const cleared = await clearHoles(offset, covered, holes);
      const regionSize = jv.bitmap.regionSize;
      for (let i = 0; i < regions; i++) {
        if (!was[i] || jv.bitmap.isSet(i)) continue;
        const at = i * regionSize;
        const length = Math.min(regionSize, size - at);
        stream.set(jv.journal.lastSeq + 0.5 - 0.4 / ++seededNotes, { kind: RecordKind.Write, offset: at, length,
          payload: Buffer.from(pdisk.file.current.subarray(at, at + length)) });
      }
      return cleared;
    };
    await settle(jv.start(report, recorded));
    if (named()) {
      const changed = await settle(jv.settlePeers(had, peerNames));
      if (changed !== null) {
        trace(`primary open: its peers were ${had?.join(', ')}, now ${peerNames.join(', ')}`);
        stats.peersChangedAtRestart++;
      }
    }
    // (Every part grew with the open: the daemon removes the grow's file then, src/node/daemon.ts.)
    await settle(removeGrowing(mstore));
    trace(`primary open: mode ${jv.mode} round ${jv.roundStart} bitmap [${[...jv.bitmap.dirtyRegions()].join(',')}] journal ` +
      `${jv.journal.released + 1}..${jv.journal.lastSeq}`);
    for (const s of sites) s.newShipper();
  };
  // The link's frames go through its scheduler, as the pacer's do (one volume: in order).

  /**
   * A secondary site (SiteSim): `rng` draws everything that happens there (site-b: the
   * seed's own). `machine`: a lost primary that returns demoted, with the disk it kept.
   */
  const makeSite = (name: string, rng: Rng, speaksB: { min: number; max: number }, machine?: { sched: Scheduler; disk: MemDisk }): SiteSim => {
    const ssched = machine?.sched ?? new Scheduler(rng);
    const sdisk = machine?.disk ?? new MemDisk(size, ssched);
    // (A secondary promoted in a failover journals host writes too: they follow their records as the first primary's do.)
    sdisk.follows = seed % 3 === 1;
    if (seed % 2 === 0 && !sdisk.writeInOrder) sdisk.takesRunsInOrder();
    // (The daemon's receive log appends through the page cache, unpadded (src/node/role-open.ts); this one pads every
    // append, as a receive log that a build before that left after a crash: its recovery must cut the zeros either way.)
    const sjstore = new MemStore(ssched, { directAppends: true });
    const ssstore = new MemStore(ssched);
    let replica = undefined as unknown as Replica; // set by openSecondary, after the first openPrimary
    let opened = false;
    let shipper!: VolumeShipper;
    let slife = 0;
    /** The life a grow was asked of (SiteSim.grow). */
    let growLife = -1;
    /** The life whose receiver's events count (none while a follow ends the old one: its last events come late). */
    let receiving = 0;
    /** This site is a detached peer of the primary's journal (docs/PEERS.md). */
    const detached = (): boolean => named() && jv.cursors.isDetached(name);
    const newShipper = (): void => {
      if (shipper) stats.coalesced += shipper.coalescedRecords;
      shipper = new VolumeShipper(VOLUME, jv, log, {
        windowBytes, batchBytes: Math.max(4096, windowBytes / 4), selfSyncMs: 3 * STEP_MS, now: () => clock, coalesce: () => coalescing,
        ...(budgeted ? { memory: new MemoryBudget(windowBytes) } : {}),
        ...(named() ? { peer: name } : {}),
      });
      if (sharing) {
        shipper.share = () => shareNow;
      }
    };
    // Frames the shipper sent wait here, their bytes not copied, until the link takes them
    // (`write`, as the pacer writes to the socket): a frame room released too early is
    // reused and poisoned (src/memory/owned-buffers.ts) before its frame goes.
    const linkScheduler = new LinkScheduler<{ parts: Buffer[]; hold?: FrameHold }>();
    let scheduledBytes = 0;

    let tornApply: string | null = null;
    // After this site followed a new primary (or came back demoted), the image it served
    // at the follow (a flush point of the old primary; null: it had none), which its
    // export keeps serving until the new primary's first round ends (then, or at the
    // first apply outside a round, it is null again).
    let restarted = machine !== undefined;
    /** The config's `history:` for this site now: an operator turns it off and on again by reloads (Replica.setHistory). */
    let historyOn = keepsHistory;
    /** A promote to a past point is under way here (its promote-at file written). */
    let promotingToPast = false;
    let followImage: string | null = null;
    const servesFollowImage = (h: string): boolean => followImage === h;
    /** Restore points kept across a follow (docs/HISTORY.md): their seq in this history, and the old primary's image there. */
    const beforeFollow = new Map<number, string>();
    /** The primary's image at restore point `seq` of this replica's history (undefined: no barrier's). */
    const pointImage = (seq: number): string | undefined => {
      const kept = beforeFollow.get(seq);
      if (kept !== undefined) return kept;
      const record = replica.history ? replica.history.recordOf(seq) : seq;
      return record === null ? undefined : imageAt.get(record);
    };

    // --- the secondary ----------------------------------------------------------
    const openSecondary = async (): Promise<void> => {
      const traceReceiver = (): void => {
        if (!debug) return;
        const rc = replica.receiver;
        const h = rc.handle.bind(rc);
        rc.handle = (e) => {
          const out = h(e);
          const what = e.type === 'records' ? { type: 'records', seqs: e.records.map((x) => x.seq) } : e;
          trace(`receiver ${name} ${JSON.stringify(what)} -> ${JSON.stringify(out)}`);
          return out;
        };
      };
      await growAtOpen(sdisk, ssstore, settle);
      const life = ++slife;
      receiving = life;
      const alive = (): boolean => life === slife;
      stats.historyCompactions += replica?.history?.compactions.segments ?? 0;
      const sdiskF = fence(sdisk, alive);
      const sjstoreF = fence(sjstore, alive);
      const ssstoreF = fence(ssstore, alive);
      replica = await settle(Replica.open(
        sdiskF,
        () => new Journal({ store: sjstoreF, capacity: receiveCapacity, segmentSize: 8 * 1024, now: () => clock, onDamage: KEEP_PREFIX }),
        log,
        { roundStore: ssstoreF, regionSize: BLOCK * (1 << rng.int(3)), applyUnitBytes: rng.int(2) === 0 ? BLOCK * (1 + rng.int(8)) : undefined,
          applyReadBytes: rng.chance(0.5) ? BLOCK * (1 + rng.int(4)) : undefined,
          ...(budgeted ? { memory: new MemoryBudget(windowBytes) } : {}),
          ...(historyOn ? { history: historySettings } : {}) }));
      traceReceiver();
      // Invariant 3 at every apply: the replica brought to a barrier is the primary's image
      // there (a coalesced unit applied in part would miss the records it skipped).
      {
        const rc = replica.receiver;
        const h = rc.handle.bind(rc);
        rc.handle = (e) => {
          if (life === receiving && (e.type === 'roundClosed' || (e.type === 'applied' && !replica.round))) followImage = null;
          if (e.type === 'applied' && !replica.round && life === receiving) {
            const want = imageAt.get(e.upTo);
            // (Said at the next step: a throw here would only stop the replica's apply chain.)
            if (want !== undefined && hash(sdisk.file.current) !== want) {
              const b = firstDifferentBlock(imageUpTo(e.upTo), sdisk.file.current);
              const touched = [...stream.entries()]
                .filter(([, r]) => r.kind !== RecordKind.Barrier && r.offset < (b + 1) * BLOCK && r.offset + r.length > b * BLOCK)
                .map(([k, r]) => `${k}:${RecordKind[r.kind]}${r.payload && r.payload.length >= 4 ? `#${r.payload.readUInt32LE(b * BLOCK - r.offset)}` : ''}`);
              tornApply ??= `the replica at ${name} was brought to record ${e.upTo}, but its image is not the primary's flush-point image there ` +
                `(block ${b}: replica tag ${sdisk.file.current.readUInt32LE(b * BLOCK)}, records touching it ${touched.join(' ') || 'none'})`;
            }
          }
          return h(e);
        };
      }
      // Invariant 3 after recovery: exactly the image at the applied barrier.
      const applied = replica.receiver.applied;
      const want = imageAt.get(applied);
      if (promotingToPast) {
        // A promote to a past point that a crash cut part-way: the start completes it before
        // anything is served (roles.ts's completeChange); the volume is rolled back in part.
      } else if (replica.round && !replica.round.initial) {
        // Mid-round: the export still serves the image from before the round (undo area).
        const buf = Buffer.alloc(replica.size);
        await settle(replica.read(0, buf, 0, buf.length));
        if (![...imageAt.values()].includes(hash(buf)) && !servesFollowImage(hash(buf))) {
          fail('after recovery mid-round, the replica export is no flush-point image');
        }
      } else if (want === undefined && !replica.round) {
        fail(`the replica recovered to record ${applied}, which is not a barrier of the primary`);
      } else if (replica.round?.initial) {
        // The first sync is under way: the replica is not a flush-point image yet, and says so.
        if (replica.consistent) fail('the replica claims to be consistent during its first sync');
      } else if (replica.tornBy) {
        // Recovery's re-apply failed (disk full): the export refuses reads until it is redone.
        const ok = await settle(replica.read(0, Buffer.alloc(BLOCK), 0, BLOCK).then(() => true, () => false));
        if (ok) fail('the replica serves reads while a failed apply is not redone');
      } else if (restarted && !replica.consistent) {
        // A demoted old primary (or a follower caught in its first sync): no image of this
        // primary yet, and it says so; its first sync compares every region.
      } else if (hash(sdisk.file.current) !== want && !servesFollowImage(hash(sdisk.file.current))) {
        fail(`after recovery the replica is not the flush-point image of record ${applied}`);
      }
      if (!promotingToPast) await checkHistory('after a start');
      opened = true;
      await settle(removeGrowing(ssstoreF));
      // Invariant 2: the primary released nothing the secondary lacks.
      // (In bitmap mode the journal was folded into the dirty bitmap, which covers what it dropped;
      // a detached peer's lacks are in its own bitmap, docs/PEERS.md.)
      if (jv.mode === 'journal' && !jv.roundStartFor(name) && !detached() && jv.journal.released > replica.receiver.resumeAfter) {
        fail(`the primary released up to ${jv.journal.released} but the secondary holds only up to ${replica.receiver.resumeAfter}`);
      }
    };

    // --- the link ---------------------------------------------------------------
    let conn: Conn | null = null;
    let stallUntil = 0;
    const cut = (why: string): void => {
      if (!conn) return;
      trace(`link to ${name} cut: ${why}`);
      conn = null;
      stats.cuts++;
      // (Frames not yet written are dropped unsent: their rooms go back.)
      for (let f = linkScheduler.next(); f; f = linkScheduler.next()) f.item.hold?.release();
      scheduledBytes = 0;
      shipper.down();
      replica.detach();
    };
    const connect = (): void => {
      if (conn) return;
      const pairedWith = (site: string) => (volume: string): string[] => (volume === VOLUME ? [site] : []);
      // The primary dials (it speaks second); a dead peer is one not heard for 40 steps
      // (the simulation's own stalls last at most 20).
      const atA = new PeerSession({
        node: primaryName, peer: name, initiator: true, speaks: PROTOCOL_RANGE, deadAfterMs: 40 * STEP_MS, pairedWith: pairedWith(name),
        shared: () => [{ name: VOLUME, uuid: SIM_UUID, size: jv.size, role: 'primary', generation: SIM_GENERATION, durableSeq: jv.journal.released,
          logBytes: jv.journal.capacity, round: jv.roundStartFor(name) }],
      });
      const atB = new PeerSession({
        node: name, peer: primaryName, initiator: false, speaks: speaksB, deadAfterMs: 40 * STEP_MS, pairedWith: pairedWith(primaryName),
        shared: () => [{ name: VOLUME, uuid: SIM_UUID, size: replica.size, role: 'secondary', generation: SIM_GENERATION,
          durableSeq: replica.receiver.resumeAfter, logBytes: receiveCapacity, round: replica.roundStart }],
      });
      const c: Conn = { ab: [], ba: [], decA: new FrameDecoder(), decB: new FrameDecoder(PROTOCOL_RANGE, gatherBuffers, 4096), atA, atB };
      conn = c;
      trace(`link up: secondary durable to ${replica.receiver.resumeAfter}, primary released ${jv.journal.released} last ${jv.journal.lastSeq}`);
      runAt(false, c, atB.handle({ type: 'open', now: clock }));
      runAt(true, c, atA.handle({ type: 'open', now: clock }));
    };

    /** Wires the volume to the link as its Hello, or its Hello again, paired it (the daemon's Pairings.pairVolume, src/node/pairing.ts). */
    const pairUp = (primary: boolean, c: Conn, remote: HelloVolume, version: number): void => {
      if (primary) {
        shipper.up({
          ...(packing ? {
            // The daemon's packer (src/compress/packer.ts) around the batch's frame room:
            // raw frames built in the room, headers packed around its payloads, zstd on a copy.
            encode: (records: JournalRecord[], room?: FrameRoom) => packer.encode(VOLUME, records, room).then((parts) => {
              if (parts[0]![5] === FrameType.PackedRecords) stats.packed++;
              return parts;
            }),
          } : {}),
          send: (parts, cls, hold) => {
            if (conn !== c) {
              hold?.release();
              return;
            }
            const n = parts.reduce((k, p) => k + p.length, 0);
            scheduledBytes += n;
            linkScheduler.enqueue(VOLUME, { parts, hold }, n, { weight: 1 }, cls ?? 'live');
          },
          close: (why) => {
            if (conn === c) cut(`primary: ${why}`);
          },
          version,
          // (In odd seeds with two secondaries, a peer whose Hello says nothing held is a new
          // secondary, as src/node/pairing.ts has it: a first sync of its own, docs/PEERS.md. The
          // even ones keep the schedules where a detached peer comes back by a round of its own.)
        }, remote.durableSeq, remote.round, (newSecondaries || failedOver) && remote.durableSeq === 0 && remote.round === 0);
        if (sharing) shipper.linkMeasured(null, null, 64 * 1024); // (a 512 kbit/s link: batches follow the share)
      } else {
        void replica.attach({
          ack: (seq) => {
            if (conn === c) c.ba.push(Buffer.concat(atVersion(encodeAck(VOLUME, seq), c.atB.version)));
          },
          hold: (held, after) => {
            if (conn === c) c.ba.push(Buffer.concat(atVersion(encodeHold(VOLUME, after, held), c.atB.version)));
          },
          close: (why) => {
            if (conn === c) cut(`secondary: ${why}`);
          },
        }).catch((e: Error) => {
          if (conn === c) cut(`secondary attach: ${e.message}`);
        });
      }
    };

    /** Does what a side's link machine says (the simulation's adapter; the daemon's is runLink, src/node/link-session.ts). */
    const runAt = (primary: boolean, c: Conn, actions: SessionAction[]): void => {
      const out = primary ? c.ab : c.ba;
      const machine = primary ? c.atA : c.atB;
      for (const a of actions) {
        if (conn !== c) return;
        switch (a.type) {
          case 'send':
            out.push(Buffer.concat(atVersion(a.parts, machine.version)));
            break;
          case 'close':
            // (A frame of a volume the link does not carry, or an answer nobody asked for: the pairing's rules broken, by this code.)
            if (/which this link does not carry|that this node did not send/.test(a.reason)) fail(`a protocol rule broken: ${a.reason}`);
            cut(`${primary ? 'primary' : 'secondary'}: ${a.reason}`);
            return;
          case 'refused':
            fail(`the link was refused (${a.code}): ${a.message}`);
            break;
          case 'up':
            (primary ? c.decB : c.decA).settle(a.version); // (the decoder of what this side receives)
            // (A conflict of roles keeps the volume unpaired on a link that is up: the refusal it was, never right here.)
            if (a.check.conflicts.length > 0) fail(`the volume is in conflict: ${a.check.conflicts.map((x) => `${x.code}: ${x.message}`).join('; ')}`);
            if (a.check.pairs.length === 0) {
              // (The sizes apart mid-grow: the daemon keeps the link for its other volumes;
              // here it has none, so it is cut and made again.)
              const u = a.check.unavailable[0];
              if (!u?.resized || !sizesMayDiffer()) fail(`the link came up without the volume: ${JSON.stringify(a.check.unavailable)}`);
              if (primary) stats.unpairedBySize++;
              cut(`${primary ? 'primary' : 'secondary'}: ${u!.reason}`);
              return;
            }
            pairUp(primary, c, a.check.pairs[0]!.remote, a.version);
            break;
          case 'volumeDown':
            // (The daemon: the shipper down, its frames not yet written dropped, the replica detached: src/node/pairing.ts, Pairings.volumeDown.)
            if (primary) {
              shipper.down();
              for (let f = linkScheduler.next(); f; f = linkScheduler.next()) f.item.hold?.release();
              scheduledBytes = 0;
            } else {
              replica.detach();
            }
            break;
          case 'volumeUp': {
            const o = a.outcome;
            if (o !== null && 'resized' in o && o.resized) {
              // (The sizes apart: one side grew since its description was taken, or is mid-grow. The daemon leaves the volume
              // unpaired on the link until its grow asks again; here the link is cut, and its next Hello checks the sizes as ever.)
              if (primary) stats.unpairedBySize++;
              cut(`${primary ? 'primary' : 'secondary'}: ${o.reason}`);
              return;
            }
            if (o === null || !('pair' in o) || o.follows) fail(`the volume was not paired again: ${JSON.stringify(o)}`);
            if (primary) stats.rehellos++;
            pairUp(primary, c, (o as { pair: { remote: HelloVolume } }).pair.remote, machine.version);
            break;
          }
          case 'records': {
            // (A large frame came in pieces into the node's buffer: given back once logged, and poisoned then.)
            const owned = a.owned;
            if (owned) stats.framesGathered++;
            void replica.receive(a.records, undefined, () => owned?.give()).catch((e: Error) => {
              if (conn === c) cut(`secondary: ${e.message}`);
            });
            break;
          }
          case 'unpack': {
            // (The daemon unpacks in a worker; here on the spot, into the node's buffer as the
            // daemon does, then the machine is told. That buffer goes back once the records are
            // logged, and is poisoned then.)
            let unpacked: OwnedRecords;
            try {
              unpacked = unpackPackedOwned(parsePackedRecordsFrame(a.payload), gatherBuffers);
            } catch (e) {
              a.owned?.give();
              cut(`secondary: ${(e as Error).message}`);
              return;
            }
            // (The frame is read no more.)
            if (a.owned) {
              stats.framesGathered++;
              a.owned.give();
            }
            void replica.receive(unpacked.records, undefined, () => unpacked.owned?.give()).catch((e: Error) => {
              if (conn === c) cut(`secondary: ${e.message}`);
            });
            runAt(primary, c, machine.handle({ type: 'unpacked' }));
            break;
          }
          case 'resync':
            void replica.openRound(a.startSeq).catch((e: Error) => {
              if (conn === c) cut(`secondary: opening the round: ${e.message}`);
            });
            break;
          case 'hashRequest': {
            const r = a.request;
            // (Not answered under another pairing than the one that asked: a VolumeHello between.)
            const pairing = c.atB.pairingOf(VOLUME);
            const same = (): boolean => conn === c && c.atB.pairingOf(VOLUME) === pairing;
            void replica.hashRegions(regionHashOf(c.atB.version), r.regionSize, r.first, r.count, same, r.afterSeq ?? 0).then((h) => {
              if (h && same()) c.ba.push(Buffer.concat(atVersion(encodeHashReply(r, h), c.atB.version)));
            });
            break;
          }
          case 'hashReply':
            shipper.hashReply(a.reply.first, a.reply.regionSize, a.reply.hashes);
            break;
          case 'mapRequest': {
            const r = a.request;
            const pairing = c.atB.pairingOf(VOLUME);
            const same = (): boolean => conn === c && c.atB.pairingOf(VOLUME) === pairing;
            void replica.mapHoles(r.offset, r.length, MAX_MAP_HOLES, same).then((map) => {
              if (map && same()) c.ba.push(Buffer.concat(atVersion(encodeMapReply({ volume: r.volume, offset: r.offset, ...map }), c.atB.version)));
            });
            break;
          }
          case 'mapReply':
            stats.mapped++;
            shipper.mapReply(a.reply.offset, a.reply.covered, a.reply.holes);
            break;
          case 'hold':
            if (a.hold.held) stats.pauses++;
            shipper.peerHold(a.hold.held, a.hold.resumeAfter);
            break;
          case 'ack':
            shipper.ack(a.seq);
            break;
          case 'dropped':
            // (A frame of the pairing that ended: its gathered buffer goes back, as the daemon's adapter gives it.)
            a.frame.owned?.give();
            break;
          case 'pauseReading':
          case 'resumeReading':
          case 'droppedBeforeHello':
            break;
        }
      }
    };

    /** Moves some bytes across the link in one direction (a random prefix of the first chunk). */
    const deliver = (toSecondary: boolean): boolean => {
      const c = conn;
      if (!c || clock < stallUntil) return false;
      const q = toSecondary ? c.ab : c.ba;
      // The socket takes the frames the shipper sent while its buffer has room (control
      // frames, heartbeats and acks, went straight in): their bytes are copied now, and
      // their rooms released.
      for (let held = q.reduce((n, b) => n + b.length, 0); toSecondary && held < SOCKET_ROOM;) {
        const f = linkScheduler.next();
        if (!f) break;
        assertFrameLive(f.item.hold, VOLUME);
        const bytes = Buffer.concat(atVersion(f.item.parts, c.atA.version));
        scheduledBytes -= bytes.length;
        f.item.hold?.release();
        q.push(bytes);
        held += bytes.length;
      }
      if (q.length === 0) return false;
      let chunk = q[0]!;
      if (rng.chance(0.01)) {
        // A byte flipped on the way: frame and record checksums must catch it.
        chunk = Buffer.from(chunk);
        const k = rng.int(chunk.length);
        chunk[k] = chunk[k]! ^ (1 << rng.int(8));
        stats.flips++;
      }
      const n = rng.chance(0.7) ? chunk.length : 1 + rng.int(chunk.length);
      const piece = chunk.subarray(0, n);
      if (n === chunk.length) q.shift();
      else q[0] = chunk.subarray(n);
      const dec = toSecondary ? c.decB : c.decA;
      const machine = toSecondary ? c.atB : c.atA;
      runAt(!toSecondary, c, machine.handle({ type: 'heard', now: clock }));
      dec.push(piece);
      try {
        for (let f = dec.next(); f; f = dec.next()) {
          if (conn !== c) break;
          runAt(!toSecondary, c, machine.handle({ type: 'frame', frame: f, now: clock }));
        }
      } catch (e) {
        // (A failure of the simulation's own checks, raised while a frame was taken, is the seed's failure, not a bad frame.)
        if (e instanceof SimFailure) throw e;
        cut(`bad frame: ${(e as Error).message}`);
      }
      return true;
    };

    const rehello = (primary: boolean): void => {
      const c = conn;
      if (!c) return;
      const machine = primary ? c.atA : c.atB;
      if (!machine.rehelloes) return;
      trace(`${primary ? 'primary' : 'secondary'}: the volume's Hello again`);
      runAt(primary, c, machine.rehello(VOLUME));
    };
    const flip = (): void => {
      const q = conn ? (rng.chance(0.7) ? conn.ab : conn.ba) : [];
      if (q.length === 0) return;
      const i = rng.int(q.length);
      const b = Buffer.from(q[i]!);
      const k = rng.int(b.length);
      b[k] = b[k]! ^ (1 << rng.int(8));
      q[i] = b;
      stats.flips++;
    };

    const crashSecondary = async (powerLoss: boolean): Promise<void> => {
      trace(`crash secondary ${name} (${powerLoss ? 'power loss' : 'kill -9'})`);
      if (grow.state === 'secondaries' && replica.size < secondarySize) stats.growsCrashed++;
      slife++;
      stats.crashes++;
      cut('secondary crashed');
      ssched.clear();
      sdisk.crash(rng, powerLoss);
      sjstore.crash(rng, powerLoss);
      ssstore.crash(rng, powerLoss);
      await openSecondary();
      // A held checkpoint survives the crash, image and all.
      if (replica.checkpoint) await checkCheckpoint();
      else checkpointImage = null;
    };

    /** Invariant 8: every restore point the history lists opens to the primary's image there. */
    const checkHistory = async (why: string, count = 2): Promise<void> => {
      if (!replica.history) return;
      for (let k = 0; k < count; k++) {
        // (Listed afresh each time: the reads of the one before let applies run, and retention may have let a point go.)
        const points = replica.historyPoints();
        if (points.length === 0) break;
        const p = points[histRng.int(points.length)]!;
        const want = pointImage(p.seq);
        if (want === undefined) fail(`the history lists point ${p.seq} (record ${p.record}), which is no barrier of the primary (${why})`);
        const view = await settle(replica.openPoint(p.seq));
        const buf = Buffer.alloc(replica.size);
        try {
          await settle(view.read(0, buf, 0, buf.length));
        } finally {
          view.close();
        }
        if (hash(buf) !== want && beforeFollow.has(p.seq)) {
          fail(`restore point ${p.seq} of ${name} (${why}, kept across its follow) opens to an image that is not the primary's there`);
        }
        if (hash(buf) !== want) {
          const b = firstDifferentBlock(imageUpTo(p.seq), buf);
          fail(`restore point ${p.seq} of ${name} (${why}) opens to an image that is not the primary's there: block ${b} holds write ` +
            `${buf.readUInt32LE(b * BLOCK)}, the primary's ${imageUpTo(p.seq).readUInt32LE(b * BLOCK)}`);
        }
        stats.historyChecks++;
        if (beforeFollow.has(p.seq)) stats.keptAcrossFollow++;
      }
    };

    /** A reader of the replica export sees a flush-point image, never half a unit. */
    const readReplica = async (): Promise<void> => {
      if (!replica.consistent) return; // the first sync: nothing to present yet, and it says so
      const buf = Buffer.alloc(replica.size);
      const ok = await settle(replica.read(0, buf, 0, buf.length).then(() => true, () => false));
      if (!ok) return; // EIO while a failed apply waits to be redone: refused, not wrong
      const h = hash(buf);
      if (![...imageAt.values()].includes(h) && !servesFollowImage(h)) fail('a reader of the replica saw an image that is no flush point of the primary');
    };

    // A checkpoint freezes the replica's image: the hash taken when it is created must
    // hold until it is released, across crashes of either side and a full receive log.
    let checkpointImage: string | null = null;
    const imageNow = async (): Promise<string | null> => {
      const buf = Buffer.alloc(replica.size);
      const cp = replica.checkpoint;
      const ok = await settle((cp ? replica.readImage(cp, 0, buf, 0, buf.length) : replica.read(0, buf, 0, buf.length)).then(() => true, () => false));
      return ok ? hash(buf) : null;
    };
    const checkCheckpoint = async (): Promise<void> => {
      if (!replica.checkpoint || checkpointImage === null) return;
      const h = await imageNow();
      if (h !== null && h !== checkpointImage) fail(`the image changed while checkpoint "${replica.checkpoint.label}" was held`);
    };
    /**
     * A reload turns history off or on again (src/node/reloaded-volumes.ts): between two
     * units, so the points listed from then on still open to the primary's image there
     * (invariant 8, checked as for any point). Off is refused while a checkpoint holds a
     * past point, and the config keeps it on; on may fail on a full disk (the next start
     * opens it, as the config says).
     */
    const toggleHistory = async (): Promise<void> => {
      if (!keepsHistory) return;
      const on = !historyOn;
      const held = !on && replica.checkpoint?.point !== undefined;
      const err = await settle(replica.setHistory(on ? historySettings : null).then(() => null, (e: Error) => e));
      if (held) {
        if (!err) return fail('history was turned off while a checkpoint held a past point read from it');
        trace(`history stays on: ${err.message}`);
        return;
      }
      historyOn = on;
      trace(`history turned ${on ? 'on' : 'off'}${err ? ` (failed: ${err.message})` : ''}`);
      if (!on && !err && replica.history) fail('history turned off, yet the replica still keeps one');
      const left = ssstore.list().filter(isHistoryFile);
      if (!on && !err && left.length > 0) fail(`history turned off, yet its files are still there: ${left.join(', ')}`);
      stats.historyToggles++;
    };
    const toggleCheckpoint = async (): Promise<void> => {
      if (replica.checkpoint) {
        await checkCheckpoint();
        trace('release checkpoint');
        await settle(replica.releaseCheckpoint()).catch(() => undefined);
        if (!replica.checkpoint) checkpointImage = null;
        return;
      }
      // Half the checkpoints of a seed that keeps history are of a past point (`--at`):
      // the image is the primary's at that point, and stays so while the replica moves on.
      const points = keepsHistory ? replica.historyPoints() : [];
      const at = points.length > 0 && histRng.chance(0.5) ? points[histRng.int(points.length)]!.time : undefined;
      if (!replica.consistent && at === undefined) return;
      const ok = await settle(replica.createCheckpoint(`cp${step}`, null, clock, false, undefined, at).then(() => true, () => false));
      if (!ok) return;
      trace(`checkpoint held at record ${replica.checkpoint!.appliedSeq}${at !== undefined ? ' (a past point)' : ''}`);
      checkpointImage = await imageNow();
      const point = replica.checkpoint!.point;
      if (point && checkpointImage !== null && checkpointImage !== pointImage(point.seq)) {
        fail(`checkpoint "${replica.checkpoint!.label}" of the past point at record ${point.seq} is not the primary's image there`);
      }
      stats.checkpoints++;
    };

    const checkLink = (): void => {
      if (replica.log.usedBytes > replica.log.capacity) fail(`receive log of ${name} uses ${replica.log.usedBytes} of ${replica.log.capacity} bytes`);
      const wire = conn ? conn.ab.reduce((n, b) => n + b.length, scheduledBytes) : 0;
      // The window bounds unacked record bytes; a batch may overshoot by one batch, plus frame headers.
      if (wire > 2 * windowBytes + 64 * 1024) fail(`${wire} bytes in flight on the link to ${name}, window ${windowBytes}`);
      // Invariant 2, live: released records are durable at the secondary (a detached one's: in its bitmap).
      const j = jv.journal;
      const holds = Math.max(replica.receiver.logDurable, replica.receiver.applied);
      if (jv.mode === 'journal' && !jv.roundStartFor(name) && !detached() && j.released > holds) {
        fail(`the primary released up to ${j.released}; ${name} holds only up to ${replica.receiver.logDurable}`);
      }
    };
    /**
     * Failover (src/node/roles.ts's promote): the checkpoint is let go, what the receive
     * log holds durably is applied in whole units, a round is rolled back; the volume is
     * then the old primary's image at a flush point, which the new primary starts from.
     */
    /** The link goes and a held checkpoint is let go, as a promote or a follow begins. */
    const leaveRole = async (why: string): Promise<void> => {
      cut(why);
      if (replica.checkpoint) await settle(replica.releaseCheckpoint());
      checkpointImage = null;
    };
    /**
     * The past point a promote wrote down: one that failed after that goes there again, as
     * the daemon insists (src/node/promote-intents.ts). One that failed before (the file's
     * write itself) chooses again: the point may be gone (a history whose write failed on
     * the full disk is dropped, and says so).
     */
    let promoteTarget: { seq: number; time: number } | undefined;
    const promote = async (toPast: boolean, crashAfter: number | null): Promise<Buffer> => {
      await leaveRole(`${name} is promoted`);
      // `promote --at`: rolled back to a restore point of its history (the recovery after ransomware).
      const points = toPast && !promoteTarget ? replica.historyPoints() : [];
      const point = promoteTarget ?? (points.length > 0 ? points[histRng.int(points.length)]! : undefined);
      // (Kept listed from its choice on, as roles.ts does: units ending before the roll-back may thin.)
      if (point) replica.keepPoint(point.seq);
      if (point) {
        // Written down first, as the daemon does: a start after a crash goes to the same point.
        await settle(writePromoteAt(ssstore, { seq: point.seq, time: point.time }));
        promoteTarget = { seq: point.seq, time: point.time };
        promotingToPast = true;
      }
      if (crashAfter !== null) {
        // A power loss part-way; the next start completes the promote (roles.ts's completeChange).
        void replica.finishForPromote(point && { seq: point.seq }).catch(() => undefined);
        for (let k = 0; k < crashAfter && ssched.step(); k++) await flushMicrotasks();
        trace(`${name} loses power ${crashAfter} steps into its promote`);
        await crashSecondary(true);
        stats.promoteCrashes++;
      }
      const wantPast = point && pointImage(point.seq);
      const fin = await settle(replica.finishForPromote(point && { seq: point.seq }));
      slife++; // (the replica's process ends here: the new primary opens the disk)
      const image = Buffer.from(sdisk.file.current);
      if (point && wantPast !== hash(image)) {
        fail(`${name} was promoted to its restore point at record ${point.seq}, but its image is not the old primary's there`);
      }
      if (point) stats.pastPromotes++;
      // A flush point of the old primary: the one it applied up to, or (a round open, even one
      // that opened as the checkpoint went: rolled back) the one from before the round; or,
      // for one that followed this primary and got no round of it yet, the image it served at the follow.
      // (A restore point is checked above: one kept across a follow is an earlier primary's image.)
      if (!point && ![...imageAt.values()].includes(hash(image)) && !servesFollowImage(hash(image))) {
        fail(`${name} was promoted at record ${fin.applied} (${fin.rolledBack} regions rolled back), but its image is no flush point of the old primary`);
      }
      trace(`${name} promoted at record ${fin.applied}`);
      promoteTarget = undefined;
      return image;
    };
    /**
     * Follows a new primary (roles.ts's follow): as a promote, then the receive log,
     * round, undo area and history go, the first-sync mark stays; the new primary
     * compares every region by hash. `former`: the old primary's flush-point images.
     */
    const follow = async (former: ReadonlyMap<number, string>): Promise<void> => {
      await leaveRole(`${name} follows ${primaryName}`);
      const synced = ssstore.files.has(SYNCED_FILE); // (its first sync ended once: the mark the follow keeps)
      const fin = await settle(replica.finishForPromote(undefined, { follow: true }));
      receiving = -1;
      const h = hash(sdisk.file.current);
      if (synced && ![...former.values()].includes(h)) {
        fail(`${name} follows ${primaryName} from record ${fin.applied}, but its image is no flush point of the old primary`);
      }
      followImage = synced ? h : null;
      // Its restore points stay (roles.ts's follow), each the old primary's image at its record.
      const kept = replica.historyPoints();
      for (const p of kept) {
        const want = beforeFollow.get(p.seq) ?? former.get(p.record);
        if (want === undefined) fail(`${name}'s history lists point ${p.seq} (record ${p.record}), which is no barrier of the old primary`);
        beforeFollow.set(p.seq, want!);
      }
      await settle(replica.followed(lostPrimary?.name ?? null, primaryName));
      slife++;
      restarted = true;
      for (const f of sjstore.list()) sjstore.remove(f);
      for (const f of ssstore.list()) if (f !== SYNCED_FILE && !isHistoryFile(f)) ssstore.remove(f);
      await settle(Promise.all([sjstore.syncDir(), ssstore.syncDir()]));
      trace(`${name} follows ${primaryName} from record ${fin.applied}${synced ? '' : ' (its first sync unfinished)'}`);
      await openSecondary();
    };
    const tickLink = (): void => {
      const linked = conn as Conn | null; // (set by connect(), out of the compiler's sight)
      if (!linked) return;
      runAt(true, linked, linked.atA.handle({ type: 'tick', now: clock }));
      runAt(false, linked, linked.atB.handle({ type: 'tick', now: clock }));
    };
    return {
      name, sched: ssched, sdisk, sjstore, ssstore,
      get replica() { return replica; },
      get opened() { return opened; },
      get shipper() { return shipper; },
      get conn() { return conn; },
      get tornApply() { return tornApply; },
      grow: (n: number) => {
        // (Once per life: a crash before it was written down loses it, and the operator reloads again.)
        if (growLife === slife || replica.size >= n) return;
        const life = (growLife = slife);
        replica.grow(n).catch((e: Error) => {
          if (life === slife) fail(`growing the replica at ${name} to ${n} failed: ${e.message}`);
        });
      },
      newShipper, openSecondary, connect, cut, deliver, flip, rehello, crash: crashSecondary, checkHistory, readReplica, checkCheckpoint, toggleCheckpoint,
      toggleHistory, checkLink, tickLink, promote, follow,
      stall: (until: number) => {
        stallUntil = until;
      },
    };
  };
  const siteB = makeSite(SITE_B, rng, speaksB);
  sites.push(siteB);
  if (threeSites) sites.push(makeSite(SITE_C, rngC, PROTOCOL_RANGE));
  peerNames = sites.map((s) => s.name);
  // The sites the main schedule's events and site-c's own (siteEvent) act on: after a failover, those left.
  let b: SiteSim | null = siteB;
  let c: SiteSim | null = sites[1] ?? null;

  // --- the host ---------------------------------------------------------------
  const busy = new Set<number>();
  let nextTag = 1;
  const pattern = (tag: number, blocks: number): Buffer => {
    const b = Buffer.alloc(blocks * BLOCK);
    for (let s = 0; s < b.length; s += SECTOR) b.writeUInt32LE(tag, s);
    return b;
  };
  const issue = (kind: 'write' | 'zeroes' | 'trim'): void => {
    const blocks = 1 + rng.int(3);
    // Coalescing seeds mostly rewrite a hot set of blocks (a database's pages), so batches overlap.
    const span = coalescing && rng.chance(0.7) ? 8 : jv.size / BLOCK;
    const block = rng.int(span - blocks + 1);
    for (let b = block; b < block + blocks; b++) if (busy.has(b)) return;
    for (let b = block; b < block + blocks; b++) busy.add(b);
    const gen = pgen;
    const fua = rng.chance(0.1);
    trace(`host ${kind} blocks ${block}+${blocks} tag ${kind === 'write' ? nextTag : 0} (mode ${jv.mode})`);
    // (Some writes are all zeros: packed, they travel as Zeroes records.)
    const p = kind === 'write' ? jv.write(block * BLOCK, pattern(rng.chance(0.1) ? 0 : nextTag++, blocks), fua)
      : kind === 'zeroes' ? jv.writeZeroes(block * BLOCK, blocks * BLOCK, { fua, mayTrim: true, fast: false })
      : jv.trim(block * BLOCK, blocks * BLOCK, fua);
    const done = (): void => {
      if (gen === pgen) for (let b = block; b < block + blocks; b++) busy.delete(b);
    };
    p.then(done, done);
  };

  // --- faults -----------------------------------------------------------------
  const crashPrimary = async (powerLoss: boolean): Promise<void> => {
    trace(`crash primary (${powerLoss ? 'power loss' : 'kill -9'})`);
    if (grow.state === 'primary' && jv.size < size) stats.growsCrashed++;
    plife++; // the dead process's code touches its disks no more
    if (debug) for (const [n, f] of pjstore.files) trace(
      `  primary file ${n}: ${f.current.length} bytes${f.current.length >= 24 && n.endsWith('.seg') ? `, base ${f.current.readBigUInt64LE(16)}` : ''}`);
    stats.crashes++;
    for (const s of sites) s.cut('primary crashed');
    pgen++;
    busy.clear();
    psched.clear();
    pdisk.crash(rng, powerLoss);
    pjstore.crash(rng, powerLoss);
    pmstore.crash(rng, powerLoss);
    if (powerLoss) {
      primaryLost = true;
      boots++; // the machine restarts: a new boot id
    }
    await openPrimary();
  };
  const checkBounds = (): void => {
    const j = jv.journal;
    if (j.usedBytes > j.capacity) fail(`journal uses ${j.usedBytes} of ${j.capacity} bytes`);
    const pending = psched.size + sites.reduce((n, s) => n + s.sched.size, 0);
    if (pending > 10000) fail(`${pending} operations pending: unbounded queue`);
    for (const s of sites) s.checkLink();
    // (Counted as they happen: a detach in one life of the primary, rejoined or merged at its next start.)
    const nowDetached = named() && jv.cursors.detached.length > 0;
    if (nowDetached && !wasDetached) stats.detached++;
    wasDetached = nowDetached;
    if (jv.roundOwner !== null && jv.roundStart !== ownRoundSeen) {
      if (jv.firstSyncOpenFor(jv.roundOwner)) stats.ownFirstSyncs++;
      else stats.ownRounds++;
    }
    ownRoundSeen = jv.roundOwner !== null ? jv.roundStart : 0;
  };
  let wasDetached = false;
  let ownRoundSeen = 0;

  /** One step's event at site-c, from its own generator: as site-b's, and now and then a long outage of its link. */
  let outageUntil = 0;
  const siteEvent = async (c: SiteSim): Promise<void> => {
    const r = rngC.next();
    if (r < 0.01) {
      outageUntil = step + 60 + rngC.int(140);
      c.cut('a long outage of site-c');
    } else if (r < 0.08) {
      if (step >= outageUntil) c.connect();
    } else if (r < 0.09) c.cut('cut by the simulation');
    else if (r < 0.1) c.stall(clock + STEP_MS * (1 + rngC.int(20)));
    else if (r < 0.11) c.flip();
    else if (r < 0.115) c.sjstore.full = !c.sjstore.full && rngC.chance(0.3);
    else if (r < 0.12) c.sdisk.full = !c.sdisk.full && rngC.chance(0.3);
    else if (r < 0.13) await c.crash(rngC.chance(0.5));
    else if (r < 0.14) {
      await c.readReplica();
      await c.checkHistory('while replicating');
    } else if (r < 0.15 && (!c.replica.checkpoint || rngC.chance(0.3))) await c.toggleCheckpoint();
    else {
      // (The primary's I/O too: with two links to feed it keeps up, rather than fill its journal.)
      for (let k = 1 + rngC.int(8); k > 0; k--) {
        const which = rngC.int(4);
        if (which === 0) c.sched.step();
        else if (which === 1) psched.step();
        else c.deliver(which === 2);
      }
    }
  };

  // --- site-c taken away and put back -----------------------------------------
  // In the three-site seeds before a failover, now and then a reload of the primary's
  // config takes site-c away from the volume's peers (JournaledVolume.setPeers): its link
  // is cut and not made again, and the journal follows site-b alone. Later (at the latest
  // when faults stop, or before a failover) another puts it back: it joins detached, every
  // region of its bitmap marked, and its replica, behind what the journal holds, gets a
  // round of its own compared by hash. Its own generator: the other seeds replay as before.
  const peersRng = new Rng(seed ^ 0x9ee5);
  const rehelloRng = new Rng(seed ^ 0x4e11);
  let retired: SiteSim | null = null;
  const takeAway = async (s: SiteSim): Promise<void> => {
    trace(`${s.name} taken away from the peers at a reload (round ${jv.roundStart} of ${jv.roundOwner ?? 'every peer'})`);
    if (jv.roundOwner === s.name) stats.ownRoundsAbandoned++;
    s.cut('taken away from the peers at a reload');
    sites.splice(sites.indexOf(s), 1);
    retired = s;
    c = null;
    peerNames = sites.map((x) => x.name);
    await settle(jv.setPeers(peerNames));
    if (jv.roundOwner === s.name || jv.cursors.has(s.name)) fail(`${s.name} still a peer of the journal after it was taken away`);
    stats.peersRemoved++;
  };
  const putBack = async (why: string): Promise<void> => {
    const s = retired;
    if (!s) return;
    trace(`${s.name} put back among the peers at a reload (${why})`);
    retired = null;
    sites.push(s);
    c = s;
    peerNames = sites.map((x) => x.name);
    await settle(jv.setPeers(peerNames));
    s.newShipper();
  };
  // The same at a restart of the primary (the file changed while it was down): the
  // journal opens with the peers it had, and the start makes the change (settlePeers).
  // Put back this way after the journal let go of records site-c lacked, only its first
  // sync of its own brings it level (peers-restart.test.ts: before the fix it was not).
  const putBackAtRestart = async (): Promise<void> => {
    const s = retired;
    if (!s) return;
    trace(`${s.name} put back among the peers in the file, the primary restarted`);
    retired = null;
    sites.push(s);
    c = s;
    peerNames = sites.map((x) => x.name);
    await crashPrimary(false);
    if (!jv.cursors.has(s.name)) fail(`${s.name} not a peer of the journal after a restart put it back`);
  };

  // --- the volume grown ------------------------------------------------------
  // A third of the seeds before a failover grow the volume part-way (docs/CONFIG.md,
  // "Growing a volume"), as an operator does by reloads: every secondary's size: first
  // (Replica.grow, between two units), then, once each has grown (a crash meanwhile grows
  // its file at the next open), the primary's (JournaledVolume.grow: bitmaps, file,
  // size). The faults go on throughout: crashes mid-grow at either side, links cut and
  // made again (a Hello with the sizes apart leaves the volume unpaired). Host writes
  // reach past the old end once the primary has grown. Its own generator.
  const growRng = new Rng(seed ^ 0x6e0e);
  // (OFFSITE_SIM_NOGROW=1: none, the other seeds' schedules as they ran before grows were simulated.)
  const growAt = process.env.OFFSITE_SIM_NOGROW ? -1 : growRng.chance(1 / 3) ? Math.floor(cfg.steps * (0.1 + 0.6 * growRng.next())) : -1;
  const grow = { state: 'no' as 'no' | 'secondaries' | 'primary' | 'done', life: -1 };
  const midGrow = (): boolean => grow.state === 'secondaries' || grow.state === 'primary';
  // (Sizes apart at a Hello are a grow's while it is under way, and once it began: a Hello may describe a size
  // its side grew past as it crossed, and a site down through the grow is grown by its reload once it is back.)
  const sizesMayDiffer = (): boolean => grow.state !== 'no';
  const growStep = (step: number): void => {
    const all = (): SiteSim[] => [...sites, ...(retired ? [retired] : [])];
    if (grow.state === 'primary' || grow.state === 'done') for (const s of all()) if (s.opened && s.replica.size < secondarySize) s.grow(secondarySize);
    if (grow.state === 'no' && growAt >= 0 && step === growAt && !failedOver && !lostPrimary) {
      secondarySize = size + BLOCK * (1 + growRng.int(cfg.volumeBlocks));
      trace(`the secondaries grow to ${secondarySize} (a reload of each)`);
      for (const s of all()) s.grow(secondarySize);
      grow.state = 'secondaries';
    } else if (grow.state === 'secondaries') {
      // (A site whose reload a crash lost before the grow was written down is reloaded again.)
      for (const s of all()) if (s.opened) s.grow(secondarySize);
      if (all().every((s) => !s.opened || s.replica.size >= secondarySize)) {
        size = secondarySize;
        grow.state = 'primary';
      }
    }
    if (grow.state === 'primary' && jv.size < size && grow.life !== plife) {
      trace(`the primary grows to ${size} (a reload)`);
      const life = (grow.life = plife);
      jv.grow(size).catch((e: Error) => {
        if (life === plife) fail(`growing the primary to ${size} failed: ${e.message}`);
      });
    } else if (grow.state === 'primary' && jv.size >= size) {
      trace(`the primary has grown to ${size}`);
      grow.state = 'done';
      stats.grown++;
    }
  };

  // --- failover -------------------------------------------------------------
  // A quarter of the seeds lose the primary part-way (kill -9 or power loss, and it stays
  // down): a secondary whose replica is a flush-point image is promoted, the other (if
  // any) follows it and is sent what differs, and later the old primary returns demoted,
  // with its disk as the loss left it (writes no secondary got), and is sent what differs
  // too (docs/ROLES.md). Their own generator: the other seeds replay as before.
  const failRng = new Rng(seed ^ 0xfa11);
  let failoverAt = failRng.chance(1 / 4) ? Math.floor(cfg.steps * (0.2 + 0.6 * failRng.next())) : -1;
  /**
   * Half the failovers come after a calm spell (no cuts, stalls, flips, full disks or
   * crashes, links up) of this many steps: the secondaries catch up and apply, so the
   * promote applies what its receive log holds and history holds restore points to
   * promote to. Without it they lag far behind in the fault phase and most promotes are
   * of the image at record 0.
   */
  const calmSteps = failRng.chance(1 / 2) ? 30 + failRng.int(90) : 0;
  let returnAt = -1;
  let failedOver = false;
  let lostPrimary: { name: string; sched: Scheduler; disk: MemDisk } | null = null;
  const failover = async (): Promise<void> => {
    await putBack('before the failover');
    // (A replica with restore points can be promoted to one of them whatever it is now: a round, a torn apply.)
    const past = (s: SiteSim): boolean => s.replica.historyPoints().length > 0;
    const able = sites.filter((s) => s.replica.consistent || past(s));
    if (able.length === 0) return; // (none could be promoted without --force: the seed goes on without a failover)
    const promoted = able[failRng.int(able.length)]!;
    const toPast = past(promoted) && (!promoted.replica.consistent || failRng.chance(0.8));
    trace(`restore points at failover: ${sites.map((x) => `${x.name} ${x.replica.historyPoints().length}`).join(', ')}; keeps history ${keepsHistory}`);
    const powerLoss = failRng.chance(0.5);
    trace(`the primary is lost (${powerLoss ? 'power loss' : 'kill -9'}); ${promoted.name} takes over`);
    plife++;
    pgen++;
    busy.clear();
    for (const s of sites) s.cut('the primary is lost');
    psched.clear();
    pdisk.crash(failRng, powerLoss);
    lostPrimary = { name: primaryName, sched: psched, disk: pdisk };
    const former = new Map(imageAt);
    // A third of the promotes find a disk of the promoted site full (its volume, receive log
    // or state files): the promote must fail with the disk's error, change nothing it cannot
    // redo, and succeed when the operator has made room and promotes again. The others,
    // and every follow, run with room on every disk.
    const fullAtPromote = failRng.chance(1 / 3);
    for (const s of sites) s.sdisk.full = s.sjstore.full = s.ssstore.full = false;
    if (fullAtPromote) {
      const k = 1 + failRng.int(7);
      promoted.sdisk.full = (k & 1) !== 0;
      promoted.sjstore.full = (k & 2) !== 0;
      promoted.ssstore.full = (k & 4) !== 0;
      trace(`${promoted.name}'s disks full at the promote: volume ${promoted.sdisk.full}, receive log ${promoted.sjstore.full}, ` +
        `state ${promoted.ssstore.full}`);
    }
    let image: Buffer;
    try {
      image = await promoted.promote(toPast, !fullAtPromote && failRng.chance(0.3) ? failRng.int(12) : null);
    } catch (e) {
      if (!fullAtPromote || e instanceof SimFailure || !/ENOSPC/.test((e as Error).message)) throw e;
      trace(`the promote of ${promoted.name} failed (${(e as Error).message}); room is made and it is promoted again`);
      stats.promotesOnFullDisk++;
      promoted.sdisk.full = promoted.sjstore.full = promoted.ssstore.full = false;
      image = await promoted.promote(toPast, null);
    }
    sites.splice(sites.indexOf(promoted), 1);
    // The new primary's journal numbers its records from 1 again: a new stream, from the promoted image.
    stream.clear();
    imageAt.clear();
    baseImage = image;
    imageAt.set(0, hash(image));
    failedOver = true;
    stats.failovers++;
    primaryName = promoted.name;
    peerNames = [...sites.map((s) => s.name), lostPrimary.name];
    psched = promoted.sched;
    pdisk = promoted.sdisk;
    pdisk.full = false; // (the primary's volume never fills here: its journal's disk does, below)
    pjstore = new MemStore(psched, { directAppends: true });
    pmstore = new MemStore(psched);
    await openPrimary();
    for (const s of sites) await s.follow(former);
    [b, c] = [sites[0] ?? null, sites[1] ?? null];
    returnAt = step + 10 + failRng.int(60);
  };
  /** The lost primary returns, is refused and demoted (roles.ts's demote): its role's files go, its disk stays. */
  const primaryReturns = async (): Promise<void> => {
    const lost = lostPrimary!;
    const a = makeSite(lost.name, failRng, PROTOCOL_RANGE, lost);
    lostPrimary = null;
    a.newShipper();
    await a.openSecondary();
    sites.push(a);
    [b, c] = [sites[0]!, sites[1] ?? null];
    trace(`${lost.name} returns, demoted: a secondary of ${primaryName}`);
    // A third of them fail over again later (the new primary lost in turn: a third journal).
    if (failRng.chance(1 / 3)) failoverAt = step + 15 + failRng.int(40);
  };

  /** Verifies seen to their end (each checked once). */
  const verifiesSeen = new WeakSet<VerifyRun>();
  const checkVerifies = (): void => {
    for (const s of sites) {
      const v = s.shipper.verify;
      if (!v || v.state !== 'done' || verifiesSeen.has(v)) continue;
      verifiesSeen.add(v);
      if (v.differing.length > 0) {
        fail(`an online verify of ${s.name} found regions ${v.differing.join(', ')} different, but no replica was corrupted: ${v.message}`);
      }
      stats.verifies++;
    }
  };

  await openPrimary();
  // Half the seeds begin as a new pair: the first round sends the whole volume. The
  // others begin as a pair whose first sync is done (both volumes all zeros).
  if (rng.chance(0.5)) await settle(jv.beginInitialSync());
  else for (const s of sites) await settle(s.ssstore.replace(SYNCED_FILE, Buffer.from('synced\n')));
  for (const s of sites) await s.openSecondary();
  if (threeSites) stats.threeSites++;

  for (step = 0; step < cfg.steps; step++) {
    for (const s of sites) if (s.tornApply) fail(s.tornApply);
    const calm = failoverAt >= 0 && step < failoverAt && step >= failoverAt - calmSteps;
    clock += STEP_MS;
    if (sharing && shareRng.chance(0.1)) shareNow = [1, 1 / 2, 1 / 8, 1 / 50][shareRng.int(4)]!;
    for (const s of sites) s.shipper.tick();
    // Heartbeats and dead-peer detection on each side's clock tick (a peer not heard
    // for 40 steps is dropped). OFFSITE_SIM_TICKS=0 turns them off, which replays the
    // schedules of the seeds as they ran before the ticks were on.
    if (process.env.OFFSITE_SIM_TICKS !== '0') for (const s of sites) s.tickLink();
    growStep(step);
    // (Not mid-grow: the operator finishes it first.)
    if (step === failoverAt && midGrow()) failoverAt++;
    else if (step === failoverAt) await failover();
    if (step === returnAt) await primaryReturns();
    // (A calm step draws as any other, so the schedule around it is the same; its faults move bytes instead.)
    const drawn = rng.next();
    const r = calm && drawn >= 0.38 && drawn < 0.48 ? 0.5 : drawn;
    if (calm) {
      for (const s of sites) {
        s.sdisk.full = s.sjstore.full = s.ssstore.full = false;
        s.connect();
        // (A held checkpoint freezes the replica: let go, as an operator ends a drill.)
        if (s.replica.checkpoint) {
          await s.checkCheckpoint();
          await s.toggleCheckpoint();
        }
      }
    }
    // (With two secondaries, site-b is spared most of its faults, so it keeps up while site-c is away.)
    const spared = threeSites && r >= 0.38 && r < 0.46 && rngC.chance(0.8);
    if (r < 0.22) issue('write');
    else if (r < 0.25) issue('zeroes');
    else if (r < 0.27) issue('trim');
    else if (r < 0.33) void jv.flush().catch(() => undefined);
    // (`b` is null only after a failover that left no secondary, until the old primary returns.)
    else if (r < 0.38 || spared) b?.connect();
    else if (r < 0.395) b?.cut('cut by the simulation');
    else if (r < 0.405) b?.stall(clock + STEP_MS * (1 + rng.int(20)));
    else if (r < 0.42) b?.flip();
    else if (r < 0.425) pjstore.full = primaryHazards && !pjstore.full && rng.chance(0.2);
    else if (r < 0.43) b && (b.sjstore.full = !b.sjstore.full && rng.chance(0.3));
    else if (r < 0.435) b && (b.sdisk.full = !b.sdisk.full && rng.chance(0.3));
    else if (r < 0.445) await crashPrimary(primaryHazards && rng.chance(0.4));
    else if (r < 0.46) await b?.crash(rng.chance(0.5));
    else if (r < 0.47) {
      await b?.readReplica();
      await b?.checkHistory('while replicating');
    }
    else if (r < 0.48 && b && (!b.replica.checkpoint || rng.chance(0.3))) await b.toggleCheckpoint();
    else {
      for (let k = 1 + rng.int(8); k > 0; k--) {
        const which = rng.int(4);
        if (which === 0) psched.step();
        else if (which === 1) b?.sched.step();
        else b?.deliver(which === 2);
      }
    }
    if (c && !calm) await siteEvent(c);
    // (Its own stream of draws, so the schedule of every other event is as it was without it.)
    // (Now and then both sides at once, or one side twice before the answer: crossing requests, a change while asking.)
    if (b && !calm && rehelloRng.chance(0.03)) {
      const primary = rehelloRng.chance(0.5);
      b.rehello(primary);
      const more = rehelloRng.next();
      if (more < 0.25) b.rehello(!primary);
      else if (more < 0.5) b.rehello(primary);
    }
    if (threeSites && !failedOver && !calm) {
      if (retired) {
        if (peersRng.chance(0.01)) {
          if (peersRng.chance(0.5)) await putBack('a later reload');
          else await putBackAtRestart();
        }
      } else if (c && peersRng.chance(0.002)) await takeAway(c);
    }
    if (calm) {
      // (Calm: the disks and links keep moving, so records arrive, are logged and applied.)
      for (let k = 0; k < 24; k++) {
        for (const s of sites) {
          const which = failRng.int(4);
          if (which === 0) psched.step();
          else if (which === 1) s.sched.step();
          else s.deliver(which === 2);
        }
      }
    }
    await flushMicrotasks();
    if (jv.mode === 'bitmap') overflowed = true;
    checkBounds();
    // Online verifies (docs/RESYNC.md) start now and then while the host writes and the
    // faults go on. Nothing here corrupts a replica behind the replication's back, so
    // one that runs to its end must find every region equal: its batches are pinned at
    // their flush points, held against host writes until the peer answers.
    checkVerifies();
    if (verifyRng.chance(0.03)) {
      const s = sites[verifyRng.int(sites.length)];
      try {
        s?.shipper.startVerify(false);
      } catch {
        // (Refused: the link down, a round open; the operator would try again later.)
      }
    }
    // (Its own generator: the main schedule draws nothing more for it.)
    if (keepsHistory && histRng.chance(0.04)) await b?.checkHistory('while replicating', 1);
    if (keepsHistory && histRng.chance(0.004)) await b?.toggleHistory();
  }

  // Faults stop. The host flushes once more; every secondary must converge (an open or
  // pending resync round runs to its end first). A lost primary has returned by now.
  if (lostPrimary) await primaryReturns();
  await putBack('faults stop');
  pjstore.full = false;
  for (const s of sites) {
    s.sjstore.full = s.sdisk.full = false;
    s.stall(0);
  }
  outageUntil = 0;
  // A checkpoint still held stays held a while: the backlog fills the receive log,
  // the secondary pauses shipping, and on release everything must still converge.
  const releaseAt = sites.map((s, k) => (s.replica.checkpoint ? 500 + (k === 0 ? rng : rngC).int(1500) : -1));
  await settle(jv.flush()).catch(() => undefined);
  const canConverge = true;
  const settledAt = (s: SiteSim): boolean => !s.replica.round && s.replica.receiver.applied === jv.journal.lastSeq && s.shipper.acked === jv.journal.lastSeq;
  const settled = (): boolean => jv.mode === 'journal' && !jv.roundStart && jv.journal.durableSeq === jv.journal.lastSeq && sites.every(settledAt);
  const held = (): boolean => sites.some((s) => s.replica.checkpoint);
  for (let i = 0; i < 40000 && canConverge; i++) {
    clock += STEP_MS;
    growStep(-1);
    for (const s of sites) s.shipper.tick();
    for (const [k, s] of sites.entries()) {
      if (i === releaseAt[k] || (i > releaseAt[k]! && s.replica.checkpoint)) {
        await s.checkCheckpoint();
        await s.toggleCheckpoint();
      }
    }
    for (const s of sites) if (!s.conn) s.connect();
    const first = sites[0]!;
    let moved = first.deliver(true) || first.deliver(false);
    moved = psched.step() || moved;
    moved = first.sched.step() || moved;
    for (const s of sites.slice(1)) {
      moved = s.deliver(true) || s.deliver(false) || moved;
      moved = s.sched.step() || moved;
    }
    await flushMicrotasks();
    checkBounds();
    if (!moved && settled() && !held()) break;
    // No host flush: the primary closes an epoch the last records left open itself, once
    // it has been open a while (a host that writes and then goes idle never flushes).
    // Half the seeds (their own generator) flush now and then, as a host may.
    if (!moved && hostFlushesAtEnd && i % 20 === 19) void jv.flush().catch(() => undefined);
    // (The host keeps writing while a checkpoint is held: the backlog grows.)
    if (held() && i % 5 === 0) issue('write');
  }
  /** Every replica is the primary's image now (`what`: the point the run reached). */
  const sameImages = (what: string): void => {
    for (const s of sites) {
      const sdisk = s.sdisk;
      if (!sdisk.file.current.equals(pdisk.file.current)) {
        const b = firstDifferentBlock(sdisk.file.current, pdisk.file.current);
        const tags = (d: Buffer): string => Array.from({ length: BLOCK / SECTOR }, (_, k) => d.readUInt32LE(b * BLOCK + k * SECTOR)).join(',');
        fail(`${what} to record ${jv.journal.lastSeq}, but block ${b} differs at ${s.name}: replica sectors hold writes ${tags(sdisk.file.current)}, ` +
          `primary ${tags(pdisk.file.current)}`);
      }
    }
  };
  /** Moves everything (links up, no faults) until `done()`; `each` runs every step first. */
  const driveUntil = async (done: () => boolean, why: string, each: (i: number) => void = () => undefined): Promise<void> => {
    for (let i = 0; i < 20000; i++) {
      if (done()) return;
      each(i);
      clock += STEP_MS;
      for (const s of sites) s.shipper.tick();
      for (const s of sites) if (!s.conn) s.connect();
      psched.step();
      for (const s of sites) {
        s.deliver(true);
        s.deliver(false);
        s.sched.step();
      }
      await flushMicrotasks();
      checkBounds();
    }
    fail(`${why}: not done after 20000 steps (primary ${jv.mode}, round ${jv.roundStart}, journal durable ${jv.journal.durableSeq} of ` +
      `${jv.journal.lastSeq}; ${sites.map((s) => `${s.name} applied ${s.replica.receiver.applied} acked ${s.shipper.acked}` +
        `${s.replica.round ? ' in a round' : ''}${s.conn ? '' : ' link down'}`).join('; ')})`);
  };
  /**
   * The online verify at the end, on a converged pair: once while the host writes (it
   * must find nothing), then after one block of the replica was corrupted behind the
   * replication's back (it must find exactly that block's region, and repair it).
   */
  const verifyAtEnd = async (): Promise<void> => {
    const s = sites[verifyRng.int(sites.length)]!;
    const verify = async (repair: boolean, writes: boolean): Promise<VerifyRun> => {
      const run = s.shipper.startVerify(repair);
      await driveUntil(() => run.state !== 'running', `the verify of ${s.name} at the end`, (i) => {
        // (For a while: a small journal the link cannot keep up with overflows, and the
        // verify waits for the resync round that follows.)
        if (writes && i < 300 && i % 4 === 0) issue('write');
        if (writes && i < 300 && i % 17 === 16) void jv.flush().catch(() => undefined);
      });
      if (run.state !== 'done') fail(`the verify of ${s.name} at the end did not finish: ${run.message}`);
      return run;
    };
    const converge = async (why: string): Promise<void> => {
      await settle(jv.flush()).catch(() => undefined);
      await driveUntil(settled, why);
      await settle(jv.quiesce());
      sameImages(why);
    };
    const quiet = await verify(false, true);
    if (quiet.differing.length > 0) {
      fail(`the verify of ${s.name} at the end found regions ${quiet.differing.join(', ')} different on a pair that never diverged`);
    }
    stats.verifies++;
    await converge('converged after the verify');
    const block = verifyRng.int(cfg.volumeBlocks);
    const garbage = Buffer.alloc(BLOCK, 1 + verifyRng.int(255));
    garbage.writeUInt32LE(0xbad0bad0, 0); // (never a write's tag: it differs from the primary's block)
    s.sdisk.file.write(block * BLOCK, garbage);
    trace(`corrupt block ${block} of the replica at ${s.name}`);
    const region = Math.floor((block * BLOCK) / jv.bitmap.regionSize);
    const found = await verify(true, false);
    if (found.differing.length !== 1 || found.differing[0] !== region) {
      fail(`block ${block} (region ${region}) of the replica at ${s.name} was corrupted, but the verify found regions [${found.differing.join(', ')}]`);
    }
    stats.verifyRepairs++;
    await converge('repaired after the verify');
  };

  for (const s of sites) if (s.tornApply) fail(s.tornApply);
  if (canConverge) {
    if (!settled()) {
      if (debug) {
        for (const x of sites) {
          trace(`${x.name}: shipper ${JSON.stringify((x.shipper as unknown as { shipper: unknown }).shipper)}; replica round ${x.replica.roundStart}, ` +
            `size ${x.replica.size}; conn ${Boolean(x.conn)}`);
        }
        trace(`primary: round ${jv.roundStart} of ${jv.roundOwner ?? 'all'}, detached ${JSON.stringify(jv.cursors.detached)}, size ${jv.size}`);
      }
      const s = sites.find((x) => !settledAt(x)) ?? sites[0]!;
      const { replica, shipper, conn } = s;
      const rc = replica.receiver;
      fail(`no convergence at ${s.name}: the replica applied up to ${rc.applied} of ${jv.journal.lastSeq} (acked ${shipper.acked}, durable ` +
        `${jv.journal.durableSeq}); primary mode ${jv.mode} round ${jv.roundStart} (${jv.resyncLeftBytes} bytes left, bitmap ${jv.bitmap.count}); ` +
        `secondary round ${replica.roundStart}; receive log ${replica.log.released + 1}..${replica.log.lastSeq}${replica.log.broken ? ' broken' : ''}; ` +
        `link ${conn ? 'up' : 'down'}; receiver ${JSON.stringify(rc)}; ` +
        `shipper ${JSON.stringify((shipper as unknown as { shipper: unknown }).shipper)} session ${Boolean(shipper.session)}; ` +
          `pending ${psched.size}+${sites.map((x) => x.sched.size).join('+')}`);
    }
    await settle(jv.quiesce());
    sameImages('converged');
    if (midGrow()) {
      fail(`the grow never completed (${grow.state}): the secondaries at ${sites.map((x) => x.replica.size).join(', ')}, the primary at ${jv.size}`);
    }
    if (grow.state === 'done' && (jv.size !== size || sites.some((x) => x.replica.size !== size))) {
      fail(`grown to ${size}, but the primary is ${jv.size} and the secondaries ${sites.map((x) => x.replica.size).join(', ')}`);
    }
    stats.converged = true;
  }
  for (const s of sites) await s.checkHistory('at the end', 6);
  for (const s of sites) stats.historyCompactions += s.replica.history?.compactions.segments ?? 0;
  checkVerifies();
  // Half the seeds verify at the end (after the history's check: a repair's round saves
  // the corrupted bytes as history, which no primary image holds).
  if (canConverge && verifyRng.chance(1 / 2)) await verifyAtEnd();
  stats.applied = sites.reduce((n, s) => n + s.replica.receiver.applied, 0);
  for (const s of sites) stats.coalesced += s.shipper.coalescedRecords;
  stats.overflowed = overflowed;
  stats.powerLost = primaryLost;
  stats.roomsReused = frameBuffers.reused - reusedBefore;
  return stats;
}

/**
 * An image's hash, its trailing zeros left out: an image and the same one grown (the new
 * part zeros, docs/CONFIG.md "Growing a volume") are one image, whatever size it is read at.
 */
function hash(b: Buffer): string {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return createHash('sha1').update(b.subarray(0, end)).digest('hex');
}

/** A start after a grow a crash cut: the volume's file is extended at the open to the size written down (src/node/daemon.ts, Volume.open). */
async function growAtOpen(disk: MemDisk, state: MemStore, settle: <T>(p: Promise<T>) => Promise<T>): Promise<void> {
  const size = await settle(readGrowing(state));
  if (size === null || disk.size >= size) return;
  await settle(disk.extend(size));
  disk.setSize(size);
}

function firstDifferentBlock(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i += BLOCK) if (!a.subarray(i, i + BLOCK).equals(b.subarray(i, i + BLOCK))) return i / BLOCK;
  return -1;
}
