// Records frames: u16 volume-name length, name, then journal records exactly as
// stored (header + payload, each with its CRC32C). A record that fails its checksum
// on arrival is never applied: the link closes and the primary resends.
import { RECORD_HEADER_SIZE, decodeRecordHeader, payloadMatches, writeRecordHeader, type JournalRecord } from '../journal/record.js';
import { FrameError, FrameType, decodeVolumePayload, encodeFrame, encodeVolumePayload } from './frame.js';

export function encodeRecordsFrame(volume: string, records: JournalRecord[]): Buffer[] {
  return encodeFrame(FrameType.Records, recordsPayload(volume, records));
}

/**
 * A Records frame's payload: the volume name, then the records, built in one buffer
 * (each payload copied once, each header written in place, the payload CRC taken from
 * the record when its reader checked it).
 */
export function recordsPayload(volume: string, records: JournalRecord[]): Buffer {
  const head = encodeVolumePayload(volume, EMPTY_BODY);
  return recordsInto(records, head);
}

/** Records as a Records frame carries them after the volume name: header + payload each. */
export function recordsBody(records: JournalRecord[]): Buffer {
  return recordsInto(records, EMPTY_BODY);
}

const EMPTY_BODY = Buffer.alloc(0);

function recordsInto(records: JournalRecord[], head: Buffer): Buffer {
  let n = head.length;
  for (const r of records) n += RECORD_HEADER_SIZE + r.payload.length;
  const b = Buffer.allocUnsafe(n);
  head.copy(b, 0);
  let at = head.length;
  for (const r of records) {
    const payload = r.payload.length > 0 ? r.payload : null;
    writeRecordHeader(b, at, r, payload, r.payloadCrc);
    at += RECORD_HEADER_SIZE;
    if (payload) at += payload.copy(b, at);
  }
  return b;
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
    records.push(p.length > 0 ? { ...h.header, payload: Buffer.from(p), payloadCrc: h.payloadCrc } : { ...h.header, payload: Buffer.from(p) });
    at += RECORD_HEADER_SIZE + h.payloadLength;
  }
  return records;
}
