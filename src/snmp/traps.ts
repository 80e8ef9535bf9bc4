// Notifications to the configured targets: SNMPv2c traps (or informs), or SNMPv3
// with one of the configured users. One UDP session per target, opened at start.
// Informs awaiting an answer are bounded per target; past the bound a notification
// is dropped and the log says so.
import snmp, { type Session, type Varbind } from 'net-snmp';
import type { SnmpConfig } from './config.js';
import type { Logger } from '../log/log.js';
import { formatListenAddress } from '../export/listen-address.js';
import { wireValue } from './agent.js';
import type { NotificationVarbind } from './notifications.js';
import { Throttle } from './throttle.js';

/** Informs awaiting their answer, per target. */
export const MAX_PENDING_INFORMS = 32;

interface Target {
  where: string;
  session: Session;
  inform: boolean;
  pending: number;
}

export class TrapSender {
  private readonly targets: Target[] = [];
  private readonly throttle = new Throttle(60_000);
  private closed = false;

  constructor(cfg: SnmpConfig, engineID: string, private readonly log: Logger) {
    for (const t of cfg.traps) {
      const { host, port } = t.address;
      const transport = host.includes(':') ? 'udp6' : 'udp4';
      const where = formatListenAddress(t.address);
      const user = t.user === undefined ? undefined : cfg.users.find((u) => u.name === t.user);
      const session = user
        ? snmp.createV3Session(host, {
          name: user.name, level: snmp.SecurityLevel.authPriv!,
          authProtocol: snmp.AuthProtocols[user.authProtocol]!, authKey: user.authKey,
          privProtocol: snmp.PrivProtocols[user.privProtocol]!, privKey: user.privKey,
        }, { transport, trapPort: port, engineID, retries: 2, timeout: 5000 })
        : snmp.createSession(host, t.community ?? 'public', { version: snmp.Version2c, transport, trapPort: port, retries: 2, timeout: 5000 });
      const target: Target = { where, session, inform: t.inform, pending: 0 };
      session.on('error', (e) => this.warn(target, `socket error: ${e.message}`));
      this.targets.push(target);
    }
  }

  get count(): number {
    return this.targets.length;
  }

  /** Sends one notification to every target; `upTime` is sysUpTime.0 (hundredths of a second). */
  send(trapOid: string, objects: NotificationVarbind[], upTime: number): void {
    const varbinds: Varbind[] = objects.map((o) => ({ oid: o.oid, ...wireValue(o) }));
    for (const t of this.targets) {
      try {
        if (!t.inform) {
          t.session.trap(trapOid, varbinds, { upTime }, (e) => {
            if (e) this.warn(t, `a trap was not sent: ${e.message}`);
          });
          continue;
        }
        if (t.pending >= MAX_PENDING_INFORMS) {
          this.warn(t, `${t.pending} informs are still unanswered; this one is dropped`);
          continue;
        }
        t.pending++;
        t.session.inform(trapOid, varbinds, { upTime }, (e) => {
          t.pending--;
          if (e) this.warn(t, `an inform was not acknowledged: ${e.message}`);
        });
      } catch (e) {
        this.warn(t, `a notification was not sent: ${(e as Error).message}`);
      }
    }
  }

  private warn(t: Target, what: string): void {
    if (!this.closed && this.throttle.allow(t.where)) this.log.warn(`SNMP notifications to ${t.where}: ${what}`);
  }

  close(): void {
    this.closed = true;
    for (const t of this.targets.splice(0)) {
      try {
        t.session.close();
      } catch {
        // already closed
      }
    }
  }
}
