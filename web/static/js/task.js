// The volunteer task page: show a unit, take an answer (labels or marks), send it, fetch the next.
import {forget, keep, kept, nextUnit, sendAnswer, uuid} from './api.js';
import {MarkingSurface} from './marking.js';

const $ = (id) => document.getElementById(id);
const settings = JSON.parse($('project-settings').textContent);
const task = $('task');
const base = task.dataset.api;
const [stage, image, status, message, retry] = ['stage', 'unit-image', 'status', 'message', 'retry'].map($);
const submitButton = $('submit');
const labelButtons = [...document.querySelectorAll('.label-button')];

let unit = null; // the unit on screen
let answerId = ''; // made once per unit: a retry sends the same id, so nothing is stored twice
let shownAt = 0;
let pending = null; // an answer sent but not yet stored
let retryAction = null;
let retryTimer = 0;
let backoff = 0;
let answered = 0;

const busy = () => task.classList.contains('busy');

function setBusy(on) {
  task.setAttribute('aria-busy', String(on));
  task.classList.toggle('busy', on);
  if (surface) surface.disabled = on;
}

function showProblem(text, action = null) {
  message.textContent = text;
  retryAction = action;
  retry.hidden = !action;
}

function clearProblem() {
  clearTimeout(retryTimer);
  showProblem('');
}

// Marking: the surface, its counter and buttons.
const surface = settings.task_type === 'marking'
  ? new MarkingSurface($('surface'), settings.marking_tool, (s) => {
    const n = s.marks.length;
    $('count').textContent = `${n} mark${n === 1 ? '' : 's'}`;
    $('undo').disabled = !s.history.length;
    $('remove').disabled = s.selected < 0;
    $('nothing').disabled = n > 0; // never throw away marks: remove them first
    submitButton.disabled = n === 0;
  })
  : null;

if (surface) {
  $('undo').addEventListener('click', () => surface.undo());
  $('remove').addEventListener('click', () => surface.remove());
  $('nothing').addEventListener('click', () => answer({marks: []}));
  submitButton.addEventListener('click', () => answer({marks: surface.payload}));
} else if (settings.multi_select) {
  for (const b of labelButtons) {
    b.addEventListener('click', () => {
      if (!busy()) b.setAttribute('aria-pressed', String(b.getAttribute('aria-pressed') !== 'true'));
    });
  }
  submitButton.addEventListener('click', () => answer({
    labels: labelButtons.filter((b) => b.getAttribute('aria-pressed') === 'true').map((b) => b.dataset.label),
  }));
} else {
  for (const b of labelButtons) {
    b.addEventListener('click', () => {
      if (busy()) return;
      b.classList.add('chosen');
      answer({label: b.dataset.label});
    });
  }
}

retry.addEventListener('click', () => retryAction?.());

async function loadNext() {
  setBusy(true);
  status.textContent = answered ? `Saved (${answered} done). Loading the next image…` : 'Loading…';
  let data;
  try {
    data = await nextUnit(base, settings.id);
  } catch (error) {
    status.textContent = '';
    showProblem(error.message, error.retryable ? loadNext : null);
    return;
  }
  if (data.unit) show(data.unit);
  else finish(data.message);
}

function show(next) {
  const focusWasHere = task.contains(document.activeElement);
  unit = next;
  answerId = uuid();
  image.width = unit.width;
  image.height = unit.height;
  stage.style.setProperty('--ratio', unit.width / unit.height);
  stage.style.aspectRatio = `${unit.width} / ${unit.height}`;
  image.onload = () => {
    shownAt = performance.now();
    stage.hidden = false;
    status.textContent = answered ? `${answered} done. Here is the next image.` : '';
    for (const b of labelButtons) {
      b.classList.remove('chosen');
      if (b.hasAttribute('aria-pressed')) b.setAttribute('aria-pressed', 'false');
    }
    surface?.reset(unit.width, unit.height);
    setBusy(false);
    if (focusWasHere) (surface ? surface.svg : labelButtons[0])?.focus();
  };
  image.onerror = () => showProblem('The image could not be loaded.', loadNext);
  image.src = unit.media_url;
}

function answer(payload) {
  if (!unit || busy()) return;
  const durationMs = Math.min(86_400_000, Math.max(0, Math.round(performance.now() - shownAt)));
  pending = {projectId: settings.id, unitId: unit.id, answerId, payload, durationMs};
  keep(pending);
  send();
}

async function send() {
  clearProblem();
  setBusy(true);
  status.textContent = 'Saving your answer…';
  try {
    await sendAnswer(base, pending);
  } catch (error) {
    status.textContent = '';
    if (error.retryable) {
      backoff = Math.min(60, backoff ? backoff * 2 : 2);
      showProblem(`${error.message} Your answer is kept and will be sent again in ${backoff} s.`, send);
      retryTimer = setTimeout(send, backoff * 1000);
      return;
    }
    forget(pending.projectId);
    pending = null;
    showProblem(error.message);
    // 404/409: the unit is gone or already answered; otherwise let the person change the answer.
    if (error.status === 404 || error.status === 409 || !unit) loadNext();
    else setBusy(false);
    for (const b of labelButtons) b.classList.remove('chosen');
    return;
  }
  forget(pending.projectId);
  pending = null;
  backoff = 0;
  answered += 1;
  loadNext();
}

function finish(text) {
  stage.hidden = true;
  task.hidden = true;
  const count = answered ? ` You answered ${answered} image${answered === 1 ? '' : 's'} this time.` : '';
  $('done-text').textContent = (text || 'Nothing left to do here.') + count;
  $('done').hidden = false;
  $('done').querySelector('h2').focus();
}

// An answer that could not be sent before the page was closed goes first.
pending = kept(settings.id);
if (pending) send();
else loadNext();
