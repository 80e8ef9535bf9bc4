// The node's SNMP service (docs/SNMP.md), run by the daemon when offsite.yaml has
// an `snmp:` section: the agent, and once a second a look at the node's status whose
// changes become notifications to the configured targets.
import type { NodeStatus } from '../contract/status.js';
import type { SnmpConfig } from './config.js';
import type { Logger } from '../log/log.js';
import { formatListenAddress, type ListenAddress } from '../export/listen-address.js';
import { SnmpAgent, type AgentDeps } from './agent.js';
import { OFFSITE_MIB } from './mib.js';
import {
  START_GRACE_MS, availabilityNotices, baseline, notices, notificationOf, watchUnavailable, watchVolumes, type WatchedUnavailable, type WatchedVolume,
} from './notifications.js';
import { Throttle } from './throttle.js';
import { TrapSender } from './traps.js';

/** How often the status is looked at for notifications. */
export const WATCH_INTERVAL_MS = 1000;

/**
 * The SNMP engine ID of a node (RFC 3411 SnmpEngineID): the enterprise number
 * (32473, a placeholder: see mibs/OFFSITE-MIB.txt), format 4 (text), and the node's
 * name (its first 27 bytes). The same at every start, so an SNMPv3 trap receiver can
 * be configured with it.
 */
export function engineIdOf(node: string): string {
  const pen = Number(OFFSITE_MIB.split('.').pop());
  const head = (0x8000_0000 + pen).toString(16).padStart(8, '0');
  return `${head}04${Buffer.from(node, 'utf8').subarray(0, 27).toString('hex')}`;
}

/**
 * Which volumes a split-brain refusal of the link to `peer` is about: the one its
 * message names ("volume NAME: split brain: ..."), else every volume with that peer.
 */
export function splitBrainVolumes(peer: string, message: string, volumes: ReadonlyArray<{ name: string; peer: string | null }>): string[] {
  const withPeer = volumes.filter((v) => v.peer === peer);
  const named = withPeer.filter((v) => message.startsWith(`volume ${v.name}: `));
  return (named.length > 0 ? named : withPeer).map((v) => v.name);
}

export interface SnmpDeps extends Omit<AgentDeps, 'lagAlarmSeconds'> {
  node: string;
}

export class SnmpService {
  private timer: NodeJS.Timeout | null = null;
  private prev: WatchedVolume[];
  /** The volumes set aside at the last look (none before the first: a volume set aside at the start is notified). */
  private prevUnavailable: WatchedUnavailable[] = [];
  private readonly everUp = new Set<string>();
  /** Volumes whose link a peer of the release before refused as a split brain, with the refusal (until the link comes up). */
  private readonly splitBrain = new Map<string, string>();
  private readonly startedAt = Date.now();
  private readonly throttle = new Throttle(60_000);

  private constructor(
    private readonly cfg: SnmpConfig,
    private readonly agent: SnmpAgent,
    private readonly traps: TrapSender,
    private readonly deps: SnmpDeps,
  ) {
    this.prev = baseline(this.look(deps.status()));
  }

  get address(): ListenAddress {
    return this.agent.address;
  }

  static async start(cfg: SnmpConfig, deps: SnmpDeps): Promise<SnmpService> {
    const engineID = engineIdOf(deps.node);
    const lagAlarmSeconds = cfg.lagAlarmSeconds ?? null;
    const agent = await SnmpAgent.start(cfg, engineID, { ...deps, lagAlarmSeconds });
    const traps = new TrapSender(cfg, engineID, deps.log);
    const s = new SnmpService(cfg, agent, traps, deps);
    s.timer = setInterval(() => s.tick(), WATCH_INTERVAL_MS);
    s.timer.unref();
    const users = cfg.users.length;
    const access = [cfg.community !== undefined ? 'v2c read-only' : 'no v2c', `${users} v3 user${users === 1 ? '' : 's'}`].join(', ');
    const notify = traps.count > 0 ? `; notifications to ${traps.count} target${traps.count === 1 ? '' : 's'}` : '';
    deps.log.info({ engineID }, `SNMP agent on ${formatListenAddress(agent.address)} (${access}${notify})`);
    return s;
  }

  /**
   * The link to `peer` was refused (by either side); `code` is the refusal's. A peer of
   * the release before refuses the whole link for a split brain ("split-brain"), which
   * is notified at the next look; this release keeps that volume unpaired on a link that
   * is up instead, and the status says so (the look reads it there).
   */
  refused(peer: string, code: string, message: string): void {
    if (code !== 'split-brain') return;
    for (const name of splitBrainVolumes(peer, message, this.deps.status().volumes)) this.splitBrain.set(name, message);
  }

  private look(status: NodeStatus): WatchedVolume[] {
    for (const v of status.volumes) {
      if (v.link === 'connected') {
        this.everUp.add(v.name);
        this.splitBrain.delete(v.name);
      }
    }
    return watchVolumes(status.volumes, {
      starting: Date.now() - this.startedAt < START_GRACE_MS, everUp: this.everUp, splitBrain: this.splitBrain,
    });
  }

  /** Once a second: what changed since the last look, sent as notifications. */
  private tick(): void {
    try {
      const status = this.deps.status();
      const next = this.look(status);
      const lag = this.cfg.lagAlarmSeconds ?? null;
      const unavailable = watchUnavailable(status.unavailable);
      const served = status.volumes.map((v) => v.name);
      for (const n of [...availabilityNotices(this.prevUnavailable, unavailable, served), ...notices(this.prev, next, lag)]) {
        const note = notificationOf(n, status, lag);
        if (!note) continue;
        this.deps.log.debug({ volume: n.volume }, `SNMP notification ${n.kind}: ${n.text}`);
        this.traps.send(note.trapOid, note.varbinds, Math.min(0xffff_ffff, status.uptimeSeconds * 100));
      }
      this.prev = next;
      this.prevUnavailable = unavailable;
    } catch (e) {
      if (this.throttle.allow('tick')) this.deps.log.error(`SNMP: watching the status for notifications failed: ${(e as Error).message}`);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.traps.close();
    await this.agent.close();
  }
}
