// The block commands (SBC-3 5): READ, WRITE, WRITE AND VERIFY, VERIFY, COMPARE AND
// WRITE and SYNCHRONIZE CACHE over the medium. FUA makes a write durable before it
// completes and SYNCHRONIZE CACHE makes every acknowledged write durable: the same
// flush points as NBD's FUA and FLUSH, which the journal, the replica's apply units
// and checkpoints follow. DPO is accepted and means nothing here.
import { SCSI_BLOCK_BYTES, SCSI_MAX_COMPARE_AND_WRITE_BLOCKS, SCSI_MAX_TRANSFER_BYTES } from '../limits/limits.js';
import { blockFields, u16, u32, u64, u8 } from './cdb.js';
import type { Exec, Unit } from './context.js';
import { Asc, CheckCondition, SenseKey, invalidField } from './sense.js';

const fuaBit = (cdb: Buffer): boolean => (u8(cdb, 0) >> 5) !== 0 && (u8(cdb, 1) & 0x08) !== 0;

export async function read(u: Unit, x: Exec): Promise<Buffer> {
  const f = blockFields(x.cdb);
  u.medium.checkTransfer(f.count, f.countField);
  u.medium.checkRange(f.lba, f.count);
  if (f.count === 0) return Buffer.alloc(0);
  return u.medium.read(f.lba, f.count);
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
      if (at >= 0) throw new CheckCondition(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY, null, (bytchk === 1 ? offset : (done + b) * SCSI_BLOCK_BYTES) + at);
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
  u.medium.checkRange(lba, n);
  u.medium.checkWritable();
  if (n === 0) return null;
  const half = n * SCSI_BLOCK_BYTES;
  if (x.data.length < 2 * half) throw new CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_INFORMATION_UNIT);
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
