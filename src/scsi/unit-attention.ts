// Unit attention conditions (SAM-5 5.14, SPC-4 5.15), kept per I_T nexus: POWER ON
// once for a new nexus, a reset for every nexus after LUN or target reset, and what
// persistent reservations and MODE SELECT tell the other nexuses. A command other
// than INQUIRY, REPORT LUNS and REQUEST SENSE reports the oldest one (and clears it)
// instead of running; REQUEST SENSE returns it as its data and clears it.
import { SCSI_MAX_UNIT_ATTENTIONS } from '../limits/limits.js';
import { Asc } from './sense.js';

export class UnitAttentions {
  /** Pending additional sense codes per nexus (its initiator name and session id), oldest first. */
  private readonly pending = new Map<string, number[]>();

  /** A new nexus: it gets POWER ON, RESET, OR BUS DEVICE RESET OCCURRED once. */
  added(nexus: string): void {
    this.pending.set(nexus, [Asc.POWER_ON_RESET_OCCURRED]);
  }

  lost(nexus: string): void {
    this.pending.delete(nexus);
  }

  /** Queues `asc` for one nexus (known or not: PR keeps registrations of nexuses that left). */
  raise(nexus: string, asc: number): void {
    const q = this.pending.get(nexus);
    if (q === undefined) {
      this.pending.set(nexus, [asc]);
      return;
    }
    // A reset supersedes what was pending before it (SAM-5 5.14: the highest precedence wins).
    if ((asc >> 8) === 0x29) q.length = 0;
    if (q.includes(asc)) return;
    if (q.length < SCSI_MAX_UNIT_ATTENTIONS) q.push(asc);
  }

  /** Queues `asc` for every nexus the unit knows, but `except`. */
  raiseAll(asc: number, except: string | null = null): void {
    for (const n of this.pending.keys()) if (n !== except) this.raise(n, asc);
  }

  /** Every nexus known to the unit (logged in). */
  known(nexus: string): boolean {
    return this.pending.has(nexus);
  }

  /** Registers a nexus the unit had not seen (a command from a session the transport never announced) with nothing pending. */
  touch(nexus: string): void {
    if (!this.pending.has(nexus)) this.pending.set(nexus, []);
  }

  /** The oldest pending condition, removed; null when none. */
  take(nexus: string): number | null {
    const q = this.pending.get(nexus);
    if (q === undefined || q.length === 0) return null;
    return q.shift()!;
  }

  peek(nexus: string): number | null {
    return this.pending.get(nexus)?.[0] ?? null;
  }
}
