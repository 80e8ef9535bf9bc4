// A unit whose apply failed after its applied counter was written (the receive log's sync
// after it, on a full disk) is whole on the volume: once the log is opened again and its
// recovery counts it applied, the replica is no longer torn (UnitApplier.recovered). A unit
// the counter does not cover stays torn. (Found by the replication simulation, seed 2762:
// every promote was refused after room was made.)
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Journal } from '../../src/journal/journal.js';
import { RecordKind } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';
import { silentLogger } from '../../src/log/log.js';
import { UnitApplier } from '../../src/secondary/apply-unit.js';
import type { ReplicaRound } from '../../src/secondary/replica-round.js';
import { memDisk } from '../helpers/mem-disk.js';
import { tempDir } from '../helpers/run.js';

test('a unit that failed after its applied counter was written is whole once recovery counts it applied', async () => {
  const journal = new Journal({ store: new DirStore(path.join(tempDir('apply-recovered'), 'log')), capacity: 1 << 20, segmentSize: 1 << 20 });
  await journal.recover();
  journal.append(RecordKind.Write, 0, 4096, Buffer.alloc(4096, 0x5a));
  journal.barrier();
  journal.append(RecordKind.Write, 8192, 4096, Buffer.alloc(4096, 0x5b));
  journal.barrier();
  await journal.sync();
  const disk = memDisk(1 << 20);
  const units = new UnitApplier(disk, { undo: null, mark: null } as unknown as ReplicaRound, silentLogger);
  const sync = journal.sync.bind(journal);
  journal.sync = async () => {
    throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
  };
  await assert.rejects(units.apply(journal, 0, 1, 2), /ENOSPC/);
  assert.equal(units.torn, 'ENOSPC');
  assert.equal(disk.data[0], 0x5a, 'the unit reached the volume (flushed before the counter)');
  units.recovered(1);
  assert.equal(units.torn, 'ENOSPC', 'a counter short of the unit: still torn');
  units.recovered(2);
  assert.equal(units.torn, null, 'the counter covers it: whole');
  // A later unit that fails is torn again, and one applied whole clears it.
  await assert.rejects(units.apply(journal, 2, 3, 4), /ENOSPC/);
  assert.equal(units.torn, 'ENOSPC');
  journal.sync = sync;
  await units.apply(journal, 2, 3, 4);
  assert.equal(units.torn, null);
  journal.close();
});
