// The owner's exports: start one through the exports API with the page's session, poll it every second
// to show the worker's progress, then offer the ZIP; earlier exports are listed with their links.
import {_, locale, ngettext} from './i18n.js';

const $ = (id) => document.getElementById(id);
const section = $('exports');
const api = section.dataset.api;
const [form, kind, format, button] = ['export-form', 'export-kind', 'export-format', 'export-button'].map($);
const [panel, stateText, bar, download, list] =
  ['export-status', 'export-state', 'export-progress', 'export-download', 'export-list'].map($);
const POLL_MS = 1000;

const headers = (json) => ({
  Accept: 'application/json',
  ...(json ? {'Content-Type': 'application/json'} : {}),
  'X-CSRF-Token': document.querySelector('meta[name=csrf-token]')?.content ?? '',
});

class ExportError extends Error {}

async function request(url, init = {}) {
  let response;
  try {
    response = await fetch(url, {credentials: 'same-origin', headers: headers(Boolean(init.body)), ...init});
  } catch {
    throw new ExportError(_('No connection to the server.'));
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    // The API's one error shape: a message, and per-field errors by location.
    const fields = Object.values(data?.errors ?? {}).flatMap((byField) =>
      Object.entries(byField).map(([name, problems]) => `${name}: ${[problems].flat().join(' ')}`));
    throw new ExportError([data?.message || _('The server answered %(status)s.', {status: response.status}), ...fields]
      .join(' '));
  }
  return data;
}

// GeoJSON and COCO hold marks: only for consensus results or raw answers.
function syncFormats() {
  const marks = kind.value === 'consensus' || kind.value === 'answers';
  for (const option of format.querySelectorAll('option[data-marks]')) option.disabled = !marks;
  if (format.selectedOptions[0]?.disabled) format.value = 'csv';
}

function show(exp) {
  if (exp.total > 0) {
    bar.max = exp.total;
    bar.value = exp.rows;
  } else if (exp.state === 'done') {
    bar.max = 1;
    bar.value = 1;
  } else {
    bar.removeAttribute('value'); // indeterminate until the worker has counted the rows
  }
  const texts = {
    pending: () => _('Waiting for a worker…'),
    running: () => (exp.total > 0 ? _('Exporting: %(done)s of %(total)s', {done: exp.rows, total: exp.total})
      : _('Exporting…')),
    done: () => ngettext('Done: %(num)d row', 'Done: %(num)d rows', exp.provenance?.counts?.rows ?? exp.rows),
    failed: () => {
      const reason = exp.error || _('unknown error');
      return _('The export failed: %(reason)s', {reason});
    },
  };
  stateText.textContent = texts[exp.state]?.() ?? exp.state;
  stateText.classList.toggle('failed', exp.state === 'failed');
  download.hidden = !exp.download_url;
  if (exp.download_url) download.href = exp.download_url;
}

function cell(...children) {
  const td = document.createElement('td');
  td.append(...children);
  return td;
}

// One earlier export: what and when, its rows, and its link (or its state while it has none).
function row(exp) {
  const when = document.createElement('small');
  when.textContent = new Date(exp.created_at).toLocaleString(locale);
  const rows = exp.state === 'done' ? String(exp.provenance?.counts?.rows ?? exp.rows) : `${exp.rows} / ${exp.total}`;
  const states = {pending: _('waiting'), running: _('running'), failed: _('failed')};
  let file = states[exp.state] ?? exp.state;
  if (exp.download_url) {
    file = document.createElement('a');
    file.href = exp.download_url;
    file.textContent = _('Download');
    file.setAttribute('download', '');
  }
  const tr = document.createElement('tr');
  tr.append(cell(`${exp.kind} · ${exp.format}`, when), cell(rows), cell(file));
  if (exp.state === 'failed') tr.title = exp.error ?? '';
  return tr;
}

async function refreshList() {
  try {
    const exports = await request(api);
    if (exports.length) list.replaceChildren(...exports.map(row));
  } catch {
    // The list is a convenience; the form still works.
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(exp) {
  const url = `${api}/${exp.id}`;
  while (exp.state === 'pending' || exp.state === 'running') {
    show(exp);
    await sleep(POLL_MS);
    exp = await request(url);
  }
  show(exp);
  return exp;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  button.disabled = true;
  panel.hidden = false;
  download.hidden = true;
  stateText.textContent = _('Starting…');
  stateText.classList.remove('failed');
  bar.removeAttribute('value');
  try {
    const exp = await request(api, {method: 'POST', body: JSON.stringify({kind: kind.value, format: format.value})});
    await follow(exp);
  } catch (error) {
    stateText.textContent = error instanceof ExportError ? error.message : _('Something went wrong.');
    stateText.classList.add('failed');
    bar.max = 1;
    bar.value = 0;
  } finally {
    button.disabled = false;
    refreshList();
  }
});

kind.addEventListener('change', syncFormats);
syncFormats();
refreshList();
