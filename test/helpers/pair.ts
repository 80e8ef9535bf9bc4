// Two sites on this machine: site-a (primary) and site-b (secondary), paired by
// `offsite init` fingerprints, linked over loopback TLS.
import fs from 'node:fs';
import path from 'node:path';
import { OFFSITE_BIN, TestDaemon, freePort, statusOf } from './daemon.js';
import { must, sleep, tempDir } from './run.js';

export interface Pair {
  a: TestDaemon;
  b: TestDaemon;
  stop(): Promise<void>;
  /** Waits until site-a's backlog is 0 for every volume and the link is up. */
  drained(timeoutMs?: number): Promise<void>;
}

export interface PairOptions {
  size?: string;
  journal?: string;
  /** More keys for site-a's entry of peer site-b (inline YAML, e.g. "rate: 4mbit"). */
  peerKeysA?: string;
  /** More keys for site-a's volume db (inline YAML, e.g. "failback: auto"). */
  volumeKeysA?: string;
  /** More keys for site-b's volume db (inline YAML, e.g. a checkpoints: schedule). */
  volumeKeysB?: string;
  /** More top-level keys for site-a's / site-b's offsite.yaml (block YAML, e.g. an snmp: section). */
  nodeKeysA?: string;
  nodeKeysB?: string;
  /** More volumes for site-a's / site-b's config (lines under `volumes:`, each indented two spaces). */
  volumesA?: string;
  volumesB?: string;
  /** site-b's receive log, when it differs from site-a's journal. */
  journalB?: string;
  /** Faults for refusal tests: site-b's role or size, or a wrong fingerprint pinned by a side. */
  roleB?: string;
  sizeB?: string;
  wrongPinAtB?: boolean;
  /** The name site-b's config gives site-a (default site-a): another is a link refused as a whole, at Hello. */
  peerNameAtB?: string;
  /** Called with both site folders before the daemons start (to seed db.img, say). */
  prepare?: (dirA: string, dirB: string) => void;
  /** Put a proxy between the sites: given site-b's link port, returns the port site-a should dial. */
  proxy?: (linkB: number) => Promise<number>;
}

export async function startPair(opts: PairOptions = {}): Promise<Pair> {
  const root = tempDir('pair');
  const [linkA, linkB] = [await freePort(), await freePort()];
  const size = opts.size ?? '256MiB';
  const mk = (
    node: string, peer: string, myLink: number, peerLink: number, role: string,
    volSize = size, journal = opts.journal ?? '1GiB', extra = '', peerExtra = '', nodeKeys = '', moreVolumes = '',
  ) =>
    (ports: { nbd: number; api: number }): string => `node: ${node}
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${myLink}
api: 127.0.0.1:${ports.api}
peers:
  ${peer}: { address: "127.0.0.1:${peerLink}", fingerprint: "FINGERPRINT"${peerExtra ? `, ${peerExtra}` : ''} }
volumes:
  db: { path: ./db.img, size: ${volSize}, role: ${role}, peer: ${peer}, journal: ${journal}${extra ? `, ${extra}` : ''} }
${moreVolumes ? `${moreVolumes}\n` : ''}${nodeKeys}`;
  fs.mkdirSync(path.join(root, 'a'));
  fs.mkdirSync(path.join(root, 'b'));
  const dialB = opts.proxy ? await opts.proxy(linkB) : linkB;
  const a = await TestDaemon.create({
    dir: path.join(root, 'a'), node: 'site-a', noStart: true,
    yaml: mk('site-a', 'site-b', linkA, dialB, 'primary', size, opts.journal ?? '1GiB', opts.volumeKeysA ?? '', opts.peerKeysA ?? '', opts.nodeKeysA ?? '',
      opts.volumesA ?? ''),
  });
  const b = await TestDaemon.create({
    dir: path.join(root, 'b'), node: 'site-b', noStart: true,
    yaml: mk('site-b', opts.peerNameAtB ?? 'site-a', linkB, linkA, opts.roleB ?? 'secondary', opts.sizeB ?? size, opts.journalB, opts.volumeKeysB ?? '', '',
      opts.nodeKeysB ?? '',
      opts.volumesB ?? ''),
  });
  const fp = async (d: TestDaemon): Promise<string> => (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!;
  const [fa, fb] = [await fp(a), await fp(b)];
  fs.writeFileSync(a.configFile, fs.readFileSync(a.configFile, 'utf8').replace('FINGERPRINT', fb));
  const pinnedAtB = opts.wrongPinAtB ? fa.split(':').reverse().join(':') : fa;
  fs.writeFileSync(b.configFile, fs.readFileSync(b.configFile, 'utf8').replace('FINGERPRINT', pinnedAtB));
  opts.prepare?.(a.dir, b.dir);
  await b.start();
  await a.start();
  return {
    a, b,
    async stop() {
      await a.stop();
      await b.stop();
      // Volumes here hold real data: leave nothing behind (OFFSITE_KEEP_DIRS=1 to debug).
      if (!process.env.OFFSITE_KEEP_DIRS && !process.env.OFFSITE_DEBUG_DIRS) fs.rmSync(root, { recursive: true, force: true });
    },
    async drained(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await statusOf(a).catch(() => null);
        const t = await statusOf(b).catch(() => null);
        // Drained: nothing unacked, and no resync round open on either side (a round's
        // backlog can touch 0 between two runs of regions).
        const quiet = (v: { backlogBytes: number; resyncing?: boolean }): boolean => v.backlogBytes === 0 && v.resyncing !== true;
        // (And the secondary consistent: a new pair is not drained before its first sync ends.)
        if (s && t && s.volumes.every((v) => v.link === 'connected' && quiet(v)) && t.volumes.every((v) => quiet(v) && v.consistent)) return;
        if (Date.now() > deadline) {
          throw new Error(`not drained after ${timeoutMs} ms: ${JSON.stringify(s)} ${JSON.stringify(t)}\n${a.log.slice(-2000)}\n${b.log.slice(-2000)}`);
        }
        await sleep(200);
      }
    },
  };
}
