// Journal recovery (docs/JOURNAL.md, "Recovery"): every segment scanned, every checksum
// verified, a torn tail cut, segments released before a power loss dropped, numbering
// that never goes back. What damage before the tail means depends on the log, and is
// an option (DamagePolicy), not a mode of the journal:
//   - a journal keeps reading and reports what was lost (the ranges of damaged records,
//     or the whole volume when a record's range is unknown): the dirty bitmap resyncs it;
//   - a receive log (the secondary's) keeps only the longest intact prefix and drops
//     everything from the first damage or gap on: the peer sends it again.
// Journal.recover() runs the scan and takes over what it found.
import type { Store, StoreFile } from '../store/store.js';
import { RECORD_HEADER_SIZE, RecordKind, SEGMENT_HEADER_SIZE, decodeRecordHeader, decodeSegmentHeader, payloadMatches, type RecordHeader } from './record.js';
import type { Samples } from './samples.js';
import { EMPTY, type Segment } from './segment.js';
import { ScanReader } from './scan-reader.js';
import { DIRECT_BLOCK_BYTES } from '../limits/limits.js';

/** A range whose record was lost or damaged: the volume must resync it. */
export interface LostRange {
  offset: number;
  length: number;
}

export interface RecoveryReport {
  records: number;
  segments: number;
  /** Bytes cut from a torn tail. */
  tornBytes: number;
  /** Operator messages: what was found and what was done. */
  notes: string[];
  /** Damage before the tail: these ranges (or, if `unknownLoss`, the whole volume) need a resync. */
  lost: LostRange[];
  unknownLoss: boolean;
  /**
   * The journal cannot be read through (damage before its tail): every record's
   * range was passed to `onRecord`, and the journal must be folded from those.
   */
  damaged: boolean;
}

/** What a damage policy may look at and change of the scan. */
export interface Scan {
  readonly store: Store;
  readonly report: RecoveryReport;
  /** The segment files, in order. */
  readonly names: string[];
  /** Segments kept so far. */
  segments: Segment[];
  used: number;
  nextSeq: number;
  lastHeader: RecordHeader | null;
  readonly samples: Samples;
  dirChanged: boolean;
  damaged: boolean;
}

/** A damaged record at `pos` of a segment, with valid records after it somewhere. */
export interface DamagedRecord {
  /** The segment's index in `names`. */
  at: number;
  file: StoreFile;
  pos: number;
  /** Its seq, if it were in order. */
  seq: number;
  /** The header decoded, fits the file and is in order: only the payload is bad. */
  payloadOnly: boolean;
  header: RecordHeader | null;
  payloadLength: number;
  /** Why, when the header is bad. */
  reason: string;
}

/** What recovery does with damage before a log's tail. */
export interface DamagePolicy {
  /** Segment `at` has a header that does not decode (and was not being created at the crash). Stop: keep nothing from it on. */
  badSegment(scan: Scan, at: number, file: StoreFile, why: string): 'stop' | 'skip';
  /** Segment `at` starts at `baseSeq` where `expected` was next (not a release whose removal was lost). */
  gap(scan: Scan, at: number, file: StoreFile, baseSeq: number, expected: number): 'stop' | 'read';
  /** A damaged record: stop (keep the segment up to it, nothing after), skip it, or end the segment there. */
  damagedRecord(scan: Scan, d: DamagedRecord): 'stop' | 'skip' | 'end';
  /** After the scan: what is kept starts after `floor` + 1 (records released or applied are all before it). */
  kept(scan: Scan, floor: number): void;
}

/** A journal: read on past damage; what was lost is reported, for the dirty bitmap. */
export const REPORT_DAMAGE: DamagePolicy = {
  badSegment(scan, at, file, why) {
    const name = scan.names[at]!;
    scan.report.notes.push(`journal segment ${name} is damaged (${why}); its writes are unknown, so the whole volume will be resynced`);
    scan.report.unknownLoss = true;
    file.close();
    scan.store.remove(name);
    scan.dirChanged = true;
    return 'skip';
  },
  gap(scan, at, _file, baseSeq, expected) {
    scan.report.notes.push(`journal segment ${scan.names[at]} starts at record ${baseSeq} but ${expected} was next; the records in between are lost, so the ` +
      `whole volume will be resynced`);
    scan.report.unknownLoss = true;
    return 'read';
  },
  damagedRecord(scan, d) {
    const name = scan.names[d.at];
    if (d.payloadOnly) {
      const h = d.header!;
      scan.report.notes.push(`journal: record ${d.seq} at segment ${name} byte ${d.pos} is damaged (payload checksum mismatch); its range ` +
        `${h.offset}+${h.length} will be resynced`);
      scan.report.lost.push({ offset: h.offset, length: h.length });
      return 'skip';
    }
    scan.report.notes.push(`journal: damaged record at segment ${name} byte ${d.pos} (${d.reason}); the writes it held are unknown, so the whole ` +
      `volume will be resynced`);
    scan.report.unknownLoss = true;
    return 'end';
  },
  kept() {},
};

/** A receive log: keep the longest intact prefix; the peer sends the rest again. */
export const KEEP_PREFIX: DamagePolicy = {
  badSegment(scan, at, file, why) {
    file.close();
    cutFrom(scan, scan.names.slice(at), `segment ${scan.names[at]} is damaged (${why})`);
    return 'stop';
  },
  gap(scan, at, file, baseSeq, expected) {
    file.close();
    cutFrom(scan, scan.names.slice(at), `segment ${scan.names[at]} starts at record ${baseSeq} but ${expected} was next`);
    return 'stop';
  },
  damagedRecord(scan, d) {
    d.file.truncateSync(d.pos);
    cutFrom(scan, scan.names.slice(d.at + 1), `damaged record at segment ${scan.names[d.at]} byte ${d.pos}`);
    return 'stop';
  },
  kept(scan, floor) {
    if (scan.segments.length === 0 || scan.segments[0]!.baseSeq - 1 <= floor) return;
    // The first segments never reached the disk (a power loss kept later ones): nothing here can be trusted.
    const gone = scan.segments.splice(0);
    for (const seg of gone) seg.file.close();
    cutFrom(scan, gone.map((seg) => seg.name), `records ${floor + 1}..${gone[0]!.baseSeq - 1} are missing at the start`);
    scan.damaged = true;
    scan.lastHeader = null;
    scan.used = 0;
    scan.samples.clear();
    scan.nextSeq = floor + 1;
  },
};

/** A receive log's damage: these segment files are removed; the peer sends their records again. */
function cutFrom(scan: Scan, names: string[], why: string): void {
  for (const n of names) scan.store.remove(n);
  scan.dirChanged = true;
  scan.report.notes.push(`receive log: ${why}; it and everything after it (${names.length} segment file(s)) are dropped and will be ` +
    `fetched again from the peer`);
}

export interface ScanOptions {
  store: Store;
  /** The segment files, sorted. */
  names: string[];
  policy: DamagePolicy;
  /** The counters on disk: released, and applied (the redo point). */
  releasedOnDisk: number;
  appliedOnDisk: number;
  /** Fed with every record kept. */
  samples: Samples;
  /** The journal's numbering before the scan (a new journal: 1, epoch 1). */
  nextSeq: number;
  epoch: number;
  onRecord?: (offset: number, length: number) => void;
  /** After each segment: how many of the `names` were scanned, and their bytes (a long start's progress). */
  onSegment?: (done: number, of: number, bytes: number) => void;
}

export interface Scanned extends Scan {
  epoch: number;
  openEpochBytes: number;
}

/**
 * Scans every segment, verifies every checksum, cuts a torn tail, and rebuilds the
 * state. Damage before the tail goes to the policy (never silently skipped).
 */
export async function scanSegments(o: ScanOptions): Promise<Scanned> {
  const { store, names, samples, onRecord, releasedOnDisk } = o;
  const report: RecoveryReport = { records: 0, segments: 0, tornBytes: 0, notes: [], lost: [], unknownLoss: false, damaged: false };
  const s: Scanned = {
    store, report, names, segments: [], used: 0, nextSeq: o.nextSeq, lastHeader: null, samples, dirChanged: false, damaged: false,
    epoch: o.epoch, openEpochBytes: 0,
  };
  let expected: number | null = null;
  let cut = false; // the policy stopped inside a segment: the rest was dropped
  const reader = new ScanReader();
  let scannedBytes = 0;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const file = store.open(name);
    const isLastFile = i === names.length - 1;
    const sh = decodeSegmentHeader(await file.read(0, SEGMENT_HEADER_SIZE));
    if (typeof sh === 'string') {
      // Segments are created (empty) at once and filled by the ordered writer, so a
      // crash can leave several empty ones at the end: all were being created.
      if ((file.size() <= SEGMENT_HEADER_SIZE || (await zerosToBlockEnd(file, 0))) && (isLastFile || !laterRecords(store, names.slice(i + 1)))) {
        report.notes.push(`journal segment ${name} was being created at the crash (${sh}); removed`);
        file.close();
        store.remove(name);
        s.dirChanged = true;
        continue;
      }
      s.damaged = true;
      if (o.policy.badSegment(s, i, file, sh) === 'stop') break;
      continue;
    }
    if (expected !== null && sh.baseSeq > expected && !s.damaged && sh.baseSeq - 1 <= releasedOnDisk) {
      // Segments are removed oldest first, only once their release is on disk: these
      // were released and their removal had not reached the disk.
      report.notes.push(`journal: segments before record ${sh.baseSeq} were already released (their removal had not reached the disk); dropped`);
      for (const old of s.segments.splice(0)) {
        old.file.close();
        store.remove(old.name);
      }
      s.used = 0;
      samples.clear();
      samples.end = 0;
      s.dirChanged = true;
      report.segments = 0;
    } else if (expected !== null && sh.baseSeq !== expected && !s.damaged) {
      const gap = o.policy.gap(s, i, file, sh.baseSeq, expected);
      s.damaged = true;
      if (gap === 'stop') break;
    }
    const seg: Segment = { name, baseSeq: sh.baseSeq, lastSeq: sh.baseSeq - 1, file, unsynced: false, readers: 0, removed: false, reserved: 0 };
    s.epoch = Math.max(s.epoch, sh.baseEpoch);
    let pos = SEGMENT_HEADER_SIZE;
    let seq = sh.baseSeq;
    const end = file.size();
    reader.start(file);
    // (The disk reads the rest of the segment while its first records are checked.)
    file.willNeed?.();
    while (pos < end) {
      const head = await reader.read(pos, RECORD_HEADER_SIZE);
      const h = decodeRecordHeader(head);
      const fits = h.ok && pos + RECORD_HEADER_SIZE + h.payloadLength <= end;
      const inOrder = h.ok && h.header.seq === seq;
      let payloadOk = false;
      if (fits && inOrder) {
        // (A view of the reader's buffer: `head` is not used past here.)
        const payload = h.payloadLength > 0 ? await reader.read(pos + RECORD_HEADER_SIZE, h.payloadLength) : EMPTY;
        payloadOk = payloadMatches(payload, h.payloadCrc);
      }
      if (fits && inOrder && payloadOk) {
        if (h.header.kind !== RecordKind.Barrier) onRecord?.(h.header.offset, h.header.length);
        s.openEpochBytes = h.header.kind === RecordKind.Barrier ? 0 : s.openEpochBytes + RECORD_HEADER_SIZE + h.payloadLength;
        s.lastHeader = h.header;
        seg.lastSeq = seq;
        samples.add(seq, h.header.time, RECORD_HEADER_SIZE + h.payloadLength);
        report.records++;
        pos += RECORD_HEADER_SIZE + h.payloadLength;
        seq++;
        continue;
      }
      // Something is wrong at `pos`. Zeros to the end of its block: a direct append's
      // padding (src/journal/store.ts), cut as a clean close cuts it.
      if (await paddingOnly(file, pos)) {
        file.truncateSync(pos);
        break;
      }
      // A torn tail if nothing valid follows anywhere.
      const more = (await validRecordAfter(file, pos + 1, seq)) || laterRecords(store, names.slice(i + 1));
      if (!more) {
        report.tornBytes += end - pos;
        report.notes.push(`journal: cut a torn tail of ${end - pos} bytes at segment ${name} byte ${pos} ` +
          `(${h.ok
            ? (fits ? (inOrder ? 'payload checksum mismatch' : `record ${h.header.seq} where ${seq} was next`) : 'record runs past the end')
            : h.reason})`);
        file.truncateSync(pos);
        break;
      }
      s.damaged = true;
      const d = o.policy.damagedRecord(s, {
        at: i, file, pos, seq, payloadOnly: h.ok && fits && inOrder, header: h.ok ? h.header : null, payloadLength: h.ok ? h.payloadLength : 0,
        reason: h.ok ? 'out of order' : h.reason,
      });
      if (d === 'skip') {
        pos += RECORD_HEADER_SIZE + (h.ok ? h.payloadLength : 0);
        seq++;
        continue;
      }
      if (d === 'stop') cut = true;
      break;
    }
    seg.reserved = file.size();
    scannedBytes += file.size();
    o.onSegment?.(i + 1, names.length, scannedBytes);
    s.segments.push(seg);
    s.used += file.size();
    report.segments++;
    expected = seg.lastSeq + 1;
    if (seg.lastSeq >= seg.baseSeq) s.nextSeq = seg.lastSeq + 1;
    else s.nextSeq = Math.max(s.nextSeq, seg.baseSeq);
    if (cut) break;
  }
  const floor = Math.max(releasedOnDisk, o.appliedOnDisk);
  o.policy.kept(s, floor);
  // Numbering never goes back: a journal whose records are all released (or applied)
  // continues after them, and segments holding only such records are stale.
  if (s.nextSeq - 1 < floor) {
    const stale = s.segments.splice(0);
    for (const seg of stale) {
      seg.file.close();
      store.remove(seg.name);
    }
    if (stale.length > 0) {
      s.dirChanged = true;
      report.notes.push(`journal: ${stale.length} segment(s) held only records up to ${s.nextSeq - 1}, released already (up to ${floor}); removed`);
    }
    s.used = 0;
    samples.clear();
    s.lastHeader = null;
    s.nextSeq = floor + 1;
  }
  report.damaged = s.damaged;
  return s;
}

/** Do later segment files hold anything past their header? */
function laterRecords(store: Store, names: string[]): boolean {
  return names.some((n) => {
    const f = store.open(n);
    const size = f.size();
    f.close();
    return size > SEGMENT_HEADER_SIZE;
  });
}

const MAGIC_BYTES = Buffer.from('OFJR', 'latin1');

/**
 * Is everything from `pos` (inside a block, not at its start) to the file's end zeros
 * ending on that block's end: what a direct append leaves after its last record
 * (src/journal/store.ts)? A whole block of zeros is not padding: damage, or a torn tail.
 */
async function paddingOnly(file: StoreFile, pos: number): Promise<boolean> {
  return pos % DIRECT_BLOCK_BYTES !== 0 && zerosToBlockEnd(file, pos);
}

/** Is everything from `pos` to the file's end zeros, the end the end of `pos`'s block? */
async function zerosToBlockEnd(file: StoreFile, pos: number): Promise<boolean> {
  const end = file.size();
  if (end <= pos || end % DIRECT_BLOCK_BYTES !== 0 || Math.floor(pos / DIRECT_BLOCK_BYTES) !== end / DIRECT_BLOCK_BYTES - 1) return false;
  const b = await file.read(pos, end - pos);
  return b.length === end - pos && b.every((x) => x === 0);
}

/** Is there a checksummed record header with seq >= minSeq anywhere after `from`? */
async function validRecordAfter(file: StoreFile, from: number, minSeq: number): Promise<boolean> {
  const end = file.size();
  const CHUNK = 1 << 20;
  for (let pos = from; pos + RECORD_HEADER_SIZE <= end; pos += CHUNK) {
    const buf = await file.read(pos, CHUNK + RECORD_HEADER_SIZE);
    for (let i = buf.indexOf(MAGIC_BYTES); i >= 0 && i + RECORD_HEADER_SIZE <= buf.length; i = buf.indexOf(MAGIC_BYTES, i + 1)) {
      const h = decodeRecordHeader(buf, i);
      if (h.ok && h.header.seq >= minSeq) return true;
    }
  }
  return false;
}
