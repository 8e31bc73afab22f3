// The owner's dashboard: fetch the project's stats and draw them as SVG; again every 10 s while the
// page is shown, and at once when it is shown again. The owner's session cookie authenticates the GET.
import {_, locale, ngettext} from './i18n.js';

const SVG = 'http://www.w3.org/2000/svg';
const root = document.getElementById('dashboard');
const every = Number(root.dataset.refreshMs) || 10_000;
const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat(locale);
const hourFormat = new Intl.DateTimeFormat(locale, {hour: '2-digit', minute: '2-digit'});
const axisHourFormat = new Intl.DateTimeFormat(locale, {hour: 'numeric'});
const dayFormat = new Intl.DateTimeFormat(locale, {weekday: 'short'});
const whenFormat = new Intl.DateTimeFormat(locale, {weekday: 'short', hour: '2-digit', minute: '2-digit'});
const clockFormat = new Intl.DateTimeFormat(locale, {hour: '2-digit', minute: '2-digit', second: '2-digit'});
const list = new Intl.ListFormat(locale, {type: 'unit'});

let stats = null; // the last stats drawn
let timer = 0;
let fetching = false;
let renders = 0;

function node(tag, attrs = {}, text = '') {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  if (text) element.textContent = text;
  return element;
}

function titled(element, title) {
  element.append(node('title', {}, title));
  return element;
}

const fmt = (value, digits = 2) => (value == null ? '–' : Number(value).toFixed(digits));
const percent = (value) => (value == null ? '–' : `${Math.round(value * 100)}%`);
const units = (n) => ngettext('%(num)d unit', '%(num)d units', n);
const volunteers = (n) => ngettext('%(num)d volunteer', '%(num)d volunteers', n);
const answers = (n) => ngettext('%(num)d answer', '%(num)d answers', n);
// How many volunteers gave how many answers: one phrase per bin of the per-volunteer histogram.
const gave = (b) => (b.bin === '1'
  ? ngettext('%(num)d volunteer gave 1 answer', '%(num)d volunteers gave 1 answer', b.volunteers)
  : ngettext('%(num)d volunteer gave %(bin)s answers', '%(num)d volunteers gave %(bin)s answers', b.volunteers,
    {bin: b.bin}));

// A round upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten; even for counts, so the middle
// line is a whole number.
function niceMax(value, whole) {
  if (whole) {
    if (value <= 2) return 2;
    const power = 10 ** Math.floor(Math.log10(value));
    return [2, 4, 6, 8, 10].map((m) => m * power).find((m) => m >= value);
  }
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function frame(box, height) {
  const width = Math.max(240, Math.floor(box.clientWidth || 320));
  const svg = node('svg', {width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true',
    focusable: 'false'});
  box.replaceChildren(svg);
  return {svg, width};
}

// Vertical bars: one per item, ``value`` (null: no bar), an optional darker ``part`` inside it, a tooltip.
function barChart(box, items, {max, whole = true, labels = [], axis = (v) => number.format(v)}) {
  const height = 160;
  const {svg, width} = frame(box, height);
  const left = 40, right = 8, top = 10, bottom = 26;
  const plotW = width - left - right, plotH = height - top - bottom;
  const ceiling = max ?? niceMax(Math.max(0, ...items.map((i) => i.value ?? 0)), whole);
  const y = (v) => top + plotH - (v / ceiling) * plotH;
  for (const tick of [0, ceiling / 2, ceiling]) {
    svg.append(node('line', {class: tick ? 'grid' : 'axis', x1: left, x2: width - right, y1: y(tick), y2: y(tick)}));
    svg.append(node('text', {class: 'tick', x: left - 6, y: y(tick), 'text-anchor': 'end',
      'dominant-baseline': 'middle'}, axis(tick)));
  }
  const band = plotW / items.length;
  const barW = Math.max(1, band * (items.length > 20 ? 0.75 : 0.8));
  items.forEach((item, i) => {
    const x = left + i * band + (band - barW) / 2;
    if (item.value != null) {
      const h = Math.max(item.value > 0 ? 1 : 0, y(0) - y(item.value));
      svg.append(titled(node('rect', {class: `bar ${item.cls || ''}`.trim(), x, y: y(0) - h, width: barW, height: h,
        'data-value': item.value}), item.title));
      if (item.part != null && item.part > 0) {
        const p = Math.max(1, y(0) - y(item.part));
        svg.append(titled(node('rect', {class: 'bar-part', x, y: y(0) - p, width: barW, height: p}), item.title));
      }
    }
  });
  for (const {index, text, edge} of labels) {
    const cx = left + (edge ? index : index + 0.5) * band;
    const anchor = cx < left + 14 ? 'start' : cx > width - right - 14 ? 'end' : 'middle';
    svg.append(node('text', {class: 'tick', x: cx, y: height - 8, 'text-anchor': anchor}, text));
  }
}

// Labels for an hourly axis: every 3, 6, 12 or 24 hours, as many as fit (a weekday at midnight).
function hourLabels(series, width) {
  const band = (Math.max(240, width) - 48) / series.length;
  const step = [3, 6, 12, 24].find((hours) => hours * band >= 52) ?? 24;
  return series.flatMap((point, index) => {
    const date = new Date(point.hour);
    if (date.getMinutes() !== 0 || date.getHours() % step !== 0) return [];
    return [{index, text: date.getHours() === 0 ? dayFormat.format(date) : axisHourFormat.format(date)}];
  });
}

function drawUnits(box, units) {
  const parts = [['open', _('Open'), units.open], ['in-progress', _('In progress'), units.in_progress],
    ['retired', _('Retired'), units.retired]];
  const {svg, width} = frame(box, 44);
  const total = units.total || 1;
  let x = 0;
  for (const [cls, name, count] of parts) {
    const w = (count / total) * width;
    const title = _('%(name)s: %(count)s (%(percent)s)',
      {name, count: number.format(count), percent: percent(count / total)});
    svg.append(titled(node('rect', {class: `bar seg-${cls}`, x, y: 4, width: w, height: 36, 'data-value': count}),
      title));
    if (w > 34) {
      svg.append(node('text', {class: `seg-label seg-label-${cls}`, x: x + w / 2, y: 22, 'text-anchor': 'middle',
        'dominant-baseline': 'middle'}, number.format(count)));
    }
    x += w;
  }
  if (!units.total) svg.append(node('rect', {class: 'empty', x: 0, y: 4, width, height: 36}));
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const [cls, name, count] of parts) {
    const li = document.createElement('li');
    li.className = `key-${cls}`;
    li.textContent = `${name} ${number.format(count)}`;
    legend.append(li);
  }
  box.append(legend);
  const done = units.total ? Math.round((units.retired / units.total) * 100) : 0;
  return ngettext('%(open)s open, %(progress)s in progress and %(retired)s retired of %(num)d unit (%(percent)s done)',
    '%(open)s open, %(progress)s in progress and %(retired)s retired of %(num)d units (%(percent)s done)', units.total,
    {open: number.format(units.open), progress: number.format(units.in_progress),
      retired: number.format(units.retired), percent: `${done}%`}) +
    (units.gold ? ngettext('; %(num)d gold unit apart.', '; %(num)d gold units apart.', units.gold) : '.');
}

function hourName(point) {
  const date = new Date(point.hour);
  return `${dayFormat.format(date)} ${hourFormat.format(date)}`;
}

function drawAnswers(box, series) {
  barChart(box, series.map((p) => ({value: p.answers, part: p.counted, cls: 'bar-answers',
    title: _('%(hour)s: %(answers)s, %(counted)s counted', {hour: hourName(p),
      answers: answers(p.answers), counted: number.format(p.counted)})})),
  {labels: hourLabels(series, box.clientWidth)});
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const [cls, text] of [['key-counted', _('Counted')], ['key-uncounted', _('Not counted')]]) {
    const li = document.createElement('li');
    li.className = cls;
    li.textContent = text;
    legend.append(li);
  }
  box.append(legend);
  const total = series.reduce((s, p) => s + p.answers, 0);
  if (!total) return _('No answers in the last 48 hours.');
  const counted = series.reduce((s, p) => s + p.counted, 0);
  const busiest = series.reduce((a, b) => (b.answers > a.answers ? b : a));
  return ngettext('%(num)d answer in the last 48 hours, %(counted)s counted; busiest hour %(hour)s with %(busiest)s.',
    '%(num)d answers in the last 48 hours, %(counted)s counted; busiest hour %(hour)s with %(busiest)s.', total,
    {counted: number.format(counted), hour: hourName(busiest), busiest: number.format(busiest.answers)});
}

function drawVolunteers(box, people) {
  const series = people.active_per_hour;
  barChart(box, series.map((p) => ({value: p.volunteers, cls: 'bar-volunteers',
    title: _('%(hour)s: %(volunteers)s', {hour: hourName(p), volunteers: volunteers(p.volunteers)})})),
  {labels: hourLabels(series, box.clientWidth)});
  if (!people.total) return _('No volunteer has answered yet.');
  const most = Math.max(0, ...series.map((p) => p.volunteers));
  return ngettext('%(num)d volunteer active in the last 24 hours, %(total)s in all',
    '%(num)d volunteers active in the last 24 hours, %(total)s in all', people.last_24h,
    {total: number.format(people.total)}) +
    (most ? ngettext('; at most %(num)d in one hour.', '; at most %(num)d in one hour.', most) : '.');
}

// The words of the two histograms: what is counted, and the sentences about it.
const HISTOGRAMS = {
  confidence: {
    bin: (low, high) => _('Confidence %(low)s–%(high)s', {low, high}),
    none: () => _('No consensus results with confidence yet.'),
    summary: (n, mean, low) => ngettext('%(num)d result, mean confidence %(mean)s; %(low)s below 0.5.',
      '%(num)d results, mean confidence %(mean)s; %(low)s below 0.5.', n, {mean, low}),
  },
  agreement: {
    bin: (low, high) => _('Agreement %(low)s–%(high)s', {low, high}),
    none: () => _('No consensus results with agreement yet.'),
    summary: (n, mean, low) => ngettext('%(num)d result, mean agreement %(mean)s; %(low)s below 0.5.',
      '%(num)d results, mean agreement %(mean)s; %(low)s below 0.5.', n, {mean, low}),
  },
};

function drawHistogram(box, data, what) {
  const words = HISTOGRAMS[what];
  barChart(box, data.histogram.map((b) => ({value: b.count, cls: `bar-${what}`,
    title: `${words.bin(b.low.toFixed(1), b.high.toFixed(1))}: ${units(b.count)}`})), {
    labels: [0, 2, 4, 6, 8, 10].map((index) => ({index, text: (index / 10).toFixed(1), edge: true}))});
  if (!data.results) return words.none();
  const low = data.histogram.filter((b) => b.high <= 0.5).reduce((s, b) => s + b.count, 0);
  return words.summary(data.results, fmt(data.mean), number.format(low));
}

function drawPerVolunteer(box, bins) {
  barChart(box, bins.map((b) => ({value: b.volunteers, cls: 'bar-volunteers',
    title: _('%(bin)s answers: %(volunteers)s', {bin: b.bin, volunteers: volunteers(b.volunteers)})})), {
    labels: bins.map((b, index) => ({index, text: b.bin}))});
  const total = bins.reduce((s, b) => s + b.volunteers, 0);
  if (!total) return _('No volunteers yet.');
  const phrases = bins.filter((b) => b.volunteers).map(gave);
  return `${list.format(phrases)}.`;
}

function drawGold(box, gold) {
  const series = gold.score_per_hour;
  barChart(box, series.map((p) => ({value: p.answers ? p.mean_score : null, cls: 'bar-gold',
    title: ngettext('%(hour)s: mean score %(score)s over %(num)d gold answer',
      '%(hour)s: mean score %(score)s over %(num)d gold answers', p.answers,
      {hour: hourName(p), score: fmt(p.mean_score)})})),
  {max: 1, whole: false, axis: (v) => v.toFixed(1), labels: hourLabels(series, box.clientWidth)});
  if (!gold.answers) return _('No answers to gold units yet.');
  return ngettext('%(num)d gold answer, mean score %(score)s, %(percent)s scored 0.5 or more.',
    '%(num)d gold answers, mean score %(score)s, %(percent)s scored 0.5 or more.', gold.answers,
    {score: fmt(gold.mean_score), percent: percent(gold.pass_rate)});
}

function duration(seconds) {
  const minutes = Math.round(seconds / 60);
  if (minutes < 1) return _('under a minute');
  if (minutes < 60) return ngettext('%(num)d minute', '%(num)d minutes', minutes);
  const hours = Math.floor(minutes / 60);
  const hourText = ngettext('%(num)d hour', '%(num)d hours', hours);
  const rest = ngettext('%(num)d min', '%(num)d min', minutes % 60);
  if (hours < 48) return minutes % 60 ? `${hourText} ${rest}` : hourText;
  return ngettext('%(num)d day', '%(num)d days', Math.round(hours / 24));
}

function etaText({units, eta}) {
  if (!units.total) return _('No units yet: upload a batch to start.');
  if (!eta.answers_needed) return _('Every unit has the answers it needs.');
  const needed = ngettext('%(num)d answer still needed', '%(num)d answers still needed', eta.answers_needed);
  if (eta.seconds == null) return _('%(needed)s; no answers in the last 24 hours, so no estimate of the time left.', {needed});
  const values = {time: duration(eta.seconds), when: whenFormat.format(new Date(eta.finish_at)), needed,
    rate: number.format(Math.round(eta.answers_per_hour * 10) / 10)};
  return eta.rate_window === '1h'
    ? _('About %(time)s left (around %(when)s): %(needed)s at %(rate)s answers per hour, the rate of the last hour.', values)
    : _('About %(time)s left (around %(when)s): %(needed)s at %(rate)s answers per hour, the rate of the last 24 hours.', values);
}

function plot(key, draw) {
  const figure = $(`plot-${key}`);
  $(`plot-${key}-text`).textContent = draw(figure.querySelector('.chart'));
}

function render() {
  if (!stats) return;
  const s = stats;
  plot('units', (box) => drawUnits(box, s.units));
  plot('answers', (box) => drawAnswers(box, s.answers_per_hour));
  plot('volunteers', (box) => drawVolunteers(box, s.volunteers));
  plot('confidence', (box) => drawHistogram(box, s.confidence, 'confidence'));
  plot('agreement', (box) => drawHistogram(box, s.agreement, 'agreement'));
  plot('per-volunteer', (box) => drawPerVolunteer(box, s.volunteers.answers_per_volunteer));
  plot('gold', (box) => drawGold(box, s.gold));
  $('dash-eta').textContent = etaText(s);
  const kpis = {volunteers: s.volunteers.total, volunteers_24h: s.volunteers.last_24h,
    answers_24h: s.answers.last_24h, quarantined: s.volunteers.quarantined};
  for (const [name, value] of Object.entries(kpis)) {
    root.querySelector(`[data-kpi="${name}"]`).textContent = number.format(value);
  }
  renders += 1;
  root.dataset.renders = String(renders);
  root.dataset.updated = s.generated_at;
  root.setAttribute('aria-busy', 'false');
}

async function refresh() {
  clearTimeout(timer);
  if (fetching) return; // the request in flight schedules the next one
  fetching = true;
  try {
    const response = await fetch(root.dataset.statsUrl, {credentials: 'same-origin',
      headers: {Accept: 'application/json'}, signal: AbortSignal.timeout?.(20_000)});
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(_('the server answered %(status)s', {status: response.status}));
    stats = data;
    render();
    $('dash-error').textContent = '';
    $('dash-status').textContent = _('Updated %(time)s', {time: clockFormat.format(new Date())});
  } catch (error) {
    const reason = error.name === 'TimeoutError' || error instanceof TypeError ? _('no connection to the server')
      : error.message;
    $('dash-error').textContent = _('The dashboard could not be updated (%(reason)s); it will try again.', {reason});
  } finally {
    fetching = false;
  }
  if (!document.hidden) timer = setTimeout(refresh, every);
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) clearTimeout(timer);
  else refresh();
});

let width = 0;
new ResizeObserver(() => {
  const now = root.clientWidth;
  if (now !== width) {
    width = now;
    requestAnimationFrame(render);
  }
}).observe(root);

refresh();
