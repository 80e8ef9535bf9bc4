// Group commit for fdatasync: callers that ask while a sync is running share the
// next one, so N concurrent FLUSH/FUA requests cost two syncs, not N.
//
// A caller's writes may have completed after the running sync started, so it
// cannot piggyback on that one: it waits for the next sync to start *after* its call.

export class GroupSync {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  syncs = 0;

  constructor(private readonly doSync: () => Promise<void>) {}

  sync(): Promise<void> {
    if (this.running === null) return this.start();
    if (this.next === null) {
      const after = this.running.then(noop, noop);
      this.next = after.then(() => {
        this.next = null;
        return this.start();
      });
    }
    return this.next;
  }

  /** Resolves when no sync is running or queued. */
  async idle(): Promise<void> {
    while (this.running !== null || this.next !== null) {
      await (this.next ?? this.running)?.then(noop, noop);
    }
  }

  private start(): Promise<void> {
    this.syncs++;
    const p = this.doSync().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}

function noop(): void {}
