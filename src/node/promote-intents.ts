// Where a promote goes, written down before it begins (the promote-at file,
// src/secondary/promote-at-file.ts; docs/HISTORY.md), as the node's role changes
// (roles.ts) keep it: written for a promote to a past point, removed when stale, and at
// a start kept for a promote that began (a group's member joins one that began on another
// member), removed otherwise. A promote that began and failed part-way goes on only to
// where it began. The decision itself is promoteBegun's.
import type { Logger } from '../log/log.js';
import type { GroupConfig } from '../config/config.js';
import { ActionRefused } from '../contract/actions.js';
import { DirStore } from '../journal/store.js';
import { promoteBegun, readPromoteAt, removePromoteAt, writePromoteAt, type PromoteAt, type RoleMark } from '../secondary/promote-at-file.js';
import type { VolumeEntry } from './volume-entry.js';

/** Each volume's role as its identity holds it, by name (at a start, before every entry is made). */
export type IdentityOf = (volume: string) => RoleMark | null;

export interface IntentsHost {
  entries(): readonly VolumeEntry[];
  /** The consistency group of that name, if any. */
  group(name: string): GroupConfig | null;
}

export class PromoteIntents {
  constructor(private readonly host: IntentsHost, private readonly log: Logger) {}

  /** Each volume's role now, as its identity holds it. */
  private readonly identityOf: IdentityOf = (m) => this.host.entries().find((x) => x.config.name === m)?.identity ?? null;

  /**
   * The promote of `e` that has begun and is under way (a failure part-way, or a start,
   * left it; promoteBegun): where it goes (`at` null: the newest flush point), or null
   * when none has begun. An unreadable promote-at file is refused, not guessed.
   */
  async begun(e: VolumeEntry, identityOf: IdentityOf = this.identityOf): Promise<{ at: PromoteAt | null } | null> {
    if (!e.identity) return null;
    const at = await readPromoteAt(new DirStore(e.dir));
    const others = at?.group === undefined ? [] : (this.host.group(at.group)?.members ?? []).filter((m) => m !== e.config.name);
    return promoteBegun(e.identity, at, others.map(identityOf)) ? { at } : null;
  }

  /**
   * A promote of `e` that began and failed part-way goes on only to where it began: a
   * roll-back may have put part of its point back already. Refused when `wanted` (a past
   * point, or null: the newest) is elsewhere; `command` is the one that completes it.
   */
  async refuseElsewhere(e: VolumeEntry, wanted: PromoteAt | null, command: string): Promise<void> {
    const begun = await this.begun(e);
    if (!begun || (begun.at?.seq ?? null) === (wanted?.seq ?? null)) return;
    throw new ActionRefused('conflict', `volume ${e.config.name}: a promote to ${begun.at ? describePoint(begun.at) : 'its newest flush point'} began here ` +
      `and failed part-way; it completes only there: ${command}${begun.at ? ` --at ${new Date(begun.at.time).toISOString()}` : ''}, ` +
      'or restart the daemon, whose start completes it');
  }

  /**
   * A group whose promote began on a member and failed part-way is completed by a start
   * (every member where it began), not by another promote: refused.
   */
  async refuseBegun(group: string, members: readonly VolumeEntry[]): Promise<void> {
    for (const e of members) {
      if (e.role !== 'secondary') continue;
      const begun = await this.begun(e);
      if (!begun) continue;
      const where = begun.at?.groupPoint !== undefined ? `group point ${begun.at.groupPoint} of ${new Date(begun.at.time).toISOString()}` :
        begun.at ? describePoint(begun.at) : 'its newest flush point';
      throw new ActionRefused('conflict', `group ${group}: a promote to ${where} began on ${e.config.name} and failed part-way; ` +
        'restart the daemon: its start completes it on every member where it began');
    }
  }

  /**
   * Before a promote of `e` begins: where it goes, written down durably (the past point
   * `wanted`), or, for the newest, a promote-at file a promote that never began left is
   * removed (it must not roll this one back). A promote that began already keeps its own.
   */
  async write(e: VolumeEntry, wanted: PromoteAt | null): Promise<void> {
    if (await this.begun(e)) return;
    const store = new DirStore(e.dir);
    if (wanted) return writePromoteAt(store, wanted);
    const stale = await readPromoteAt(store);
    if (!stale) return;
    await removePromoteAt(store);
    this.log.info({ volume: e.config.name }, `volume ${e.config.name}: removed the promote-at file of a promote to ${describePoint(stale)} ` +
      'that a promote which never began left; this one goes to the newest flush point');
  }

  /**
   * At start, before the volume is opened (so its history pins no stale point): a
   * promote-at file is kept only for a promote that has begun, which completeChange
   * (roles.ts) then finishes at its point; for a group's promote that began on another
   * member, this member's change begins now, so it is finished there too. Any other was
   * written by a promote that a stop cut before it began: the promote did not happen, and
   * the file is removed so that no later promote rolls back to its point. `identityOf`
   * gives every volume's identity (the entries are not all made yet).
   */
  async settle(e: VolumeEntry, identityOf: IdentityOf): Promise<void> {
    if (!e.identity || promoteBegun(e.identity)) return;
    const name = e.config.name;
    const store = new DirStore(e.dir);
    const at = await readPromoteAt(store);
    if (!at) return;
    if (await this.begun(e, identityOf)) {
      this.log.warn({ volume: name }, `volume ${name}: the promote of group ${at.group} to group point ${at.groupPoint} ` +
        `(${describePoint(at)}) began on another member before a stop; ${name} is promoted there too`);
      e.identity.beginChange('primary');
      return;
    }
    await removePromoteAt(store);
    this.log.info({ volume: name }, `volume ${name}: removed the promote-at file of a promote to ${describePoint(at)} that a stop cut before it began: ` +
      `the promote did not happen and ${name} is still ${e.role} here; promote ${at.group ?? name} again if that is still wanted`);
  }
}

/** A restore point as an operator reads it. */
function describePoint(p: PromoteAt): string {
  return `the restore point of ${new Date(p.time).toISOString()} (record ${p.seq})`;
}
