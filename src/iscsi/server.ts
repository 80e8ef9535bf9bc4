// The iSCSI listener (docs/ISCSI-PROTOCOL.md): TCP connections, logins bounded in
// number and time, sessions keyed by (target, InitiatorName, ISID) with a TSIH each,
// session reinstatement, and a clean stop (executing commands answer first).
//
// Like NBD's listener (src/nbd/server.ts), what one caller can hold is bounded before
// it authenticates: connections in all and per address, logins in progress, the
// login's duration; after, sessions per target and per address, commands in flight
// per session (the CmdSN window) and the node-wide bytes of buffered write data.
import net from 'node:net';
import type { Logger } from '../log/log.js';
import type { IscsiTarget, IscsiTargetTable } from './targets.js';
import { RefusalLog } from '../log/refusals.js';
import { RequestBudget } from '../nbd/budget.js';
import { IscsiConnection, type ServerPort } from './connection.js';
import { IscsiSession, nexusOf } from './session.js';
import { LoginStatus, type LoginIdentity } from './negotiation.js';
import type { LoginRequest } from './pdu.js';
import type { SessionParams } from './keys.js';
import {
  ISCSI_DATA_OUT_BUDGET_BYTES, ISCSI_LOGIN_TIMEOUT_MS, ISCSI_MAX_CONNECTIONS, ISCSI_MAX_CONNECTIONS_PER_ADDRESS, ISCSI_MAX_PENDING_LOGINS,
  ISCSI_MAX_PENDING_LOGINS_PER_ADDRESS, ISCSI_MAX_SESSIONS_PER_TARGET, ISCSI_NOP_INTERVAL_MS, ISCSI_STALLED_DATA_OUT_MS,
} from '../limits/limits.js';

const PERSISTENT_RESERVE_OUT = 0x5f;

export interface IscsiServerOptions {
  targets: IscsiTargetTable;
  log: Logger;
  /** The address announced in SendTargets (host 0.0.0.0 or :: : the address the initiator connected to). */
  portal: { host: string; port: number };
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  maxPendingLogins?: number;
  maxPendingLoginsPerAddress?: number;
  maxSessionsPerTarget?: number;
  loginTimeoutMs?: number;
  nopIntervalMs?: number;
  /** Node-wide bytes of data-out held (default ISCSI_DATA_OUT_BUDGET_BYTES); or share one budget with NBD. */
  budget?: RequestBudget;
  sweepMs?: number;
  /** A write without data-out this long, while others wait for the budget, is cut (default ISCSI_STALLED_DATA_OUT_MS). */
  stalledDataOutMs?: number;
  refusalLogWindowMs?: number;
}

export interface IscsiSessionInfo {
  target: string;
  exportName: string;
  initiator: string;
  /** The ISID, 12 hex digits. */
  isid: string;
  /** The initiator's IP address. */
  address: string;
}

export class IscsiServer {
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<IscsiConnection>();
  private readonly perAddress = new Map<string, number>();
  private readonly bySessionKey = new Map<string, IscsiSession>();
  private readonly refusals: RefusalLog;
  private readonly port: ServerPort;
  private sweeper: NodeJS.Timeout | null = null;
  private nextTsih = 1;
  readonly budget: RequestBudget;
  /** Where it listens (port 0 resolved). */
  readonly addresses: Array<{ host: string; port: number }> = [];

  constructor(private readonly opts: IscsiServerOptions) {
    this.budget = opts.budget ?? new RequestBudget(ISCSI_DATA_OUT_BUDGET_BYTES);
    this.refusals = new RefusalLog({ log: opts.log, windowMs: opts.refusalLogWindowMs ?? 60_000 });
    this.port = {
      targets: opts.targets,
      log: opts.log,
      budget: this.budget,
      portalFor: (local) => this.portalFor(local),
      startSession: (c, id, req, params) => this.startSession(c, id, req, params),
      endSession: (s) => this.endSession(s),
      sessionsOn: (t) => [...this.bySessionKey.values()].filter((s) => s.target === t),
      report: (c, kind, line) => this.refusals.refuse({
        kind, from: c.address, first: line,
        more: (n, who, span) => `iSCSI: ${n} more connections from ${who} in ${span}: ${kind}`,
      }),
      closed: (c) => this.closed(c),
    };
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** The normal sessions now, for status. */
  sessions(): IscsiSessionInfo[] {
    return [...this.bySessionKey.values()].filter((s) => s.target !== null).map((s) => ({
      target: s.target!.iqn, exportName: s.target!.exportName, initiator: s.initiatorName, isid: s.isidHex, address: s.address,
    }));
  }

  /**
   * Aborts the tasks of the sessions whose nexus (`<InitiatorName>,i,0x<ISID>`) is in
   * `initiators`, on `target` (its iqn): what a logical unit's PREEMPT AND ABORT asks
   * (LogicalUnitOptions.abortTasksOf). The PERSISTENT RESERVE OUT doing it is spared.
   */
  abortTasksOf(target: string, initiators: readonly string[]): void {
    const wanted = new Set(initiators);
    for (const s of this.bySessionKey.values()) {
      if (s.target?.iqn !== target || !wanted.has(nexusOf(s.initiatorName, s.isid).initiator)) continue;
      void s.link?.abortTasks(null, (cdb) => cdb[0] === PERSISTENT_RESERVE_OUT);
    }
  }

  async listen(address: { host: string; port: number }): Promise<{ host: string; port: number }> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(
        `cannot listen for iSCSI on ${address.host}:${address.port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`,
      )));
      server.listen(address.port, address.host, resolve);
    });
    server.on('error', (e) => this.opts.log.error(`iSCSI listener: ${e.message}`));
    this.servers.push(server);
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(Date.now()), this.opts.sweepMs ?? 1000);
      this.sweeper.unref();
    }
    const a = server.address();
    const actual = a && typeof a !== 'string' ? { host: address.host, port: a.port } : address;
    this.addresses.push(actual);
    return actual;
  }

  private accept(socket: net.Socket): void {
    const address = (socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
    const peer = `${address}:${socket.remotePort}`;
    const max = this.opts.maxConnections ?? ISCSI_MAX_CONNECTIONS;
    const maxPer = this.opts.maxConnectionsPerAddress ?? ISCSI_MAX_CONNECTIONS_PER_ADDRESS;
    const maxPending = this.opts.maxPendingLogins ?? ISCSI_MAX_PENDING_LOGINS;
    const refuse = (kind: string, why: string): void => {
      socket.destroy();
      this.refusals.refuse({
        kind,
        from: address,
        first: `iSCSI: refused a connection from ${address}: ${why}`,
        more: (n, who, span) => `iSCSI: refused ${n} more connections from ${who} in ${span}: ${kind}`,
      });
    };
    if (this.connections.size >= max) return refuse('too many connections', `${max} connections open already (at most ${max})`);
    if ((this.perAddress.get(address) ?? 0) >= maxPer) {
      return refuse('too many connections from one address', `${maxPer} connections from this address open already (at most ${maxPer} from one address)`);
    }
    const maxPendingHere = this.opts.maxPendingLoginsPerAddress ?? ISCSI_MAX_PENDING_LOGINS_PER_ADDRESS;
    let pending = 0;
    let pendingHere = 0;
    for (const c of this.connections) {
      if (!c.loggingIn) continue;
      pending++;
      if (c.address === address) pendingHere++;
    }
    if (pending >= maxPending) return refuse('too many logins in progress', `${pending} logins in progress already (at most ${maxPending})`);
    if (pendingHere >= maxPendingHere) {
      return refuse('too many logins in progress from one address', `${pendingHere} logins from this address in progress already (at most ${maxPendingHere})`);
    }
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    const c = new IscsiConnection(socket, this.port, peer, address, this.opts.loginTimeoutMs ?? ISCSI_LOGIN_TIMEOUT_MS);
    this.connections.add(c);
  }

  private closed(c: IscsiConnection): void {
    if (!this.connections.delete(c)) return;
    const n = (this.perAddress.get(c.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(c.address, n);
    else this.perAddress.delete(c.address);
  }

  private portalFor(local: string | undefined): string {
    let host = this.opts.portal.host;
    if (host === '0.0.0.0' || host === '::' || host === '') host = (local ?? '127.0.0.1').replace(/^::ffff:/, '');
    const port = this.opts.portal.port !== 0 ? this.opts.portal.port : this.addresses[0]?.port ?? 3260;
    return `${host.includes(':') ? `[${host}]` : host}:${port},1`;
  }

  private startSession(c: IscsiConnection, id: LoginIdentity, req: LoginRequest, params: SessionParams): IscsiSession | { status: number; why: string } {
    const target = id.target;
    const key = `${target?.iqn ?? ''}\0${id.initiatorName}\0${req.isid.toString('hex')}`;
    const old = this.bySessionKey.get(key);
    if (old) {
      // Session reinstatement (RFC 7143 6.3.5): the same initiator and ISID with TSIH 0 replace the old session.
      this.opts.log.info(`iSCSI: ${id.initiatorName} (ISID 0x${old.isidHex}) logged in again from ${c.address}: ` +
        `its older session on ${target?.exportName ?? 'discovery'} is closed`);
      this.endSession(old);
      old.link?.drop(`session reinstated by a new login from ${c.address}`);
    }
    if (target) {
      const maxPerTarget = this.opts.maxSessionsPerTarget ?? ISCSI_MAX_SESSIONS_PER_TARGET;
      const onTarget = this.port.sessionsOn(target).length;
      if (onTarget >= maxPerTarget) {
        return { status: LoginStatus.OUT_OF_RESOURCES, why: `${target.exportName} has ${onTarget} sessions already (at most ${maxPerTarget})` };
      }
    }
    if (this.nextTsih > 0xffff) this.nextTsih = 1;
    let tsih = this.nextTsih++;
    while ([...this.bySessionKey.values()].some((s) => s.tsih === tsih)) tsih = this.nextTsih++ & 0xffff || 1;
    const s = new IscsiSession(tsih, req.isid, id.initiatorName, target, params, c.address, req.cmdSN);
    this.bySessionKey.set(key, s);
    if (target) {
      target.lu.nexusAdded(nexusOf(id.initiatorName, req.isid));
      this.opts.log.info(`iSCSI: ${id.initiatorName} logged in to ${target.exportName} (${target.iqn}) from ${c.address}`);
      this.opts.log.debug(`iSCSI: session ${tsih} of ${id.initiatorName}: ` +
        `HeaderDigest=${params.headerDigest ? 'CRC32C' : 'None'} DataDigest=${params.dataDigest ? 'CRC32C' : 'None'} ` +
        `MaxRecvDataSegmentLength=${params.initiatorMaxRecv}/${params.targetMaxRecv} MaxBurstLength=${params.maxBurstLength} ` +
        `FirstBurstLength=${params.firstBurstLength} InitialR2T=${params.initialR2T ? 'Yes' : 'No'} ` +
        `ImmediateData=${params.immediateData ? 'Yes' : 'No'} MaxOutstandingR2T=${params.maxOutstandingR2T}`);
    }
    return s;
  }

  private endSession(s: IscsiSession): void {
    const key = `${s.target?.iqn ?? ''}\0${s.initiatorName}\0${s.isidHex}`;
    if (this.bySessionKey.get(key) !== s) return; // ended already (reinstated)
    this.bySessionKey.delete(key);
    if (s.target) {
      s.target.lu.nexusLost(nexusOf(s.initiatorName, s.isid));
      this.opts.log.info(`iSCSI: ${s.initiatorName} left ${s.target.exportName} (from ${s.address})`);
    }
  }

  /**
   * Every `sweepMs`: NOP-In pings on idle connections; and while writes wait for the
   * data-out budget, a connection whose write stopped receiving its data for
   * ISCSI_STALLED_DATA_OUT_MS is cut (it holds what the others wait for).
   */
  private sweep(now: number): void {
    const interval = this.opts.nopIntervalMs ?? ISCSI_NOP_INTERVAL_MS;
    const stalledMs = this.opts.stalledDataOutMs ?? ISCSI_STALLED_DATA_OUT_MS;
    for (const c of [...this.connections]) {
      if (this.budget.waiting > 0 && c.stalledDataOutMs(now) >= stalledMs) {
        c.cut('stalled write', `sent no data-out for a write in ${Math.round(c.stalledDataOutMs(now) / 1000)} s ` +
          `while ${this.budget.waiting} other writes waited for the data-out budget`);
        continue;
      }
      c.tick(now, interval);
    }
  }

  /**
   * Closes the sessions on the targets of these exports (a volume let go:
   * src/node/volume-removal.ts), each once its executing commands have answered;
   * resolves with how many there were. The exports are out of the registry already,
   * so no login finds their targets.
   */
  async closeExports(names: ReadonlySet<string>): Promise<number> {
    const on = [...this.bySessionKey.values()].filter((s) => s.target !== null && names.has(s.target.exportName));
    await Promise.all(on.map((s) => s.link?.shutdown()));
    return on.length;
  }

  /** Stops listening, lets executing commands answer, then closes every connection. */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    this.refusals.close();
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await Promise.all(closed);
  }
}

