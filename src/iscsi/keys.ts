// The operational text keys of RFC 7143 section 13 (and iSCSIProtocolLevel, RFC 7144):
// each with its negotiation type, default, range and what we answer. `answerKey` is
// the acceptor's rule of RFC 7143 6.2 for one key offered by the initiator, and
// `SessionParams` what a session runs with once the login is over.
import {
  ISCSI_FIRST_BURST_BYTES,
  ISCSI_MAX_BURST_BYTES,
  ISCSI_MAX_OUTSTANDING_R2T,
  ISCSI_MAX_RECV_DATA_SEGMENT,
} from '../limits/limits.js';

export interface SessionParams {
  headerDigest: boolean;
  dataDigest: boolean;
  /** The initiator's MaxRecvDataSegmentLength: the largest data segment we send it. */
  initiatorMaxRecv: number;
  /** Ours: the largest data segment it may send us. */
  targetMaxRecv: number;
  maxBurstLength: number;
  firstBurstLength: number;
  initialR2T: boolean;
  immediateData: boolean;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxConnections: number;
}

/** The RFC defaults (what holds for a key nobody offered). */
export function defaultParams(): SessionParams {
  return {
    headerDigest: false,
    dataDigest: false,
    initiatorMaxRecv: 8192,
    targetMaxRecv: ISCSI_MAX_RECV_DATA_SEGMENT,
    maxBurstLength: 262_144,
    firstBurstLength: 65_536,
    initialR2T: true,
    immediateData: true,
    maxOutstandingR2T: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    maxConnections: 1,
  };
}

type Kind =
  | { type: 'list'; ours: readonly string[] }
  | { type: 'or' | 'and'; ours: boolean }
  | { type: 'min' | 'max'; lo: number; hi: number; ours: number }
  | { type: 'declare-number'; lo: number; hi: number };

interface KeyDef {
  kind: Kind;
  /** Irrelevant in a discovery session (RFC 7143 section 13, per key). */
  normalOnly: boolean;
  /** LO/IO keys: negotiated only at login (in a Text Request they are answered Reject). */
  loginOnly: boolean;
  apply: (p: SessionParams, value: string) => void;
}

const U24 = 16_777_215;
const yes = (v: string): boolean => v === 'Yes';

/** The operational keys, RFC 7143 13.x (the section numbers are in docs/ISCSI-PROTOCOL.md). */
export const OPERATIONAL_KEYS: ReadonlyMap<string, KeyDef> = new Map<string, KeyDef>([
  ['HeaderDigest', {
    kind: { type: 'list', ours: ['None', 'CRC32C'] }, normalOnly: false, loginOnly: true,
    apply: (p, v) => { p.headerDigest = v === 'CRC32C'; },
  }],
  ['DataDigest', { kind: { type: 'list', ours: ['None', 'CRC32C'] }, normalOnly: false, loginOnly: true, apply: (p, v) => { p.dataDigest = v === 'CRC32C'; } }],
  ['MaxConnections', {
    kind: { type: 'min', lo: 1, hi: 65535, ours: 1 }, normalOnly: true, loginOnly: true,
    apply: (p, v) => { p.maxConnections = Number(v); },
  }],
  ['InitialR2T', { kind: { type: 'or', ours: false }, normalOnly: true, loginOnly: true, apply: (p, v) => { p.initialR2T = yes(v); } }],
  ['ImmediateData', { kind: { type: 'and', ours: true }, normalOnly: true, loginOnly: true, apply: (p, v) => { p.immediateData = yes(v); } }],
  ['MaxRecvDataSegmentLength', {
    kind: { type: 'declare-number', lo: 512, hi: U24 }, normalOnly: false, loginOnly: false,
    apply: (p, v) => { p.initiatorMaxRecv = Math.min(Number(v), ISCSI_MAX_RECV_DATA_SEGMENT); },
  }],
  ['MaxBurstLength', {
    kind: { type: 'min', lo: 512, hi: U24, ours: ISCSI_MAX_BURST_BYTES }, normalOnly: true, loginOnly: true,
    apply: (p, v) => { p.maxBurstLength = Number(v); },
  }],
  ['FirstBurstLength', {
    kind: { type: 'min', lo: 512, hi: U24, ours: ISCSI_FIRST_BURST_BYTES }, normalOnly: true, loginOnly: true,
    apply: (p, v) => { p.firstBurstLength = Number(v); },
  }],
  ['DefaultTime2Wait', {
    kind: { type: 'max', lo: 0, hi: 3600, ours: 2 }, normalOnly: false, loginOnly: true,
    apply: (p, v) => { p.defaultTime2Wait = Number(v); },
  }],
  ['DefaultTime2Retain', {
    kind: { type: 'min', lo: 0, hi: 3600, ours: 20 }, normalOnly: false, loginOnly: true,
    apply: (p, v) => { p.defaultTime2Retain = Number(v); },
  }],
  ['MaxOutstandingR2T', {
    kind: { type: 'min', lo: 1, hi: 65535, ours: ISCSI_MAX_OUTSTANDING_R2T }, normalOnly: true, loginOnly: true,
    apply: (p, v) => { p.maxOutstandingR2T = Number(v); },
  }],
  ['DataPDUInOrder', { kind: { type: 'or', ours: true }, normalOnly: true, loginOnly: true, apply: (p, v) => { p.dataPDUInOrder = yes(v); } }],
  ['DataSequenceInOrder', { kind: { type: 'or', ours: true }, normalOnly: true, loginOnly: true, apply: (p, v) => { p.dataSequenceInOrder = yes(v); } }],
  ['ErrorRecoveryLevel', {
    kind: { type: 'min', lo: 0, hi: 2, ours: 0 }, normalOnly: false, loginOnly: true,
    apply: (p, v) => { p.errorRecoveryLevel = Number(v); },
  }],
  ['OFMarker', { kind: { type: 'and', ours: false }, normalOnly: false, loginOnly: true, apply: () => {} }],
  ['IFMarker', { kind: { type: 'and', ours: false }, normalOnly: false, loginOnly: true, apply: () => {} }],
  ['TaskReporting', { kind: { type: 'list', ours: ['RFC3720'] }, normalOnly: false, loginOnly: true, apply: () => {} }],
  ['iSCSIProtocolLevel', { kind: { type: 'min', lo: 0, hi: 31, ours: 1 }, normalOnly: false, loginOnly: true, apply: () => {} }],
]);

/** Keys answered Irrelevant: marker intervals (markers are always No). */
const IRRELEVANT_KEYS = new Set(['OFMarkInt', 'IFMarkInt']);

/** Keys only a target sends: offered by an initiator they are answered Reject. */
export const TARGET_ONLY_KEYS = new Set(['TargetAlias', 'TargetAddress', 'TargetPortalGroupTag']);

export type KeyAnswer =
  /** Answer `value` (and `apply` it to the session's parameters). */
  | { kind: 'answer'; value: string; result: string | null }
  /** A declaration taken note of, nothing to answer. */
  | { kind: 'noted'; result: string };

const NUMBER = /^(0|[1-9][0-9]{0,9})$/;

/**
 * The acceptor's answer to an operational key offered by the initiator (RFC 7143 6.2):
 * a list gets the first value of the offer we support, a boolean its OR or AND with
 * ours, a number the min or max with ours, a declaration is noted. Out of range or
 * malformed: Reject. Unknown keys (X- keys included): NotUnderstood.
 */
export function answerKey(key: string, value: string, discovery: boolean): KeyAnswer {
  const def = OPERATIONAL_KEYS.get(key);
  if (def === undefined) {
    if (IRRELEVANT_KEYS.has(key)) return { kind: 'answer', value: 'Irrelevant', result: null };
    if (TARGET_ONLY_KEYS.has(key)) return { kind: 'answer', value: 'Reject', result: null };
    return { kind: 'answer', value: 'NotUnderstood', result: null };
  }
  if (discovery && def.normalOnly) return { kind: 'answer', value: 'Irrelevant', result: null };
  const k = def.kind;
  switch (k.type) {
    case 'list': {
      const offered = value.split(',');
      const pick = offered.find((v) => k.ours.includes(v));
      return pick === undefined ? { kind: 'answer', value: 'Reject', result: null } : { kind: 'answer', value: pick, result: pick };
    }
    case 'or':
    case 'and': {
      if (value !== 'Yes' && value !== 'No') return { kind: 'answer', value: 'Reject', result: null };
      const offered = value === 'Yes';
      const r = k.type === 'or' ? offered || k.ours : offered && k.ours;
      const s = r ? 'Yes' : 'No';
      return { kind: 'answer', value: s, result: s };
    }
    case 'min':
    case 'max': {
      if (!NUMBER.test(value)) return { kind: 'answer', value: 'Reject', result: null };
      const n = Number(value);
      if (n < k.lo || n > k.hi) return { kind: 'answer', value: 'Reject', result: null };
      const r = String(k.type === 'min' ? Math.min(n, k.ours) : Math.max(n, k.ours));
      return { kind: 'answer', value: r, result: r };
    }
    case 'declare-number': {
      if (!NUMBER.test(value)) return { kind: 'answer', value: 'Reject', result: null };
      const n = Number(value);
      if (n < k.lo || n > k.hi) return { kind: 'answer', value: 'Reject', result: null };
      return { kind: 'noted', result: value };
    }
  }
}

/** Applies a key's negotiated result to the parameters. */
export function applyKey(p: SessionParams, key: string, result: string): void {
  OPERATIONAL_KEYS.get(key)?.apply(p, result);
}

/** Whether a key may be negotiated in a Text Request (full feature phase). */
export function allowedInFullFeature(key: string): boolean {
  const def = OPERATIONAL_KEYS.get(key);
  return def !== undefined && !def.loginOnly;
}

/** After the login: FirstBurstLength never above MaxBurstLength (RFC 7143 13.14). */
export function settleParams(p: SessionParams): void {
  if (p.firstBurstLength > p.maxBurstLength) p.firstBurstLength = p.maxBurstLength;
}
