// A secondary's history (docs/HISTORY.md) on its volume card: the window it opens
// (oldest and newest restore point, how many, its bytes against its max, points dropped
// at the max), and the picker that takes a checkpoint, starts a drill or promotes at a
// past time (the actions' `at`, sent as milliseconds: the browser's local time is what
// you pick).
import { bytes, dateTimeSeconds, duration, el, localInput } from './format.js';
import { notice, runAction } from './actions.js';
import { askPromote, demoteThere, names, servedHere, stillConnected } from './promote.js';

/** Quick choices of the picker: label, how far back (seconds). */
const QUICK = [['15 min ago', 15 * 60], ['1 h ago', 3600], ['6 h ago', 6 * 3600], ['24 h ago', 86400]];

/** The picker's first value: this far back, or the oldest point when the history is younger. */
const DEFAULT_BACK_SECONDS = 15 * 60;

/** The restore points list (GET .../restore-points) is fetched again after this long. */
const POINTS_FRESH_MS = 10_000;

/** A time as the page says it: "2026-12-03 10:14:02 (3 h 12 min ago)". */
function when(ms, now) {
  return `${dateTimeSeconds(ms)} (${duration((now - ms) / 1000)} ago)`;
}

/**
 * A restore point as the page says it: "the restore point of 2026-12-03 10:14:02 (record 1234, 3 min ago)";
 * "record 1234 of site-a" once the replica followed a new primary (docs/HISTORY.md, "After a follow").
 */
export function pointText(p, now) {
  return `the restore point of ${dateTimeSeconds(p.time)} (${recordText(p)}, ${duration((now - p.time) / 1000)} ago)`;
}

function recordText(p) {
  return `record ${p.record ?? p.seq}${p.primary ? ` of ${p.primary}` : ''}`;
}

/** "12%", "<1%" for a little, "0%" for nothing. */
function percent(part, whole) {
  const p = Math.round((100 * part) / whole);
  return p === 0 && part > 0 ? '<1%' : `${p}%`;
}

/** The newest restore point at or before `at` (ms) of a list (oldest first), or null. */
export function newestAtOrBefore(list, at) {
  let p = null;
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].time <= at) {
      p = list[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return p;
}

/**
 * The newest group point at or before `at` that every member's list holds, as the node
 * picks it (src/group/past-point.ts): its number, its time (the newest of its members'
 * times) and each member's restore point of it (in the lists' order); null when none.
 */
export function groupPointAtOrBefore(lists, at) {
  const held = lists.map((l) => new Map(l.filter((p) => p.groupPoint !== undefined && p.time <= at).map((p) => [p.groupPoint, p])));
  let point = null;
  for (const gp of held[0].keys()) if (held.every((m) => m.has(gp)) && (point === null || gp > point)) point = gp;
  if (point === null) return null;
  const members = held.map((m) => m.get(point));
  return { point, time: Math.max(...members.map((p) => p.time)), members };
}

/** A volume's restore points (GET /api/v1/volumes/{name}/restore-points), oldest first; null if not answered. */
async function restorePoints(name) {
  try {
    const r = await fetch(`/api/v1/volumes/${encodeURIComponent(name)}/restore-points`);
    if (!r.ok) return null;
    return (await r.json()).points ?? [];
  } catch {
    return null;
  }
}

/** The last words of a promote at a past point: how to see the point before taking over there. */
const LOOK_FIRST = 'To look at that point first without changing anything, cancel and use Checkpoint at this time or Start drill at this time.';

/** The first whole second at or after a time: a point picked by its shown time is at or before it. */
function ceilSecond(ms) {
  return Math.ceil(ms / 1000) * 1000;
}

/** Fills the History fact of a volume card (`dd`, data-points: the point count, or absent). */
export function showHistoryFact(dd, v, now) {
  const h = v.history;
  if (!h) {
    delete dd.dataset.points;
    if (v.role === 'secondary') dd.textContent = "not kept (no history: in this volume's config; docs/HISTORY.md)";
    else if (v.peer) dd.textContent = `none here: ${v.peer} keeps it, when its config has history: for ${v.name}`;
    else dd.textContent = 'none (a volume without a peer keeps no history)';
    return;
  }
  dd.dataset.points = String(h.points);
  const parts = [];
  if (h.points === 0 || !h.oldest || !h.newest) parts.push('no restore point yet (the next flush point applied is the first)');
  else if (h.points === 1) parts.push(`1 restore point: ${when(h.oldest.time, now)}`);
  else parts.push(`${h.points} restore points, from ${when(h.oldest.time, now)} to ${when(h.newest.time, now)}`);
  parts.push(h.maxBytes
    ? `${bytes(h.bytes)} of history of ${bytes(h.maxBytes)} max (${percent(h.bytes, h.maxBytes)})`
    : `${bytes(h.bytes)} of history, no max`);
  parts.push(h.keepSeconds ? `keeps ${duration(h.keepSeconds)}` : 'no age limit');
  const text = el('span', '', parts.join('; '));
  // Dropped at the max before their keep ran out: the max is too small for the keep (without keep, the max is the limit).
  const early = h.droppedForSize > 0 && h.keepSeconds !== null;
  const dropped = el('span', early ? 'warn-text' : 'muted', h.droppedForSize > 0
    ? `; ${h.droppedForSize === 1 ? '1 point' : `${h.droppedForSize} points`} dropped at the max since the daemon started` +
      `${early ? ' (the max is too small for the keep)' : ''}`
    : '; no point dropped at the max');
  dropped.dataset.testid = `history-dropped-${v.name}`;
  const children = [text, dropped];
  if (h.maxBytes) {
    const m = el('meter');
    m.min = 0;
    m.max = h.maxBytes;
    m.value = Math.min(h.bytes, h.maxBytes);
    m.high = 0.9 * h.maxBytes;
    m.setAttribute('aria-label', `history: ${bytes(h.bytes)} of ${bytes(h.maxBytes)} max`);
    children.push(m);
  }
  dd.replaceChildren(...children);
}

/**
 * The picker of a secondary keeping history: a date and time (prefilled), quick
 * choices, what that time opens, and the buttons that take a checkpoint, start a
 * drill or promote there. `btn(key, label, onClick, cls)` makes a button the card
 * disables while an action runs; `checkpointBody()` gives the label and hold the
 * card's fields hold. The card gives its volume's status (`v`), node and group.
 */
export class PointPicker {
  constructor(card, btn, checkpointBody) {
    this.card = card;
    this.v = null;
    this.points = null; // { at, list }
    this.previewing = 0;
    const name = card.name;
    this.root = el('div', 'pick');
    this.root.setAttribute('role', 'group');
    this.root.setAttribute('aria-label', `A past point of ${name}`);
    this.root.dataset.testid = `pick-${name}`;
    const box = el('span', 'field');
    const label = el('label', '', 'Point in time (local)');
    label.htmlFor = `${card.id}-pick-at`;
    this.input = el('input');
    this.input.id = label.htmlFor;
    this.input.type = 'datetime-local';
    this.input.step = '1';
    this.input.addEventListener('input', () => this.preview());
    box.append(label, this.input);
    const quick = el('span', 'quick');
    quick.setAttribute('role', 'group');
    quick.setAttribute('aria-label', 'Quick choices');
    this.quick = [];
    for (const [text, back] of QUICK) {
      const b = el('button', 'quick-choice', text);
      b.type = 'button';
      b.addEventListener('click', () => this.choose(Date.now() - back * 1000));
      this.quick.push({ b, back });
      quick.append(b);
    }
    this.oldestButton = el('button', 'quick-choice', 'Oldest point');
    this.oldestButton.type = 'button';
    this.oldestButton.addEventListener('click', () => {
      if (this.v?.history?.oldest) this.choose(ceilSecond(this.v.history.oldest.time));
    });
    quick.append(this.oldestButton);
    this.hint = el('p', 'pick-hint muted');
    this.hint.setAttribute('aria-live', 'polite');
    this.hint.dataset.testid = `pick-hint-${name}`;
    const acts = el('span', 'pick-actions');
    acts.append(
      btn('checkpointAt', 'Checkpoint at this time', () => this.act('checkpoint', checkpointBody())),
      btn('drillAt', 'Start drill at this time', () => this.act('drill-start', {})),
      btn('promoteAt', 'Promote at this time…', () => this.promote(), 'danger'));
    this.root.append(box, quick, acts, this.hint);
    this.held = el('p', 'pick-held muted');
    this.held.dataset.testid = `pick-held-${name}`;
  }

  /** The elements to add to the card's controls. */
  elements() {
    return [this.root, this.held];
  }

  /** A new status: shown while the history can open a point (no checkpoint held, no drill). */
  update(v, now) {
    this.v = v;
    const h = v.role === 'secondary' ? v.history : null;
    const busy = v.checkpoint !== null || v.drill !== null;
    this.root.hidden = !h || busy;
    this.held.hidden = !h || !busy;
    if (!h) return;
    if (busy) {
      this.held.textContent = v.drill
        ? 'A drill runs: stop it (and release its checkpoint) to open another past point.'
        : `Checkpoint "${v.checkpoint.label}" is held: release it to take a checkpoint, start a drill or promote at a past time.`;
      return;
    }
    for (const { b, back } of this.quick) {
      const beyond = !h.oldest || now - back * 1000 < h.oldest.time;
      b.disabled = beyond;
      b.title = beyond ? 'before the oldest restore point' : '';
    }
    this.oldestButton.disabled = !h.oldest;
    if (this.input.value === '' && document.activeElement !== this.input) {
      const back = now - DEFAULT_BACK_SECONDS * 1000;
      this.choose(h.oldest ? Math.max(back, ceilSecond(h.oldest.time)) : back);
    }
  }

  /** Sets the picker to a time and says what it opens. */
  choose(ms) {
    this.input.value = localInput(ms);
    this.preview();
  }

  /** The picked time (ms), or NaN. The input's value has no zone: it is the browser's local time. */
  chosen() {
    return this.input.value ? new Date(this.input.value).getTime() : NaN;
  }

  /** Says which restore point the picked time opens (the newest at or before it), from the points list. */
  async preview() {
    const turn = ++this.previewing;
    const at = this.chosen();
    const h = this.v?.history;
    const say = (text) => {
      if (turn === this.previewing) this.hint.textContent = text;
    };
    if (!h) return;
    if (Number.isNaN(at)) return say('Pick a date and time.');
    if (!h.oldest) return say('The history has no restore point yet.');
    if (at < h.oldest.time) {
      return say(`Before the oldest restore point (${dateTimeSeconds(h.oldest.time)}): the node will refuse this time.`);
    }
    const list = await this.pointList();
    const now = Date.now();
    const p = list ? newestAtOrBefore(list, at) : null;
    if (p) say(`Opens ${pointText(p, now)}${h.newest && p.seq === h.newest.seq ? ', the newest' : ''}.`);
    else say(`Opens the newest restore point at or before ${dateTimeSeconds(at)}.`);
  }

  /** The restore points (GET /api/v1/volumes/{name}/restore-points), fetched again when older than 10 s; null if not answered. */
  async pointList() {
    if (this.points && Date.now() - this.points.at < POINTS_FRESH_MS) return this.points.list;
    const list = await restorePoints(this.card.name);
    if (list) this.points = { at: Date.now(), list };
    return list;
  }

  /** The action at the picked time. */
  act(action, body) {
    const at = this.chosen();
    if (Number.isNaN(at)) {
      notice('error', `Pick a date and time for the ${action === 'checkpoint' ? 'checkpoint' : 'drill'} of ${this.card.name} first. Nothing was changed.`);
      return null;
    }
    this.points = null; // (a new point may be listed by the time the answer comes)
    // (A member of a consistency group: the whole group opens at one group point, as the node requires.)
    return runAction(this.card.group?.name ?? this.card.name, action, { ...body, at });
  }

  /**
   * Promote at this time…: asks, naming the restore point the picked time goes to (the
   * newest at or before it, from the list read again now), then promotes there. `at` is
   * sent as that point's own time, so the node goes to the point the dialog named even
   * if a newer one at or before the picked time is listed meanwhile. A member of a
   * consistency group promotes its group, every member at one group point. What the
   * node would refuse whatever force says (no point that far back) is said here, and
   * nothing is sent.
   */
  async promote() {
    const at = this.chosen();
    const group = this.card.group;
    if (Number.isNaN(at)) {
      notice('error', `Pick a date and time for the promote of ${group ? `group ${group.name}` : this.card.name} first. Nothing was changed.`);
      return null;
    }
    this.points = null;
    return group ? this.promoteGroup(group, at) : this.promoteVolume(at);
  }

  async promoteVolume(at) {
    const { name, node: here, v } = this.card;
    const peer = v.peer ?? 'the primary';
    const list = await this.pointList();
    if (!list) {
      notice('error', `The restore points of ${name} could not be read, so the page cannot say which point a promote at ${dateTimeSeconds(at)} ` +
        `goes to. Nothing was changed: try again, or on ${here}: offsite promote ${name} --at ${new Date(at).toISOString()}`);
      return null;
    }
    const p = newestAtOrBefore(list, at);
    if (!p) {
      notice('error', `No restore point of ${name} is at or before ${dateTimeSeconds(at)} ` +
        `(${list.length > 0 ? `the oldest is ${pointText(list[0], Date.now())}` : 'the history has none yet'}): pick a later time. Nothing was changed.`);
      return null;
    }
    return askPromote({
      target: name,
      title: `Promote ${name} on ${here} at a past point?`,
      paragraphs: [
        `${here} will roll ${name} back to ${pointText(p, Date.now())}, the newest restore point at or before the time picked ` +
          `(${dateTimeSeconds(at)}), and take over ${name} there: ${servedHere([name])}.`,
        `Every change after that point is undone on the replica: neither what ${peer} wrote after ${dateTimeSeconds(p.time)} nor what ${here} ` +
          `received and has not applied yet is in the promoted volume. The history of ${name} is removed with the promote ` +
          '(a primary keeps none): no other past point opens after it.',
        `The link to ${peer} closes. ${peer} still holds the changes undone here and still takes itself for the primary: ` +
          `${demoteThere(name, here, peer)}, and discards what it holds after the point. On ${peer}: offsite demote ${name}, ` +
          `or Demote ${name} here… on its page.`,
        LOOK_FIRST,
      ],
      forceable: v.link === 'connected' && !(v.peers ?? []).some((x) => x.conflict) ? [stillConnected(name, here, peer)] : [],
      okLabel: `Roll back and promote ${name}`,
      body: { at: p.time },
    });
  }

  async promoteGroup(group, at) {
    const { name, node: here } = this.card;
    const g = group.name;
    const members = group.volumes.map((m) => m.name);
    const peer = group.volumes.find((m) => m.peer)?.peer ?? 'the primary';
    const refuse = (why) => {
      notice('error', `${name} is in consistency group ${g}, which is promoted as a whole, and ${why}. Nothing was changed.`);
      return null;
    };
    // (As the node refuses them: src/node/roles.ts, a group's promote --at.)
    const primary = group.volumes.filter((m) => m.role !== 'secondary').map((m) => m.name);
    if (primary.length > 0) {
      return refuse(`${names(primary)} ${primary.length === 1 ? 'is' : 'are'} primary here already (only a secondary keeps history): ` +
        `promote the others to their newest flush point (offsite promote ${g})`);
    }
    const bare = group.volumes.filter((m) => !m.history).map((m) => m.name);
    if (bare.length > 0) {
      return refuse(`${names(bare)} ${bare.length === 1 ? 'keeps' : 'keep'} no history, so the group has no past point ` +
        '(set history: on every member, docs/HISTORY.md)');
    }
    const lists = await Promise.all(members.map((m) => (m === name ? this.pointList() : restorePoints(m))));
    const unread = members.filter((m, k) => !lists[k]);
    if (unread.length > 0) {
      return refuse(`the restore points of ${names(unread)} could not be read, so the page cannot say which group point a promote at ` +
        `${dateTimeSeconds(at)} goes to; try again, or on ${here}: offsite promote ${g} --at ${new Date(at).toISOString()}`);
    }
    const pick = groupPointAtOrBefore(lists, at);
    if (!pick) {
      const oldest = members.map((m, k) => {
        const first = lists[k].find((p) => p.groupPoint !== undefined);
        return first ? `${m}'s oldest is group point ${first.groupPoint} of ${dateTimeSeconds(first.time)}` : `${m} holds no group point yet`;
      });
      return refuse(`no group point at or before ${dateTimeSeconds(at)} is in the history of every member (${oldest.join('; ')}): pick a later time`);
    }
    const linked = group.volumes.filter((m) => m.link === 'connected').map((m) => m.name);
    const records = members.map((m, k) => `${m} to ${recordText(pick.members[k])}`).join(', ');
    return askPromote({
      target: g,
      title: `Promote group ${g} on ${here} at a past point?`,
      paragraphs: [
        `${name} is in consistency group ${g} with ${names(members.filter((m) => m !== name))}: the whole group is promoted, every member at one moment.`,
        `${here} will roll ${names(members)} back to group point ${pick.point} of ${dateTimeSeconds(pick.time)} ` +
          `(${duration((Date.now() - pick.time) / 1000)} ago), the newest at or before the time picked (${dateTimeSeconds(at)}) ` +
          `that every member's history holds: ${records}; and take over each there: ${servedHere(members)}.`,
        `Every change after that point is undone on each replica: neither what ${peer} wrote to them after ${dateTimeSeconds(pick.time)} nor what ` +
          `${here} received and has not applied yet is in the promoted volumes. Their history is removed with the promote ` +
          '(a primary keeps none): no other past point opens after it.',
        `The links to ${peer} close. ${peer} still holds the changes undone here and still takes itself for the primary of ${names(members)}: ` +
          `${demoteThere(`group ${g}`, here, peer)}, and discards what it holds after the point. On ${peer}: offsite demote ${g}.`,
        LOOK_FIRST.replace('.', ` (of the whole group: the member's buttons act on ${g}).`),
      ],
      forceable: linked.length > 0 ? [stillConnected(`group ${g}`, here, peer, names(linked))] : [],
      okLabel: `Roll back and promote group ${g}`,
      body: { at: pick.time },
    });
  }
}
