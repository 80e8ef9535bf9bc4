// The seeded simulation of the journal and the write path (docs/INVARIANTS.md, invariants
// 1, 2 and 7). One seed = one schedule of host writes, flushes, peer acks, I/O
// completion orders, disk-full spells, kill -9 and power loss. Deterministic:
// the code under test sees no timers and no real I/O.
import { createLogger, silentLogger } from '../../src/log/log.js';
import { DirtyBitmap, RegionSet } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind, RECORD_HEADER_SIZE } from '../../src/journal/record.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import { MemDisk, MemStore, Rng, Scheduler, flushMicrotasks, settleOn } from './disk-model.js';
import { watchInvariants } from './invariant-watch.js';

const SECTOR = 512;
const BLOCK = 4096;

export interface SimConfig {
  volumeBlocks: number;
  journalCapacity: number;
  steps: number;
  regionSize: number;
}

export const DEFAULT_SIM: SimConfig = { volumeBlocks: 64, journalCapacity: 96 * 1024, steps: 160, regionSize: 4096 };

interface HostWrite {
  id: number;
  block: number;
  blocks: number;
  /** 0 for zeroes/trim. */
  tag: number;
  seq: number;
  mode: 'journal' | 'bitmap';
  done: boolean;
  durable: boolean;
  /** In flight or unflushed when the process died. */
  abandoned: boolean;
}

export class SimFailure extends Error {}

/** Runs one seed; throws SimFailure with the seed and the step when an invariant breaks. */
export function runSeed(seed: number, cfg: SimConfig = DEFAULT_SIM): Promise<{ crashes: number; overflows: number; records: number; followed: number;
  regionChanges: number; }> {
  return watchInvariants(seed, () => runOneSeed(seed, cfg), (msg) => new SimFailure(msg));
}

async function runOneSeed(seed: number, cfg: SimConfig): Promise<{ crashes: number; overflows: number; records: number; followed: number;
  regionChanges: number; }> {
  const rng = new Rng(seed);
  const followedBefore = MemDisk.followed;
  // A third of the runs have a journal too big to overflow in one run.
  cfg = { ...cfg, journalCapacity: [cfg.journalCapacity, cfg.journalCapacity * 4, cfg.journalCapacity * 64][rng.int(3)]! };
  const sched = new Scheduler(rng);
  // Half the runs write volume and journal at once (intent ring), half in order.
  const useIntents = rng.chance(0.5);
  const size = cfg.volumeBlocks * BLOCK;
  const disk = new MemDisk(size, sched);
  // A third of the runs let a volume write follow its record in the record's job
  // (docs/JOURNAL.md, "A volume write follows its record"); from the seed, not the
  // generator, so the other runs draw as they did.
  disk.follows = seed % 3 === 1;
  const jstore = new MemStore(sched, { directAppends: true });
  const mstore = new MemStore(sched);
  let step = 0;
  const fail = (msg: string): never => {
    throw new SimFailure(`seed ${seed} step ${step}: ${msg}`);
  };

  const writes: HostWrite[] = [];
  /** Per block: ids of writes in issue order. */
  const history: number[][] = Array.from({ length: cfg.volumeBlocks }, () => []);
  /**
   * What each journal record wrote, block by block (tag, or 0): set as a host write is
   * journaled, and from the journal itself at each restart (a record recovery journaled
   * again from the volume; a seq whose record was lost in a crash goes to the next one).
   */
  const recordTags = new Map<number, Map<number, number>>();
  const busy = new Set<number>();
  // Half the seeds have two peers acking apart (docs/PEERS.md), drawn from their own
  // generator so the schedule of the main one stays what it was.
  const side = new Rng(seed * 7919 + 13);
  const peers = side.chance(0.5) ? ['site-b', 'site-c'] : ['site-b'];
  const ackedBy = new Map(peers.map((p) => [p, 0]));
  // A quarter of the seeds change bitmap_region at restarts (docs/CONFIG.md): the bitmap's
  // marks must carry over, crashes and power losses in the conversion included. Their own generator.
  const regions = new Rng(seed * 104729 + 7);
  const changesRegion = seed % 4 === 2;
  let regionSize = cfg.regionSize;
  let regionChanges = 0;
  let acked = 0; // every simulated peer acked records up to here
  let nextId = 1;
  let crashes = 0;
  let overflows = 0;
  let generation = 0;
  let powerLosses = 0;

  const open = async (): Promise<JournaledVolume> => {
    const journal = new Journal({ store: jstore, capacity: cfg.journalCapacity, segmentSize: 16 * 1024, now: () => step });
    if (changesRegion && regions.chance(0.5)) {
      const next = 4096 << regions.int(3);
      if (next !== regionSize) regionChanges++;
      regionSize = next;
    }
    const recorded = new RegionSet(size, regionSize);
    const report = await settle(journal.recover((o, l) => recorded.mark(o, l)));
    if (process.env.OFFSITE_SIM_DEBUG) for (const n of report.notes) console.log(`  recovery: ${n}`);
    const { bitmap } = await settle(DirtyBitmap.open(mstore, size, regionSize)).catch((e: Error) => {
      throw new Error(`opening the bitmap: ${e.stack}`);
    });
    const jv = new JournaledVolume({ disk, journal, bitmap, onFull: 'bitmap', intentStore: useIntents ? jstore : undefined, intentSlots: 256, peers,
      // (With two peers a peer far behind the other is detached into its own bitmap, docs/PEERS.md;
      // a third of them keep both in the journal, which then overflows as with one.)
      peerStore: peers.length > 1 && seed % 3 !== 0 ? mstore : undefined,
      log: process.env.OFFSITE_SIM_DEBUG ? createLogger({ level: 'debug', format: 'text' }) : silentLogger });
    await settle(jv.start(report, recorded));
    return jv;
  };

  /** Runs the scheduler until `p` settles (or nothing is left to run). */
  const settle = <T>(p: Promise<T>): Promise<T> => settleOn(p, () => sched.step(), fail);

  let jv = await open();

  const pattern = (tag: number, blocks: number): Buffer => {
    const b = Buffer.alloc(blocks * BLOCK);
    for (let s = 0; s < b.length; s += SECTOR) b.writeUInt32LE(tag, s);
    return b;
  };

  const issue = (kind: 'write' | 'zeroes' | 'trim', fua: boolean): void => {
    const blocks = 1 + rng.int(3);
    const block = rng.int(cfg.volumeBlocks - blocks + 1);
    for (let b = block; b < block + blocks; b++) if (busy.has(b)) return; // hosts do not overlap in-flight writes
    const id = nextId++;
    const w: HostWrite = { id, block, blocks, tag: kind === 'write' ? id : 0, seq: 0, mode: jv.mode, done: false, durable: false, abandoned: false };
    for (let b = block; b < block + blocks; b++) {
      busy.add(b);
      history[b]!.push(id);
    }
    writes.push(w);
    const gen = generation;
    const before = jv.journal.lastSeq;
    const p = kind === 'write' ? jv.write(block * BLOCK, pattern(id, blocks), fua)
      : kind === 'zeroes' ? jv.writeZeroes(block * BLOCK, blocks * BLOCK, { fua, mayTrim: true, fast: false })
      : jv.trim(block * BLOCK, blocks * BLOCK, fua);
    // The journal append happens synchronously inside the call: its seq is known now (the
    // last record, or the one before it when the epoch bound closed its epoch right after).
    if (jv.journal.lastSeq > before) w.seq = jv.journal.openEpochBytes > 0 ? jv.journal.lastSeq : jv.journal.lastSeq - 1;
    w.mode = w.seq > 0 ? 'journal' : 'bitmap';
    if (w.seq > 0) recordTags.set(w.seq, new Map(Array.from({ length: blocks }, (_, i) => [block + i, w.tag])));
    p.then(() => {
      if (gen !== generation) return;
      w.done = true;
      if (fua) w.durable = true;
      for (let b = block; b < block + blocks; b++) busy.delete(b);
    }, () => {
      if (gen !== generation) return;
      for (let b = block; b < block + blocks; b++) busy.delete(b);
    });
  };

  const flush = (): void => {
    const covered = writes.filter((w) => w.done && !w.durable && !w.abandoned);
    const gen = generation;
    jv.flush().then(() => {
      if (process.env.OFFSITE_SIM_DEBUG) console.log(
        `  step ${step} flush done: durable ${covered.map((w) => w.id).join(',')} journal written ${jv.journal.writtenSeq} durable ` +
        `${jv.journal.durableSeq} mode ${jv.mode}`);
      if (gen === generation) for (const w of covered) w.durable = true;
    }, () => undefined);
  };

  const release = (): void => {
    const upTo = jv.journal.released + rng.int(jv.journal.lastSeq - jv.journal.released + 1);
    // A peer acked: from now on the journal may drop these records, once every peer has.
    // (site-c acks one time in five: it falls behind, and is detached once the journal fills.)
    const peer = peers.length === 1 ? peers[0]! : side.chance(0.8) ? 'site-b' : 'site-c';
    ackedBy.set(peer, Math.max(ackedBy.get(peer)!, upTo));
    acked = Math.max(acked, Math.min(...ackedBy.values()));
    (peers.length === 1 ? jv.release(upTo) : jv.releaseFor(peer, upTo)).catch(() => undefined);
  };

  const checkBounds = (): void => {
    if (jv.journal.usedBytes > cfg.journalCapacity) fail(`journal uses ${jv.journal.usedBytes} of ${cfg.journalCapacity} bytes`);
    // The intent ring is a fixed 512 KiB beside the journal, not part of its bound.
    // (Each file may end in a padded append's zeros, less than 4 KiB, until it is closed: src/journal/store.ts.)
    const files = [...jstore.files.entries()].filter(([n]) => n !== 'intent');
    const onDisk = files.reduce((n, [, f]) => n + f.current.length, 0);
    if (onDisk > cfg.journalCapacity + 64 + 4095 * files.length) fail(`journal files hold ${onDisk} bytes, capacity ${cfg.journalCapacity}`);
    if (sched.size > 10000) fail(`${sched.size} operations pending: unbounded queue`);
  };

  const crashAndCheck = async (powerLoss: boolean): Promise<void> => {
    crashes++;
    generation++;
    // The process dies between two I/O completions: whatever its promise chains do
    // without I/O runs first (all of it, not a fixed number of turns), so nothing of the
    // old process goes on after the crash with I/O scheduled anew.
    await new Promise((r) => setImmediate(r));
    sched.clear();
    disk.crash(rng, powerLoss);
    jstore.crash(rng, powerLoss);
    mstore.crash(rng, powerLoss);
    busy.clear();
    // (A volume whose disk is full cannot be redone onto at start: the spell ends with the process.)
    disk.full = false;
    if (process.env.OFFSITE_SIM_DEBUG) {
      for (const [n, f] of jstore.files) console.log(
        `  file ${n} size ${f.current.length} base ${f.current.length >= 24 ? f.current.readBigUInt64LE(16) : '-'}`);
    }
    jv = await open();
    await settle(jv.flush());
    await settle(jv.quiesce());
    if (process.env.OFFSITE_SIM_DEBUG) {
      console.log(`  mode ${jv.mode} bitmap ${jv.bitmap.count}: ${[...jv.bitmap.dirtyRegions()].join(',')}`);
      console.log(`crash at step ${step} (${powerLoss ? 'power' : 'kill'}): acked ${acked}, journal ` +
        `${jv.journal.released + 1}..${jv.journal.lastSeq}, mode ${jv.mode}`);
      for (const w of writes) console.log(`  write ${w.id} blk ${w.block}+${w.blocks} seq ${w.seq} ${w.mode} done=${w.done} durable=${w.durable}`);
    }
    // Invariant 1: every durable write is on the volume (or overwritten by a later write).
    const vol = disk.file.current;
    for (let b = 0; b < cfg.volumeBlocks; b++) {
      const ids = history[b]!;
      let lastDurable = -1;
      ids.forEach((id, i) => {
        if (writes[id - 1]!.durable) lastDurable = i;
      });
      const allowed = new Set<number>(lastDurable >= 0 ? ids.slice(lastDurable).map((id) => writes[id - 1]!.tag) :
        [0, ...ids.map((id) => writes[id - 1]!.tag)]);
      for (let s = 0; s < BLOCK; s += SECTOR) {
        const tag = vol.readUInt32LE(b * BLOCK + s);
        if (!allowed.has(tag)) {
          fail(`block ${b} sector ${s / SECTOR} holds write ${tag}; allowed ${[...allowed].join(',')} (${powerLoss ? 'power loss' : 'kill -9'})`);
        }
      }
    }
    // Invariants 1 and 2: a durable write the peer has not acked is still in the
    // journal, or (after an overflow) its range is marked in the dirty bitmap.
    const inJournal = new Map<number, { offset: number; length: number; payload: Buffer }>();
    for (let seq = jv.journal.released + 1; seq <= jv.journal.lastSeq;) {
      // (In bitmap mode a journal not yet emptied, say on a full disk, may hold damage: the bitmap covers it.)
      const batch = await settle(jv.journal.read(seq, 1 << 20)).catch((e: Error) => {
        if (jv.mode === 'bitmap') return [];
        throw e;
      });
      if (batch.length === 0) break;
      for (const r of batch) if (r.kind !== RecordKind.Barrier) inJournal.set(r.seq, { offset: r.offset, length: r.length, payload: r.payload });
      seq = batch[batch.length - 1]!.seq + 1;
    }
    // (A seq past the released point with no record here wrote nothing: a barrier, or a record the crash lost.)
    for (const seq of [...recordTags.keys()]) if (seq > jv.journal.released && !inJournal.has(seq)) recordTags.delete(seq);
    for (const [seq, r] of inJournal) {
      const tags = new Map<number, number>();
      for (let b = r.offset / BLOCK; b < (r.offset + r.length) / BLOCK; b++) {
        tags.set(b, r.payload.length > 0 ? r.payload.readUInt32LE((b - r.offset / BLOCK) * BLOCK) : 0);
      }
      recordTags.set(seq, tags);
    }
    for (const w of writes) {
      if (!w.durable) continue;
      const covered = (): boolean => {
        for (let b = w.block; b < w.block + w.blocks; b++) {
          if (!jv.bitmap.isSet(Math.floor((b * BLOCK) / jv.bitmap.regionSize))) return false;
        }
        return true;
      };
      if (w.mode === 'journal' && w.seq > acked) {
        const r = inJournal.get(w.seq);
        const ok = r && r.offset === w.block * BLOCK && r.length === w.blocks * BLOCK;
        if (!ok && !covered()) fail(
          `durable write ${w.id} (record ${w.seq}, peer acked ${acked}) is in neither the journal nor the bitmap; journal holds ` +
          `${[...inJournal.keys()].join(",")}; record there: ` +
          `${JSON.stringify(inJournal.get(w.seq) ? { o: inJournal.get(w.seq)!.offset, l: inJournal.get(w.seq)!.length } : null)}`);
      }
      if (w.mode === 'bitmap' && !covered()) fail(`durable write ${w.id} made in bitmap mode is not marked in the bitmap`);
    }
    // After kill -9 the page cache survived: the volume must agree with the journal
    // exactly (redo brought it up to date) wherever the bitmap does not cover.
    if (powerLoss) powerLosses++;
    // (Only while no power loss happened in this run: a power loss can keep a volume
    // write whose journal record was lost; see "Known limits" in docs/JOURNAL.md.)
    if (!powerLoss && powerLosses === 0 && jv.mode === 'journal') {
      // Each block's newest journal record says what the volume holds there.
      const last = new Map<number, { seq: number; data: Buffer }>();
      for (const [seq, r] of [...inJournal.entries()].sort((a, b) => a[0] - b[0])) {
        for (let b = r.offset / BLOCK; b < (r.offset + r.length) / BLOCK; b++) {
          const at = (b * BLOCK) - r.offset;
          last.set(b, { seq, data: r.payload.length > 0 ? r.payload.subarray(at, at + BLOCK) : Buffer.alloc(BLOCK) });
        }
      }
      for (const [b, { seq, data }] of last) {
        if (!vol.subarray(b * BLOCK, (b + 1) * BLOCK).equals(data)) {
          fail(`after kill -9, block ${b} holds write ${vol.readUInt32LE(b * BLOCK)} but journal record ${seq} holds ${data.readUInt32LE(0)}`);
        }
      }
      // A block no record in the journal covers holds the newest write the journal let go
      // (released: the peer has it), or nothing: a volume write whose record never reached
      // the journal (one that ran ahead of its record) would be a change no peer ever gets.
      for (let b = 0; b < cfg.volumeBlocks; b++) {
        if (last.has(b) || jv.bitmap.isSet(Math.floor((b * BLOCK) / jv.bitmap.regionSize))) continue;
        if (history[b]!.some((id) => writes[id - 1]!.mode === 'bitmap')) continue;
        let want = 0;
        for (let seq = jv.journal.released; seq > 0; seq--) {
          const tag = recordTags.get(seq)?.get(b);
          if (tag !== undefined) {
            want = tag;
            break;
          }
        }
        for (let sct = 0; sct < BLOCK; sct += SECTOR) {
          const tag = vol.readUInt32LE(b * BLOCK + sct);
          if (tag !== want) {
            fail(`after kill -9, block ${b} holds write ${tag}, which no record in the journal (released to ${jv.journal.released}) accounts for; ` +
              `expected ${want}`);
          }
        }
      }
    }
    // Writes not durable before the crash can never become durable now.
    for (const w of writes) if (!w.durable) w.abandoned = true;
    if (jv.mode === 'bitmap') overflows++;
  };

  // The volume's own disk-full spells, in the runs whose writes follow their records (a
  // failed following write): drawn from a generator of their own, so the main one draws
  // as it did.
  const volumeSpells = disk.follows ? new Rng(seed * 7919 + 17) : null;
  for (step = 0; step < cfg.steps; step++) {
    if (volumeSpells?.chance(0.02)) disk.full = !disk.full && volumeSpells.chance(0.5);
    const r = rng.next();
    if (r < 0.35) issue('write', rng.chance(0.1));
    else if (r < 0.40) issue('zeroes', rng.chance(0.1));
    else if (r < 0.43) issue('trim', false);
    else if (r < 0.53) flush();
    else if (r < 0.60) release();
    else if (r < 0.62) jstore.full = !jstore.full && rng.chance(0.3);
    else if (r < 0.645) await crashAndCheck(rng.chance(0.5));
    else for (let k = rng.int(6); k > 0; k--) sched.step();
    await flushMicrotasks();
    checkBounds();
  }
  jstore.full = false;
  disk.full = false;
  await crashAndCheck(rng.chance(0.5));
  return { crashes, overflows, records: jv.journal.lastSeq + RECORD_HEADER_SIZE * 0 + (RecordKind.Write - 1), followed: MemDisk.followed - followedBefore,
    regionChanges };
}
