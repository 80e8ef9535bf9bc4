// At most one log line per key and interval, so a flood of bad SNMP packets cannot
// flood the log; the set of keys is bounded (cleared when it grows past `maxKeys`).
export class Throttle {
  private readonly last = new Map<string, number>();

  constructor(private readonly intervalMs: number, private readonly maxKeys = 1024) {}

  allow(key: string, now = Date.now()): boolean {
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    if (this.last.size >= this.maxKeys) this.last.clear();
    this.last.set(key, now);
    return true;
  }
}
