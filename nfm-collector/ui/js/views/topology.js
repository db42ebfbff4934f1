// Topology: for one monitor and the chosen range, the degraded flows' paths drawn component by
// component, the blamed component highlighted, and each verdict's evidence (confidence, degraded
// against healthy flows through it, metric change against baseline, first interval seen).

import { h, notice, fmtTime, fmtPct, fmtRtt, splitComponent, fmtBytes, fmtCount } from '../util.js';
import { api } from '../api.js';
import { topologyGraph } from '../topology.js';
import { monitorPicker, pathChips, newestIsSimulated } from './common.js';
import { flowKey } from './history.js';

function fmtEvidence(e) {
  const ratio = e.baseline > 0 ? e.observed / e.baseline : null;
  const f = /rtt/.test(e.metric) ? fmtRtt : /rate/.test(e.metric) ? fmtPct : (x) => fmtCount(x);
  return h('li', { class: 'evidence-item' },
    h('span', { class: 'ev-metric' }, e.metric.replace(/_/g, ' ')), ': ',
    h('span', { class: 'ev-base' }, f(e.baseline)), ' → ', h('strong', { class: 'ev-obs' }, f(e.observed)),
    ratio !== null && isFinite(ratio) ? h('span', { class: 'ev-ratio' }, ` (×${ratio >= 10 ? Math.round(ratio) : ratio.toFixed(1)})`) : h('span', { class: 'ev-ratio' }, ' (new)'));
}

export function verdictCard(v, intervals) {
  const { kind, name } = splitComponent(v.component);
  const share = v.degraded_flows + v.healthy_flows ? v.degraded_flows / (v.degraded_flows + v.healthy_flows) : 0;
  return h('div', { class: `verdict verdict-${v.blame}`, dataset: { component: v.component } },
    h('div', { class: 'verdict-head' },
      h('span', { class: `chip chip-${kind} ${v.blame === 'network' ? 'chip-blamed' : 'chip-blamed-endpoint'}` }, h('span', { class: 'chip-kind' }, kind), name),
      h('span', { class: 'verdict-blame' }, v.blame === 'network' ? 'Network component blamed — HealthIndicator 1' : 'Endpoint problem, not the network — HealthIndicator stays 0')),
    h('div', { class: 'verdict-stats' },
      h('div', {}, h('div', { class: 'muted' }, 'Confidence'), h('div', { class: 'meter' }, h('span', { style: { width: `${Math.round(v.confidence * 100)}%` } })), h('strong', { class: 'confidence' }, fmtPct(v.confidence))),
      h('div', {}, h('div', { class: 'muted' }, 'Flows through it'), h('div', { class: 'meter meter-flows' }, h('span', { style: { width: `${Math.round(share * 100)}%` } })),
        h('strong', { class: 'degraded-count' }, `${v.degraded_flows} degraded`), ' vs ', h('strong', { class: 'healthy-count' }, `${v.healthy_flows} healthy`)),
      h('div', {}, h('div', { class: 'muted' }, 'First seen'), h('strong', {}, `${fmtTime(v.first_seen_ms, true)} UTC`), h('div', { class: 'muted' }, `${intervals} interval${intervals === 1 ? '' : 's'} in range, latest ${fmtTime(v.interval_start_ms)}`))),
    v.evidence.length ? h('ul', { class: 'evidence' }, h('li', { class: 'muted' }, 'Change against baseline:'), v.evidence.map(fmtEvidence)) : null);
}

export async function render(ctx) {
  const monitors = await api.monitors();
  if (!monitors.length) {
    // Without a monitor there are no paths to draw, but the verdicts still stand.
    const all = latestPerComponent(await api.verdicts(ctx.range));
    return h('div', {},
      notice('empty', 'No monitors yet.', h('p', {}, 'The topology view draws one monitor\'s flows, component by component. ', h('a', { href: '#/monitors/new' }, 'Create a monitor'), ' to see the paths.')),
      all.length ? h('div', { class: 'card', id: 'verdicts' },
        h('div', { class: 'card-title' }, 'Verdicts over all flows', h('span', { class: 'muted card-sub' }, `${all.length} component${all.length === 1 ? '' : 's'} named in the ${ctx.range.label}`)),
        all.map(({ v, n }) => verdictCard(v, n))) : null);
  }
  const name = monitors.some((m) => m.name === ctx.params.get('monitor')) ? ctx.params.get('monitor') : monitors[0].name;
  const showHealthy = ctx.params.get('healthy') === '1';
  const [res, simulated] = await Promise.all([api.topology(name, ctx.range), newestIsSimulated(ctx, name)]);
  ctx.markSimulated(simulated);
  const toolbar = h('div', { class: 'toolbar' },
    monitorPicker(monitors, name, (v) => ctx.setParams({ monitor: v })),
    h('label', { class: 'field-inline' }, h('input', { type: 'checkbox', id: 'show-healthy', checked: showHealthy, onchange: (e) => ctx.setParams({ healthy: e.target.checked ? '1' : null }) }), ' also draw healthy flows'));

  const verdicts = latestPerComponent(res.verdicts);
  // The API merges each flow over the range; `degraded` = degraded in at least one interval.
  const merged = new Map(res.flows.map((f) => [flowKey(f), f]));
  const flows = [...merged.values()];
  const degraded = flows.filter((f) => f.degraded);
  const drawn = showHealthy ? flows : degraded;
  const blamedMap = new Map(verdicts.map(({ v }) => [v.component, v.blame]));

  if (!flows.length) {
    return h('div', {}, toolbar, notice('empty', `No flows for monitor “${name}” in the ${ctx.range.label}.`,
      h('p', {}, 'Widen the time range, or check that agents report traffic between this monitor\'s resources.')));
  }
  const parts = [toolbar];
  if (!degraded.length && !verdicts.length) {
    parts.push(notice('good', `No degraded flows in the ${ctx.range.label}.`,
      h('p', {}, `All ${flows.length} flow${flows.length === 1 ? '' : 's'} of this monitor kept to their baselines. Tick “also draw healthy flows” to see their paths, or widen the range to look at earlier trouble.`)));
  }
  if (verdicts.length) {
    parts.push(h('div', { class: 'card', id: 'verdicts' },
      h('div', { class: 'card-title' }, 'Verdicts and evidence', h('span', { class: 'muted card-sub' }, `${verdicts.length} component${verdicts.length === 1 ? '' : 's'} named in this range`)),
      verdicts.map(({ v, n }) => verdictCard(v, n))));
  } else if (degraded.length) {
    parts.push(notice('info', `${degraded.length} degraded flow${degraded.length === 1 ? '' : 's'}, but no component is blamed.`,
      h('p', {}, 'The evidence does not single out a component yet (too few flows, or no healthy flows to compare with). The paths are drawn below.')));
  }
  if (drawn.length) {
    const { svg, hidden } = topologyGraph(drawn, verdicts.map(({ v }) => v), { width: 1040 });
    parts.push(h('div', { class: 'card', id: 'topology-graph' },
      h('div', { class: 'card-title' }, `Paths of ${showHealthy ? `${flows.length} flows (${degraded.length} degraded)` : `${degraded.length} degraded flow${degraded.length === 1 ? '' : 's'}`}`,
        h('span', { class: 'muted card-sub' }, hidden ? `${hidden} components folded into “+N more”` : '')),
      svg,
      h('div', { class: 'legend' },
        h('span', { class: 'legend-item' }, h('span', { class: 'swatch sw-blamed' }), 'blamed network component'),
        h('span', { class: 'legend-item' }, h('span', { class: 'swatch sw-blamed-endpoint' }), 'blamed endpoint (host/service)'),
        h('span', { class: 'legend-item' }, h('span', { class: 'swatch sw-degraded' }), 'on a degraded path'),
        h('span', { class: 'legend-item' }, h('span', { class: 'swatch sw-healthy' }), 'healthy'))));
  }
  if (degraded.length) {
    const list = degraded.sort((a, b) => b.degraded_intervals - a.degraded_intervals || b.counters.retransmissions - a.counters.retransmissions).slice(0, 40);
    parts.push(h('div', { class: 'card' },
      h('div', { class: 'card-title' }, 'Degraded flows', h('span', { class: 'muted card-sub' }, degraded.length > list.length ? `${list.length} of ${degraded.length}` : '')),
      h('table', { class: 'table', id: 'degraded-flows' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Flow'), h('th', {}, 'Path, component by component'), h('th', { class: 'num' }, 'Data'), h('th', { class: 'num' }, 'Retrans.'), h('th', { class: 'num' }, 'Degraded intervals'))),
        h('tbody', {}, list.map((f) => h('tr', { class: 'flow-row degraded' },
          h('td', { class: 'nowrap mono' }, f.server ? `${f.local}:${f.port} ← ${f.remote}` : `${f.local} → ${f.remote}:${f.port}`),
          h('td', {}, pathChips(f.path, blamedMap)),
          h('td', { class: 'num' }, fmtBytes(f.counters.bytes)),
          h('td', { class: 'num' }, fmtCount(f.counters.retransmissions)),
          h('td', { class: 'num' }, String(f.degraded_intervals))))))));
  }
  return h('div', {}, parts);
}

/** The latest verdict per component over a range, with how many intervals named it; network first. */
export function latestPerComponent(list) {
  const byComp = new Map();
  for (const v of list) {
    const cur = byComp.get(v.component);
    if (!cur) byComp.set(v.component, { v, n: 1 });
    else { cur.n += 1; if (v.interval_start_ms > cur.v.interval_start_ms) cur.v = v; }
  }
  return [...byComp.values()].sort((a, b) => (a.v.blame === 'network' ? 0 : 1) - (b.v.blame === 'network' ? 0 : 1) || b.v.confidence - a.v.confidence);
}
