// Whether a batch is worth a trip to a zstd worker, judged on a sample of it on the
// event loop (src/limits/limits.ts COMPRESS_SAMPLE_SLICES): `compression: auto` sends
// a batch whose sample zstd does not shrink raw, so random or encrypted data costs
// neither a worker (a V8 isolate kept alive) nor a copy of each batch.
import { compress } from 'zstd-napi';
import type { JournalRecord } from '../journal/record.js';
import { COMPRESS_SAMPLE_SLICE_BYTES, COMPRESS_SAMPLE_SLICES } from '../limits/limits.js';
import { assert } from '../invariants/assert.js';

/** Where the sample's slices begin, in the payload bytes of the batch laid end to end (`total` of them). */
export function samplePositions(total: number): number[] {
  const slice = COMPRESS_SAMPLE_SLICE_BYTES;
  if (total <= slice * COMPRESS_SAMPLE_SLICES) return [0];
  const last = total - slice;
  return Array.from({ length: COMPRESS_SAMPLE_SLICES }, (_, i) => Math.floor((i * last) / (COMPRESS_SAMPLE_SLICES - 1)));
}

/** The sample of these records' payloads (all of them when they are no larger than the sample). */
export function sampleOf(records: readonly JournalRecord[]): Buffer {
  let total = 0;
  for (const r of records) total += r.payload.length;
  const slice = total <= COMPRESS_SAMPLE_SLICE_BYTES * COMPRESS_SAMPLE_SLICES ? total : COMPRESS_SAMPLE_SLICE_BYTES;
  const parts: Buffer[] = [];
  let k = 0; // the record holding `at`
  let base = 0; // the offset of record k's payload in the whole
  for (const at of samplePositions(total)) {
    let want = slice;
    let pos = at;
    while (want > 0) {
      while (base + records[k]!.payload.length <= pos) base += records[k++]!.payload.length;
      const p = records[k]!.payload;
      const piece = p.subarray(pos - base, Math.min(p.length, pos - base + want));
      parts.push(piece);
      want -= piece.length;
      pos += piece.length;
    }
  }
  const out = Buffer.concat(parts);
  assert(out.length <= COMPRESS_SAMPLE_SLICE_BYTES * COMPRESS_SAMPLE_SLICES, () => `a sample of ${out.length} bytes`);
  return out;
}

/** Zstd (level 1) shrinks the sample by at least 1/32, as a batch must to go packed. */
export function sampleCompresses(records: readonly JournalRecord[]): boolean {
  const s = sampleOf(records);
  if (s.length === 0) return false;
  return compress(s, { compressionLevel: 1 }).length < s.length - (s.length >> 5);
}
