// The URL is the dashboard's state: `#/view/sub?param=value`, so a link can be shared. This
// module parses and builds it and turns its time-range parameters into milliseconds. Pure: no
// DOM, so it is unit-tested in node (tests/e2e/unit.test.mjs).

import { fmtTime } from './util.js';

export const PRESETS = [
  ['5m', 5 * 60e3], ['15m', 15 * 60e3], ['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 86400e3], ['7d', 7 * 86400e3],
];
const DEFAULT_RANGE = '1h';

/** Parses `#/a/b?x=1` into {parts: ['a','b'], params: URLSearchParams}. */
export function parseHash(hash = globalThis.location ? globalThis.location.hash : '') {
  const raw = hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

export function buildHash(parts, params) {
  const p = new URLSearchParams();
  for (const [k, v] of params) if (v !== '' && v !== null && v !== undefined) p.set(k, v);
  const q = p.toString();
  return `#/${parts.map(encodeURIComponent).join('/')}${q ? `?${q}` : ''}`;
}

/**
 * The chosen time range: a preset ending at `anchor`, or absolute from/to.
 * `anchor` is the end of the newest interval the collector holds (its clock is the agents'
 * interval timestamps, which for a simulated fleet may not be the wall clock), or now when the
 * collector holds nothing yet.
 */
export function resolveRange(params, anchor = Date.now()) {
  const from = Number(params.get('from'));
  const to = Number(params.get('to'));
  if (from > 0 && to > from) return { from, to, label: `${fmtTime(from, true)} – ${fmtTime(to, true)} UTC`, absolute: true };
  const preset = PRESETS.find(([k]) => k === params.get('range')) || PRESETS.find(([k]) => k === DEFAULT_RANGE);
  return { from: anchor - preset[1], to: anchor, label: `last ${preset[0]}`, preset: preset[0], absolute: false };
}

/** Where relative ranges end: just past the newest interval, else now. */
export function anchorOf(status) {
  const newest = status && Number(status.newest_interval_ms);
  return newest > 0 ? newest + 1 : Date.now();
}

