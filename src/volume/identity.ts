// A replicated volume's identity (docs/PEER-PROTOCOL.md, "Volume identity"): a UUID
// born on the primary and adopted by the secondary at their first link, and a list
// of generation identifiers, newest first. The primary starts a new generation
// whenever it begins taking writes that the peer may not have (first start, promote,
// a resync); the secondary adopts the primary's list. Two sides whose current
// generations differ and neither list contains the other's current one took writes
// apart: a split brain (checked when they meet).
//
// Stored as state/volumes/NAME/identity.json, replaced atomically (write, fsync,
// rename, fsync the directory), so a crash leaves the old or the new one.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { NewerFormatError, isNewer, jsonVersion } from '../versioning/format.js';

const MAX_GENERATIONS = 8;
/** A newer release's identity is refused with that said (docs/VERSIONING.md), not as "malformed at version". */
export const IDENTITY_FORMAT = jsonVersion('volume identity', 1, [1]);

const schema = z.strictObject({
  version: z.literal(1),
  uuid: z.string().max(64),
  generations: z.array(z.string().regex(/^[0-9a-f]{16}$/)).max(MAX_GENERATIONS),
  /** The role this node took by promote or demote; absent: the config's role. */
  role: z.enum(['primary', 'secondary']).optional(),
  /** A promote or demote under way (written before its first destructive step; a restart finishes it). */
  changing: z.enum(['primary', 'secondary']).optional(),
  /** The peer has met the current generation (a new one for writes apart is due only then). */
  shared: z.boolean().optional(),
});

export type VolumeIdentityData = z.infer<typeof schema>;

export class VolumeIdentity {
  private constructor(private readonly file: string, private data: VolumeIdentityData) {}

  get uuid(): string { return this.data.uuid; }
  get generations(): string[] { return [...this.data.generations]; }
  get current(): string { return this.data.generations[0] ?? ''; }

  /** The role promote or demote gave this volume here, if any (it overrides the config's). */
  get role(): 'primary' | 'secondary' | undefined { return this.data.role; }

  /** Opens (or creates) the identity in `dir`. A primary gets a UUID and a first generation at once. */
  static open(dir: string, configRole: 'primary' | 'secondary'): VolumeIdentity {
    const file = path.join(dir, 'identity.json');
    let data: VolumeIdentityData | null = null;
    if (fs.existsSync(file)) {
      let raw: unknown;
      try {
        raw = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (e) {
        throw new Error(`${file} is not valid JSON (${(e as Error).message}); ` +
          'restore it from a backup or remove it to give the volume a new identity (a full resync follows)');
      }
      const version = typeof raw === 'object' && raw !== null ? (raw as { version?: unknown }).version : undefined;
      if (typeof version === 'number' && isNewer(IDENTITY_FORMAT, version)) throw new NewerFormatError(IDENTITY_FORMAT, file, version);
      const parsed = schema.safeParse(raw);
      if (!parsed.success) throw new Error(`${file} is malformed at ${parsed.error.issues[0]!.path.join('.') || '(top)'}: ${parsed.error.issues[0]!.message}`);
      data = parsed.data;
    }
    const id = new VolumeIdentity(file, data ?? { version: 1, uuid: '', generations: [] });
    const role = id.data.role ?? configRole;
    if (role === 'primary' && !id.data.uuid) {
      id.data = { ...id.data, version: 1, uuid: randomUUID(), generations: [generationId()] };
      id.save();
    } else if (!data) {
      id.save();
    }
    return id;
  }

  /** The role change under way, if a crash interrupted one. */
  get changing(): 'primary' | 'secondary' | undefined { return this.data.changing; }

  /** Records that a change to `role` has begun: a restart completes it. */
  beginChange(role: 'primary' | 'secondary'): void {
    this.save({ ...this.data, changing: role });
  }

  /** The peer has met the current generation. */
  get shared(): boolean { return this.data.shared === true; }

  /** A link came up: the peer holds (or adopts) the current generation. One write, the first time. */
  markShared(): void {
    if (this.data.shared) return;
    this.save({ ...this.data, shared: true });
  }

  /** Starts a new generation (this side takes writes its peer may not get in order). */
  newGeneration(): string {
    const g = generationId();
    this.save({ ...this.data, shared: false, generations: [g, ...this.data.generations].slice(0, MAX_GENERATIONS) });
    return g;
  }

  /** The secondary takes the primary's UUID and generations. */
  adopt(uuid: string, generations: string[]): void {
    if (uuid === this.data.uuid && generations.join() === this.data.generations.join()) return;
    this.save({ ...this.data, uuid, generations: generations.slice(0, MAX_GENERATIONS) });
  }

  /**
   * Promote or demote: the role this node now holds, kept across restarts. A promote
   * also starts a new generation (writes the old primary never saw begin here).
   */
  setRole(role: 'primary' | 'secondary', newGeneration: boolean): void {
    const generations = newGeneration ? [generationId(), ...this.data.generations].slice(0, MAX_GENERATIONS) : this.data.generations;
    const { changing: _done, ...rest } = this.data;
    this.save({ ...rest, role, generations, shared: newGeneration ? false : this.data.shared });
  }

  /**
   * --discard-my-data: this side forgets its history, so the peer's image replaces
   * its own at the next link (a full compare-and-copy), as for a new replica.
   */
  forgetHistory(): void {
    this.save({ ...this.data, generations: [] });
  }

  /**
   * Writes `next` (default: what is held) durably and holds it from the rename on: a
   * write that fails before it (a full disk) leaves both the file and what is held as
   * they were, so a change whose beginning could not be written has not begun here either.
   */
  private save(next: VolumeIdentityData = this.data): void {
    const tmp = `${this.file}.tmp`;
    fs.rmSync(tmp, { force: true }); // (a leftover would keep its mode)
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify(next, null, 2)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
    this.data = next;
    const dfd = fs.openSync(path.dirname(this.file), 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  }
}

function generationId(): string {
  return randomBytes(8).toString('hex');
}
