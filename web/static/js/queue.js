// Answers waiting to be sent: kept on the device (localStorage) with their answer ids until the server has
// them, and sent again when the connection returns, on a timer with backoff, or when the server's
// Retry-After has passed. The server stores an answer id once, so sending again stores nothing twice.
import {ApiError, errorFor, renewIdentity, sendAnswer, sendAnswers} from './api.js';
import {_} from './i18n.js';

const BATCH = 20; // the most answers the API takes in one request
const MAX_WAIT = 60; // seconds between automatic tries at most

function load(key) {
  try { return JSON.parse(localStorage.getItem(key)) || []; } catch { return []; }
}

function save(key, list) {
  try {
    if (list.length) localStorage.setItem(key, JSON.stringify(list));
    else localStorage.removeItem(key);
  } catch { /* storage off or full: the answers stay in memory while the page is open */ }
}

export class AnswerQueue {
  // on: {stored(record, reply), rejected(record, error), waiting(error, seconds), changed()}
  constructor(base, projectId, pageUrl, on) {
    Object.assign(this, {base, pageUrl, on, backoff: 0, timer: 0, running: null, renewed: false});
    this.problem = null; // the error of the last failed try, until a try succeeds: {error, seconds}
    this.key = `microtasks:queue:${projectId}`;
    this.heldKey = `microtasks:held:${projectId}`;
    this.items = load(this.key);
    this.held = load(this.heldKey); // answers no identity of this device can send any more: kept, explained
    const legacy = `microtasks:pending:${projectId}`; // the one unsent answer earlier versions kept
    const old = load(legacy);
    if (old?.answerId && !this.items.some((a) => a.answerId === old.answerId)) this.items.push(old);
    try { localStorage.removeItem(legacy); } catch { /* storage off */ }
    save(this.key, this.items);
    addEventListener('online', () => { this.backoff = 0; this.flush(); });
    addEventListener('storage', (e) => {
      if (e.key === this.key) { this.items = load(this.key); this.on.changed(); }
    });
  }

  get size() { return this.items.length; }

  // Keep an answer and send it; what becomes of it is told through `on`.
  add(record) {
    this.items.push(record);
    save(this.key, this.items);
    this.on.changed();
    this.flush();
  }

  // Send what is waiting now (one sending at a time; a new answer joins the next round).
  flush() {
    clearTimeout(this.timer);
    this.running ||= this.run().finally(() => { this.running = null; });
    return this.running;
  }

  async run() {
    while (this.items.length) {
      const batch = this.items.slice(0, BATCH);
      let results;
      try {
        results = await this.send(batch);
      } catch (error) {
        if (error.status === 401 && !this.renewed) {
          this.renewed = true;
          if (await renewIdentity(this.pageUrl)) continue;
        }
        this.wait(error);
        return;
      }
      this.backoff = 0;
      this.problem = null;
      batch.forEach((record, i) => this.result(record, results[i]));
    }
    this.on.changed();
  }

  async send(batch) {
    if (batch.length > 1) return (await sendAnswers(this.base, batch)).results;
    try {
      return [{status: 201, ...(await sendAnswer(this.base, batch[0]))}];
    } catch (error) {
      if (error.retryable || error.status === 401) throw error;
      return [{status: error.status, error}];
    }
  }

  result(record, result) {
    this.items = this.items.filter((a) => a.answerId !== record.answerId);
    save(this.key, this.items);
    if (result.status === 200 || result.status === 201) {
      this.on.stored(record, result);
      return;
    }
    let error = result.error || errorFor(result.status);
    if (result.status === 409 && this.renewed) {
      // Served to the identity this device had before its cookie was lost: no one can send it now.
      this.held.push(record);
      save(this.heldKey, this.held);
      const text = _('This answer was given in this device’s earlier session, which has expired, so the server cannot take it. It is kept on this device.');
      error = new ApiError(text, 409);
    }
    this.on.rejected(record, error);
  }

  wait(error) {
    let seconds = error.retryAfter;
    if (error.status === 401) {
      // Still refused after a new identity: cookies are blocked, most likely.
      error = new ApiError(_('This page needs cookies to save your answers: please allow cookies for this site.'), 401);
      seconds = MAX_WAIT;
    }
    this.backoff = Math.min(MAX_WAIT, this.backoff ? this.backoff * 2 : 2);
    seconds ||= this.backoff;
    this.timer = setTimeout(() => this.flush(), seconds * 1000);
    this.problem = {error, seconds};
    this.on.waiting(error, seconds);
  }
}
