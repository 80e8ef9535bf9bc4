// One volume's card: what it is (role, state, link, backlog, lag, history, checkpoint,
// drill), sync or verify progress, the rate chart, and the actions its role allows here.
import { RateChart } from './chart.js';
import { bytes, dateTime, duration, el, rate } from './format.js';
import { confirmAction, runAction } from './actions.js';
import { PointPicker, pointText, showHistoryFact } from './history.js';
import { askPromote, demoteThere, names, servedHere, stillConnected } from './promote.js';

const FIELDS = [
  ['role', 'Role'],
  ['state', 'State'],
  ['link', 'Link'],
  ['backlog', 'Backlog'],
  ['lag', 'Lag (RPO)'],
  ['journal', 'Journal'],
  ['shipping', 'Shipping'],
  ['epoch', 'Epoch'],
  ['history', 'History'],
  ['checkpoint', 'Checkpoint'],
  ['drill', 'Drill'],
  ['iscsi', 'iSCSI'],
];

export class VolumeCard {
  constructor(name) {
    this.name = name;
    this.role = null;
    this.chart = null;
    this.v = null;
    this.node = '';
    this.group = null;
    const id = `vol-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    this.id = id;
    this.root = el('article', 'volume');
    this.root.dataset.testid = `volume-${name}`;
    this.root.setAttribute('aria-labelledby', `${id}-h`);
    const head = el('header', 'volume-head');
    const h = el('h3', '', name);
    h.id = `${id}-h`;
    this.badges = el('span', 'badges');
    this.size = el('span', 'muted');
    head.append(h, this.badges, this.size);
    this.dl = el('dl', 'facts');
    this.dd = {};
    for (const [key, label] of FIELDS) {
      const dt = el('dt', '', label);
      const dd = el('dd');
      dd.dataset.field = key;
      dd.dataset.testid = `${key}-${name}`;
      this.dd[key] = dd;
      this.dl.append(dt, dd);
    }
    this.progress = el('div', 'progress');
    this.progress.hidden = true;
    this.progressLabel = el('span', 'progress-label');
    this.progressLabel.id = `${id}-progress-label`;
    this.progressBar = el('progress');
    this.progressBar.setAttribute('aria-labelledby', this.progressLabel.id);
    this.progressBar.dataset.testid = `progress-${name}`;
    this.progressText = el('span', 'muted');
    this.progress.append(this.progressLabel, this.progressBar, this.progressText);
    const fig = el('figure', 'chart');
    this.caption = el('figcaption');
    this.plotBox = el('div', 'plot');
    this.plotBox.dataset.testid = `chart-${name}`;
    this.plotBox.dataset.samples = '0';
    this.plotBox.setAttribute('role', 'img');
    fig.append(this.caption, this.plotBox);
    this.controls = el('div', 'controls');
    this.controls.setAttribute('role', 'group');
    this.controls.setAttribute('aria-label', `Actions on ${name}`);
    this.root.append(head, this.dl, this.progress, fig, this.controls);
  }

  /** A new status of this volume (t: when it arrived, ms; group: its consistency group { name, volumes }, or null). */
  update(v, node, t, group = null) {
    this.v = v;
    this.node = node;
    this.group = group;
    if (v.role !== this.role) this.becomeRole(v.role);
    // (A group member's role changes act on its group: the buttons say so.)
    const who = group ? `group ${group.name}` : this.name;
    if (this.buttons?.promote) this.buttons.promote.textContent = `Promote ${who} here…`;
    if (this.buttons?.demote) this.buttons.demote.textContent = `Demote ${who} here…`;
    this.chart.push(t, v.hostBytes, v.wireBytes);
    this.root.dataset.role = v.role;
    this.badges.textContent = '';
    this.badges.append(badge(v.role, `role ${v.role}`));
    this.badges.append(v.consistent ? badge('consistent', 'good') : badge('not consistent', 'bad'));
    const several = (v.peers ?? []).length > 1;
    if (v.link !== 'none' && !several) this.badges.append(v.link === 'connected' ? badge('link up', 'good') : badge('link down', 'bad'));
    // Several secondaries (docs/PEERS.md): a badge for each.
    if (several) {
      for (const p of v.peers) {
        this.badges.append(p.link === 'connected' ? badge(`${p.name} up`, 'good') : badge(`${p.name} down`, 'bad'));
        if (p.detached) this.badges.append(badge(`${p.name} detached`, 'warn'));
        if (p.firstSyncWaitsFor) this.badges.append(badge(`${p.name} first sync waits`, 'warn'));
      }
    }
    if (v.paused) this.badges.append(badge('paused', 'warn'));
    // A peer that could not open the volume (its Hello said why): nothing of it flows there.
    for (const p of v.peers ?? []) {
      if (!p.unavailable) continue;
      const b = badge(`not open on ${p.name}`, 'bad');
      b.title = p.unavailable;
      this.badges.append(b);
    }
    // A link that is up but does not carry the volume: its roles conflict (a split brain, two primaries, ...).
    for (const p of v.peers ?? []) {
      if (!p.conflict) continue;
      const b = badge(p.conflict.code === 'split-brain' ? `split brain with ${p.name}` : `not paired with ${p.name}`, 'bad');
      b.title = p.conflict.message;
      this.badges.append(b);
    }
    if (v.tracking === 'bitmap') this.badges.append(badge('bitmap', 'bad'));
    this.size.textContent = bytes(v.sizeBytes);
    const f = this.dd;
    f.role.textContent = v.role === 'primary'
      ? `primary: takes the host's writes here${v.peer ? `, replicates to ${(v.peers ?? []).map((p) => p.name).join(' and ') || v.peer}` : ''}`
      : `secondary: replica of ${v.peer ?? 'its primary'}, read-only here`;
    f.state.textContent = stateText(v);
    f.link.textContent = linkText(v);
    f.backlog.textContent = backlogText(v);
    f.lag.textContent = v.role === 'primary'
      ? (v.lagSeconds > 0
        ? `${v.lagSeconds < 10 ? `${v.lagSeconds.toFixed(1)} s` : duration(v.lagSeconds)}: the oldest change ${v.peer ?? 'the peer'} has not acked`
        : '0 s: everything acked')
      : `measured on ${v.peer ?? 'the primary'}`;
    f.journal.textContent = v.journalCapacityBytes > 0
      ? `${bytes(v.journalUsedBytes)} of ${bytes(v.journalCapacityBytes)} ` +
        `(${Math.round((100 * v.journalUsedBytes) / v.journalCapacityBytes)}%)${v.role === 'secondary' ? ', receive log' : ''}`
      : 'none';
    f.shipping.textContent = shippingText(v);
    f.epoch.textContent = String(v.epoch);
    showHistoryFact(f.history, v, t);
    f.checkpoint.textContent = checkpointText(v, t);
    f.drill.textContent = v.drill
      ? `running${v.checkpoint?.point ? ` over ${pointText(v.checkpoint.point, t)}` : ''}: export ${v.drill.export}, ${bytes(v.drill.bytesWritten)} written`
      : 'none';
    f.iscsi.textContent = iscsiText(v);
    this.showProgress(v);
    const { avg, peak } = this.chart.linkStats();
    this.caption.textContent = v.role === 'primary'
      ? `Host writes vs link sends, last 2 min: link average ${rate(avg)}, peak ${rate(peak)}`
      : `Received over the link, last 2 min: average ${rate(avg)}, peak ${rate(peak)}`;
    this.plotBox.setAttribute('aria-label', this.caption.textContent);
    this.showControls(v, t);
  }

  becomeRole(role) {
    this.role = role;
    this.chart?.destroy();
    this.plotBox.textContent = '';
    this.chart = new RateChart(this.plotBox, role);
    this.buildControls(role);
  }

  showProgress(v) {
    const p = this.progress;
    if (v.resyncing && v.role === 'primary' && v.resyncTotalBytes === 0) {
      // No round open yet: one about to begin, or a peer starting again from its last flush point.
      this.progressLabel.textContent = 'Resync';
      this.progressBar.removeAttribute('value');
      this.progressText.textContent = 'pending: the replica is to be compared by hash when its comparison opens';
      p.hidden = false;
    } else if (v.resyncing && v.role === 'primary') {
      const total = Math.max(1, v.resyncTotalBytes);
      const done = Math.min(total, Math.max(0, v.resyncTotalBytes - v.resyncLeftBytes));
      this.progressLabel.textContent = 'Resync';
      this.progressBar.max = total;
      this.progressBar.value = done;
      const eta = v.resyncRateBytesPerSecond > 0 ? `, ${rate(v.resyncRateBytesPerSecond)}, ETA ${duration(v.resyncEtaSeconds)}` : '';
      this.progressText.textContent = `${Math.floor((100 * done) / total)}%: ${bytes(v.resyncLeftBytes)} of ${bytes(v.resyncTotalBytes)} to send${eta}`;
      p.hidden = false;
    } else if (v.resyncing) {
      this.progressLabel.textContent = 'Resync';
      this.progressBar.removeAttribute('value');
      this.progressText.textContent = v.consistent
        ? `receiving a resync round; the last flush-point image is served meanwhile (progress on ${v.peer})`
        : `receiving the first sync (progress on ${v.peer})`;
      p.hidden = false;
    } else if (v.verify && v.verify.state === 'running') {
      const r = v.verify;
      this.progressLabel.textContent = 'Verify';
      this.progressBar.max = Math.max(1, r.totalRegions);
      this.progressBar.value = r.checkedRegions;
      const pct = r.totalRegions > 0 ? Math.floor((100 * r.checkedRegions) / r.totalRegions) : 100;
      this.progressText.textContent = `${pct}%: ${r.differingRegions.length} regions differ, ${rate(r.rateBytesPerSecond)}, ETA ${duration(r.etaSeconds)}`;
      p.hidden = false;
    } else {
      p.hidden = true;
    }
  }

  buildControls(role) {
    const c = this.controls;
    c.textContent = '';
    this.buttons = {};
    const btn = (key, label, onClick, cls = '') => {
      const b = el('button', cls, label);
      b.type = 'button';
      b.addEventListener('click', () => this.busy(onClick));
      this.buttons[key] = b;
      return b;
    };
    this.picker = null;
    if (role === 'secondary') {
      const labelIn = input(`${this.id}-cp-label`, 'Checkpoint label', 'manual');
      const holdIn = input(`${this.id}-cp-hold`, 'Hold for', 'until released, or 2h');
      this.checkpointInputs = [labelIn.box, holdIn.box];
      const checkpointBody = () => {
        const body = {};
        if (labelIn.input.value.trim()) body.label = labelIn.input.value.trim();
        if (holdIn.input.value.trim()) body.hold = holdIn.input.value.trim();
        return body;
      };
      // A past point of the history (docs/HISTORY.md): its own row, with the label and hold above.
      this.picker = new PointPicker(this, btn, checkpointBody);
      c.append(labelIn.box, holdIn.box,
        // (A member of a consistency group: these act on the whole group, as the node requires.)
        btn('checkpoint', 'Create checkpoint', () => runAction(this.target, 'checkpoint', checkpointBody())),
        btn('release', 'Release checkpoint', () => runAction(this.target, 'checkpoint-release')),
        btn('drillStart', 'Start drill', () => runAction(this.target, 'drill-start')),
        btn('drillStop', 'Stop drill', () => runAction(this.target, 'drill-stop')),
        btn('promote', `Promote ${this.name} here…`, () => this.promote(), 'danger'),
        ...this.picker.elements());
    } else {
      this.checkpointInputs = [];
      c.append(
        btn('pause', 'Pause shipping', () => runAction(this.name, 'pause')),
        btn('resume', 'Resume shipping', () => runAction(this.name, 'resume')),
        btn('verify', `Verify against ${this.v?.peer ?? 'the peer'}`, () => runAction(this.name, 'verify')),
        btn('demote', `Demote ${this.name} here…`, () => this.demote(), 'danger'));
    }
  }

  showControls(v, t) {
    const b = this.buttons;
    const replicated = v.peer !== null;
    this.controls.hidden = !replicated;
    if (v.role === 'secondary') {
      const held = v.checkpoint !== null;
      b.checkpoint.hidden = held;
      for (const box of this.checkpointInputs) box.hidden = held;
      b.release.hidden = !held || v.drill !== null;
      b.drillStart.hidden = v.drill !== null;
      b.drillStop.hidden = v.drill === null;
      this.picker.update(v, t);
    } else {
      b.pause.hidden = v.paused;
      b.resume.hidden = !v.paused;
      b.verify.hidden = v.verify?.state === 'running';
    }
  }

  /** Runs an action with this card's buttons disabled. */
  async busy(fn) {
    const all = Object.values(this.buttons);
    for (const b of all) b.disabled = true;
    this.root.setAttribute('aria-busy', 'true');
    try {
      await fn();
    } finally {
      for (const b of all) b.disabled = false;
      this.root.removeAttribute('aria-busy');
    }
  }

  /**
   * What the card's checkpoint, drill, promote and demote act on: the volume, or its
   * consistency group (the node refuses them for one member: docs/GROUPS.md).
   */
  get target() {
    return this.group?.name ?? this.name;
  }

  /** "db", or "group erp (db and wal)": what a role change's words name. */
  get targetWords() {
    return this.group ? `group ${this.group.name} (${names(this.group.volumes.map((m) => m.name))})` : this.name;
  }

  async promote() {
    const v = this.v;
    const here = this.node;
    const peer = v.peer ?? 'the primary';
    const members = this.group ? this.group.volumes : [v];
    const warnings = [];
    // (Not while the volume is in conflict with that peer: the link does not carry it, and the node allows the promote.)
    if (members.some((m) => m.link === 'connected' && !(m.peers ?? []).some((p) => p.conflict))) {
      warnings.push(stillConnected(this.group ? `group ${this.group.name}` : this.name, here, peer));
    }
    for (const m of members.filter((x) => !x.consistent)) {
      const why = m.resyncing ? 'its first sync has not completed' : 'an apply failed and waits to be redone';
      warnings.push(`The replica of ${m.name} is not a flush-point image (${why}), so ${here} will refuse.`);
    }
    const what = this.targetWords;
    return askPromote({
      target: this.target,
      title: `Promote ${what} on ${here}?`,
      paragraphs: [
        `${here} will take over ${what}: ${servedHere(members.map((m) => m.name))}` +
          `${this.group ? ', every member at one group point (the newest every member holds)' : ''}.`,
        `${here} applies what its receive log holds durably, up to the last flush point; records received after that flush point are discarded, ` +
          'and a resync round in progress is rolled back to the image served before it.' +
          `${v.checkpoint ? ` Checkpoint "${v.checkpoint.label}" is released${v.drill ? ' and the drill is stopped' : ''}.` : ''}`,
        `Writes ${peer} acknowledged to its host after that flush point (whatever had not reached ${here} as part of a complete flush point) ` +
          `are lost: they are not in the promoted volume, and a failback discards them on ${peer}. The link to ${peer} closes.`,
        `To fail back later, ${demoteThere(this.name, here, peer)}.`,
      ],
      forceable: warnings,
      okLabel: `Promote ${this.group ? `group ${this.group.name}` : this.name}`,
    });
  }

  async demote() {
    const v = this.v;
    const here = this.node;
    const peer = v.peer ?? 'the peer';
    const what = this.targetWords;
    const answer = await confirmAction({
      title: `Demote ${what} on ${here}?`,
      paragraphs: [
        `${here} stops being the primary of ${what}: new host writes are refused (EPERM), writes in flight finish, ` +
          `and its journal, dirty bitmap and activity log are removed. ${what} becomes ${peer}'s secondary, read-only here.`,
        `The writes ${here} has that never reached ${peer} are discarded (the backlog now: ${bytes(v.backlogBytes)}). ` +
          `At the next link ${peer} runs a first sync by checksum; until it ends this side is not consistent.`,
        `Do this to fail back after ${peer} was promoted, or before promoting ${peer}.`,
      ],
      okLabel: `Demote ${this.group ? `group ${this.group.name}` : this.name}`,
    });
    if (!answer.confirmed) return null;
    return runAction(this.target, 'demote');
  }

  destroy() {
    this.chart?.destroy();
    this.root.remove();
  }
}

function badge(text, kind) {
  const b = el('span', `badge ${kind}`, text);
  return b;
}

function input(id, label, placeholder) {
  const box = el('span', 'field');
  const l = el('label', '', label);
  l.htmlFor = id;
  const i = el('input');
  i.id = id;
  i.type = 'text';
  i.placeholder = placeholder;
  i.autocomplete = 'off';
  box.append(l, i);
  return { box, input: i };
}

function stateText(v) {
  const parts = [v.consistent ? 'consistent (a flush-point image)' : 'not consistent'];
  if (v.tracking === 'journal') parts.push('tracking by journal');
  else if (v.tracking === 'bitmap') parts.push(`tracking by bitmap: the journal overflowed, ${bytes(v.dirtyBytes)} await a resync`);
  if (v.resyncing) parts.push(v.role === 'primary' && v.resyncTotalBytes === 0 ? 'a comparison by hash pending' : 'resync round open');
  // (A unit being applied is no inconsistency: readers wait for it, then see the next flush point.)
  if (v.applying) parts.push(`applying records ${v.applying.fromSeq}..${v.applying.toSeq}`);
  if (v.paused) parts.push('shipping paused by the operator');
  if (v.verify && v.verify.state !== 'running') parts.push(`last verify ${v.verify.state}: ${v.verify.message}`);
  return parts.join('; ');
}

function linkText(v) {
  if (v.link === 'none') return 'not replicated (no peer)';
  const cap = v.linkRateBytesPerSecond ? `, rate cap ${rate(v.linkRateBytesPerSecond)}` : ', no rate cap';
  if ((v.peers ?? []).length > 1) {
    return `${v.peers.map(peerText).join('; ')}${v.linkRateBytesPerSecond ? `; the link to ${v.peer} capped at ${rate(v.linkRateBytesPerSecond)}` : ''}`;
  }
  const conflict = (v.peers ?? []).find((p) => p.conflict)?.conflict;
  if (v.link === 'connected' && conflict) return `up to ${v.peer}, but the volume is not paired: ${conflict.message}`;
  return v.link === 'connected' ? `up to ${v.peer}${cap}` : `down: ${v.peer} not connected${cap}`;
}

/** One secondary of a primary with several (docs/PEERS.md): "down: site-c not connected (detached: kept in its own bitmap, 12 MiB behind)". */
function peerText(p) {
  const state = p.link === 'connected' ? `up to ${p.name}` : `down: ${p.name} not connected`;
  const more = [
    p.unavailable ? `it could not open the volume: ${p.unavailable}` : '',
    p.conflict ? `not paired: ${p.conflict.message}` : '',
    p.detached ? 'detached: kept in its own bitmap' : '',
    p.firstSyncWaitsFor ? `its first sync waits for the resync round of ${p.firstSyncWaitsFor}` : '',
    p.backlogBytes > 0 ? `${bytes(p.backlogBytes)} behind` : '',
    p.lagSeconds > 0 ? `lag ${duration(p.lagSeconds)}` : '',
  ].filter(Boolean);
  return more.length > 0 ? `${state} (${more.join(', ')})` : state;
}

function backlogText(v) {
  if (v.role === 'secondary') return `${bytes(v.backlogBytes)} (${records(v.backlogRecords)}) in the receive log, not yet applied`;
  if (v.tracking === 'bitmap') return `${bytes(v.backlogBytes)} of dirty regions to resync`;
  return `${bytes(v.backlogBytes)} (${records(v.backlogRecords)}) not yet acked by ${v.peer ?? 'the peer'}`;
}

/**
 * "zstd level 3 (auto); 2.9x journal bytes per wire byte; 12 MiB coalesced away; round trip 22 ms;
 * link carries 1.2 MiB/s; window 9.9 MiB; batches of 2.4 MiB; drains in 4 min".
 */
function shippingText(v) {
  const s = v.shipping;
  if (!s) return v.role === 'secondary' ? `received from ${v.peer ?? 'the primary'}` : 'none (no peer)';
  const parts = [
    s.level ? `zstd level ${s.level} (${s.compression})` : `uncompressed (${s.compression})`,
    `${s.compressionRatio.toFixed(1)}x journal bytes per wire byte`,
  ];
  if (s.coalescedBytes > 0) parts.push(`${bytes(s.coalescedBytes)} coalesced away`);
  if (s.rttMs !== null) parts.push(`round trip ${s.rttMs < 1000 ? `${Math.round(s.rttMs)} ms` : duration(s.rttMs / 1000)}`);
  if (s.capacityBytesPerSecond) parts.push(`link carries ${bytes(s.capacityBytesPerSecond)}/s`);
  if (s.windowBytes !== null) parts.push(`window ${bytes(s.windowBytes)}`);
  if (s.batchBytes) parts.push(`batches of ${bytes(s.batchBytes)}`);
  if (v.backlogBytes > 0) parts.push(s.drainSeconds === null ? 'not draining' : `drains in ${duration(s.drainSeconds)}`);
  return parts.join('; ');
}

function records(n) {
  return n === 1 ? '1 record' : `${n} records`;
}

function checkpointText(v, now) {
  const c = v.checkpoint;
  if (!c) return v.role === 'primary' ? `none here (checkpoints are taken on ${v.peer ?? 'the secondary'})` : 'none';
  const age = duration((now - c.createdAt) / 1000);
  const hold = c.holdUntil ? `held until ${dateTime(c.holdUntil)} (${duration((c.holdUntil - now) / 1000)} left)` : 'held until released';
  // Of a past point of the history: which point it holds (the replica stays current).
  if (c.point) {
    return `"${c.label}" holds ${pointText(c.point, now)}, taken ${dateTime(c.createdAt)} (${age} ago), ${hold}; ` +
      `export ${c.export} (the replica stays current)`;
  }
  return `"${c.label}" taken ${dateTime(c.createdAt)} (${age} ago), ${hold}; export ${c.export}`;
}

/** "iqn…:db, 2 sessions: iqn.host1 from 10.0.0.5:50312, …" (iSCSI off: "not served"). */
function iscsiText(v) {
  if (!v.iscsi) return 'not served (no iscsi: section)';
  const who = (ss) => (ss.length === 0
    ? 'no session'
    : `${ss.length} session${ss.length === 1 ? '' : 's'}: ${ss.map((x) => `${x.initiator} from ${x.address}`).join(', ')}`);
  const parts = [`${v.iscsi.target}, LUN ${v.iscsi.lun}, ${who(v.iscsi.sessions)}`];
  for (const x of v.iscsi.exports) parts.push(`${x.export} as ${x.target}, ${who(x.sessions)}`);
  return parts.join('; ');
}
