// The login phase (RFC 7143 section 6.3 and 11.12-11.13) as a pure machine: it takes
// one whole login request (its continuations joined) and says what to answer. No
// socket, no session table: the connection asks it, then does what it says (send the
// response, close on a refusal, enter the full feature phase).
//
// Stages: security (CSG 0: AuthMethod, CHAP), operational (CSG 1: section 13's keys),
// full feature (NSG 3). The initiator asks to move on with the T bit; we agree unless
// authentication is still under way. Every refusal has its Status-Class and Detail.
import type { IscsiAuth, IscsiTarget, IscsiTargetTable } from './targets.js';
import {
  CHAP_MAX_CHALLENGE_BYTES, CHAP_MD5, chapResponse, decodeBinary, encodeBinary, newChallenge, sameName, verifyResponse, type ChapChallenge,
} from './chap.js';
import { answerKey, applyKey, defaultParams, settleParams, type SessionParams } from './keys.js';
import type { LoginRequest } from './pdu.js';
import type { TextPair } from './text.js';
import { ISCSI_MAX_RECV_DATA_SEGMENT } from '../limits/limits.js';

/** Login Status-Class and Status-Detail (RFC 7143 11.13.5), as one 16-bit code. */
export const LoginStatus = {
  SUCCESS: 0x0000,
  INITIATOR_ERROR: 0x0200,
  AUTH_FAILURE: 0x0201,
  AUTHORIZATION_FAILURE: 0x0202,
  TARGET_NOT_FOUND: 0x0203,
  TARGET_REMOVED: 0x0204,
  UNSUPPORTED_VERSION: 0x0205,
  TOO_MANY_CONNECTIONS: 0x0206,
  MISSING_PARAMETER: 0x0207,
  CANT_INCLUDE_IN_SESSION: 0x0208,
  SESSION_TYPE_NOT_SUPPORTED: 0x0209,
  SESSION_DOES_NOT_EXIST: 0x020a,
  INVALID_DURING_LOGIN: 0x020b,
  TARGET_ERROR: 0x0300,
  SERVICE_UNAVAILABLE: 0x0301,
  OUT_OF_RESOURCES: 0x0302,
} as const;

export const STAGE_SECURITY = 0;
export const STAGE_OPERATIONAL = 1;
export const STAGE_FULL_FEATURE = 3;

export type LoginStep =
  /** Answer with these keys; `transit` (to `nsg`) when we agree to move on. */
  | { kind: 'reply'; transit: boolean; csg: number; nsg: number; pairs: TextPair[]; done: boolean }
  /** Refuse the login: answer with this status and close the connection. `why` is for the operator. */
  | { kind: 'refuse'; status: number; why: string };

export interface LoginIdentity {
  initiatorName: string;
  sessionType: 'Normal' | 'Discovery';
  target: IscsiTarget | null;
}

type ChapState = 'none' | 'wait-algorithm' | 'wait-response' | 'done';

export class LoginNegotiation {
  readonly params: SessionParams = defaultParams();
  identity: LoginIdentity | null = null;
  private auth: IscsiAuth | null = null;
  private stage = -1;
  private authMethod: 'None' | 'CHAP' | null = null;
  private chap: ChapState = 'none';
  private challenge: ChapChallenge | null = null;
  private readonly seen = new Set<string>();
  private declaredOurs = false;

  /** `tpgt`: the target portal group tag we answer with (1: the only one). */
  constructor(private readonly targets: IscsiTargetTable, private readonly tpgt = 1) {}

  get authenticated(): boolean {
    return this.authMethod !== null && (this.authMethod === 'None' || this.chap === 'done');
  }

  step(req: LoginRequest, pairs: readonly TextPair[]): LoginStep {
    if (req.versionMin > 0) return refuse(LoginStatus.UNSUPPORTED_VERSION, `asks for iSCSI version ${req.versionMin} or later (we speak version 0, RFC 7143)`);
    if (req.csg === 2 || req.csg === STAGE_FULL_FEATURE) return refuse(LoginStatus.INITIATOR_ERROR, `login request in stage ${req.csg}`);
    if (req.transit && (req.nsg <= req.csg || req.nsg === 2)) {
      return refuse(LoginStatus.INITIATOR_ERROR, `asks to move from stage ${req.csg} to stage ${req.nsg}`);
    }
    if (this.stage !== -1 && req.csg < this.stage) return refuse(LoginStatus.INITIATOR_ERROR, `went back from stage ${this.stage} to stage ${req.csg}`);
    const first = this.stage === -1;
    this.stage = req.csg;
    const answer: TextPair[] = [];
    const given = new Map<string, string>();
    for (const [k, v] of pairs) {
      // Identity keys may be said again (libiscsi repeats them at each stage); any other key once.
      if (given.has(k) || (this.seen.has(k) && !IDENTITY_KEYS.has(k))) return refuse(LoginStatus.INITIATOR_ERROR, `sent the key ${k} twice`);
      given.set(k, v);
    }
    for (const k of given.keys()) this.seen.add(k);

    if (first) {
      const r = this.identify(given);
      if (r) return r;
      if (this.identity!.sessionType === 'Normal') answer.push(['TargetPortalGroupTag', String(this.tpgt)]);
    }
    const id = this.identity!;

    // Security keys.
    const sec = this.security(req, given, answer);
    if (sec) return sec;
    if (req.csg === STAGE_OPERATIONAL && this.authMethod === null) {
      // The security stage skipped: only possible when no authentication is asked for.
      if (this.auth!.chap !== null) return refuse(LoginStatus.AUTH_FAILURE, 'skipped the security stage, but CHAP is required');
      this.authMethod = 'None';
    }

    // Operational keys.
    for (const [k, v] of given) {
      if (IDENTITY_KEYS.has(k) || k === 'AuthMethod' || k.startsWith('CHAP_')) continue;
      if (k === 'SendTargets') {
        answer.push([k, 'Irrelevant']);
        continue;
      }
      const a = answerKey(k, v, id.sessionType === 'Discovery');
      if (a.kind === 'answer') answer.push([k, a.value]);
      if (a.result !== null) applyKey(this.params, k, a.result);
    }
    if (req.csg === STAGE_OPERATIONAL && !this.declaredOurs) {
      // Our receive limit is declarative: said once, whether or not the initiator said its own.
      this.declaredOurs = true;
      answer.push(['MaxRecvDataSegmentLength', String(ISCSI_MAX_RECV_DATA_SEGMENT)]);
      this.params.targetMaxRecv = ISCSI_MAX_RECV_DATA_SEGMENT;
    }
    if (id.sessionType === 'Normal' && this.params.maxConnections !== 1) this.params.maxConnections = 1;

    let transit = req.transit;
    if (req.csg === STAGE_SECURITY && !this.authenticated) transit = false;
    const done = transit && req.nsg === STAGE_FULL_FEATURE;
    if (done) {
      if (!this.authenticated) return refuse(LoginStatus.AUTH_FAILURE, 'asked for the full feature phase before authenticating');
      settleParams(this.params);
    }
    return { kind: 'reply', transit, csg: req.csg, nsg: transit ? req.nsg : req.csg, pairs: answer, done };
  }

  /** The first request: who logs in, to what, and whether it may. */
  private identify(given: Map<string, string>): LoginStep | null {
    const initiatorName = given.get('InitiatorName');
    if (!initiatorName) return refuse(LoginStatus.MISSING_PARAMETER, 'sent no InitiatorName');
    const st = given.get('SessionType') ?? 'Normal';
    if (st !== 'Normal' && st !== 'Discovery') return refuse(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, `asked for SessionType=${st}`);
    if (st === 'Discovery') {
      this.identity = { initiatorName, sessionType: 'Discovery', target: null };
      this.auth = this.targets.discoveryAuth;
      if (!allowed(this.auth, initiatorName)) return refuse(LoginStatus.AUTHORIZATION_FAILURE, `initiator ${initiatorName} is not on the discovery list`);
      return null;
    }
    const targetName = given.get('TargetName');
    if (!targetName) return refuse(LoginStatus.MISSING_PARAMETER, 'sent no TargetName for a normal session');
    const target = this.targets.lookup(targetName);
    if (!target) return refuse(LoginStatus.TARGET_NOT_FOUND, `target ${targetName} does not exist`);
    this.identity = { initiatorName, sessionType: 'Normal', target };
    this.auth = target.auth;
    if (!allowed(target.auth, initiatorName)) {
      return refuse(LoginStatus.AUTHORIZATION_FAILURE, `initiator ${initiatorName} is not on ${target.exportName}'s list`);
    }
    return null;
  }

  private security(req: LoginRequest, given: Map<string, string>, answer: TextPair[]): LoginStep | null {
    const auth = this.auth!;
    const method = given.get('AuthMethod');
    const hasChapKeys = [...given.keys()].some((k) => k.startsWith('CHAP_'));
    if ((method !== undefined || hasChapKeys) && req.csg !== STAGE_SECURITY) {
      return refuse(LoginStatus.INITIATOR_ERROR, 'sent authentication keys outside the security stage');
    }
    if (method !== undefined) {
      if (this.authMethod !== null) return refuse(LoginStatus.INITIATOR_ERROR, 'offered AuthMethod again');
      const offered = method.split(',');
      const want = auth.chap !== null ? 'CHAP' : 'None';
      if (!offered.includes(want)) {
        answer.push(['AuthMethod', 'Reject']);
        return refuse(LoginStatus.AUTH_FAILURE, auth.chap !== null
          ? `offered AuthMethod=${method}, but CHAP is required`
          : `offered AuthMethod=${method}, but this target has no CHAP secret (AuthMethod=None)`);
      }
      this.authMethod = want;
      answer.push(['AuthMethod', want]);
      if (want === 'CHAP') this.chap = 'wait-algorithm';
    } else if (req.csg === STAGE_SECURITY && this.authMethod === null && req.transit) {
      // Moving on without having offered AuthMethod: only when none is needed.
      if (auth.chap !== null) return refuse(LoginStatus.AUTH_FAILURE, 'did not offer AuthMethod, but CHAP is required');
      this.authMethod = 'None';
    }
    if (!hasChapKeys) return null;
    if (this.authMethod !== 'CHAP') return refuse(LoginStatus.INITIATOR_ERROR, 'sent CHAP keys without AuthMethod=CHAP');
    if (this.chap === 'wait-algorithm') {
      const algs = given.get('CHAP_A');
      if (algs === undefined) return refuse(LoginStatus.AUTH_FAILURE, 'sent CHAP keys before CHAP_A');
      if (!algs.split(',').includes(String(CHAP_MD5))) {
        answer.push(['CHAP_A', 'Reject']);
        return refuse(LoginStatus.AUTH_FAILURE, `offered CHAP_A=${algs} (only 5, MD5, is supported)`);
      }
      this.challenge = newChallenge();
      this.chap = 'wait-response';
      answer.push(['CHAP_A', String(CHAP_MD5)], ['CHAP_I', String(this.challenge.id)], ['CHAP_C', encodeBinary(this.challenge.challenge)]);
      return null;
    }
    if (this.chap !== 'wait-response') return refuse(LoginStatus.AUTH_FAILURE, 'sent CHAP keys after CHAP was done');
    const name = given.get('CHAP_N');
    const resp = given.get('CHAP_R');
    if (name === undefined || resp === undefined) return refuse(LoginStatus.AUTH_FAILURE, 'did not answer the CHAP challenge (CHAP_N and CHAP_R)');
    const r = decodeBinary(resp);
    const secret = auth.chap!;
    // Both checks always run, so a wrong user and a wrong secret take the same time.
    const nameOk = sameName(name, secret.user);
    const respOk = r !== null && verifyResponse(this.challenge!, secret.secret, r);
    if (!nameOk || !respOk) {
      return refuse(LoginStatus.AUTH_FAILURE, nameOk ? `gave a wrong CHAP response for user ${name}` : `gave CHAP user ${name}, not the configured one`);
    }
    const mi = given.get('CHAP_I');
    const mc = given.get('CHAP_C');
    if (mi !== undefined || mc !== undefined) {
      if (mi === undefined || mc === undefined) return refuse(LoginStatus.AUTH_FAILURE, 'asked for mutual CHAP with only one of CHAP_I and CHAP_C');
      if (auth.mutual === null) return refuse(LoginStatus.AUTH_FAILURE, 'asked for mutual CHAP, but no mutual secret is configured');
      if (!/^(0|[1-9][0-9]{0,2})$/.test(mi) || Number(mi) > 255) return refuse(LoginStatus.AUTH_FAILURE, `sent CHAP_I=${mi.slice(0, 20)}`);
      const c = decodeBinary(mc);
      if (c === null || c.length === 0 || c.length > CHAP_MAX_CHALLENGE_BYTES) {
        return refuse(LoginStatus.AUTH_FAILURE, 'sent a malformed mutual CHAP challenge');
      }
      if (c.equals(this.challenge!.challenge)) return refuse(LoginStatus.AUTH_FAILURE, 'sent back our own CHAP challenge (a reflection attack)');
      answer.push(['CHAP_N', auth.mutual.user], ['CHAP_R', encodeBinary(chapResponse(Number(mi), auth.mutual.secret, c))]);
    }
    this.chap = 'done';
    return null;
  }
}

/** Keys that identify the session, said by the initiator at its first request. */
const IDENTITY_KEYS = new Set(['InitiatorName', 'TargetName', 'SessionType', 'InitiatorAlias']);

function allowed(auth: IscsiAuth, initiator: string): boolean {
  return auth.initiators === null || auth.initiators.includes(initiator);
}

function refuse(status: number, why: string): LoginStep {
  return { kind: 'refuse', status, why };
}
