// Hostile CDBs and parameter lists against the SCSI logical unit (src/scsi/): random
// and mutated commands, with data-out sized as planDataOut allows, on thin, thick and
// read-only units. Nothing may throw, every answer keeps the result invariants (sense
// exactly with CHECK CONDITION, data-in within the CDB's allocation length and
// bounded), and the checked backend contract (src/export/contract.ts) catches any call
// outside the medium or its capabilities.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMANDS } from '../../src/scsi/commands.js';
import { SCSI_MAX_TRANSFER_BYTES } from '../../src/limits/limits.js';
import { A, B, unit } from '../helpers/scsi-unit.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('random and mutated CDBs never throw, never break the backend contract, and answer within bounds', async () => {
  const rand = rng(17);
  const byte = (): number => Math.floor(rand() * 256);
  const outcomes = new Map<number, number>();
  for (const kind of ['thin', 'thick', 'readonly'] as const) {
    const { lu } = unit(kind, 256);
    lu.nexusAdded(A);
    for (let i = 0; i < 4000; i++) {
      const base = COMMANDS[Math.floor(rand() * COMMANDS.length)]!;
      const cdb = Buffer.alloc(16);
      if (rand() < 0.1) {
        for (let k = 0; k < 16; k++) cdb[k] = byte();
      } else {
        // A well-formed start, then a few bytes changed: small LBAs and lengths often, anything sometimes.
        cdb[0] = base.opcode;
        if (base.serviceAction !== null) cdb[1] = base.serviceAction;
        for (let k = 1; k < base.usage.length - 1; k++) if (rand() < 0.3) cdb[k] = rand() < 0.7 ? byte() & base.usage[k]! & 0x0f : byte();
      }
      const expected = rand() < 0.5 ? Math.floor(rand() * 4096) : Math.floor(rand() * 70_000);
      const plan = lu.planDataOut(cdb, expected, 1 << 20);
      if (plan.kind === 'refuse') {
        assert.equal(plan.result.status, 2);
        continue;
      }
      const data = plan.kind === 'data' || rand() < 0.2 ? Buffer.alloc(expected) : null;
      if (data !== null) for (let k = 0; k < Math.min(data.length, 64); k++) data[k] = byte();
      const r = await lu.execute({ nexus: rand() < 0.5 ? A : B, lun: rand() < 0.05 ? 1 : 0, cdb, expectedLength: data?.length ?? expected, dataOut: data });
      assert.equal(r.status === 2, r.sense !== null, `0x${cdb.toString('hex')}`);
      if (r.sense !== null) assert.equal(r.sense.length, 18);
      if (r.dataIn !== null) assert.ok(r.dataIn.length <= SCSI_MAX_TRANSFER_BYTES);
      assert.ok([0, 2, 0x18].includes(r.status), `status ${r.status}`);
      outcomes.set(r.sense ? r.sense.readUInt16BE(12) : -r.status, (outcomes.get(r.sense ? r.sense.readUInt16BE(12) : -r.status) ?? 0) + 1);
    }
    assert.equal(lu.medium.lock.size, 0, 'every range lock released');
    if (process.env.SCSI_FUZZ_STATS) console.log(kind, [...outcomes].map(([k, v]) => `${k.toString(16)}:${v}`).join(" "));
  }
});
