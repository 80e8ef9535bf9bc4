// Three sites on this machine (docs/PEERS.md): site-a the primary of volume db with
// `peers: [site-b, site-c]`, site-b and site-c its secondaries, each with `peer: site-a`.
// Paired by `offsite init` fingerprints as test/helpers/pair.ts pairs two; one TLS link
// per node pair, site-a dialing both (its name sorts first). b and c share no volume, so
// neither names the other, unless the trio is a set of three (TrioOptions.set).
import fs from 'node:fs';
import path from 'node:path';
import { OFFSITE_BIN, TestDaemon, freePort, statusOf } from './daemon.js';
import { must, sleep, tempDir } from './run.js';

export interface Trio {
  a: TestDaemon;
  b: TestDaemon;
  c: TestDaemon;
  /** site-a's state folder for volume db (where a detached peer's bitmap file lives). */
  volumeStateA: string;
  stop(): Promise<void>;
  /**
   * Waits until `primary` (site-a unless said) has nothing unacked and no round open for
   * any peer of any volume, both links up, and the two others each serve a consistent
   * replica with an empty backlog.
   */
  drained(timeoutMs?: number, primary?: Site, secondaries?: Site[]): Promise<void>;
}

export interface TrioOptions {
  /** The volume's size (default 128MiB). */
  size?: string;
  /** site-a's journal (default 1GiB). */
  journal?: string;
  /** site-b's and site-c's receive logs (default: as site-a's journal). */
  receiveLog?: string;
  /** More keys for site-a's entry of a peer (inline YAML, e.g. { 'site-c': 'rate: 16mbit' }: a slow far link). */
  peerKeys?: Partial<Record<'site-b' | 'site-c', string>>;
  /**
   * A set of three (docs/PEERS.md, "Roles across three sites"): site-b and site-c name
   * each other too (`peers: [site-a, site-c]`, `peers: [site-a, site-b]`), so either may
   * be promoted and the other follows it; the demoted site-a follows the new primary.
   */
  set?: boolean;
  /** A consistency group at every site (docs/GROUPS.md): volumes db and wal, alike, in group erp. */
  group?: boolean;
  /** More keys for the volumes of site-b and site-c (inline YAML, e.g. 'history: { keep: 24h }'). */
  secondaryKeys?: string;
}

export type Site = 'site-a' | 'site-b' | 'site-c';

const SECONDARIES = ['site-b', 'site-c'] as const;

export async function startTrio(opts: TrioOptions = {}): Promise<Trio> {
  const root = tempDir('trio');
  const size = opts.size ?? '128MiB';
  const journal = opts.journal ?? '1GiB';
  const receiveLog = opts.receiveLog ?? journal;
  const link = { 'site-a': await freePort(), 'site-b': await freePort(), 'site-c': await freePort() };
  // Each peer's fingerprint is a placeholder, FP:NAME, until `offsite init` has made the keys.
  const peerLine = (name: keyof typeof link, keys = ''): string =>
    `  ${name}: { address: "127.0.0.1:${link[name]}", fingerprint: "FP:${name}"${keys ? `, ${keys}` : ''} }`;
  const yaml = (node: keyof typeof link, peers: string, volume: string) => (ports: { nbd: number; api: number }): string => `node: ${node}
state: ./state
nbd: 127.0.0.1:${ports.nbd}
link: 127.0.0.1:${link[node]}
api: 127.0.0.1:${ports.api}
peers:
${peers}
volumes:
  db: { path: ./db.img, size: ${size}, ${volume} }
${opts.group ? `  wal: { path: ./wal.img, size: ${size}, ${volume} }\ngroups:\n  erp: [db, wal]\n` : ''}`;
  const site = async (node: keyof typeof link, peers: string, volume: string): Promise<TestDaemon> => {
    const dir = path.join(root, node.slice(-1));
    fs.mkdirSync(dir);
    return TestDaemon.create({ dir, node, noStart: true, yaml: yaml(node, peers, volume) });
  };
  const peersOfA = SECONDARIES.map((p) => peerLine(p, opts.peerKeys?.[p])).join('\n');
  const a = await site('site-a', peersOfA, `role: primary, peers: [${SECONDARIES.join(', ')}], journal: ${journal}`);
  const more = opts.secondaryKeys ? `, ${opts.secondaryKeys}` : '';
  const secondary = (other: Site): Promise<TestDaemon> => opts.set
    ? site(other === 'site-c' ? 'site-b' : 'site-c', `${peerLine('site-a')}\n${peerLine(other)}`,
      `role: secondary, peers: [site-a, ${other}], journal: ${receiveLog}${more}`)
    : site(other === 'site-c' ? 'site-b' : 'site-c', peerLine('site-a'), `role: secondary, peer: site-a, journal: ${receiveLog}${more}`);
  const b = await secondary('site-c');
  const c = await secondary('site-b');
  const all = { 'site-a': a, 'site-b': b, 'site-c': c };
  const fingerprint = new Map<string, string>();
  for (const [name, d] of Object.entries(all)) {
    fingerprint.set(name, (await must(process.execPath, [OFFSITE_BIN, 'init', '-c', d.configFile])).trim().split('\n').pop()!);
  }
  for (const d of Object.values(all)) {
    const text = fs.readFileSync(d.configFile, 'utf8').replace(/FP:(site-[abc])/g, (_m, name: string) => fingerprint.get(name)!);
    fs.writeFileSync(d.configFile, text);
  }
  await b.start();
  await c.start();
  await a.start();
  return {
    a, b, c,
    volumeStateA: path.join(a.dir, 'state', 'volumes', 'db'),
    async stop() {
      for (const d of [a, b, c]) await d.stop();
      // Volumes here hold real data: leave nothing behind (OFFSITE_KEEP_DIRS=1 to debug:
      // the folders stay, each with its daemon's log since its last start in daemon.log).
      if (process.env.OFFSITE_KEEP_DIRS || process.env.OFFSITE_DEBUG_DIRS) {
        for (const d of [a, b, c]) fs.writeFileSync(path.join(d.dir, 'daemon.log'), d.log);
        process.stderr.write(`trio: the sites' folders are kept in ${root}\n`);
      } else {
        fs.rmSync(root, { recursive: true, force: true });
      }
    },
    async drained(timeoutMs = 90_000, primary: Site = 'site-a', secondaries?: Site[]) {
      const deadline = Date.now() + timeoutMs;
      const SECONDARIES = secondaries ?? (Object.keys(all) as Site[]).filter((n) => n !== primary);
      const order = [all[primary], ...SECONDARIES.map((n) => all[n])];
      for (;;) {
        const [s, t, u] = await Promise.all(order.map((d) => statusOf(d).catch(() => null)));
        // A round's backlog can touch 0 between two runs of regions: a round open is no drain.
        const quiet = (p: { backlogBytes: number; resyncing: boolean }): boolean => p.backlogBytes === 0 && !p.resyncing;
        // Every secondary listed, connected and quiet at site-a (a peer missing from the list would pass vacuously).
        // (A site left out is down: the primary's journal keeps its backlog, so only the listed peers' count.)
        const primaryQuiet = s?.volumes.every((v) => (secondaries ? !v.resyncing : quiet(v)) && v.tracking === 'journal' &&
          SECONDARIES.every((name) => v.peers.some((p) => p.name === name && p.link === 'connected' && quiet(p))));
        const replicasQuiet = [t, u].slice(0, SECONDARIES.length).every((r) => r?.volumes.every((v) => v.consistent && quiet(v)));
        if (primaryQuiet && replicasQuiet) return;
        if (Date.now() > deadline) {
          const logs = order.map((d, i) => `--- ${[primary, ...SECONDARIES][i]} log (tail)\n${d.log.slice(-3000)}`).join('\n');
          throw new Error(`not drained after ${timeoutMs} ms:\n${JSON.stringify(s?.volumes.map(brief))}\n` +
            `${JSON.stringify(t?.volumes.map(brief))}\n${JSON.stringify(u?.volumes.map(brief))}\n${logs}`);
        }
        await sleep(200);
      }
    },
  };
}

/** The fields of a volume's status that say why it is not drained. */
function brief(v: Awaited<ReturnType<typeof statusOf>>['volumes'][number]): object {
  return { name: v.name, link: v.link, backlogBytes: v.backlogBytes, consistent: v.consistent, tracking: v.tracking, peers: v.peers };
}
