// A primary's volume grown while it is served (docs/CONFIG.md, "Growing a volume"):
// `size:` raised at a reload.
//
// Any grow (a primary's, a secondary's, a volume without a peer's) is written down first:
// state/volumes/NAME/grow, JSON {"version":1,"size":N}, durable before anything grows and
// removed once all has. A start that finds it finishes the grow (the file extended to
// N at its open, the bitmaps with it); a file smaller than `size:` without it is refused,
// as a typo would be (a volume grows at a reload, never by a start's accident). The new part reads zeros here and on every peer (each
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
import { readStateFile, type Store } from './store.js';
import { jsonVersion } from '../versioning/format.js';

export const GROW_FILE = 'grow';
export const GROW_FORMAT = jsonVersion('grow file', 1, [1]);

/** Writes down a grow to `size` bytes, durably, before anything grows. */
export function writeGrowing(store: Store, size: number): Promise<void> {
  assert(Number.isSafeInteger(size) && size > 0, () => `a grow to ${size} bytes`);
  return store.replace(GROW_FILE, Buffer.from(`${JSON.stringify({ version: GROW_FORMAT.writes, size })}\n`));
}

/** The grow is done (every part grown, durable): its file goes, durably. */
export async function removeGrowing(store: Store): Promise<void> {
  if (!store.list().includes(GROW_FILE)) return;
  store.remove(GROW_FILE);
  await store.syncDir();
}

/** The size a grow under way is to, or null when none is. A file that cannot be read stops the start (refused, not guessed). */
export async function readGrowing(store: Store): Promise<number | null> {
  const b = await readStateFile(store, GROW_FILE, GROW_FORMAT);
  if (b === null) return null;
  let size: unknown;
  try {
    size = (JSON.parse(b.toString('utf8')) as { size?: unknown }).size;
  } catch {
    size = undefined;
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw new Error(`${GROW_FILE}: no size in it (${b.toString('utf8').trim()})`);
  return size;
}

export interface Growing {
  readonly disk: Disk;
  /** The volume's state folder, where the grow is written down (null: not written, a test's write path). */
  readonly state: Store | null;
  readonly bitmap: DirtyBitmap;
  readonly detached: DetachedPeers | null;
  readonly seed: Seeding;
  /** From now on a peer's bitmap opened (a detach) is made for `size` bytes. */
  bitmapsFor(size: number): void;
}

export async function growVolume(v: Growing, size: number): Promise<void> {
  const { disk, bitmap } = v;
  assert(Number.isSafeInteger(size) && size > disk.size, () => `volume ${disk.name}: grow to ${size} from ${disk.size}`);
  if (v.state) await writeGrowing(v.state, size);
  v.bitmapsFor(size);
  await v.detached?.grow(size);
  await bitmap.grow(size);
  await disk.extend(size);
  assert(size > disk.size, () => `volume ${disk.name}: grown twice at once`);
  v.seed.grow(size);
  disk.setSize(size);
  assert(bitmap.regions === Math.ceil(size / bitmap.regionSize),
    () => `volume ${disk.name}: ${bitmap.regions} bitmap regions for ${size} bytes`);
  if (v.state) await removeGrowing(v.state);
}
