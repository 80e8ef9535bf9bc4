// The iSCSI front end of a node (docs/ISCSI.md): the server over the node's export
// registry (the same exports NBD serves), a target per volume, the warning when it
// listens where the network reaches with nobody's login checked, and what the
// status reads of it. The daemon starts one when the config has an `iscsi:` section.
import type { Config } from '../config/config.js';
import type { Logger } from '../log/log.js';
import type { ExportRegistry } from '../export/registry.js';
import { isNetworkFacing } from '../export/listen-address.js';
import { IscsiServer } from '../iscsi/server.js';
import type { RequestBudget } from '../nbd/budget.js';
import { LogicalUnit } from '../scsi/logical-unit.js';
import { RegistryTargets } from './iscsi-targets.js';
import type { IscsiView } from './status.js';
import type { VolumeEntry } from './volume-entry.js';

export interface IscsiFrontOptions {
  node: string;
  volumes: Config['volumes'];
  registry: ExportRegistry;
  entries: () => VolumeEntry[];
  log: Logger;
  /** NBD's node-wide budget of buffered write data, shared: one bound for every host write in memory. */
  budget?: RequestBudget;
}

export class IscsiFront {
  private constructor(
    private readonly server: IscsiServer,
    readonly targets: RegistryTargets,
    readonly address: { host: string; port: number },
    private readonly registry: ExportRegistry,
  ) {}

  static async start(ic: NonNullable<Config['iscsi']>, o: IscsiFrontOptions): Promise<IscsiFront> {
    let server: IscsiServer | null = null;
    // PREEMPT AND ABORT (a persistent reservation taken over) aborts the preempted initiators' tasks in the transport.
    const targets: RegistryTargets = new RegistryTargets(ic, o.node, o.registry, o.entries, (backend, identity) => new LogicalUnit({
      backend, identity, abortTasksOf: (initiators) => server?.abortTasksOf(targets.nameOf(backend.name), initiators),
    }));
    server = new IscsiServer({
      targets,
      log: o.log,
      portal: { host: ic.listen.host, port: ic.listen.port },
      ...(o.budget ? { budget: o.budget } : {}),
    });
    let address: { host: string; port: number };
    try {
      address = await server.listen({ host: ic.listen.host, port: ic.listen.port });
    } catch (e) {
      await server.close();
      throw e;
    }
    if (isNetworkFacing(ic.listen)) {
      const open = [
        { name: 'discovery and every volume without its own iscsi: keys', auth: ic.auth },
        ...o.volumes.map((v) => ({ name: `volume ${v.name}`, auth: targets.lookup(targets.nameOf(v.name))?.auth ?? ic.auth })),
      ]
        .filter((x) => x.auth.chap === null && x.auth.initiators === null);
      if (open.length > 0) {
        o.log.warn(`iSCSI listens on ${ic.listen.host}:${ic.listen.port}, which the network reaches, ` +
          `with neither CHAP nor an initiator list for ${open.map((x) => x.name).join(', ')}: ` +
          'whoever reaches this port can log in and read and write those volumes; set iscsi.chap or iscsi.initiators, ' +
          'or listen on a storage network only the hosts reach (docs/ISCSI.md, "Who may log in")');
      }
    }
    return new IscsiFront(server, targets, address, o.registry);
  }

  /** What status reads of the iSCSI front end. */
  view(): IscsiView {
    return {
      nameOf: (x) => this.targets.nameOf(x),
      sessions: () => this.server.sessions().map((s) => ({ exportName: s.exportName, initiator: s.initiator, address: s.address })),
      exports: () => this.registry.list().map((b) => b.name),
    };
  }

  /** Closes the sessions on these exports' targets, once their commands have answered (src/node/volume-removal.ts). */
  closeExports(names: ReadonlySet<string>): Promise<number> {
    return this.server.closeExports(names);
  }

  close(): Promise<void> {
    return this.server.close();
  }
}
