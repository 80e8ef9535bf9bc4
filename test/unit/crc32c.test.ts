// The CRC32C the project uses (src/checksum/crc32c.ts: the addon's SSE4.2 streams where
// the CPU has them) against fixed vectors and against @node-rs/crc32, an independent
// implementation, over lengths and alignments that reach each of its paths.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { crc32c as reference } from '@node-rs/crc32';
import { crc32c, crc32cImplementation } from '../../src/checksum/crc32c.js';
import { nativeFs } from '../../src/volume/native.js';

test('crc32c: fixed vectors (RFC 3720, B.4) and the check value', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
  assert.equal(crc32c(Buffer.alloc(0)), 0);
});

test('crc32c: the same as @node-rs/crc32 at every length to past two long blocks, at odd alignments, and continued', () => {
  const big = crypto.randomBytes(3 * 8192 * 2 + 4096);
  const lengths = [...Array.from({ length: 1100 }, (_, i) => i), 3 * 256 - 1, 3 * 256, 3 * 256 + 1, 4096, 4152, 3 * 8192 - 1, 3 * 8192,
    3 * 8192 + 1, 3 * 8192 + 3 * 256 + 9, 2 * 3 * 8192 + 17];
  for (const len of lengths) {
    for (const off of [0, 1, 3, 7, 8, 13]) {
      const b = big.subarray(off, off + len);
      assert.equal(crc32c(b), reference(b), `length ${len} at offset ${off}`);
    }
  }
  // Continued: a CRC passed back as `initial` goes on over the next bytes, and a Uint8Array is taken as a Buffer is.
  const a = big.subarray(0, 5000);
  const rest = big.subarray(5000, 30000);
  assert.equal(crc32c(rest, crc32c(a)), crc32c(big.subarray(0, 30000)));
  assert.equal(crc32c(rest, 0x12345678), reference(rest, 0x12345678));
  assert.equal(crc32c(new Uint8Array(rest)), reference(rest));
});

test('crc32c: the addon\'s is used where the CPU has SSE4.2, and refuses what is not bytes', () => {
  if (process.arch === 'x64' && nativeFs.crc32cHardware?.()) assert.equal(crc32cImplementation, 'sse4.2');
  assert.throws(() => nativeFs.crc32c!('abc' as unknown as Buffer), /a Buffer or Uint8Array/);
  assert.throws(() => nativeFs.crc32c!(null as unknown as Buffer), /a Buffer or Uint8Array/);
  assert.throws(() => nativeFs.crc32c!(Buffer.alloc(4), '5' as unknown as number), /the initial CRC, a number/);
});
