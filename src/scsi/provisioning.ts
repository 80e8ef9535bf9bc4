// Logical block provisioning (SBC-3 4.7): UNMAP, WRITE SAME (with its UNMAP bit and
// NDOB) and GET LBA STATUS. UNMAP deallocates through the backend's trim; deallocated
// blocks read zeros (LBPRZ). WRITE SAME of a zero block zeroes without sending data
// (the backend's writeZeroes, deallocating when UNMAP allows), any other pattern is
// written a bounded chunk at a time.
import {
  SCSI_BLOCK_BYTES, SCSI_MAX_LBA_STATUS_DESCRIPTORS, SCSI_MAX_UNMAP_BLOCKS, SCSI_MAX_UNMAP_DESCRIPTORS, SCSI_MAX_WRITE_SAME_BLOCKS,
  SCSI_WRITE_SAME_CHUNK_BYTES,
} from '../limits/limits.js';
import { u16, u32, u64, u8 } from './cdb.js';
import type { Exec, Unit } from './context.js';
import { Asc, CheckCondition, SenseKey, illegal, invalidField, invalidParameter } from './sense.js';

/** UNMAP (SBC-3 5.28): every descriptor checked before any block is deallocated. */
export async function unmap(u: Unit, x: Exec): Promise<null> {
  if (u8(x.cdb, 1) & 0x01) throw invalidField(1, 0); // ANCHOR: ANC_SUP=0
  u.medium.checkWritable();
  const list = x.data;
  if (list.length === 0) return null;
  if (list.length < 8) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  // The lengths inside the list are the initiator's word: only whole descriptors inside what arrived count.
  const declared = list.readUInt16BE(2);
  const count = Math.floor(Math.min(declared, list.length - 8) / 16);
  if (count > SCSI_MAX_UNMAP_DESCRIPTORS) throw invalidParameter(2);
  const ranges: Array<[number, number]> = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = 8 + 16 * i;
    const lba = u64(list, at);
    const n = u32(list, at + 8);
    u.medium.checkRange(lba, n);
    total += n;
    if (total > SCSI_MAX_UNMAP_BLOCKS) throw invalidParameter(at + 8);
    if (n > 0) ranges.push([lba, n]);
  }
  for (const [lba, n] of ranges) {
    const release = await u.medium.lock.acquire(lba, lba + n);
    try {
      await u.medium.unmap(lba, n);
    } finally {
      release();
    }
  }
  return null;
}

/** WRITE SAME(10/16) (SBC-3 5.41, 5.42). WSNZ=1: zero blocks is refused. */
export async function writeSame(u: Unit, x: Exec): Promise<null> {
  const sixteen = u8(x.cdb, 0) === 0x93;
  const flags = u8(x.cdb, 1);
  const lba = sixteen ? u64(x.cdb, 2) : u32(x.cdb, 2);
  const n = sixteen ? u32(x.cdb, 10) : u16(x.cdb, 7);
  const countField = sixteen ? 10 : 7;
  if (flags & 0x10) throw invalidField(1, 4); // ANCHOR
  const ndob = sixteen && (flags & 0x01) !== 0;
  const unmapBit = (flags & 0x08) !== 0;
  if (n === 0 || n > SCSI_MAX_WRITE_SAME_BLOCKS) throw invalidField(countField);
  u.medium.checkRange(lba, n);
  u.medium.checkWritable();
  // Exactly one block of data-out (none with NDOB): more or less is refused, not cut
  // (libiscsi test_writesame*_invalid_dataout_size).
  if (x.task.expectedLength !== x.wanted || x.data.length !== x.wanted) {
    throw new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_INFORMATION_UNIT);
  }
  const block = ndob ? null : x.data;
  const zeros = block === null || block.every((b) => b === 0);
  const release = await u.medium.lock.acquire(lba, lba + n);
  try {
    if (zeros) {
      await u.medium.zero(lba, n, unmapBit, false);
      return null;
    }
    const perChunk = SCSI_WRITE_SAME_CHUNK_BYTES / SCSI_BLOCK_BYTES;
    const chunk = Buffer.allocUnsafe(Math.min(n, perChunk) * SCSI_BLOCK_BYTES);
    for (let at = 0; at < chunk.length; at += SCSI_BLOCK_BYTES) block!.copy(chunk, at);
    for (let done = 0; done < n; done += perChunk) {
      const k = Math.min(perChunk, n - done);
      await u.medium.write(lba + done, chunk.subarray(0, k * SCSI_BLOCK_BYTES), false);
    }
  } finally {
    release();
  }
  return null;
}

/** GET LBA STATUS (SBC-3 5.7): mapped or deallocated runs from the LBA on, from the backend's allocation map. */
export async function getLbaStatus(u: Unit, x: Exec): Promise<Buffer> {
  const lba = u64(x.cdb, 2);
  const alloc = u32(x.cdb, 10);
  const m = u.medium;
  if (lba >= m.blocks) throw new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE);
  const max = Math.max(1, Math.min(SCSI_MAX_LBA_STATUS_DESCRIPTORS, Math.floor((alloc - 8) / 16)));
  const runs: Array<{ lba: number; count: number; hole: boolean }> = [];
  const add = (start: number, end: number, hole: boolean): void => {
    if (end <= start) return;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.hole === hole && last.lba + last.count === start) last.count += end - start;
    else runs.push({ lba: start, count: end - start, hole });
  };
  // A descriptor counts at most 0xFFFFFFFF blocks.
  const span = Math.min(m.blocks - lba, 0xffffffff);
  if (!m.caps.extents) {
    add(lba, lba + span, false);
  } else {
    const base = lba * SCSI_BLOCK_BYTES;
    const extents = await m.backend.extents(base, span * SCSI_BLOCK_BYTES, max);
    let at = base;
    let covered = lba;
    for (const e of extents) {
      const s = at;
      at += e.length;
      if (!e.hole) continue;
      // Only blocks wholly inside a hole are deallocated; the partly covered ones hold data.
      const hs = Math.ceil(s / SCSI_BLOCK_BYTES);
      const he = Math.floor(at / SCSI_BLOCK_BYTES);
      if (he <= hs) continue;
      add(covered, hs, false);
      add(hs, he, true);
      covered = he;
    }
    add(covered, Math.max(covered, Math.ceil(at / SCSI_BLOCK_BYTES)), false);
  }
  const list = runs.slice(0, max);
  const out = Buffer.alloc(8 + 16 * list.length);
  out.writeUInt32BE(4 + 16 * list.length, 0);
  list.forEach((r, i) => {
    const d = 8 + 16 * i;
    out.writeBigUInt64BE(BigInt(r.lba), d);
    out.writeUInt32BE(r.count, d + 8);
    out[d + 12] = r.hole ? 0x01 : 0x00; // PROVISIONING STATUS: deallocated or mapped
  });
  return out;
}
