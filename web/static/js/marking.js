// The drawing surface: an SVG over the image whose viewBox is the image's pixel size,
// so marks are kept and drawn in image pixels whatever size the image is shown at
// (and never mirrored in right-to-left pages: the stage is laid out left to right).
import {_} from './i18n.js';

const SVG = 'http://www.w3.org/2000/svg';
const DRAG = 8; // screen pixels a press must move to count as a drag, not a tap
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round2 = (v) => Math.round(v * 100) / 100;

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return parent.appendChild(node);
}

export class MarkingSurface {
  constructor(svg, tool, onChange) {
    this.svg = svg;
    this.circles = tool !== 'point';
    this.onChange = onChange;
    this.disabled = true;
    this.reset(1, 1);
    svg.addEventListener('pointerdown', (e) => this.down(e));
    svg.addEventListener('pointermove', (e) => this.move(e));
    svg.addEventListener('pointerup', (e) => this.up(e));
    svg.addEventListener('pointercancel', () => { this.gesture = null; this.render(); });
    svg.addEventListener('keydown', (e) => this.key(e));
    svg.addEventListener('focus', () => { this.showCursor = svg.matches(':focus-visible'); this.render(); });
    svg.addEventListener('blur', () => { this.showCursor = false; this.render(); });
  }

  reset(width, height) {
    Object.assign(this, {w: width, h: height, marks: [], history: [], selected: -1, gesture: null, expected: []});
    this.cursor = {x: width / 2, y: height / 2, r: this.defaultR};
    this.svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    this.render();
  }

  get defaultR() { return Math.max(1, this.w * 0.04); }

  get payload() {
    return this.marks.map((m) => (this.circles ? {x: round2(m.x), y: round2(m.y), r: round2(m.r)}
      : {x: round2(m.x), y: round2(m.y)}));
  }

  // Every change goes through here so that Undo can restore the marks before it.
  change(fn) {
    this.history.push({marks: this.marks.map((m) => ({...m})), selected: this.selected});
    fn();
    this.render();
  }

  add(x, y, r) {
    const mark = {x: clamp(x, 0, this.w), y: clamp(y, 0, this.h)};
    if (this.circles) mark.r = clamp(r, 0.5, Math.max(this.w, this.h));
    this.change(() => { this.marks.push(mark); this.selected = -1; });
  }

  remove() {
    if (!this.marks.length) return;
    const i = this.selected >= 0 ? this.selected : this.marks.length - 1;
    this.change(() => { this.marks.splice(i, 1); this.selected = -1; });
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
    if (last) Object.assign(this, last);
    this.render();
  }

  // Feedback on a unit with known marks: draw them (dashed) beside the volunteer's own.
  showExpected(marks) {
    this.expected = marks || [];
    this.render();
  }

  select(i) {
    this.selected = this.selected === i ? -1 : i;
    this.render();
  }

  // A pointer position in image pixels, and image pixels per screen pixel.
  toImage(e) {
    const box = this.svg.getBoundingClientRect();
    const scale = this.w / box.width;
    return {x: (e.clientX - box.left) * scale, y: (e.clientY - box.top) * scale, scale};
  }

  down(e) {
    if (this.disabled || !e.isPrimary || e.button > 0) return;
    e.preventDefault();
    this.svg.setPointerCapture(e.pointerId);
    const mark = e.target.closest('[data-i]');
    this.showCursor = false;
    this.gesture = {id: e.pointerId, sx: e.clientX, sy: e.clientY, ...this.toImage(e),
      target: mark ? Number(mark.dataset.i) : -1, moved: false};
  }

  move(e) {
    const g = this.gesture;
    if (!g || e.pointerId !== g.id) return;
    g.moved ||= Math.hypot(e.clientX - g.sx, e.clientY - g.sy) >= DRAG;
    const p = this.toImage(e);
    if (this.circles) {
      g.r = Math.hypot(p.x - g.x, p.y - g.y);
    } else {
      g.x = p.x;
      g.y = p.y;
    }
    if (g.moved) this.render();
  }

  up(e) {
    const g = this.gesture;
    if (!g || e.pointerId !== g.id) return;
    this.gesture = null;
    if (!g.moved && g.target >= 0) this.select(g.target);
    else this.add(g.x, g.y, g.moved ? g.r : this.defaultR);
  }

  key(e) {
    if (this.disabled || e.altKey) return;
    const c = this.cursor;
    const step = Math.max(1, this.w / 100) * (e.shiftKey ? 10 : 1);
    const arrows = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
    const big = Math.max(this.w, this.h);
    if (arrows[e.key]) {
      c.x = clamp(c.x + arrows[e.key][0] * step, 0, this.w);
      c.y = clamp(c.y + arrows[e.key][1] * step, 0, this.h);
    } else if ((e.key === '+' || e.key === '=') && this.circles) c.r = clamp(c.r * 1.25, 1, big);
    else if ((e.key === '-' || e.key === '_') && this.circles) c.r = clamp(c.r / 1.25, 1, big);
    else if (e.key === 'Enter' || e.key === ' ') this.add(c.x, c.y, c.r);
    else if (e.key === 'Delete' || e.key === 'Backspace') this.remove();
    else if (e.key === 'Escape') this.selected = -1;
    else if (e.key === 'z' && (e.ctrlKey || e.metaKey)) this.undo();
    else return;
    e.preventDefault();
    this.showCursor = true;
    this.render();
  }

  render() {
    const svg = this.svg;
    const dot = Math.max(2, this.w * 0.012); // how big a point is drawn
    svg.replaceChildren();
    const total = this.marks.length;
    this.marks.forEach((m, i) => {
      const name = i === this.selected ? _('Mark %(n)s of %(total)s, selected', {n: i + 1, total})
        : _('Mark %(n)s of %(total)s', {n: i + 1, total});
      const g = el('g', {class: i === this.selected ? 'mark selected' : 'mark', 'data-i': i, role: 'img',
        'aria-label': name}, svg);
      const at = {cx: m.x, cy: m.y, r: this.circles ? m.r : dot};
      el('circle', {class: 'hit', ...at}, g);
      el('circle', {class: this.circles ? 'ring' : 'ring point', ...at}, g);
    });
    this.expected.forEach((m, i) => {
      el('circle', {class: 'ring expected', cx: m.x, cy: m.y, r: m.r ?? dot * 1.6, role: 'img',
        'aria-label': _('Expected mark %(n)s of %(total)s', {n: i + 1, total: this.expected.length})}, svg);
    });
    const g = this.gesture;
    if (g?.moved) el('circle', {class: 'ring preview', cx: g.x, cy: g.y, r: this.circles ? g.r : dot}, svg);
    if (this.showCursor) {
      const c = this.cursor;
      const r = this.circles ? c.r : dot;
      const arm = r + this.w * 0.03;
      const cross = el('g', {class: 'cursor'}, svg);
      el('circle', {cx: c.x, cy: c.y, r}, cross);
      el('path', {d: `M${c.x - arm} ${c.y}H${c.x + arm}M${c.x} ${c.y - arm}V${c.y + arm}`}, cross);
    }
    this.onChange?.(this);
  }
}
