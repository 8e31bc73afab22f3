// The drawing surface: an SVG over the image whose viewBox is the image's pixel size, so marks are
// kept and drawn in image pixels whatever size the image is shown at, or zoomed to (and never
// mirrored in right-to-left pages: the stage is laid out left to right).
//
// Touch: a tap places a mark, press and drag draws a circle (a point follows the finger until it
// lifts), a magnifier in a corner shows what the finger hides; two fingers zoom and pan. A selected
// circle moves when dragged and resizes by its handle. Keyboard: arrows move the cursor, or the
// selected mark; + and - size it; Enter places a mark; Tab goes from mark to mark; Delete removes.
import {_} from './i18n.js';

const SVG = 'http://www.w3.org/2000/svg';
const DRAG = 8; // screen pixels a press must move to count as a drag, not a tap
const ZOOM_MAX = 8;
const LOUPE_SPAN = 28; // the magnifier shows this many screen pixels either side of the finger
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round2 = (v) => Math.round(v * 100) / 100;

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return parent.appendChild(node);
}

// Where a mark is, in words a screen reader can say: a third of the image across and down.
function place(m, w, h) {
  const col = Math.min(2, Math.floor((m.x / w) * 3));
  const row = Math.min(2, Math.floor((m.y / h) * 3));
  return [
    [_('top left'), _('top'), _('top right')],
    [_('left'), _('centre'), _('right')],
    [_('bottom left'), _('bottom'), _('bottom right')],
  ][row][col];
}

export class MarkingSurface {
  // svg: the surface, over `image` inside a viewport element that zooms; loupe: an <svg> for the
  // magnifier; onChange(surface) after every change; announce(text) for a screen reader.
  constructor({svg, image, loupe, tool, onChange, announce}) {
    Object.assign(this, {svg, image, loupe, onChange, announce});
    this.viewport = svg.parentElement;
    this.stage = this.viewport.parentElement;
    this.circles = tool !== 'point';
    this.disabled = true;
    this.pointers = new Map();
    this.reset(1, 1);
    svg.addEventListener('pointerdown', (e) => this.down(e));
    svg.addEventListener('pointermove', (e) => this.move(e));
    svg.addEventListener('pointerup', (e) => this.up(e));
    svg.addEventListener('pointercancel', (e) => this.up(e, true));
    svg.addEventListener('wheel', (e) => this.wheel(e), {passive: false});
    svg.addEventListener('keydown', (e) => this.key(e));
    svg.addEventListener('focus', () => { this.showCursor = svg.matches(':focus-visible'); this.render(); });
    svg.addEventListener('blur', () => { this.showCursor = false; this.render(); });
  }

  reset(width, height) {
    Object.assign(this, {w: width, h: height, marks: [], history: [], selected: -1, gesture: null, pinch: null,
      expected: [], missed: new Set(), falseMarks: new Set(), keyMoved: -1, zoom: {s: 1, x: 0, y: 0}});
    this.cursor = {x: width / 2, y: height / 2, r: this.defaultR};
    this.svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    this.applyZoom();
  }

  get defaultR() { return Math.max(1, this.w * 0.04); }

  get payload() {
    return this.marks.map((m) => (this.circles ? {x: round2(m.x), y: round2(m.y), r: round2(m.r)}
      : {x: round2(m.x), y: round2(m.y)}));
  }

  // -- changes: each goes through `change` (or `remember`, for a drag) so that Undo can restore it --------

  remember() {
    this.history.push({marks: this.marks.map((m) => ({...m})), selected: this.selected});
    this.keyMoved = -1;
  }

  change(fn) {
    this.remember();
    fn();
    this.render();
  }

  add(x, y, r) {
    const mark = {x: clamp(x, 0, this.w), y: clamp(y, 0, this.h)};
    if (this.circles) mark.r = clamp(r, 0.5, Math.max(this.w, this.h));
    this.change(() => { this.marks.push(mark); this.selected = -1; });
    this.say(this.markName(this.marks.length - 1, _('Placed')));
  }

  remove() {
    if (!this.marks.length) return;
    const i = this.selected >= 0 ? this.selected : this.marks.length - 1;
    this.change(() => { this.marks.splice(i, 1); this.selected = -1; });
    this.say(_('Mark removed.'));
  }

  // Make the selected circle (else the last one) bigger or smaller: sizing a circle without dragging.
  resize(factor) {
    if (!this.circles || !this.marks.length) return;
    const i = this.selected >= 0 ? this.selected : this.marks.length - 1;
    const r = clamp(this.marks[i].r * factor, 0.5, Math.max(this.w, this.h));
    this.change(() => { this.marks[i] = {...this.marks[i], r}; });
  }

  undo() {
    const last = this.history.pop();
    if (last) Object.assign(this, last, {keyMoved: -1});
    this.render();
  }

  // Feedback on a unit with known marks: draw them (dashed; dotted the ones `missed`) beside the volunteer's
  // own (crossed out the ones in `falseMarks`, which match no known mark). Positions in each list.
  showExpected(marks, missed = [], falseMarks = []) {
    this.expected = marks || [];
    this.missed = new Set(missed);
    this.falseMarks = new Set(falseMarks);
    this.render();
  }

  select(i) {
    this.selected = i;
    this.keyMoved = -1;
    if (i >= 0) this.reveal(this.marks[i]);
    this.render();
    this.say(i >= 0 ? this.markName(i, _('Selected')) : _('No mark selected.'));
  }

  say(text) { this.announce?.(text); }

  markName(i, state) {
    const m = this.marks[i];
    const where = place(m, this.w, this.h);
    const size = !this.circles ? '' : m.r < this.w * 0.05 ? _('small') : m.r < this.w * 0.15 ? _('medium') : _('large');
    const name = _('Mark %(n)s of %(total)s', {n: i + 1, total: this.marks.length});
    return [state, name, where, size].filter(Boolean).join(', ');
  }

  // -- zoom: the viewport (image and marks together) is scaled and moved inside the stage -----------------

  get zoomed() { return this.zoom.s > 1.001; }
  get canZoomIn() { return this.zoom.s < ZOOM_MAX - 0.001; }

  // Zoom to scale `s`, keeping the point at (px, py) of the stage (in CSS pixels) where it is.
  zoomTo(s, px, py) {
    const z = this.zoom;
    const next = clamp(s, 1, ZOOM_MAX);
    const qx = (px - z.x) / z.s;
    const qy = (py - z.y) / z.s;
    this.zoom = {s: next, x: px - qx * next, y: py - qy * next};
    this.applyZoom();
  }

  // The zoom buttons: around the selected mark, else the keyboard's cursor if shown, else the middle.
  zoomBy(factor) {
    const focus = this.selected >= 0 ? this.marks[this.selected] : this.showCursor ? this.cursor : null;
    const [px, py] = focus ? this.toStage(focus) : [this.stage.clientWidth / 2, this.stage.clientHeight / 2];
    this.zoomTo(this.zoom.s * factor, px, py);
    if (focus) this.reveal(focus);
  }

  panBy(dx, dy) {
    this.zoom.x += dx;
    this.zoom.y += dy;
    this.applyZoom();
  }

  applyZoom() {
    const z = this.zoom;
    const width = this.stage.clientWidth;
    const height = this.stage.clientHeight;
    z.x = clamp(z.x, width - width * z.s, 0);
    z.y = clamp(z.y, height - height * z.s, 0);
    this.viewport.style.transform = this.zoomed ? `translate(${z.x}px, ${z.y}px) scale(${z.s})` : '';
    this.svg.style.setProperty('--u', 1 / z.s); // lines keep their width on screen (see app.css)
    this.stage.classList.toggle('zoomed', this.zoomed);
    this.render();
  }

  // An image point's place in the stage, in CSS pixels.
  toStage(p) {
    const unit = this.stage.clientWidth / this.w;
    return [this.zoom.x + p.x * unit * this.zoom.s, this.zoom.y + p.y * unit * this.zoom.s];
  }

  // Pan, if zoomed, so that an image point is in view with a margin (the keyboard's cursor, a mark).
  reveal(p) {
    if (!this.zoomed) return;
    const [sx, sy] = this.toStage(p);
    const margin = Math.min(48, this.stage.clientWidth / 4);
    const width = this.stage.clientWidth;
    const height = this.stage.clientHeight;
    const dx = sx < margin ? margin - sx : sx > width - margin ? width - margin - sx : 0;
    const dy = sy < margin ? margin - sy : sy > height - margin ? height - margin - sy : 0;
    if (dx || dy) this.panBy(dx, dy);
  }

  // -- pointers --------------------------------------------------------------------------------------------

  // A pointer position in image pixels, and image pixels per screen pixel; null while the surface has no size
  // (the page being laid out anew, as when a phone turns), when no position can be meant.
  toImage(e) {
    const box = this.svg.getBoundingClientRect();
    if (!box.width) return null;
    const scale = this.w / box.width;
    return {x: (e.clientX - box.left) * scale, y: (e.clientY - box.top) * scale, scale};
  }

  down(e) {
    if (this.stage.hidden || e.button > 0) return;
    e.preventDefault();
    this.svg.setPointerCapture(e.pointerId);
    this.pointers.set(e.pointerId, {x: e.clientX, y: e.clientY});
    this.showCursor = false;
    if (this.pointers.size === 2) {
      this.startPinch();
      return;
    }
    if (this.pointers.size > 1 || this.pinch || this.disabled || !e.isPrimary) return;
    const p = this.toImage(e);
    if (!p) return;
    const handle = e.target.closest('[data-handle]');
    const mark = e.target.closest('[data-i]');
    const i = mark ? Number(mark.dataset.i) : -1;
    const mode = handle ? 'resize' : i >= 0 && i === this.selected ? 'move' : 'draw';
    this.gesture = {id: e.pointerId, sx: e.clientX, sy: e.clientY, ...p, target: i, mode, moved: false,
      touch: e.pointerType !== 'mouse', from: this.selected >= 0 ? {...this.marks[this.selected]} : null};
    this.render();
  }

  move(e) {
    const at = this.pointers.get(e.pointerId);
    if (at) Object.assign(at, {x: e.clientX, y: e.clientY});
    if (this.pinch) {
      this.movePinch();
      return;
    }
    const g = this.gesture;
    if (!g || e.pointerId !== g.id) return;
    const p = this.toImage(e);
    if (!p) return;
    if (!g.moved && Math.hypot(e.clientX - g.sx, e.clientY - g.sy) >= DRAG) {
      g.moved = true;
      if (g.mode !== 'draw') this.remember();
    }
    g.px = p.x;
    g.py = p.y;
    if (g.mode === 'draw') {
      if (this.circles) g.r = Math.hypot(p.x - g.x, p.y - g.y);
      else Object.assign(g, {x: p.x, y: p.y});
    } else if (g.moved) {
      const m = this.marks[this.selected];
      if (g.mode === 'move') {
        m.x = clamp(g.from.x + p.x - g.x, 0, this.w);
        m.y = clamp(g.from.y + p.y - g.y, 0, this.h);
      } else { // the edge follows the finger as far as it moves, out from the centre or in towards it
        const further = Math.hypot(p.x - m.x, p.y - m.y) - Math.hypot(g.x - m.x, g.y - m.y);
        m.r = clamp(g.from.r + further, 0.5, Math.max(this.w, this.h));
      }
    }
    this.render();
  }

  up(e, cancelled = false) {
    this.pointers.delete(e.pointerId);
    if (this.pinch) {
      if (this.pointers.size < 2) this.pinch = null; // the finger left behind draws nothing
      return;
    }
    const g = this.gesture;
    if (!g || e.pointerId !== g.id) return;
    this.gesture = null;
    if (cancelled) this.render();
    else if (g.mode !== 'draw') {
      if (g.moved) this.render();
      else this.select(g.mode === 'move' ? -1 : this.selected); // a tap on the selected mark lets it go
    } else if (!g.moved && g.target >= 0) this.select(g.target);
    else this.add(g.x, g.y, g.moved ? g.r : this.defaultR);
  }

  pinchState() {
    const [a, b] = [...this.pointers.values()];
    const box = this.stage.getBoundingClientRect();
    return {d: Math.hypot(a.x - b.x, a.y - b.y), mx: (a.x + b.x) / 2 - box.left, my: (a.y + b.y) / 2 - box.top};
  }

  // Two fingers: whatever the first one was drawing is dropped, and the image follows both.
  startPinch() {
    if (this.gesture?.moved && this.gesture.mode !== 'draw') this.undo();
    this.gesture = null;
    this.pinch = {...this.pinchState(), ...this.zoom};
    this.render();
  }

  movePinch() {
    const p = this.pinch;
    const now = this.pinchState();
    const s = clamp(p.s * (now.d / Math.max(1, p.d)), 1, ZOOM_MAX);
    // the image point under the fingers' first midpoint stays under their midpoint now
    const qx = (p.mx - p.x) / p.s;
    const qy = (p.my - p.y) / p.s;
    this.zoom = {s, x: now.mx - qx * s, y: now.my - qy * s};
    this.applyZoom();
  }

  // A mouse wheel or a touchpad: pinching (the browser sends it with Ctrl) zooms; scrolling pans when zoomed.
  wheel(e) {
    if (this.stage.hidden || (!e.ctrlKey && !this.zoomed)) return;
    e.preventDefault();
    if (e.ctrlKey) {
      const box = this.stage.getBoundingClientRect();
      this.zoomTo(this.zoom.s * Math.exp(-e.deltaY * 0.01), e.clientX - box.left, e.clientY - box.top);
    } else {
      this.panBy(-e.deltaX, -e.deltaY);
    }
  }

  // -- keyboard ------------------------------------------------------------------------------------------

  key(e) {
    if (this.disabled || e.altKey) return;
    if (e.key === 'Tab') {
      this.tab(e);
      return;
    }
    const sel = this.selected >= 0 ? this.marks[this.selected] : null;
    const c = this.cursor;
    const step = Math.max(1, this.w / 100) * (e.shiftKey ? 10 : 1);
    const arrows = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
    const big = Math.max(this.w, this.h);
    if (arrows[e.key] && sel) {
      if (this.keyMoved !== this.selected) this.remember(); // one Undo takes back a run of arrow presses
      this.keyMoved = this.selected;
      sel.x = clamp(sel.x + arrows[e.key][0] * step, 0, this.w);
      sel.y = clamp(sel.y + arrows[e.key][1] * step, 0, this.h);
      this.reveal(sel);
    } else if (arrows[e.key]) {
      c.x = clamp(c.x + arrows[e.key][0] * step, 0, this.w);
      c.y = clamp(c.y + arrows[e.key][1] * step, 0, this.h);
      this.reveal(c);
    } else if ((e.key === '+' || e.key === '=') && this.circles) {
      if (sel) this.resize(1.25);
      else c.r = clamp(c.r * 1.25, 1, big);
    } else if ((e.key === '-' || e.key === '_') && this.circles) {
      if (sel) this.resize(1 / 1.25);
      else c.r = clamp(c.r / 1.25, 1, big);
    } else if ((e.key === 'Enter' || e.key === ' ') && sel) {
      Object.assign(c, {x: sel.x, y: sel.y}); // done with this mark: the cursor carries on from it
      this.select(-1);
    } else if (e.key === 'Enter' || e.key === ' ') this.add(c.x, c.y, c.r);
    else if (e.key === 'Delete' || e.key === 'Backspace') this.remove();
    else if (e.key === 'Escape' && sel) this.select(-1);
    else if (e.key === 'z' && (e.ctrlKey || e.metaKey)) this.undo();
    else return;
    e.preventDefault();
    this.showCursor = true;
    this.render();
  }

  // Tab and Shift+Tab go from mark to mark; past the last (or the first) they leave the drawing area.
  tab(e) {
    const to = this.selected < 0 ? (e.shiftKey ? this.marks.length - 1 : 0) : this.selected + (e.shiftKey ? -1 : 1);
    if (to < 0 || to >= this.marks.length) {
      if (this.selected >= 0) this.select(-1);
      return; // the browser moves focus on
    }
    e.preventDefault();
    this.select(to);
  }

  // -- drawing -------------------------------------------------------------------------------------------

  // The volunteer's marks (with names and hit areas on the surface itself), known marks, the mark being drawn.
  drawMarks(parent, dot, named) {
    this.marks.forEach((m, i) => {
      const at = {cx: m.x, cy: m.y, r: this.circles ? m.r : dot};
      const wrong = this.falseMarks.has(i);
      const attrs = {class: ['mark', i === this.selected && 'selected', wrong && 'false'].filter(Boolean).join(' ')};
      if (named) {
        Object.assign(attrs, {'data-i': i, role: 'img', 'aria-label': this.markName(i, wrong ? _('On no expected mark') : '')});
      }
      const g = el('g', attrs, parent);
      if (named) el('circle', {class: 'hit', ...at}, g);
      el('circle', {class: this.circles ? 'ring' : 'ring point', ...at}, g);
      if (wrong) { // crossed out: an X through the mark, which reads without its colour
        const d = at.r * Math.SQRT1_2;
        el('path', {class: 'cross', d: `M${m.x - d},${m.y - d}L${m.x + d},${m.y + d}M${m.x - d},${m.y + d}L${m.x + d},${m.y - d}`}, g);
      }
    });
    this.expected.forEach((m, i) => {
      const missed = this.missed.has(i);
      const attrs = {class: missed ? 'ring expected missed' : 'ring expected', cx: m.x, cy: m.y, r: m.r ?? dot * 1.6};
      if (named) {
        const params = {n: i + 1, total: this.expected.length};
        Object.assign(attrs, {role: 'img', 'aria-label': missed
          ? _('Expected mark %(n)s of %(total)s, which you missed', params)
          : _('Expected mark %(n)s of %(total)s', params)});
      }
      el('circle', attrs, parent);
    });
    const g = this.gesture;
    if (g?.moved && g.mode === 'draw') {
      el('circle', {class: 'ring preview', cx: g.x, cy: g.y, r: this.circles ? g.r : dot}, parent);
    }
  }

  // The handle that resizes the selected circle: just outside its edge (so that its inside, however small,
  // is left for moving it), on a side that is inside the image, joined to the edge by a short stalk.
  drawHandle(perPx) {
    const m = this.marks[this.selected];
    if (!this.circles || !m || this.gesture?.mode === 'move') return;
    const out = m.r + 20 * perPx;
    const sides = [[1, 0], [-1, 0], [0, 1], [0, -1]];
    const inside = ([dx, dy]) => m.x + dx * out >= 0 && m.x + dx * out <= this.w && m.y + dy * out >= 0
      && m.y + dy * out <= this.h;
    const [dx, dy] = sides.find(inside) ?? sides[0];
    const [cx, cy] = [m.x + dx * out, m.y + dy * out];
    const g = el('g', {class: 'handle', 'data-handle': this.selected}, this.svg);
    el('path', {class: 'handle-stalk', d: `M${m.x + dx * m.r} ${m.y + dy * m.r}L${cx} ${cy}`}, g);
    el('circle', {class: 'handle-hit', cx, cy, r: 18 * perPx}, g);
    el('circle', {class: 'handle-dot', cx, cy, r: 8 * perPx}, g);
  }

  // The magnifier: what is under the finger, twice as big, in the corner away from it.
  drawLoupe(perPx, dot) {
    const g = this.gesture;
    const loupe = this.loupe;
    if (!loupe || !g?.touch || g.px === undefined || !this.image.currentSrc) {
      loupe?.toggleAttribute('hidden', true); // an <svg> has no `hidden` property
      return;
    }
    const span = LOUPE_SPAN * perPx;
    loupe.replaceChildren();
    loupe.setAttribute('viewBox', `${g.px - span} ${g.py - span} ${2 * span} ${2 * span}`);
    el('image', {href: this.image.currentSrc, x: 0, y: 0, width: this.w, height: this.h}, loupe);
    this.drawMarks(loupe, dot, false);
    const arm = span * 0.35;
    el('path', {class: 'crosshair',
      d: `M${g.px - arm} ${g.py}H${g.px + arm}M${g.px} ${g.py - arm}V${g.py + arm}`}, loupe);
    const box = this.stage.getBoundingClientRect();
    loupe.classList.toggle('right', g.sx - box.left < box.width / 2); // the top corner across from the finger
    loupe.toggleAttribute('hidden', false);
  }

  render() {
    const svg = this.svg;
    const box = svg.getBoundingClientRect();
    const perPx = box.width ? this.w / box.width : 1; // image pixels per screen pixel, zoom included
    const dot = Math.max(2, this.w * 0.012) / Math.sqrt(this.zoom.s); // how big a point is drawn
    svg.replaceChildren();
    this.drawMarks(svg, dot, true);
    this.drawHandle(perPx);
    if (this.showCursor && this.selected < 0) {
      const c = this.cursor;
      const r = this.circles ? c.r : dot;
      const arm = r + this.w * 0.03 / this.zoom.s;
      const cross = el('g', {class: 'cursor'}, svg);
      el('circle', {cx: c.x, cy: c.y, r}, cross);
      el('path', {d: `M${c.x - arm} ${c.y}H${c.x + arm}M${c.x} ${c.y - arm}V${c.y + arm}`}, cross);
    }
    this.drawLoupe(perPx, dot);
    this.onChange?.(this);
  }
}
