// The block commands (SBC-3 5): READ, WRITE, WRITE AND VERIFY, VERIFY, COMPARE AND
// WRITE and SYNCHRONIZE CACHE over the medium. FUA makes a write durable before it
// completes and SYNCHRONIZE CACHE makes every acknowledged write durable: the same
// flush points as NBD's FUA and FLUSH, which the journal, the replica's apply units
// and checkpoints follow. DPO is accepted and means nothing here.
import { MALLOC_MMAP_THRESHOLD_BYTES, SCSI_BLOCK_BYTES, SCSI_MAX_COMPARE_AND_WRITE_BLOCKS, SCSI_MAX_TRANSFER_BYTES } from '../limits/limits.js';
import { hostBuffers, lend } from '../memory/owned-buffers.js';
import { blockFields, u16, u32, u64, u8 } from './cdb.js';
import type { Exec, Unit } from './context.js';
import { Asc, CheckCondition, SenseKey, invalidField } from './sense.js';

const fuaBit = (cdb: Buffer): boolean => (u8(cdb, 0) >> 5) !== 0 && (u8(cdb, 1) & 0x08) !== 0;

export async function read(u: Unit, x: Exec): Promise<Buffer> {
  const f = blockFields(x.cdb);
  u.medium.checkTransfer(f.count, f.countField);
  u.medium.checkRange(f.lba, f.count);
  if (f.count === 0) return Buffer.alloc(0);
  // A large read goes into one of the node's host buffers, lent to the transport, which
  // gives it back once the socket has written it (src/iscsi/commands.ts `respond`).
  // Not given back if the read fails: a backend reading in parts may still write into it.
  const bytes = f.count * SCSI_BLOCK_BYTES;
  if (bytes < MALLOC_MMAP_THRESHOLD_BYTES) return u.medium.read(f.lba, f.count);
  const owned = hostBuffers.take(bytes);
  await u.medium.read(f.lba, f.count, owned.bytes);
  return lend(owned);
}

/**
 * WRITE and WRITE AND VERIFY. When the initiator sent less than the CDB asked for (EDTL
 * smaller: x.data shorter), only what arrived is written and the command succeeds:
 * FCP-4 9.4.2 a) and RFC 7143 11.4.5 ("process normally, no data beyond the expected
 * length"), which libiscsi's test_write*_residuals and test_writeverify*_residuals
 * accept; the transport reports the overflow residual.
 */
export async function write(u: Unit, x: Exec): Promise<null> {
  const f = blockFields(x.cdb);
  u.medium.checkTransfer(f.count, f.countField);
  u.medium.checkRange(f.lba, f.count);
  u.medium.checkWritable();
  if (f.count === 0 || x.data.length === 0) return null;
  const release = await u.medium.lock.acquire(f.lba, f.lba + f.count);
  try {
    await u.medium.write(f.lba, x.data, fuaBit(x.cdb));
  } finally {
    release();
  }
  return null;
}

/** VERIFY(10/12/16): BYTCHK 0 checks the range, 1 compares the data-out, 3 compares one block against each (SBC-3 5.26). */
export async function verify(u: Unit, x: Exec): Promise<null> {
  const f = blockFields(x.cdb);
  const bytchk = (u8(x.cdb, 1) >> 1) & 0x03;
  if (bytchk === 2) throw invalidField(1, 2);
  if (bytchk === 1) u.medium.checkTransfer(f.count, f.countField);
  u.medium.checkRange(f.lba, f.count);
  if (bytchk === 0 || f.count === 0) return null;
  const perRead = SCSI_MAX_TRANSFER_BYTES / SCSI_BLOCK_BYTES;
  for (let done = 0; done < f.count; done += perRead) {
    const n = Math.min(perRead, f.count - done);
    const have = await u.medium.read(f.lba + done, n);
    for (let b = 0; b < n; b++) {
      const offset = bytchk === 1 ? (done + b) * SCSI_BLOCK_BYTES : 0;
      const expect = x.data.subarray(offset, offset + SCSI_BLOCK_BYTES);
      if (expect.length === 0) return null; // the initiator sent less: what it sent matched
      const got = have.subarray(b * SCSI_BLOCK_BYTES, b * SCSI_BLOCK_BYTES + expect.length);
      const at = firstDifference(got, expect);
      if (at >= 0) {
        throw new CheckCondition(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY, null, (bytchk === 1 ? offset : (done + b) * SCSI_BLOCK_BYTES) + at);
      }
    }
  }
  return null;
}

/**
 * COMPARE AND WRITE (SBC-3 5.2): the first half of the data-out is compared with the
 * blocks and, if equal, the second half written, with the range locked against every
 * other write of the unit meanwhile. A miscompare reports the offset of the first
 * unequal byte in INFORMATION.
 */
export async function compareAndWrite(u: Unit, x: Exec): Promise<null> {
  const lba = u64(x.cdb, 2);
  const n = u8(x.cdb, 13);
  if (n > SCSI_MAX_COMPARE_AND_WRITE_BLOCKS) throw invalidField(13);
  const half = n * SCSI_BLOCK_BYTES;
  // The initiator must send exactly what the blocks need: compare and write halves that do
  // not line up are refused (libiscsi test_compareandwrite_invalid_dataout_size), and so is
  // data sent with NUMBER OF LOGICAL BLOCKS 0 (an 8-bit count that wrapped).
  if (x.task.expectedLength !== 2 * half || x.data.length !== 2 * half) throw invalidField(13);
  u.medium.checkRange(lba, n);
  u.medium.checkWritable();
  if (n === 0) return null;
  const release = await u.medium.lock.acquire(lba, lba + n);
  try {
    const have = await u.medium.read(lba, n);
    const at = firstDifference(have, x.data.subarray(0, half));
    if (at >= 0) throw new CheckCondition(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY, null, at);
    await u.medium.write(lba, x.data.subarray(half, 2 * half), (u8(x.cdb, 1) & 0x08) !== 0);
  } finally {
    release();
  }
  return null;
}

/** SYNCHRONIZE CACHE(10/16): every acknowledged write made durable, whatever the range (IMMED answers after, which is allowed). */
export async function synchronizeCache(u: Unit, x: Exec): Promise<null> {
  const ten = u8(x.cdb, 0) === 0x35;
  const lba = ten ? u32(x.cdb, 2) : u64(x.cdb, 2);
  const count = ten ? u16(x.cdb, 7) : u32(x.cdb, 10);
  u.medium.checkRange(lba, count);
  await u.medium.flush();
  return null;
}

function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a.readUInt8(i) !== b.readUInt8(i)) return i;
  return n;
}

/** ORWRITE(16) (SBC-3 5.9): the data-out ORed into the blocks, read and written under the range lock. */
export async function orWrite(u: Unit, x: Exec): Promise<null> {
  const lba = u64(x.cdb, 2);
  const count = u32(x.cdb, 10);
  u.medium.checkTransfer(count, 10);
  u.medium.checkRange(lba, count);
  u.medium.checkWritable();
  if (count === 0 || x.data.length === 0) return null;
  const release = await u.medium.lock.acquire(lba, lba + count);
  try {
    const have = await u.medium.read(lba, Math.ceil(x.data.length / SCSI_BLOCK_BYTES));
    for (let i = 0; i < x.data.length; i++) have.writeUInt8(have.readUInt8(i) | x.data.readUInt8(i), i);
    await u.medium.write(lba, have.subarray(0, x.data.length), fuaBit(x.cdb));
  } finally {
    release();
  }
  return null;
}

/** PRE-FETCH(10/16) (SBC-3 5.10): the range handed to the backend's prefetch; GOOD (no cache of our own to report CONDITION MET from). */
export async function preFetch(u: Unit, x: Exec): Promise<null> {
  const ten = u8(x.cdb, 0) === 0x34;
  const lba = ten ? u32(x.cdb, 2) : u64(x.cdb, 2);
  const count = ten ? u16(x.cdb, 7) : u32(x.cdb, 10);
  u.medium.checkRange(lba, count);
  await u.medium.prefetch(lba, count);
  return null;
}

/** READ DEFECT DATA(10/12) (SBC-3 5.17, 5.18): the lists asked for, valid and empty, in the format asked for. */
export async function readDefectData(_u: Unit, x: Exec): Promise<Buffer> {
  const ten = u8(x.cdb, 0) === 0x37;
  const flags = u8(x.cdb, ten ? 2 : 1) & 0x1f; // REQ_PLIST, REQ_GLIST (answered as PLISTV, GLISTV), DEFECT LIST FORMAT
  const d = Buffer.alloc(ten ? 4 : 8);
  d[1] = flags;
  return d;
}
