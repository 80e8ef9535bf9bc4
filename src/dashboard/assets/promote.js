// The promote dialogs' shared words and step (docs/FAILOVER.md, docs/HISTORY.md): a
// promote to the newest flush point ("Promote NAME here…" on a secondary's card) and to
// a past restore point ("Promote at this time…" of the history picker, history.js) say
// in the same words who takes over, what to do about the old primary, and why the node
// will refuse; force is offered only for a refusal force overrides, as `offsite promote
// --force` does.
import { confirmAction, runAction } from './actions.js';

/** The checkbox of a promote the node will refuse unless forced. */
const FORCE_LABEL = 'Promote anyway (force): I accept the risks above';

/** "db", "db and wal", "db, wal and log". */
export function names(list) {
  return list.length <= 1 ? list.join('') : `${list.slice(0, -1).join(', ')} and ${list.at(-1)}`;
}

/** What the promote makes of the replicas: "the replica becomes the primary, …, and export db is served read-write here". */
export function servedHere(volumes) {
  return volumes.length === 1
    ? `the replica becomes the primary, with a new generation, and export ${volumes[0]} is served read-write here`
    : `each replica becomes the primary, with a new generation, and exports ${names(volumes)} are served read-write here`;
}

/**
 * The refusal force overrides: the old primary still linked (`target`: the volume, or
 * "group erp"; `whose`: for a group, the members whose primary it is).
 */
export function stillConnected(target, here, peer, whose = null) {
  return `${peer} is still connected${whose ? ` (the primary of ${whose})` : ''}, so ${here} will refuse: two primaries would take writes apart. ` +
    `Demote ${target} on ${peer} first, or stop that node.`;
}

/** What the old primary needs, worded for the end of a sentence: "demote db on site-a; it then resyncs from site-b (…)". */
export function demoteThere(target, here, peer) {
  return `demote ${target} on ${peer}; it then resyncs from ${here} (a first sync by checksum: only regions that differ travel)`;
}

/**
 * Asks, then promotes: `target` is the volume or group the API acts on; `forceable`,
 * the warnings of refusals force overrides (the checkbox is offered only with one);
 * `body`, the promote's body without force. Resolves the node's answer, or null
 * (cancelled, or refused: the notice bar says why).
 */
export async function askPromote({ target, title, paragraphs, forceable, okLabel, body = {} }) {
  const answer = await confirmAction({
    title, paragraphs, warnings: forceable, okLabel, force: forceable.length > 0 ? FORCE_LABEL : null,
  });
  if (!answer.confirmed) return null;
  return runAction(target, 'promote', answer.force ? { ...body, force: true } : body);
}
