// The operator actions a node takes (docs/API.md, docs/FAILOVER.md), as the API, the
// SNMP agent and the CLI see them: what an action answers, why one is refused, and the
// calls themselves. The node does them (src/node/roles.ts, src/node/volume-actions.ts);
// the API maps a refusal's reason to an HTTP status (src/api/actions.ts), SNMP to its
// own error statuses.
// Nothing here knows HTTP. This module imports nothing, so every side may depend on it.

/** What an action did, in words an operator can act on, and its figures. */
export interface ActionResult {
  volume: string;
  message: string;
  [k: string]: unknown;
}

/** A held checkpoint of a secondary (GET /api/v1/checkpoints, `offsite checkpoint list`). */
export interface CheckpointInfo {
  volume: string;
  label: string;
  /** ms since the epoch. */
  createdAt: number;
  /** Released by itself at this time (ms), or null: held until released. */
  holdUntil: number | null;
  /** The last record applied to the frozen image. */
  appliedSeq: number;
  /** Taken by a drill: released when the drill ends. */
  ownedByDrill?: boolean;
  /** The read-only export of the frozen image (VOLUME@checkpoint). */
  export: string;
  /** Taken on every member of this consistency group at one group point (docs/GROUPS.md). */
  group?: string;
  groupPoint?: number;
  /** Taken from the history (`--at`): the restore point it serves; the replica stays current. */
  point?: { seq: number; time: number };
}

/** A secondary's history (GET /api/v1/volumes/{name}/history, `offsite history`; docs/HISTORY.md). */
export interface HistoryInfo {
  volume: string;
  /**
   * The restore points that open, oldest first: `seq` names the point in the history, `time` is the
   * primary's time of it (ms), `record` the record of its primary's journal it is at, and `primary`
   * that primary once the replica has followed a new one (docs/HISTORY.md, "After a follow").
   */
  points: Array<{ seq: number; time: number; record?: number; primary?: string }>;
  /** Bytes of history on disk. */
  bytes: number;
  /** The volume's `history` setting (null: no limit of that kind). */
  keepSeconds: number | null;
  maxBytes: number | null;
  /** Points dropped because the history reached its max, since the daemon started. */
  droppedForSize: number;
}

/**
 * Why an action was refused, in the node's terms:
 * - `not-found`: no volume of that name on this node;
 * - `invalid`: an argument is wrong (a hold that is no duration, a label too long);
 * - `not-replicated`: the volume has no peer, and the action is about replication;
 * - `wrong-role`: the action runs where the volume has the other role (or it has the asked role already);
 * - `no-link`: the node has no peer link (no identity yet: offsite init);
 * - `busy`: something in progress holds what the action needs (a checkpoint held, a drill running): ends it first;
 * - `conflict`: the volume's state forbids it now (no checkpoint to release, the primary still connected, not a flush-point image);
 * - `unavailable`: the volume is configured but did not open here (its reason in the message and the status); a reload tries again.
 */
export type RefusalReason = 'not-found' | 'invalid' | 'not-replicated' | 'wrong-role' | 'no-link' | 'busy' | 'conflict' | 'unavailable';

/** An action refused (nothing was done): the reason for programs, the message for people. */
export class ActionRefused extends Error {
  constructor(readonly reason: RefusalReason, message: string) {
    super(message);
  }
}

/** The actions of a node, one at a time; each answers what it did or throws ActionRefused. */
export interface NodeActions {
  /** The checkpoints held now. */
  checkpoints(): CheckpointInfo[];
  /** `at` (ms): the newest restore point of the history at or before it, not the replica now. */
  createCheckpoint(name: string, opts: { label?: string | undefined; holdSeconds?: number | undefined; at?: number | undefined }): Promise<ActionResult>;
  releaseCheckpoint(name: string): Promise<ActionResult>;
  startDrill(name: string, opts?: { at?: number | undefined }): Promise<ActionResult>;
  /** A secondary's restore points (refused where the volume keeps no history). */
  history(name: string): HistoryInfo;
  stopDrill(name: string): Promise<ActionResult>;
  verify(name: string, repair: boolean): Promise<ActionResult>;
  /** Pauses (true) or resumes (false) shipping of a primary volume. */
  pause(name: string, paused: boolean): Promise<ActionResult>;
  /** `at` (ms): roll back to the newest restore point of the history at or before it first (docs/HISTORY.md). */
  promote(name: string, opts: { force?: boolean | undefined; at?: number | undefined }): Promise<ActionResult>;
  demote(name: string, opts: { discardMyData?: boolean | undefined }): Promise<ActionResult>;
}
