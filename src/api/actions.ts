// The actions `POST /api/v1/volumes/{name}/{action}` takes (docs/API.md), each a call
// on the node's RoleChanges with its body checked.
import { ActionError, type ActionResult, type RoleChanges } from '../node/roles.js';
import { parseDuration } from '../config/units.js';
import { holdError } from '../checkpoint/schedule.js';

export type Body = Record<string, unknown> | undefined;

export type Action = (a: RoleChanges, volume: string, body: Body) => Promise<ActionResult>;

/**
 * The actions `POST /api/v1/volumes/{name}/{action}` takes, and what each does. A
 * Map, not a plain object: the name comes from the URL, and on an object
 * `constructor` or `toString` would be found on its prototype and called.
 */
export const ACTIONS: ReadonlyMap<string, Action> = new Map<string, Action>([
  ['checkpoint', (a, v, b) => a.createCheckpoint(v, { label: str(b, 'label'), holdSeconds: hold(b) })],
  ['checkpoint-release', (a, v) => a.releaseCheckpoint(v)],
  ['drill-start', (a, v) => a.startDrill(v)],
  ['drill-stop', (a, v) => a.stopDrill(v)],
  ['verify', (a, v, b) => a.verify(v, b?.repair === true)],
  ['pause', (a, v) => a.pause(v, true)],
  ['resume', (a, v) => a.pause(v, false)],
  ['promote', (a, v, b) => a.promote(v, { force: b?.force === true })],
  ['demote', (a, v, b) => a.demote(v, { discardMyData: b?.discardMyData === true })],
]);

function str(b: Body, k: string): string | undefined {
  const v = b?.[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 128) throw new ActionError(400, `${k} must be a string of 1 to 128 characters`);
  return v;
}

function hold(b: Body): number | undefined {
  const v = b?.hold;
  if (v === undefined) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw new ActionError(400, 'hold must be a duration such as "2h" or a number of seconds');
  let seconds: number;
  try {
    seconds = parseDuration(v);
  } catch (e) {
    throw new ActionError(400, `hold: ${(e as Error).message}`);
  }
  // (RoleChanges checks it again, for the schedule and SNMP; here the message can quote the input.)
  const err = holdError(seconds);
  if (err) throw new ActionError(400, `hold ${typeof v === 'string' ? `"${v}"` : v}: ${err}`);
  return seconds;
}

export const ACTION_NAMES = [...ACTIONS.keys()];
