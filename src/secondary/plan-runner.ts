// Carrying out the receiver's plan on a secondary: the receiver (receiver.ts) decides,
// this does it. Records are appended to the receive log and the log synced, acks and
// Hold go back on the link, units are applied to the replica (apply-unit.ts) with a
// group member's point written first, the log is released, and the link closes when
// any of it fails. Replica (replica.ts) gives the receiver its events and hands the
// actions they plan to run().
import type { Journal } from '../journal/journal.js';
import type { JournalRecord } from '../journal/record.js';
import type { Store } from '../journal/store.js';
import type { Logger } from '../log/log.js';
import type { RoundMark } from '../sync/round-marker.js';
import { formatBytes } from '../units/units.js';
import { assert } from '../invariants/assert.js';
import type { Receiver, ReceiverAction } from './receiver.js';
import type { UnitApplier } from './apply-unit.js';
import type { Checkpoint } from './checkpoint-hold.js';
import { appendFrame } from './receive-log.js';
import { writeGroupPoint } from './group-point-file.js';

/** The link to the primary, as the replica answers on it. */
export interface ReplicaLink {
  ack(seq: number): void;
  /** Pause shipping (the log is full under a checkpoint) or resume right after `after`. */
  hold(held: boolean, after: number): void;
  close(reason: string): void;
}

/**
 * What carrying out a plan needs of the replica, as it is now: a receive log that broke
 * is reopened, and then the log and the receiver are new ones.
 */
export interface PlanHost {
  readonly name: string;
  readonly receiver: Receiver;
  readonly log: Journal;
  /** The open resync round, if any. */
  readonly round: RoundMark | null;
  /** The held checkpoint that freezes the replica, if any (one taken from the history does not). */
  readonly frozenBy: Checkpoint | null;
  /** A member of a consistency group: its group point is written before a unit begins. */
  readonly inGroup: boolean;
  /** Called after the receiver moved (a sync or an apply ended). */
  readonly onProgress: (() => void) | null;
}

/**
 * A frame's records on their way into the receive log: `logged` gives back its memory
 * lease (src/memory/intake.ts), `done` its bytes (the node's buffer it lies in, invariant
 * 12). Both once the log has written the records, or at once when none is appended;
 * `hooked`: the log's write will call them.
 */
export interface FrameUse {
  logged: () => void;
  done: () => void;
  hooked: boolean;
}

export class PlanRunner {
  /** The peer's link while one is attached. */
  link: ReplicaLink | null = null;
  /** The receiver of a receive log being reopened: what it plans is not run. */
  staleReceiver: Receiver | null = null;
  /** Units asked of the receiver and not yet ended (the group point file is written before the gate closes). */
  appliesAsked = 0;

  /** `store`: the volume's state folder, where a group member's point file is. */
  constructor(private readonly replica: PlanHost, private readonly units: UnitApplier, private readonly logger: Logger, private readonly store: Store) {}

  private get name(): string { return this.replica.name; }
  private get receiver(): Receiver { return this.replica.receiver; }
  private get log(): Journal { return this.replica.log; }

  /** Why the last unit that failed did (while the receiver says one waits to be applied again). */
  lastApplyFailure = '';
  lastApplyCode = 'EIO';

  fail(what: string, e: Error): void {
    if (this.log.closed) {
      // The node stops, or a role change lets the receive log go, with this under way:
      // nothing failed for damage. What the log holds is taken up when it opens again, as
      // after a crash part-way (or is let go with it by the role change). The error is
      // kept in the line: a real one may race the close.
      const why = (e as NodeJS.ErrnoException).code ?? e.message;
      this.logger.info({ volume: this.name }, `volume ${this.name}: ${what} stopped part-way (${why}): the receive log was closed; ` +
        'what it holds is taken up again when it is opened');
      this.link?.close(`${what} stopped: the receive log was closed`);
      return;
    }
    const why = (e as NodeJS.ErrnoException).code ?? e.message;
    this.logger.error({ volume: this.name }, `volume ${this.name}: ${what} failed (${why}); the link closes and the primary's journal keeps the data`);
    this.link?.close(`${what} failed on the secondary (${why})`);
  }

  async run(actions: ReceiverAction[], frame?: Map<number, JournalRecord>, lease?: FrameUse): Promise<void> {
    await this.runActions(actions, frame, lease);
    // After a sync (its ack) or an apply the member's view changed; plain appends change nothing durable.
    // (The node also looks every GROUP_POINT_MIN_GAP_MS.)
    if (this.replica.onProgress && actions.some((a) => a.type === 'ack' || a.type === 'apply' || a.type === 'releaseLog')) this.replica.onProgress();
  }

  private async runActions(actions: ReceiverAction[], frame?: Map<number, JournalRecord>, lease?: FrameUse): Promise<void> {
    // Actions are the plan of the receiver that made them: once the receive log was
    // reopened and the receiver made again from the disk, the rest of an old plan is
    // dropped (the new receiver plans from what is durable).
    const receiver = this.receiver;
    for (const a of actions) {
      if (receiver !== this.receiver || receiver === this.staleReceiver) return;
      switch (a.type) {
        case 'append': {
          // On a full or failed log the rest of this frame is dropped and the link
          // closes; the actions after this one still run: the sync makes what was
          // logged durable and acks it.
          const end = appendFrame(this.log, this.receiver, a.fromSeq, a.toSeq, frame!);
          // The frame's buffers are the records' payloads until the log has written them.
          if (lease && !lease.hooked) {
            lease.hooked = true;
            const l = lease;
            const end = (): void => {
              l.logged();
              l.done();
            };
            // (Written or failed: either way the log's writev no longer reads the frame.)
            void this.log.whenWritten(this.log.lastSeq).then(end, end);
          }
          if (end.kind === 'failed') this.fail('writing the receive log', end.error);
          else if (end.kind === 'full' && end.next.length > 0) {
            const why = this.replica.frozenBy ?
              `while checkpoint "${this.replica.frozenBy.label}" is held; ` +
                "shipping paused, the primary's journal holds the rest until the checkpoint is released" :
              'ahead of the replica; shipping paused until applied records free room';
            (this.replica.frozenBy ? this.logger.warn : this.logger.info).call(this.logger, { volume: this.name },
              `volume ${this.name}: receive log full (${formatBytes(this.log.usedBytes)} of ${formatBytes(this.log.capacity)}) ${why}`);
            await this.run(end.next);
          } else if (end.kind === 'full') {
            this.link?.close(`receive log full (${formatBytes(this.log.usedBytes)} of ${formatBytes(this.log.capacity)}); the primary's ` +
              `journal holds the rest`);
          }
          break;
        }
        case 'sync': {
          const log = this.log;
          void log.sync().then((upTo) => {
            if (log === this.log) return this.run(this.receiver.handle({ type: 'synced', upTo, asked: a.upTo }));
          }, (e: Error) => {
            if (log !== this.log) return;
            this.receiver.handle({ type: 'syncFailed' });
            this.fail('syncing the receive log', e);
          }).catch((e: Error) => this.fail('handling a receive-log sync', e));
          break;
        }
        case 'ack':
          // (While a round opens, acks of what precedes it would run backwards for the primary.)
          if (!this.replica.round || a.seq >= this.replica.round.startSeq - 1) this.link?.ack(a.seq);
          break;
        case 'apply': {
          this.appliesAsked++;
          try {
            if (this.replica.inGroup && !a.round) {
              // Written before the unit starts: a crash part-way redoes it to this same point.
              const point = this.receiver.pointAt(a.toSeq);
              if (point !== null) await writeGroupPoint(this.store, { point, seq: a.toSeq });
            }
            await this.units.apply(this.log, this.receiver.applied, a.fromSeq, a.toSeq, a.endsRound === true);
          } catch (e) {
            this.appliesAsked--;
            this.lastApplyFailure = `records ${a.fromSeq}..${a.toSeq} could not be applied (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
            this.lastApplyCode = (e as NodeJS.ErrnoException).code ?? 'EIO';
            this.receiver.handle({ type: 'applyFailed' });
            this.units.ended();
            this.fail(`applying records ${a.fromSeq}..${a.toSeq}`, e as Error);
            return;
          }
          this.appliesAsked--;
          // The receiver is made again only when no unit is asked or in flight (doAttach).
          assert(receiver === this.receiver, () => `the receiver was made again while records ${a.fromSeq}..${a.toSeq} were applied`);
          {
            const next = this.receiver.handle({ type: 'applied', upTo: a.toSeq });
            this.units.ended();
            await this.run(next);
          }
          if (a.endsRound && !this.replica.round) await this.run(this.receiver.handle({ type: 'roundClosed' }));
          break;
        }
        case 'releaseLog':
          await this.log.release(a.seq).catch(() => undefined);
          await this.run(this.receiver.handle({ type: 'released' }));
          break;
        case 'holdShipping':
          this.link?.hold(a.held, a.after);
          if (!a.held) this.logger.debug({ volume: this.name }, `volume ${this.name}: shipping resumes after record ${a.after}`);
          break;
        case 'close':
          this.logger.warn({ volume: this.name }, `volume ${this.name}: ${a.reason}`);
          this.link?.close(a.reason);
          break;
      }
    }
  }
}
