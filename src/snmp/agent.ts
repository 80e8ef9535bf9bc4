// The SNMP agent (net-snmp's): OFFSITE-MIB served from the node's status, read when
// a request comes; v2c with one read-only community; SNMPv3 users (authPriv) with
// read-write or read-only access; offsiteVolumeCheckpointControl writes go through
// the same RoleChanges calls as the API's checkpoint actions.
import dgram from 'node:dgram';
import snmp, { type Agent, type AgentError, type MibRequest, type RequestMessage, type TableColumn } from 'net-snmp';
import type { NodeStatus } from '../contract/status.js';
import type { SnmpConfig } from './config.js';
import type { Logger } from '../log/log.js';
import { formatListenAddress, type ListenAddress } from '../export/listen-address.js';
import type { NodeActions } from '../contract/actions.js';
import {
  CHECKPOINT_CONTROL, CHECKPOINT_CONTROL_COLUMN, GROUP_COLUMNS, GROUP_ENTRY, NODE, NODE_SCALARS, SYSTEM, SYSTEM_SCALARS, VOLUME_COLUMNS, VOLUME_ENTRY,
  counter64, groupValues, nodeValues, peerValues, PEER_COLUMNS, PEER_ENTRY, systemValues, volumeValues, type Kind, type MibValue,
} from './mib.js';
import { Throttle } from './throttle.js';

export interface AgentDeps {
  status: () => NodeStatus;
  /** The checkpoint calls of the node's actions. */
  actions: Pick<NodeActions, 'createCheckpoint' | 'releaseCheckpoint'>;
  lagAlarmSeconds: number | null;
  log: Logger;
}

const TYPE: Record<Kind, number> = {
  string: snmp.ObjectType.OctetString!,
  integer: snmp.ObjectType.Integer!,
  unsigned: snmp.ObjectType.Gauge!, // Unsigned32 and Gauge32 share the tag
  gauge: snmp.ObjectType.Gauge!,
  timeticks: snmp.ObjectType.TimeTicks!,
  counter: snmp.ObjectType.Counter!,
  counter64: snmp.ObjectType.Counter64!,
  oid: snmp.ObjectType.OID!,
};

/** A MIB value as net-snmp sends it (a Counter64 as its BER bytes). */
export function wireValue(v: MibValue): { type: number; value: string | number | Buffer } {
  return { type: TYPE[v.kind], value: v.kind === 'counter64' ? counter64(Number(v.value)) : v.value };
}

const ERR = snmp.ErrorStatus;
const ACCESS_REFUSALS = new Set([ERR.NoAccess, ERR.NotWritable, ERR.AuthorizationError]);

/** Who sent the request being handled (set while net-snmp handles it synchronously). */
interface Requester {
  who: string;
  /** address:port */
  from: string;
  address: string;
  set: boolean;
}

export class SnmpAgent {
  private cached: NodeStatus | null = null;
  private current: Requester | null = null;
  private readonly setBy = new WeakMap<MibRequest, Requester>();
  private readonly throttle = new Throttle(60_000);

  private constructor(
    private readonly agent: Agent,
    private readonly sockets: dgram.Socket[],
    readonly address: ListenAddress,
    private readonly deps: AgentDeps,
  ) {}

  /** Listens on `cfg.listen`; rejects with an operator's message ("address already in use"). */
  static async start(cfg: SnmpConfig, engineID: string, deps: AgentDeps): Promise<SnmpAgent> {
    const { host, port } = cfg.listen;
    const transport = host.includes(':') ? 'udp6' : 'udp4';
    const sockets: dgram.Socket[] = [];
    let self: SnmpAgent | null = null;
    const agent = snmp.createAgent({
      port, address: host, transport, engineID,
      accessControlModelType: snmp.AccessControlModelType.Simple!,
      // The same dgram, but the agent's sockets are kept: to learn whether the bind worked.
      dgramModule: { createSocket: (type) => { const s = dgram.createSocket(type); sockets.push(s); return s; } },
    }, (error, data) => self?.onAgentEvent(error, data)); // (null until bound: a bind error is start()'s to report)
    const where = formatListenAddress(cfg.listen);
    try {
      await Promise.all(sockets.map((s) => new Promise<void>((resolve, reject) => {
        s.once('listening', () => resolve());
        s.once('error', reject);
      })));
    } catch (e) {
      try {
        agent.close();
      } catch {
        // a socket that never bound cannot be closed
      }
      const err = e as NodeJS.ErrnoException;
      const why = err.code === 'EADDRINUSE' ? 'address already in use'
        : err.code === 'EACCES' ? 'permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)'
          : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.message;
      throw new Error(`cannot listen for SNMP on ${where}: ${why}`);
    }
    const bound = sockets[0]!.address();
    const address: ListenAddress = { kind: 'tcp', host, port: bound.port };
    self = new SnmpAgent(agent, sockets, address, deps);
    self.configure(cfg);
    return self;
  }

  private configure(cfg: SnmpConfig): void {
    const auth = this.agent.getAuthorizer();
    const acm = auth.getAccessControlModel();
    if (cfg.community !== undefined) {
      auth.addCommunity(cfg.community);
      acm.setCommunityAccess(cfg.community, snmp.AccessLevel.ReadOnly!);
    }
    for (const u of cfg.users) {
      auth.addUser({
        name: u.name, level: snmp.SecurityLevel.authPriv!,
        authProtocol: snmp.AuthProtocols[u.authProtocol]!, authKey: u.authKey,
        privProtocol: snmp.PrivProtocols[u.privProtocol]!, privKey: u.privKey,
      });
      acm.setUserAccess(u.name, u.access === 'read-write' ? snmp.AccessLevel.ReadWrite! : snmp.AccessLevel.ReadOnly!);
    }
    this.registerMib();
    this.guard();
    // A set naming an instance that does not exist (no such volume, no such object)
    // is refused as a whole: noCreation (net-snmp would answer noError with noSuchInstance).
    this.agent.setBulkSetHandler?.((reqs, _mib, testSet) => {
      const missing = reqs.some((r) => r.handler?.name === 'getNsiHandler' || r.handler?.name === 'getNsoHandler');
      return testSet && missing ? ERR.NoCreation! : ERR.NoError!;
    });
  }

  /** The status of this moment: one per turn of the event loop, so a request sees one consistent picture. */
  private snapshot(): NodeStatus {
    if (!this.cached) {
      this.cached = this.deps.status();
      setImmediate(() => {
        this.cached = null;
      });
    }
    return this.cached;
  }

  private registerMib(): void {
    const mib = this.agent.getMib();
    const ro = snmp.MaxAccess['read-only']!;
    const status = this.deps.status();
    const system = systemValues(status);
    for (const s of SYSTEM_SCALARS) {
      mib.registerProvider({
        name: s.name, type: snmp.MibProviderType.Scalar!, oid: `${SYSTEM}.${s.id}`, scalarType: TYPE[s.kind], maxAccess: ro,
        handler: (req) => this.answer(req, () => systemValues(this.snapshot())[s.name]),
      });
      mib.setScalarValue(s.name, initial(system[s.name]));
    }
    const scalars = nodeValues(status, this.deps.lagAlarmSeconds);
    for (const s of NODE_SCALARS) {
      mib.registerProvider({
        name: s.name, type: snmp.MibProviderType.Scalar!, oid: `${NODE}.${s.id}`, scalarType: TYPE[s.kind], maxAccess: ro,
        handler: (req) => this.answer(req, () => nodeValues(this.snapshot(), this.deps.lagAlarmSeconds)[s.name]),
      });
      mib.setScalarValue(s.name, initial(scalars[s.name]));
    }
    const columns: TableColumn[] = [
      { number: 1, name: 'offsiteVolumeIndex', type: TYPE.unsigned, maxAccess: snmp.MaxAccess['not-accessible']! },
      ...VOLUME_COLUMNS.map((c) => ({
        number: c.id, name: c.name, type: TYPE[c.kind],
        maxAccess: c.id === CHECKPOINT_CONTROL_COLUMN ? snmp.MaxAccess['read-write']! : ro,
        ...(c.id === CHECKPOINT_CONTROL_COLUMN ? { constraints: { enumeration: { 1: 'none', 2: 'create', 3: 'release', 4: 'held' } } } : {}),
      })),
    ];
    mib.registerProvider({
      name: 'offsiteVolumeTable', type: snmp.MibProviderType.Table!, oid: VOLUME_ENTRY, maxAccess: snmp.MaxAccess['not-accessible']!,
      tableColumns: columns, tableIndex: [{ columnName: 'offsiteVolumeIndex' }],
      handler: (req) => this.volumeRequest(req),
    });
    status.volumes.forEach((v, i) => {
      const values = volumeValues(v);
      mib.addTableRow('offsiteVolumeTable', [i + 1, ...VOLUME_COLUMNS.map((c) => initial(values[c.name]))]);
    });
    // Consistency groups (docs/GROUPS.md): one read-only row each, in the order of groups: in offsite.yaml.
    mib.registerProvider({
      name: 'offsiteGroupTable', type: snmp.MibProviderType.Table!, oid: GROUP_ENTRY, maxAccess: snmp.MaxAccess['not-accessible']!,
      tableColumns: [
        { number: 1, name: 'offsiteGroupIndex', type: TYPE.unsigned, maxAccess: snmp.MaxAccess['not-accessible']! },
        ...GROUP_COLUMNS.map((c) => ({ number: c.id, name: c.name, type: TYPE[c.kind], maxAccess: ro })),
      ],
      tableIndex: [{ columnName: 'offsiteGroupIndex' }],
      handler: (req) => {
        const node = req.instanceNode;
        const col = GROUP_COLUMNS.find((c) => c.id === node.getTableColumnFromInstanceNode());
        const index = node.address[node.address.length - 1] ?? 0;
        this.answer(req, () => {
          const g = (this.snapshot().groups ?? [])[index - 1];
          return g && col ? groupValues(g)[col.name] : undefined;
        });
      },
    });
    (status.groups ?? []).forEach((g, i) => {
      const values = groupValues(g);
      mib.addTableRow('offsiteGroupTable', [i + 1, ...GROUP_COLUMNS.map((c) => initial(values[c.name]))]);
    });
    // Each peer of each volume (docs/PEERS.md): rows indexed by the volume's row and the peer's place among its peers.
    mib.registerProvider({
      name: 'offsitePeerTable', type: snmp.MibProviderType.Table!, oid: PEER_ENTRY, maxAccess: snmp.MaxAccess['not-accessible']!,
      tableColumns: [
        { number: 1, name: 'offsitePeerIndex', type: TYPE.unsigned, maxAccess: snmp.MaxAccess['not-accessible']! },
        ...PEER_COLUMNS.map((c) => ({ number: c.id, name: c.name, type: TYPE[c.kind], maxAccess: ro })),
      ],
      tableIndex: [{ columnName: 'offsiteVolumeIndex', foreign: 'offsiteVolumeTable' }, { columnName: 'offsitePeerIndex' }],
      handler: (req) => {
        const node = req.instanceNode;
        const col = PEER_COLUMNS.find((c) => c.id === node.getTableColumnFromInstanceNode());
        const [volume, peer] = node.address.slice(-2) as [number, number];
        this.answer(req, () => {
          const p = this.snapshot().volumes[volume - 1]?.peers[peer - 1];
          return p && col ? peerValues(p)[col.name] : undefined;
        });
      },
    });
    status.volumes.forEach((v, i) => v.peers.forEach((p, j) => {
      const values = peerValues(p);
      mib.addTableRow('offsitePeerTable', [i + 1, j + 1, ...PEER_COLUMNS.map((c) => initial(values[c.name]))]);
    }));
  }

  /** A read: the value of now. */
  private answer(req: MibRequest, value: () => MibValue | undefined): void {
    try {
      const v = value();
      if (v === undefined) return req.done({ errorStatus: ERR.NoError!, type: snmp.ObjectType.NoSuchInstance!, value: null });
      req.instanceNode.value = wireValue(v).value;
      req.done();
    } catch (e) {
      this.deps.log.error(`SNMP: reading ${req.oid} failed: ${(e as Error).message}`);
      req.done({ errorStatus: ERR.GeneralError! });
    }
  }

  private volumeRequest(req: MibRequest): void {
    const node = req.instanceNode;
    const column = node.getTableColumnFromInstanceNode();
    const index = node.address[node.address.length - 1] ?? 0;
    const col = VOLUME_COLUMNS.find((c) => c.id === column);
    if (req.operation === snmp.PduType.SetRequest) return this.checkpointControl(req, index);
    this.answer(req, () => {
      const v = this.snapshot().volumes[index - 1];
      return v && col ? volumeValues(v)[col.name] : undefined;
    });
  }

  /** A write of offsiteVolumeCheckpointControl: checked in net-snmp's test pass, done in its commit pass. */
  private checkpointControl(req: MibRequest, index: number): void {
    const log = this.deps.log;
    if (req.testSet) {
      const by = this.current ?? { who: 'an SNMP manager', from: 'unknown', address: 'unknown', set: true };
      this.setBy.set(req, by);
      const v = this.snapshot().volumes[index - 1];
      const want = req.setValue;
      const refuse = (status: number, why: string): void => {
        log.warn(v ? { volume: v.name } : {},
          `SNMP: refused a checkpoint ` +
          `${want === CHECKPOINT_CONTROL.create ? 'create' : want === CHECKPOINT_CONTROL.release ? 'release' : 'control write'}${v ? ` on ${v.name}` : ''} ` +
          `by ${by.who} from ${by.from}: ${why}`);
        req.done({ errorStatus: status });
      };
      if (!v) return refuse(ERR.NoCreation!, 'no such volume');
      if (want !== CHECKPOINT_CONTROL.create && want !== CHECKPOINT_CONTROL.release) return refuse(ERR.WrongValue!,
        `${String(want)} is not create(2) or release(3)`);
      if (v.peer === null) return refuse(ERR.InconsistentValue!, `volume ${v.name} is not replicated (it has no peer)`);
      if (v.role !== 'secondary') return refuse(ERR.InconsistentValue!,
        `volume ${v.name} is primary on this node; a checkpoint is taken on the node that holds the secondary (${v.peer})`);
      if (want === CHECKPOINT_CONTROL.create && v.checkpoint) return refuse(ERR.InconsistentValue!,
        `volume ${v.name} already holds checkpoint "${v.checkpoint.label}"`);
      if (want === CHECKPOINT_CONTROL.release && !v.checkpoint) return refuse(ERR.InconsistentValue!, `volume ${v.name} holds no checkpoint`);
      if (want === CHECKPOINT_CONTROL.release && v.drill) return refuse(ERR.InconsistentValue!,
        `a drill of ${v.name} runs over its checkpoint; stop it first (offsite drill stop ${v.name})`);
      return req.done();
    }
    // Commit: the action itself (one at a time per node, like the API's).
    const by = this.setBy.get(req) ?? { who: 'an SNMP manager', from: 'unknown', address: 'unknown', set: true };
    const v = this.snapshot().volumes[index - 1];
    if (!v) return req.done({ errorStatus: ERR.CommitFailed! });
    const name = v.name;
    const create = req.setValue === CHECKPOINT_CONTROL.create;
    const label = `snmp-${new Date().toISOString().slice(0, 19)}Z`;
    const run = create ? this.deps.actions.createCheckpoint(name, { label }) : this.deps.actions.releaseCheckpoint(name);
    run.then(
      (r) => {
        log.info({ volume: name }, `SNMP: checkpoint ${create ? 'create' : 'release'} on ${name} by ${by.who} from ${by.from}: ${r.message}`);
        req.done();
      },
      (e: Error) => {
        log.error({ volume: name }, `SNMP: checkpoint ${create ? 'create' : 'release'} on ${name} by ${by.who} from ${by.from} failed: ${e.message}`);
        req.done({ errorStatus: ERR.CommitFailed! });
      },
    );
  }

  /**
   * net-snmp calls the request handler synchronously from the socket's message event:
   * a throw there would end the daemon, so it is caught (and logged); and who sent
   * the request is noted for the log lines of a set.
   */
  private guard(): void {
    const inner = this.agent.request;
    if (typeof inner === 'function') {
      this.agent.request = (socket, message: RequestMessage, rinfo) => {
        const v3 = message.version === snmp.Version3;
        this.current = {
          who: v3 ? `SNMPv3 user ${message.user?.name ?? '?'}` : 'the v2c community',
          from: `${rinfo.address}:${rinfo.port}`,
          address: rinfo.address,
          set: message.pdu.type === snmp.PduType.SetRequest,
        };
        try {
          inner.call(this.agent, socket, message, rinfo);
        } finally {
          this.current = null;
        }
      };
    }
    for (const s of this.sockets) {
      for (const l of s.listeners('message') as Array<(...a: unknown[]) => void>) {
        s.off('message', l);
        s.on('message', (...a: unknown[]) => {
          try {
            l(...a);
          } catch (e) {
            this.current = null;
            const rinfo = a[1] as dgram.RemoteInfo | undefined;
            if (this.throttle.allow('internal')) this.deps.log.error(
              `SNMP: a request from ${rinfo?.address ?? 'unknown'} could not be handled: ${(e as Error).message}`);
          }
        });
      }
    }
  }

  /** net-snmp's callback: refused requests (authentication, access) and socket errors. */
  private onAgentEvent(error: AgentError | null, data?: { pdu?: { errorStatus?: number }; rinfo?: dgram.RemoteInfo }): void {
    const log = this.deps.log;
    if (error) {
      const from = error.rinfo ? error.rinfo.address : null;
      const why = refusal(error.message);
      if (this.throttle.allow(`${from}:${why}`)) {
        log.warn(from ? `SNMP: refused a request from ${from}: ${why}` : `SNMP: ${error.message}`);
      }
      return;
    }
    const status = data?.pdu?.errorStatus;
    const cur = this.current;
    if (status !== undefined && ACCESS_REFUSALS.has(status) && cur?.set) {
      if (this.throttle.allow(`${cur.address}:${cur.who}:set`)) {
        const why = status === ERR.NotWritable ? 'the object is read-only' : 'only SNMPv3 users with read-write access may write';
        log.warn(`SNMP: refused a set by ${cur.who} from ${cur.from}: ${errorName(status)} (${why})`);
      }
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      let left = this.sockets.length;
      if (left === 0) return resolve();
      try {
        this.agent.close(() => {
          if (--left === 0) resolve();
        });
      } catch {
        resolve();
      }
    });
  }
}

/** A row or scalar's first value (the handler replaces it at each request); Counter64 as a number, which net-snmp's check takes. */
function initial(v: MibValue): string | number {
  return v.value;
}

/** An error-status as RFC 3416 spells it ("noAccess"). */
function errorName(status: number): string {
  const n = ERR[status];
  return typeof n === 'string' ? n[0]!.toLowerCase() + n.slice(1) : String(status);
}

/** net-snmp's reason for refusing a request, in words that do not repeat a wrong secret. */
function refusal(message: string): string {
  const m = message.toLowerCase();
  if (m.includes('community')) return 'wrong community';
  if (m.includes('decrypt')) return 'cannot decrypt it (wrong privacy key or protocol?)';
  if (m.includes('authentic') || m.includes('digest')) return 'authentication failed (wrong key or protocol?)';
  if (m.includes('user')) return 'unknown SNMPv3 user, or the user\'s security level was not used';
  return 'malformed or unsupported request';
}
