// The daemon: opens the node's volumes, serves them over NBD, and stops cleanly
// on SIGINT/SIGTERM (in-flight requests finish, volumes are synced, exit 0).
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/config.js';
import { formatBytes } from '../config/units.js';
import type { Logger } from '../log/log.js';
import { ExportRegistry, NbdServer, formatListenAddress, type ListenAddress } from '../nbd/server.js';
import { nativeFs } from '../volume/native.js';
import { Volume } from '../volume/volume.js';

export class Daemon {
  private readonly volumes: Volume[] = [];
  private nbd: NbdServer | null = null;
  private lockFd = -1;
  private stopping: Promise<void> | null = null;
  nbdAddress: ListenAddress | null = null;

  constructor(readonly config: Config, private readonly log: Logger) {}

  async start(): Promise<void> {
    const c = this.config;
    fs.mkdirSync(c.state, { recursive: true, mode: 0o700 });
    this.lockState();
    const registry = new ExportRegistry();
    try {
      for (const v of c.volumes) {
        const volume = Volume.open({
          name: v.name,
          path: v.path,
          size: v.size,
          readOnly: v.role === 'secondary',
          description: v.description ?? `offsite ${v.role} volume ${v.name} on node ${c.node}`,
        });
        this.volumes.push(volume);
        registry.add(volume, v.default === true);
      }
      this.nbd = new NbdServer({ exports: registry, log: this.log });
      this.nbdAddress = await this.nbd.listen(c.nbd);
    } catch (e) {
      await this.closeVolumes();
      throw e;
    }
    const where = formatListenAddress(this.nbdAddress);
    for (const v of this.volumes) {
      const url = this.nbdAddress.kind === 'unix'
        ? `nbd+unix:///${v.name}?socket=${this.nbdAddress.path}`
        : `nbd://${where}/${v.name}`;
      this.log.info({ volume: v.name, size: v.size, url },
        `volume ${v.name}: ${formatBytes(v.size)} ${v.readOnly ? 'read-only' : 'read-write'} at ${url}`);
    }
    this.log.info({ node: c.node, nbd: where }, `ready: node ${c.node} serving ${this.volumes.length} volume(s) on ${where}`);
  }

  /** Idempotent: a second call waits for the first. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping: finishing in-flight requests');
      await this.nbd?.close();
      await this.closeVolumes();
      if (this.lockFd >= 0) fs.closeSync(this.lockFd);
      this.log.info('stopped cleanly');
    })();
    return this.stopping;
  }

  private async closeVolumes(): Promise<void> {
    for (const v of this.volumes.splice(0)) {
      await v.close().catch((e: Error) => this.log.error(`volume ${v.name}: ${e.message}`));
    }
  }

  /** One daemon per state directory. The lock dies with the process, even on kill -9. */
  private lockState(): void {
    const file = path.join(this.config.state, 'daemon.lock');
    this.lockFd = fs.openSync(file, 'a+');
    if (!nativeFs.lock(this.lockFd)) {
      fs.closeSync(this.lockFd);
      this.lockFd = -1;
      throw new Error(`another offsite daemon is running with state directory ${this.config.state}`);
    }
    fs.ftruncateSync(this.lockFd, 0);
    fs.writeSync(this.lockFd, `${process.pid}\n`);
  }
}
