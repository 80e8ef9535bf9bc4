// Group commit for fdatasync: callers that ask while a sync is running share the
// next one, so N concurrent FLUSH/FUA requests cost two syncs, not N.
//
// A caller's writes may have completed after the running sync started, so it
// cannot piggyback on that one: it waits for the next sync to start *after* its call.
//
// Two strengths: a full sync (everything the owner holds) and a light one (the owner
// says what: the journal alone, for a write path whose volume may lag, docs/JOURNAL.md).
// A full sync covers a light one; a queued sync is full if any of its callers asked so.

export type SyncStrength = 'full' | 'light';

export class GroupSync {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private nextStrength: SyncStrength = 'light';
  syncs = 0;
  lightSyncs = 0;

  constructor(private readonly doSync: (strength: SyncStrength) => Promise<void>) {}

  sync(strength: SyncStrength = 'full'): Promise<void> {
    if (this.running === null) return this.start(strength);
    if (this.next === null) {
      this.nextStrength = strength;
      const after = this.running.then(noop, noop);
      this.next = after.then(() => {
        this.next = null;
        return this.start(this.nextStrength);
      });
    } else if (strength === 'full') {
      this.nextStrength = 'full';
    }
    return this.next;
  }

  /** Resolves when no sync is running or queued. */
  async idle(): Promise<void> {
    while (this.running !== null || this.next !== null) {
      await (this.next ?? this.running)?.then(noop, noop);
    }
  }

  private start(strength: SyncStrength): Promise<void> {
    if (strength === 'full') this.syncs++;
    else this.lightSyncs++;
    const p = this.doSync(strength).finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}

function noop(): void {}
