// One volume per journal folder (docs/JOURNAL.md): a version 2 segment names its
// volume, and recovery refuses to open a journal holding a segment that names another.
import type { Store } from '../store/store.js';
import { NewerFormatError, isNewer } from '../versioning/format.js';
import { SEGMENT_FILE_FORMAT, SEGMENT_HEADER_SIZE, decodeSegmentHeader, formatVolumeId, volumeId } from './record.js';

export interface JournalVolume {
  /** For messages. */
  name: string;
  /**
   * Its UUID now (identity.json), read at each new segment and at recovery; '' while
   * it has none (a secondary before its first link adopts the primary's).
   */
  uuid(): string;
}

/** What a new segment header names: the journal's volume, if it has an identity yet. */
export function segmentVolumeId(volume: JournalVolume | null): Buffer | null {
  return volume ? volumeId(volume.uuid()) : null;
}

/**
 * Recovery found a segment that names another volume. Nothing was read, changed or
 * removed: refusing to open is the safe choice (dropping it as damaged would lose
 * the other volume's unshipped writes; reading it would corrupt this one's replica).
 */
export class ForeignSegmentError extends Error {
  constructor(
    readonly volume: string,
    /** Its uuid, and the other volume's (the first foreign segment's). */
    readonly uuid: string,
    readonly owner: string,
    readonly segment: string,
    readonly count: number,
  ) {
    super(`journal of volume ${volume}: ${ForeignSegmentError.explain(volume, uuid, owner, segment, count)}`);
  }

  /** The message without its "journal of volume NAME: " opening; `ownerName` when the caller knows whose uuid it is. */
  detail(ownerName?: string): string {
    return ForeignSegmentError.explain(this.volume, this.uuid, this.owner, this.segment, this.count, ownerName);
  }

  private static explain(volume: string, uuid: string, owner: string, segment: string, count: number, ownerName?: string): string {
    const which = count === 1 ? `segment ${segment} belongs` : `${count} segments (${segment} first) belong`;
    const other = ownerName ? `volume ${ownerName} (uuid ${owner})` : `another volume (uuid ${owner})`;
    return `${which} to ${other}, not to ${volume} (uuid ${uuid}): two volumes have shared this journal folder, ` +
      'and reading it would send the other volume\'s writes to this one\'s replica. Nothing was read, changed or removed. ' +
      'Give each volume a journal folder of its own (volumes.NAME.journal_dir), move the other volume\'s segments to its folder ' +
      '(a segment names its volume\'s uuid at bytes 40..56), and start again; ' +
      `if writes of ${volume} were lost to the sharing, \`offsite verify ${volume} --repair\` resends the regions that differ`;
  }
}

/**
 * Refuses a journal folder holding a segment that names another volume. Segments
 * that name none (version 1, written before segments carried the volume, or a
 * receive log's first segment from before its first link) are read as this
 * volume's: the previous release's journal opens without a resync. A header that
 * does not decode is left to recovery (damage, handled there), except one of a
 * version newer than this build reads: refused (NewerFormatError), since recovery
 * would drop it as damaged and with it writes the peer may not have.
 */
export async function checkOwnership(store: Store, names: string[], volume: JournalVolume | null): Promise<void> {
  const mine = segmentVolumeId(volume);
  const foreign: Array<{ name: string; owner: string }> = [];
  for (const name of names) {
    const file = store.open(name);
    let head;
    try {
      head = await file.read(0, SEGMENT_HEADER_SIZE);
    } finally {
      file.close();
    }
    const version = SEGMENT_FILE_FORMAT.version(head);
    if (isNewer(SEGMENT_FILE_FORMAT, version)) throw new NewerFormatError(SEGMENT_FILE_FORMAT, name, version);
    const sh = decodeSegmentHeader(head);
    if (mine && typeof sh !== 'string' && sh.volume && !sh.volume.equals(mine)) foreign.push({ name, owner: formatVolumeId(sh.volume) });
  }
  if (!volume || foreign.length === 0) return;
  const first = foreign[0]!;
  throw new ForeignSegmentError(volume.name, volume.uuid(), first.owner, first.name, foreign.length);
}
