// The owner's batch upload: send the file to the batch API with the page's session, then poll the
// batch every second and show the worker's progress, what was imported and what was rejected (and why).
import {_, ngettext} from './i18n.js';

const $ = (id) => document.getElementById(id);
const form = $('upload-form');
const [fileInput, tileSize, overlap, button] = ['upload-file', 'upload-tile-size', 'upload-overlap', 'upload-button']
  .map($);
const [panel, stateText, bar, summary, rejectedList] =
  ['upload-status', 'upload-state', 'upload-progress', 'upload-summary', 'upload-rejected'].map($);
const POLL_MS = 1000;

const headers = () => ({
  Accept: 'application/json',
  'X-CSRF-Token': document.querySelector('meta[name=csrf-token]')?.content ?? '',
});

class UploadError extends Error {}

async function request(url, init = {}) {
  let response;
  try {
    response = await fetch(url, {credentials: 'same-origin', headers: headers(), ...init});
  } catch {
    throw new UploadError(_('No connection to the server.'));
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    // The API's one error shape: a message, and per-field errors by location.
    const fields = Object.values(data?.errors ?? {}).flatMap((byField) =>
      Object.entries(byField).map(([name, problems]) => `${name}: ${[problems].flat().join(' ')}`));
    throw new UploadError([data?.message || _('The server answered %(status)s.', {status: response.status}), ...fields]
      .join(' '));
  }
  return data;
}

function show(batch) {
  const {state, total, processed} = batch;
  if (total > 0) {
    bar.max = total;
    bar.value = processed;
  } else if (state === 'done') {
    bar.max = 1;
    bar.value = 1;
  } else {
    bar.removeAttribute('value'); // indeterminate until the worker has counted the entries
  }
  const tiles = batch.kind === 'tiles';
  const texts = {
    pending: () => _('Uploaded; waiting for a worker…'),
    processing: () => {
      if (!total) return _('Processing…');
      return tiles ? ngettext('Processing: %(done)s of %(num)d tile', 'Processing: %(done)s of %(num)d tiles', total, {done: processed})
        : ngettext('Processing: %(done)s of %(num)d file', 'Processing: %(done)s of %(num)d files', total, {done: processed});
    },
    done: () => (tiles
      ? ngettext('Done: %(done)s of %(num)d tile processed', 'Done: %(done)s of %(num)d tiles processed', total, {done: processed})
      : ngettext('Done: %(done)s of %(num)d file processed', 'Done: %(done)s of %(num)d files processed', total, {done: processed})),
    failed: () => _('The batch failed'),
  };
  stateText.textContent = texts[state]?.() ?? state;
}

function finish(batch) {
  if (batch.state === 'failed') {
    fail(batch.error || _('The batch could not be imported.'));
  } else {
    const rejected = batch.rejected.length;
    summary.textContent = ngettext('%(num)d unit imported', '%(num)d units imported', batch.imported) +
      (rejected ? ngettext('; %(num)d file not imported:', '; %(num)d files not imported:', rejected) : '.');
  }
  rejectedList.replaceChildren(...batch.rejected.map(({name, reason}) => {
    const item = document.createElement('li');
    const file = document.createElement('strong');
    file.textContent = name;
    item.append(file, `: ${reason}`);
    return item;
  }));
  button.disabled = false;
}

function fail(text) {
  summary.textContent = text;
  summary.setAttribute('role', 'alert');
  summary.classList.add('failed');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(url) {
  let failures = 0;
  for (;;) {
    await sleep(POLL_MS * Math.min(2 ** failures, 30));
    let batch;
    try {
      batch = await request(url);
    } catch (error) {
      failures += 1; // keep polling: the worker goes on whether or not this page can see it
      summary.textContent = [error.message, _('Retrying…')].join(' ');
      continue;
    }
    failures = 0;
    summary.textContent = '';
    show(batch);
    if (batch.state === 'done' || batch.state === 'failed') return finish(batch);
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = fileInput.files[0];
  if (!file) return;
  const body = new FormData();
  body.append('file', file);
  if (tileSize.value) body.append('tile_size', tileSize.value);
  if (overlap.value) body.append('overlap', overlap.value);
  button.disabled = true;
  panel.hidden = false;
  summary.textContent = '';
  summary.removeAttribute('role');
  summary.classList.remove('failed');
  rejectedList.replaceChildren();
  stateText.textContent = _('Uploading %(file)s…', {file: file.name});
  bar.removeAttribute('value');
  let batch;
  try {
    batch = await request(form.dataset.api, {method: 'POST', body});
  } catch (error) {
    stateText.textContent = _('The upload failed');
    fail(error.message);
    button.disabled = false;
    return;
  }
  show(batch);
  await follow(`${form.dataset.api}/${batch.id}`);
});
