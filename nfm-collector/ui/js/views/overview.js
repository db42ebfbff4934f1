// Monitor overview: the HealthIndicator timeline and the four metrics (data transferred,
// retransmissions, timeouts, round-trip time) over the chosen range.

import { h, notice, METRICS, fmtTime } from '../util.js';
import { api, metricValue } from '../api.js';
import { lineChart, healthStrip, PALETTE } from '../charts.js';
import { healthBadge } from './common.js';

export async function render(ctx) {
  const name = ctx.route.name;
  ctx.setTitle(`Monitor ${name}`);
  let mon;
  try {
    mon = await api.monitor(name);
  } catch (e) {
    if (e.status !== 404) throw e;
    return notice('error', `There is no monitor named “${name}”.`,
      h('p', {}, 'It may have been deleted or renamed. ', h('a', { href: '#/monitors' }, 'Open the monitors list'), ' or ', h('a', { href: '#/monitors/new' }, 'create a monitor'), '.'));
  }
  const ov = await api.overview(name, ctx.range);
  ctx.markSimulated(ov.simulated);
  const { from, to } = ctx.range;
  const pts = ov.points.filter((p) => p.start_ms >= from - 1 && p.start_ms <= to).sort((a, b) => a.start_ms - b.start_ms);
  const latest = pts[pts.length - 1];
  const degraded = pts.filter((p) => p.health_indicator === 1).length;
  const evaluated = pts.filter((p) => p.health_indicator === 0 || p.health_indicator === 1).length;
  const q = new URLSearchParams(ctx.params);
  q.set('monitor', name);
  const head = h('div', { class: 'card monitor-head' },
    h('div', { class: 'mh-main' },
      h('div', { class: 'mh-name' }, name),
      h('div', { class: 'muted' }, 'Local: ', mon.local.join(', ') || '–', ' · Remote: ', mon.everywhere ? 'Everywhere' : mon.remote.join(', '))),
    h('div', { class: 'mh-stat' }, h('div', { class: 'muted' }, 'Current HealthIndicator'), h('div', { id: 'current-health' }, healthBadge(latest ? latest.health_indicator : mon.health_indicator))),
    h('div', { class: 'mh-stat' }, h('div', { class: 'muted' }, 'Degraded intervals'), h('div', { class: 'big' }, evaluated ? `${degraded} / ${evaluated}` : '–')),
    h('div', { class: 'mh-links' },
      h('a', { class: 'btn btn-small', href: `#/topology?${q}` }, 'Topology'),
      h('a', { class: 'btn btn-small', href: `#/history?${q}` }, 'Historical explorer'),
      h('a', { class: 'btn btn-small', href: `#/monitors/${encodeURIComponent(name)}/edit` }, 'Edit')));
  if (!pts.length) {
    return h('div', {}, head, notice('empty', `No data for this monitor in the ${ctx.range.label}.`,
      h('p', {}, 'Either no flow matched its local and remote resources in this range, or no agent has reported yet. Widen the time range, or check the monitor\'s resources against ', h('a', { href: '#/insights' }, 'Workload insights'), '.')));
  }
  const charts = METRICS.map((m, i) => {
    const points = pts.map((p) => ({ t: p.start_ms, v: m.id === 'round-trip-time' && p.counters.rtt_us === null ? null : metricValue(p.counters, m.id) }));
    const total = m.id === 'round-trip-time' ? null : points.reduce((a, p) => a + (p.v || 0), 0);
    return h('div', { class: 'card chart-card', dataset: { metric: m.id } },
      h('div', { class: 'card-title' }, m.label, h('span', { class: 'muted card-sub' }, total === null ? `latest ${m.fmt(points[points.length - 1].v)}` : `total ${m.fmt(total)}`)),
      lineChart([{ name: m.label, color: PALETTE[i], points }], { from, to, fmtY: m.fmt, height: 170, width: 540, label: m.label }));
  });
  return h('div', {}, head,
    h('div', { class: 'card' },
      h('div', { class: 'card-title' }, 'HealthIndicator', h('span', { class: 'muted card-sub' }, `1 = a network component on this monitor's paths is blamed · latest interval ${latest ? fmtTime(latest.start_ms) : '–'} UTC`)),
      healthStrip(pts, { from, to, width: 1040 }),
      h('div', { class: 'legend' }, h('span', { class: 'legend-item' }, h('span', { class: 'swatch hi-0' }), 'healthy (0)'),
        h('span', { class: 'legend-item' }, h('span', { class: 'swatch hi-1' }), 'network degraded (1)'),
        h('span', { class: 'legend-item' }, h('span', { class: 'swatch hi-none' }), 'not evaluated'))),
    h('div', { class: 'grid2' }, charts));
}
