// Records on the wire (docs/PEER-PROTOCOL.md): a batch of journal records goes as a
// Records frame (as stored) or, compressed, as a PackedRecords frame. Before either,
// a Write whose payload is all zeros becomes a Zeroes record of the same range: the
// replica's bytes are the same and 56 bytes travel instead of the payload.
//
// PackedRecords payload, little-endian:
//   0  2  volume name length N
//   2  N  volume name (UTF-8)
//   +0 1  codec (1: zstd)
//   +1 1  level the sender used (informative)
//   +2 2  reserved, 0
//   +4 4  length of the records once decompressed (at most MAX_FRAME_PAYLOAD)
//   +8 …  one zstd frame (with its content size) holding the records exactly as a
//         Records frame carries them: header + payload, each with its CRC32C
import { decompress } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';

const { getFrameContentSize } = zstdBinding;
import { RecordKind, encodeRecordHeader, type JournalRecord } from '../journal/record.js';
import { FrameError, FrameType, MAX_FRAME_PAYLOAD, decodeVolumePayload, encodeFrame } from '../link/frame.js';
import { decodeRecordsBody } from '../link/records-frame.js';

export const CODEC_ZSTD = 1;
const PACKED_HEAD = 8;
const ZERO = Buffer.alloc(1 << 20);

export function isAllZero(b: Buffer): boolean {
  for (let at = 0; at < b.length; at += ZERO.length) {
    const part = b.subarray(at, Math.min(b.length, at + ZERO.length));
    if (!part.equals(ZERO.subarray(0, part.length))) return false;
  }
  return true;
}

/** A Write of zeros as a Zeroes record of the same range (same seq, epoch, flags, time). */
export function zeroWritesAsZeroes(records: JournalRecord[]): { records: JournalRecord[]; zeroBytes: number } {
  let zeroBytes = 0;
  const out = records.map((r) => {
    if (r.kind !== RecordKind.Write || r.payload.length === 0 || !isAllZero(r.payload)) return r;
    zeroBytes += r.payload.length;
    return { ...r, kind: RecordKind.Zeroes, payload: Buffer.alloc(0) };
  });
  return { records: out, zeroBytes };
}

/** Records as a Records frame body carries them (header + payload each). */
export function recordsBody(records: JournalRecord[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    const payload = r.payload.length > 0 ? r.payload : null;
    parts.push(encodeRecordHeader(r, payload));
    if (payload) parts.push(payload);
  }
  return Buffer.concat(parts);
}

function nameHead(volume: string): Buffer {
  const name = Buffer.from(volume, 'utf8');
  const head = Buffer.alloc(2 + name.length);
  head.writeUInt16LE(name.length, 0);
  name.copy(head, 2);
  return head;
}

export function encodeRawRecordsFrame(volume: string, body: Buffer): Buffer[] {
  return encodeFrame(FrameType.Records, Buffer.concat([nameHead(volume), body]));
}

export function encodePackedRecordsFrame(volume: string, rawLength: number, level: number, compressed: Buffer): Buffer[] {
  const h = Buffer.alloc(PACKED_HEAD);
  h.writeUInt8(CODEC_ZSTD, 0);
  h.writeUInt8(level, 1);
  h.writeUInt32LE(rawLength, 4);
  return encodeFrame(FrameType.PackedRecords, Buffer.concat([nameHead(volume), h, compressed]));
}

/**
 * A PackedRecords frame's records. The declared length is checked against the
 * zstd frame's own before any memory is given to it: a peer cannot make this side
 * allocate more than MAX_FRAME_PAYLOAD.
 */
export function decodePackedRecordsFrame(payload: Buffer): { volume: string; records: JournalRecord[]; rawBytes: number } {
  const { volume, rest } = decodeVolumePayload(payload);
  if (rest.length < PACKED_HEAD) throw new FrameError(`PackedRecords frame for ${volume} is shorter than its ${PACKED_HEAD}-byte head`);
  const codec = rest.readUInt8(0);
  if (codec !== CODEC_ZSTD) throw new FrameError(`PackedRecords frame for ${volume} uses codec ${codec}; this node knows 1 (zstd)`);
  const rawLength = rest.readUInt32LE(4);
  if (rawLength > MAX_FRAME_PAYLOAD) throw new FrameError(`PackedRecords frame for ${volume} declares ${rawLength} bytes of records, over the ${MAX_FRAME_PAYLOAD}-byte limit`);
  const z = rest.subarray(PACKED_HEAD);
  let size: number | null;
  try {
    size = getFrameContentSize(z);
  } catch {
    throw new FrameError(`PackedRecords frame for ${volume} does not hold a zstd frame`);
  }
  if (size !== rawLength) throw new FrameError(`PackedRecords frame for ${volume}: its zstd frame holds ${size ?? 'an unknown number of'} bytes, the frame declares ${rawLength}`);
  let body: Buffer;
  try {
    body = decompress(z);
  } catch (e) {
    throw new FrameError(`PackedRecords frame for ${volume} does not decompress: ${(e as Error).message}`);
  }
  if (body.length !== rawLength) throw new FrameError(`PackedRecords frame for ${volume} decompressed to ${body.length} bytes, not the ${rawLength} declared`);
  return { volume, records: decodeRecordsBody(volume, body), rawBytes: rawLength };
}


/** The packing the daemon's Packer does, synchronously (the simulation; level and compressor given). */
export function packSync(volume: string, records: JournalRecord[], compress: (body: Buffer) => Buffer, level = 1): Buffer[] {
  const body = recordsBody(zeroWritesAsZeroes(records).records);
  if (body.length < 1024) return encodeRawRecordsFrame(volume, body);
  const packed = compress(body);
  if (packed.length >= body.length - (body.length >> 5)) return encodeRawRecordsFrame(volume, body);
  return encodePackedRecordsFrame(volume, body.length, level, packed);
}
