// The volunteer task page: show a unit, take an answer (labels, marks, "not sure") or a skip, keep the
// answer on the device until the server has it, and go on meanwhile with the unit fetched ahead.
import {getJson, nextUnits, renewIdentity, skipUnit, uuid} from './api.js';
import {openDialog, setUpDialog, setUpTutorial} from './dialogs.js';
import {_, locale, ngettext} from './i18n.js';
import {MarkingSurface} from './marking.js';
import {AnswerQueue} from './queue.js';
import {Session} from './session.js';

const $ = (id) => document.getElementById(id);
const settings = JSON.parse($('project-settings').textContent);
const task = $('task');
const base = task.dataset.api;
const [stage, image, status, feedback, queueNote, message, retry, problemSkip, done] =
  ['stage', 'unit-image', 'status', 'feedback', 'queue-note', 'message', 'retry', 'problem-skip', 'done'].map($);
const feedbackClose = $('feedback-close');
const notices = document.querySelector('.notices');
const submitButton = $('submit');
const labelButtons = [...document.querySelectorAll('.label-button')];
const marking = settings.task_type === 'marking';
const LOW_DATA = 'microtasks:low-data';
const REPLY_WAIT_MS = 2500; // how long an answer's reply (and its feedback) is awaited before going on without it
const MAX_LEASE = 20; // the most units one next-unit call leases

let unit = null; // the unit on screen, with the id of its answer; `answered` once answered or skipped
let ahead = []; // units leased ahead: {unit, image: its image preloading, or null}
const gone = new Set(); // units answered or skipped on this device: never shown again
let awaiting = null; // the answer to the unit on screen while its reply is awaited
let replyTimer = 0;
let loadTimer = 0;
let loadBackoff = 0;
let advancing = null;
let prefetching = null;
let retryAction = null;
let finished = false;
let renewed = false;
let lowData = false;
try { lowData = localStorage.getItem(LOW_DATA) === '1'; } catch { /* storage off */ }

const busy = () => task.classList.contains('busy');
const names = (labels) => new Intl.ListFormat(locale, {type: 'conjunction'})
  .format(labels.map((label) => settings.names?.[label] ?? label));

let pendingFeedback = '';

function setBusy(on) {
  task.setAttribute('aria-busy', String(on));
  task.classList.toggle('busy', on);
  if (surface) surface.disabled = on;
  if (!on && pendingFeedback) setFeedback(pendingFeedback);
}

// A message over the top of the image (about the last answer), until dismissed or the next answer.
// Screen readers ignore a live region's changes inside a busy element, and do not announce them once
// it is not busy: a message that comes while the task is busy is shown (and announced) when it is not.
function setFeedback(text) {
  pendingFeedback = text && busy() ? text : '';
  if (pendingFeedback) return;
  feedback.textContent = text;
  feedbackClose.hidden = !text;
}

function showProblem(text, action = null, canSkip = false) {
  message.textContent = text;
  retryAction = action;
  retry.hidden = !action;
  problemSkip.hidden = !canSkip;
}

const clearProblem = () => showProblem('');

// -- the session counter, in the page's header --------------------------------------------------------

const sessionText = $('session-text');
const sessionBar = $('session-progress');

function showSession(s) {
  const minutes = Math.floor(s.s.activeMs / 60_000);
  const answers = ngettext('%(num)d answer', '%(num)d answers', s.s.answers);
  const time = _('%(done)s of %(goal)s min',
    {done: minutes.toLocaleString(locale), goal: (s.s.goalMs / 60_000).toLocaleString(locale)});
  const text = `${answers} · ${time}`;
  if (sessionText.textContent !== text) {
    // Two parts that each stay on one line: a narrow top bar breaks the text between them only.
    const [first, second] = [answers, time].map((part) => Object.assign(document.createElement('span'),
      {textContent: part}));
    sessionText.replaceChildren(first, ' · ', second);
  }
  sessionBar.max = s.s.goalMs / 1000;
  sessionBar.value = Math.min(s.s.activeMs, s.s.goalMs) / 1000;
}

const session = new Session(settings.id, showSession);
showSession(session);

// -- answers waiting on the device ----------------------------------------------------------------------

function showQueue() {
  const parts = [];
  const problem = queue.problem;
  // While the answer on screen is awaited, the message under the task says it all.
  if (queue.size && !awaiting && (problem || navigator.onLine === false)) {
    parts.push(ngettext('%(num)d answer waiting to be sent.', '%(num)d answers waiting to be sent.', queue.size));
    if (problem) {
      parts.push(problem.error.message,
        ngettext('Trying again in %(num)d second.', 'Trying again in %(num)d seconds.', problem.seconds));
    }
  }
  if (queue.held.length) {
    parts.push(ngettext('%(num)d answer from an earlier session is kept on this device but cannot be sent.',
      '%(num)d answers from an earlier session are kept on this device but cannot be sent.', queue.held.length));
  }
  const text = parts.join(' ');
  if (queueNote.textContent !== text) queueNote.textContent = text;
}

const settled = (record) => {
  if (awaiting?.answerId !== record.answerId) return false;
  awaiting = null;
  clearTimeout(replyTimer);
  return true;
};

const queue = new AnswerQueue(base, settings.id, location.href, {
  stored(record, reply) {
    session.stored(reply);
    showQueue();
    replied(reply, settled(record));
  },
  rejected(record, error) {
    showQueue();
    if (settled(record)) refused(error);
    else setFeedback([_('An earlier answer could not be saved.'), error.message].join(' '));
  },
  waiting(error, seconds) {
    if (awaiting && readyAhead()) moveOn();
    else if (awaiting) stuck(error, seconds);
    showQueue();
  },
  changed: showQueue,
});

// What the reply to an answer tells the volunteer; `onScreen`: the answer's unit is still shown.
function replied(reply, onScreen) {
  const gold = reply.gold;
  let text = '';
  if (gold) text = goldMessage(gold, onScreen);
  else if (reply.unit_full && !reply.unit_complete && reply.created) {
    text = _('Other volunteers finished the last image while you were on it: your answer is still saved and credited to you.');
  }
  if (!onScreen) {
    if (text) setFeedback(text);
    return;
  }
  if (gold && marking && gold.expected?.marks) {
    showExpected(gold, text);
    return;
  }
  if (text) setFeedback(text);
  afterAnswer();
}

function goldMessage(gold, onScreen) {
  const good = gold.score >= (marking ? 0.5 : 0.99);
  if (marking && onScreen) {
    return good
      ? _('Well done! This was a practice image with known marks, and yours match them well. The known marks are shown dashed.')
      : _('This was a practice image with known marks: they are shown dashed, yours solid. Compare them, then go on.');
  }
  if (marking) {
    return good
      ? _('Well done! The last image was a practice one, and your marks matched the known ones well.')
      : _('The last image was a practice one with known marks, and yours differed from them. Practice images help everyone learn.');
  }
  if (good) return _('Well done! The last image was a practice one with a known answer, and you got it right.');
  const expected = gold.expected?.labels ?? (gold.expected?.label != null ? [gold.expected.label] : []);
  return _('The last image was a practice one with a known answer: “%(answer)s”. Thank you: practice images help everyone learn.',
    {answer: names(expected)});
}

// The answer to the unit on screen was refused for good.
function refused(error) {
  if (error.status === 422) {
    // It broke a rule of the task: let the volunteer change it (nothing drawn is lost).
    session.unanswered();
    gone.delete(unit.id);
    Object.assign(unit, {answered: false, answerId: uuid()});
    status.textContent = '';
    for (const b of labelButtons) b.classList.remove('chosen');
    showProblem(error.message);
    setBusy(false);
    return;
  }
  setFeedback(error.message); // shown over the next image: nothing to do about it but read it
  afterAnswer();
}

// No reply yet and no unit to go on with: keep the answer on screen and say what is happening.
function stuck(error, seconds) {
  status.textContent = '';
  showProblem([error.message,
    ngettext('Your answer is kept on this device.', '%(num)d answers are kept on this device.', queue.size),
    ngettext('Trying again in %(num)d second.', 'Trying again in %(num)d seconds.', seconds)]
    .join(' '), () => queue.flush());
  if (navigator.onLine !== false) prefetch().then(() => { if (awaiting && readyAhead()) moveOn(); });
}

// -- units: fetched ahead, shown, answered ------------------------------------------------------------

const imageUrl = (u) => (lowData && !marking && u.thumbnail_url ? u.thumbnail_url : u.media_url);

function preloadFirst() {
  const next = ahead[0];
  if (next && !next.image && !lowData) {
    next.image = new Image();
    next.image.src = imageUrl(next.unit);
  }
}

// Offline, only a unit whose image is already on the device can be shown.
function readyAhead() {
  const next = ahead.find((e) => !gone.has(e.unit.id));
  if (!next) return false;
  return navigator.onLine !== false || (next.image?.complete && next.image.naturalWidth > 0);
}

async function fetchAhead(extra) {
  // Units leased and not yet answered on the server come back first: ask for that many more.
  const held = (unit && !unit.answered ? 1 : 0) + ahead.length + queue.size;
  const data = await nextUnits(base, settings.id, Math.min(MAX_LEASE, held + extra));
  for (const u of data.units || []) {
    if (gone.has(u.id) || u.id === unit?.id || ahead.some((e) => e.unit.id === u.id)) continue;
    ahead.push({unit: u, image: null});
  }
  preloadFirst();
}

// Fetch the next unit and its image while the volunteer works on this one.
function prefetch() {
  preloadFirst();
  if (ahead.length || navigator.onLine === false) return Promise.resolve();
  prefetching ||= fetchAhead(1).catch(() => {}).finally(() => { prefetching = null; });
  return prefetching;
}

function takeAhead() {
  while (ahead.length) {
    const next = ahead.shift();
    if (!gone.has(next.unit.id)) return next;
  }
  return null;
}

// Go on without the reply to the answer on screen (it is still on its way, or waits on the device).
function moveOn() {
  awaiting = null;
  clearTimeout(replyTimer);
  afterAnswer();
}

// After an answer is settled (or while its reply is still on its way): the end screen or the next unit.
function afterAnswer() {
  if (session.reached) finish('goal');
  else advance();
}

function advance() {
  advancing ||= showNext().finally(() => { advancing = null; });
  return advancing;
}

async function showNext() {
  if (finished) return;
  clearTimeout(loadTimer);
  await prefetching;
  let next = takeAhead();
  if (!next) {
    setBusy(true);
    status.textContent = session.s.answers ? _('Loading the next image…') : _('Loading…');
    try {
      await fetchAhead(2);
    } catch (error) {
      cannotLoad(error);
      return;
    }
    loadBackoff = 0;
    next = takeAhead();
  }
  if (!next) {
    finish('empty');
    return;
  }
  show(next.unit);
  prefetch();
}

async function cannotLoad(error) {
  status.textContent = '';
  if (error.status === 401 && !renewed) {
    renewed = true;
    if (await renewIdentity(location.href)) {
      showProblem(_('This device’s volunteer session had expired, so a new one was started.'));
      advance();
      return;
    }
  }
  if (!error.retryable) {
    showProblem(error.message, advance);
    return;
  }
  loadBackoff = Math.min(60, loadBackoff ? loadBackoff * 2 : 2);
  const seconds = error.retryAfter || loadBackoff;
  showProblem([error.message, ngettext('Trying again in %(num)d second.', 'Trying again in %(num)d seconds.', seconds)]
    .join(' '), advance);
  loadTimer = setTimeout(advance, seconds * 1000);
}

function show(next) {
  const keepFocus = task.contains(document.activeElement) || notices.contains(document.activeElement)
    || document.activeElement === document.body && unit !== null;
  unit = {...next, answerId: uuid(), answered: false};
  clearProblem();
  image.width = unit.width;
  image.height = unit.height;
  stage.style.setProperty('--ratio', unit.width / unit.height);
  stage.style.aspectRatio = `${unit.width} / ${unit.height}`;
  const shown = unit;
  image.onload = () => {
    if (unit !== shown) return;
    unit.shownAt = performance.now();
    image.classList.remove('broken');
    stage.hidden = false;
    const n = session.s.answers;
    status.textContent = n ? ngettext('%(num)d done. Here is the next image.', '%(num)d done. Here is the next image.', n) : '';
    for (const b of labelButtons) {
      b.classList.remove('chosen');
      if (b.hasAttribute('aria-pressed')) b.setAttribute('aria-pressed', 'false');
    }
    surface?.reset(unit.width, unit.height);
    setBusy(false);
    if (keepFocus) (surface ? surface.svg : labelButtons[0])?.focus();
  };
  image.onerror = () => {
    if (unit !== shown) return;
    setBusy(true); // nothing to answer about; the message below offers Retry and Skip
    image.classList.add('broken');
    status.textContent = '';
    const again = () => {
      clearProblem();
      image.src = `${imageUrl(shown)}?try=${Date.now()}`;
    };
    showProblem(_('The image could not be loaded. Try again, or skip it.'), again, true);
  };
  image.src = imageUrl(unit);
}

function answer(payload) {
  if (!unit || unit.answered || busy()) return;
  const durationMs = Math.min(86_400_000, Math.max(0, Math.round(performance.now() - unit.shownAt)));
  const record = {projectId: settings.id, unitId: unit.id, answerId: unit.answerId, payload, durationMs};
  unit.answered = true;
  gone.add(unit.id);
  session.answered();
  showSession(session);
  setFeedback('');
  clearProblem();
  setBusy(true);
  status.textContent = _('Saving your answer…');
  awaiting = record;
  clearTimeout(replyTimer);
  replyTimer = setTimeout(() => {
    if (awaiting === record && readyAhead()) moveOn();
  }, REPLY_WAIT_MS);
  queue.add(record);
}

function skip() {
  if (!unit || unit.answered) return;
  unit.answered = true;
  gone.add(unit.id);
  skipUnit(base, unit.id).catch(() => {}); // if it never arrives, the lease simply runs out
  clearProblem();
  setFeedback('');
  setBusy(true);
  status.textContent = _('Skipped. Loading the next image…');
  afterAnswer();
}

// -- feedback on a unit with known marks ----------------------------------------------------------------

// `gold`: the reply's feedback: the known marks, the ones missed and the volunteer's marks on none.
function showExpected(gold, text) {
  const known = gold.expected.marks;
  const missed = gold.missed ?? [];
  surface.showExpected(known, missed, gold.false_marks ?? []);
  if (known.length) {
    text = [_('You found %(found)s of the %(total)s expected marks.', {found: known.length - missed.length,
      total: known.length}), text].join(' ');
  }
  surface.disabled = true;
  task.classList.add('reviewing');
  task.setAttribute('aria-busy', 'false'); // first: a live region's change inside a busy element is not announced
  task.classList.remove('busy');
  $('review-note').textContent = text;
  for (const id of ['legend', 'next-row']) $(id).hidden = false;
  for (const id of ['tools', 'answer-actions', 'skip-line']) $(id).hidden = true;
  status.textContent = '';
  $('next').focus();
}

function endReview() {
  task.classList.remove('reviewing');
  $('review-note').textContent = '';
  for (const id of ['legend', 'next-row']) $(id).hidden = true;
  for (const id of ['tools', 'answer-actions', 'skip-line']) $(id).hidden = false;
  surface.showExpected([]);
  setBusy(true);
  afterAnswer();
}

// -- the end screen -----------------------------------------------------------------------------------

function formatBytes(bytes) {
  if (!bytes) return _('not known');
  const mb = bytes >= 1_000_000;
  return new Intl.NumberFormat(locale, {style: 'unit', unit: mb ? 'megabyte' : 'kilobyte',
    maximumFractionDigits: mb ? 1 : 0}).format(mb ? bytes / 1_000_000 : Math.max(1, bytes / 1000));
}

function formatTime(ms) {
  const minutes = Math.round(ms / 60_000);
  return minutes < 1 ? _('under 1 min') : ngettext('%(num)d min', '%(num)d min', minutes);
}

async function finish(reason) {
  finished = true;
  clearTimeout(loadTimer);
  const s = session.s;
  task.hidden = true;
  status.textContent = '';
  $('done-reason').textContent = reason === 'goal'
    ? ngettext('You reached your goal of %(num)d minute. That makes a real difference.',
      'You reached your goal of %(num)d minutes. That makes a real difference.', Math.round(s.goalMs / 60_000))
    : _('There is nothing left for you to do in this project just now.');
  $('tally-answers').textContent = s.answers.toLocaleString(locale);
  $('tally-completed').textContent = s.completed.toLocaleString(locale);
  $('tally-time').textContent = formatTime(s.activeMs);
  $('tally-data').textContent = formatBytes(session.bytes);
  const impact = pendingFeedback ? [pendingFeedback] : []; // feedback on the last answer, which had no next image
  pendingFeedback = '';
  if (s.completed) {
    impact.push(ngettext('Your answers completed %(num)d image: it has all the answers it needs, and its result is being worked out.',
      'Your answers completed %(num)d images: they have all the answers they need, and their results are being worked out.', s.completed));
  } else if (s.answers) {
    impact.push(_('Each of your answers brings an image closer to a result the volunteers agree on.'));
  }
  if (s.late) {
    impact.push(ngettext('%(num)d image was finished by others while you were on it; your answer is still credited to you.',
      '%(num)d images were finished by others while you were on them; your answers are still credited to you.', s.late));
  }
  $('done-impact').textContent = impact.join(' ');
  $('keep-going').hidden = reason !== 'goal';
  done.hidden = false;
  done.querySelector('h2').focus();
  if (!settings.summary_url) return;
  try {
    const summary = await getJson(settings.summary_url);
    const results = $('done-results');
    const percent = new Intl.NumberFormat(locale, {style: 'percent', maximumFractionDigits: 0})
      .format(summary.percent_complete / 100);
    if (summary.results) {
      results.textContent = ngettext('Volunteers have agreed on a result for %(num)d image of this project so far; the project is %(percent)s done.',
        'Volunteers have agreed on results for %(num)d images of this project so far; the project is %(percent)s done.',
        summary.results, {percent});
    } else {
      results.textContent = _('The project is %(percent)s done.', {percent});
    }
    results.hidden = false;
  } catch { /* the summary is a bonus: the end screen stands without it */ }
}

function keepGoing() {
  session.keepGoing();
  showSession(session);
  finished = false;
  done.hidden = true;
  task.hidden = false;
  setBusy(true);
  advance().then(() => { if (!busy()) (surface ? surface.svg : labelButtons[0])?.focus(); });
}

// -- controls -------------------------------------------------------------------------------------------

const surface = marking
  ? new MarkingSurface({svg: $('surface'), image, loupe: $('loupe'), tool: settings.marking_tool,
    announce: (text) => { $('mark-note').textContent = text; },
    onChange: (s) => {
      const n = s.marks.length;
      $('count').textContent = ngettext('%(num)d mark', '%(num)d marks', n);
      $('undo').disabled = !s.history.length;
      $('remove').disabled = s.selected < 0;
      for (const id of ['smaller', 'bigger']) if ($(id)) $(id).disabled = n === 0;
      $('nothing').disabled = n > 0; // never throw away marks: remove them first
      $('zoom-in').disabled = !s.canZoomIn;
      $('zoom-out').disabled = !s.zoomed;
      submitButton.disabled = n === 0;
    }})
  : null;

if (surface) {
  $('undo').addEventListener('click', () => surface.undo());
  $('remove').addEventListener('click', () => surface.remove());
  $('smaller')?.addEventListener('click', () => surface.resize(1 / 1.25));
  $('zoom-in').addEventListener('click', () => surface.zoomBy(2));
  $('zoom-out').addEventListener('click', () => surface.zoomBy(1 / 2));
  $('bigger')?.addEventListener('click', () => surface.resize(1.25));
  $('nothing').addEventListener('click', () => answer({marks: []}));
  submitButton.addEventListener('click', () => answer({marks: surface.payload}));
  $('next').addEventListener('click', endReview);
} else if (settings.multi_select) {
  for (const b of labelButtons) {
    b.addEventListener('click', () => {
      if (!busy()) b.setAttribute('aria-pressed', String(b.getAttribute('aria-pressed') !== 'true'));
    });
  }
  submitButton.addEventListener('click', () => {
    const labels = labelButtons.filter((b) => b.getAttribute('aria-pressed') === 'true').map((b) => b.dataset.label);
    if (labels.length) answer({labels});
    else showProblem(_('Choose at least one label, or tap “Not sure”.'));
  });
} else {
  for (const b of labelButtons) {
    b.addEventListener('click', () => {
      if (busy()) return;
      b.classList.add('chosen');
      answer({label: b.dataset.label});
    });
  }
}
$('unsure')?.addEventListener('click', () => answer({unsure: true}));
$('skip').addEventListener('click', skip);
problemSkip.addEventListener('click', skip);
retry.addEventListener('click', () => retryAction?.());
feedbackClose.addEventListener('click', () => {
  setFeedback('');
  (surface ? surface.svg : labelButtons[0])?.focus();
});
$('keep-going').addEventListener('click', keepGoing);

const lowButton = $('low-data');
lowButton.setAttribute('aria-pressed', String(lowData));
lowButton.addEventListener('click', () => {
  lowData = !lowData;
  try { localStorage.setItem(LOW_DATA, lowData ? '1' : '0'); } catch { /* storage off */ }
  lowButton.setAttribute('aria-pressed', String(lowData));
  status.textContent = lowData
    ? _('Low data is on: smaller images where possible, and no images fetched ahead.')
    : _('Low data is off.');
  preloadFirst();
});

const howto = $('howto');
setUpDialog(howto, $('howto-open'));
if ($('guide')) setUpDialog($('guide'), $('guide-open'));

addEventListener('online', () => {
  showQueue();
  if (!finished && !awaiting && (!unit || unit.answered)) advance();
});
addEventListener('offline', showQueue);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && queue.size) queue.flush();
});

// Answers kept from an earlier visit are sent first; their units are not shown again.
for (const record of queue.items) gone.add(record.unitId);
showQueue();
if (queue.size) queue.flush();
// First visit: the tutorial; closing it leads to the task's first control.
if (setUpTutorial(howto, settings.id)) openDialog(howto, surface ? surface.svg : labelButtons[0]);
advance();
