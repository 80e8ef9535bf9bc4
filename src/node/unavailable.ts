// The volumes this daemon could not open, and why (src/node/set-aside.ts sets them aside
// and opens them again): what the status, the metrics, the actions' refusals and the
// peer's Hello say of them.
import type { UnavailableVolumeStatus } from '../contract/status.js';

interface Unavailable {
  error: string;
  /** When it was first set aside (ms). */
  since: number;
  /** Opens tried (the start's, then each reload's). */
  attempts: number;
  /** An open being tried now (a reload). */
  opening: boolean;
  /** A served volume a reload let go to open it again (src/node/volume-reopen.ts), not one that failed. */
  reopening: boolean;
}

export class UnavailableVolumes {
  private readonly volumes = new Map<string, Unavailable>();

  /** A volume failed to open (again): its newest reason; since stays the first failure's. */
  set(name: string, error: string, now: number): void {
    const was = this.volumes.get(name);
    // (A reopen that failed counts from the reopen's start, its first try: the volume was served until then.)
    this.volumes.set(name, { error, since: was?.since ?? now, attempts: (was?.attempts ?? 0) + 1, opening: false, reopening: false });
  }

  /** A served volume let go to be opened again at once (src/node/volume-reopen.ts): listed, being opened. */
  reopen(name: string, why: string, now: number): void {
    this.volumes.set(name, { error: why, since: now, attempts: 0, opening: true, reopening: true });
  }

  has(name: string): boolean {
    return this.volumes.has(name);
  }

  reason(name: string): string | null {
    return this.volumes.get(name)?.error ?? null;
  }

  /** Marks a retry begun; false when one runs already (two reloads in a row). */
  begin(name: string): boolean {
    const u = this.volumes.get(name);
    if (!u || u.opening) return false;
    u.opening = true;
    return true;
  }

  /** A reload is opening it now. */
  isOpening(name: string): boolean {
    return this.volumes.get(name)?.opening ?? false;
  }

  /** The retry opened it. */
  opened(name: string): void {
    this.volumes.delete(name);
  }

  /** Gone from the config (src/node/volume-removal.ts): no longer listed. */
  remove(name: string): void {
    this.volumes.delete(name);
  }

  names(): string[] {
    return [...this.volumes.keys()];
  }

  get size(): number {
    return this.volumes.size;
  }

  status(now: number): UnavailableVolumeStatus[] {
    return [...this.volumes].map(([name, u]) => ({
      name, error: u.error, forSeconds: Math.max(0, Math.round((now - u.since) / 1000)), attempts: u.attempts, opening: u.opening,
      ...(u.reopening ? { reopening: true } : {}),
    }));
  }
}

/** "volume db: journal folder …" said of db: the message without its leading name (said once by the caller). */
export function withoutName(volume: string, message: string): string {
  const prefix = `volume ${volume}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}
