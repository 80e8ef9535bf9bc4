// Planted bugs (mutations) for the check that the code's own assertions catch a broken
// relation (docs/INVARIANTS.md, "How we know the checks work"): each one breaks one
// rule the core relies on, and the simulation must then fail with "invariant broken".
// `node dist/test/sim/run.js --mutate NAME` runs the simulation with NAME planted.
import { Journal, KEEP_PREFIX } from '../../src/journal/journal.js';
import { AppendQueue } from '../../src/journal/append-queue.js';
import type { FollowingWrite } from '../../src/journal/disk.js';
import { MemDisk } from './disk-model.js';
import { JournaledVolume } from '../../src/journal/write-path.js';
import { Receiver } from '../../src/secondary/receiver.js';
import { History } from '../../src/history/history.js';
import { HistoryStreams } from '../../src/history/streams.js';
import { CompactionPlan } from '../../src/history/compaction.js';
import { EntryKind, type EntryHead } from '../../src/history/format.js';
import { PeerCursors } from '../../src/journal/peer-cursors.js';
import { DetachedPeers } from '../../src/journal/detach.js';
import { VolumeShipper } from '../../src/link/volume-shipper.js';
import { Replica } from '../../src/secondary/replica.js';
import { DirtyBitmap } from '../../src/journal/bitmap.js';
import { PeerRequests } from '../../src/secondary/replica-requests.js';
import type { FrameHold } from '../../src/rate/pacer.js';

/**
 * `caughtBy`: an assertion in src/ ("invariant broken", the default), or the
 * simulation's own comparison of what a reader sees with the primary's images.
 */
export const MUTATIONS: Record<string, { sim: 'journal' | 'replication' | 'group'; what: string; plant: () => void; caughtBy?: 'assertion' | 'check' }> = {
  'history-unsaved': {
    sim: 'replication',
    caughtBy: 'check',
    what: 'the apply overwrites the replica without saving the old bytes in the history (a past point would open to newer bytes)',
    plant: () => {
      (History.prototype as unknown as { saveRange: () => Promise<void> }).saveRange = async () => undefined;
    },
  },
  'history-follow-unnumbered': {
    sim: 'replication',
    what: 'a replica that follows a new primary keeps its history but numbers the new journal\'s points as if they went on from the old one',
    plant: () => {
      HistoryStreams.prototype.follow = function (this: HistoryStreams) {
        return this;
      };
    },
  },
  'history-compact-hidden-run': {
    sim: 'replication',
    caughtBy: 'check',
    what: 'compaction drops what was saved after a thinned point\'s marker, as if no listed point before it read those bytes',
    plant: () => {
      const add = CompactionPlan.prototype.add;
      CompactionPlan.prototype.add = function (this: CompactionPlan, head: EntryHead, position: number) {
        if (head.kind === EntryKind.Point) (this as unknown as { run: null }).run = null;
        add.call(this, head, position);
      };
    },
  },
  'ship-undurable': {
    sim: 'replication',
    what: 'the journal hands the shipper records past the durable point (a record the primary could still lose reaches the replica)',
    plant: () => {
      const read = Journal.prototype.read;
      Journal.prototype.read = function (this: Journal, fromSeq: number, maxBytes: number, limitSeq?: number) {
        // (The primary's journal only: a receive log keeps the intact prefix of its records.)
        const primary = this.onDamage !== KEEP_PREFIX;
        return read.call(this, fromSeq, maxBytes, primary ? this.writtenSeq : limitSeq);
      };
    },
  },
  'release-unsynced': {
    sim: 'journal',
    what: 'the write path releases journal records on an ack without making the volume durable first',
    plant: () => {
      JournaledVolume.prototype.release = async function (this: JournaledVolume, seq: number) {
        await this.journal.release(seq);
      };
    },
  },
  'follower-ahead-of-record': {
    sim: 'journal',
    caughtBy: 'check',
    what: 'a volume write that follows its journal record is also written at once, ahead of the record, with no intent to cover it',
    plant: () => {
      const follow = AppendQueue.prototype.follow;
      AppendQueue.prototype.follow = function (this: AppendQueue, seq: number, write: FollowingWrite) {
        const followed = follow.call(this, seq, write);
        if (followed) MemDisk.writeFollowing(write.fd, write.data, write.position);
        return followed;
      };
    },
  },
  'release-past-slowest-peer': {
    sim: 'journal',
    what: 'the journal of a volume with two peers releases what one peer acked, though the other does not hold it yet',
    plant: () => {
      const ack = PeerCursors.prototype.ack;
      PeerCursors.prototype.ack = function (this: PeerCursors, peer: string, seq: number): number {
        ack.call(this, peer, seq);
        return this.of(peer);
      };
    },
  },
  'detached-unmarked': {
    sim: 'journal',
    what: 'the journal releases records a detached peer lacks without marking them in its bitmap first',
    plant: () => {
      (DetachedPeers.prototype as unknown as { mark: () => Promise<void> }).mark = async () => undefined;
    },
  },
  'group-limit-ignored': {
    sim: 'group',
    what: 'a group member\'s receiver ignores the group\'s limit (it applies to its own newest group point, which another member may not hold)',
    plant: () => {
      (Receiver.prototype as unknown as { groupLimitIndex: () => number }).groupLimitIndex = function (this: Receiver): number {
        return this.inGroup ? Infinity : Infinity;
      };
    },
  },
  'verify-unpinned': {
    sim: 'replication',
    caughtBy: 'check',
    what: 'the secondary answers an online verify\'s hash request at once, not once it has applied the batch\'s flush point ' +
      '(it compares a replica still behind)',
    plant: () => {
      type Hash = (algorithm: string, rs: number, first: number, count: number, wanted?: () => boolean, after?: number) => unknown;
      const proto = PeerRequests.prototype as unknown as { hashRegions: Hash };
      const hashRegions = proto.hashRegions;
      proto.hashRegions = function (this: PeerRequests, algorithm: string, rs: number, first: number, count: number, wanted?: () => boolean) {
        return hashRegions.call(this, algorithm, rs, first, count, wanted, 0);
      };
    },
  },
  'room-released-at-send': {
    sim: 'replication',
    what: 'a batch\'s frame room goes back when its frame is handed to the link, before the link has written it (the next batch is read over it)',
    plant: () => {
      type Session = { send(parts: Buffer[], cls?: unknown, hold?: FrameHold): void; early?: true };
      const proto = VolumeShipper.prototype as unknown as { sendRecords: (s: Session, ...rest: unknown[]) => void };
      const sendRecords = proto.sendRecords;
      proto.sendRecords = function (this: VolumeShipper, s: Session, ...rest: unknown[]) {
        // (Raw frames built in the room and packed ones alike: the hold goes back as the frame is queued.)
        if (!s.early) {
          const send = s.send.bind(s);
          s.send = (parts, cls, hold) => {
            hold?.release();
            send(parts, cls, hold && { get live() { return hold.live; }, release: () => undefined });
          };
          s.early = true;
        }
        return sendRecords.call(this, s, ...rest);
      };
    },
  },
  'frame-given-at-receive': {
    sim: 'replication',
    what: 'the secondary gives a gathered frame\'s buffer (or what a packed one unpacked into) back as its records arrive, ' +
      'before the receive log has written them',
    plant: () => {
      const receive = Replica.prototype.receive;
      Replica.prototype.receive = function (this: Replica, records, logged, done) {
        done?.();
        return receive.call(this, records, logged, () => undefined);
      };
    },
  },
  'ack-before-sync': {
    sim: 'replication',
    what: 'the receive log reports more durable than was logged (an ack for what the secondary could lose)',
    plant: () => {
      const handle = Receiver.prototype.handle;
      Receiver.prototype.handle = function (this: Receiver, e) {
        return handle.call(this, e.type === 'synced' ? { ...e, upTo: e.upTo + 1 } : e);
      };
    },
  },
  'bitmap-conversion-unmarked': {
    sim: 'journal',
    what: 'a bitmap opened at another bitmap_region leaves its marks behind (the regions it marked read clean at the new size)',
    plant: () => {
      const D = DirtyBitmap as unknown as { converted: (...args: unknown[]) => Promise<DirtyBitmap> };
      const converted = D.converted;
      D.converted = async function (this: unknown, ...args: unknown[]) {
        const mark = DirtyBitmap.prototype.mark;
        DirtyBitmap.prototype.mark = () => 0;
        try {
          return await converted.apply(this, args);
        } finally {
          DirtyBitmap.prototype.mark = mark;
        }
      };
    },
  },
  'grown-bitmap-header-stale': {
    sim: 'replication',
    caughtBy: 'check',
    what: 'a grown bitmap keeps its old header on disk (its new regions\' marks, made after the grow, are read as clean at the next start)',
    plant: () => {
      const grow = DirtyBitmap.prototype.grow;
      DirtyBitmap.prototype.grow = async function (this: DirtyBitmap, volumeSize: number) {
        const file = (this as unknown as { file: { writeSync(p: number, d: Buffer): void } }).file;
        const writeSync = file.writeSync;
        file.writeSync = (p, d) => {
          if (p !== 0) writeSync.call(file, p, d);
        };
        try {
          await grow.call(this, volumeSize);
        } finally {
          file.writeSync = writeSync;
        }
      };
    },
  },
};
