// node dist/bench/unit-plans.js PAIR...: what the shipper's coalescing planner
// (src/coalesce/planner.ts) sends of a kept backlog, far behind, without a link: the
// journal of each paused pair (bench/wire.ts with WIRE_KEEP) is read, and its batches
// go through the planner as a shipper far behind sends them (batches of UNIT_BATCH_MIB,
// 4, of journal bytes; the bench pair's bounds: epochs of 256 MiB, a unit of 128 MiB).
// Printed per pair: the records' bytes as sent (kept records whole, skipped ones as
// Skip headers), zstd -3 of each batch's payloads, the payload the writes cover once
// (the least any coalescing sends), and where each unit ended. A tool for the planner's
// choices, deterministic for a journal (bench:wire's own figures move with its run).
// UNIT_STREAM=FILE also writes the payloads sent, in order (for other compressors).
import fs from 'node:fs';
import path from 'node:path';
import { compress } from 'zstd-napi';
import { UnitPlanner } from '../src/coalesce/planner.js';
import { RECORD_HEADER_SIZE, RecordKind, type JournalRecord } from '../src/journal/record.js';
import { readJournal } from '../test/helpers/journal-inspect.js';

const MiB = 1024 * 1024;
const BATCH = Number(process.env.UNIT_BATCH_MIB ?? 4) * MiB;
const MAX_EPOCH = 256 * MiB;

interface Sent { records: number; bytes: number; zstd: number; covered: number; units: string[] }

async function sendAll(records: JournalRecord[], stream: number | null): Promise<Sent> {
  const planner = new UnitPlanner({ coalesce: () => true, readBytes: BATCH });
  const bySeq = new Map(records.map((r, i) => [r.seq, i]));
  const size = (r: JournalRecord): number => RECORD_HEADER_SIZE + r.payload.length;
  const last = records[records.length - 1]!.seq;
  let released = records[0]!.seq - 1;
  const journal = {
    get backlogBytes(): number {
      let n = 0;
      for (let i = bySeq.get(released + 1) ?? records.length; i < records.length; i++) n += size(records[i]!);
      return n;
    },
    readHeaders(fromSeq: number, maxBytes: number, limitSeq: number): Promise<Array<JournalRecord & { size: number }>> {
      const out: Array<JournalRecord & { size: number }> = [];
      let bytes = 0;
      for (let i = bySeq.get(fromSeq) ?? records.length; i < records.length && records[i]!.seq <= limitSeq; i++) {
        const r = records[i]!;
        if (out.length > 0 && bytes + size(r) > maxBytes) break;
        out.push({ ...r, size: size(r) });
        bytes += size(r);
      }
      return Promise.resolve(out);
    },
  };
  const sent: Sent = { records: 0, bytes: 0, zstd: 0, covered: 0, units: [] };
  let lastUnit = -1;
  for (let i = 0; i < records.length;) {
    const batch: JournalRecord[] = [];
    let bytes = 0;
    while (i < records.length && (batch.length === 0 || bytes + size(records[i]!) <= BATCH)) {
      bytes += size(records[i]!);
      batch.push(records[i++]!);
    }
    const plan = await planner.unitFor(journal, batch[0]!.seq, last, BATCH, { roundOpen: false, maxEpochBytes: MAX_EPOCH });
    if (plan && plan.until !== lastUnit) {
      lastUnit = plan.until;
      sent.units.push(`${plan.from}..${plan.until}`);
    }
    const out = planner.coalesced(batch, plan, { roundOpen: false, maxEpochBytes: MAX_EPOCH });
    const payloads: Buffer[] = [];
    for (const r of out) {
      sent.records++;
      sent.bytes += size(r);
      if (r.kind === RecordKind.Write) payloads.push(r.payload);
    }
    if (payloads.length > 0) sent.zstd += compress(Buffer.concat(payloads), { compressionLevel: 3 }).length;
    if (stream !== null) for (const p of payloads) fs.writeSync(stream, p);
    released = batch[batch.length - 1]!.seq;
  }
  // The payload the writes cover once: what no coalescing can go below.
  const pieces = new Set<number>();
  for (const r of records) if (r.kind === RecordKind.Write) for (let s = r.offset / 512; s < (r.offset + r.length) / 512; s++) pieces.add(s);
  sent.covered = pieces.size * 512;
  return sent;
}

async function main(): Promise<void> {
  const pairs = process.argv.slice(2);
  if (pairs.length === 0) throw new Error('usage: node dist/bench/unit-plans.js PAIR... (a pair kept by WIRE_KEEP=PAIR npm run bench:wire)');
  const mb = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;
  for (const pair of pairs) {
    const { records } = await readJournal(path.join(pair, 'state-site-a'), 'db');
    const file = process.env.UNIT_STREAM ? `${process.env.UNIT_STREAM}${pairs.length > 1 ? `.${path.basename(pair)}` : ''}` : null;
    const stream = file ? fs.openSync(file, 'w') : null;
    const s = await sendAll(records, stream);
    if (stream !== null) fs.closeSync(stream);
    console.log(`${pair}: ${records.length} records; sent ${mb(s.bytes)} of records (the writes cover ${mb(s.covered)}), ` +
      `zstd -3 per batch ${mb(s.zstd)}; ${s.units.length} units: ${s.units.join(' ')}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
