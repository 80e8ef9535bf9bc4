// An in-process iSCSI target for tests and the conformance script: file-backed
// volumes (src/volume/volume.ts) wrapped in the real SCSI logical unit, served by an
// IscsiServer on 127.0.0.1 and a free port.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Volume } from '../../src/volume/volume.js';
import { CheckedBackend } from '../../src/export/contract.js';
import { LogicalUnit } from '../../src/scsi/logical-unit.js';
import { IscsiServer, type IscsiServerOptions } from '../../src/iscsi/server.js';
import type { IscsiAuth, IscsiTarget, IscsiTargetTable } from '../../src/iscsi/targets.js';
import { silentLogger, type Logger } from '../../src/log/log.js';
import { tempDir } from './run.js';

export const BASE_IQN = 'iqn.2026-12.com.example:site-a';

export interface TestVolume {
  name: string;
  size: number;
  auth?: Partial<IscsiAuth>;
  readOnly?: boolean;
}

export interface TestTarget {
  server: IscsiServer;
  port: number;
  dir: string;
  iqn(name: string): string;
  url(name: string, lun?: number): string;
  volumes: Map<string, Volume>;
  table: IscsiTargetTable;
  close(): Promise<void>;
}

const open: IscsiAuth = { chap: null, mutual: null, initiators: null };

export async function startTestTarget(
  vols: TestVolume[],
  opts: { discoveryAuth?: Partial<IscsiAuth>; log?: Logger; server?: Partial<IscsiServerOptions> } = {},
): Promise<TestTarget> {
  const dir = tempDir('iscsi');
  const volumes = new Map<string, Volume>();
  const targets = new Map<string, IscsiTarget>();
  let server: IscsiServer | null = null;
  for (const v of vols) {
    const vol = Volume.open({ name: v.name, path: path.join(dir, `${v.name}.img`), size: v.size, readOnly: v.readOnly ?? false });
    volumes.set(v.name, vol);
    const naa = createHash('sha256').update(v.name).digest().subarray(0, 8);
    naa[0] = 0x30 | (naa[0]! & 0x0f);
    const iqn = `${BASE_IQN}:${v.name}`;
    const lu = new LogicalUnit({
      backend: new CheckedBackend(vol), identity: { naa, serial: v.name, product: 'Offsite', revision: '0.1' },
      abortTasksOf: (initiators) => server?.abortTasksOf(iqn, initiators),
    });
    targets.set(iqn, { iqn, exportName: v.name, lu, auth: { ...open, ...v.auth } });
  }
  const table: IscsiTargetTable = {
    lookup: (iqn) => targets.get(iqn),
    list: () => [...targets.values()],
    discoveryAuth: { ...open, ...opts.discoveryAuth },
  };
  server = new IscsiServer({ targets: table, log: opts.log ?? silentLogger, portal: { host: '127.0.0.1', port: 0 }, ...opts.server });
  const a = await server.listen({ host: '127.0.0.1', port: 0 });
  const s = server;
  return {
    server: s, port: a.port, dir, volumes, table,
    iqn: (name) => `${BASE_IQN}:${name}`,
    url: (name, lun = 0) => `iscsi://127.0.0.1:${a.port}/${BASE_IQN}:${name}/${lun}`,
    async close() {
      await s.close();
      for (const v of volumes.values()) await v.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
