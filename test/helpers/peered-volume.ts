// A primary's write path with named peers, as the tests of several secondaries open it
// (test/unit/first-sync-own.test.ts, test/unit/peer-set-change.test.ts): a 1 MiB journal
// of 64 KiB segments, a 1 MiB volume in memory of 64 KiB regions, the peers' bitmaps and
// the round's marker in `dir`.
import path from 'node:path';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { Journal } from '../../src/journal/journal.js';
import { DirStore } from '../../src/journal/store.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import { silentLogger } from '../../src/log/log.js';
import { memDisk } from './mem-disk.js';

export const KiB = 1024;
/** The bitmap's region. */
export const RS = 64 * KiB;
/** The volume's size. */
export const SIZE = 1024 * KiB;

export async function openPeered(dir: string, peers: string[]): Promise<{ jv: JournaledVolume; data: Buffer; disk: ReturnType<typeof memDisk> }> {
  const journal = new Journal({ store: new DirStore(path.join(dir, 'j')), capacity: 1024 * KiB, segmentSize: 64 * KiB });
  const report = await journal.recover();
  const { bitmap } = await DirtyBitmap.open(new DirStore(dir), SIZE, RS);
  const disk = memDisk(SIZE);
  const jv = new JournaledVolume({
    disk, journal, bitmap, onFull: 'bitmap', log: silentLogger, peers, peerStore: new DirStore(dir), roundStore: new DirStore(dir),
  });
  await jv.start(report);
  return { jv, data: disk.data, disk };
}

/** Gives each region 4 KiB of its own bytes (`salt` + its index; the rest as it was), each flushed and then `acked`. */
export async function fillRegions(jv: JournaledVolume, acked: (seq: number) => Promise<void>, salt = 0x10): Promise<void> {
  for (let r = 0; r < SIZE / RS; r++) {
    await jv.write(r * RS, Buffer.alloc(4 * KiB, salt + r), false);
    await jv.flush();
    await acked(jv.journal.lastSeq);
  }
}
