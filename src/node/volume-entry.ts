// One volume as the daemon holds it, in its current role: what the daemon opens, the
// actions (volume-actions.ts, roles.ts) change and the status (status.ts) reads.
import type { VolumeConfig } from '../config/config.js';
import type { Volume } from '../volume/volume.js';
import type { History } from '../journal/history.js';
import type { JournaledVolume } from '../journal/write-path.js';
import type { Replica } from '../secondary/replica.js';
import type { VolumeIdentity } from '../volume/identity.js';
import type { DrillOverlay } from '../drill/drill.js';

/** One served volume: the local disk and, when it has a peer, its journaled write path. */
export interface VolumeEntry {
  config: VolumeConfig;
  volume: Volume;
  /** The role it holds now: the config's, until a promote or demote (kept in identity.json). */
  role: 'primary' | 'secondary';
  /** state/volumes/NAME */
  dir: string;
  journaled: JournaledVolume | null;
  replica: Replica | null;
  history: History | null;
  /** UUID and generations of a replicated volume. */
  identity: VolumeIdentity | null;
  /** A DR drill running over the held checkpoint (secondary only). */
  drill: DrillOverlay | null;
}
