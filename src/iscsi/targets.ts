// What the iSCSI front end serves: a table of targets, each one logical unit (LUN 0)
// over an export backend, with who may log in to it. The daemon fills the table from
// the export registry and the config; the iSCSI server only looks up.
import type { ScsiLogicalUnitPort } from '../scsi/task.js';

export interface ChapSecret {
  user: string;
  secret: string;
}

export interface IscsiAuth {
  /** One-way CHAP: the initiator proves it knows this (null: no CHAP, AuthMethod=None). */
  chap: ChapSecret | null;
  /** Mutual CHAP: the target proves it knows this to the initiator (needs `chap`). */
  mutual: ChapSecret | null;
  /** Initiator names allowed to log in (null: any). */
  initiators: string[] | null;
}

export interface IscsiTarget {
  /** The target's IQN, e.g. iqn.2026-12.com.example:site-a:db (docs/ISCSI.md, "Names"). */
  readonly iqn: string;
  /** The export it serves (the volume, VOLUME@checkpoint, VOLUME@drill). */
  readonly exportName: string;
  readonly lu: ScsiLogicalUnitPort;
  readonly auth: IscsiAuth;
}

export interface IscsiTargetTable {
  lookup(iqn: string): IscsiTarget | undefined;
  list(): IscsiTarget[];
  /** Auth for discovery sessions (the node-level section). */
  readonly discoveryAuth: IscsiAuth;
}
