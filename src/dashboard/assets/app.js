// The dashboard page: one node's volumes and events, live from GET /api/v1/stream
// (a status every second, operator events as they happen). No framework.
import { clock, duration, el } from './format.js';
import { clearNotice, savedToken, saveToken } from './actions.js';
import { VolumeCard } from './volume.js';

/** Events kept on the page (the node keeps the last 1000; GET /api/v1/events). */
const EVENTS_SHOWN = 200;

const cards = new Map();
let lastStatus = null;

function onStatus(s) {
  lastStatus = s;
  const t = Date.now();
  document.getElementById('node-name').textContent = s.node;
  document.title = `Offsite: ${s.node}`;
  document.getElementById('node-meta').textContent = `node ${s.node}, version ${s.version}, up ${duration(s.uptimeSeconds)}`;
  setConnection('live', `live, updated ${clock(t)}`);
  const box = document.getElementById('volumes');
  if (cards.size === 0) box.textContent = '';
  // Each member's consistency group, with its members' statuses (a promote at a past point acts on the group).
  const groupOf = new Map();
  for (const g of s.groups ?? []) {
    const group = { name: g.name, volumes: s.volumes.filter((v) => g.members.includes(v.name)) };
    for (const m of g.members) groupOf.set(m, group);
  }
  const seen = new Set();
  for (const v of s.volumes) {
    seen.add(v.name);
    let card = cards.get(v.name);
    if (!card) {
      card = new VolumeCard(v.name);
      cards.set(v.name, card);
      box.append(card.root);
    }
    card.update(v, s.node, t, groupOf.get(v.name) ?? null);
  }
  for (const [name, card] of cards) {
    if (seen.has(name)) continue;
    card.destroy();
    cards.delete(name);
  }
  if (s.volumes.length === 0) box.replaceChildren(el('p', 'muted', 'This node serves no volumes.'));
  showGroups(s.groups ?? []);
  showUnavailable(s.unavailable ?? []);
}

/** The volumes this node could not open (status `unavailable`): why, since when; a reload tries again. */
function showUnavailable(list) {
  document.getElementById('unavailable-section').hidden = list.length === 0;
  document.getElementById('unavailable').replaceChildren(...list.map((u) => {
    // (A volume a reload reopens with its new file or journal folder is no fault: it comes back by itself.)
    const li = el('li', u.reopening ? 'group' : 'group bad');
    li.dataset.volume = u.name;
    if (u.reopening) {
      li.append(el('strong', 'group-name', u.name), el('span', 'group-state', ': reopening; '), el('span', 'msg', u.error),
        el('span', 'muted', `; not served for ${duration(u.forSeconds)}, served again once it opens`));
      return li;
    }
    li.append(el('strong', 'group-name', u.name), el('span', 'group-state bad', u.opening ? ': opening again now; ' : ': '),
      el('span', 'msg', u.error),
      el('span', 'muted', `; for ${duration(u.forSeconds)}${u.attempts > 1 ? `, ${u.attempts} tries` : ''}; put that right and reload the config`));
    return li;
  }));
}

/**
 * One line per consistency group (docs/GROUPS.md): its members, role, whether its
 * members come from one moment (and why not), its group point and the largest lag.
 */
function showGroups(groups) {
  document.getElementById('groups-section').hidden = groups.length === 0;
  const ul = document.getElementById('groups');
  ul.replaceChildren(...groups.map((g) => {
    const li = el('li', `group ${g.consistent ? 'ok' : 'bad'}`);
    li.dataset.group = g.name;
    const point = g.groupPoint === null ? 'no group point yet' : `group point ${g.groupPoint}${g.together ? ' (every member there)' : ''}`;
    li.append(el('strong', 'group-name', g.name), el('span', 'group-members', ` (${g.members.join(', ')}), ${g.role}: `),
      el('span', `group-state ${g.consistent ? 'ok' : 'bad'}`, g.consistent ? 'consistent' : `not consistent: ${g.reason ?? ''}`),
      el('span', 'muted', `; ${point}; lag ${duration(g.lagSeconds)}`));
    return li;
  }));
}

function eventItem(e) {
  const li = el('li', `event ${e.level}`);
  const time = el('time', 'muted', clock(e.time));
  time.dateTime = new Date(e.time).toISOString();
  li.append(time, el('span', `level ${e.level}`, e.level));
  if (e.volume) li.append(el('span', 'event-volume', e.volume));
  li.append(el('span', 'msg', e.msg));
  return li;
}

/** Newest first, at most EVENTS_SHOWN. */
function addEvents(list, replace) {
  const ol = document.getElementById('events');
  if (replace) ol.textContent = '';
  for (const e of list) ol.prepend(eventItem(e));
  while (ol.childElementCount > EVENTS_SHOWN) ol.lastElementChild.remove();
}

function setConnection(state, text) {
  const c = document.getElementById('connection');
  c.dataset.state = state;
  c.textContent = text;
}

function connect() {
  const es = new EventSource('/api/v1/stream');
  es.addEventListener('status', (m) => onStatus(JSON.parse(m.data)));
  es.addEventListener('events', (m) => addEvents(JSON.parse(m.data), true));
  es.addEventListener('event', (m) => addEvents([JSON.parse(m.data)], false));
  es.addEventListener('problem', (m) => setConnection('down', JSON.parse(m.data).error));
  es.addEventListener('error', () => {
    setConnection('down', 'not connected to the node: retrying…');
    // EventSource reconnects by itself (the stream asks for 2 s) after a network
    // error, but gives up for good on a refusal (503: every stream taken; 429: this
    // address's share taken). Then a new one is opened a little later.
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 10_000);
  });
  return es;
}

function setupToken() {
  const input = document.getElementById('token');
  const state = document.getElementById('token-state');
  const show = () => {
    state.textContent = savedToken() ? 'a token is saved in this browser' : 'no token saved: actions will be refused';
  };
  document.getElementById('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    saveToken(t);
    input.value = '';
    clearNotice();
    show();
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    saveToken('');
    input.value = '';
    show();
  });
  show();
}

setupToken();
connect();

/** For tests and the curious: the last status and each chart's points. */
window.__offsite = {
  status: () => lastStatus,
  series: (name) => cards.get(name)?.chart?.series() ?? null,
};
