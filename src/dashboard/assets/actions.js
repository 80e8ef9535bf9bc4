// Operator actions: POST /api/v1/volumes/{name}/{action} with the node's bearer token
// (kept in this browser's localStorage, per node address), the answer in the notice
// bar, and the confirmation dialog for the actions that change roles.
import { el } from './format.js';

const TOKEN_KEY = 'offsite.token';

export function savedToken() {
  return localStorage.getItem(TOKEN_KEY) ?? '';
}

export function saveToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Shows a message under the header: kind ok, error or auth (a 401). */
export function notice(kind, text) {
  const n = document.getElementById('notice');
  n.dataset.kind = kind;
  n.textContent = text;
  n.hidden = false;
}

export function clearNotice() {
  const n = document.getElementById('notice');
  n.hidden = true;
  n.textContent = '';
}

const HOW_TO_GET_IT = 'Print it on the node with: offsite token -c <config file>, and enter it under "API token" above. Nothing was changed.';

/** Runs one action; returns its answer, or null after showing why it did not happen. */
export async function runAction(volume, action, body = {}) {
  const token = savedToken();
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(`/api/v1/volumes/${encodeURIComponent(volume)}/${encodeURIComponent(action)}`, { method: 'POST', headers, body: JSON.stringify(body) });
  } catch (e) {
    notice('error', `${action} on ${volume}: the node did not answer (${e.message}).`);
    return null;
  }
  const answer = await res.json().catch(() => ({}));
  if (res.status === 401) {
    notice('auth', token
      ? `Not authorized: the node refused the API token saved in this browser (wrong token). ${HOW_TO_GET_IT}`
      : `Not authorized: this action needs the node's API token, and none is saved in this browser. ${HOW_TO_GET_IT}`);
    return null;
  }
  if (!res.ok) {
    notice('error', answer.error ?? `${action} on ${volume} failed (HTTP ${res.status}).`);
    return null;
  }
  notice('ok', answer.message ?? `${action} on ${volume} done.`);
  return answer;
}

/**
 * Asks before a role change. `paragraphs` say what will happen; `warnings` why the
 * node may refuse; `force` labels a checkbox that overrides those refusals.
 * Resolves { confirmed, force }; Cancel and Escape resolve confirmed: false.
 */
export function confirmAction({ title, paragraphs, warnings = [], okLabel, force = null }) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  const body = document.getElementById('confirm-body');
  body.textContent = '';
  for (const p of paragraphs) body.append(el('p', '', p));
  for (const w of warnings) body.append(el('p', 'warning', w));
  const forceRow = document.getElementById('confirm-force-row');
  const forceBox = document.getElementById('confirm-force');
  forceBox.checked = false;
  forceRow.hidden = force === null;
  document.getElementById('confirm-force-label').textContent = force ?? '';
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel;
  return new Promise((resolve) => {
    const done = (confirmed) => {
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dlg.removeEventListener('cancel', onCancel);
      if (dlg.open) dlg.close();
      resolve({ confirmed, force: confirmed && forceBox.checked });
    };
    const onOk = () => done(true);
    const onCancel = (ev) => {
      ev?.preventDefault?.();
      done(false);
    };
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dlg.addEventListener('cancel', onCancel);
    dlg.showModal();
  });
}
