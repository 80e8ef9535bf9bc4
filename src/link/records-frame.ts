// Records frames: u16 volume-name length, name, then journal records exactly as
// stored (header + payload, each with its CRC32C). A record that fails its checksum
// on arrival is never applied: the link closes and the primary resends.
import { RECORD_HEADER_SIZE, decodeRecordHeader, encodeRecordHeader, payloadMatches, type JournalRecord } from '../journal/record.js';
import { FrameError, FrameType, decodeVolumePayload, encodeFrame, encodeVolumePayload } from './frame.js';

export function encodeRecordsFrame(volume: string, records: JournalRecord[]): Buffer[] {
  return encodeFrame(FrameType.Records, encodeVolumePayload(volume, recordsBody(records)));
}

/** Records as a Records frame carries them after the volume name: header + payload each. */
export function recordsBody(records: JournalRecord[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    const payload = r.payload.length > 0 ? r.payload : null;
    parts.push(encodeRecordHeader(r, payload));
    if (payload) parts.push(payload);
  }
  return Buffer.concat(parts);
}

export function decodeRecordsFrame(payload: Buffer): { volume: string; records: JournalRecord[] } {
  const { volume, rest } = decodeVolumePayload(payload);
  return { volume, records: decodeRecordsBody(volume, rest) };
}

/** The records of a Records frame after its volume name (also what a PackedRecords frame decompresses to). */
export function decodeRecordsBody(volume: string, rest: Buffer): JournalRecord[] {
  const records: JournalRecord[] = [];
  let at = 0;
  while (at < rest.length) {
    const h = decodeRecordHeader(rest, at);
    if (!h.ok) throw new FrameError(`record ${records.length + 1} of a Records frame for ${volume}: ${h.reason}`);
    const p = rest.subarray(at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + h.payloadLength);
    if (p.length !== h.payloadLength) throw new FrameError(`record ${h.header.seq} for ${volume} runs past its frame`);
    if (!payloadMatches(p, h.payloadCrc)) throw new FrameError(`record ${h.header.seq} for ${volume} failed its payload checksum`);
    records.push({ ...h.header, payload: Buffer.from(p) });
    at += RECORD_HEADER_SIZE + h.payloadLength;
  }
  return records;
}
