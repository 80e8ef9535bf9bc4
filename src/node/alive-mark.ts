// The daemon's alive mark (docs/CONFIG.md, "A volume's file replaced"): STATE/alive,
// rewritten every ALIVE_MARK_INTERVAL_MS while the daemon runs. After a crash no clean
// stop wrote down how the daemon left each volume's file, but the last mark says when
// the daemon was last alive: a file modified well after it (ALIVE_MARK_SLACK_MS) was
// written by something else once the daemon was gone (the replica mounted and fsck'd
// after the DR site's daemon died, a backup restored before the restart). A start reads
// the previous run's mark before it writes its own.
//
// STATE/alive, JSON: {"version":1,"time":"1796481299000000000"} (ns since the epoch, a
// decimal string). A mark that cannot be written is removed: a stale one would take the
// daemon's own later writes for another's after a crash (so with none, nothing is told).
import fs from 'node:fs';
import path from 'node:path';
import { DirStore } from '../journal/store.js';
import { ALIVE_MARK_INTERVAL_MS } from '../limits/limits.js';
import type { Logger } from '../log/log.js';
import { readStateFile } from '../store/store.js';
import { jsonVersion } from '../versioning/format.js';

export const ALIVE_FILE = 'alive';
export const ALIVE_FORMAT = jsonVersion('alive mark', 1, [1]);

export function encodeAlive(timeNs: bigint): Buffer {
  return Buffer.from(`${JSON.stringify({ version: ALIVE_FORMAT.writes, time: timeNs.toString() })}\n`);
}

/** The time (ns) a mark holds; an unreadable mark is none (it only ever lets a change be told, never refuses one). */
export function decodeAlive(b: Buffer): bigint | null {
  try {
    const j = JSON.parse(b.toString('utf8')) as { time?: unknown };
    return typeof j.time === 'string' && /^\d{1,24}$/.test(j.time) ? BigInt(j.time) : null;
  } catch {
    return null;
  }
}

export class AliveMark {
  /** When the run before this one was last alive (ns; null: no mark, or it could not be read). */
  previous: bigint | null = null;
  /** Volumes opened in this run: their files are this run's to write from then on, the previous mark says nothing of them. */
  private readonly opened = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private failedSaid = false;
  private readonly store: DirStore;

  constructor(private readonly dir: string, private readonly log: Logger, private readonly now: () => bigint = () => BigInt(Date.now()) * 1_000_000n) {
    this.store = new DirStore(dir);
  }

  /** Reads the previous run's mark, then writes this run's at once (before any volume opens) and every interval. */
  async start(): Promise<void> {
    try {
      const b = await readStateFile(this.store, ALIVE_FILE, ALIVE_FORMAT);
      this.previous = b === null ? null : decodeAlive(b);
    } catch (e) {
      // (A mark of a newer release: refused as any state file of one, readStateFile.)
      throw new Error(`${path.join(this.dir, ALIVE_FILE)}: ${(e as Error).message}`);
    }
    await this.write();
    this.timer = setInterval(() => void this.write(), ALIVE_MARK_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * The previous run's last mark, for the first open of `volume` in this run (null on
   * later opens: a role change or a reopen finds the file as this run wrote it).
   */
  firstOpen(volume: string): bigint | null {
    if (this.opened.has(volume)) return null;
    this.opened.add(volume);
    return this.previous;
  }

  private write(): Promise<void> {
    this.writing = this.writing.then(async () => {
      try {
        await this.store.replace(ALIVE_FILE, encodeAlive(this.now()));
        if (this.failedSaid) this.log.info(`the alive mark is written again (${path.join(this.dir, ALIVE_FILE)})`);
        this.failedSaid = false;
      } catch (e) {
        try {
          fs.rmSync(path.join(this.dir, ALIVE_FILE), { force: true });
        } catch {
          // (Neither written nor removed: said below; a start after a crash may then take the daemon's own writes for another's.)
        }
        if (!this.failedSaid) {
          this.log.warn(`cannot write the alive mark ${path.join(this.dir, ALIVE_FILE)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
            'it is removed, and until it is written again a volume\'s file written after a crash of the daemon cannot be told');
        }
        this.failedSaid = true;
      }
    });
    return this.writing;
  }

  /** A clean stop: no more marks (each volume's own clean stop note says how it was left). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.writing;
  }
}
