// Reservations (SPC-4 5.13 persistent reservations; SPC-2 RESERVE/RELEASE(6/10)):
// who is registered with which key, who holds the unit in which type, and which
// commands a nexus may run (SPC-4 table 47: reads pass a write-exclusive reservation,
// nothing passes an exclusive-access one, registrants pass the registrants-only and
// all-registrants types). Registrations outlive their session (they belong to the
// initiator port, not the connection); an SPC-2 reservation ends with its nexus and at
// a reset. Not persisted across a daemon restart (APTPL is refused: PTPL_C=0).
import { SCSI_MAX_REGISTRATIONS } from '../limits/limits.js';
import { Asc, ReservationConflict, illegal, invalidField, invalidParameter } from './sense.js';
import type { ScsiNexus } from './task.js';
import type { UnitAttentions } from './unit-attention.js';

/** PERSISTENT RESERVATION types (SPC-4 table 200). */
export const PrType = {
  WRITE_EXCLUSIVE: 1,
  EXCLUSIVE_ACCESS: 3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 8,
} as const;

const VALID_TYPES = new Set<number>(Object.values(PrType));

/** How a command meets a reservation (SPC-4 table 47, simplified to its columns). */
export type Access = 'always' | 'read' | 'write';

interface Registration {
  key: bigint;
  transportId: Buffer;
  relativePort: number;
}

interface Reservation {
  type: number;
  /** The nexus holding it (for all-registrants types: the one that reserved; every registrant holds it). */
  holder: string;
}

const allRegistrants = (t: number): boolean => t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || t === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
const registrantsAccess = (t: number): boolean => t >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
const writeExclusive = (t: number): boolean =>
  t === PrType.WRITE_EXCLUSIVE || t === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS;

export class Reservations {
  /** PRgeneration: counts REGISTER, CLEAR, PREEMPT (SPC-4 6.15.2). */
  generation = 0;
  private readonly registrations = new Map<string, Registration>();
  private reservation: Reservation | null = null;
  /** The nexus holding an SPC-2 RESERVE, if any. */
  private legacy: string | null = null;

  constructor(private readonly attentions: UnitAttentions) {}

  /** Throws RESERVATION CONFLICT unless `nexus` may run a command of this access class now. */
  check(nexus: string, access: Access, op: number): void {
    if (access === 'always') return;
    if (this.legacy !== null && this.legacy !== nexus) {
      // SPC-2 5.5.1: everything but INQUIRY, REQUEST SENSE, REPORT LUNS and RELEASE conflicts.
      if (op === 0x17 || op === 0x57) return;
      throw new ReservationConflict();
    }
    const r = this.reservation;
    if (r === null || this.holds(nexus, r)) return;
    if (registrantsAccess(r.type) && this.registrations.has(nexus)) return;
    if (access === 'read' && writeExclusive(r.type)) return;
    throw new ReservationConflict();
  }

  private holds(nexus: string, r: Reservation): boolean {
    return allRegistrants(r.type) ? this.registrations.has(nexus) : r.holder === nexus;
  }

  // --- SPC-2 RESERVE / RELEASE ----------------------------------------------------------

  reserveLegacy(nexus: string): void {
    if (this.reservation !== null || this.registrations.size > 0) throw new ReservationConflict();
    if (this.legacy !== null && this.legacy !== nexus) throw new ReservationConflict();
    this.legacy = nexus;
  }

  releaseLegacy(nexus: string): void {
    if (this.reservation !== null) throw new ReservationConflict();
    if (this.legacy === nexus) this.legacy = null;
  }

  /** A LUN or target reset, or the holder's nexus gone: the SPC-2 reservation ends (persistent ones stay). */
  resetLegacy(nexus: string | null): void {
    if (nexus === null || this.legacy === nexus) this.legacy = null;
  }

  // --- PERSISTENT RESERVE IN (SPC-4 6.15) ----------------------------------------------------

  readKeys(): Buffer {
    const keys = [...this.registrations.values()];
    const out = Buffer.alloc(8 + 8 * keys.length);
    out.writeUInt32BE(this.generation >>> 0, 0);
    out.writeUInt32BE(8 * keys.length, 4);
    keys.forEach((r, i) => out.writeBigUInt64BE(r.key, 8 + 8 * i));
    return out;
  }

  readReservation(): Buffer {
    const r = this.reservation;
    const out = Buffer.alloc(r === null ? 8 : 24);
    out.writeUInt32BE(this.generation >>> 0, 0);
    if (r !== null) {
      out.writeUInt32BE(16, 4);
      // All-registrants types report key 0 (SPC-4 6.15.3.3.2).
      out.writeBigUInt64BE(allRegistrants(r.type) ? 0n : this.registrations.get(r.holder)?.key ?? 0n, 8);
      out[21] = r.type & 0x0f;
    }
    return out;
  }

  static reportCapabilities(): Buffer {
    const out = Buffer.alloc(8);
    out.writeUInt16BE(8, 0);
    out[2] = 0x04; // ATP_C (one port); CRH=0 (RESERVE/RELEASE conflict with any registration), SIP_C=0, PTPL_C=0
    out[3] = 0x80; // TMV: the type mask is valid; ALLOW COMMANDS 0; PTPL_A 0
    out[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
    out[5] = 0x01; // EX_AC_AR
    return out;
  }

  readFullStatus(): Buffer {
    const parts: Buffer[] = [];
    for (const [nexus, reg] of this.registrations) {
      const d = Buffer.alloc(24 + reg.transportId.length);
      d.writeBigUInt64BE(reg.key, 0);
      const r = this.reservation;
      if (r !== null && this.holds(nexus, r)) {
        d[12] = 0x01; // R_HOLDER
        d[13] = r.type & 0x0f;
      }
      d.writeUInt16BE(reg.relativePort, 18);
      d.writeUInt32BE(reg.transportId.length, 20);
      reg.transportId.copy(d, 24);
      parts.push(d);
    }
    const body = Buffer.concat(parts);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(this.generation >>> 0, 0);
    head.writeUInt32BE(body.length, 4);
    return Buffer.concat([head, body]);
  }

  // --- PERSISTENT RESERVE OUT (SPC-4 6.16) ---------------------------------------------------

  /**
   * Runs a PERSISTENT RESERVE OUT: `action` (CDB byte 1), `scopeType` (byte 2) and the
   * 24-byte parameter list (already checked for length by the caller). Returns the
   * nexuses a PREEMPT took the registration of (PREEMPT AND ABORT aborts their tasks).
   */
  out(by: ScsiNexus, action: number, scopeType: number, list: Buffer): string[] {
    const nexus = by.initiator;
    const key = list.readBigUInt64BE(0);
    const saKey = list.readBigUInt64BE(8);
    const flags = list.readUInt8(20);
    if (flags & 0x08) throw invalidParameter(20, 3); // SPEC_I_PT: not supported (SIP_C=0)
    if (flags & 0x01) throw invalidParameter(20, 0); // APTPL: registrations are not kept across power loss (PTPL_C=0)
    if (this.legacy !== null && this.legacy !== nexus) throw new ReservationConflict();
    const mine = this.registrations.get(nexus);
    const type = scopeType & 0x0f;
    const needsType = action === 1 || action === 2 || action === 4 || action === 5;
    if (needsType) {
      if ((scopeType >> 4) !== 0) throw invalidField(2, 7);
      if (!VALID_TYPES.has(type)) throw invalidField(2, 3);
    }
    switch (action) {
      case 0: case 6: { // REGISTER, REGISTER AND IGNORE EXISTING KEY
        if (action === 0) {
          if (mine === undefined ? key !== 0n : key !== mine.key) throw new ReservationConflict();
        }
        if (mine === undefined) {
          if (saKey === 0n) return [];
          if (this.registrations.size >= SCSI_MAX_REGISTRATIONS) throw illegal(Asc.INSUFFICIENT_REGISTRATION_RESOURCES);
          this.registrations.set(nexus, { key: saKey, transportId: Buffer.from(by.transportId), relativePort: by.relativePort });
        } else if (saKey === 0n) {
          this.unregister(nexus);
        } else {
          mine.key = saKey;
        }
        this.generation++;
        return [];
      }
      case 1: { // RESERVE
        this.checkKey(mine, key);
        const r = this.reservation;
        if (r === null) {
          this.reservation = { type, holder: nexus };
          return [];
        }
        if (!this.holds(nexus, r) || r.type !== type) throw new ReservationConflict();
        return [];
      }
      case 2: { // RELEASE
        this.checkKey(mine, key);
        const r = this.reservation;
        if (r === null || !this.holds(nexus, r)) return [];
        if (r.type !== type) throw illegal(Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
        this.reservation = null;
        if (r.type !== PrType.WRITE_EXCLUSIVE && r.type !== PrType.EXCLUSIVE_ACCESS) {
          for (const other of this.registrations.keys()) if (other !== nexus) this.attentions.raise(other, Asc.RESERVATIONS_RELEASED);
        }
        return [];
      }
      case 3: { // CLEAR
        this.checkKey(mine, key);
        for (const other of this.registrations.keys()) if (other !== nexus) this.attentions.raise(other, Asc.RESERVATIONS_PREEMPTED);
        this.registrations.clear();
        this.reservation = null;
        this.generation++;
        return [];
      }
      case 4: case 5: // PREEMPT, PREEMPT AND ABORT (the abort of the preempted nexuses' tasks is the transport's; here both preempt)
        this.checkKey(mine, key);
        {
          const preempted = this.preempt(nexus, saKey, type);
          this.generation++;
          return preempted;
        }
      default: // REGISTER AND MOVE (7) and reserved actions
        throw invalidField(1, 4);
    }
  }

  private checkKey(mine: Registration | undefined, key: bigint): void {
    if (mine === undefined || mine.key !== key) throw new ReservationConflict();
  }

  private unregister(nexus: string): void {
    this.registrations.delete(nexus);
    const r = this.reservation;
    if (r === null) return;
    if (allRegistrants(r.type)) {
      if (this.registrations.size === 0) this.reservation = null;
      else if (r.holder === nexus) r.holder = this.registrations.keys().next().value as string;
      return;
    }
    if (r.holder !== nexus) return;
    this.reservation = null;
    // SPC-4 5.13.11.2.2: releasing a registrants-only reservation by unregistering tells the other registrants.
    if (registrantsAccess(r.type)) for (const other of this.registrations.keys()) this.attentions.raise(other, Asc.RESERVATIONS_RELEASED);
  }

  /** SPC-4 5.13.11.4: PREEMPT by `nexus` of the registrations with `saKey` (and of the reservation if theirs). */
  private preempt(nexus: string, saKey: bigint, type: number): string[] {
    const removed: string[] = [];
    const r = this.reservation;
    const victims = (k: bigint): string[] => [...this.registrations].filter(([n, reg]) => reg.key === k && n !== nexus).map(([n]) => n);
    const remove = (list: string[]): void => {
      for (const n of list) {
        this.registrations.delete(n);
        this.attentions.raise(n, Asc.REGISTRATIONS_PREEMPTED);
        removed.push(n);
      }
    };
    if (r !== null && allRegistrants(r.type)) {
      if (saKey === 0n) {
        // Preempting an all-registrants reservation with key 0: every other registration goes, the new one is ours.
        remove([...this.registrations.keys()].filter((n) => n !== nexus));
        this.reservation = { type, holder: nexus };
      } else {
        remove(victims(saKey));
      }
      return removed;
    }
    const holderKey = r === null ? null : this.registrations.get(r.holder)?.key ?? null;
    if (r !== null && holderKey === saKey) {
      remove(victims(saKey));
      const changed = r.type !== type;
      this.reservation = { type, holder: nexus };
      if (changed) for (const other of this.registrations.keys()) if (other !== nexus) this.attentions.raise(other, Asc.RESERVATIONS_RELEASED);
      return removed;
    }
    if (saKey === 0n) throw invalidParameter(8);
    const list = victims(saKey);
    // The preempting nexus's own key may equal saKey: it stays registered, which counts as found.
    if (list.length === 0 && this.registrations.get(nexus)?.key !== saKey) throw new ReservationConflict();
    remove(list);
    return removed;
  }

  /** Registered keys (tests, status). */
  get registeredCount(): number { return this.registrations.size; }
}
