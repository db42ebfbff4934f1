// Workload insights: the top contributor flows of the chosen range, ranked by one metric and
// filtered by category; each row can start a monitor pre-filled with its resources.

import { h, notice, METRICS, metricById, CATEGORIES, categoryLabel, fmtBytes, fmtCount, fmtRtt, fmtTime, splitComponent } from '../util.js';
import { api, metricValue } from '../api.js';
import { pathChips, flowResources, endpointLabel, simulatedBadge } from './common.js';

export async function render(ctx) {
  const metric = metricById(ctx.params.get('metric') || 'data-transferred');
  const category = ctx.params.get('category') || '';
  const limit = Number(ctx.params.get('limit')) || 20;
  const [res, fleetSimulated, verdicts, incidents] = await Promise.all([
    api.insights({ metric: metric.id, category, from: ctx.range.from, to: ctx.range.to, limit }),
    api.fleetSimulated(ctx.status).catch(() => false),
    api.verdicts(ctx.range).catch(() => []),
    api.incidents(ctx.range).catch(() => []),
  ]);
  // What is blamed right now: verdicts of the newest interval that has any.
  const newestV = Math.max(0, ...verdicts.map((v) => v.interval_start_ms));
  const current = verdicts.filter((v) => v.interval_start_ms === newestV).sort((a, b) => (a.blame === 'network' ? 0 : 1) - (b.blame === 'network' ? 0 : 1) || b.confidence - a.confidence);
  const blamedNow = current.length ? h('div', { class: 'blamed-now', id: 'blamed-now' },
    h('span', { class: 'muted' }, `Blamed at ${fmtTime(newestV)} UTC:`),
    current.slice(0, 4).map((v) => h('a', { class: `chip ${v.blame === 'network' ? 'chip-blamed' : 'chip-blamed-endpoint'}`, href: '#/topology', title: `${v.blame} · confidence ${Math.round(v.confidence * 100)}% · ${v.degraded_flows} degraded vs ${v.healthy_flows} healthy flows · since ${fmtTime(v.first_seen_ms, true)} UTC`, dataset: { component: v.component } },
      h('span', { class: 'chip-kind' }, splitComponent(v.component).kind), splitComponent(v.component).name)),
    current.length > 4 ? h('span', { class: 'muted' }, `+${current.length - 4} more`) : null,
    h('a', { href: '#/topology' }, 'See the evidence')) : null;
  // Insights carry no simulated flag of their own; the agents that sent them do.
  const simulated = res.simulated || fleetSimulated;
  ctx.markSimulated(simulated);
  const flows = [...res.flows].sort((a, b) => metricValue(b.counters, metric.id) - metricValue(a.counters, metric.id));

  const controls = h('div', { class: 'toolbar' },
    h('div', { class: 'seg', role: 'tablist', 'aria-label': 'Rank by' },
      METRICS.map((m) => h('button', {
        type: 'button', class: `seg-btn${m.id === metric.id ? ' active' : ''}`, role: 'tab', 'aria-selected': m.id === metric.id ? 'true' : 'false',
        dataset: { metric: m.id }, onclick: () => ctx.setParams({ metric: m.id }),
      }, m.label))),
    h('label', { class: 'field-inline' }, 'Category ',
      h('select', { id: 'category', onchange: (e) => ctx.setParams({ category: e.target.value }) },
        CATEGORIES.map((c) => h('option', { value: c.id, selected: c.id === category }, c.label)))),
    h('label', { class: 'field-inline' }, 'Show ',
      h('select', { id: 'limit', onchange: (e) => ctx.setParams({ limit: e.target.value }) },
        [10, 20, 50, 100].map((n) => h('option', { value: n, selected: n === limit }, `top ${n}`)))));

  if (!flows.length) {
    const noAgents = Number(ctx.status && ctx.status.agents) === 0;
    return h('div', {}, controls, noAgents
      ? notice('empty', 'No agents have reported yet.',
        h('p', {}, 'Start nfm-agent on your hosts (or nfm-sim for a simulated fleet) and point it at this collector\'s ingest address. Flows appear here within one interval.'),
        h('p', {}, h('a', { href: '#/agents' }, 'Open the agents page')))
      : notice('empty', `No flows${category ? ` in category ${categoryLabel(category)}` : ''} in the ${ctx.range.label}.`,
        h('p', {}, 'Widen the time range or pick another category. Agents that are connected but idle send nothing until their sockets carry traffic.')));
  }

  const rows = flows.map((f, i) => {
    const { local, remote } = flowResources(f);
    const v = metricValue(f.counters, metric.id);
    return h('tr', { class: `flow-row${i === 0 ? ' top-1' : ''}${f.degraded ? ' degraded' : ''}`, dataset: { local: f.local, remote: f.remote, port: f.port ?? '' } },
      h('td', { class: 'rank' }, String(i + 1)),
      h('td', {}, endpointLabel(f.local, f.server ? f.port : null, local)),
      h('td', {}, endpointLabel(f.remote, f.server ? null : f.port, remote)),
      h('td', {}, h('span', { class: `cat cat-${f.category}` }, categoryLabel(f.category))),
      h('td', { class: 'num primary' }, metric.fmt(v)),
      h('td', { class: 'num' }, metric.id === 'data-transferred' ? fmtCount(f.counters.retransmissions) : fmtBytes(f.counters.bytes)),
      h('td', { class: 'num' }, fmtRtt(f.counters.rtt_us)),
      h('td', {}, f.degraded ? h('span', { class: 'badge badge-bad', title: `degraded in ${f.degraded_intervals} of the ${f.intervals} intervals it was a top contributor` }, `degraded ${f.degraded_intervals}/${f.intervals}`) : h('span', { class: 'muted' }, 'ok')),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'btn btn-small create-monitor',
        title: `Create a monitor for ${local || f.local} → ${remote || 'everywhere'}`,
        onclick: () => ctx.navigate(['monitors', 'new'], { local: local || '', remote: remote || '' }, { keep: true }),
      }, 'Create monitor')));
  });

  const second = metric.id === 'data-transferred' ? 'Retransmissions' : 'Data transferred';
  const totals = res.totals.filter((x) => !category || x.category === category);
  const totalStrip = totals.length ? h('div', { class: 'cat-totals', id: 'category-totals' }, totals.map((x) => h('button', {
    type: 'button', class: `cat-total${x.category === category ? ' active' : ''}`, onclick: () => ctx.setParams({ category: x.category === category ? '' : x.category }),
    title: `All ${categoryLabel(x.category)} flows in range, not only the top contributors`,
  }, h('span', { class: `cat cat-${x.category}` }, categoryLabel(x.category)), h('strong', {}, metric.fmt(metricValue(x.counters, metric.id)))))) : null;
  const top = flows[0];
  // Incidents: one line per component through its flaps, ongoing first.
  const incidentCard = incidents.length ? h('div', { class: 'card', id: 'incidents' },
    h('div', { class: 'card-title' }, 'Incidents', h('span', { class: 'muted card-sub' }, `${incidents.length} in the ${ctx.range.label}; one stays open 3 intervals after the last one that named it`)),
    h('table', { class: 'table', id: 'incidents-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'State'), h('th', {}, 'Component'), h('th', {}, 'Blame'), h('th', {}, 'Since (UTC)'), h('th', {}, 'Last named'), h('th', { class: 'num' }, 'Intervals'), h('th', { class: 'num' }, 'Flaps'))),
      h('tbody', {}, [...incidents].sort((a, b) => (a.state === 'ongoing' ? 0 : 1) - (b.state === 'ongoing' ? 0 : 1) || b.first_seen_ms - a.first_seen_ms).slice(0, 10).map((i) => h('tr', { dataset: { component: i.component, state: i.state } },
        h('td', {}, h('span', { class: `badge ${i.state === 'ongoing' ? 'badge-bad' : ''}` }, i.state)),
        h('td', {}, h('span', { class: `chip ${i.blame === 'network' ? 'chip-blamed' : 'chip-blamed-endpoint'}` }, h('span', { class: 'chip-kind' }, splitComponent(i.component).kind), splitComponent(i.component).name)),
        h('td', {}, i.blame),
        h('td', {}, fmtTime(i.first_seen_ms, true)),
        h('td', {}, fmtTime(i.last_named_ms)),
        h('td', { class: 'num' }, fmtCount(i.intervals_named)),
        h('td', { class: 'num' }, fmtCount(i.flaps))))))) : null;
  return h('div', {},
    blamedNow,
    incidentCard,
    controls,
    totalStrip,
    h('div', { class: 'summary-line' },
      h('span', {}, `Top ${flows.length} contributor flow${flows.length === 1 ? '' : 's'} by `, h('strong', {}, metric.label.toLowerCase()),
        category ? ` in ${categoryLabel(category)}` : '', `, ${ctx.range.label}.`),
      simulated ? simulatedBadge() : null),
    h('div', { class: 'card' },
      h('table', { class: 'table', id: 'insights-table' },
        h('thead', {}, h('tr', {},
          h('th', {}, '#'), h('th', {}, 'Local'), h('th', {}, 'Remote'), h('th', {}, 'Category'),
          h('th', { class: 'num' }, metric.label), h('th', { class: 'num' }, second), h('th', { class: 'num' }, 'RTT'),
          h('th', { title: 'degraded intervals / intervals in which the flow was a top contributor' }, 'Health'), h('th', {}, ''))),
        h('tbody', {}, rows))),
    h('div', { class: 'card' },
      h('div', { class: 'card-title' }, 'Path of the top contributor'),
      pathChips(top.path)));
}
