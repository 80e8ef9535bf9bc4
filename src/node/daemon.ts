// The daemon: opens the node's volumes, serves them over NBD, and stops cleanly
// on SIGINT/SIGTERM (in-flight requests finish, volumes are synced, exit 0).
import fs from 'node:fs';
import path from 'node:path';
import type { Config, VolumeConfig } from '../config/config.js';
import { formatBytes, formatDuration } from '../units/units.js';
import type { Logger } from '../log/log.js';
import { NbdServer } from '../nbd/server.js';
import { ExportRegistry } from '../export/registry.js';
import { formatListenAddress, isNetworkFacing, type ListenAddress } from '../export/listen-address.js';
import { nativeFs } from '../volume/native.js';
import { Volume } from '../volume/volume.js';
import type { HistoryRing } from '../journal/history.js';
import { DirStore } from '../journal/store.js';
import { writeStopped } from '../volume/file-identity.js';
import { startApi } from '../api/server.js';
import type { NodeStatus } from '../contract/status.js';
import { nodeStatus } from './status.js';
import type { VolumeEntry } from './volume-entry.js';
import type { FastifyInstance } from 'fastify';
import { loadIdentity } from '../link/identity.js';
import { VolumeIdentity } from '../volume/identity.js';
import { writeStream, type StreamMark } from '../stream/stream.js';
import { LinkManager, type LinkVolumes } from './links.js';
import { RoleChanges } from './roles.js';
import { PAUSED_FILE } from './volume-actions.js';
import { CheckpointExport } from '../checkpoint/checkpoint-export.js';
import type { ExportBackend } from '../export/backend.js';
import { readToken } from '../link/identity.js';
import type { SnmpService } from '../snmp/snmp.js';
import { MALLOC_ARENAS, MALLOC_MMAP_THRESHOLD_BYTES, MEMORY_BUDGET_BYTES, volumeLimitWarnings } from '../limits/limits.js';
import { MAX_HASH_REGION_SIZE } from '../link/frame.js';
import type { IscsiFront } from './iscsi-front.js';
import { MemoryBudget } from '../memory/budget.js';
import { frameBuffers } from '../memory/owned-buffers.js';
import { HashBuffers } from '../sync/region-hashes.js';
import { HashWorkers } from '../sync/hash-workers.js';
import { boundOldGeneration, boundYoungGeneration, collectUnderPressure } from '../memory/collector.js';
import { NodeGroups } from './groups.js';
import { SetAside } from './set-aside.js';
import { NodeReloads } from './reload.js';
import { growFinished, growToFinish } from './volume-size.js';
import { FillNotices, tellJournalFill, type FillFigures } from './journal-fill.js';
import type { RemovalHost } from './volume-removal.js';
import { openRole, VolumeFolders, type RoleOpening } from './role-open.js';
import { AliveMark } from './alive-mark.js';
import { UnavailableVolumes, withoutName } from './unavailable.js';

export class Daemon {
  private readonly volumes: Volume[] = [];
  readonly entries: VolumeEntry[] = [];
  private historyTimer: NodeJS.Timeout | null = null;
  private pressure: { stop(): void } | null = null;
  private oldGeneration: { stop(): void } | null = null;
  private api: FastifyInstance | null = null;
  /** The SNMP agent and notifications, when offsite.yaml has `snmp:` (docs/SNMP.md). */
  snmp: SnmpService | null = null;
  links: LinkManager | null = null;
  private readonly startedAt = Date.now();
  apiAddress: ListenAddress | null = null;
  private nbd: NbdServer | null = null;
  readonly registry = new ExportRegistry();
  private ticker: NodeJS.Timeout | null = null;
  readonly roles: RoleChanges;
  private lockFd = -1;
  /** Each replicated volume's journal (or receive log) folder, locked while in use, by volume name. */
  private readonly folders: VolumeFolders;
  private stopping: Promise<void> | null = null;
  nbdAddress: ListenAddress | null = null;
  /** The iSCSI target, when offsite.yaml has `iscsi:` (docs/ISCSI.md). */
  private iscsi: IscsiFront | null = null;
  iscsiAddress: { host: string; port: number } | null = null;

  /** Consistency groups (docs/GROUPS.md): group points on the primary, the group's limit on the secondary. */
  readonly groups: NodeGroups;
  /**
   * The node's memory budget (config `memory`, src/memory/budget.ts): the shippers'
   * batches, the peers' frames and the replicas' applies draw from it. Set at start
   * (a reload does not change it).
   */
  readonly memory: MemoryBudget;
  /** Buffers for region hashing (a first sync's comparison, a verify), shared by every volume: at most HASH_BUFFERS. */
  private readonly hashWorkers = new HashWorkers(undefined, undefined, (m) => this.log.warn(m));
  private readonly hashBuffers = new HashBuffers(this.hashWorkers);
  /** When this node was last alive, written down every few seconds (src/node/alive-mark.ts). */
  private readonly alive: AliveMark;

  constructor(readonly config: Config, private readonly log: Logger) {
    this.groups = new NodeGroups(this, log);
    this.roles = new RoleChanges(this, log);
    this.memory = new MemoryBudget(config.memory ?? MEMORY_BUDGET_BYTES);
    // (The node's idle frame buffers stay within what its budget's leases leave free.)
    frameBuffers.keepWithin(() => this.memory.limit - this.memory.used);
    this.folders = new VolumeFolders(config);
    this.alive = new AliveMark(config.state, log);
    this.setAsides = new SetAside({
      config, log, unavailable: this.unavailable, entries: () => this.entries, links: () => this.links,
      openVolume: (v, identityOf) => this.openVolume(v, identityOf),
      served: (e) => this.sayWhere(e.volume),
    });
  }

  async start(): Promise<void> {
    const c = this.config;
    // Freed batches leave the RSS (src/limits/limits.ts MALLOC_MMAP_THRESHOLD_BYTES).
    nativeFs.tuneAllocator?.(MALLOC_MMAP_THRESHOLD_BYTES, MALLOC_ARENAS);
    // And V8's young generation stays small (src/memory/collector.ts).
    boundYoungGeneration();
    fs.mkdirSync(c.state, { recursive: true, mode: 0o700 });
    this.lockState();
    const registry = this.registry;
    try {
      // The previous run's alive mark is read, and this run's written, before any volume opens (src/node/alive-mark.ts).
      await this.alive.start(c.volumes.filter((v) => v.peer !== undefined).map((v) => v.name));
      // Every identity first: a member of a group's promote that a stop cut is completed
      // when another member's change began (RoleChanges.settlePromoteAt).
      const identities = new Map<string, VolumeIdentity>();
      const failures: Error[] = [];
      for (const v of c.volumes) {
        if (v.peer === undefined) continue;
        try {
          const dir = path.join(c.state, 'volumes', v.name);
          fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
          identities.set(v.name, VolumeIdentity.open(dir, v.role));
        } catch (err) {
          this.setAsides.setAside(v, err);
          failures.push(err as Error);
        }
      }
      this.setAsides.withGroup(c.volumes);
      // One volume that does not open is set aside; the others are served (src/node/set-aside.ts).
      for (const v of c.volumes) {
        if (this.unavailable.has(v.name)) continue;
        try {
          await this.openVolume(v, (m) => identities.get(m) ?? null);
        } catch (err) {
          this.setAsides.setAside(v, err);
          failures.push(err as Error);
        }
      }
      if (this.entries.length === 0 && this.unavailable.size > 0) {
        // Nothing to serve: the start fails with every volume's reason.
        if (failures.length === 1) throw failures[0];
        throw new Error(this.unavailable.status(Date.now()).map((u) => `volume ${u.name}: ${withoutName(u.name, u.error)}`).join('\n'));
      }
      this.groups.start();
      this.historyTimer = setInterval(() => this.recordHistory(), 60_000);
      this.historyTimer.unref();
      // Spent batches and frames go back to the system soon after a burst (src/memory/collector.ts).
      this.pressure = collectUnderPressure({ thresholdBytes: this.memory.limit });
      // And room for the old generation, so a drain does not collect all the time.
      this.oldGeneration = boundOldGeneration();
      this.nbd = new NbdServer({ exports: registry, log: this.log, idleTimeoutMs: c.nbdIdleTimeout === undefined ? null : c.nbdIdleTimeout * 1000 });
      this.nbdAddress = await this.nbd.listen(c.nbd);
      // The trust model, said where the operator looks (docs/NBD.md, "Who may connect").
      if (isNetworkFacing(c.nbd)) {
        this.log.warn(`NBD listens on ${formatListenAddress(c.nbd)}, which the network reaches: NBD has no authentication, ` +
          'so whoever reaches this port can read and write the volumes served here; ' +
          'listen on 127.0.0.1, a unix socket, or an address on a storage network only the hosts reach (docs/NBD.md, "Who may connect")');
      }
      if (c.iscsi) {
        // (Loaded only when configured, as SNMP below: a node without them does not carry their code.)
        const { IscsiFront } = await import('./iscsi-front.js');
        this.iscsi = await IscsiFront.start(c.iscsi, {
          node: c.node, volumes: c.volumes, registry: this.registry, entries: () => this.entries, log: this.log,
          ...(this.nbd ? { budget: this.nbd.budget } : {}),
        });
        this.iscsiAddress = this.iscsi.address;
      }
      let identity: ReturnType<typeof loadIdentity> | null = null;
      if (c.volumes.some((v) => v.peer !== undefined)) {
        try {
          identity = loadIdentity(c.state);
        } catch (e) {
          this.log.warn(`${(e as Error).message}; until then no peer link runs (changes are journaled meanwhile)`);
        }
      }
      if (identity) {
        this.links = new LinkManager(c, identity, this.linkVolumes, this.log, this.memory);
        this.links.onPeerPromoted = (name) => this.autoFailback(name);
        this.links.onFollow = (name, peer) => this.follow(name, peer);
        this.links.onRefused = (peer, code, message) => this.snmp?.refused(peer, code, message);
        for (const e of this.entries) if (e.role === 'primary' && fs.existsSync(path.join(e.dir, PAUSED_FILE))) this.links.pausedVolumes.add(e.config.name);
        await this.links.start();
      }
      if (c.api) {
        let tls: { key: string; cert: string } | null = null;
        if (c.apiTls) {
          try {
            const id = loadIdentity(c.state);
            tls = { key: id.keyPem, cert: id.certPem };
          } catch (e) {
            throw new Error(`api_tls: true serves the API with this node's certificate: ${(e as Error).message}`);
          }
        }
        if (isNetworkFacing(c.api)) {
          this.log.warn(c.apiTls
            ? `the API listens on ${formatListenAddress(c.api)}, which the network reaches: ` +
              'its read routes (status, events, history, metrics, the dashboard) answer whoever reaches the port; ' +
              'actions need the token, which goes over HTTPS (api_tls) (docs/API.md, "Who may connect")'
            : `the API listens on ${formatListenAddress(c.api)}, which the network reaches, over plain HTTP: ` +
              'the token of every action crosses the network in clear, ' +
              'and the read routes (status, events, history, metrics, the dashboard) answer whoever reaches the port; ' +
              'set api_tls: true (HTTPS with this node\'s certificate) or listen on 127.0.0.1 (docs/API.md, "Who may connect")');
        }
        const api = await startApi(c.api, {
          status: () => this.status(),
          actions: this.roles,
          token: () => readToken(c.state),
          reload: () => this.reload(),
          history: (name) => this.historyOf(name),
          log: this.log,
          tls,
          hosts: c.apiHosts,
        });
        this.api = api.app;
        this.apiAddress = api.address;
      }
      if (c.snmp) {
        const { SnmpService } = await import('../snmp/snmp.js');
        this.snmp = await SnmpService.start(c.snmp, { node: c.node, status: () => this.status(), actions: this.roles, log: this.log });
      }
    } catch (e) {
      this.groups.stop();
      this.pressure?.stop();
      this.oldGeneration?.stop();
      await this.iscsi?.close();
      await this.nbd?.close();
      for (const en of this.entries.splice(0)) en.journaled?.close().catch(() => undefined);
      const made = this.volumes.filter((v) => v.created);
      await this.closeVolumes();
      await this.hashWorkers.close();
      await this.alive.stop();
      this.folders.releaseAll();
      this.removeMadeVolumes(made);
      throw e;
    }
    this.ticker = setInterval(() => {
      const now = Date.now();
      this.roles.tick(now);
      tellJournalFill(this.fill, this.journalFills(now), this.log);
    }, 1000);
    this.ticker.unref();
    this.started = true;
    const where = formatListenAddress(this.nbdAddress);
    for (const v of this.volumes) this.sayWhere(v);
    this.log.info({ node: c.node, nbd: where }, `ready: node ${c.node} serving ${this.volumes.length} volume(s) on ${where}` +
      `${this.iscsiAddress ? ` and iSCSI ${this.iscsiAddress.host}:${this.iscsiAddress.port}` : ''}`);
  }

  /**
   * Opens one configured volume in its role and serves it (NBD, iSCSI, its peers): each
   * volume at the start, and a volume set aside, again, at a reload. If a step fails,
   * what it opened is closed again and nothing of the volume stays served or linked.
   */
  private async openVolume(v: VolumeConfig, identityOf: (name: string) => VolumeIdentity | null): Promise<VolumeEntry> {
    const c = this.config;
    const dir = path.join(c.state, 'volumes', v.name);
    const identity = identityOf(v.name);
    if (v.peer !== undefined) {
      const limits = { name: v.name, journal: v.journal, bitmapRegion: v.bitmap_region, maxHashRegion: MAX_HASH_REGION_SIZE };
      for (const w of volumeLimitWarnings(limits, formatBytes)) this.log.warn({ volume: v.name }, w);
    }
    const role = identity?.role ?? v.role;
    // A grow a crash cut part-way is finished (src/journal/grow.ts), to the size it was to.
    const growTo = await growToFinish(v, dir);
    const volume = Volume.open({
      name: v.name,
      path: v.path,
      size: v.size ?? growTo ?? undefined,
      growTo: growTo ?? undefined,
      readOnly: role === 'secondary',
      description: v.description ?? `offsite volume ${v.name} on node ${c.node}`,
    });
    this.volumes.push(volume);
    if (volume.grownFrom !== null) {
      this.log.info({ volume: v.name }, `volume ${v.name}: ${v.path} grown from ${formatBytes(volume.grownFrom)} to ${formatBytes(volume.size)}, ` +
        'finishing the grow a stop cut (the new part reads zeros, nothing of it is resynced)');
    }
    const entry: VolumeEntry = { config: v, volume, role, dir, journaled: null, replica: null, history: null, identity, drill: null };
    try {
      this.roles.completeDemote(entry);
      await this.roles.settlePromoteAt(entry, identityOf);
      await this.openRole(entry);
      await this.roles.completeChange(entry);
      // (Every part grew with the open: the bitmaps from their smaller headers, the history reads its older segments.)
      if (growTo !== null) await growFinished(dir);
    } catch (err) {
      await this.closeUnserved(entry);
      throw err;
    }
    this.entries.push(entry);
    // In the config's order, also for one opened at a reload (the status, SNMP's table rows).
    const order = (x: VolumeEntry): number => this.config.volumes.indexOf(x.config);
    this.entries.sort((x, y) => order(x) - order(y));
    this.registry.add(this.backendOf(entry), v.default === true);
    if (entry.replica?.checkpoint) this.registry.add(new CheckpointExport(entry.replica, entry.replica.checkpoint));
    return entry;
  }

  /** Where a served volume is reached: its NBD URL, and its iSCSI target. */
  private sayWhere(v: Volume): void {
    if (!this.nbdAddress) return;
    const url = this.nbdAddress.kind === 'unix'
      ? `nbd+unix:///${v.name}?socket=${this.nbdAddress.path}`
      : `nbd://${formatListenAddress(this.nbdAddress)}/${v.name}`;
    this.log.info({ volume: v.name, size: v.size, url }, `volume ${v.name}: ${formatBytes(v.size)} ${v.readOnly ? 'read-only' : 'read-write'} at ${url}`);
    if (this.iscsi && this.iscsiAddress) {
      const target = this.iscsi.targets.nameOf(v.name);
      this.log.info({ volume: v.name, target }, `volume ${v.name}: iSCSI target ${target}, LUN 0, at ${this.iscsiAddress.host}:${this.iscsiAddress.port}`);
    }
  }

  /** Closes what a failed openVolume opened: its role's files, its folder lock, the volume (removed if this open made it and nothing wrote it). */
  private async closeUnserved(e: VolumeEntry): Promise<void> {
    const name = e.config.name;
    const lv = this.linkVolumes;
    lv.primaries.delete(name);
    lv.replicas.delete(name);
    lv.identities.delete(name);
    this.streams.delete(name);
    await e.journaled?.close().catch((err: Error) => this.log.error({ volume: name }, `volume ${name}: ${err.message}`));
    try {
      e.replica?.abandon();
    } catch (err) {
      this.log.error({ volume: name }, `volume ${name}: ${(err as Error).message}`);
    }
    this.folders.release(name);
    const i = this.volumes.indexOf(e.volume);
    if (i >= 0) this.volumes.splice(i, 1);
    await e.volume.close().catch((err: Error) => this.log.error({ volume: name }, `volume ${name}: ${err.message}`));
    if (e.volume.created) this.removeMadeVolumes([e.volume]);
  }

  /** Volumes this daemon could not open: not served, not linked; a reload tries them again (src/node/set-aside.ts). */
  readonly unavailable = new UnavailableVolumes();
  /** Opens them again at a reload (src/node/set-aside.ts). */
  private readonly setAsides: SetAside;
  /** Set once the start is done: a reload before then does not open volumes set aside (the start is still opening). */
  private started = false;

  /** What the link manager sees: each replicated volume by role (kept current through promote and demote). */
  readonly linkVolumes: LinkVolumes = {
    primaries: new Map(), replicas: new Map(), identities: new Map(),
    unavailable: (name) => this.unavailable.reason(name),
    streams: {
      of: (name) => this.streams.get(name) ?? null,
      adopt: async (name, mark) => {
        const e = this.entries.find((x) => x.config.name === name);
        if (!e) throw new Error(`volume ${name} is not open`);
        await writeStream(new DirStore(e.dir), mark);
        this.streams.set(name, mark);
      },
    },
  };
  /** Each replicated volume's stream (src/stream/stream.ts), read when its role opens. */
  private readonly streams = new Map<string, StreamMark>();

  /** The export a volume's name serves: its write path, its replica, or the plain volume. */
  backendOf(e: VolumeEntry): ExportBackend {
    return e.journaled ?? e.replica ?? e.volume;
  }

  /** Opens the volume in its current role (src/node/role-open.ts). */
  openRole(e: VolumeEntry): Promise<void> {
    return openRole(this.roleOpening, e);
  }

  private get roleOpening(): RoleOpening {
    return { config: this.config, log: this.log, memory: this.memory, hashBuffers: this.hashBuffers, linkVolumes: this.linkVolumes,
      streams: this.streams, folders: this.folders, alive: this.alive };
  }

  /** A replicated volume's write history, from memory (the file is read once, at start). */
  historyOf(name: string): HistoryRing | null {
    const e = this.entries.find((x) => x.config.name === name);
    if (!e || e.config.peer === undefined) return null;
    return e.history?.rows ?? null;
  }

  /**
   * SIGHUP or POST /api/v1/reload: the config file is read again and what changed is
   * applied to the running node (src/node/reload.ts).
   */
  reload(): string {
    return this.reloads.run();
  }

  /** What a reload changes, and what it lets go, reopens or regroups in the background (src/node/reload.ts). */
  private readonly reloads = new NodeReloads({
    config: () => this.config, log: () => this.log, entries: () => this.entries, unavailable: () => this.unavailable,
    links: () => this.links, setAsides: () => this.setAsides, groups: () => this.groups, roles: () => this.roles,
    serving: () => this.started && !this.stopping, started: () => this.started, removal: () => this.removal,
  });

  private get removal(): RemovalHost {
    return {
      config: this.config, log: this.log, entries: this.entries, volumes: this.volumes, registry: this.registry,
      unavailable: this.unavailable, links: () => this.links,
      closeExports: async (names) => (await this.nbd?.closeExports(names) ?? 0) + (await this.iscsi?.closeExports(names) ?? 0),
      exclusive: (f) => this.roles.exclusive(f),
      releaseFolder: (name) => this.folders.release(name),
      stampStopped: (e) => this.stampStopped(e),
      forget: (name) => {
        this.linkVolumes.identities.delete(name);
        this.streams.delete(name);
        this.roles.forget(name);
      },
    };
  }

  /** A secondary meets a primary whose journal is not the one its receive log holds: it starts again from its last flush point. */
  private following = new Set<string>();
  private follow(name: string, peer: string): void {
    if (this.following.has(name)) return;
    this.following.add(name);
    this.roles.follow(name, peer).then(
      (r) => { if (r) this.log.warn({ volume: name }, r.message); },
      (err: Error) => this.log.error({ volume: name }, `volume ${name}: starting again as ${peer}'s secondary failed: ${err.message}`),
    ).finally(() => this.following.delete(name));
  }

  /** failback: auto: the peer was promoted after this node's last write, so this side demotes itself. */
  private failingBack = new Set<string>();
  private autoFailback(name: string): void {
    const e = this.entries.find((x) => x.config.name === name);
    if (!e || e.config.failback !== 'auto' || e.role !== 'primary' || this.failingBack.has(name)) return;
    this.failingBack.add(name);
    this.log.warn({ volume: name }, `volume ${name}: ${e.config.peer} was promoted after this node's last write; failback: auto demotes it here`);
    this.roles.demote(name, {}).then(
      (r) => this.log.info({ volume: name }, r.message),
      (err: Error) => this.log.error({ volume: name }, `volume ${name}: automatic failback failed: ${err.message}`),
    ).finally(() => this.failingBack.delete(name));
  }

  /** Which journals' filling was told (src/node/journal-fill.ts). */
  private readonly fill = new FillNotices();

  /** Each primary's journal as it fills, with its peers' links and lag (for journal-fill.ts). */
  private *journalFills(now: number): Iterable<FillFigures> {
    for (const e of this.entries) {
      const jv = e.journaled;
      if (!jv || e.role !== 'primary' || jv.mode !== 'journal') continue;
      const name = e.config.name;
      yield {
        volume: name, used: jv.journal.usedBytes, capacity: jv.journal.capacity,
        peers: jv.cursors.peers.map((p) => ({
          name: p, link: this.links?.linkState(p) ?? 'disconnected', lagMs: this.links?.lagMsOf(name, p, now) ?? null,
          conflict: this.links?.conflictOf(name, p)?.code ?? null,
        })),
      };
    }
  }

  private recordHistory(): void {
    for (const e of this.entries) {
      if (!e.journaled || !e.history) continue;
      const j = e.journaled.journal;
      try {
        e.history.record(Date.now(), {
          hostBytes: j.hostBytes, records: j.lastSeq, used: j.usedBytes, capacity: j.capacity,
          backlog: j.backlogBytes, mode: e.journaled.mode,
        });
      } catch (err) {
        this.log.warn(`volume ${e.config.name}: cannot write history: ${(err as Error).message}`);
      }
    }
  }

  status(): NodeStatus {
    const s = nodeStatus(this.config.node, '0.1.0', this.startedAt, this.entries, this.links, Date.now(), this.iscsi?.view() ?? null);
    return { ...s, groups: this.groups.status(s.volumes), unavailable: this.unavailable.status(Date.now()) };
  }

  /** Idempotent: a second call waits for the first. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping: finishing in-flight requests');
      await this.api?.close();
      await this.snmp?.stop();
      if (this.ticker) clearInterval(this.ticker);
      this.groups.stop();
      await this.reloads.idle();
      await this.setAsides.idle();
      await this.roles.idle();
      await this.links?.stop();
      await this.iscsi?.close();
      await this.nbd?.close();
      if (this.historyTimer) clearInterval(this.historyTimer);
      this.pressure?.stop();
      this.oldGeneration?.stop();
      const closing = [...this.entries];
      for (const e of this.entries.splice(0)) {
        await e.drill?.stop().catch(() => undefined);
        await e.journaled?.close().catch((err: Error) => this.log.error(`volume ${e.config.name}: ${err.message}`));
        if (e.replica) {
          await e.replica.log.sync().catch(() => undefined);
          e.replica.log.close();
        }
      }
      await this.closeVolumes();
      await this.hashWorkers.close();
      // Each file's times as this clean stop left it: an open that finds them moved knows it was written meanwhile.
      for (const e of closing) await this.stampStopped(e);
      await this.alive.stop();
      this.folders.releaseAll();
      if (this.lockFd >= 0) fs.closeSync(this.lockFd);
      this.log.info('stopped cleanly');
    })();
    return this.stopping;
  }

  /**
   * A start that failed leaves no image it made behind: a file left there would
   * answer the next start's corrected `size:` with a size mismatch. Only files
   * this start created (never one that was there before, nor a block device), and
   * only if nothing was written to them (a host or the peer may have reached one
   * before a later listener failed; then it holds data, and stays).
   */
  private removeMadeVolumes(made: Volume[]): void {
    for (const v of made) {
      if (v.written) {
        this.log.warn({ volume: v.name }, `volume ${v.name}: ${v.path} was created by this start and written to; kept`);
        continue;
      }
      try {
        fs.rmSync(v.path, { force: true });
        this.log.info({ volume: v.name }, `volume ${v.name}: removed ${v.path}, created by this start that failed`);
      } catch (err) {
        this.log.warn({ volume: v.name }, `volume ${v.name}: cannot remove ${v.path}, created by this start: ${(err as Error).message}`);
      }
    }
  }

  /** Writes down the times of `e`'s file as its clean close left them (src/volume/file-identity.ts); a failure is said, not fatal. */
  async stampStopped(e: VolumeEntry): Promise<void> {
    const st = e.volume.statAtClose;
    // (A volume without peers keeps no file-id: its open reads none, src/node/role-open.ts.)
    if (st === null || e.config.peer === undefined) return;
    await Promise.resolve().then(() => writeStopped(new DirStore(e.dir), e.config.path, e.dir, st, e.volume.writesAtClose)).catch((err: Error) =>
      this.log.warn({ volume: e.config.name }, `volume ${e.config.name}: cannot write down how the stop left ${e.config.path} ` +
        `(${err.message}); a write to it before the next start will not be noticed`));
  }

  private async closeVolumes(): Promise<void> {
    for (const v of this.volumes.splice(0)) {
      await v.close().catch((e: Error) => this.log.error(`volume ${v.name}: ${e.message}`));
    }
  }

  /** One daemon per state directory. The lock dies with the process, even on kill -9. */
  private lockState(): void {
    const file = path.join(this.config.state, 'daemon.lock');
    this.lockFd = fs.openSync(file, 'a+', 0o600);
    if (!nativeFs.lock(this.lockFd)) {
      fs.closeSync(this.lockFd);
      this.lockFd = -1;
      throw new Error(`another offsite daemon is running with state directory ${this.config.state}`);
    }
    fs.ftruncateSync(this.lockFd, 0);
    fs.writeSync(this.lockFd, `${process.pid}\n`);
  }
}
