// Historical explorer: one monitor's top contributor resource pairs, bucketed over the chosen
// range and ranked by one metric; a pair drills down to its flows, a flow to its path.

import { h, notice, METRICS, metricById, fmtBytes, fmtCount, fmtRtt, fmtDuration, categoryLabel } from '../util.js';
import { api, metricValue } from '../api.js';
import { stackedBars, lineChart, legend, PALETTE } from '../charts.js';
import { monitorPicker, pathChips, flowResources, newestIsSimulated, rowKeys } from './common.js';

// Bucket widths in milliseconds (the API's `bucket`); Auto aims at about 40 buckets.
const BUCKETS = [['', 'Auto'], ['10000', '10 s'], ['60000', '1 min'], ['300000', '5 min'], ['900000', '15 min'], ['3600000', '1 hour']];
const AUTO_STEPS = [10e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 86400e3];
export function autoBucket(from, to) {
  return AUTO_STEPS.find((b) => (to - from) / b <= 40) || 86400e3;
}
const TOP = 7;

export const pairKey = (p) => `${p.local} → ${p.remote}`;
export const flowKey = (f) => `${f.local}|${f.remote}|${f.port ?? ''}`;

export async function render(ctx) {
  const monitors = await api.monitors();
  if (!monitors.length) {
    return notice('empty', 'No monitors yet.', h('p', {}, 'The historical explorer looks at one monitor\'s flows. ', h('a', { href: '#/monitors/new' }, 'Create a monitor'), ' first.'));
  }
  const name = monitors.some((m) => m.name === ctx.params.get('monitor')) ? ctx.params.get('monitor') : monitors[0].name;
  const metric = metricById(ctx.params.get('metric') || 'data-transferred');
  const bucket = ctx.params.get('bucket') || '';
  const pick = ctx.params.get('pair') || '';
  const { from, to } = ctx.range;
  const bucketMs = Number(bucket) || autoBucket(from, to);
  const [res, simulated] = await Promise.all([api.history(name, { metric: metric.id, from, to, bucket: bucketMs, limit: 20 }), newestIsSimulated(ctx, name)]);
  ctx.markSimulated(simulated);

  const toolbar = h('div', { class: 'toolbar' },
    monitorPicker(monitors, name, (v) => ctx.setParams({ monitor: v, pair: null, flow: null })),
    h('div', { class: 'seg', role: 'tablist', 'aria-label': 'Metric' }, METRICS.map((m) => h('button', {
      type: 'button', class: `seg-btn${m.id === metric.id ? ' active' : ''}`, dataset: { metric: m.id }, onclick: () => ctx.setParams({ metric: m.id }),
    }, m.label))),
    h('label', { class: 'field-inline' }, 'Bucket ', h('select', { id: 'bucket', onchange: (e) => ctx.setParams({ bucket: e.target.value }) },
      BUCKETS.map(([v, l]) => h('option', { value: v, selected: v === bucket }, l)))));

  const buckets = res.buckets.filter((b) => b.start_ms >= from - (res.bucket_ms || 0) && b.start_ms <= to);
  if (!buckets.some((b) => b.pairs.length)) {
    return h('div', {}, toolbar, notice('empty', `No traffic for monitor “${name}” in the ${ctx.range.label}.`,
      h('p', {}, 'Widen the time range, or check the monitor\'s resources in ', h('a', { href: `#/monitors/${encodeURIComponent(name)}` }, 'its overview'), '.')));
  }
  // Rank pairs over the whole range; RTT ranks by its worst bucket (means do not add up).
  const rtt = metric.id === 'round-trip-time';
  const totals = new Map();
  const info = new Map();
  for (const b of buckets) {
    for (const p of b.pairs) {
      const k = pairKey(p);
      const v = p.value ?? metricValue(p.counters, metric.id);
      totals.set(k, rtt ? Math.max(totals.get(k) || 0, v) : (totals.get(k) || 0) + v);
      const acc = info.get(k) || { local: p.local, remote: p.remote, bytes: 0, retransmissions: 0, timeouts: 0, rttSum: 0, rttN: 0 };
      acc.bytes += p.counters.bytes; acc.retransmissions += p.counters.retransmissions; acc.timeouts += p.counters.timeouts;
      if (p.counters.rtt_us !== null) { acc.rttSum += p.counters.rtt_us; acc.rttN += 1; }
      info.set(k, acc);
    }
  }
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]);
  const keys = ranked.slice(0, TOP).map(([k]) => k);
  const hasOther = ranked.length > TOP;
  const onPick = (k) => { if (k !== 'other pairs') ctx.setParams({ pair: k, flow: null }); };
  let chart;
  if (rtt) {
    chart = lineChart(keys.map((k, i) => ({
      name: k, color: PALETTE[i],
      points: buckets.map((b) => { const p = b.pairs.find((x) => pairKey(x) === k); return { t: b.start_ms, v: p ? (p.value ?? p.counters.rtt_us) : null }; }),
    })), { from, to, fmtY: metric.fmt, height: 260, width: 1040, label: `${metric.label} of the top pairs` });
  } else {
    const series = buckets.map((b) => {
      const values = new Map();
      for (const p of b.pairs) {
        const k = pairKey(p);
        const v = p.value ?? metricValue(p.counters, metric.id);
        const slot = keys.includes(k) ? k : 'other pairs';
        values.set(slot, (values.get(slot) || 0) + v);
      }
      return { t: b.start_ms, values };
    });
    chart = stackedBars(series, hasOther ? [...keys, 'other pairs'] : keys, { from, to, bucketMs, fmtY: metric.fmt, height: 260, width: 1040, onPick, label: `${metric.label} of the top pairs over time` });
  }
  const colors = hasOther && !rtt ? [...PALETTE.slice(0, keys.length), PALETTE[7]] : PALETTE;
  const col = (id) => `num${metric.id === id ? ' primary' : ''}`;
  const rows = ranked.slice(0, 25).map(([k], i) => {
    const a = info.get(k);
    return rowKeys(h('tr', { class: `pair-row${k === pick ? ' selected' : ''}`, dataset: { pair: k }, onclick: () => onPick(k) },
      h('td', {}, i < TOP ? h('span', { class: 'swatch', style: { background: PALETTE[i] } }) : null),
      h('td', {}, a.local), h('td', {}, a.remote),
      h('td', { class: col('data-transferred') }, fmtBytes(a.bytes)), h('td', { class: col('retransmissions') }, fmtCount(a.retransmissions)),
      h('td', { class: col('timeouts') }, fmtCount(a.timeouts)), h('td', { class: col('round-trip-time') }, fmtRtt(a.rttN ? a.rttSum / a.rttN : null))));
  });
  const out = h('div', {}, toolbar,
    h('div', { class: 'card' },
      h('div', { class: 'card-title' }, `Top resource pairs by ${metric.label.toLowerCase()}`, h('span', { class: 'muted card-sub' }, `${buckets.length} buckets of ${fmtDuration(bucketMs)} · click a pair to drill down`)),
      chart, legend(hasOther && !rtt ? [...keys, 'other pairs'] : keys, colors, onPick, pick)),
    h('div', { class: 'card' }, h('table', { class: 'table', id: 'pairs-table' },
      h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'Local'), h('th', {}, 'Remote'),
        h('th', { class: 'num' }, 'Data'), h('th', { class: 'num' }, 'Retrans.'), h('th', { class: 'num' }, 'Timeouts'), h('th', { class: 'num' }, rtt ? 'RTT (mean; ranked by worst)' : 'RTT (mean)'))),
      h('tbody', {}, rows))));
  if (pick && info.has(pick)) out.append(await drill(ctx, name, pick, info.get(pick), buckets, metric));
  return out;
}

async function drill(ctx, name, key, pair, buckets, metric) {
  const { from, to } = ctx.range;
  const points = buckets.map((b) => { const p = b.pairs.find((x) => pairKey(x) === key); return { t: b.start_ms, v: p ? (p.value ?? metricValue(p.counters, metric.id)) : (metric.id === 'round-trip-time' ? null : 0) }; });
  const topo = await api.topology(name, { from, to });
  const blamed = new Map(topo.verdicts.map((v) => [v.component, v.blame]));
  // Flows of this pair (the API merges each flow over the range): same local and remote resources.
  const merged = new Map();
  for (const f of topo.flows) {
    const r = flowResources(f);
    if ((r.local !== pair.local && !f.path.includes(pair.local)) || (r.remote !== pair.remote && !f.path.includes(pair.remote))) continue;
    merged.set(flowKey(f), f);
  }
  const flows = [...merged.values()].sort((a, b) => metricValue(b.counters, metric.id) - metricValue(a.counters, metric.id));
  const sel = ctx.params.get('flow');
  const chosen = flows.find((f) => flowKey(f) === sel);
  const q = new URLSearchParams(ctx.params);
  q.delete('pair'); q.delete('flow'); q.set('monitor', name);
  return h('div', { class: 'card drill', id: 'drilldown' },
    h('div', { class: 'card-title' }, `Drill-down: ${key}`, h('button', { type: 'button', class: 'btn btn-small', onclick: () => ctx.setParams({ pair: null, flow: null }) }, 'Close')),
    lineChart([{ name: metric.label, color: PALETTE[0], points }], { from, to, fmtY: metric.fmt, height: 150, width: 1040, label: `${metric.label} of ${key}` }),
    flows.length ? h('table', { class: 'table', id: 'drill-flows' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Local'), h('th', {}, 'Remote'), h('th', {}, 'Category'), h('th', { class: 'num' }, 'Data'), h('th', { class: 'num' }, 'Retrans.'), h('th', { class: 'num' }, 'Timeouts'), h('th', { class: 'num' }, 'RTT'), h('th', {}, 'Degraded intervals'))),
      h('tbody', {}, flows.slice(0, 30).map((f) => rowKeys(h('tr', { class: `flow-row${flowKey(f) === sel ? ' selected' : ''}${f.degraded ? ' degraded' : ''}`, onclick: () => ctx.setParams({ flow: flowKey(f) }) },
        h('td', {}, f.server ? `${f.local}:${f.port}` : f.local), h('td', {}, f.server ? f.remote : `${f.remote}:${f.port}`),
        h('td', {}, categoryLabel(f.category)), h('td', { class: 'num' }, fmtBytes(f.counters.bytes)), h('td', { class: 'num' }, fmtCount(f.counters.retransmissions)),
        h('td', { class: 'num' }, fmtCount(f.counters.timeouts)), h('td', { class: 'num' }, fmtRtt(f.counters.rtt_us)),
        h('td', {}, f.degraded_intervals ? h('span', { class: 'badge badge-bad' }, String(f.degraded_intervals)) : h('span', { class: 'muted' }, '0')))))))
      : h('p', { class: 'muted' }, 'The collector kept no individual flow of this pair in this range (only the top flows of each interval are kept).'),
    chosen ? h('div', { class: 'flow-detail', id: 'flow-detail' },
      h('div', { class: 'card-title' }, `Flow ${chosen.server ? `${chosen.local}:${chosen.port} ← ${chosen.remote}` : `${chosen.local} → ${chosen.remote}:${chosen.port}`}`,
        h('span', { class: 'muted card-sub' }, `${categoryLabel(chosen.category)} · ${fmtBytes(chosen.counters.bytes)} · ${fmtCount(chosen.counters.retransmissions)} retransmissions · RTT ${fmtRtt(chosen.counters.rtt_us)} · degraded in ${chosen.degraded_intervals} interval(s)`)),
      pathChips(chosen.path, blamed),
      h('p', {}, h('a', { href: `#/topology?${q}` }, 'Open the topology of this monitor'))) : null);
}
