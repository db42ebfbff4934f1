// SVG charts drawn directly (no chart library): time-series lines, stacked bars over time and the
// HealthIndicator strip. Each function returns an <svg> that scales to its container's width.

import { s, h, niceTicks, fmtTime } from './util.js';

export const PALETTE = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#9ca3af'];

const TIME_STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
  .map((x) => x * 1000);

function timeTicks(from, to, count = 6) {
  const span = Math.max(1, to - from);
  const step = TIME_STEPS.find((st) => span / st <= count) || 86400000 * Math.ceil(span / count / 86400000);
  const ticks = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) ticks.push(t);
  return { ticks, withDate: span > 86400000 };
}

function frame({ width, height, margin }) {
  const iw = width - margin.left - margin.right;
  const ih = height - margin.top - margin.bottom;
  return { iw, ih };
}

let clipSeq = 0;
/** A group clipped to the plot area, so bars and lines that start before `from` stay inside. */
function plotArea(svg, g, iw, ih) {
  clipSeq += 1;
  const id = `plot-clip-${clipSeq}`;
  svg.append(s('defs', {}, s('clipPath', { id }, s('rect', { x: 0, y: -2, width: iw, height: ih + 4 }))));
  const area = s('g', { 'clip-path': `url(#${id})` });
  g.append(area);
  return area;
}

function axes(g, { from, to, lo, hi, iw, ih, fmtY, x, y }) {
  const { ticks, withDate } = timeTicks(from, to, Math.max(2, Math.floor(iw / 110)));
  for (const t of ticks) {
    g.append(s('line', { class: 'grid', x1: x(t), x2: x(t), y1: 0, y2: ih }));
    g.append(s('text', { class: 'tick', x: x(t), y: ih + 14, 'text-anchor': 'middle' }, withDate ? fmtTime(t, true).slice(5, 16) : fmtTime(t).slice(0, t % 60000 ? 8 : 5)));
  }
  for (const v of niceTicks(lo, hi, Math.max(2, Math.floor(ih / 40)))) {
    g.append(s('line', { class: 'grid', x1: 0, x2: iw, y1: y(v), y2: y(v) }));
    g.append(s('text', { class: 'tick', x: -6, y: y(v) + 4, 'text-anchor': 'end' }, fmtY(v)));
  }
  g.append(s('line', { class: 'axis', x1: 0, x2: iw, y1: ih, y2: ih }));
}

/**
 * The parts every time chart shares: scales from `from..to` and `0..top` (rounded up to a nice
 * tick), the <svg> with its margin group, both axes with grid lines, and the clipped plot area.
 */
function chartFrame({ width, height, margin, iw, ih, from, to, top, fmtY, label }) {
  const ticks = niceTicks(0, top, 4);
  const hi = Math.max(top, ticks[ticks.length - 1]);
  const x = (t) => ((t - from) / Math.max(1, to - from)) * iw;
  const y = (v) => ih - (v / hi) * ih;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
  const g = s('g', { transform: `translate(${margin.left},${margin.top})` });
  svg.append(g);
  axes(g, { from, to, lo: 0, hi, iw, ih, fmtY, x, y });
  const area = plotArea(svg, g, iw, ih);
  return { x, y, hi, svg, g, area };
}

/**
 * Lines over time. `series`: [{name, color, points: [{t, v}]}] where v may be null (gap).
 * Options: from, to (ms), fmtY, height, stepMs (interval length, used for hover lookup).
 */
export function lineChart(series, { from, to, fmtY = String, height = 180, width = 560, label = '' } = {}) {
  const margin = { top: 10, right: 14, bottom: 22, left: 58 };
  const { iw, ih } = frame({ width, height, margin });
  const all = series.flatMap((se) => se.points.filter((p) => p.v !== null && p.v !== undefined));
  let top = Math.max(0, ...all.map((p) => p.v));
  if (top <= 0) top = 1;
  const { x, y, svg, g, area } = chartFrame({ width, height, margin, iw, ih, from, to, top, fmtY, label });
  for (const se of series) {
    const pts = se.points.filter((p) => p.t >= from && p.t <= to).sort((a, b) => a.t - b.t);
    let d = '';
    let pen = false;
    for (const p of pts) {
      if (p.v === null || p.v === undefined) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
    }
    if (d) area.append(s('path', { class: 'line', d, stroke: se.color || PALETTE[0] }));
    if (pts.length <= 40) {
      for (const p of pts) if (p.v !== null && p.v !== undefined) area.append(s('circle', { class: 'dot', cx: x(p.t), cy: y(p.v), r: 2.5, fill: se.color || PALETTE[0] }));
    }
  }
  hover(g, svg, { iw, ih, x, from, to, series, fmtY });
  return svg;
}

function hover(g, svg, { iw, ih, x, from, to, series, fmtY }) {
  const cursor = s('line', { class: 'cursor', x1: 0, x2: 0, y1: 0, y2: ih, visibility: 'hidden' });
  const tip = s('g', { class: 'tip', visibility: 'hidden' });
  const tipBg = s('rect', { rx: 3 });
  const tipText = s('text', {});
  tip.append(tipBg, tipText);
  const overlay = s('rect', { class: 'overlay', x: 0, y: 0, width: iw, height: ih });
  g.append(cursor, overlay, tip);
  overlay.addEventListener('mousemove', (ev) => {
    const pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    const local = pt.matrixTransform(g.getScreenCTM().inverse());
    const t = from + (local.x / iw) * (to - from);
    let best = null;
    for (const se of series) for (const p of se.points) if (p.v !== null && (!best || Math.abs(p.t - t) < Math.abs(best.t - t))) best = p;
    if (!best) return;
    const lines = [fmtTime(best.t, true)];
    for (const se of series) {
      const p = se.points.find((q) => q.t === best.t);
      if (p && p.v !== null) lines.push(`${se.name ? `${se.name}: ` : ''}${fmtY(p.v)}`);
    }
    cursor.setAttribute('x1', x(best.t)); cursor.setAttribute('x2', x(best.t));
    cursor.setAttribute('visibility', 'visible');
    tipText.replaceChildren(...lines.slice(0, 7).map((l, i) => s('tspan', { x: 6, dy: i ? 14 : 14 }, l)));
    const w = Math.max(...lines.slice(0, 7).map((l) => l.length)) * 6.4 + 12;
    const hgt = Math.min(lines.length, 7) * 14 + 8;
    tipBg.setAttribute('width', w); tipBg.setAttribute('height', hgt);
    const tx = x(best.t) + 8 + w > iw ? x(best.t) - w - 8 : x(best.t) + 8;
    tip.setAttribute('transform', `translate(${tx},4)`);
    tip.setAttribute('visibility', 'visible');
  });
  overlay.addEventListener('mouseleave', () => {
    cursor.setAttribute('visibility', 'hidden');
    tip.setAttribute('visibility', 'hidden');
  });
}

/**
 * Stacked bars over time. `buckets`: [{t, values: Map key→v}], `keys` in stacking order (with
 * colors in `colors`), `bucketMs` the bar width in time. `onPick(key)` when a segment is clicked.
 */
export function stackedBars(buckets, keys, { from, to, bucketMs, fmtY = String, colors = PALETTE, height = 240, width = 960, onPick, label = '' } = {}) {
  const margin = { top: 10, right: 14, bottom: 22, left: 64 };
  const { iw, ih } = frame({ width, height, margin });
  const top = Math.max(1, ...buckets.map((b) => keys.reduce((a, k) => a + (b.values.get(k) || 0), 0)));
  const { x, y, svg, g, area } = chartFrame({ width, height, margin, iw, ih, from, to, top, fmtY, label });
  const bw = Math.max(2, (bucketMs / Math.max(1, to - from)) * iw - 2);
  for (const b of buckets) {
    let acc = 0;
    keys.forEach((k, i) => {
      const v = b.values.get(k) || 0;
      if (v <= 0) return;
      const rect = s('rect', {
        class: 'bar', x: x(b.t) + 1, y: y(acc + v), width: bw, height: Math.max(0.5, y(acc) - y(acc + v)),
        fill: colors[i % colors.length], dataset: { key: k },
      }, s('title', {}, `${fmtTime(b.t, true)}\n${k}\n${fmtY(v)}`));
      if (onPick) rect.addEventListener('click', () => onPick(k));
      area.append(rect);
      acc += v;
    });
  }
  return svg;
}

/**
 * The HealthIndicator over time: one cell per interval, 0 healthy, 1 network degraded, and
 * gray when no evaluation ran (never drawn as healthy).
 */
export function healthStrip(points, { from, to, width = 1000, height = 44 } = {}) {
  const margin = { top: 4, right: 14, bottom: 18, left: 58 };
  const { iw, ih } = frame({ width, height, margin });
  const x = (t) => ((t - from) / Math.max(1, to - from)) * iw;
  const svg = s('svg', { class: 'chart health-strip', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'HealthIndicator timeline' });
  const g = s('g', { transform: `translate(${margin.left},${margin.top})` });
  svg.append(g);
  g.append(s('rect', { class: 'strip-bg', x: 0, y: 0, width: iw, height: ih }));
  for (const p of points) {
    if (p.end_ms < from || p.start_ms > to) continue;
    const x0 = x(Math.max(from, p.start_ms));
    const x1 = x(Math.min(to, p.end_ms || p.start_ms + 1));
    const hi = p.health_indicator;
    const cls = hi === 1 ? 'hi-1' : hi === 0 ? 'hi-0' : 'hi-none';
    const what = hi === 1 ? 'network degraded (1)' : hi === 0 ? 'healthy (0)' : 'not evaluated';
    g.append(s('rect', { class: `hi-cell ${cls}`, x: x0, y: 0, width: Math.max(1, x1 - x0), height: ih },
      s('title', {}, `${fmtTime(p.start_ms, true)}: ${what}`)));
  }
  const { ticks, withDate } = timeTicks(from, to, Math.floor(iw / 110));
  for (const t of ticks) g.append(s('text', { class: 'tick', x: x(t), y: ih + 13, 'text-anchor': 'middle' }, withDate ? fmtTime(t, true).slice(5, 16) : fmtTime(t).slice(0, 5)));
  g.append(s('text', { class: 'tick', x: -6, y: ih / 2 + 4, 'text-anchor': 'end' }, 'health'));
  return svg;
}

/** A legend: colored keys, clickable. */
export function legend(keys, colors, onPick, selected) {
  return h('div', { class: 'legend' }, keys.map((k, i) => h('button', {
    class: `legend-item${selected === k ? ' selected' : ''}`, type: 'button', onclick: onPick ? () => onPick(k) : null,
  }, h('span', { class: 'swatch', style: { background: colors[i % colors.length] } }), k)));
}
