// The actions `POST /api/v1/volumes/{name}/{action}` takes (docs/API.md), each a call
// on the node's actions (src/contract/actions.ts) with its body checked, and the HTTP
// status each reason for a refusal is answered with.
import { ActionRefused, type ActionResult, type NodeActions, type RefusalReason } from '../contract/actions.js';
import { parseDuration, parseMoment } from '../units/units.js';
import { holdError } from '../checkpoint/schedule.js';

export type Body = Record<string, unknown> | undefined;

export type Action = (a: NodeActions, volume: string, body: Body) => Promise<ActionResult>;

/** A refused action's HTTP status, by reason (docs/API.md): the one place the API turns the node's reasons into HTTP. */
export const REFUSAL_STATUS: Readonly<Record<RefusalReason, number>> = {
  'not-found': 404,
  'invalid': 400,
  'not-replicated': 409,
  'wrong-role': 409,
  'no-link': 409,
  'busy': 409,
  'conflict': 409,
  'unavailable': 503,
};

/**
 * The actions `POST /api/v1/volumes/{name}/{action}` takes, and what each does. A
 * Map, not a plain object: the name comes from the URL, and on an object
 * `constructor` or `toString` would be found on its prototype and called.
 */
export const ACTIONS: ReadonlyMap<string, Action> = new Map<string, Action>([
  ['checkpoint', (a, v, b) => {
    const at = moment(b);
    return a.createCheckpoint(v, { label: str(b, 'label'), holdSeconds: hold(b), ...(at === undefined ? {} : { at }) });
  }],
  ['checkpoint-release', (a, v) => a.releaseCheckpoint(v)],
  ['drill-start', (a, v, b) => a.startDrill(v, { at: moment(b) })],
  ['drill-stop', (a, v) => a.stopDrill(v)],
  ['verify', (a, v, b) => a.verify(v, b?.repair === true)],
  ['pause', (a, v) => a.pause(v, true)],
  ['resume', (a, v) => a.pause(v, false)],
  ['promote', (a, v, b) => {
    const at = moment(b);
    return a.promote(v, { force: b?.force === true, ...(at === undefined ? {} : { at }) });
  }],
  ['demote', (a, v, b) => a.demote(v, { discardMyData: b?.discardMyData === true })],
]);

function str(b: Body, k: string): string | undefined {
  const v = b?.[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 128) throw new ActionRefused('invalid', `${k} must be a string of 1 to 128 characters`);
  return v;
}

/** `at`: a moment of the history (ISO 8601, "15m ago", now, or ms since the epoch). */
function moment(b: Body): number | undefined {
  const v = b?.at;
  if (v === undefined) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw new ActionRefused('invalid', 'at must be a time such as "2026-12-03T10:14:00Z" or "15m ago"');
  try {
    return parseMoment(v);
  } catch (e) {
    throw new ActionRefused('invalid', `at: ${(e as Error).message}`);
  }
}

function hold(b: Body): number | undefined {
  const v = b?.hold;
  if (v === undefined) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw new ActionRefused('invalid', 'hold must be a duration such as "2h" or a number of seconds');
  let seconds: number;
  try {
    seconds = parseDuration(v);
  } catch (e) {
    throw new ActionRefused('invalid', `hold: ${(e as Error).message}`);
  }
  // (RoleChanges checks it again, for the schedule and SNMP; here the message can quote the input.)
  const err = holdError(seconds);
  if (err) throw new ActionRefused('invalid', `hold ${typeof v === 'string' ? `"${v}"` : v}: ${err}`);
  return seconds;
}

export const ACTION_NAMES = [...ACTIONS.keys()];
