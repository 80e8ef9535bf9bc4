// The versions of what a daemon keeps on disk (docs/VERSIONING.md). Every file that
// outlives a restart declares its format version near its start. A build reads the
// version it writes and the one before it, so an upgrade never costs a resync. A
// version newer than it reads is refused with a message for the operator, never taken
// for damage: damage is resynced or dropped, and dropping a file that a newer release
// wrote (after going back a release) could lose unshipped writes or show a
// half-applied replica.
//
// A later version of a format keeps its magic and the place of its version field (and
// the intent ring its slot's CRC), so that this build can tell it is newer.
export interface FileFormat {
  /** As an operator reads it: "dirty bitmap". */
  readonly what: string;
  /** The version this build writes. */
  readonly writes: number;
  /** The versions this build reads: the one it writes and the one before it, at least. */
  readonly reads: readonly number[];
  /** How many bytes from the start of a file version() looks at (Infinity: the whole file). */
  readonly headBytes: number;
  /** The version a file's first bytes declare; null when they are not this format (damage, a torn creation). */
  version(head: Buffer): number | null;
}

/** A file written by a release newer than this build. */
export class NewerFormatError extends Error {
  constructor(readonly format: FileFormat, readonly file: string, readonly found: number) {
    super(`${file}: this ${format.what} is format version ${found}, and this build reads ${versions(format.reads)}: ` +
      'a newer release of Offsite wrote it. Nothing was read or changed. Run that release (or a newer one) again; ' +
      'this one will not take the file for damage and drop it. To go back to this release anyway, see docs/VERSIONING.md ' +
      '("Going back a release") for what removing the file costs');
  }
}

function versions(v: readonly number[]): string {
  return v.length === 1 ? `version ${v[0]}` : `versions ${v.slice(0, -1).join(', ')} and ${v[v.length - 1]}`;
}

/** Is `version` past what `format` reads? (Older or unknown versions are damage, handled as before.) */
export function isNewer(format: FileFormat, version: number | null): version is number {
  return version !== null && version > Math.max(...format.reads);
}

/** Throws NewerFormatError when `head` (a file's first bytes) declares a version newer than this build reads. */
export function refuseNewer(format: FileFormat, head: Buffer, file: string): void {
  const v = format.version(head);
  if (isNewer(format, v)) throw new NewerFormatError(format, file, v);
}

/** An 8-byte magic, then the version as a u32 LE at byte 8 (segments, bitmap, activity log, undo area). */
export function magicAndU32(what: string, magic: string, writes: number, reads: readonly number[]): FileFormat {
  const m = Buffer.from(magic, 'latin1');
  return {
    what, writes, reads, headBytes: 12,
    version: (head) => (head.length >= 12 && head.subarray(0, m.length).equals(m) ? head.readUInt32LE(8) : null),
  };
}

/**
 * A 7-byte magic whose 8th byte is the version as an ASCII digit ("OFFSREL1"): the
 * counter files and the round marker, whose magic always ended in their version.
 */
export function magicDigit(what: string, prefix: string, writes: number, reads: readonly number[]): FileFormat {
  const m = Buffer.from(prefix, 'latin1');
  return {
    what, writes, reads, headBytes: 8,
    version: (head) => {
      if (head.length < 8 || !head.subarray(0, 7).equals(m)) return null;
      const d = head[7]! - 0x30;
      return d >= 0 && d <= 9 ? d : null;
    },
  };
}

/** A JSON object with a numeric "version" (absent: version 1, as files written before it had none). */
export function jsonVersion(what: string, writes: number, reads: readonly number[]): FileFormat {
  return {
    what, writes, reads, headBytes: 64 * 1024,
    version: (head) => {
      let v: unknown;
      try {
        v = JSON.parse(head.toString('utf8'));
      } catch {
        return null;
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
      const n = (v as { version?: unknown }).version;
      if (n === undefined) return 1;
      return typeof n === 'number' && Number.isInteger(n) ? n : null;
    },
  };
}
