// Reading the fields of a CDB (SPC-4 4.2): big-endian integers at fixed offsets, an
// 8-byte LBA that may exceed what a number holds exactly (then it is simply past the
// end of any medium), and the shapes of the READ/WRITE family.

/** The byte at `at` (0 past the end: a CDB shorter than its command reads as zero-padded). */
export function u8(cdb: Buffer, at: number): number {
  return at < cdb.length ? cdb.readUInt8(at) : 0;
}

export function u16(cdb: Buffer, at: number): number {
  return (u8(cdb, at) << 8) | u8(cdb, at + 1);
}

export function u24(cdb: Buffer, at: number): number {
  return u8(cdb, at) * 0x10000 + u16(cdb, at + 1);
}

export function u32(cdb: Buffer, at: number): number {
  return u8(cdb, at) * 0x1000000 + u24(cdb, at + 1);
}

/** An 8-byte field as a number; past 2^53 it reads as MAX_SAFE_INTEGER, beyond every medium. */
export function u64(cdb: Buffer, at: number): number {
  const hi = u32(cdb, at);
  const lo = u32(cdb, at + 4);
  if (hi >= 0x200000) return Number.MAX_SAFE_INTEGER;
  return hi * 0x100000000 + lo;
}

/** Where a block command keeps its LBA and transfer length. */
export interface BlockFields {
  lba: number;
  count: number;
  /** The byte of the CDB that holds the transfer length (the field pointer when it is refused). */
  countField: number;
}

/** READ/WRITE/VERIFY/WRITE AND VERIFY/SYNCHRONIZE CACHE of 6, 10, 12 and 16 bytes. */
export function blockFields(cdb: Buffer): BlockFields {
  const op = u8(cdb, 0);
  switch (op >> 5) {
    case 0: { // 6-byte: 21-bit LBA, 0 blocks means 256 (SBC-3 5.7)
      const n = u8(cdb, 4);
      return { lba: u24(cdb, 1) & 0x1fffff, count: n === 0 ? 256 : n, countField: 4 };
    }
    case 1: case 2: return { lba: u32(cdb, 2), count: u16(cdb, 7), countField: 7 };
    case 5: return { lba: u32(cdb, 2), count: u32(cdb, 6), countField: 6 };
    case 4: return { lba: u64(cdb, 2), count: u32(cdb, 10), countField: 10 };
    default: throw new Error(`not a block command: 0x${op.toString(16)}`);
  }
}
