// The volunteer's session: time actively on the page toward a ten-minute goal, answers given, what the
// answers did, and the data the pages used. Kept in sessionStorage, so a reload in the tab carries on.

export const GOAL_MS = 10 * 60_000;
const IDLE_MS = 2 * 60_000; // no touch, click or key for this long: the time stops counting
const TICK_MS = 1000;

export class Session {
  constructor(projectId, onTick) {
    this.key = `microtasks:session:${projectId}`;
    this.page = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`; // this page load's share of the data
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(this.key)); } catch { /* storage off */ }
    // answers given, units they completed, answers that came after others had finished the unit
    this.s = {activeMs: 0, goalMs: GOAL_MS, answers: 0, completed: 0, late: 0, bytes: {}, ...saved};
    this.onTick = onTick;
    this.lastInput = this.lastTick = performance.now();
    const input = () => { this.lastInput = performance.now(); };
    for (const type of ['pointerdown', 'keydown']) addEventListener(type, input, {capture: true, passive: true});
    document.addEventListener('visibilitychange', () => { this.lastTick = performance.now(); });
    setInterval(() => this.tick(), TICK_MS);
    this.watchData();
  }

  tick() {
    const now = performance.now();
    const step = Math.min(now - this.lastTick, 5 * TICK_MS); // a suspended phone's gap is not activity
    this.lastTick = now;
    if (document.visibilityState === 'visible' && now - this.lastInput < IDLE_MS) this.s.activeMs += step;
    this.save();
    this.onTick?.(this);
  }

  // What the pages fetched: the transfer sizes of this page and its resources (images, API calls).
  watchData() {
    let bytes = 0;
    const add = (list) => {
      for (const entry of list.getEntries()) bytes += entry.transferSize || 0;
      this.s.bytes[this.page] = bytes;
    };
    try {
      for (const type of ['navigation', 'resource']) new PerformanceObserver(add).observe({type, buffered: true});
    } catch {
      /* no Performance Timeline: data used stays unknown */
    }
  }

  get bytes() { return Object.values(this.s.bytes).reduce((sum, n) => sum + n, 0); }

  get reached() { return this.s.activeMs >= this.s.goalMs; }

  answered() { this.s.answers += 1; this.save(); }

  unanswered() { this.s.answers = Math.max(0, this.s.answers - 1); this.save(); }

  // A reply from the server: did this answer complete its unit, or come after others had?
  stored(reply) {
    if (reply.unit_complete) this.s.completed += 1;
    else if (reply.unit_full && reply.created) this.s.late += 1;
    this.save();
  }

  keepGoing() {
    while (this.s.goalMs <= this.s.activeMs) this.s.goalMs += GOAL_MS;
    this.save();
  }

  save() {
    try { sessionStorage.setItem(this.key, JSON.stringify(this.s)); } catch { /* storage off */ }
  }
}
