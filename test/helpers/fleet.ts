// Two sites on this machine sharing several volumes over one link: site-a holds
// them as primaries, site-b as replicas (test/helpers/pair.ts pairs one volume, db).
import fs from 'node:fs';
import path from 'node:path';
import { OFFSITE_BIN, TestDaemon, freePort, statusOf } from './daemon.js';
import { must, sleep, tempDir } from './run.js';
import type { Pair } from './pair.js';

export interface FleetVolume {
  name: string;
  /** More keys for site-a's entry of this volume (inline YAML, e.g. "weight: 2"). */
  keysA?: string;
}

export interface FleetOptions {
  volumes: FleetVolume[];
  /** Every volume's size (default 32MiB) and journal (default 256MiB). */
  size?: string;
  journal?: string;
  /** More keys for site-a's entry of peer site-b (inline YAML, e.g. "rate: 16mbit, compression: off"). */
  peerKeysA?: string;
}

export async function startFleet(opts: FleetOptions): Promise<Pair> {
  const root = tempDir('fleet');
  const [linkA, linkB] = [await freePort(), await freePort()];
  const size = opts.size ?? '32MiB';
  const journal = opts.journal ?? '256MiB';
  const mk = (node: string, peer: string, myLink: number, peerLink: number, role: string, peerExtra: string, primary: boolean) =>
    (ports: { nbd: number; api: number }): string => `node: ${node}
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${myLink}
api: 127.0.0.1:${ports.api}
peers:
  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FINGERPRINT"${peerExtra ? `, ${peerExtra}` : ''} }
volumes:
${opts.volumes.map((v) => `  ${v.name}: { path: ./${v.name}.img, size: ${size}, role: ${role}, peer: ${peer}, journal: ${journal}${primary && v.keysA ? `, ${v.keysA}` : ''} }`).join('\n')}
`;
  fs.mkdirSync(path.join(root, 'a'));
  fs.mkdirSync(path.join(root, 'b'));
  const a = await TestDaemon.create({ dir: path.join(root, 'a'), node: 'site-a', noStart: true, yaml: mk('site-a', 'site-b', linkA, linkB, 'primary', opts.peerKeysA ?? '', true) });
  const b = await TestDaemon.create({ dir: path.join(root, 'b'), node: 'site-b', noStart: true, yaml: mk('site-b', 'site-a', linkB, linkA, 'secondary', '', false) });
  const fp = async (d: TestDaemon): Promise<string> => (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!;
  const [fa, fb] = [await fp(a), await fp(b)];
  fs.writeFileSync(a.configFile, fs.readFileSync(a.configFile, 'utf8').replace('FINGERPRINT', fb));
  fs.writeFileSync(b.configFile, fs.readFileSync(b.configFile, 'utf8').replace('FINGERPRINT', fa));
  await b.start();
  await a.start();
  return {
    a, b,
    async stop() {
      await a.stop();
      await b.stop();
      if (!process.env.OFFSITE_KEEP_DIRS && !process.env.OFFSITE_DEBUG_DIRS) fs.rmSync(root, { recursive: true, force: true });
    },
    async drained(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await statusOf(a).catch(() => null);
        const t = await statusOf(b).catch(() => null);
        const quiet = (v: { backlogBytes: number; resyncing?: boolean }): boolean => v.backlogBytes === 0 && v.resyncing !== true;
        if (s && t && s.volumes.every((v) => v.link === 'connected' && quiet(v)) && t.volumes.every((v) => quiet(v) && v.consistent)) return;
        if (Date.now() > deadline) throw new Error(`not drained after ${timeoutMs} ms: ${JSON.stringify(s)} ${JSON.stringify(t)}\n${a.log.slice(-2000)}\n${b.log.slice(-2000)}`);
        await sleep(200);
      }
    },
  };
}
