// The dashboard shell: hash routing (the URL keeps the view, its options and the time range, so a
// link can be shared), the time-range and auto-refresh controls, and the collector status line.

import { h, mount, notice, toInputTime, fromInputTime, fmtTime } from './util.js';
import { api } from './api.js';
import { PRESETS, parseHash, buildHash, resolveRange, anchorOf } from './route.js';

// Views load on first use: fewer modules in flight at once (see api.js on why concurrency is kept
// low) and a faster first paint.
const VIEWS = {
  insights: () => import('./views/insights.js'),
  monitors: () => import('./views/monitors.js'),
  overview: () => import('./views/overview.js'),
  history: () => import('./views/history.js'),
  topology: () => import('./views/topology.js'),
  agents: () => import('./views/agents.js'),
};

const DEFAULT_REFRESH = '5';

const NAV = [
  { id: 'insights', label: 'Workload insights', icon: '▤' },
  { id: 'monitors', label: 'Monitors', icon: '◉' },
  { id: 'history', label: 'Historical explorer', icon: '▥' },
  { id: 'topology', label: 'Topology', icon: '⬡' },
  { id: 'agents', label: 'Agents', icon: '⛁' },
];

function route(parts) {
  const [head, a, b] = parts;
  switch (head) {
    case 'monitors':
      if (a === 'new') return { view: 'monitors', mode: 'form', nav: 'monitors' };
      if (a && b === 'edit') return { view: 'monitors', mode: 'form', name: a, nav: 'monitors' };
      if (a) return { view: 'overview', name: a, nav: 'monitors' };
      return { view: 'monitors', mode: 'list', nav: 'monitors' };
    case 'history': return { view: 'history', nav: 'history' };
    case 'topology': return { view: 'topology', nav: 'topology' };
    case 'agents': return { view: 'agents', nav: 'agents' };
    default: return { view: 'insights', nav: 'insights' };
  }
}

const els = {};
let timer = null;
let generation = 0;
let lastOk = null;
let lastAnchor = null;

function navigate(parts, set = {}, { keep = true, replace = false } = {}) {
  const cur = parseHash();
  const params = new URLSearchParams();
  if (keep) for (const k of ['range', 'from', 'to', 'refresh']) if (cur.params.has(k)) params.set(k, cur.params.get(k));
  for (const [k, v] of Object.entries(set)) {
    if (v === null || v === undefined || v === '') params.delete(k); else params.set(k, v);
  }
  const hash = buildHash(parts, params);
  if (replace) history_replace(hash); else location.hash = hash;
}

function history_replace(hash) {
  window.history.replaceState(null, '', hash);
  render();
}

/** Updates some query parameters of the current view. */
function setParams(set, opts = {}) {
  const cur = parseHash();
  const params = new URLSearchParams(cur.params);
  for (const [k, v] of Object.entries(set)) {
    if (v === null || v === undefined || v === '') params.delete(k); else params.set(k, v);
  }
  const hash = buildHash(cur.parts, params);
  if (opts.replace) history_replace(hash); else location.hash = hash;
}

function setStatus(kind, text) {
  els.status.className = `status status-${kind}`;
  els.status.textContent = text;
}

function timeControls(params, range) {
  const preset = range.absolute ? 'custom' : range.preset;
  const custom = h('span', { class: `custom-range${preset === 'custom' ? '' : ' hidden'}` },
    h('input', { type: 'datetime-local', id: 'range-from', value: toInputTime(range.from), 'aria-label': 'From (UTC)' }),
    ' – ',
    h('input', { type: 'datetime-local', id: 'range-to', value: toInputTime(range.to), 'aria-label': 'To (UTC)' }),
    h('button', {
      type: 'button', class: 'btn btn-small', onclick: () => {
        const from = fromInputTime(document.getElementById('range-from').value);
        const to = fromInputTime(document.getElementById('range-to').value);
        if (!from || !to || to <= from) { setStatus('error', 'Pick a "from" time before the "to" time.'); return; }
        setParams({ from, to, range: null });
      },
    }, 'Apply'),
    h('span', { class: 'muted' }, ' UTC'));
  const select = h('select', {
    id: 'range', 'aria-label': 'Time range', onchange: (e) => {
      if (e.target.value === 'custom') { custom.classList.remove('hidden'); return; }
      setParams({ range: e.target.value, from: null, to: null });
    },
  }, PRESETS.map(([k]) => h('option', { value: k, selected: k === preset }, `Last ${k}`)),
  h('option', { value: 'custom', selected: preset === 'custom' }, 'Custom…'));
  const refresh = h('select', {
    id: 'refresh', 'aria-label': 'Auto-refresh', onchange: (e) => setParams({ refresh: e.target.value }, { replace: true }),
  }, [['0', 'Off'], ['5', '5 s'], ['15', '15 s'], ['60', '1 min']].map(([v, l]) => h('option', { value: v, selected: (params.get('refresh') ?? DEFAULT_REFRESH) === v }, `Refresh: ${l}`)));
  return h('div', { class: 'time-controls' }, select, custom, refresh);
}

/** An automatic refresh waits while the user is in the middle of something on the page. */
function busy() {
  if (els.content.querySelector('[data-hold]')) return true; // e.g. a delete confirmation
  const a = document.activeElement;
  return !!(a && els.content.contains(a) && /^(SELECT|INPUT|TEXTAREA)$/.test(a.tagName));
}

async function load(r, ctx, gen, first) {
  if (!first && busy()) return;
  try {
    const [view, status] = await Promise.all([VIEWS[r.view](), api.status()]);
    if (gen !== generation) return;
    lastAnchor = anchorOf(status);
    const range = resolveRange(ctx.params, lastAnchor);
    const node = await view.render({ ...ctx, range, status });
    if (gen !== generation) return;
    const scroll = els.main.scrollTop;
    mount(els.content, node);
    if (!first) els.main.scrollTop = scroll;
    lastOk = Date.now();
    settled('ready');
    const newest = Number(status.newest_interval_ms) || 0;
    setStatus('ok', newest ? `Newest data ${fmtTime(newest)} UTC · updated ${fmtTime(lastOk)}` : `No data yet · updated ${fmtTime(lastOk)} UTC`);
    els.status.title = newest ? `The newest closed interval starts at ${fmtTime(newest, true)} UTC; relative ranges end there.` : '';
  } catch (e) {
    if (gen !== generation) return;
    // Collector refusals and outages are shown on the page; anything else is a bug.
    if (e && (e.unreachable || e.status)) console.warn(e.message); else console.error(e);
    const unreachable = e && e.unreachable;
    setStatus('error', unreachable ? 'Collector unreachable' : 'Error');
    // Keep the last good content on a refresh failure; say so on top of it.
    const msg = unreachable
      ? notice('error', 'The collector is unreachable.',
        h('p', {}, `${e.message}.`),
        h('p', {}, 'Check that nfm-collector is running and that this page is served by it (by default at 127.0.0.1:8080). ',
          lastOk ? `Showing data from ${fmtTime(lastOk)} UTC; retrying on every refresh.` : 'Retrying on every refresh.'))
      : notice('error', `The collector refused the request (HTTP ${e.status || '?'}).`, h('p', {}, e.message || String(e)));
    if (first || !els.content.firstChild) mount(els.content, msg);
    else {
      els.content.querySelector(':scope > .notice-error')?.remove();
      els.content.prepend(msg);
    }
    settled('error');
  }
}

/**
 * Marks the page as settled for this URL: `<body data-state="ready|error" data-hash=...>`.
 * Tests (and anything automating the dashboard) wait on this instead of on time.
 */
function settled(state) {
  document.body.dataset.state = state;
  document.body.dataset.hash = location.hash;
}

function render() {
  generation += 1;
  document.body.dataset.state = 'loading';
  const gen = generation;
  clearInterval(timer);
  const { parts, params } = parseHash();
  const r = route(parts);
  const range = resolveRange(params, lastAnchor ?? Date.now());
  for (const a of els.nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.view === r.nav);
  els.simulated.classList.add('hidden');
  const ctx = {
    parts, params, range, route: r,
    navigate, setParams,
    // A view still rendering for a URL the user has left must not touch the page.
    markSimulated(on) { if (gen === generation) els.simulated.classList.toggle('hidden', !on); },
    setTitle(t) { if (gen === generation) { els.title.textContent = t; document.title = `${t} · nfm`; } },
  };
  ctx.setTitle(NAV.find((n) => n.id === r.nav)?.label || 'nfm');
  // The form has no time range; every other view does.
  mount(els.controls, r.mode === 'form' ? null : timeControls(params, range));
  mount(els.content, h('div', { class: 'loading' }, 'Loading…'));
  load(r, ctx, gen, true);
  const every = Number(params.get('refresh') ?? DEFAULT_REFRESH);
  if (every > 0 && r.mode !== 'form') {
    // Relative ranges slide with the newest data (load() re-reads the collector's status).
    timer = setInterval(() => load(r, ctx, gen, false), every * 1000);
  }
}

function shell() {
  const root = document.getElementById('app');
  els.nav = h('nav', { class: 'nav' }, NAV.map((n) => h('a', { href: `#/${n.id}`, dataset: { view: n.id }, onclick: (e) => { e.preventDefault(); navigate([n.id]); } },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, n.icon), n.label)));
  els.title = h('h1', { id: 'view-title' });
  els.controls = h('div', { class: 'controls' });
  els.status = h('div', { class: 'status', id: 'status', 'aria-live': 'polite' });
  els.simulated = h('div', { class: 'sim-banner hidden', id: 'simulated-banner' },
    h('strong', {}, 'Simulated data'), ' — these flows come from nfm-sim agents (capability SIMULATED), not from real hosts.');
  els.content = h('div', { class: 'content', id: 'content' });
  els.main = h('main', { class: 'main' },
    h('header', { class: 'topbar' }, els.title, els.controls, els.status),
    els.simulated, els.content);
  mount(root,
    h('aside', { class: 'sidebar' },
      h('a', { class: 'brand', href: '#/insights' }, h('span', { class: 'logo' }, 'nfm'), h('span', { class: 'brand-sub' }, 'network flow monitor')),
      els.nav,
      h('div', { class: 'sidebar-foot' }, 'Times are UTC')),
    els.main);
}

/** With sign-in on: who is signed in, and a logout button (a form POST: the session cookie is HttpOnly). */
async function sessionFoot() {
  try {
    const s = await api.session();
    if (!s || !s.auth) return;
    document.querySelector('.sidebar-foot')?.prepend(h('form', { method: 'post', action: '/logout', class: 'session', id: 'session' },
      h('span', {}, `Signed in (${s.role === 'viewer' ? 'viewer: read only' : 'admin'}) `),
      h('button', { type: 'submit', class: 'btn btn-small', id: 'logout' }, 'Log out')));
  } catch { /* an older collector without /api/session: no sign-in to show */ }
}

shell();
sessionFoot();
window.addEventListener('hashchange', render);
render();

