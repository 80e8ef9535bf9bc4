// CRC32C, the checksum of every journal record, frame, history entry and state file
// (docs/JOURNAL.md, docs/PEER-PROTOCOL.md). The native addon's (native/crc32c.c: the
// SSE4.2 instruction in three streams, about 14 GB/s on 4 KiB here against 4 for one
// stream) where this CPU has the instruction, else @node-rs/crc32's; both give the same
// values (test/unit/crc32c.test.ts checks them against each other and fixed vectors).
import { crc32c as portable } from '@node-rs/crc32';
import { nativeFs } from '../volume/native.js';

/** Which implementation computes it ('sse4.2' or 'portable'), for the tests and the benchmark notes. */
export const crc32cImplementation: 'sse4.2' | 'portable' = nativeFs.crc32c && nativeFs.crc32cHardware?.() ? 'sse4.2' : 'portable';

/** The CRC32C of `data`, continuing `initial` (a CRC this returned; 0 to start). */
export const crc32c: (data: Uint8Array, initial?: number) => number =
  crc32cImplementation === 'sse4.2' ? nativeFs.crc32c! : (data, initial) => portable(data as Buffer, initial);
