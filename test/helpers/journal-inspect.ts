// Reads a stopped daemon's journal and bitmap from its state directory.
import path from 'node:path';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import type { JournalRecord } from '../../src/journal/record.js';
import { DirStore } from '../../src/journal/store.js';

export async function readJournal(stateDir: string, volume: string): Promise<{ records: JournalRecord[]; journal: Journal }> {
  const journal = new Journal({ store: new DirStore(path.join(stateDir, 'volumes', volume, 'journal')), capacity: 2 ** 40 });
  await journal.recover();
  const records: JournalRecord[] = [];
  for (let seq = journal.released + 1; seq <= journal.lastSeq;) {
    const batch = await journal.read(seq, 64 << 20);
    if (batch.length === 0) break;
    records.push(...batch);
    seq = batch[batch.length - 1]!.seq + 1;
  }
  journal.close();
  return { records, journal };
}

/** The dirty regions of a volume's bitmap, or with `file` of another in its folder (a detached peer's, dirty.PEER.bitmap). */
export async function readBitmap(stateDir: string, volume: string, volumeSize: number, region = 65536, file?: string): Promise<number[]> {
  const { bitmap } = await DirtyBitmap.open(new DirStore(path.join(stateDir, 'volumes', volume)), volumeSize, region, file);
  const regions = [...bitmap.dirtyRegions()];
  bitmap.close();
  return regions;
}
