// Small helpers shared by every view: DOM building, number/time formatting, escaping.
// No framework: views build DOM nodes with `h()` and SVG with `s()`.

const SVG_NS = 'http://www.w3.org/2000/svg';

function applyProps(el, props, svg) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (!svg && (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled')) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('div', {class: 'x', onclick: f}, child, 'text', [more]). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props, false);
  return append(el, children);
}

/** An SVG element, same calling convention as h(). */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyProps(el, props, true);
  return append(el, children);
}

/** Replaces every child of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

export function fmtBytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return '–';
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) { v /= 1000; i++; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}

export function fmtCount(n) {
  if (n === null || n === undefined || !isFinite(n)) return '–';
  const v = Number(n);
  if (Math.abs(v) >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(2);
}

/** Round-trip time given in microseconds. */
export function fmtRtt(us) {
  if (us === null || us === undefined || !isFinite(us)) return '–';
  if (us >= 1e6) return `${(us / 1e6).toFixed(2)} s`;
  if (us >= 1000) return `${(us / 1000).toFixed(us >= 1e5 ? 0 : 1)} ms`;
  return `${Math.round(us)} µs`;
}

export function fmtPct(x) {
  if (x === null || x === undefined || !isFinite(x)) return '–';
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

const pad = (n) => String(n).padStart(2, '0');

/** UTC time, `HH:MM:SS` (or with date when `withDate`). The whole dashboard shows UTC. */
export function fmtTime(ms, withDate = false) {
  if (!ms && ms !== 0) return '–';
  const d = new Date(ms);
  const t = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return withDate ? `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${t}` : t;
}

/** `5s ago`, `3m ago`, ... relative to `now`. */
export function fmtAgo(ms, now = Date.now()) {
  if (!ms) return 'never';
  const d = Math.max(0, Math.round((now - ms) / 1000));
  if (d < 60) return `${d}s ago`;
  if (d < 3600) return `${Math.floor(d / 60)}m ago`;
  if (d < 86400) return `${Math.floor(d / 3600)}h ago`;
  return `${Math.floor(d / 86400)}d ago`;
}

export function fmtDuration(ms) {
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.round(sec / 60)}m`;
  if (sec < 86400) return `${+(sec / 3600).toFixed(1)}h`;
  return `${+(sec / 86400).toFixed(1)}d`;
}

/** `datetime-local` input value (UTC) from epoch ms and back. */
export function toInputTime(ms) {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}
export function fromInputTime(v) {
  // Date.parse is lenient (it reads "garbage:00Z" as a date in 2000): check the shape first.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(String(v))) return null;
  const ms = Date.parse(`${v}:00Z`);
  return isNaN(ms) ? null : ms;
}

/** Metric descriptors: API name, label, formatter. */
export const METRICS = [
  { id: 'data-transferred', label: 'Data transferred', fmt: fmtBytes, field: 'bytes' },
  { id: 'retransmissions', label: 'Retransmissions', fmt: fmtCount, field: 'retransmissions' },
  { id: 'timeouts', label: 'Timeouts', fmt: fmtCount, field: 'timeouts' },
  { id: 'round-trip-time', label: 'Round-trip time', fmt: fmtRtt, field: 'rtt_us' },
];
export const metricById = (id) => METRICS.find((m) => m.id === id) || METRICS[0];

export const CATEGORIES = [
  { id: '', label: 'All categories' },
  { id: 'intra-az', label: 'Intra-AZ' },
  { id: 'inter-az', label: 'Inter-AZ' },
  { id: 'inter-vpc', label: 'Inter-VPC' },
  { id: 'inter-region', label: 'Inter-region' },
  { id: 'service', label: 'Service' },
  { id: 'unclassified', label: 'Unclassified' },
];
export const categoryLabel = (id) => (CATEGORIES.find((c) => c.id === id) || { label: id }).label;

/** `kind:name` → {kind, name}. */
export function splitComponent(id) {
  const s = String(id ?? '');
  const i = s.indexOf(':');
  return i < 0 ? { kind: '', name: s } : { kind: s.slice(0, i), name: s.slice(i + 1) };
}

/** A small status block for empty and error states: a title and what to do about it. */
export function notice(kind, title, ...advice) {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('div', { class: 'notice-title' }, title),
    advice.length ? h('div', { class: 'notice-body' }, ...advice) : null);
}

export function badge(text, cls = '') {
  return h('span', { class: `badge ${cls}` }, text);
}

/** Nice axis ticks for [lo, hi]. */
export function niceTicks(lo, hi, count = 4) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => raw <= st) || 10 * mag;
  const ticks = [];
  // The last tick is the first at or above `hi`, so a scale ending there shows every value.
  for (let v = Math.ceil(lo / step - 1e-9) * step; ; v += step) {
    ticks.push(+v.toPrecision(12));
    if (v >= hi - step * 1e-9 || ticks.length > 50) break;
  }
  return ticks;
}
