// The daemon's alive mark (docs/CONFIG.md, "A volume's file replaced"): STATE/alive,
// rewritten every ALIVE_MARK_INTERVAL_MS while the daemon runs. After a crash no clean
// stop wrote down how the daemon left each volume's file, but the last mark says when
// the daemon was last alive: a file modified well after it (ALIVE_MARK_SLACK_MS) was
// written by something else once the daemon was gone (the replica mounted and fsck'd
// after the DR site's daemon died, a backup restored before the restart). A start reads
// the previous run's mark before it writes its own.
//
// STATE/alive, JSON: {"version":1,"time":"1796481299000000000"} (ns since the epoch, a
// decimal string), and `"before":{"db":"1796481000000000000"}` for the volumes this run
// has not opened yet (set aside, or the start failed before them): when the run that last
// had each open was last alive, carried on until it opens, so that a restart before then
// does not take this run's marks for that run's. A volume counts as opened once its open
// acted on what it found (role-open.ts), not when it began. A mark that cannot be written, or whose writes the disk holds up past
// half the slack, is removed: a stale one would take the daemon's own later writes for
// another's after a crash (so with none, nothing is told).
import fs from 'node:fs';
import path from 'node:path';
import { DirStore } from '../journal/store.js';
import { ALIVE_MARK_INTERVAL_MS, ALIVE_MARK_SLACK_MS } from '../limits/limits.js';
import { formatDuration } from '../units/units.js';
import type { Logger } from '../log/log.js';
import { readStateFile } from '../store/store.js';
import { jsonVersion } from '../versioning/format.js';

export const ALIVE_FILE = 'alive';
export const ALIVE_FORMAT = jsonVersion('alive mark', 1, [1]);

/** What a mark holds: when the daemon was last alive, and for volumes not opened since, when the run before was (ns). */
export interface Alive {
  time: bigint;
  before: Map<string, bigint>;
}

export function encodeAlive(a: Alive): Buffer {
  const before = [...a.before].sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, v]) => [k, v.toString()]);
  const j = { version: ALIVE_FORMAT.writes, time: a.time.toString(), ...(before.length > 0 ? { before: Object.fromEntries(before) } : {}) };
  return Buffer.from(`${JSON.stringify(j)}\n`);
}

/** The mark's contents; an unreadable mark is none (it only ever lets a change be told, never refuses one). */
export function decodeAlive(b: Buffer): Alive | null {
  const ns = (x: unknown): x is string => typeof x === 'string' && /^\d{1,24}$/.test(x);
  try {
    const j = JSON.parse(b.toString('utf8')) as { time?: unknown; before?: unknown };
    if (!ns(j.time)) return null;
    const before = new Map<string, bigint>();
    if (j.before !== undefined) {
      if (typeof j.before !== 'object' || j.before === null || Array.isArray(j.before)) return null;
      for (const [k, v] of Object.entries(j.before)) {
        if (!ns(v)) return null;
        before.set(k, BigInt(v));
      }
    }
    return { time: BigInt(j.time), before };
  } catch {
    return null;
  }
}

export class AliveMark {
  /** The previous run's mark (null: none, or it could not be read). */
  previous: Alive | null = null;
  /** Volumes opened in this run: their files are this run's to write from then on, the previous mark says nothing of them. */
  private readonly opened = new Set<string>();
  /** The configured volumes not opened yet, with when the run that last had them open was alive: carried on in each mark. */
  private readonly carried = new Map<string, bigint>();
  private timer: NodeJS.Timeout | null = null;
  /** The write under way (one at a time). */
  private writing: Promise<void> | null = null;
  /** The time the mark on disk holds (ns; null: none there). */
  private onDisk: bigint | null = null;
  /** The mark was removed, and that said, until one is written again. */
  private removedSaid = false;
  private readonly store: DirStore;

  constructor(private readonly dir: string, private readonly log: Logger, private readonly now: () => bigint = () => BigInt(Date.now()) * 1_000_000n) {
    this.store = new DirStore(dir);
  }

  /**
   * Reads the previous run's mark, then writes this run's at once (before any volume
   * opens) and every interval; `volumes`: the configured ones whose files are checked.
   */
  async start(volumes: readonly string[]): Promise<void> {
    try {
      const b = await readStateFile(this.store, ALIVE_FILE, ALIVE_FORMAT);
      this.previous = b === null ? null : decodeAlive(b);
    } catch (e) {
      // (A mark of a newer release: refused as any state file of one, readStateFile.)
      throw new Error(`${path.join(this.dir, ALIVE_FILE)}: ${(e as Error).message}`);
    }
    for (const v of volumes) {
      const t = this.lastAliveOf(v);
      if (t !== null) this.carried.set(v, t);
    }
    await this.tick();
    this.timer = setInterval(() => void this.tick(), ALIVE_MARK_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * When the run that last had `volume` open was last alive (ns), for its opens in this
   * run until one acts on what it found (`opened`); null after that (a role change or a
   * reopen finds the file as this run wrote it), or with no mark.
   */
  lastAliveOf(volume: string): bigint | null {
    if (this.opened.has(volume) || this.previous === null) return null;
    return this.previous.before.get(volume) ?? this.previous.time;
  }

  /** `volume`'s open acted on what it found: this run writes its file from now on. */
  openedOne(volume: string): void {
    this.opened.add(volume);
    this.carried.delete(volume);
  }

  /** Each interval: a mark fallen behind goes, and the next is written (unless one still is). */
  tick(): Promise<void> {
    this.dropIfStale();
    this.writing ??= this.write().finally(() => (this.writing = null));
    return this.writing;
  }

  private async write(): Promise<void> {
    const time = this.now();
    try {
      await this.store.replace(ALIVE_FILE, encodeAlive({ time, before: this.carried }));
      this.onDisk = time;
    } catch (e) {
      this.remove(`cannot write the alive mark ${path.join(this.dir, ALIVE_FILE)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return;
    }
    // (A write the disk held up past half the slack is behind already.)
    this.dropIfStale();
    if (this.onDisk !== null && this.removedSaid) {
      this.removedSaid = false;
      this.log.info(`the alive mark is written again (${path.join(this.dir, ALIVE_FILE)})`);
    }
  }

  /**
   * The mark on disk is never older than half the slack: the daemon's own writes after
   * one older would pass it by more than the slack, and a start after a crash would take
   * them for another's. One whose next write the disk holds up goes.
   */
  private dropIfStale(): void {
    if (this.onDisk === null) return;
    const behind = this.now() - this.onDisk;
    if (behind * 2n <= BigInt(ALIVE_MARK_SLACK_MS) * 1_000_000n) return;
    this.remove(`the alive mark ${path.join(this.dir, ALIVE_FILE)} fell ${formatDuration(Number(behind / 1_000_000_000n))} behind ` +
      '(the disk holds its writes up)');
  }

  private remove(why: string): void {
    this.onDisk = null;
    try {
      fs.rmSync(path.join(this.dir, ALIVE_FILE), { force: true });
    } catch {
      // (Neither written nor removed: a start after a crash may take the daemon's own writes for another's, a comparison by hash.)
    }
    if (this.removedSaid) return;
    this.removedSaid = true;
    this.log.warn(`${why}; it is removed, and until it is written again a volume's file written after a crash of the daemon cannot be told`);
  }

  /** A clean stop: no more marks (each volume's own clean stop note says how it was left). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.writing;
  }
}
