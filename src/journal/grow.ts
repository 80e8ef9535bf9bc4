// A primary's volume grown while it is served (docs/CONFIG.md, "Growing a volume"):
// `size:` raised at a reload. The new part reads zeros here and on every peer (each
// grew first, or its next Hello refuses the pair until it does), so no region of it
// differs and nothing of it is resynced: every bitmap that tracks what a peer lacks
// gets clean regions for it. The order is what makes a crash at any step safe:
//
//   1. each bitmap grows, durable: the volume's, every detached peer's, a round of one
//      peer's own (a bitmap larger than its volume marks nothing there; a start with
//      the raised size: grows the file to match, docs/CONFIG.md);
//   2. the file is extended, its new length durable;
//   3. in one turn, the open comparison's region sets grow and the disk answers with
//      the new size: from the next request on a host may write there, and every mark
//      of such a write has a bit to land on.
import type { Disk } from './disk.js';
import type { DirtyBitmap } from './bitmap.js';
import type { DetachedPeers } from './detach.js';
import type { Seeding } from '../sync/seeding.js';
import { assert } from '../invariants/assert.js';

export interface Growing {
  readonly disk: Disk;
  readonly bitmap: DirtyBitmap;
  readonly detached: DetachedPeers | null;
  readonly seed: Seeding;
  /** From now on a peer's bitmap opened (a detach) is made for `size` bytes. */
  bitmapsFor(size: number): void;
}

export async function growVolume(v: Growing, size: number): Promise<void> {
  const { disk, bitmap } = v;
  assert(Number.isSafeInteger(size) && size > disk.size, () => `volume ${disk.name}: grow to ${size} from ${disk.size}`);
  v.bitmapsFor(size);
  await v.detached?.grow(size);
  await bitmap.grow(size);
  await disk.extend(size);
  assert(size > disk.size, () => `volume ${disk.name}: grown twice at once`);
  v.seed.grow(size);
  disk.setSize(size);
  assert(bitmap.regions === Math.ceil(size / bitmap.regionSize),
    () => `volume ${disk.name}: ${bitmap.regions} bitmap regions for ${size} bytes`);
}
