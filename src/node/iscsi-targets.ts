// The iSCSI targets of a node: every export of the registry (each volume, VOLUME@checkpoint,
// VOLUME@drill) is a target with one logical unit, named from the node's base IQN
// (docs/ISCSI.md, "Names"). A logical unit lives as long as the backend it serves: a
// promote, a demote or a new checkpoint makes a new backend, and the next login gets a
// new logical unit (its reservations start empty, as after a power cycle).
//
// The SCSI identity (the NAA designator and the serial) comes from the volume's uuid,
// which both sites share and which promote and demote keep: after a failover a host
// sees the same disk, not a snapshot copy that needs a resignature. A checkpoint and a
// drill are other disks, so they get identities of their own, derived the same way.
import { createHash } from 'node:crypto';
import type { ExportBackend } from '../export/backend.js';
import type { ExportRegistry } from '../export/registry.js';
import type { IscsiAuth, IscsiTarget, IscsiTargetTable } from '../iscsi/targets.js';
import { targetNameOf, volumeAuthOf, type IscsiConfig } from '../iscsi/config.js';
import type { ScsiLogicalUnitPort } from '../scsi/task.js';
import type { VolumeEntry } from './volume-entry.js';

export interface ScsiIdentity {
  /** An 8-byte NAA type 3 (locally assigned) identifier. */
  naa: Buffer;
  /** The unit serial number (VPD page 0x80). */
  serial: string;
  /** The product identification of standard INQUIRY data (at most 16 characters). */
  product: string;
  /** The product revision level (at most 4 characters). */
  revision: string;
}

export type MakeLogicalUnit = (backend: ExportBackend, identity: ScsiIdentity) => ScsiLogicalUnitPort;

/**
 * The identity of an export. `key` is the volume's uuid (or, for a volume without a
 * peer, NODE/NAME), with ":checkpoint" or ":drill" for those exports.
 */
export function scsiIdentityOf(key: string, kind: 'volume' | 'checkpoint' | 'drill'): ScsiIdentity {
  const h = createHash('sha256').update(`offsite scsi identity\0${key}`).digest();
  const naa = Buffer.alloc(8);
  h.copy(naa, 0, 0, 8);
  naa[0] = 0x30 | (naa[0]! & 0x0f); // NAA 3: locally assigned, 60 bits of our own
  return {
    naa,
    serial: h.subarray(8, 20).toString('hex'),
    product: kind === 'volume' ? 'VOLUME' : kind === 'checkpoint' ? 'CHECKPOINT' : 'DRILL',
    revision: '0001',
  };
}

interface Served {
  backend: ExportBackend;
  key: string;
  target: IscsiTarget;
}

export class RegistryTargets implements IscsiTargetTable {
  private readonly served = new Map<string, Served>();

  constructor(
    private readonly config: IscsiConfig,
    private readonly node: string,
    private readonly registry: ExportRegistry,
    private readonly entries: () => readonly VolumeEntry[],
    private readonly makeLogicalUnit: MakeLogicalUnit,
  ) {}

  get discoveryAuth(): IscsiAuth {
    return this.config.auth;
  }

  /** The target name of an export of this node. */
  nameOf(exportName: string): string {
    return targetNameOf(this.config.iqn, exportName);
  }

  lookup(iqn: string): IscsiTarget | undefined {
    const name = iqn.toLowerCase();
    for (const backend of this.registry.list()) {
      if (this.nameOf(backend.name) === name) return this.targetOf(backend);
    }
    return undefined;
  }

  list(): IscsiTarget[] {
    return this.registry.list().map((b) => this.targetOf(b));
  }

  private targetOf(backend: ExportBackend): IscsiTarget {
    const at = backend.name.indexOf('@');
    const volume = at < 0 ? backend.name : backend.name.slice(0, at);
    const suffix = at < 0 ? '' : backend.name.slice(at + 1);
    const kind = suffix === 'checkpoint' ? 'checkpoint' : suffix === 'drill' ? 'drill' : 'volume';
    const entry = this.entries().find((e) => e.config.name === volume);
    const uuid = entry?.identity?.uuid || `${this.node}/${volume}`;
    const key = kind === 'volume' ? uuid : `${uuid}:${kind}`;
    const known = this.served.get(backend.name);
    if (known && known.backend === backend && known.key === key) return known.target;
    const target: IscsiTarget = {
      iqn: this.nameOf(backend.name),
      exportName: backend.name,
      lu: this.makeLogicalUnit(backend, scsiIdentityOf(key, kind)),
      auth: volumeAuthOf(this.config.auth, entry?.config.iscsi),
    };
    this.served.set(backend.name, { backend, key, target });
    return target;
  }
}
