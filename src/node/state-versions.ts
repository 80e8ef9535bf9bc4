// Before a replicated volume's state is opened, every file it keeps is looked at for a
// format version newer than this build reads (docs/VERSIONING.md). Each reader refuses
// such a file too, but opening goes file by file and some steps write (recovery cuts a
// torn tail, the activity log is reset before the round marker is read): checked
// first, a refused start has changed nothing.
import path from 'node:path';
import type { Store } from '../journal/store.js';
import { SEGMENT_FILE_FORMAT } from '../journal/record.js';
import { APPLIED_FORMAT, RELEASED_FORMAT } from '../journal/counters.js';
import { INTENT_FILE, INTENT_FORMAT } from '../journal/intent.js';
import { BITMAP_FILE, BITMAP_FORMAT, PEER_BITMAP_FILE } from '../journal/bitmap.js';
import { ACTIVITY_FORMAT } from '../journal/activity-log.js';
import { ROUND_FORMAT } from '../sync/round-marker.js';
import { UNDO_FORMAT } from '../sync/undo.js';
import { CHECKPOINT_FILE, CHECKPOINT_FORMAT, GROUP_POINT_FILE, GROUP_POINT_FORMAT } from '../secondary/replica.js';
import { HEADS_FORMAT, HISTORY_FORMAT } from '../history/format.js';
import { STREAMS_FILE, STREAMS_FORMAT } from '../history/streams.js';
import { PROMOTE_AT_FILE, PROMOTE_AT_FORMAT } from '../secondary/promote-at-file.js';
import { STREAM_FILE, STREAM_FORMAT } from '../stream/stream.js';
import { GROW_FILE, GROW_FORMAT } from '../journal/grow.js';
import { JOURNAL_AT_FILE, JOURNAL_AT_FORMAT } from '../journal/placement.js';
import { DEVICE_ACCEPTED_FILE, DEVICE_REFUSED_FILE, FILE_ID_FILE, FILE_ID_FORMAT } from '../volume/file-identity.js';
import { PEERS_FILE, PEERS_FORMAT } from '../journal/peers-file.js';
import { NewerFormatError, isNewer, type FileFormat } from '../versioning/format.js';

export interface StateFile {
  name: string | RegExp;
  format: FileFormat;
}

/** A journal folder, or a secondary's receive log folder (the same files). */
export const JOURNAL_FOLDER_FILES: readonly StateFile[] = [
  { name: /^\d{20}\.seg$/, format: SEGMENT_FILE_FORMAT },
  { name: 'released', format: RELEASED_FORMAT },
  { name: 'applied', format: APPLIED_FORMAT },
  { name: INTENT_FILE, format: INTENT_FORMAT },
];

/** STATE/volumes/NAME (identity.json is checked where it is read, before this). */
export const VOLUME_FOLDER_FILES: readonly StateFile[] = [
  { name: BITMAP_FILE, format: BITMAP_FORMAT },
  { name: PEER_BITMAP_FILE, format: BITMAP_FORMAT },
  { name: 'activity.0', format: ACTIVITY_FORMAT },
  { name: 'activity.1', format: ACTIVITY_FORMAT },
  { name: 'round', format: ROUND_FORMAT },
  { name: 'undo', format: UNDO_FORMAT },
  { name: CHECKPOINT_FILE, format: CHECKPOINT_FORMAT },
  { name: GROUP_POINT_FILE, format: GROUP_POINT_FORMAT },
  { name: /^history\.\d{8}$/, format: HISTORY_FORMAT },
  { name: /^history\.\d{8}\.heads$/, format: HEADS_FORMAT },
  { name: STREAMS_FILE, format: STREAMS_FORMAT },
  { name: PROMOTE_AT_FILE, format: PROMOTE_AT_FORMAT },
  { name: STREAM_FILE, format: STREAM_FORMAT },
  { name: GROW_FILE, format: GROW_FORMAT },
  { name: JOURNAL_AT_FILE, format: JOURNAL_AT_FORMAT },
  { name: FILE_ID_FILE, format: FILE_ID_FORMAT },
  { name: DEVICE_REFUSED_FILE, format: FILE_ID_FORMAT },
  { name: DEVICE_ACCEPTED_FILE, format: FILE_ID_FORMAT },
  { name: PEERS_FILE, format: PEERS_FORMAT },
];

/** Throws NewerFormatError (naming the file by its path) for the first file in `dir` a newer release wrote. */
export async function refuseNewerState(dir: string, store: Store, files: readonly StateFile[]): Promise<void> {
  for (const name of store.list().sort()) {
    const f = files.find((x) => (typeof x.name === 'string' ? x.name === name : x.name.test(name)));
    if (!f) continue;
    const file = store.open(name);
    let head: Buffer;
    try {
      head = await file.read(0, Number.isFinite(f.format.headBytes) ? f.format.headBytes : file.size());
    } finally {
      file.close();
    }
    const version = f.format.version(head);
    if (isNewer(f.format, version)) throw new NewerFormatError(f.format, path.join(dir, name), version);
  }
}
